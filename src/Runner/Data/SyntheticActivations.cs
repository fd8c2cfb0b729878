using System.Globalization;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Data;

/// <summary>
/// The synthetic ground truth of Sharkey et al. (2022) as replicated: D-dimensional activations that are sparse
/// non-negative combinations of Features random unit-norm directions. Feature i fires with probability
/// p_i = min(1, c · Decay^i), c chosen so Σ p_i = ActiveMean; an active feature's coefficient is uniform in (0, 1].
/// Correlated draws the firing through a Gaussian copula (see <see cref="SyntheticActivations"/>).
/// </summary>
public sealed record SyntheticOptions(
    int D = 256,
    int Features = 512,
    double Decay = 0.99,
    double ActiveMean = 5,
    bool Correlated = false,
    int CorrelationRank = 4,
    ulong Seed = 0,
    int BatchTokens = 4096,
    bool Prefetch = true);

/// <summary>
/// Synthetic activations, deterministic per (seed, token index): token t is a pure function of the seed and t
/// (counter-based draws, <see cref="CounterRng"/>), so any batch can be made again and batch b of a fresh source
/// is tokens [b·BatchTokens, (b+1)·BatchTokens).
/// <para>Correlated firing: a factor F [Features][CorrelationRank] of standard normals defines the correlation
/// matrix Σ = S (F Fᵀ + I) S with S = diag(1/√(1 + |F_i|²)), a random low-rank factor plus identity, normalised to
/// a unit diagonal. For each token z = S (F g + e) with g ~ N(0, I_rank), e ~ N(0, I), so z ~ N(0, Σ) without a
/// Cholesky factor; feature i fires when z_i &lt; Φ⁻¹(p_i), which keeps every marginal firing probability p_i while
/// features sharing factor directions fire together (typical |Σ_ij| ≈ 0.4 at rank 4).</para>
/// </summary>
public sealed class SyntheticActivations : IActivationBatches
{
    private const ulong FeatureStream = 11;
    private const ulong FireStream = 12;
    private const ulong FactorStream = 13;
    private const ulong CopulaStream = 14;
    private const ulong CoefficientStream = 15;

    private readonly SyntheticOptions options;
    private readonly float[] features;       // [n][d] unit rows
    private readonly double[] probabilities; // [n]
    private readonly double[] factor = [];   // [n][rank] copula factor F
    private readonly double[] scale = [];    // [n] 1 / sqrt(1 + |F_i|²)
    private readonly double[] threshold = [];// [n] Φ⁻¹(p_i)
    private readonly BatchPrefetcher prefetcher;
    private readonly float[] fillCodes;      // [n] scratch of the fill
    private long generated;                   // next token the fill produces
    private long tokensServed;

    public int D => options.D;
    public int BatchTokens => options.BatchTokens;
    public int FeatureCount => options.Features;
    public SyntheticOptions Options => options;

    /// <summary>The ground-truth features [Features][D], unit-norm rows.</summary>
    public ReadOnlySpan<float> Features => features;

    /// <summary>The firing probability of each feature [Features].</summary>
    public ReadOnlySpan<double> Probabilities => probabilities;

