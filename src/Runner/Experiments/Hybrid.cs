using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Commands;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;
using Spectre.Console;

namespace NativeEngine.Runner.Experiments;

/// <summary>How well one dictionary recovers one model's represented features.</summary>
/// <param name="Mmcs">Mean over the represented features of the best cosine to any latent's decoder row.</param>
/// <param name="MatchedCosine">One-to-one: the best assignment of distinct latents to represented features,
/// summed and divided by the number of represented features (a feature left without a latent counts 0).</param>
public sealed record HybridRecovery(int DSae, int K, double Mmcs, double MatchedCosine, double Fvu, double L0);

/// <summary>One trained model at one density, and its dictionaries.</summary>
public sealed record HybridModel(string Kind, double FeatureProbability, int Instance, double Loss, double L1Penalty,
    double FeaturesPerDimension, int RepresentedFeatures, HybridRecovery[] Recovery);

/// <summary>
/// Approach 3 (SCIENCE.md §4): train models to have less superposition, then decode them. At each density an
/// ordinary model, an L1-penalised one and a mixture of experts of the same hidden size are trained, their hidden
/// activations harvested on fresh data and factorized by TopK dictionaries of several sizes; recovery is measured
/// against each model's own represented feature directions.
/// </summary>
public static class Hybrid
{
    public static readonly string[] Kinds = ["ordinary", "l1", "moe"];

    public static IReadOnlyList<HybridModel> Run(HybridConfig c, Backend backend, string outDir, IAnsiConsole console,
        IAnsiConsole quiet)
    {
        var toyConfig = ToyConfigLoader.Parse(c.ToyJson(), "hybrid: dense models");
        var moeConfig = MoeConfigLoader.Parse(c.MoeJson(), "hybrid: mixture of experts");
        console.MarkupLine($"training {toyConfig.NInstances} dense and {moeConfig.Run.NInstances} MoE models " +
                           $"({c.NFeatures} features, {c.NHidden} hidden; MoE {c.NExperts} experts of width {c.ExpertHidden}, top-{c.TopK})");
        var dense = ToyCommand.TrainAndSave(toyConfig, backend, Path.Combine(outDir, "models", "dense"), quiet);
        var moe = MoeCommand.Train(moeConfig, backend, Path.Combine(outDir, "models", "moe"), quiet);

        var results = new List<HybridModel>();
        using var context = new EngineContext(backend);
        foreach (var p in c.FeatureProbability)
        {
            foreach (var kind in Kinds)
            {
                var folder = Path.Combine(outDir, $"p{p.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}", kind);
                var activations = Path.Combine(folder, "activations");
                HybridModel model;
                if (kind == "moe")
                {
                    var setting = moeConfig.Run.Settings.Single(s => Same(s.FeatureProbability, p));
                    var k = moe.BestOf(setting.Instances);
                    Harvest.Run(context, moeConfig, moe.Parameters, k, c.HarvestTokens, c.HarvestTokens, activations);
                    var ev = moe.Metrics[k];
                    model = new HybridModel(kind, p, k, ev.Evaluation.Loss, ev.Evaluation.L1Penalty,
                        ev.Summary.FeaturesPerDimension, 0, []);
                }
                else
                {
                    var l1 = kind == "l1" ? c.L1 : 0;
                    var setting = toyConfig.Settings.Single(s => Same(s.FeatureProbability, p) && Same(s.L1, l1));
                    var k = dense.BestOf(setting.Instances);
                    Harvest.Run(context, toyConfig, dense.W, k, c.HarvestTokens, c.HarvestTokens, activations);
                    var summary = SuperpositionSummary.Of([(1.0, dense.Metrics[k])], c.NHidden, 1);
                    model = new HybridModel(kind, p, k, dense.Loss[k], dense.Penalty[k], summary.FeaturesPerDimension, 0, []);
                }
                var truth = RepresentedDirections(Path.Combine(activations, Harvest.GroundTruthFile), c.NHidden);
                var recovery = c.DictionarySizes.Select(size =>
                    Factorize(c, backend, activations, Path.Combine(folder, $"dict_{size}"), size, p, truth, quiet)).ToArray();
                model = model with { RepresentedFeatures = truth.Length / c.NHidden, Recovery = recovery };
                results.Add(model);
                console.MarkupLine($"p = {p:G3}, {kind,-8}: loss {model.Loss:G3}, {model.RepresentedFeatures} features represented; matched cosine " +
                                   string.Join(", ", recovery.Select(r => $"{r.MatchedCosine:F2} (d_sae {r.DSae})")));
            }
        }
        return results;
    }

    // Settings hold the single-precision values the native model trains with.
    private static bool Same(double a, double b) => Math.Abs(a - b) <= 1e-6 * Math.Max(Math.Abs(a), Math.Abs(b));

    /// <summary>The harvested ground truth's feature directions whose norm marks them represented ([count][d]).</summary>
    public static float[] RepresentedDirections(string groundTruthPath, int d)
    {
        var features = SafeTensors.Read(groundTruthPath).Tensors.Single(t => t.Name == "features").Data;
        var rows = features.Length / d;
        var norms = Enumerable.Range(0, rows)
            .Select(i => Math.Sqrt(System.Numerics.Tensors.TensorPrimitives.SumOfSquares(features.AsSpan(i * d, d)))).ToArray();
        var threshold = ToyMetrics.RepresentedNorm * Math.Max(1.0, norms.Max());
        return Enumerable.Range(0, rows).Where(i => norms[i] > threshold)
            .SelectMany(i => features.AsSpan(i * d, d).ToArray()).ToArray();
    }

    /// <summary>Recovery of <paramref name="truth"/> ([count][d]) by a dictionary's decoder rows W_dec ([d_sae][d]).</summary>
    public static (double Mmcs, double MatchedCosine) Recovery(float[] truth, float[] decoder, int d)
    {
        var nTrue = truth.Length / d;
        if (nTrue == 0) return (0, 0);
        var cosines = DictionaryMetrics.Cosines(truth, nTrue, decoder, decoder.Length / d, d);
        var (_, assignment) = DictionaryMetrics.MatchedCosine(cosines);
        var total = assignment.Select((atom, i) => atom >= 0 ? cosines[i, atom] : 0).Sum();
        return (DictionaryMetrics.Mmcs(cosines), total / nTrue);
    }

    private static HybridRecovery Factorize(HybridConfig c, Backend backend, string activations, string folder, int size,
        double p, float[] truth, IAnsiConsole quiet)
    {
        Directory.CreateDirectory(folder);
        var configPath = Path.Combine(folder, "factorize.json");
        File.WriteAllText(configPath, c.FactorizeJson(Path.GetFullPath(Path.Combine(activations, "hidden_*.npy")), size, p));
        var options = new FactorizeOptions
        {
            Config = configPath, Out = folder,
            Backend = backend == Backend.Cuda ? "cuda" : backend == Backend.Cpu ? "cpu" : "auto",
        };
        var code = FactorizeCommand.Run(options, quiet);
        if (code != 0) throw new InvalidOperationException($"factorize in {folder} stopped with exit code {code}");
        var decoder = SafeTensors.Read(Path.Combine(folder, "sae_weights.safetensors")).Tensors.Single(t => t.Name == "W_dec").Data;
        var (mmcs, matched) = Recovery(truth, decoder, c.NHidden);
        using var metrics = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "metrics.json")));
        var root = metrics.RootElement;
        return new HybridRecovery(size, Math.Min(c.KAt(p), size), mmcs, matched, root.GetProperty("fvu").GetDouble(),
            root.GetProperty("l0").GetDouble());
    }
}
