using System.Text.Json;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Configs;

/// <summary>Writes a resolved <see cref="ToyConfig"/> as a config that <see cref="ToyConfigLoader"/> reads back to the same run.</summary>
public static class ToyConfigWriter
{
    public static string ToJson(ToyConfig c)
    {
        return Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteString("model", ToyConfig.ModelName(c.Model));
            w.WriteNumber("n_hidden", c.NHidden);
            WriteRun(w, c);
            w.WriteEndObject();
        });
    }

    /// <summary>The keys <see cref="ToyConfigLoader.ReadRun"/> reads.</summary>
    public static void WriteRun(Utf8JsonWriter w, ToyConfig c)
    {
        if (c.Title is not null) w.WriteString("title", c.Title);
        w.WriteNumber("n_features", c.NFeatures);
        WriteFloats(w, "importance", c.Importance);
        if (c.Sweep is { } sweep)
        {
            // Swept values are written as explicit lists (a geomspace expands to the same floats).
            if (sweep.FeatureProbability is null) w.WriteNumber("feature_probability", c.FeatureProbability[0]);
            if (sweep.L1 is null) w.WriteNumber("l1", c.L1[0]);
            w.WriteStartObject("sweep");
            if (sweep.FeatureProbability is { } p) WriteFloats(w, "feature_probability", p.Select(v => (float)v));
            if (sweep.ImportanceRatio is { } ratio) WriteFloats(w, "importance_ratio", ratio.Select(v => (float)v));
            if (sweep.L1 is { } l1) WriteFloats(w, "l1", l1.Select(v => (float)v));
            w.WriteNumber("repeats", sweep.Repeats);
            w.WriteString("keep", sweep.KeepAll ? "all" : "best");
            w.WriteEndObject();
        }
        else
        {
            w.WriteNumber("n_instances", c.NInstances);
            w.WriteStartArray("feature_probability");
            for (var k = 0; k < c.NInstances; k++)
            {
                w.WriteStartArray();
                foreach (var v in c.InstanceProbability(k)) w.WriteNumberValue(v);
                w.WriteEndArray();
            }
            w.WriteEndArray();
            WriteFloats(w, "l1", c.L1);
        }
        if (c.FeatureSets.Length > 0)
        {
            w.WriteStartArray("feature_sets");
            foreach (var set in c.FeatureSets)
            {
                w.WriteStartObject();
                w.WriteString("kind", ToyConfig.FeatureSetName(set.Kind));
                w.WriteStartArray("features");
                foreach (var i in set.Features) w.WriteNumberValue(i);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        w.WriteNumber("polysemanticity_threshold", c.PolysemanticityThreshold);
        w.WriteNumber("batch_size", c.BatchSize);
        w.WriteNumber("steps", c.Steps);
        w.WriteNumber("lr", c.Lr);
        w.WriteNumber("weight_decay", c.WeightDecay);
        w.WriteString("optimizer", ToyConfig.OptimizerName(c.Optimizer));
        w.WriteNumber("seed", c.Seed);
    }

    private static void WriteFloats(Utf8JsonWriter w, string name, IEnumerable<float> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values) w.WriteNumberValue(v);
        w.WriteEndArray();
    }
}