    public SyntheticActivations(SyntheticOptions options)
    {
        if (options.D < 1) throw new ArgumentOutOfRangeException(nameof(options), $"d = {options.D}; must be ≥ 1");
        if (options.Features < 1) throw new ArgumentOutOfRangeException(nameof(options), $"n_features = {options.Features}; must be ≥ 1");
        if (options.Decay is not (> 0 and <= 1)) throw new ArgumentOutOfRangeException(nameof(options), $"decay = {options.Decay}; must be in (0, 1]");
        if (!(options.ActiveMean > 0 && options.ActiveMean <= options.Features))
            throw new ArgumentOutOfRangeException(nameof(options), $"active_mean = {options.ActiveMean}; must be in (0, n_features = {options.Features}]");
        if (options.BatchTokens < 1) throw new ArgumentOutOfRangeException(nameof(options), $"batch_tokens = {options.BatchTokens}; must be ≥ 1");
        if ((long)options.BatchTokens * options.D > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(options), $"batch_tokens = {options.BatchTokens} × d = {options.D} exceeds one array");
        if (options.Correlated && options.CorrelationRank < 1) throw new ArgumentOutOfRangeException(nameof(options), $"correlation_rank = {options.CorrelationRank}; must be ≥ 1");
        this.options = options;
        int n = options.Features, d = options.D;

        features = new float[n * d];
        var row = new double[d];
        for (var i = 0; i < n; i++)
        {
            var key = CounterRng.Key(options.Seed, FeatureStream, (ulong)i);
            var norm = 0.0;
            for (var j = 0; j < d; j++)
            {
                row[j] = CounterRng.Normal(CounterRng.Next(key, 2 * (ulong)j), CounterRng.Next(key, 2 * (ulong)j + 1));
                norm += row[j] * row[j];
            }
            norm = Math.Sqrt(norm);
            for (var j = 0; j < d; j++) features[i * d + j] = (float)(row[j] / norm);
        }
        probabilities = FiringProbabilities(n, options.Decay, options.ActiveMean);

        if (options.Correlated)
        {
            var r = options.CorrelationRank;
            factor = new double[n * r];
            scale = new double[n];
            threshold = new double[n];
            for (var i = 0; i < n; i++)
            {
                var key = CounterRng.Key(options.Seed, FactorStream, (ulong)i);
                var squared = 0.0;
                for (var k = 0; k < r; k++)
                {
                    var f = CounterRng.Normal(CounterRng.Next(key, 2 * (ulong)k), CounterRng.Next(key, 2 * (ulong)k + 1));
                    factor[i * r + k] = f;
                    squared += f * f;
                }
                scale[i] = 1 / Math.Sqrt(1 + squared);
                threshold[i] = InverseNormalCdf(probabilities[i]);
            }
        }
        fillCodes = new float[n];
        prefetcher = new BatchPrefetcher(options.BatchTokens * d, Fill, options.Prefetch);
    }

    /// <summary>p_i = min(1, c · decay^i) with c found by bisection so that Σ p_i = activeMean.</summary>
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

    /// <summary>The sparse code of token t: the coefficient of every feature [Features], 0 where it does not fire.</summary>
    public void Codes(long token, Span<float> codes)
    {
        int n = options.Features;
        if (codes.Length != n) throw new ArgumentException($"codes holds {codes.Length} values, not n_features = {n}", nameof(codes));
        var coefficientKey = CounterRng.Key(options.Seed, CoefficientStream, (ulong)token);
        if (!options.Correlated)
        {
            var key = CounterRng.Key(options.Seed, FireStream, (ulong)token);
            for (var i = 0; i < n; i++)
            {
                var u = (CounterRng.Next(key, (ulong)i) >> 11) * (1.0 / (1UL << 53));
                codes[i] = u < probabilities[i] ? Coefficient(coefficientKey, i) : 0f;
            }
            return;
        }
        var r = options.CorrelationRank;
        var copulaKey = CounterRng.Key(options.Seed, CopulaStream, (ulong)token);
        Span<double> g = stackalloc double[r];
        for (var k = 0; k < r; k++)
            g[k] = CounterRng.Normal(CounterRng.Next(copulaKey, 2 * (ulong)k), CounterRng.Next(copulaKey, 2 * (ulong)k + 1));
        var errorBase = 2 * (ulong)r;
        for (var i = 0; i < n; i++)
        {
            var e = CounterRng.Normal(CounterRng.Next(copulaKey, errorBase + 2 * (ulong)i), CounterRng.Next(copulaKey, errorBase + 2 * (ulong)i + 1));
            var z = e;
            for (var k = 0; k < r; k++) z += factor[i * r + k] * g[k];
            codes[i] = z * scale[i] < threshold[i] ? Coefficient(coefficientKey, i) : 0f;
        }
    }

    // Uniform in (0, 1], never exactly 0, so a firing feature always has a non-zero coefficient.
    private static float Coefficient(ulong key, int i) => ((CounterRng.Next(key, (ulong)i) >> 40) + 1) * (1.0f / (1 << 24));

    /// <summary>Tokens [firstToken, firstToken + count) into destination [count][D].</summary>
    public void Generate(long firstToken, Span<float> destination)
    {
        if (destination.Length % options.D != 0)
            throw new ArgumentException($"destination holds {destination.Length} values, not a multiple of d = {options.D}", nameof(destination));
        Generate(firstToken, destination, new float[options.Features]);
    }

    private void Generate(long firstToken, Span<float> destination, float[] codes)
    {
        int n = options.Features, d = options.D;
        var tokens = destination.Length / d;
        for (var t = 0; t < tokens; t++)
        {
            Codes(firstToken + t, codes);
            var x = destination.Slice(t * d, d);
            x.Clear();
            for (var i = 0; i < n; i++)
            {
                var c = codes[i];
                if (c == 0) continue;
                var f = features.AsSpan(i * d, d);
                for (var j = 0; j < d; j++) x[j] += c * f[j];
            }
        }
    }

