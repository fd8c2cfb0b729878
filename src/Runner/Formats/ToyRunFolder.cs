using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;

namespace NativeEngine.Runner.Formats;

/// <summary>
/// A toy run's folder: config.json (the resolved config), results.json (per-instance parameters and metrics)
/// and weights.safetensors (W [instances, n, m], b [instances, n]).
/// </summary>
public static class ToyRunFolder
{
    /// <summary>Creates the folder up front, so an unwritable destination fails before any training.</summary>
    public static void Prepare(string directory)
    {
        try
        {
            Directory.CreateDirectory(directory);
            var probe = Path.Combine(directory, ".write-test");
            File.WriteAllText(probe, "");
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"--out {directory}: cannot write there ({e.Message}); choose a writable folder");
        }
    }

    public static void Write(string directory, ToyRunResult run)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.WriteText(Path.Combine(directory, "config.json"), ToyConfigWriter.ToJson(run.Config));
        AtomicFile.WriteText(Path.Combine(directory, "results.json"), ResultsJson(run));
        var c = run.Config;
        SafeTensors.Write(Path.Combine(directory, "weights.safetensors"),
        [
            new Tensor("W", [c.NInstances, c.NFeatures, c.NHidden], run.W),
            new Tensor("b", [c.NInstances, c.NFeatures], run.B),
        ], new Dictionary<string, string>
        {
            ["model"] = ToyConfig.ModelName(c.Model),
            ["layout"] = "W[instance, feature, hidden]: row i of W[k] is feature i's direction in instance k",
            ["steps"] = run.Steps.ToString(),
            ["seed"] = c.Seed.ToString(),
        });
    }

    public static string ResultsJson(ToyRunResult run)
    {
        var c = run.Config;
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("model", ToyConfig.ModelName(c.Model));
            w.WriteString("backend", run.Device.Backend == Backend.Cuda ? "cuda" : "cpu");
            w.WriteString("device", run.Device.Name);
            w.WriteNumber("steps", run.Steps);
            w.WriteNumber("seconds", Math.Round(run.Seconds, 4));
            w.WriteStartArray("instances");
            for (var k = 0; k < c.NInstances; k++)
            {
                var metrics = run.Metrics[k];
                w.WriteStartObject();
                WriteArray(w, "feature_probability", Enumerable.Repeat((double)c.FeatureProbability[k], c.NFeatures));
                WriteArray(w, "importance", c.Importance.Select(v => (double)v));
                WriteNumber(w, "loss", run.Loss[k]);
                w.WriteStartArray("W");
                var wk = run.InstanceW(k).ToArray();
                for (var i = 0; i < c.NFeatures; i++)
                {
                    w.WriteStartArray();
                    for (var j = 0; j < c.NHidden; j++) w.WriteNumberValue(wk[i * c.NHidden + j]);
                    w.WriteEndArray();
                }
                w.WriteEndArray();
                WriteArray(w, "b", run.InstanceB(k).ToArray().Select(v => (double)v));
                WriteArray(w, "feature_norm", metrics.FeatureNorm);
                WriteArray(w, "superposition", metrics.Superposition);
                WriteArray(w, "dimensionality", metrics.Dimensionality);
                WriteNumber(w, "dimensions_per_feature", metrics.DimensionsPerFeature);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteArray(Utf8JsonWriter w, string name, IEnumerable<double> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values) WriteValue(w, v);
        w.WriteEndArray();
    }

    private static void WriteNumber(Utf8JsonWriter w, string name, double value)
    {
        w.WritePropertyName(name);
        WriteValue(w, value);
    }

    // JSON has no NaN or infinity: a diverged value is written as null rather than lost with the whole file.
    private static void WriteValue(Utf8JsonWriter w, double value)
    {
        if (double.IsFinite(value)) w.WriteNumberValue(Math.Round(value, 7));
        else w.WriteNullValue();
    }
}
