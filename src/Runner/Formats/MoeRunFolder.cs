using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;

namespace NativeEngine.Runner.Formats;

/// <summary>
/// A mixture-of-experts run's folder: config.json (resolved), results.json (per instance: losses, routing,
/// summary metrics, each expert's W and geometry, the router; per setting for sweeps) and weights.safetensors
/// (W [instances, E, n, m], b [instances, E, n], W_gate and W_noise [instances, n, E], route_bias [instances, E]).
/// </summary>
public static class MoeRunFolder
{
    public static void Write(string directory, MoeRunResult run)
    {
        Directory.CreateDirectory(directory);
        var c = run.Config;
        AtomicFile.WriteText(Path.Combine(directory, "config.json"), MoeConfigWriter.ToJson(c));
        AtomicFile.WriteText(Path.Combine(directory, "results.json"), ResultsJson(run));
        long I = c.Run.NInstances, E = c.NExperts, n = c.Run.NFeatures, m = c.ExpertHidden;
        var p = run.Parameters;
        SafeTensors.Write(Path.Combine(directory, "weights.safetensors"),
        [
            new Tensor("W", [I, E, n, m], p.W),
            new Tensor("b", [I, E, n], p.B),
            new Tensor("W_gate", [I, n, E], p.WGate),
            new Tensor("W_noise", [I, n, E], p.WNoise),
            new Tensor("route_bias", [I, E], p.RouteBias),
        ], new Dictionary<string, string>
        {
            ["model"] = "moe",
            ["expert_model"] = ToyConfig.ModelName(c.ExpertModel),
            ["layout"] = "W[instance, expert, feature, hidden]: row i of W[k, e] is feature i's direction in expert e",
            ["steps"] = run.Steps.ToString(),
            ["seed"] = c.Run.Seed.ToString(),
        });
    }

