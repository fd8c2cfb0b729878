using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Configs;

/// <summary>Where the activations come from: generated with known ground truth, or files.</summary>
public abstract record DataSpec;

/// <summary>Activations generated natively with a known ground truth (<see cref="SynthGenerator"/>), drawn where the
/// dictionary trains.</summary>
public abstract record SyntheticSpec : DataSpec
{
    /// <summary>The native generator's every setting (d, n_features and seed among them).</summary>
    public abstract SynthGeneratorSpec Generator { get; }
}

/// <summary>Sharkey et al. (2022) (kind "sharkey"): n_features random unit-norm features in d dimensions; feature i
/// fires with probability ∝ decay^i, scaled so that on average active_mean fire; coefficients U(0, 1]; with
/// correlated, the firing goes through a Gaussian copula of rank <see cref="CorrelationRank"/>.</summary>
public sealed record SharkeySpec(int D, int NFeatures, double ActiveMean, double ProbabilityDecay, bool Correlated,
    ulong Seed) : SyntheticSpec
{
    /// <summary>The copula's rank when correlated (typical |Σ_ij| ≈ 0.4).</summary>
    public const int CorrelationRank = 4;

    public override SynthGeneratorSpec Generator =>
        SynthGeneratorSpec.Sharkey(D, NFeatures, ProbabilityDecay, ActiveMean, Correlated ? CorrelationRank : 0, Seed);
}

/// <summary>SynthSAEBench (kind "synthsaebench", docs/synthsaebench.md): every parameter resolved, from the preset
/// named (if any) with the keys given on top.</summary>
public sealed record SynthSaeBenchSpec(SynthGeneratorSpec Settings, string? Preset) : SyntheticSpec
{
    public override SynthGeneratorSpec Generator => Settings;
}

/// <summary>Activation shards on disk (tokens × d): absolute paths or globs, their format (raw shards with their
/// element type), the tensor read from .safetensors files, d (required for raw shards), the column read from Arrow
/// files (paths may then be dataset folders: a SAELens cache, any save_to_disk folder), and what a token holding NaN
/// or infinity does (an error naming it, or left out and counted).</summary>
public sealed record FilesSpec(string[] Files, ActivationFileFormat Format, string? Tensor, int? D, string? Column = null,
    NonFiniteInput NonFinite = NonFiniteInput.Error) : DataSpec
{
    public ActivationFiles ToActivationFiles() => new(Files, Format, D, Tensor, Column);
}

/// <summary>How activations are scaled before training (and the scale folded back into the saved dictionary).</summary>
public enum ActivationNormalization
{
    None,
    /// <summary>x · sqrt(d / E‖x‖²): unit mean squared norm (SAELens's "expected_average_only_in").</summary>
    ExpectedAverage,
}

/// <param name="L1Coefficient">relu: the L1 penalty's weight (0 for the other architectures).</param>
/// <param name="L0Coefficient">jumprelu: the L0 penalty's weight (0 for the other architectures).</param>
/// <param name="MatryoshkaWidths">matryoshka_batchtopk: the nested widths, strictly increasing, the last d_sae (null
/// for the other architectures).</param>
/// <param name="Pursuit">matching_pursuit: its stopping rules (null for the other architectures).</param>
/// <param name="SparsityWarmupSteps">relu, jumprelu: the coefficient rises linearly from 0 over these first steps
/// (coefficient · min(1, (step + 1) / steps), SAELens's l1_warm_up_steps); 0: none.</param>
/// <param name="TargetL0">relu, jumprelu: a controller that multiplies the coefficient during training towards a target
/// L0 (null: the coefficient as given).</param>
/// <param name="JumpBandwidth">jumprelu: the width of the straight-through estimator's rectangle, in the units of the
/// (normalised) pre-activations.</param>
/// <param name="JumpInitialThreshold">jumprelu: every latent's threshold θ at the start (SAELens's
/// jumprelu_init_threshold; the parameter is log θ, so θ moves by factors).</param>
/// <param name="MatryoshkaAuxLoss">matryoshka_batchtopk: AuxK one term per level, each level's dead latents on the
/// residual of the levels up to it (SAELens's use_matryoshka_aux_loss); false: one AuxK on the full residual.</param>
public sealed record SaeSpec(SaeArchitecture Architecture, int DSae, int? K, double L1Coefficient, double L0Coefficient,
    double AuxkAlpha, long DeadWindow, ActivationNormalization Normalization, long[]? MatryoshkaWidths = null,
    MatchingPursuitSettings? Pursuit = null, long SparsityWarmupSteps = 0, TargetL0Spec? TargetL0 = null,
    double JumpBandwidth = SaeSpec.DefaultJumpBandwidth, double JumpInitialThreshold = SaeSpec.DefaultJumpInitialThreshold,
    bool MatryoshkaAuxLoss = false)
{
    public const double DefaultJumpBandwidth = 1e-3;
    public const double DefaultJumpInitialThreshold = 1e-3;

    /// <summary>The coefficient the architecture's sparsity term uses (L1 for relu, L0 for jumprelu; 0 otherwise).</summary>
    public double SparsityCoefficient => Architecture switch
    {
        SaeArchitecture.Relu => L1Coefficient,
        SaeArchitecture.JumpRelu => L0Coefficient,
        _ => 0,
    };

    // The widths by value: a config read back is the same run.
    public bool Equals(SaeSpec? other) =>
        other is not null && (Architecture, DSae, K, L1Coefficient, L0Coefficient, AuxkAlpha, DeadWindow, Normalization, Pursuit) ==
        (other.Architecture, other.DSae, other.K, other.L1Coefficient, other.L0Coefficient, other.AuxkAlpha,
            other.DeadWindow, other.Normalization, other.Pursuit) &&
        (SparsityWarmupSteps, TargetL0, JumpBandwidth, JumpInitialThreshold, MatryoshkaAuxLoss) ==
        (other.SparsityWarmupSteps, other.TargetL0, other.JumpBandwidth, other.JumpInitialThreshold, other.MatryoshkaAuxLoss) &&
        (MatryoshkaWidths ?? []).SequenceEqual(other.MatryoshkaWidths ?? []);

    public override int GetHashCode() =>
        HashCode.Combine(Architecture, DSae, K, L1Coefficient, L0Coefficient, AuxkAlpha, DeadWindow, Normalization);
}

