using System.Text.Json;
using NativeEngine.Interop;

namespace NativeEngine.Runner.Configs;

/// <summary>Parses and validates a toy-model config (JSON, comments allowed) into a resolved <see cref="ToyConfig"/>.</summary>
public static class ToyConfigLoader
{
    public static readonly IReadOnlyDictionary<string, ToyModelKind> Models = new Dictionary<string, ToyModelKind>
    {
        ["linear"] = ToyModelKind.Linear,
        ["relu_output"] = ToyModelKind.ReluOutput,
        ["relu_hidden"] = ToyModelKind.ReluHidden,
        ["abs_value"] = ToyModelKind.AbsValue,
    };

    public static readonly IReadOnlyDictionary<string, OptimizerKind> Optimizers = new Dictionary<string, OptimizerKind>
    {
        ["adamw"] = OptimizerKind.AdamW,
        ["adam"] = OptimizerKind.Adam,
    };

    public static readonly IReadOnlyDictionary<string, FeatureSetKind> FeatureSetKinds =
        new Dictionary<string, FeatureSetKind>
        {
            ["correlated"] = FeatureSetKind.Correlated,
            ["anticorrelated"] = FeatureSetKind.Anticorrelated,
        };

    private static readonly IReadOnlyDictionary<string, bool> KeepChoices = new Dictionary<string, bool>
    {
        ["best"] = false,
        ["all"] = true,
    };

    private const int MaxInstances = 1_000_000;
    private const string ProbabilityRange = "a number in (0, 1]";
    private static bool IsProbability(double p) => p > 0 && p <= 1;

    public static ToyConfig LoadFile(string path)
    {
        return Parse(JsonObjectReader.ReadFile(path), path);
    }

    public static ToyConfig Parse(string json, string source)
    {
        using var document = JsonObjectReader.Parse(json, source);
        var r = new JsonObjectReader(document.RootElement, source);
        var model = r.Choice("model", Models);
        var config = ReadRun(r, model, () => (int)r.Integer("n_hidden", 1, 1_000_000));
        r.RejectUnknownKeys();
        return config;
    }

    /// <summary>Every key of a toy run besides the model and its width (which MoE configs name differently):
    /// title, features, importance, probabilities, L1, feature sets, sweep, optimizer, seed. readWidth reads the
    /// width right after n_features, so missing keys are named in the order a config lists them. The caller
    /// rejects unknown keys once it has read its own.</summary>
    public static ToyConfig ReadRun(JsonObjectReader r, ToyModelKind model, Func<int> readWidth)
    {
        string? title = null;
        if (r.TryGet("title", out var titleValue))
            title = titleValue.ValueKind == JsonValueKind.String
                ? titleValue.GetString()
                : throw r.Error("title", $"must be a string, found {JsonObjectReader.Describe(titleValue)}");
        var n = (int)r.Integer("n_features", 1, 1_000_000);
        var m = readWidth();
        var importance = ReadImportance(r, n);

        ToySweep? sweep = null;
        int instances;
        float[] probability, l1;
        ToySetting[] settings;
        if (r.TryGet("sweep", out var sweepValue))
        {
            sweep = ReadSweep(r, sweepValue);
            (instances, probability, l1, settings) = ExpandSweep(r, sweep, n, m);
        }
        else
        {
            instances = (int)r.Integer("n_instances", 1, MaxInstances);
            CheckSize(r, "n_instances", instances, n, m);
            probability = ReadFeatureProbability(r, instances, n);
            l1 = ReadL1(r, instances);
            settings = Enumerable.Range(0, instances)
                .Select(k => new ToySetting(UniformProbability(probability.AsSpan(k * n, n)), 1.0, l1[k], [k]))
                .ToArray();
        }
        var featureSets = ReadFeatureSets(r, n, instances, probability);

        var config = new ToyConfig
        {
            Title = title,
            Model = model,
            NFeatures = n,
            NHidden = m,
            NInstances = instances,
            Importance = importance,
            FeatureProbability = probability,
            L1 = l1,
            FeatureSets = featureSets,
            Sweep = sweep,
            Settings = settings,
            PolysemanticityThreshold = r.Number("polysemanticity_threshold", ToyConfig.DefaultPolysemanticityThreshold,
                v => v > 0, "a number > 0 (|weight| above which a neuron counts a feature)"),
            BatchSize = (int)r.Integer("batch_size", 1, 1 << 24, 1024),
            Steps = r.Integer("steps", 1, 1_000_000_000, 10_000),
            Lr = (float)r.Number("lr", 1e-3, v => v > 0, "a number > 0"),
            WeightDecay = (float)r.Number("weight_decay", 0.01, v => v >= 0, "a number >= 0"),
            Optimizer = r.Choice("optimizer", Optimizers, OptimizerKind.AdamW),
            Seed = r.UnsignedInteger("seed", 0),
        };
        // A ratio r gives I_i = r^i, and a swept importance_ratio multiplies the last one: both can leave float32.
        if (config.ImportancePerInstance().FirstOrDefault(v => !float.IsFinite(v), 0f) is var overflow && !float.IsFinite(overflow))
            throw r.Error("importance", $"gives feature importances beyond float32's range (±{float.MaxValue:G3}); use a smaller ratio");
        return config;
    }

