using System.Text.Json;

namespace NativeEngine.Runner.Configs;

/// <summary>Where the activations come from: generated with known ground truth, or files.</summary>
public abstract record DataSpec;

/// <summary>Sharkey et al. (2022) as replicated: n_features random unit-norm features in d dimensions; feature i
/// fires with probability ∝ decay^i, scaled so that on average active_mean fire; coefficients U[0,1].</summary>
public sealed record SyntheticSpec(int D, int NFeatures, double ActiveMean, double ProbabilityDecay, bool Correlated,
    ulong Seed) : DataSpec;

/// <summary>Activation shards on disk (tokens × d).</summary>
public sealed record FilesSpec(string[] Files, string Format, string? Tensor, string Dtype, int? D) : DataSpec;

public sealed record SaeSpec(string Architecture, int DSae, int? K, double L1Coefficient, double AuxkAlpha,
    long DeadWindow, string NormalizeActivations);

public sealed record TrainSpec(long Tokens, int BatchSize, double Lr, long WarmupSteps, long DecaySteps,
    long CheckpointEvery, ulong Seed, string Precision);

/// <summary>A factorization run (`factorize`), resolved: every default filled in.</summary>
public sealed record FactorizeConfig(DataSpec Data, SaeSpec Sae, TrainSpec Train)
{
    /// <summary>Input dimension d, known up front for synthetic data and raw files, else from the first shard.</summary>
    public int? D => Data switch
    {
        SyntheticSpec s => s.D,
        FilesSpec f => f.D,
        _ => null,
    };
}

public static class FactorizeConfigLoader
{
    public static readonly string[] Architectures = ["topk", "batchtopk", "relu", "jumprelu"];
    public static readonly string[] Formats = ["npy", "safetensors", "raw"];
    public static readonly string[] Dtypes = ["float32", "float16", "bfloat16"];
    public static readonly string[] Normalizations = ["none", "expected_average"];
    public static readonly string[] Precisions = ["fp32", "tf32", "bf16"];

    /// <summary>Gao et al. (2024)'s scaling of the learning rate with the dictionary size.</summary>
    public static double DefaultLr(int dSae) => 2e-4 / Math.Sqrt(dSae / 16384.0);

    public static FactorizeConfig LoadFile(string path)
    {
        if (!File.Exists(path)) throw new ConfigException($"config file {path} does not exist");
        return Parse(File.ReadAllText(path), path, Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".");
    }

    /// <param name="baseDirectory">Relative file paths and globs in "data.files" are resolved against it.</param>
    public static FactorizeConfig Parse(string json, string source, string baseDirectory)
    {
        using var document = JsonObjectReader.Parse(json, source);
        var r = new JsonObjectReader(document.RootElement, source);
        var data = ReadData(r, r.Nested(Object(r, "data", r.Require("data", "{\"synthetic\": {...}} or {\"files\": [...], ...}")), "data"), baseDirectory);
        var d = data switch { SyntheticSpec s => s.D, FilesSpec f => f.D, _ => null };
        var sae = ReadSae(r.Nested(Object(r, "sae", r.Require("sae", "{\"architecture\", \"d_sae\" or \"expansion\", ...}")), "sae"), d);
        var train = ReadTrain(r.TryGet("train", out var t) ? r.Nested(Object(r, "train", t), "train") : null, sae);
        r.RejectUnknownKeys();
        return new FactorizeConfig(data, sae, train);
    }

    private static JsonElement Object(JsonObjectReader r, string key, JsonElement value) =>
        value.ValueKind == JsonValueKind.Object ? value : throw r.Error(key, $"must be an object, found {JsonObjectReader.Describe(value)}");