/// <summary>
/// sae.target_l0 with sae.l0_controller: the coefficient autotuner of SynthSAEBench's experiments (a rate-damped
/// integral controller on a multiplier of the sparsity coefficient). After each step from <see cref="StartStep"/> on,
/// with the step's mean L0 smoothed by an EMA (<see cref="Smoothing"/>) and the smoothed L0's change by another
/// (<see cref="RateSmoothing"/>), error e = smoothed − target: outside the dead band the multiplier is multiplied by
/// 1 ± gain · tanh(|e| / target · <see cref="GainScale"/>) (+ when L0 is too high), gain = <see cref="IntegralGain"/>, times
/// <see cref="ConvergenceGain"/> while L0 already moves towards the target; clamped to [min, max].
/// </summary>
public sealed record TargetL0Spec(double TargetL0, long StartStep = 0, double Smoothing = 0.99, double RateSmoothing = 0.95,
    double IntegralGain = 3e-4, double GainScale = 10, double ConvergenceGain = 0.01, double MinMultiplier = 0.01,
    double MaxMultiplier = 100, double Deadband = 0);

public sealed record TrainSpec(long Tokens, int BatchSize, double Lr, long WarmupSteps, long DecaySteps,
    long CheckpointEvery, ulong Seed, SaePrecision Precision)
{
    /// <summary>Optimizer steps: whole batches, the last one completing the token budget.</summary>
    public long Steps => (Tokens + BatchSize - 1) / BatchSize;
}

/// <summary>How a dictionary is measured against a known ground truth (SynthSAEBench's metrics): on
/// <paramref name="Samples"/> fresh samples with known codes.</summary>
public sealed record EvalSpec(long Samples)
{
    public static readonly EvalSpec Default = new(100_000);
}

/// <summary>How a run launched on several processes (mpirun, srun) splits: LatentShards ranks share the latents of
/// each data-parallel group (processes / LatentShards groups read disjoint parts of the data).</summary>
public sealed record DistributedSpec(int LatentShards);

/// <summary>A factorization run (`factorize`), resolved: every default filled in.</summary>
/// <param name="Metadata">Where the activations come from, written into the dictionary's cfg.json (SAELens).</param>
/// <param name="Format">The layout the dictionary is written in.</param>
/// <param name="Eval">The measurement against the ground truth, when the data has one.</param>
/// <param name="Distributed">Null when the config has no "distributed" section (one latent shard: every process of a
/// launch is a data-parallel group).</param>
public sealed record FactorizeConfig(DataSpec Data, SaeSpec Sae, TrainSpec Train, DictionaryMetadata? Metadata = null,
    DictionaryFormat Format = DictionaryFormat.SaeLens, EvalSpec? Eval = null, DistributedSpec? Distributed = null)
{
    public EvalSpec Evaluation => Eval ?? EvalSpec.Default;

    /// <summary>Input dimension d, known up front for synthetic data and raw files, else from the first shard.</summary>
    public int? D => Data switch
    {
        SyntheticSpec s => (int)s.Generator.D,
        FilesSpec f => f.D,
        _ => null,
    };
}

public static class FactorizeConfigLoader
{
    public static readonly IReadOnlyDictionary<string, SaeArchitecture> Architectures = new Dictionary<string, SaeArchitecture>
    {
        ["topk"] = SaeArchitecture.TopK,
        ["batchtopk"] = SaeArchitecture.BatchTopK,
        ["relu"] = SaeArchitecture.Relu,
        ["jumprelu"] = SaeArchitecture.JumpRelu,
        ["matryoshka_batchtopk"] = SaeArchitecture.MatryoshkaBatchTopK,
        ["matching_pursuit"] = SaeArchitecture.MatchingPursuit,
    };

    public static readonly IReadOnlyDictionary<string, SaePrecision> Precisions = new Dictionary<string, SaePrecision>
    {
        ["fp32"] = SaePrecision.Fp32,
        ["tf32"] = SaePrecision.Tf32,
        ["bf16"] = SaePrecision.Bf16,
    };

    public static readonly IReadOnlyDictionary<string, ActivationNormalization> Normalizations =
        new Dictionary<string, ActivationNormalization>
        {
            ["none"] = ActivationNormalization.None,
            ["expected_average"] = ActivationNormalization.ExpectedAverage,
        };

    private static readonly string[] FileFormats = ["npy", "safetensors", "raw", "arrow"];

    public static readonly IReadOnlyDictionary<string, NonFiniteInput> NonFiniteInputs = new Dictionary<string, NonFiniteInput>
    {
        ["error"] = NonFiniteInput.Error,
        ["skip"] = NonFiniteInput.Skip,
    };

    /// <summary>The element types of raw shards, by their config name.</summary>
    public static readonly IReadOnlyDictionary<string, ActivationFileFormat> RawDtypes = new Dictionary<string, ActivationFileFormat>
    {
        ["float32"] = ActivationFileFormat.RawF32,
        ["float16"] = ActivationFileFormat.RawF16,
        ["bfloat16"] = ActivationFileFormat.RawBF16,
    };

    public static string Name(SaeArchitecture architecture) => Architectures.First(p => p.Value == architecture).Key;

    /// <summary>Gao et al. (2024)'s scaling of the learning rate with the dictionary size.</summary>
    public static double DefaultLr(int dSae) => 2e-4 / Math.Sqrt(dSae / 16384.0);

    public static FactorizeConfig LoadFile(string path)
    {
        return Parse(JsonObjectReader.ReadFile(path), path, Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".");
    }