    /// <summary>Refuses sizes whose per-instance tensors (W [instances][n][width] and more) would not fit one array,
    /// computed in 64 bits so that values each in range cannot overflow into a crash.</summary>
    public static void CheckSize(JsonObjectReader r, string key, double instances, double n, double width, string widthName = "n_hidden")
    {
        var values = instances * n * width;
        if (values > Array.MaxLength)
            throw r.Error(key, $"makes instances × n_features × {widthName} = {instances:G} × {n:G} × {width:G} = {values:G3} weights per " +
                               $"tensor, more than one array holds ({Array.MaxLength}); use fewer instances or a smaller model");
    }

    // A number r (I_i = r^i) or an array of n_features non-negative numbers; default 1 (all equal).
    private static float[] ReadImportance(JsonObjectReader r, int n)
    {
        const string valid = "a number r > 0 (I_i = r^i) or an array of n_features numbers >= 0";
        if (!r.TryGet("importance", out var value)) return Enumerable.Repeat(1f, n).ToArray();
        if (value.ValueKind == JsonValueKind.Number)
        {
            var ratio = r.ToNumber(value, "importance", v => v > 0, valid);
            return Enumerable.Range(0, n).Select(i => (float)Math.Pow(ratio, i)).ToArray();
        }
        if (value.ValueKind != JsonValueKind.Array)
            throw r.Error("importance", $"must be {valid}, found {JsonObjectReader.Describe(value)}");
        if (value.GetArrayLength() != n)
            throw r.Error("importance", $"has {value.GetArrayLength()} values; n_features is {n}");
        return value.EnumerateArray()
            .Select((e, i) => (float)r.ToNumber(e, $"importance[{i}]", v => v >= 0, "a number >= 0"))
            .ToArray();
    }

    // Without a sweep: a number; an array of n_instances numbers; an array [n_instances][n_features]; or
    // {"geomspace": [start, stop]} spread over the instances. Result: [instances][n].
    private static float[] ReadFeatureProbability(JsonObjectReader r, int instances, int n)
    {
        const string key = "feature_probability";
        const string valid = "a number in (0, 1], an array of n_instances such numbers, an array " +
                             "[n_instances][n_features] of them, or {\"geomspace\": [start, stop]}";
        var value = r.Require(key, valid);
        switch (value.ValueKind)
        {
            case JsonValueKind.Number:
                return Enumerable.Repeat((float)r.ToNumber(value, key, IsProbability, ProbabilityRange), instances * n)
                    .ToArray();
            case JsonValueKind.Array:
                if (value.GetArrayLength() != instances)
                    throw r.Error(key, $"has {value.GetArrayLength()} entries; n_instances is {instances}");
                var result = new float[instances * n];
                var k = 0;
                foreach (var entry in value.EnumerateArray())
                {
                    if (entry.ValueKind == JsonValueKind.Array)
                    {
                        if (entry.GetArrayLength() != n)
                            throw r.Error($"{key}[{k}]", $"has {entry.GetArrayLength()} values; n_features is {n}");
                        var i = 0;
                        foreach (var e in entry.EnumerateArray())
                        {
                            result[k * n + i] = (float)r.ToNumber(e, $"{key}[{k}][{i}]", IsProbability, ProbabilityRange);
                            i++;
                        }
                    }
                    else
                    {
                        var p = (float)r.ToNumber(entry, $"{key}[{k}]", IsProbability, ProbabilityRange);
                        Array.Fill(result, p, k * n, n);
                    }
                    k++;
                }
                return result;
            case JsonValueKind.Object:
                var inner = r.Nested(value, key);
                var span = inner.Require("geomspace", "[start, stop]");
                if (span.ValueKind != JsonValueKind.Array || span.GetArrayLength() != 2)
                    throw r.Error(key, $"geomspace must be [start, stop] (the instances give the count), found " +
                                       JsonObjectReader.Describe(span));
                var start = r.ToNumber(span[0], $"{key}.geomspace[0]", IsProbability, ProbabilityRange);
                var stop = r.ToNumber(span[1], $"{key}.geomspace[1]", IsProbability, ProbabilityRange);
                inner.RejectUnknownKeys();
                return Geomspace(start, stop, instances).SelectMany(p => Enumerable.Repeat(p, n)).ToArray();
            default:
                throw r.Error(key, $"must be {valid}, found {JsonObjectReader.Describe(value)}");
        }
    }

