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
    };

    public static readonly IReadOnlyDictionary<string, OptimizerKind> Optimizers = new Dictionary<string, OptimizerKind>
    {
        ["adamw"] = OptimizerKind.AdamW,
        ["adam"] = OptimizerKind.Adam,
    };

    public static ToyConfig LoadFile(string path)
    {
        if (!File.Exists(path)) throw new ConfigException($"config file {path} does not exist");
        return Parse(File.ReadAllText(path), path);
    }

    public static ToyConfig Parse(string json, string source)
    {
        using var document = JsonObjectReader.Parse(json, source);
        var r = new JsonObjectReader(document.RootElement, source);

        var model = r.Choice("model", Models);
        var n = (int)r.Integer("n_features", 1, 1_000_000);
        var m = (int)r.Integer("n_hidden", 1, 1_000_000);
        var instances = (int)r.Integer("n_instances", 1, 1_000_000);
        var importance = ReadImportance(r, n);
        var probability = ReadFeatureProbability(r, instances);
        var config = new ToyConfig
        {
            Model = model,
            NFeatures = n,
            NHidden = m,
            NInstances = instances,
            Importance = importance,
            FeatureProbability = probability,
            BatchSize = (int)r.Integer("batch_size", 1, 1 << 24, 1024),
            Steps = r.Integer("steps", 1, 1_000_000_000, 10_000),
            Lr = (float)r.Number("lr", 1e-3, v => v > 0, "a number > 0"),
            WeightDecay = (float)r.Number("weight_decay", 0.01, v => v >= 0, "a number >= 0"),
            Optimizer = r.Choice("optimizer", Optimizers, OptimizerKind.AdamW),
            Seed = r.UnsignedInteger("seed", 0),
        };
        r.RejectUnknownKeys();
        return config;
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

    // A number; an array of n_instances numbers; or {"geomspace": [start, stop]} spread over the instances.
    private static float[] ReadFeatureProbability(JsonObjectReader r, int instances)
    {
        const string key = "feature_probability";
        const string valid = "a number in (0, 1], an array of n_instances such numbers, or {\"geomspace\": [start, stop]}";
        var value = r.Require(key, valid);
        bool InRange(double p) => p > 0 && p <= 1;
        const string range = "a number in (0, 1]";
        switch (value.ValueKind)
        {
            case JsonValueKind.Number:
                return Enumerable.Repeat((float)r.ToNumber(value, key, InRange, range), instances).ToArray();
            case JsonValueKind.Array:
                if (value.GetArrayLength() != instances)
                    throw r.Error(key, $"has {value.GetArrayLength()} values; n_instances is {instances}");
                return value.EnumerateArray().Select((e, k) => (float)r.ToNumber(e, $"{key}[{k}]", InRange, range))
                    .ToArray();
            case JsonValueKind.Object:
                var inner = r.Nested(value, key);
                var span = inner.Require("geomspace", "[start, stop]");
                if (span.ValueKind != JsonValueKind.Array || span.GetArrayLength() != 2)
                    throw r.Error(key, $"geomspace must be [start, stop], found {JsonObjectReader.Describe(span)}");
                var start = r.ToNumber(span[0], $"{key}.geomspace[0]", InRange, range);
                var stop = r.ToNumber(span[1], $"{key}.geomspace[1]", InRange, range);
                inner.RejectUnknownKeys();
                return Geomspace(start, stop, instances);
            default:
                throw r.Error(key, $"must be {valid}, found {JsonObjectReader.Describe(value)}");
        }
    }

    /// <summary>count values from start to stop, evenly spaced in log (both ends included).</summary>
    public static float[] Geomspace(double start, double stop, int count) =>
        Enumerable.Range(0, count)
            .Select(k => (float)(count == 1 ? start : start * Math.Pow(stop / start, k / (double)(count - 1))))
            .ToArray();
}

/// <summary>Writes a resolved <see cref="ToyConfig"/> as a config that <see cref="ToyConfigLoader"/> reads back to the same run.</summary>
public static class ToyConfigWriter
{
    public static string ToJson(ToyConfig c)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("model", ToyConfig.ModelName(c.Model));
            w.WriteNumber("n_features", c.NFeatures);
            w.WriteNumber("n_hidden", c.NHidden);
            w.WriteNumber("n_instances", c.NInstances);
            w.WriteStartArray("importance");
            foreach (var v in c.Importance) w.WriteNumberValue(v);
            w.WriteEndArray();
            w.WriteStartArray("feature_probability");
            foreach (var v in c.FeatureProbability) w.WriteNumberValue(v);
            w.WriteEndArray();
            w.WriteNumber("batch_size", c.BatchSize);
            w.WriteNumber("steps", c.Steps);
            w.WriteNumber("lr", c.Lr);
            w.WriteNumber("weight_decay", c.WeightDecay);
            w.WriteString("optimizer", ToyConfig.OptimizerName(c.Optimizer));
            w.WriteNumber("seed", c.Seed);
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }
}
