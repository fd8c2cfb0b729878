using System.Globalization;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Reports.Figures;

namespace NativeEngine.Runner.Experiments;

/// <summary>Tables and figures of a mixture-of-experts run: routing, superposition across experts, and each
/// expert's geometry.</summary>
public static class MoeReport
{
    /// <summary>Instances whose experts are drawn one by one.</summary>
    public const int MaxGeometryInstances = 3;

    public static (string[] Headers, List<string[]> Cells) Rows(MoeRunResult run)
    {
        var c = run.Config;
        var headers = new[]
        {
            "inst", "p", "l1", "loss", "dropped", "usage per expert", "features / dim", "represented",
            "in superposition", "mean D_i", "active FLOPs",
        };
        var cells = run.ShownInstances().Select(k =>
        {
            var setting = c.Run.SettingOf(k);
            var m = run.Metrics[k];
            return new[]
            {
                k.ToString(CultureInfo.InvariantCulture),
                double.IsNaN(setting.FeatureProbability) ? "per feature" : F(setting.FeatureProbability, "G3"),
                F(c.Run.L1[k], "G3"),
                F(m.Evaluation.Loss, "G4"),
                F(m.Evaluation.DroppedFraction, "P1"),
                string.Join(" ", m.Evaluation.Usage.Select(u => F(u, "F2"))),
                F(m.Summary.FeaturesPerDimension, "F2"),
                m.Summary.RepresentedFeatures.ToString(CultureInfo.InvariantCulture),
                F(m.Summary.SuperposedFraction, "P0"),
                F(m.Summary.MeanDimensionality, "F2"),
                F(m.ActiveFlopsPerSample, "G4"),
            };
        }).ToList();
        return (headers, cells);
    }

    public static void Write(string directory, MoeRunResult run)
    {
        var c = run.Config;
        var figures = new FigureFolder(directory);
        var report = new HtmlReport(c.Run.Title ?? $"Mixture of experts: {c.NExperts} experts, top-{c.TopK}");
        report.AddParagraph(
            $"{c.NExperts} experts, each a {ToyConfig.ModelName(c.ExpertModel)} toy model of width {c.ExpertHidden} on " +
            $"{c.Run.NFeatures} features; the router picks {c.TopK} per token " +
            $"({(c.Router.Renormalize ? "gates renormalised" : "plain softmax gates")}, noise {c.Router.Noise}, " +
            $"load balance {c.Router.LoadBalance:G3}, z-loss {c.Router.ZLoss:G3}, bias update {c.Router.BiasUpdate:G3}, " +
            $"capacity factor {(c.Router.CapacityFactor > 0 ? c.Router.CapacityFactor.ToString("G3", CultureInfo.InvariantCulture) : "dropless")}). " +
            $"{c.Run.NInstances} instances, {run.Steps} steps in {run.Seconds:F1} s on {run.Device.Describe()}.");
        if (c.RouterStarvedOfTaskGradient)
            report.AddParagraph("Note: with top_k = 1 and renormalised gates the gate is identically 1, so the router " +
                                "learns only from the load-balancing and z losses.");

        var shown = run.ShownInstances();
        var sweepFigures = new List<(string, string)>();
        var byDensity = shown.Where(k => !double.IsNaN(c.Run.SettingOf(k).FeatureProbability))
            .OrderBy(k => c.Run.SettingOf(k).FeatureProbability).ToArray();
        if (byDensity.Select(k => c.Run.SettingOf(k).FeatureProbability).Distinct().Count() >= 2)
        {
            var points = byDensity.Select(k => (c.Run.SettingOf(k).FeatureProbability, run.Metrics[k].Summary.FeaturesPerDimension)).ToArray();
            sweepFigures.Add((figures.Save("features_per_dimension", ComparisonFigures.LineChart(
                    [new LineSeries("MoE", points)], "feature density p", "features per active dimension",
                    "Superposition against density")),
                "Σ_e p_e R_e / (m k), R_e the features represented in expert e: features per hidden dimension a token uses; 1 means no superposition."));
        }
        var usageSeries = shown.Take(6).Select(k => new BarSeries(
            $"instance {k}" + (double.IsNaN(c.Run.SettingOf(k).FeatureProbability) ? "" : $", p = {c.Run.SettingOf(k).FeatureProbability:G3}"),
            run.Metrics[k].Evaluation.Usage.Select(u => (double)u).ToArray())).ToArray();
        sweepFigures.Add((figures.Save("usage", ComparisonFigures.GroupedBars(
                Enumerable.Range(0, c.NExperts).Select(e => $"expert {e}").ToArray(), usageSeries,
                "fraction of tokens", "Expert usage", referenceLine: (double)c.TopK / c.NExperts,
                referenceLabel: "uniform (k/E)")),
            "Fraction of tokens routed to each expert (before capacity drops); the dashed line is uniform routing."));
        report.AddHeading("Routing and superposition");
        report.AddFigureGrid(sweepFigures);
        var (headers, cells) = Rows(run);
        report.AddTable(headers, cells, "features / dim: Σ_e p_e R_e / (m k); represented: features with ‖W_i‖ > 0.5 " +
                                        "in some expert; in superposition: usage-weighted share of represented features with D_i < 0.9; " +
                                        "active FLOPs: forward FLOPs per sample (router + k experts).");
        AddExpertGeometry(report, figures, run, shown.Take(MaxGeometryInstances).ToArray(), "");
        report.AddHeading("Config");
        report.AddPreformatted(MoeConfigWriter.ToJson(c), "the resolved config (config.json)");
        report.Save(Path.Combine(directory, "report.html"));
    }

    /// <summary>Per instance, each expert's feature norms coloured by superposition (and neuron stacks for
    /// privileged-basis experts).</summary>
    public static void AddExpertGeometry(HtmlReport report, FigureFolder figures, MoeRunResult run, int[] instances,
        string prefix)
    {
        var c = run.Config;
        report.AddHeading("Each expert's geometry");
        foreach (var k in instances)
        {
            var setting = c.Run.SettingOf(k);
            var label = $"instance {k}" + (double.IsNaN(setting.FeatureProbability) ? "" : $", p = {setting.FeatureProbability:G3}");
            var list = new List<(string, string)>();
            for (var e = 0; e < c.NExperts; e++)
            {
                var metrics = run.Metrics[k].Experts[e];
                var usage = run.Metrics[k].Evaluation.Usage[e];
                list.Add((figures.Save($"{prefix}instance{k}_expert{e}_norms", ToyFigures.FeatureNormBars(metrics.FeatureNorm,
                        metrics.Superposition, $"expert {e} (usage {usage:F2}), {label}")),
                    $"Expert {e}: ‖W_i‖ coloured by superposition; Σ D_i = {metrics.DimensionalitySum:F2} of m = {c.ExpertHidden}."));
                if (c.Run.HasPrivilegedBasis)
                    list.Add((figures.Save($"{prefix}instance{k}_expert{e}_neurons", ToyFigures.NeuronStack(run.ExpertW(k, e).ToArray(),
                            c.Run.NFeatures, c.ExpertHidden, $"expert {e} neurons, {label}")),
                        $"Expert {e}'s neurons: each feature's weight, stacked."));
            }
            report.AddHeading(label, 3);
            report.AddFigureGrid(list);
        }
    }

    private static string F(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);
}
