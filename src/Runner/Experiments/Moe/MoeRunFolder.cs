using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

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
        return Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteString("model", "moe");
            w.WriteString("expert_model", ToyConfig.ModelName(c.ExpertModel));
            w.WriteNumber("n_experts", E);
            w.WriteNumber("top_k", c.TopK);
            w.WriteNumber("expert_hidden", m);
            RunFolder.WriteTraining(w, run.Device, run.Steps, run.Seconds);
            if (run.NonFinite is { } where) NonFiniteException.Write(w, where);
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
                Json.Number(w, "loss_per_active_flop", metrics.LossPerActiveFlop);
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
                RunFolder.WriteSettings(w, r.Settings, run.BestOf, k => run.Metrics[k].Evaluation.Loss);
            w.WriteEndObject();
        });
    }

    /// <summary>The parameters of weights.safetensors, checked against the config's shapes.</summary>
    public static MoeParameters ReadParameters(string weightsPath, MoeConfig config)
    {
        long I = config.Run.NInstances, E = config.NExperts, n = config.Run.NFeatures, m = config.ExpertHidden;
        var (tensors, _) = SafeTensors.Read(weightsPath);
        const string holds = "a moe run's weights hold W, b, W_gate, W_noise and route_bias";
        float[] Read(string name, params long[] shape) => SafeTensors.Require(tensors, weightsPath, name, shape, holds);
        return new MoeParameters(Read("W", I, E, n, m), Read("b", I, E, n), Read("W_gate", I, n, E),
            Read("W_noise", I, n, E), Read("route_bias", I, E));
    }
}
