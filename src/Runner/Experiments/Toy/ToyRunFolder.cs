using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// A toy run's folder: config.json (the resolved config), results.json (per-instance parameters and metrics, and
/// per-setting summaries for sweeps) and weights.safetensors (W [instances, n, m], W_out for untied models, b
/// [instances, n]). Figures and report.html are written by <see cref="ToyReport"/>.
/// </summary>
public static class ToyRunFolder
{
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
        return Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteString("model", ToyConfig.ModelName(c.Model));
            RunFolder.WriteTraining(w, run.Device, run.Steps, run.Seconds);
            if (run.NonFinite is { } where) NonFiniteException.Write(w, where);
            w.WriteStartArray("instances");
            for (var k = 0; k < c.NInstances; k++)
            {
                var metrics = run.Metrics[k];
                w.WriteStartObject();
                Json.Array(w, "feature_probability", c.InstanceProbability(k).ToArray().Select(v => (double)v));
                Json.Array(w, "importance", importance.AsSpan(k * c.NFeatures, c.NFeatures).ToArray().Select(v => (double)v));
                Json.Number(w, "loss", run.Loss[k]);
                Json.Matrix(w, "W", run.InstanceW(k), c.NFeatures, c.NHidden);
                // W_out as [m][n] (hidden unit j's weights onto the outputs): the orientation of W^T in tied models.
                if (run.WOut is not null) Json.Matrix(w, "W_out", Transpose(run.InstanceWOut(k), c.NFeatures, c.NHidden), c.NHidden, c.NFeatures);
                Json.Array(w, "b", run.InstanceB(k).ToArray().Select(v => (double)v));
                Json.Array(w, "feature_norm", metrics.FeatureNorm);
                Json.Array(w, "superposition", metrics.Superposition);
                Json.Array(w, "dimensionality", metrics.Dimensionality);
                Json.Number(w, "dimensions_per_feature", metrics.DimensionsPerFeature);
                Json.Number(w, "l1", c.L1[k]);
                Json.Number(w, "l1_penalty", run.Penalty[k]);
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
            if (c.Sweep is not null) RunFolder.WriteSettings(w, c.Settings, run.BestOf, k => run.Loss[k]);
            w.WriteEndObject();
        });
    }

    // [rows][columns] -> [columns][rows]
    private static float[] Transpose(ReadOnlySpan<float> values, int rows, int columns)
    {
        var result = new float[values.Length];
        for (var r = 0; r < rows; r++)
            for (var c = 0; c < columns; c++) result[c * rows + r] = values[r * columns + c];
        return result;
    }
}