    /// <param name="baseDirectory">Relative file paths and globs in "data.files" are resolved against it.</param>
    public static FactorizeConfig Parse(string json, string source, string baseDirectory)
    {
        using var document = JsonObjectReader.Parse(json, source);
        var r = new JsonObjectReader(document.RootElement, source);
        var data = ReadDataSection(r, baseDirectory);
        var d = data switch { SyntheticSpec s => (int)s.Generator.D, FilesSpec f => f.D, _ => null };
        var sae = ReadSae(r.Nested(Object(r, "sae", r.Require("sae", "{\"architecture\", \"d_sae\" or \"expansion\", ...}")), "sae"), d);
        var train = ReadTrain(r.TryGet("train", out var t) ? r.Nested(Object(r, "train", t), "train") : null, sae);
        var metadata = r.TryGet("metadata", out var m) ? ReadMetadata(r.Nested(Object(r, "metadata", m), "metadata")) : DictionaryMetadata.None;
        var format = r.Choice("format", DictionaryFolder.Names, DictionaryFormat.SaeLens);
        CheckFormat(format, sae.Architecture, $"{r.Source}: \"format\"");
        var eval = ReadEval(r);
        var distributed = r.TryGet("distributed", out var dist) ? ReadDistributed(r.Nested(Object(r, "distributed", dist), "distributed"), sae) : null;
        r.RejectUnknownKeys();
        return new FactorizeConfig(data, sae, train, metadata, format, eval, distributed);
    }

    /// <summary>"eval": {"samples": N} under <paramref name="root"/>, or the default.</summary>
    public static EvalSpec ReadEval(JsonObjectReader root)
    {
        if (!root.TryGet("eval", out var value)) return EvalSpec.Default;
        var r = root.Nested(Object(root, "eval", value), "eval");
        var spec = new EvalSpec(r.Integer("samples", 1, 1L << 40, EvalSpec.Default.Samples));
        r.RejectUnknownKeys();
        return spec;
    }

    // The process count is known only at launch: FactorizeExperiment checks that latent_shards divides it.
    private static DistributedSpec ReadDistributed(JsonObjectReader r, SaeSpec sae)
    {
        var shards = (int)r.Integer("latent_shards", 1, 1 << 20, 1);
        if (sae.DSae % shards != 0)
            throw r.Error("latent_shards", $"is {shards}; it must divide sae.d_sae ({sae.DSae}): each shard holds d_sae / latent_shards latents");
        r.RejectUnknownKeys();
        return new DistributedSpec(shards);
    }

    /// <summary>Refuses a layout the architecture has no form in; <paramref name="setting"/> names where it was asked
    /// for (the config key or the option).</summary>
    public static void CheckFormat(DictionaryFormat format, SaeArchitecture architecture, string setting)
    {
        if (format == DictionaryFormat.Sparsify && Sparsify.WhyNotWritable(architecture) is { } why)
            throw new ConfigException($"{setting} is \"sparsify\" and sae.architecture is \"{Name(architecture)}\": {why}; " +
                                      "use \"saelens\" (every architecture) or a topk dictionary");
    }

    // SAELens's metadata keys for the activations' origin; each optional.
    private static DictionaryMetadata ReadMetadata(JsonObjectReader r)
    {
        string? Text(string key)
        {
            if (!r.TryGet(key, out var v)) return null;
            return v.ValueKind == JsonValueKind.String && !string.IsNullOrWhiteSpace(v.GetString())
                ? v.GetString()
                : throw r.Error(key, $"must be a non-empty string, found {JsonObjectReader.Describe(v)}");
        }
        var metadata = new DictionaryMetadata(
            ModelName: Text("model_name"),
            HookName: Text("hook_name"),
            HookHeadIndex: r.TryGet("hook_head_index", out var head) && head.ValueKind != JsonValueKind.Null
                ? (int)r.Integer("hook_head_index", 0, int.MaxValue)
                : null,
            ContextSize: r.TryGet("context_size", out _) ? (int)r.Integer("context_size", 1, int.MaxValue) : null,
            PrependBos: r.TryGet("prepend_bos", out _) ? Flag(r, "prepend_bos", true) : null,
            DatasetPath: Text("dataset_path"));
        r.RejectUnknownKeys();
        return metadata;
    }

