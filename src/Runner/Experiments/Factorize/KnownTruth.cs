using System.Globalization;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>Samples with their true codes, in order: x and, per sample, the true features with a code &gt; 0.</summary>
public interface ITruthSamples : IDisposable
{
    /// <summary>Samples left (long.MaxValue for a generator).</summary>
    long Available { get; }

    /// <summary>The next count samples into x [count][d]; their true features: sample t's are
    /// Index[RowBegin[t] .. RowBegin[t+1]).</summary>
    SparseCodes Next(int count, Span<float> x);
}

/// <summary>
/// What a run knows of its data's ground truth: the true features [Count][D], and where samples with known codes come
/// from when they can be had: fresh samples of the generator (its evaluation stream, never met in training), for
/// synthetic data and for files written with their generator's settings (synthesize); or the true codes a harvest
/// wrote beside its activations (codes_*.npy beside hidden_*.npy), read in order.
/// </summary>
public sealed class KnownTruth : IDisposable
{
    private readonly Func<ITruthSamples>? openSamples;
    private readonly IDisposable? owned;

    public float[] Features { get; }
    public int Count { get; }
    public int D { get; }

    /// <summary>Where samples with known codes come from ("generator", "harvest"); null when there are none.</summary>
    public string? SamplesSource { get; }

    private KnownTruth(float[] features, int count, int d, string? samplesSource, Func<ITruthSamples>? openSamples,
        IDisposable? owned = null)
    {
        Features = features;
        Count = count;
        D = d;
        SamplesSource = samplesSource;
        this.openSamples = openSamples;
        this.owned = owned;
    }

    /// <summary>Whether SynthSAEBench's metrics can be measured (samples with known codes exist).</summary>
    public bool HasSamples => openSamples is not null;

    /// <summary>Samples with known codes from the start (fresh ones for a generator).</summary>
    public ITruthSamples OpenSamples() =>
        openSamples?.Invoke() ?? throw new InvalidOperationException("no samples with known codes");

    /// <summary>The truth of a generator the caller keeps alive.</summary>
    public static KnownTruth Of(SynthGenerator generator)
    {
        var truth = generator.Truth;
        return new KnownTruth(truth.Features, generator.NFeatures, generator.D, "generator", () => new GeneratorSamples(generator));
    }

    /// <summary>The ground_truth.safetensors beside activation files (null when there is none, or its features are not of
    /// dimension <paramref name="d"/>): with the generator built again from its settings when the file records them, or
    /// with the harvest's codes when they lie beside the shards.</summary>
    public static KnownTruth? Beside(EngineContext context, string pathOrFolder, int d)
    {
        if (GroundTruthFile.Beside(pathOrFolder) is not { } path) return null;
        var file = GroundTruthFile.Read(path);
        if (file.D != d) return null;
        if (file.Metadata.TryGetValue(GroundTruthFile.SyntheticKey, out var json))
        {
            var spec = ReadSynthetic(json, path);
            if (spec.Generator.NFeatures == file.N && spec.Generator.D == d)
            {
                var generator = new SynthGenerator(context, spec.Generator, file.Features, file.Bias ?? new float[d]);
                return new KnownTruth(file.Features, file.N, d, "generator", () => new GeneratorSamples(generator), generator);
            }
        }
        var folder = Path.GetDirectoryName(path)!;
        if (HarvestSamples.Pairs(folder, file.N, d) is { Count: > 0 } pairs)
            return new KnownTruth(file.Features, file.N, d, "harvest", () => new HarvestSamples(pairs, file.N, d));
        return new KnownTruth(file.Features, file.N, d, null, null);
    }

    // The data.synthetic section a generator's file records, as the config loader reads it.
    private static SyntheticSpec ReadSynthetic(string json, string path) =>
        FactorizeConfigLoader.ParseSynthetic(json, $"{path}: metadata \"{GroundTruthFile.SyntheticKey}\"");

    public void Dispose() => owned?.Dispose();

    private sealed class GeneratorSamples(SynthGenerator generator) : ITruthSamples
    {
        private long next;

        public long Available => long.MaxValue;

        public SparseCodes Next(int count, Span<float> x)
        {
            var codes = generator.SampleSparse(SynthStream.Evaluate, next, count, x);
            next += count;
            return codes;
        }

        public void Dispose() { }
    }

    /// <summary>hidden_NNNNN.npy with codes_NNNNN.npy (the true x [tokens][n]) beside it, as harvest writes them.</summary>
    private sealed class HarvestSamples : ITruthSamples
    {
        private readonly IReadOnlyList<(string Hidden, string Codes)> pairs;
        private readonly int n, d;
        private readonly float[] dense;
        private int shard;
        private long token;
        private IActivationShard? hidden, codes;

        public HarvestSamples(IReadOnlyList<(string, string)> pairs, int n, int d)
        {
            this.pairs = pairs;
            this.n = n;
            this.d = d;
            dense = new float[n];
            Available = pairs.Sum(p => { using var s = NpyShard.Open(p.Item1); return s.Tokens; });
        }

        public long Available { get; }