    public static string ResultsJson(MoeRunResult run)
    {
        var c = run.Config;
        var r = c.Run;
        var importance = r.ImportancePerInstance();
        int n = r.NFeatures, m = c.ExpertHidden, E = c.NExperts;
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("model", "moe");
            w.WriteString("expert_model", ToyConfig.ModelName(c.ExpertModel));
            w.WriteNumber("n_experts", E);
            w.WriteNumber("top_k", c.TopK);
            w.WriteNumber("expert_hidden", m);
            w.WriteString("backend", run.Device.Backend == Backend.Cuda ? "cuda" : "cpu");
            w.WriteString("device", run.Device.Name);
            w.WriteNumber("steps", run.Steps);
            w.WriteNumber("seconds", Math.Round(run.Seconds, 4));
            w.WriteStartArray("instances");
            for (var k = 0; k < r.NInstances; k++)
            {
                var metrics = run.Metrics[k];
                var ev = metrics.Evaluation;
                w.WriteStartObject();
                Json.Array(w, "feature_probability", r.InstanceProbability(k).ToArray().Select(v => (double)v));
                Json.Array(w, "importance", importance.AsSpan(k * n, n).ToArray().Select(v => (double)v));
                Json.Number(w, "l1", r.L1[k]);
                Json.Number(w, "loss", ev.Loss);
                Json.Number(w, "l1_penalty", ev.L1Penalty);
                Json.Number(w, "balance_loss", ev.BalanceLoss);
                Json.Number(w, "z_loss", ev.ZLoss);
                Json.Number(w, "dropped_fraction", ev.DroppedFraction);
                Json.Array(w, "usage", ev.Usage.Select(v => (double)v));
                Json.Number(w, "active_flops_per_sample", metrics.ActiveFlopsPerSample);
                w.WriteNumber("loss_per_active_flop", metrics.LossPerActiveFlop);
                Json.Number(w, "features_per_dimension", metrics.Summary.FeaturesPerDimension);
                w.WriteNumber("represented_features", metrics.Summary.RepresentedFeatures);
                Json.Number(w, "superposed_fraction", metrics.Summary.SuperposedFraction);
                Json.Number(w, "mean_dimensionality", metrics.Summary.MeanDimensionality);
                w.WriteStartArray("experts");
                for (var e = 0; e < E; e++)
                {
                    var expert = metrics.Experts[e];
                    w.WriteStartObject();
                    Json.Matrix(w, "W", run.ExpertW(k, e), n, m);
                    Json.Array(w, "b", run.Parameters.B.AsSpan((k * E + e) * n, n).ToArray().Select(v => (double)v));
                    Json.Array(w, "feature_norm", expert.FeatureNorm);
                    Json.Array(w, "superposition", expert.Superposition);
                    Json.Array(w, "dimensionality", expert.Dimensionality);
                    Json.Number(w, "dimensionality_sum", expert.DimensionalitySum);
                    if (metrics.Neurons?[e] is { } neurons)
                    {
                        w.WriteStartArray("features_per_neuron");
                        foreach (var count in neurons.FeaturesPerNeuron) w.WriteNumberValue(count);
                        w.WriteEndArray();
                        w.WriteNumber("polysemantic_neurons", neurons.PolysemanticNeurons);
                    }
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                Json.Matrix(w, "W_gate", run.Parameters.WGate.AsSpan(k * n * E, n * E), n, E);
                if (c.Router.Noise == RouterNoise.NoisyTopK)
                    Json.Matrix(w, "W_noise", run.Parameters.WNoise.AsSpan(k * n * E, n * E), n, E);
                Json.Array(w, "route_bias", run.Parameters.RouteBias.AsSpan(k * E, E).ToArray().Select(v => (double)v));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (r.Sweep is not null)
                Json.Settings(w, r.Settings, run.BestOf, k => run.Metrics[k].Evaluation.Loss);
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }
}

/// <summary>JSON writing shared by the run folders: JSON has no NaN, so a diverged value is written as null.</summary>
public static class Json
{
    public static void Number(Utf8JsonWriter w, string name, double value)
    {
        w.WritePropertyName(name);
        Value(w, value);
    }

    public static void Value(Utf8JsonWriter w, double value)
    {
        if (double.IsFinite(value)) w.WriteNumberValue(Math.Round(value, 7));
        else w.WriteNullValue();
    }

    public static void Array(Utf8JsonWriter w, string name, IEnumerable<double> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values) Value(w, v);
        w.WriteEndArray();
    }

    /// <summary>values [rows][columns] row-major, as nested arrays of exact floats.</summary>
    public static void Matrix(Utf8JsonWriter w, string name, ReadOnlySpan<float> values, int rows, int columns)
    {
        w.WriteStartArray(name);
        for (var r = 0; r < rows; r++)
        {
            w.WriteStartArray();
            for (var c = 0; c < columns; c++)
            {
                var v = values[r * columns + c];
                if (float.IsFinite(v)) w.WriteNumberValue(v);
                else w.WriteNullValue();
            }
            w.WriteEndArray();
        }
        w.WriteEndArray();
    }

    /// <summary>The "settings" array of a sweep: per setting its values, instances, the best instance (chosen
    /// by the caller's training objective) and the best and median loss.</summary>
    public static void Settings(Utf8JsonWriter w, IEnumerable<ToySetting> settings, Func<IEnumerable<int>, int> bestOf,
        Func<int, double> loss)
    {
        w.WriteStartArray("settings");
        foreach (var setting in settings)
        {
            var best = bestOf(setting.Instances);
            w.WriteStartObject();
            Number(w, "feature_probability", setting.FeatureProbability);
            Number(w, "importance_ratio", setting.ImportanceRatio);
            Number(w, "l1", setting.L1);
            w.WriteStartArray("instances");
            foreach (var k in setting.Instances) w.WriteNumberValue(k);
            w.WriteEndArray();
            w.WriteNumber("best_instance", best);
            Number(w, "loss_best", loss(best));
            Number(w, "loss_median", Median(setting.Instances.Select(loss).Order().ToArray()));
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    public static double Median(double[] sorted) =>
        sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
}