    /// <summary>The "data" section of a config whose root is <paramref name="root"/> (required).</summary>
    public static DataSpec ReadDataSection(JsonObjectReader root, string baseDirectory) =>
        ReadData(root, root.Nested(Object(root, "data", root.Require("data", "{\"synthetic\": {...}} or {\"files\": [...], ...}")), "data"),
            baseDirectory);

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
            return ReadSynthetic(r.Nested(Object(r, "synthetic", synthetic), "synthetic"));
        }
        if (files.ValueKind != JsonValueKind.Array || files.GetArrayLength() == 0 ||
            files.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(e.GetString())))
            throw r.Error("files", $"must be a non-empty array of paths or globs, found {JsonObjectReader.Describe(files)}");
        var paths = files.EnumerateArray().Select(e => e.GetString()!)
            .Select(p => Path.IsPathRooted(p) ? p : Path.Combine(baseDirectory, p)).ToArray();
        var format = r.TryGet("format", out _) ? OneOf(r, "format", FileFormats, null) : FormatOfExtension(r, paths);
        string? tensor = null;
        if (r.TryGet("tensor", out var tensorValue))
            tensor = tensorValue.ValueKind == JsonValueKind.String ? tensorValue.GetString() : throw r.Error("tensor", "must be a string");
        if (format == "safetensors" && tensor is null) throw r.Error("tensor", "is required with format \"safetensors\" (the tensor to read)");
        string? column = null;
        if (r.TryGet("column", out var columnValue))
        {
            if (format != "arrow") throw r.Error("column", "is for format \"arrow\" (the column of the Arrow files to read)");
            column = columnValue.ValueKind == JsonValueKind.String && columnValue.GetString() is { Length: > 0 } c ? c
                : throw r.Error("column", $"must be a column name, found {JsonObjectReader.Describe(columnValue)}");
        }
        // .npy and .safetensors files name their element type; raw shards take it from "dtype"; Arrow files name
        // float32 and float16, and "dtype": "bfloat16" reads a 16-bit integer column as bfloat16 bits.
        var raw = r.Choice("dtype", RawDtypes, ActivationFileFormat.RawF32);
        if (format == "arrow" && r.TryGet("dtype", out _) && raw != ActivationFileFormat.RawBF16)
            throw r.Error("dtype", "with format \"arrow\" is read from the files (float32, float16); give only \"bfloat16\", for a 16-bit integer column holding bfloat16 bits");
        int? dim = r.TryGet("d", out _) ? (int)r.Integer("d", 1, 1 << 20) : null;
        if (format == "raw" && dim is null) throw r.Error("d", "is required with format \"raw\" (raw shards carry no shape)");
        var nonFinite = r.Choice("non_finite", NonFiniteInputs, NonFiniteInput.Error);
        r.RejectUnknownKeys();
        var resolved = format switch
        {
            "npy" => ActivationFileFormat.Npy,
            "safetensors" => ActivationFileFormat.SafeTensors,
            "arrow" => raw == ActivationFileFormat.RawBF16 ? ActivationFileFormat.ArrowBF16 : ActivationFileFormat.Arrow,
            _ => raw,
        };
        return new FilesSpec(paths, resolved, tensor, dim, column, nonFinite);
    }

    /// <summary>The kinds of synthetic data, by their config name.</summary>
    public static readonly IReadOnlyDictionary<string, SynthKind> SyntheticKinds = new Dictionary<string, SynthKind>
    {
        ["sharkey"] = SynthKind.Sharkey,
        ["synthsaebench"] = SynthKind.SaeBench,
    };

    /// <summary>SynthSAEBench's presets, by their config name.</summary>
    public static readonly IReadOnlyDictionary<string, SynthPreset> SynthPresets = new Dictionary<string, SynthPreset>
    {
        ["16k"] = SynthPreset.SaeBench16k,
    };

    public static string Name(SynthKind kind) => SyntheticKinds.First(p => p.Value == kind).Key;

    /// <summary>A data.synthetic section on its own (as a generator's ground-truth file records it).</summary>
    public static SyntheticSpec ParseSynthetic(string json, string source)
    {
        using var document = JsonObjectReader.Parse(json, source);
        if (document.RootElement.ValueKind != JsonValueKind.Object) throw new ConfigException($"{source}: must be an object");
        return ReadSynthetic(new JsonObjectReader(document.RootElement, source));
    }

    private static SyntheticSpec ReadSynthetic(JsonObjectReader s)
    {
        var kind = s.Choice("kind", SyntheticKinds, SynthKind.Sharkey);
        if (kind == SynthKind.SaeBench) return ReadSynthSaeBench(s);
        var d = (int)s.Integer("d", 1, 1 << 20, 256);
        var spec = new SharkeySpec(d, (int)s.Integer("n_features", 1, 1 << 24, 512),
            s.Number("active_mean", 5, v => v > 0, "a number > 0 (features firing per token on average)"),
            s.Number("probability_decay", 0.99, v => v > 0 && v <= 1, "a number in (0, 1]"),
            Flag(s, "correlated", false), s.UnsignedInteger("seed", 0));
        if (spec.ActiveMean > spec.NFeatures)
            throw s.Error("active_mean", $"is {spec.ActiveMean}; at most n_features ({spec.NFeatures}) can fire");
        s.RejectUnknownKeys();
        return spec;
    }

    // SynthSAEBench: every key optional on top of a preset; without one, n_features and d are required and the other
    // keys default to the 16k preset's values (the benchmark's choices).
    private static SynthSaeBenchSpec ReadSynthSaeBench(JsonObjectReader s)
    {
        string? preset = null;
        if (s.TryGet("preset", out _)) preset = OneOf(s, "preset", SynthPresets.Keys.ToArray(), null);
        var p = SynthGeneratorSpec.Preset(preset is null ? SynthPreset.SaeBench16k : SynthPresets[preset]);
        foreach (var key in new[] { "n_features", "d" })
            if (preset is null && !s.TryGet(key, out _))
                throw new ConfigException($"{s.Source}: missing required key \"{key}\" (an integer >= 1), or give \"preset\": " +
                                          string.Join(" | ", SynthPresets.Keys.Select(k => $"\"{k}\"")) + " for every value");
        var n = s.Integer("n_features", 1, 1 << 24, p.NFeatures);
        var d = s.Integer("d", 1, 1 << 20, p.D);
        var (branchingMin, branchingMax) = Branching(s, p);
        var meMinDepth = (int)s.Integer("mutually_exclusive_min_depth", 0, 1 << 20, p.MeMinDepth);
        int? meMaxDepth = p.MeMaxDepth;
        if (s.TryGet("mutually_exclusive_max_depth", out var maxDepth))
            meMaxDepth = maxDepth.ValueKind == JsonValueKind.Null ? null : (int)s.Integer("mutually_exclusive_max_depth", meMinDepth, 1 << 20);
        var spec = p with
        {
            NFeatures = n,
            D = d,
            Seed = s.UnsignedInteger("seed", p.Seed),
            ZipfExponent = s.Number("zipf_exponent", p.ZipfExponent, v => v > 0, "a number > 0"),
            PMin = s.Number("p_min", p.PMin, v => v > 0 && v < 1, "a number in (0, 1)"),
            PMax = s.Number("p_max", p.PMax, v => v > 0 && v <= 1, "a number in (0, 1]"),
            RootNodes = s.Integer("roots", 0, n, Math.Min(p.RootNodes, n)),
            BranchingMin = branchingMin,
            BranchingMax = branchingMax,
            MaxDepth = (int)s.Integer("depth", 1, 1 << 20, p.MaxDepth),
            MePortion = s.Number("mutually_exclusive", p.MePortion, v => v >= 0 && v <= 1,
                "a number in [0, 1] (the share of parents whose children exclude each other)"),
            MeMinDepth = meMinDepth,
            MeMaxDepth = meMaxDepth,
            Compensate = Flag(s, "compensation", p.Compensate),
            ScaleChildren = Flag(s, "scale_children_by_parent", p.ScaleChildren),
            CorrelationRank = (int)s.Integer("correlation_rank", 0, 4096, p.CorrelationRank),
            CorrelationScale = s.Number("correlation_scale", p.CorrelationScale, v => v >= 0, "a number >= 0"),
            MeanStart = s.Number("magnitude_mean_start", p.MeanStart, v => v > 0, "a number > 0 (feature 0's mean magnitude)"),
            MeanEnd = s.Number("magnitude_mean_end", p.MeanEnd, v => v > 0, "a number > 0 (the last feature's mean magnitude)"),
            StdMean = s.Number("magnitude_std_mean", p.StdMean, v => v >= 0, "a number >= 0"),
            StdStd = s.Number("magnitude_std_std", p.StdStd, v => v >= 0, "a number >= 0"),
            BiasNorm = s.Number("bias_norm", p.BiasNorm, v => v >= 0, "a number >= 0 (0: no bias)"),
            OrthoSteps = (int)s.Integer("orthogonalization_steps", 0, 1_000_000, p.OrthoSteps),
            OrthoLr = s.Number("orthogonalization_lr", p.OrthoLr, v => v > 0, "a number > 0"),
        };
        if (spec.PMin >= spec.PMax)
            throw s.Error("p_min", $"is {JsonObjectReader.Format(spec.PMin)}, not below p_max ({JsonObjectReader.Format(spec.PMax)}); valid: 0 < p_min < p_max <= 1");
        s.RejectUnknownKeys();
        if (spec.WhyInvalid() is { } why) throw new ConfigException($"{s.Source}: {why}");
        return new SynthSaeBenchSpec(spec, preset);
    }

    // "branching": children per parent, an integer >= 2 or [min, max] (uniform per parent).
    private static (int Min, int Max) Branching(JsonObjectReader s, SynthGeneratorSpec p)
    {
        if (!s.TryGet("branching", out var value)) return (p.BranchingMin, p.BranchingMax);
        const string valid = "an integer in [2, 65536] or [min, max] with 2 <= min <= max <= 65536";
        if (value.ValueKind == JsonValueKind.Number)
        {
            var b = (int)s.Integer("branching", 2, 65536);
            return (b, b);
        }
        if (value.ValueKind == JsonValueKind.Array && value.GetArrayLength() == 2 &&
            value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out _)))
        {
            int lo = value[0].GetInt32(), hi = value[1].GetInt32();
            if (lo >= 2 && lo <= hi && hi <= 65536) return (lo, hi);
        }
        throw s.Error("branching", $"is {JsonObjectReader.Describe(value)}; valid: {valid}");
    }

    // Without "format", the files' common extension names it (.npy, .safetensors, .arrow); raw shards have none.
    private static string FormatOfExtension(JsonObjectReader r, string[] paths)
    {
        var extensions = paths.Select(p => Path.GetExtension(p).ToLowerInvariant()).Distinct().ToArray();
        return extensions switch
        {
            [".npy"] => "npy",
            [".safetensors"] => "safetensors",
            [".arrow"] => "arrow",
            _ => throw r.Error("format", $"is missing and the files' extensions ({string.Join(", ", extensions.Select(e => e.Length > 0 ? e : "none"))}) " +
                                        "do not name one; valid: \"npy\", \"safetensors\", \"raw\" (with \"d\") or \"arrow\""),
        };
    }

    private static SaeSpec ReadSae(JsonObjectReader r, int? d)
    {
        var architecture = r.Choice("architecture", Architectures);
        var hasSize = r.TryGet("d_sae", out _);
        var hasExpansion = r.TryGet("expansion", out _);
        if (hasSize == hasExpansion)
            throw new ConfigException($"{r.Source}: give exactly one of \"d_sae\" (latents) and \"expansion\" (latents per input dimension)");
        int dSae;
        if (hasSize) dSae = (int)r.Integer("d_sae", 1, 1 << 26);
        else if (d is { } dim) dSae = checked((int)(r.Integer("expansion", 1, 100_000) * dim));
        else throw r.Error("expansion", "needs d known up front (synthetic data or raw files); give \"d_sae\" instead");
        var selects = architecture is SaeArchitecture.TopK || SaeModelSpec.SelectsOverBatch(architecture);
        int? k = null;
        if (selects) k = (int)r.Integer("k", 1, dSae);
        else if (r.TryGet("k", out _)) throw r.Error("k", $"is for topk, batchtopk and matryoshka_batchtopk; architecture \"{Name(architecture)}\" does not use it");
        var widths = MatryoshkaWidths(r, architecture, dSae);
        const string levelAux = "use_matryoshka_aux_loss";
        if (architecture != SaeArchitecture.MatryoshkaBatchTopK && r.TryGet(levelAux, out _))
            throw r.Error(levelAux, $"is for matryoshka_batchtopk; architecture \"{Name(architecture)}\" has no levels");
        var matryoshkaAux = Flag(r, levelAux, false);
        var pursuit = PursuitSettings(r, architecture);
        var l1 = Coefficient(r, "l1_coefficient", architecture, SaeArchitecture.Relu, "l0_coefficient");
        var l0 = Coefficient(r, "l0_coefficient", architecture, SaeArchitecture.JumpRelu, "l1_coefficient");
        var penalised = architecture is SaeArchitecture.Relu or SaeArchitecture.JumpRelu;
        foreach (var key in new[] { "sparsity_warmup_steps", "target_l0", "l0_controller" })
            if (!penalised && r.TryGet(key, out _))
                throw r.Error(key, $"is for relu and jumprelu (their sparsity coefficient); architecture \"{Name(architecture)}\" has none" +
                                   (selects ? " (its L0 is k)" : ""));
        var warmup = r.Integer("sparsity_warmup_steps", 0, long.MaxValue, 0);
        foreach (var key in new[] { "jump_bandwidth", "jump_initial_threshold" })
            if (architecture != SaeArchitecture.JumpRelu && r.TryGet(key, out _))
                throw r.Error(key, $"is for jumprelu; architecture \"{Name(architecture)}\" has no threshold to train");
        var bandwidth = r.Number("jump_bandwidth", SaeSpec.DefaultJumpBandwidth, v => v > 0, "a number > 0");
        var initialThreshold = r.Number("jump_initial_threshold", SaeSpec.DefaultJumpInitialThreshold, v => v > 0, "a number > 0");
        var targetL0 = ReadTargetL0(r, dSae);
        var auxk = r.Number("auxk_alpha", selects ? 1.0 / 32 : 0.0, v => v >= 0, "a number >= 0");
        var deadWindow = r.Integer("dead_window", 1, long.MaxValue, 10_000_000);
        var normalize = r.Choice("normalize_activations", Normalizations, ActivationNormalization.None);
        r.RejectUnknownKeys();
        return new SaeSpec(architecture, dSae, k, l1, l0, auxk, deadWindow, normalize, widths, pursuit, warmup, targetL0,
            bandwidth, initialThreshold, matryoshkaAux);
    }

    private static readonly string[] PursuitKeys = ["residual_threshold", "max_iterations", "stop_on_duplicate_support"];

    // matching_pursuit's stopping rules under SAELens's keys and defaults: "residual_threshold" (1e-2; <= 0: none),
    // "max_iterations" (null: d_in), "stop_on_duplicate_support" (true). Refused for the other architectures.
    private static MatchingPursuitSettings? PursuitSettings(JsonObjectReader r, SaeArchitecture architecture)
    {
        if (architecture != SaeArchitecture.MatchingPursuit)
        {
            foreach (var key in PursuitKeys)
                if (r.TryGet(key, out _))
                    throw r.Error(key, $"is for matching_pursuit; architecture \"{Name(architecture)}\" does not use it");
            return null;
        }
        var threshold = r.Number("residual_threshold", 1e-2, double.IsFinite, "a finite number (<= 0: no residual stop)");
        int? limit = r.TryGet("max_iterations", out var value) && value.ValueKind != JsonValueKind.Null
            ? (int)r.Integer("max_iterations", 1, int.MaxValue)
            : null;
        return new MatchingPursuitSettings(threshold, limit, Flag(r, "stop_on_duplicate_support", true));
    }

    // matryoshka_batchtopk's "matryoshka_widths" (SAELens's key): strictly increasing latent counts in 1..d_sae; as in
    // SAELens, d_sae is appended as the last level when the list ends below it. Required there, refused elsewhere.
    private static long[]? MatryoshkaWidths(JsonObjectReader r, SaeArchitecture architecture, int dSae)
    {
        const string key = "matryoshka_widths";
        if (architecture != SaeArchitecture.MatryoshkaBatchTopK)
        {
            if (r.TryGet(key, out _))
                throw r.Error(key, $"is for matryoshka_batchtopk; architecture \"{Name(architecture)}\" does not use it");
            return null;
        }
        var valid = $"an array of strictly increasing integers in [1, d_sae = {dSae}], at most " +
                    $"{Interop.MatryoshkaWidths.MaxLevels} with d_sae (appended when the last is below it), e.g. [128, 512, {dSae}]";
        var value = r.Require(key, valid);
        if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() == 0 ||
            !value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out _)))
            throw r.Error(key, $"must be {valid}, found {JsonObjectReader.Describe(value)}");
        var widths = value.EnumerateArray().Select(e => e.GetInt64()).ToList();
        for (var l = 0; l < widths.Count; l++)
            if (widths[l] < 1 || widths[l] > dSae || (l > 0 && widths[l] <= widths[l - 1]))
                throw r.Error(key, $"has {widths[l]} at position {l}; valid: {valid}");
        if (widths[^1] != dSae) widths.Add(dSae);
        if (widths.Count > Interop.MatryoshkaWidths.MaxLevels)
            throw r.Error(key, $"has {widths.Count} levels with d_sae; valid: {valid}");
        return widths.ToArray();
    }

    // "target_l0": a number in (0, d_sae], with "l0_controller": {...} (every key optional) tuning how it is reached.
    private static TargetL0Spec? ReadTargetL0(JsonObjectReader r, int dSae)
    {
        var hasController = r.TryGet("l0_controller", out var controllerValue);
        if (!r.TryGet("target_l0", out _))
        {
            if (hasController) throw r.Error("l0_controller", "needs \"target_l0\" (the L0 it steers the sparsity coefficient to)");
            return null;
        }
        var target = r.Number("target_l0", 0, v => v > 0 && v <= dSae, $"a number in (0, {dSae}] (at most d_sae)");
        var spec = new TargetL0Spec(target);
        if (!hasController) return spec;
        var c = r.Nested(Object(r, "l0_controller", controllerValue), "l0_controller");
        spec = new TargetL0Spec(target,
            StartStep: c.Integer("start_step", 0, long.MaxValue, spec.StartStep),
            Smoothing: c.Number("smoothing", spec.Smoothing, v => v >= 0 && v < 1, "a number in [0, 1)"),
            RateSmoothing: c.Number("rate_smoothing", spec.RateSmoothing, v => v >= 0 && v < 1, "a number in [0, 1)"),
            IntegralGain: c.Number("integral_gain", spec.IntegralGain, v => v > 0 && v < 1, "a number in (0, 1)"),
            GainScale: c.Number("gain_scale", spec.GainScale, v => v > 0 && double.IsFinite(v), "a number > 0"),
            ConvergenceGain: c.Number("convergence_gain", spec.ConvergenceGain, v => v >= 0 && v <= 1, "a number in [0, 1]"),
            MinMultiplier: c.Number("min_multiplier", spec.MinMultiplier, v => v > 0 && double.IsFinite(v), "a number > 0"),
            MaxMultiplier: c.Number("max_multiplier", spec.MaxMultiplier, v => v > 0 && double.IsFinite(v), "a number > 0"),
            Deadband: c.Number("deadband", spec.Deadband, v => v >= 0 && double.IsFinite(v), "a number >= 0"));
        if (spec.MinMultiplier > 1 || spec.MaxMultiplier < 1)
            throw c.Error(spec.MinMultiplier > 1 ? "min_multiplier" : "max_multiplier",
                $"is {(spec.MinMultiplier > 1 ? spec.MinMultiplier : spec.MaxMultiplier)}; valid: min_multiplier <= 1 <= max_multiplier " +
                "(the multiplier starts at 1)");
        c.RejectUnknownKeys();
        return spec;
    }

    // A sparsity coefficient that belongs to one architecture: default 5 there, 0 elsewhere, and an error naming the
    // right key when given to another (jumprelu's L0 coefficient is "l0_coefficient", relu's L1 "l1_coefficient").
    private static double Coefficient(JsonObjectReader r, string key, SaeArchitecture architecture, SaeArchitecture owner,
        string otherKey)
    {
        if (architecture == owner) return r.Number(key, 5.0, v => v >= 0, "a number >= 0");
        if (!r.TryGet(key, out _)) return 0;
        var hint = architecture is SaeArchitecture.Relu or SaeArchitecture.JumpRelu
            ? $"; for {Name(architecture)} give \"{otherKey}\""
            : "";
        throw r.Error(key, $"is the {Name(owner)} architecture's; \"{Name(architecture)}\" does not use it{hint}");
    }

    private static TrainSpec ReadTrain(JsonObjectReader? r, SaeSpec sae)
    {
        if (r is null) return new TrainSpec(1_000_000, 4096, DefaultLr(sae.DSae), 0, 0, 0, 0, SaePrecision.Fp32);
        var tokens = r.Integer("tokens", 1, long.MaxValue, 1_000_000);
        var batch = (int)r.Integer("batch_size", 1, 1 << 20, 4096);
        CheckTokens(r, tokens, batch);
        var spec = new TrainSpec(tokens, batch, r.Number("lr", DefaultLr(sae.DSae), v => v > 0, "a number > 0"),
            r.Integer("warmup_steps", 0, long.MaxValue, 0), r.Integer("decay_steps", 0, long.MaxValue, 0),
            r.Integer("checkpoint_every", 0, long.MaxValue, 0), r.UnsignedInteger("seed", 0),
            r.Choice("precision", Precisions, SaePrecision.Fp32));
        r.RejectUnknownKeys();
        return spec;
    }

    /// <summary>Training and measuring go in whole batches: fewer tokens than one batch would silently become one.</summary>
    public static void CheckTokens(JsonObjectReader r, long tokens, int batch)
    {
        if (tokens < batch)
            throw r.Error("tokens", $"is {tokens}, less than one batch (batch_size {batch}); give tokens >= batch_size, or a smaller batch_size");
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

/// <summary>What eval, encode and analyze read: activations, the batch they are read in, how many tokens, and how the
/// dictionary is measured against the data's ground truth when it has one.</summary>
public sealed record EvalData(DataSpec Data, int BatchSize, long Tokens, EvalSpec? Eval = null)
{
    public EvalSpec Evaluation => Eval ?? EvalSpec.Default;
}

public static class EvalDataLoader
{
    /// <summary>A factorize config (its data, batch size, 8 batches and "eval"), or {"data": {...}, "batch_size", "tokens",
    /// "eval"}.</summary>
    public static EvalData LoadFile(string path)
    {
        var json = JsonObjectReader.ReadFile(path);
        var baseDirectory = Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        using var document = JsonObjectReader.Parse(json, path);
        if (document.RootElement.TryGetProperty("sae", out _))
        {
            var config = FactorizeConfigLoader.Parse(json, path, baseDirectory);
            return new EvalData(config.Data, config.Train.BatchSize, 8L * config.Train.BatchSize, config.Evaluation);
        }
        var r = new JsonObjectReader(document.RootElement, path);
        var data = FactorizeConfigLoader.ReadDataSection(r, baseDirectory);
        var batch = (int)r.Integer("batch_size", 1, 1 << 20, 4096);
        var tokens = r.Integer("tokens", 1, long.MaxValue, 8L * batch);
        FactorizeConfigLoader.CheckTokens(r, tokens, batch);
        var eval = FactorizeConfigLoader.ReadEval(r);
        r.RejectUnknownKeys();
        return new EvalData(data, batch, tokens, eval);
    }
}

/// <summary>Writes a resolved <see cref="FactorizeConfig"/> (every default filled in, file paths absolute) as a config
/// that <see cref="FactorizeConfigLoader"/> reads back to the same run.</summary>
public static class FactorizeConfigWriter
{
    public static string ToJson(FactorizeConfig c)
    {
        return Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteStartObject("data");
            switch (c.Data)
            {
                case SyntheticSpec s:
                    WriteSynthetic(w, s);
                    break;
                case FilesSpec f:
                    w.WriteStartArray("files");
                    foreach (var file in f.Files) w.WriteStringValue(file);
                    w.WriteEndArray();
                    w.WriteString("format", f.Format switch
                    {
                        ActivationFileFormat.Npy => "npy",
                        ActivationFileFormat.SafeTensors => "safetensors",
                        ActivationFileFormat.Arrow or ActivationFileFormat.ArrowBF16 => "arrow",
                        _ => "raw",
                    });
                    if (FactorizeConfigLoader.RawDtypes.FirstOrDefault(p => p.Value == f.Format).Key is { } dtype)
                        w.WriteString("dtype", dtype);
                    if (f.Format == ActivationFileFormat.ArrowBF16) w.WriteString("dtype", "bfloat16");
                    if (f.Tensor is not null) w.WriteString("tensor", f.Tensor);
                    if (f.Column is not null) w.WriteString("column", f.Column);
                    if (f.D is { } d) w.WriteNumber("d", d);
                    w.WriteString("non_finite", FactorizeConfigLoader.NonFiniteInputs.First(p => p.Value == f.NonFinite).Key);
                    break;
            }
            w.WriteEndObject();
            var sae = c.Sae;
            w.WriteStartObject("sae");
            w.WriteString("architecture", FactorizeConfigLoader.Name(sae.Architecture));
            w.WriteNumber("d_sae", sae.DSae);
            if (sae.K is { } k) w.WriteNumber("k", k);
            if (sae.Architecture == SaeArchitecture.Relu) w.WriteNumber("l1_coefficient", sae.L1Coefficient);
            if (sae.Architecture == SaeArchitecture.JumpRelu) w.WriteNumber("l0_coefficient", sae.L0Coefficient);
            if (sae.Pursuit is { } pursuit)
            {
                w.WriteNumber("residual_threshold", pursuit.ResidualThreshold);
                if (pursuit.MaxIterations is { } limit) w.WriteNumber("max_iterations", limit);
                w.WriteBoolean("stop_on_duplicate_support", pursuit.StopOnDuplicateSupport);
            }
            if (sae.MatryoshkaWidths is { } widths)
            {
                w.WriteStartArray("matryoshka_widths");
                foreach (var width in widths) w.WriteNumberValue(width);
                w.WriteEndArray();
            }
            if (sae.MatryoshkaAuxLoss) w.WriteBoolean("use_matryoshka_aux_loss", true);
            // Written only when set, so configs (and the hashes --resume checks) of runs without them stay as they were.
            if (sae.SparsityWarmupSteps > 0) w.WriteNumber("sparsity_warmup_steps", sae.SparsityWarmupSteps);
            if (sae.JumpBandwidth != SaeSpec.DefaultJumpBandwidth) w.WriteNumber("jump_bandwidth", sae.JumpBandwidth);
            if (sae.JumpInitialThreshold != SaeSpec.DefaultJumpInitialThreshold)
                w.WriteNumber("jump_initial_threshold", sae.JumpInitialThreshold);
            if (sae.TargetL0 is { } target)
            {
                w.WriteNumber("target_l0", target.TargetL0);
                w.WriteStartObject("l0_controller");
                w.WriteNumber("start_step", target.StartStep);
                w.WriteNumber("smoothing", target.Smoothing);
                w.WriteNumber("rate_smoothing", target.RateSmoothing);
                w.WriteNumber("integral_gain", target.IntegralGain);
                w.WriteNumber("gain_scale", target.GainScale);
                w.WriteNumber("convergence_gain", target.ConvergenceGain);
                w.WriteNumber("min_multiplier", target.MinMultiplier);
                w.WriteNumber("max_multiplier", target.MaxMultiplier);
                w.WriteNumber("deadband", target.Deadband);
                w.WriteEndObject();
            }
            w.WriteNumber("auxk_alpha", sae.AuxkAlpha);
            w.WriteNumber("dead_window", sae.DeadWindow);
            w.WriteString("normalize_activations", FactorizeConfigLoader.Normalizations.First(p => p.Value == sae.Normalization).Key);
            w.WriteEndObject();
            var t = c.Train;
            w.WriteStartObject("train");
            w.WriteNumber("tokens", t.Tokens);
            w.WriteNumber("batch_size", t.BatchSize);
            w.WriteNumber("lr", t.Lr);
            w.WriteNumber("warmup_steps", t.WarmupSteps);
            w.WriteNumber("decay_steps", t.DecaySteps);
            w.WriteNumber("checkpoint_every", t.CheckpointEvery);
            w.WriteNumber("seed", t.Seed);
            w.WriteString("precision", FactorizeConfigLoader.Precisions.First(p => p.Value == t.Precision).Key);
            w.WriteEndObject();
            var metadata = (c.Metadata ?? DictionaryMetadata.None).Entries().ToList();
            if (metadata.Count > 0)
            {
                w.WriteStartObject("metadata");
                foreach (var (key, value) in metadata)
                {
                    w.WritePropertyName(key);
                    switch (value)
                    {
                        case string text: w.WriteStringValue(text); break;
                        case bool flag: w.WriteBooleanValue(flag); break;
                        default: w.WriteNumberValue((int)value); break;
                    }
                }
                w.WriteEndObject();
            }
            w.WriteString("format", DictionaryFolder.Name(c.Format));
            // Written only when it is not the default, so configs (and their hashes, which --resume checks) of runs from
            // before the key existed stay as they were.
            if (c.Evaluation != EvalSpec.Default)
            {
                w.WriteStartObject("eval");
                w.WriteNumber("samples", c.Evaluation.Samples);
                w.WriteEndObject();
            }
            if (c.Distributed is { } distributed)
            {
                w.WriteStartObject("distributed");
                w.WriteNumber("latent_shards", distributed.LatentShards);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        });
    }

    /// <summary>"synthetic": {...} with every value, as <see cref="FactorizeConfigLoader"/> reads it back.</summary>
    public static void WriteSynthetic(System.Text.Json.Utf8JsonWriter w, SyntheticSpec spec)
    {
        w.WriteStartObject("synthetic");
        switch (spec)
        {
            case SharkeySpec s:
                w.WriteString("kind", "sharkey");
                w.WriteNumber("d", s.D);
                w.WriteNumber("n_features", s.NFeatures);
                w.WriteNumber("active_mean", s.ActiveMean);
                w.WriteNumber("probability_decay", s.ProbabilityDecay);
                w.WriteBoolean("correlated", s.Correlated);
                w.WriteNumber("seed", s.Seed);
                break;
            case SynthSaeBenchSpec b:
                var g = b.Settings;
                w.WriteString("kind", "synthsaebench");
                if (b.Preset is { } preset) w.WriteString("preset", preset);
                w.WriteNumber("n_features", g.NFeatures);
                w.WriteNumber("d", g.D);
                w.WriteNumber("seed", g.Seed);
                w.WriteNumber("zipf_exponent", g.ZipfExponent);
                w.WriteNumber("p_min", g.PMin);
                w.WriteNumber("p_max", g.PMax);
                w.WriteNumber("roots", g.RootNodes);
                if (g.BranchingMin == g.BranchingMax) w.WriteNumber("branching", g.BranchingMin);
                else
                {
                    w.WriteStartArray("branching");
                    w.WriteNumberValue(g.BranchingMin);
                    w.WriteNumberValue(g.BranchingMax);
                    w.WriteEndArray();
                }
                w.WriteNumber("depth", g.MaxDepth);
                w.WriteNumber("mutually_exclusive", g.MePortion);
                w.WriteNumber("mutually_exclusive_min_depth", g.MeMinDepth);
                if (g.MeMaxDepth is { } maxDepth) w.WriteNumber("mutually_exclusive_max_depth", maxDepth);
                else w.WriteNull("mutually_exclusive_max_depth");
                w.WriteBoolean("compensation", g.Compensate);
                w.WriteBoolean("scale_children_by_parent", g.ScaleChildren);
                w.WriteNumber("correlation_rank", g.CorrelationRank);
                w.WriteNumber("correlation_scale", g.CorrelationScale);
                w.WriteNumber("magnitude_mean_start", g.MeanStart);
                w.WriteNumber("magnitude_mean_end", g.MeanEnd);
                w.WriteNumber("magnitude_std_mean", g.StdMean);
                w.WriteNumber("magnitude_std_std", g.StdStd);
                w.WriteNumber("bias_norm", g.BiasNorm);
                w.WriteNumber("orthogonalization_steps", g.OrthoSteps);
                w.WriteNumber("orthogonalization_lr", g.OrthoLr);
                break;
        }
        w.WriteEndObject();
    }
}
