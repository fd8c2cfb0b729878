using System.Globalization;
using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;
using NativeEngine.Runner.Reports.Figures;

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
public static class HybridExperiment
{
    public static readonly string[] Kinds = ["ordinary", "l1", "moe"];

    /// <summary>Trains, harvests and factorizes into <paramref name="outDir"/> (models/, p*/KIND/activations,
    /// p*/KIND/dict_N), then writes hybrid.json, figures/ and report.html. Null when cancelled. On several processes
    /// (the world: mpirun, srun) the models' instances are split across them, then each rank harvests and factorizes
    /// its share of the (density, model) pairs on its own, and the first rank gathers the results and writes them.</summary>
    public static IReadOnlyList<HybridModel>? Run(EngineContext context, HybridConfig c, string outDir, IRunProgress progress,
        CancellationToken cancel, bool force = false)
    {
        var world = Communicator.World;
        if (world.Rank != 0) return Decode(context, c, outDir, progress, cancel, world);
        RunFolder.Claim(outDir, Kind, JsonSerializer.Serialize(c, ConfigJson), force);
        return RunFolder.Track(outDir, () => Decode(context, c, outDir, progress, cancel, world));
    }

    public const string Kind = "hybrid";

    /// <summary>The config as run.json records it (snake_case keys).</summary>
    public static readonly JsonSerializerOptions ConfigJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    // Every model, harvest and dictionary folder below outDir belongs to this run (written over whatever they held).
    private static IReadOnlyList<HybridModel>? Decode(EngineContext context, HybridConfig c, string outDir, IRunProgress progress,
        CancellationToken cancel, Communicator world)
    {
        var toyConfig = c.DenseConfig();
        var moeConfig = c.MoeConfig();
        var dense = ToyExperiment.Run(context, toyConfig, Path.Combine(outDir, "models", "dense"), progress, cancel, force: true, world);
        if (!dense.Completed) return null;
        var moe = MoeExperiment.Run(context, moeConfig, Path.Combine(outDir, "models", "moe"), progress, cancel, force: true, world);
        if (!moe.Completed) return null;

        // Each rank factorizes alone (its own one-rank communicator), pairs u = rank, rank + N, ...
        using var alone = world.Size > 1 ? world.Split(world.Rank, 0) : null;
        var mine = new List<(int Unit, HybridModel Model)>();
        var cancelled = false;
        var units = c.FeatureProbability.SelectMany(p => Kinds.Select(kind => (p, kind))).ToArray();
        for (var u = world.Rank; u < units.Length && !cancelled; u += world.Size)
        {
            var (p, kind) = units[u];
            var folder = Path.Combine(outDir, $"p{p.ToString("R", CultureInfo.InvariantCulture)}", kind);
            var activations = Path.Combine(folder, "activations");
            HybridModel model;
            float[] features;
            try
            {
                if (kind == "moe")
                {
                    var setting = moeConfig.Run.Settings.Single(s => Same(s.FeatureProbability, p));
                    var k = moe.BestOf(setting.Instances);
                    features = Harvest.Run(context, moeConfig, moe.Parameters, k, c.HarvestTokens, c.HarvestTokens, activations,
                        progress.For($"harvest p = {p:G3}, {kind}"), cancel).Features;
                    var ev = moe.Metrics[k];
                    model = new HybridModel(kind, p, k, ev.Evaluation.Loss, ev.Evaluation.L1Penalty,
                        ev.Summary.FeaturesPerDimension, 0, []);
                }
                else
                {
                    var l1 = kind == "l1" ? c.L1 : 0;
                    var setting = toyConfig.Settings.Single(s => Same(s.FeatureProbability, p) && Same(s.L1, l1));
                    var k = dense.BestOf(setting.Instances);
                    features = Harvest.Run(context, toyConfig, dense.W, k, c.HarvestTokens, c.HarvestTokens, activations,
                        progress.For($"harvest p = {p:G3}, {kind}"), cancel).Features;
                    var summary = SuperpositionSummary.Of([(1.0, dense.Metrics[k])], c.NHidden, 1);
                    model = new HybridModel(kind, p, k, dense.Loss[k], dense.Penalty[k], summary.FeaturesPerDimension, 0, []);
                }
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                // A harvest cut short: the models and dictionaries finished so far are written. The other ranks learn it
                // at the gather below, so every rank ends the run together.
                cancelled = true;
                break;
            }
            var truth = RepresentedDirections(features, c.NHidden);
            var recovery = new List<HybridRecovery>();
            foreach (var size in c.DictionarySizes)
            {
                var factorized = FactorizeExperiment.Run(context,
                    c.FactorizeConfig(Path.GetFullPath(Path.Combine(activations, "hidden_*.npy")), size, p),
                    Path.Combine(folder, $"dict_{size}"), progress, cancel, force: true, ranks: alone ?? world);
                if (!factorized.Completed)
                {
                    cancelled = true;
                    break;
                }
                var (mmcs, matched) = Recovery(truth, factorized.Dictionary!.WDec, c.NHidden);
                recovery.Add(new HybridRecovery(size, Math.Min(c.KAt(p), size), mmcs, matched, factorized.Metrics!.Fvu,
                    factorized.Metrics.L0));
            }
            if (!cancelled)
                mine.Add((u, model with { RepresentedFeatures = truth.Length / c.NHidden, Recovery = recovery.ToArray() }));
        }
        var share = new RankShare(cancelled, mine.Select(x => x.Unit).ToArray(), mine.Select(x => x.Model).ToArray());
        var gathered = world.Size > 1 ? RankGather.All(world, share) : [share];
        if (gathered.Any(g => g.Cancelled)) return null;
        var results = gathered.SelectMany(g => g.Units.Zip(g.Models)).OrderBy(x => x.First).Select(x => x.Second).ToList();
        if (world.Rank == 0)
        {
            AtomicFile.WriteText(Path.Combine(outDir, "hybrid.json"), ResultsJson(c, results));
            WriteReport(outDir, c, results);
        }
        world.Barrier();
        return results;
    }