    // A number >= 0 for every instance, or an array of n_instances of them; default 0.
    private static float[] ReadL1(JsonObjectReader r, int instances)
    {
        const string valid = "a number >= 0 or an array of n_instances such numbers";
        if (!r.TryGet("l1", out var value)) return new float[instances];
        if (value.ValueKind == JsonValueKind.Number)
            return Enumerable.Repeat((float)r.ToNumber(value, "l1", v => v >= 0, valid), instances).ToArray();
        if (value.ValueKind != JsonValueKind.Array)
            throw r.Error("l1", $"must be {valid}, found {JsonObjectReader.Describe(value)}");
        if (value.GetArrayLength() != instances)
            throw r.Error("l1", $"has {value.GetArrayLength()} values; n_instances is {instances}");
        return value.EnumerateArray().Select((e, k) => (float)r.ToNumber(e, $"l1[{k}]", v => v >= 0, "a number >= 0"))
            .ToArray();
    }

    private static ToySweep ReadSweep(JsonObjectReader r, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw r.Error("sweep", $"must be an object, found {JsonObjectReader.Describe(value)}");
        var s = r.Nested(value, "sweep");
        var probability = SweepValues(s, "feature_probability", IsProbability, ProbabilityRange);
        var ratio = SweepValues(s, "importance_ratio", v => v > 0, "a number > 0");
        var l1 = SweepValues(s, "l1", v => v >= 0, "a number >= 0");
        var repeats = (int)s.Integer("repeats", 1, 100_000, 1);
        var keepAll = s.Choice("keep", KeepChoices, false);
        s.RejectUnknownKeys();
        if (probability is null && ratio is null && l1 is null)
            throw r.Error("sweep", "sweeps nothing; give at least one of \"feature_probability\", \"importance_ratio\", \"l1\"");
        return new ToySweep(probability, ratio, l1, repeats, keepAll);
    }

    // A list of numbers, or {"geomspace": [start, stop, count]}.
    private static double[]? SweepValues(JsonObjectReader s, string key, Func<double, bool> isValid, string range)
    {
        var valid = $"a non-empty list of numbers ({range}) or {{\"geomspace\": [start, stop, count]}}";
        if (!s.TryGet(key, out var value)) return null;
        if (value.ValueKind == JsonValueKind.Array)
        {
            if (value.GetArrayLength() == 0) throw s.Error(key, $"is empty; valid: {valid}");
            return value.EnumerateArray().Select((e, k) => s.ToNumber(e, $"{key}[{k}]", isValid, range)).ToArray();
        }
        if (value.ValueKind != JsonValueKind.Object) throw s.Error(key, $"must be {valid}, found {JsonObjectReader.Describe(value)}");
        var inner = s.Nested(value, key);
        var span = inner.Require("geomspace", "[start, stop, count]");
        if (span.ValueKind != JsonValueKind.Array || span.GetArrayLength() != 3)
            throw s.Error(key, $"geomspace must be [start, stop, count], found {JsonObjectReader.Describe(span)}");
        var start = s.ToNumber(span[0], $"{key}.geomspace[0]", v => v > 0 && isValid(v), $"{range}, and > 0");
        var stop = s.ToNumber(span[1], $"{key}.geomspace[1]", v => v > 0 && isValid(v), $"{range}, and > 0");
        var count = s.ToNumber(span[2], $"{key}.geomspace[2]", v => v >= 1 && v <= 100_000 && v == Math.Floor(v),
            "an integer in [1, 100000]");
        inner.RejectUnknownKeys();
        return Geomspace(start, stop, (int)count).Select(v => (double)v).ToArray();
    }

