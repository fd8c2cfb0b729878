using System.Diagnostics;

namespace NativeEngine.Runner.Bench;

/// <summary>Units of work (steps, tokens, calls) done and the seconds they took.</summary>
public readonly record struct Timing(long Units, double Seconds)
{
    public double PerSecond => Units / Seconds;

    /// <summary>Runs run(count) after <paramref name="warmup"/> untimed units (allocation, thread start), then in
    /// chunks sized for about a tenth of a second each until at least <paramref name="minSeconds"/> have passed: the
    /// per-call cost stays out of the rate, and the run ends soon after the time is up however slow a unit is.</summary>
    public static Timing Measure(Action<long> run, double minSeconds, long warmup = 1)
    {
        if (warmup > 0) run(warmup);
        var clock = Stopwatch.StartNew();
        long units = 0, chunk = 1;
        while (clock.Elapsed.TotalSeconds < minSeconds)
        {
            run(chunk);
            units += chunk;
            var rate = units / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            chunk = (long)Math.Clamp(rate * 0.1, 1, 1 << 20);
        }
        return new Timing(units, clock.Elapsed.TotalSeconds);
    }
}