    /// <summary>What one rank did of the (density, model) pairs: their indices and results.</summary>
    private sealed record RankShare(bool Cancelled, int[] Units, HybridModel[] Models);

    // Settings hold the single-precision values the native model trains with.
    private static bool Same(double a, double b) => Math.Abs(a - b) <= 1e-6 * Math.Max(Math.Abs(a), Math.Abs(b));

    /// <summary>The feature directions ([n][d]) whose norm marks them represented, as rows [count][d].</summary>
    public static float[] RepresentedDirections(float[] features, int d)
    {
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

    /// <summary>The results as a table: headers, and per model its loss, superposition and recovery at each size.</summary>
    public static (string[] Headers, IEnumerable<string[]> Rows) Table(HybridConfig c, IReadOnlyList<HybridModel> results) =>
        (new[] { "p", "model", "loss", "features / dim", "represented" }
                .Concat(c.DictionarySizes.Select(s => $"matched cos (MMCS), d_sae {s}")).ToArray(),
            results.Select(r => new[] { F(r.FeatureProbability, "G3"), r.Kind, F(r.Loss, "G3"),
                    F(r.FeaturesPerDimension, "F2"), r.RepresentedFeatures.ToString() }
                .Concat(r.Recovery.Select(x => $"{F(x.MatchedCosine, "F3")} ({F(x.Mmcs, "F3")})")).ToArray()));

    private static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);