        /// <summary>The pairs in a folder whose shards have the right widths, in order; empty when any is missing.</summary>
        public static List<(string, string)> Pairs(string folder, int n, int d)
        {
            var result = new List<(string, string)>();
            foreach (var hiddenPath in Directory.GetFiles(folder, "hidden_*.npy").Order(StringComparer.Ordinal))
            {
                var codesPath = Path.Combine(folder, "codes_" + Path.GetFileName(hiddenPath)["hidden_".Length..]);
                if (!File.Exists(codesPath)) return [];
                using var h = NpyShard.Open(hiddenPath);
                using var c = NpyShard.Open(codesPath);
                if (h.D != d || c.D != n || h.Tokens != c.Tokens) return [];
                result.Add((hiddenPath, codesPath));
            }
            return result;
        }

        public SparseCodes Next(int count, Span<float> x)
        {
            var rowBegin = new long[count + 1];
            var index = new List<int>();
            for (var t = 0; t < count; t++)
            {
                while (hidden is null || token >= hidden.Tokens)
                {
                    hidden?.Dispose();
                    codes?.Dispose();
                    if (shard >= pairs.Count) throw new InvalidOperationException("past the last harvested token");
                    hidden = NpyShard.Open(pairs[shard].Hidden);
                    codes = NpyShard.Open(pairs[shard].Codes);
                    shard++;
                    token = 0;
                }
                hidden.Read(token, x.Slice(t * d, d));
                codes!.Read(token, dense);
                token++;
                for (var i = 0; i < n; i++)
                    if (dense[i] > 0) index.Add(i);
                rowBegin[t + 1] = index.Count;
            }
            return new SparseCodes(rowBegin, index.ToArray(), []);
        }

        public void Dispose()
        {
            hidden?.Dispose();
            codes?.Dispose();
        }
    }
}

/// <summary>SynthSAEBench's metrics of a saved dictionary against a known truth, on samples with known codes.</summary>
public static class TruthEvaluation
{
    /// <summary>The metrics block of metrics.json: what was measured and on how many samples, from where.</summary>
    public sealed record Result(Analysis.SynthEvalResult Metrics, long Samples, string Source, double Seconds);

    /// <summary>Measures <paramref name="dict"/> (applied to raw x) on min(samples, available) samples, in batches of
    /// <paramref name="batch"/>: codes from the dictionary's encoder (the engine's GEMM on a CPU context), x̂ from them.
    /// Cancelling throws OperationCanceledException.</summary>
    public static Result Measure(SaeDictionary dict, KnownTruth truth, long samples, int batch, CancellationToken cancel = default)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        int d = dict.DIn, m = dict.DSae;
        var (best, uniqueness, mcc) = Geometry(dict, truth);  // the [features][latents] cosines are dropped here
        cancel.ThrowIfCancellationRequested();
        var accumulator = new Analysis.SynthMetrics.Accumulator(d, truth.Count, best);
        using var cpu = new EngineContext(Backend.Cpu);
        using var source = truth.OpenSamples();
        samples = Math.Min(samples, source.Available);
        batch = (int)Math.Max(1, Math.Min(batch, samples));
        var x = new float[(long)batch * d];
        var centred = new float[(long)batch * d];
        var codes = new float[(long)batch * m];
        var xHat = new float[(long)batch * d];
        var encoder = new Analysis.DictionaryEncoder(dict);
        for (long done = 0; done < samples;)
        {
            cancel.ThrowIfCancellationRequested();
            var count = (int)Math.Min(batch, samples - done);
            var xs = x.AsSpan(0, count * d);
            var known = source.Next(count, xs);
            for (var t = 0; t < count; t++)
                System.Numerics.Tensors.TensorPrimitives.Subtract(xs.Slice(t * d, d), dict.BDec, centred.AsSpan(t * d, d));
            var u = codes.AsSpan(0, count * m);
            Gemm.Sgemm(cpu, count, m, d, centred.AsSpan(0, count * d), dict.WEnc, u);
            var reconstruction = xHat.AsSpan(0, count * d);
            for (var t = 0; t < count; t++)
            {
                var code = u.Slice(t * m, m);
                System.Numerics.Tensors.TensorPrimitives.Add(code, dict.BEnc, code);
                encoder.Activate(code);
                var row = reconstruction.Slice(t * d, d);
                dict.BDec.CopyTo(row);
                for (var j = 0; j < m; j++)
                    if (code[j] != 0) System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(dict.WDec.AsSpan(j * d, d), code[j], row, row);
            }
            accumulator.AddSparse(xs, reconstruction, u, known.RowBegin, known.Index);
            done += count;
        }
        return new Result(accumulator.Result(mcc, uniqueness), accumulator.Samples, truth.SamplesSource!, clock.Elapsed.TotalSeconds);
    }

    // Each latent's best feature, uniqueness and MCC, from |cos| of the decoder rows against the true features.
    private static (int[] Best, double Uniqueness, double Mcc) Geometry(SaeDictionary dict, KnownTruth truth)
    {
        var cosines = Analysis.DictionaryMetrics.Cosines(truth.Features, truth.Count, dict.WDec, dict.DSae, dict.DIn);
        var best = Analysis.SynthMetrics.BestFeatures(cosines);
        return (best, Analysis.SynthMetrics.Uniqueness(best), Analysis.SynthMetrics.Mcc(cosines));
    }
}