    private void Fill(Span<float> batch)
    {
        Generate(generated, batch, fillCodes);
        generated += options.BatchTokens;
    }

    public ReadOnlyMemory<float> Next()
    {
        var batch = prefetcher.Next();
        tokensServed += options.BatchTokens;
        return batch;
    }

    public SourceState State => new("synthetic", options.Seed, tokensServed, 0, tokensServed, 0, options.D, 0, 0);

    public void Restore(SourceState state)
    {
        if (state.Source != "synthetic" || state.Seed != options.Seed || state.D != options.D)
            throw new DataFormatException($"source state ({state.Source}, seed {state.Seed}, d = {state.D}) does not match this synthetic source (seed {options.Seed}, d = {options.D})");
        if (state.TokensServed < 0) throw new DataFormatException($"source state: tokens_served = {state.TokensServed}; must be ≥ 0");
        prefetcher.Stop();
        tokensServed = generated = state.TokensServed;
    }

    /// <summary>
    /// Writes tokens [0, tokens) as shards of tokensPerShard tokens (shard_00000.npy, … or .f32 for RawF32) and
    /// <see cref="GroundTruthFile"/> holding "features" [Features][D] and "probabilities" [Features], so a run over the
    /// files can be scored against the truth. Returns the shard paths.
    /// </summary>
    public IReadOnlyList<string> WriteShards(string directory, long tokens, long tokensPerShard, ActivationFileFormat format = ActivationFileFormat.Npy)
    {
        if (tokens < 1 || tokensPerShard < 1) throw new ArgumentOutOfRangeException(nameof(tokens), $"tokens = {tokens}, tokens_per_shard = {tokensPerShard}; both must be ≥ 1");
        if (format is not (ActivationFileFormat.Npy or ActivationFileFormat.RawF32))
            throw new ArgumentException($"synthetic shards are written as Npy or RawF32, not {format}", nameof(format));
        Directory.CreateDirectory(directory);
        var extension = format == ActivationFileFormat.Npy ? ".npy" : ".f32";
        var paths = new List<string>();
        var block = new float[(int)Math.Min(4096, tokensPerShard) * options.D];
        for (long first = 0, index = 0; first < tokens; first += tokensPerShard, index++)
        {
            var path = Path.Combine(directory, "shard_" + index.ToString("D5", CultureInfo.InvariantCulture) + extension);
            var count = Math.Min(tokensPerShard, tokens - first);
            using var writer = ActivationShardWriter.Create(path, format, count, options.D);
            for (long t = 0; t < count; t += block.Length / options.D)
            {
                var span = block.AsSpan(0, (int)Math.Min(block.Length / options.D, count - t) * options.D);
                Generate(first + t, span);
                writer.Append(span);
            }
            writer.Complete();
            paths.Add(path);
        }
        WriteGroundTruth(directory, tokens);
        return paths;
    }

    /// <summary>Writes ground_truth.safetensors (the features, their probabilities, the generator's settings) into
    /// <paramref name="directory"/>, for files holding <paramref name="tokens"/> tokens of this source.</summary>
    public void WriteGroundTruth(string directory, long tokens)
    {
        var metadata = new Dictionary<string, string>
        {
            ["generator"] = "sharkey2022",
            ["seed"] = options.Seed.ToString(CultureInfo.InvariantCulture),
            ["d"] = options.D.ToString(CultureInfo.InvariantCulture),
            ["n_features"] = options.Features.ToString(CultureInfo.InvariantCulture),
            ["decay"] = options.Decay.ToString("R", CultureInfo.InvariantCulture),
            ["active_mean"] = options.ActiveMean.ToString("R", CultureInfo.InvariantCulture),
            ["correlated"] = options.Correlated ? "true" : "false",
            ["correlation_rank"] = options.CorrelationRank.ToString(CultureInfo.InvariantCulture),
            ["tokens"] = tokens.ToString(CultureInfo.InvariantCulture),
        };
        GroundTruthFile.Write(directory, features.ToArray(), options.Features, options.D,
            probabilities.Select(p => (float)p).ToArray(), metadata);
    }

    /// <summary>Φ⁻¹(p) by Acklam's rational approximation (relative error below 1.2e-9).</summary>
    internal static double InverseNormalCdf(double p)
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

    public void Dispose() => prefetcher.Dispose();
}