    // Settings in the order feature_probability x importance_ratio x l1, each `repeats` consecutive instances.
    private static (int, float[], float[], ToySetting[]) ExpandSweep(JsonObjectReader r, ToySweep sweep, int n, int m)
    {
        // A top-level value beside the sweep: one number, or the fallback (null: required).
        double[] Fixed(string key, double? fallback, Func<double, bool> isValid, string range)
        {
            if (!r.TryGet(key, out var value))
                return fallback is { } v ? [v] : throw r.Error(key, "is missing: give it at the top level or sweep it under \"sweep\"");
            if (value.ValueKind != JsonValueKind.Number)
                throw r.Error(key, $"must be a single number beside a sweep (list values under \"sweep\"), found " +
                                   JsonObjectReader.Describe(value));
            return [r.ToNumber(value, key, isValid, range)];
        }

        void Exclusive(string key, bool swept)
        {
            if (swept && r.TryGet(key, out _))
                throw r.Error(key, $"is swept under \"sweep\"; remove the top-level \"{key}\"");
        }

        Exclusive("feature_probability", sweep.FeatureProbability is not null);
        Exclusive("l1", sweep.L1 is not null);
        var probability = sweep.FeatureProbability is null ? Fixed("feature_probability", null, IsProbability, ProbabilityRange)[0] : 1;
        var l1 = sweep.L1 is null ? Fixed("l1", 0, v => v >= 0, "a number >= 0")[0] : 0;
        var count = sweep.InstanceCount;
        if (count > MaxInstances)
            throw r.Error("sweep", $"expands to {count} instances; at most {MaxInstances}");
        var instances = (int)count;
        CheckSize(r, "sweep", instances, n, m);
        if (r.TryGet("n_instances", out var given) && (!given.TryGetInt64(out var stated) || stated != instances))
            throw r.Error("n_instances", $"is {given.GetRawText()} but the sweep makes {instances} instances " +
                                         $"({sweep.FeatureProbability?.Length ?? 1} x {sweep.ImportanceRatio?.Length ?? 1} x " +
                                         $"{sweep.L1?.Length ?? 1} settings x {sweep.Repeats} repeats); remove \"n_instances\"");
        var (probabilities, l1s, settings) = sweep.Expand(n, probability, l1);
        return (instances, probabilities, l1s, settings);
    }

    private static FeatureSet[] ReadFeatureSets(JsonObjectReader r, int n, int instances, float[] probability)
    {
        const string key = "feature_sets";
        const string valid = "an array of {\"kind\": \"correlated\" | \"anticorrelated\", \"features\": [i, ...]}";
        if (!r.TryGet(key, out var value)) return [];
        if (value.ValueKind != JsonValueKind.Array)
            throw r.Error(key, $"must be {valid}, found {JsonObjectReader.Describe(value)}");
        var owner = new int[n];
        Array.Fill(owner, -1);
        var sets = new List<FeatureSet>();
        foreach (var entry in value.EnumerateArray())
        {
            var name = $"{key}[{sets.Count}]";
            if (entry.ValueKind != JsonValueKind.Object)
                throw r.Error(name, $"must be {{\"kind\", \"features\"}}, found {JsonObjectReader.Describe(entry)}");
            var s = r.Nested(entry, name);
            var kind = s.Choice("kind", FeatureSetKinds);
            var list = s.Require("features", "an array of at least 2 feature indices");
            if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() < 2)
                throw s.Error("features", $"must be an array of at least 2 feature indices, found {JsonObjectReader.Describe(list)}");
            var features = list.EnumerateArray().Select((e, j) =>
                (int)s.ToNumber(e, $"features[{j}]", v => v == Math.Floor(v) && v >= 0 && v < n,
                    $"an integer feature index in [0, {n - 1}]")).ToArray();
            s.RejectUnknownKeys();
            foreach (var i in features)
            {
                if (owner[i] >= 0)
                    throw s.Error("features", $"lists feature {i}, which is already in {key}[{owner[i]}]; a feature belongs to at most one set");
                owner[i] = sets.Count;
            }
            for (var k = 0; k < instances; k++)
                foreach (var i in features)
                    if (probability[k * n + i] != probability[k * n + features[0]])
                        throw s.Error("features", $"feature {i} has feature_probability {probability[k * n + i]} in instance {k} " +
                                                  $"but feature {features[0]} has {probability[k * n + features[0]]}; " +
                                                  "the members of a set share one probability (the set's)");
            sets.Add(new FeatureSet(kind, features));
        }
        return sets.ToArray();
    }

    private static double UniformProbability(ReadOnlySpan<float> probability)
    {
        foreach (var p in probability)
            if (p != probability[0]) return double.NaN;
        return probability[0];
    }

    /// <summary>count values from start to stop, evenly spaced in log (both ends included).</summary>
    public static float[] Geomspace(double start, double stop, int count) =>
        Enumerable.Range(0, count)
            .Select(k => (float)(count == 1 ? start : start * Math.Pow(stop / start, k / (double)(count - 1))))
            .ToArray();
}
