namespace NativeEngine.Runner.Data;

/// <summary>
/// A counter-based generator: every draw is a pure function of (seed, stream, a, b), so any draw can be made
/// again without the ones before it (which is what makes batches regenerable and positions resumable). Each input
/// is folded into the state with SplitMix64's finalizer (Steele, Lea and Flood 2014), whose 64-bit avalanche
/// passes BigCrush when driven by a counter. This is the host's generator for data; it is not the native
/// engine's Philox stream, and the two do not give the same numbers.
/// </summary>
internal static class CounterRng
{
    private const ulong Golden = 0x9E3779B97F4A7C15;

    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        return z ^ (z >> 31);
    }

    public static ulong Hash(ulong seed, ulong stream, ulong a, ulong b = 0) =>
        Mix(Mix(Mix(Mix(seed + Golden) + stream * Golden) + a * Golden) + b * Golden + Golden);

    /// <summary>A key for (seed, stream, a) from which draws b are made by <see cref="Next"/>: Mix(key + b·golden).</summary>
    public static ulong Key(ulong seed, ulong stream, ulong a) => Mix(Mix(Mix(seed + Golden) + stream * Golden) + a * Golden);

    public static ulong Next(ulong key, ulong b) => Mix(key + b * Golden + Golden);

    /// <summary>Uniform in [0, n) by Lemire's multiply-shift; the bias is below n / 2⁶⁴.</summary>
    public static long Below(ulong bits, long n) => (long)Math.BigMul(bits, (ulong)n, out _);

    /// <summary>Uniform in (0, 1) with 53 bits, never 0 (for logarithms).</summary>
    public static double OpenUnit(ulong bits) => ((bits >> 11) + 0.5) * (1.0 / (1UL << 53));

    /// <summary>A standard normal from two uniform draws (Box–Muller, cosine branch).</summary>
    public static double Normal(ulong bits1, ulong bits2) =>
        Math.Sqrt(-2.0 * Math.Log(OpenUnit(bits1))) * Math.Cos(2.0 * Math.PI * OpenUnit(bits2));
}
