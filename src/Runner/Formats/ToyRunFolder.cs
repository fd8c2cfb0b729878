using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;

namespace NativeEngine.Runner.Formats;

/// <summary>
/// A toy run's folder: config.json (the resolved config), results.json (per-instance parameters and metrics, and
/// per-setting summaries for sweeps) and weights.safetensors (W [instances, n, m], W_out for untied models, b
/// [instances, n]). Figures and report.html are written by <see cref="Reports.ToyReport"/>.
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
        var tensors = new List<Tensor> { new("W", [c.NInstances, c.NFeatures, c.NHidden], run.W) };
        if (run.WOut is not null) tensors.Add(new Tensor("W_out", [c.NInstances, c.NFeatures, c.NHidden], run.WOut));
        tensors.Add(new Tensor("b", [c.NInstances, c.NFeatures], run.B));
        SafeTensors.Write(Path.Combine(directory, "weights.safetensors"), tensors, new Dictionary<string, string>
        {
            ["model"] = ToyConfig.ModelName(c.Model),
            ["layout"] = "W[instance, feature, hidden]: row i of W[k] is feature i's direction in instance k" +
                         (run.WOut is null ? "" : "; W_out[instance, feature, hidden]: row i holds output i's weights"),
            ["steps"] = run.Steps.ToString(),
            ["seed"] = c.Seed.ToString(),
        });
    }

    public static string ResultsJson(ToyRunResult run)
    {
        var c = run.Config;
        var importance = c.ImportancePerInstance();
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
                WriteArray(w, "feature_probability", c.InstanceProbability(k).ToArray().Select(v => (double)v));
                WriteArray(w, "importance", importance.AsSpan(k * c.NFeatures, c.NFeatures).ToArray().Select(v => (double)v));
                WriteNumber(w, "loss", run.Loss[k]);
                WriteMatrix(w, "W", run.InstanceW(k), c.NFeatures, c.NHidden, transpose: false);
                // W_out as [m][n] (hidden unit j's weights onto the outputs): the orientation of W^T in tied models.
                if (run.WOut is not null) WriteMatrix(w, "W_out", run.InstanceWOut(k), c.NFeatures, c.NHidden, transpose: true);
                WriteArray(w, "b", run.InstanceB(k).ToArray().Select(v => (double)v));
                WriteArray(w, "feature_norm", metrics.FeatureNorm);
                WriteArray(w, "superposition", metrics.Superposition);
                WriteArray(w, "dimensionality", metrics.Dimensionality);
                WriteNumber(w, "dimensions_per_feature", metrics.DimensionsPerFeature);
                WriteNumber(w, "l1", c.L1[k]);
                WriteNumber(w, "l1_penalty", run.Penalty[k]);
                if (run.Neurons?[k] is { } neurons)
                {
                    w.WriteStartArray("features_per_neuron");
                    foreach (var count in neurons.FeaturesPerNeuron) w.WriteNumberValue(count);
                    w.WriteEndArray();
                    w.WriteNumber("polysemantic_neurons", neurons.PolysemanticNeurons);
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (c.Sweep is not null)
            {
                w.WriteStartArray("settings");
                foreach (var setting in c.Settings)
                {
                    var best = run.BestOf(setting.Instances);
                    var losses = setting.Instances.Select(k => (double)run.Loss[k]).Order().ToArray();
                    w.WriteStartObject();
                    WriteNumber(w, "feature_probability", setting.FeatureProbability);
                    WriteNumber(w, "importance_ratio", setting.ImportanceRatio);
                    WriteNumber(w, "l1", setting.L1);
                    w.WriteStartArray("instances");
                    foreach (var k in setting.Instances) w.WriteNumberValue(k);
                    w.WriteEndArray();
                    w.WriteNumber("best_instance", best);
                    WriteNumber(w, "loss_best", run.Loss[best]);
                    WriteNumber(w, "loss_median", Median(losses));
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private static double Median(double[] sorted) =>
        sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;

    // values: [n][m] row-major; written as [n][m], or as [m][n] when transposed.
    private static void WriteMatrix(Utf8JsonWriter w, string name, ReadOnlySpan<float> values, int n, int m, bool transpose)
    {
        w.WriteStartArray(name);
        var (rows, columns) = transpose ? (m, n) : (n, m);
        for (var r = 0; r < rows; r++)
        {
            w.WriteStartArray();
            for (var col = 0; col < columns; col++)
            {
                // Weights exactly as trained (a float round-trips), null if diverged.
                var value = transpose ? values[col * m + r] : values[r * m + col];
                if (float.IsFinite(value)) w.WriteNumberValue(value);
                else w.WriteNullValue();
            }
            w.WriteEndArray();
        }
        w.WriteEndArray();
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