    private static DataSpec ReadData(JsonObjectReader root, JsonObjectReader r, string baseDirectory)
    {
        var hasSynthetic = r.TryGet("synthetic", out var synthetic);
        var hasFiles = r.TryGet("files", out var files);
        if (hasSynthetic == hasFiles)
            throw root.Error("data", "needs exactly one of \"synthetic\" (generated, with ground truth) and \"files\" (activation shards)");
        if (hasSynthetic)
        {
            r.RejectUnknownKeys();
            var s = r.Nested(Object(r, "synthetic", synthetic), "synthetic");
            var d = (int)s.Integer("d", 1, 1 << 20, 256);
            var spec = new SyntheticSpec(d, (int)s.Integer("n_features", 1, 1 << 24, 512),
                s.Number("active_mean", 5, v => v > 0, "a number > 0 (features firing per token on average)"),
                s.Number("probability_decay", 0.99, v => v > 0 && v <= 1, "a number in (0, 1]"),
                Flag(s, "correlated", false), s.UnsignedInteger("seed", 0));
            if (spec.ActiveMean > spec.NFeatures)
                throw s.Error("active_mean", $"is {spec.ActiveMean}; at most n_features ({spec.NFeatures}) can fire");
            s.RejectUnknownKeys();
            return spec;
        }
        if (files.ValueKind != JsonValueKind.Array || files.GetArrayLength() == 0 ||
            files.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(e.GetString())))
            throw r.Error("files", $"must be a non-empty array of paths or globs, found {JsonObjectReader.Describe(files)}");
        var paths = files.EnumerateArray().Select(e => e.GetString()!)
            .Select(p => Path.IsPathRooted(p) ? p : Path.Combine(baseDirectory, p)).ToArray();
        var format = OneOf(r, "format", Formats, null);
        string? tensor = null;
        if (r.TryGet("tensor", out var tensorValue))
            tensor = tensorValue.ValueKind == JsonValueKind.String ? tensorValue.GetString() : throw r.Error("tensor", "must be a string");
        if (format == "safetensors" && tensor is null) throw r.Error("tensor", "is required with format \"safetensors\" (the tensor to read)");
        var dtype = OneOf(r, "dtype", Dtypes, "float32");
        int? dim = r.TryGet("d", out _) ? (int)r.Integer("d", 1, 1 << 20) : null;
        if (format == "raw" && dim is null) throw r.Error("d", "is required with format \"raw\" (raw shards carry no shape)");
        r.RejectUnknownKeys();
        return new FilesSpec(paths, format, tensor, dtype, dim);
    }

    private static SaeSpec ReadSae(JsonObjectReader r, int? d)
    {
        var architecture = OneOf(r, "architecture", Architectures, null);
        var hasSize = r.TryGet("d_sae", out _);
        var hasExpansion = r.TryGet("expansion", out _);
        if (hasSize == hasExpansion)
            throw new ConfigException($"{r.Source}: give exactly one of \"d_sae\" (latents) and \"expansion\" (latents per input dimension)");
        int dSae;
        if (hasSize) dSae = (int)r.Integer("d_sae", 1, 1 << 26);
        else if (d is { } dim) dSae = checked((int)(r.Integer("expansion", 1, 100_000) * dim));
        else throw r.Error("expansion", "needs d known up front (synthetic data or raw files); give \"d_sae\" instead");
        int? k = null;
        if (architecture is "topk" or "batchtopk") k = (int)r.Integer("k", 1, dSae);
        else if (r.TryGet("k", out _)) throw r.Error("k", $"is for topk and batchtopk; architecture \"{architecture}\" does not use it");
        var l1 = r.Number("l1_coefficient", architecture is "relu" or "jumprelu" ? 5.0 : 0.0, v => v >= 0, "a number >= 0");
        var auxk = r.Number("auxk_alpha", architecture is "topk" or "batchtopk" ? 1.0 / 32 : 0.0, v => v >= 0, "a number >= 0");
        var deadWindow = r.Integer("dead_window", 1, long.MaxValue, 10_000_000);
        var normalize = OneOf(r, "normalize_activations", Normalizations, "none");
        r.RejectUnknownKeys();
        return new SaeSpec(architecture, dSae, k, l1, auxk, deadWindow, normalize);
    }

    private static TrainSpec ReadTrain(JsonObjectReader? r, SaeSpec sae)
    {
        if (r is null) return new TrainSpec(1_000_000, 4096, DefaultLr(sae.DSae), 0, 0, 0, 0, "fp32");
        var tokens = r.Integer("tokens", 1, long.MaxValue, 1_000_000);
        var batch = (int)r.Integer("batch_size", 1, 1 << 20, 4096);
        var spec = new TrainSpec(tokens, batch, r.Number("lr", DefaultLr(sae.DSae), v => v > 0, "a number > 0"),
            r.Integer("warmup_steps", 0, long.MaxValue, 0), r.Integer("decay_steps", 0, long.MaxValue, 0),
            r.Integer("checkpoint_every", 0, long.MaxValue, 0), r.UnsignedInteger("seed", 0),
            OneOf(r, "precision", Precisions, "fp32"));
        r.RejectUnknownKeys();
        return spec;
    }

    private static bool Flag(JsonObjectReader r, string key, bool fallback)
    {
        if (!r.TryGet(key, out var value)) return fallback;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw r.Error(key, $"must be true or false, found {JsonObjectReader.Describe(value)}"),
        };
    }

    private static string OneOf(JsonObjectReader r, string key, string[] choices, string? fallback) =>
        r.Choice(key, choices.ToDictionary(c => c, c => new Choice(c)), fallback is null ? null : new Choice(fallback)).Value;

    private readonly record struct Choice(string Value);
}
