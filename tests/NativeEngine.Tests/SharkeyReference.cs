using NativeEngine.Runner.Data;

namespace NativeEngine.Tests;

/// <summary>
/// The managed generator of the Sharkey et al. (2022) set that the runner used before the native one (SplitMix64
/// counters, double Box–Muller), kept as the reference the native generator must equal in law: feature i fires with
/// p_i = min(1, c · decay^i), Σ p_i = activeMean; coefficients U(0, 1]; correlated firing through the copula
/// z = S (F g + e), S = diag(1/√(1 + |F_i|²)), F [n][rank] standard normal, firing when z_i &lt; Φ⁻¹(p_i).
/// </summary>
internal sealed class SharkeyReference
{
    private const ulong FeatureStream = 11, FireStream = 12, FactorStream = 13, CopulaStream = 14, CoefficientStream = 15;

    private readonly int n, d, rank;
    private readonly ulong seed;
    private readonly double[] factor = [], scale = [], threshold = [];

    public float[] Features { get; }
    public double[] Probabilities { get; }

    public SharkeyReference(int d, int n, double decay, double activeMean, int correlationRank, ulong seed)
    {
        (this.n, this.d, rank, this.seed) = (n, d, correlationRank, seed);
        Features = new float[n * d];
        var row = new double[d];
        for (var i = 0; i < n; i++)
        {
            var key = CounterRng.Key(seed, FeatureStream, (ulong)i);
            var norm = 0.0;
            for (var j = 0; j < d; j++)
            {
                row[j] = CounterRng.Normal(CounterRng.Next(key, 2 * (ulong)j), CounterRng.Next(key, 2 * (ulong)j + 1));
                norm += row[j] * row[j];
            }
            norm = Math.Sqrt(norm);
            for (var j = 0; j < d; j++) Features[i * d + j] = (float)(row[j] / norm);
        }
        Probabilities = FiringProbabilities(n, decay, activeMean);
        if (rank == 0) return;
        factor = new double[n * rank];
        scale = new double[n];
        threshold = new double[n];
        for (var i = 0; i < n; i++)
        {
            var key = CounterRng.Key(seed, FactorStream, (ulong)i);
            var squared = 0.0;
            for (var k = 0; k < rank; k++)
            {
                var f = CounterRng.Normal(CounterRng.Next(key, 2 * (ulong)k), CounterRng.Next(key, 2 * (ulong)k + 1));
                factor[i * rank + k] = f;
                squared += f * f;
            }
            scale[i] = 1 / Math.Sqrt(1 + squared);
            threshold[i] = InverseNormalCdf(Probabilities[i]);
        }
    }

    public static double[] FiringProbabilities(int n, double decay, double activeMean)
    {
        double Sum(double c) { var s = 0.0; for (var i = 0; i < n; i++) s += Math.Min(1, c * Math.Pow(decay, i)); return s; }
        double lo = 0, hi = 1;
        while (Sum(hi) < activeMean) hi *= 2;
        for (var iteration = 0; iteration < 200; iteration++)
        {
            var mid = 0.5 * (lo + hi);
            if (Sum(mid) < activeMean) lo = mid; else hi = mid;
        }
        var p = new double[n];
        for (var i = 0; i < n; i++) p[i] = Math.Min(1, hi * Math.Pow(decay, i));
        return p;
    }

    /// <summary>The code of token t [n], 0 where a feature does not fire.</summary>
    public void Codes(long token, Span<float> codes)
    {
        var coefficientKey = CounterRng.Key(seed, CoefficientStream, (ulong)token);
        if (rank == 0)
        {
            var key = CounterRng.Key(seed, FireStream, (ulong)token);
            for (var i = 0; i < n; i++)
            {
                var u = (CounterRng.Next(key, (ulong)i) >> 11) * (1.0 / (1UL << 53));
                codes[i] = u < Probabilities[i] ? Coefficient(coefficientKey, i) : 0f;
            }
            return;
        }
        var copulaKey = CounterRng.Key(seed, CopulaStream, (ulong)token);
        Span<double> g = stackalloc double[rank];
        for (var k = 0; k < rank; k++)
            g[k] = CounterRng.Normal(CounterRng.Next(copulaKey, 2 * (ulong)k), CounterRng.Next(copulaKey, 2 * (ulong)k + 1));
        var errorBase = 2 * (ulong)rank;
        for (var i = 0; i < n; i++)
        {
            var z = CounterRng.Normal(CounterRng.Next(copulaKey, errorBase + 2 * (ulong)i), CounterRng.Next(copulaKey, errorBase + 2 * (ulong)i + 1));
            for (var k = 0; k < rank; k++) z += factor[i * rank + k] * g[k];
            codes[i] = z * scale[i] < threshold[i] ? Coefficient(coefficientKey, i) : 0f;
        }
    }

    private static float Coefficient(ulong key, int i) => ((CounterRng.Next(key, (ulong)i) >> 40) + 1) * (1.0f / (1 << 24));

    // Φ⁻¹(p), Acklam's rational approximation (relative error below 1.2e-9).
    private static double InverseNormalCdf(double p)
    {
        if (p <= 0) return double.NegativeInfinity;
        if (p >= 1) return double.PositiveInfinity;
        double[] a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00];
        double[] b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01];
        double[] c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00];
        double[] e = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00];
        const double low = 0.02425;
        if (p < low)
        {
            var q = Math.Sqrt(-2 * Math.Log(p));
            return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((e[0] * q + e[1]) * q + e[2]) * q + e[3]) * q + 1);
        }
        if (p > 1 - low)
        {
            var q = Math.Sqrt(-2 * Math.Log(1 - p));
            return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((e[0] * q + e[1]) * q + e[2]) * q + e[3]) * q + 1);
        }
        var s = p - 0.5;
        var r2 = s * s;
        return (((((a[0] * r2 + a[1]) * r2 + a[2]) * r2 + a[3]) * r2 + a[4]) * r2 + a[5]) * s /
               (((((b[0] * r2 + b[1]) * r2 + b[2]) * r2 + b[3]) * r2 + b[4]) * r2 + 1);
    }
}
