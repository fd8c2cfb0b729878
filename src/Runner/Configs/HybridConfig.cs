using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Data;

namespace NativeEngine.Runner.Configs;

/// <summary>
/// The hybrid experiment: at each density, an ordinary ReLU-output toy model, the same with an L1 penalty on its
/// hidden activations, and a mixture of experts whose experts together have the same hidden size, each harvested
/// and factorized at several dictionary sizes.
/// </summary>
public sealed record HybridConfig(
    string? Title,
    int NFeatures,
    int NHidden,
    double Importance,
    double[] FeatureProbability,
    double L1,
    int NExperts,
    int TopK,
    int Repeats,
    long Steps,
    long HarvestTokens,
    int[] DictionarySizes,
    int? K,
    long SaeTokens,
    int SaeBatchSize,
    ulong Seed)
{
    public int ExpertHidden => NHidden / NExperts;

    /// <summary>The TopK dictionary's k at density p: the configured k, or the expected number of active features
    /// n·p rounded up (at least 1).</summary>
    public int KAt(double p) => K ?? Math.Max(1, (int)Math.Ceiling(NFeatures * p - 1e-9));

    /// <summary>The ordinary and L1 models: every density × {0, λ} × repeats, one batched run.</summary>
    public ToyConfig DenseConfig() =>
        ToyConfig.Swept(ToyModelKind.ReluOutput, NFeatures, NHidden, Importance,
            new ToySweep(FeatureProbability, null, [0, L1], Repeats, KeepAll: false), title: "hybrid: ordinary and L1 models")
        with { Steps = Steps, Seed = Seed };

    /// <summary>The MoE: E experts of width n_hidden / E, top_k, every density × repeats.</summary>
    public MoeConfig MoeConfig() =>
        new(ToyConfig.Swept(ToyModelKind.ReluOutput, NFeatures, ExpertHidden, Importance,
                new ToySweep(FeatureProbability, null, null, Repeats, KeepAll: false), title: "hybrid: mixture of experts")
            with { Steps = Steps, Seed = Seed },
            NExperts, TopK, new RouterSettings(Renormalize: false, Noise: RouterNoise.None, LoadBalance: 0.01f, ZLoss: 0.001f));

    /// <summary>The factorization of one harvested model at one dictionary size: TopK, lr 3e-3 decaying over the
    /// last fifth.</summary>
    public FactorizeConfig FactorizeConfig(string hiddenGlob, int dSae, double p) =>
        new(new FilesSpec([hiddenGlob], ActivationFileFormat.Npy, null, null),
            new SaeSpec(SaeArchitecture.TopK, dSae, Math.Min(KAt(p), dSae), 0, 0, 1.0 / 32, 10_000_000, ActivationNormalization.None),
            new TrainSpec(SaeTokens, SaeBatchSize, 0.003, 0, Math.Max(1, SaeTokens / SaeBatchSize / 5), 0, Seed, SaePrecision.Fp32));
}

public static class HybridConfigLoader
{
    public static HybridConfig LoadFile(string path)
    {
        return Parse(JsonObjectReader.ReadFile(path), path);
    }

    public static HybridConfig Parse(string json, string source)
    {
        using var document = JsonObjectReader.Parse(json, source);
        var r = new JsonObjectReader(document.RootElement, source);
        string? title = r.TryGet("title", out var t) ? t.GetString() : null;
        var n = (int)r.Integer("n_features", 2, 10_000);
        var m = (int)r.Integer("n_hidden", 1, n);
        var importance = r.Number("importance", 1.0, v => v > 0 && v <= 1, "a number in (0, 1]");
        var densities = Numbers(r, "feature_probability", v => v > 0 && v <= 1, "numbers in (0, 1]");
        var l1 = r.Number("l1", 0.01, v => v > 0, "a number > 0 (the L1 model's penalty)");
        var experts = (int)r.Integer("n_experts", 2, m);
        if (m % experts != 0)
            throw r.Error("n_experts", $"is {experts}; n_hidden ({m}) must divide into experts of equal width, so valid: a divisor of {m} >= 2");
        var topK = (int)r.Integer("top_k", 1, experts, 1);
        var repeats = (int)r.Integer("repeats", 1, 100, 1);
        var steps = r.Integer("steps", 1, 10_000_000, 10_000);
        var harvest = r.Integer("harvest_tokens", 1024, 1L << 32, 1 << 17);
        var sizes = Numbers(r, "dictionary_sizes", v => v >= 1 && v <= 1 << 20 && v == Math.Floor(v), "integers in [1, 1048576]")
            .Select(v => (int)v).ToArray();
        int? k = r.TryGet("k", out _) ? (int)r.Integer("k", 1, sizes.Min()) : null;
        var saeTokens = r.Integer("sae_tokens", 1024, 1L << 40, 1 << 20);
        var saeBatch = (int)r.Integer("sae_batch_size", 1, 1 << 20, 1024);
        var seed = r.UnsignedInteger("seed", 0);
        r.RejectUnknownKeys();
        return new HybridConfig(title, n, m, importance, densities, l1, experts, topK, repeats, steps, harvest, sizes, k,
            saeTokens, saeBatch, seed);
    }

    private static double[] Numbers(JsonObjectReader r, string key, Func<double, bool> isValid, string valid)
    {
        var value = r.Require(key, $"a non-empty list of {valid}");
        if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() == 0)
            throw r.Error(key, $"must be a non-empty list of {valid}, found {JsonObjectReader.Describe(value)}");
        return value.EnumerateArray().Select(v => r.ToNumber(v, key, isValid, valid)).ToArray();
    }
}