    private static string ResultsJson(HybridConfig c, IReadOnlyList<HybridModel> results)
    {
        return Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteNumber("n_features", c.NFeatures);
            w.WriteNumber("n_hidden", c.NHidden);
            w.WriteString("recovery", "against each model's represented feature directions (norm > 0.5 of the largest, " +
                                      "at least 0.5): mmcs = mean best cosine; matched_cosine = one-to-one assignment, " +
                                      "summed over represented features and divided by their count");
            w.WriteStartArray("models");
            foreach (var r in results)
            {
                w.WriteStartObject();
                w.WriteString("kind", r.Kind);
                w.WriteNumber("feature_probability", r.FeatureProbability);
                w.WriteNumber("instance", r.Instance);
                Json.Number(w, "loss", r.Loss);
                Json.Number(w, "l1_penalty", r.L1Penalty);
                Json.Number(w, "features_per_dimension", r.FeaturesPerDimension);
                w.WriteNumber("represented_features", r.RepresentedFeatures);
                w.WriteStartArray("dictionaries");
                foreach (var d in r.Recovery)
                {
                    w.WriteStartObject();
                    w.WriteNumber("d_sae", d.DSae);
                    w.WriteNumber("k", d.K);
                    Json.Number(w, "mmcs", d.Mmcs);
                    Json.Number(w, "matched_cosine", d.MatchedCosine);
                    Json.Number(w, "fvu", d.Fvu);
                    Json.Number(w, "l0", d.L0);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    private static void WriteReport(string outDir, HybridConfig c, IReadOnlyList<HybridModel> results)
    {
        var figures = new FigureFolder(outDir);
        var report = new HtmlReport(c.Title ?? "Hybrid: decoding models trained to have less superposition");
        report.AddParagraph($"At each density, three models with {c.NHidden} hidden dimensions learn {c.NFeatures} features: an ordinary " +
                            $"ReLU-output model, the same with an L1 penalty of {c.L1:G3} on its hidden activations, and a mixture of " +
                            $"{c.NExperts} experts of width {c.ExpertHidden} (top-{c.TopK}). Each model's hidden activations on fresh data " +
                            "are factorized by TopK dictionaries; recovery is the one-to-one matched cosine between the dictionary's " +
                            "decoder rows and the model's own represented feature directions (for the MoE, a feature's row in the " +
                            "expert that handles it most often).");
        var list = new List<(string, string)>();
        foreach (var p in c.FeatureProbability)
        {
            var atP = results.Where(r => r.FeatureProbability == p).ToArray();
            var name = $"recovery_p{F(p, "R")}".Replace('.', '_');
            list.Add((figures.Save(name, ComparisonFigures.LineChart(
                    atP.Select(r => new LineSeries($"{r.Kind} ({r.RepresentedFeatures} features)",
                        r.Recovery.Select(x => ((double)x.DSae, x.MatchedCosine)).ToArray())).ToArray(),
                    "dictionary size (latents)", "matched cosine", $"Recovery at p = {F(p, "G3")}", logX: true, yMin: 0, yMax: 1)),
                $"p = {F(p, "G3")}: recovery of each model's features against dictionary size."));
        }
        var groups = c.FeatureProbability.Select(p => $"p = {F(p, "G3")}").ToArray();
        list.Add((figures.Save("loss", ComparisonFigures.GroupedBars(groups,
                Kinds.Select(k => new BarSeries(k, c.FeatureProbability
                    .Select(p => results.Single(r => r.Kind == k && r.FeatureProbability == p).Loss).ToArray())).ToArray(),
                "task loss", "The loss each model pays")),
            "Task loss (importance-weighted reconstruction error) of each model on fresh data."));
        list.Add((figures.Save("features_per_dimension", ComparisonFigures.GroupedBars(groups,
                Kinds.Select(k => new BarSeries(k, c.FeatureProbability
                    .Select(p => results.Single(r => r.Kind == k && r.FeatureProbability == p).FeaturesPerDimension).ToArray())).ToArray(),
                "features per dimension", "How much superposition each model has", referenceLine: 1, referenceLabel: "1: none")),
            "Features per hidden dimension (above 1: superposition)."));
        report.AddFigureGrid(list);
        var (headers, rows) = Table(c, results);
        report.AddTable(headers, rows);
        report.AddParagraph("Folders: models/dense and models/moe hold the trained models (each with its own report); " +
                            "p*/KIND/activations the harvested shards and ground truth; p*/KIND/dict_N each dictionary in the " +
                            "SAELens layout with its metrics and report.");
        report.Save(Path.Combine(outDir, "report.html"));
    }
}
