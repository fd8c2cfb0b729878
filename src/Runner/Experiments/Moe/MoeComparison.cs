using System.Globalization;
using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;
using NativeEngine.Runner.Reports.Figures;

namespace NativeEngine.Runner.Experiments;

/// <summary>One model's numbers at one setting (its best instance).</summary>
public sealed record ComparedModel(double Loss, SuperpositionSummary Summary);

/// <summary>The three models at one setting of the sweep.</summary>
public sealed record ComparisonRow(ToySetting Setting, ComparedModel Moe, ComparedModel DenseFlops, ComparedModel DenseParameters);

/// <summary>
/// The paper's proposed test: does a mixture of experts hold less superposition than a dense model? The MoE of
/// the config is trained beside two dense toy models of the same expert kind, the same data and the same sweep:
/// one with the MoE's active hidden width (k·m: matched on active FLOPs, up to the router's 2nE) and one with its
/// total hidden width (E·m: matched on parameters, up to the router's).
/// </summary>
public sealed record MoeComparison(MoeRunResult Moe, ToyRunResult DenseFlops, ToyRunResult DenseParameters)
{
    /// <summary>A difference smaller than this (relative for features per dimension, absolute for fractions and
    /// D) counts as a tie.</summary>
    public const double Tolerance = 0.02;

    public static ToyConfig DenseConfig(MoeConfig moe, int width, string title) =>
        moe.Run with { NHidden = width, Title = title };

    public static double DenseParameterCount(ToyConfig c) => (double)c.NFeatures * c.NHidden + c.NFeatures;

    public static double MoeParameterCount(MoeConfig c) =>
        (double)c.NExperts * (c.Run.NFeatures * c.ExpertHidden + c.Run.NFeatures) +
        c.Run.NFeatures * c.NExperts * (c.Router.Noise == RouterNoise.NoisyTopK ? 2 : 1);

    public static double DenseFlopsPerSample(ToyConfig c) => 4.0 * c.NFeatures * c.NHidden;

    private IReadOnlyList<ComparisonRow>? _rows;

    /// <summary>The best instance of each model at each setting, in the sweep's order.</summary>
    public IReadOnlyList<ComparisonRow> Rows() => _rows ??= BuildRows();

    private List<ComparisonRow> BuildRows()
    {
        ComparedModel Dense(ToyRunResult run, ToySetting setting)
        {
            var best = run.BestOf(setting.Instances);
            return new ComparedModel(run.Loss[best],
                SuperpositionSummary.Of([(1.0, run.Metrics[best])], run.Config.NHidden, 1));
        }
        var rows = new List<ComparisonRow>();
        for (var s = 0; s < Moe.Config.Run.Settings.Length; s++)
        {
            var setting = Moe.Config.Run.Settings[s];
            var best = Moe.BestOf(setting.Instances);
            rows.Add(new ComparisonRow(setting,
                new ComparedModel(Moe.Metrics[best].Evaluation.Loss, Moe.Metrics[best].Summary),
                Dense(DenseFlops, DenseFlops.Config.Settings[s]), Dense(DenseParameters, DenseParameters.Config.Settings[s])));
        }
        return rows;
    }

    /// <summary>The metrics the verdict reads, with the direction that means less superposition.</summary>
    public static readonly (string Name, string Key, Func<SuperpositionSummary, double> Of, bool LowerIsLess)[] Metrics =
    [
        ("features per active dimension", "features_per_dimension", s => s.FeaturesPerDimension, true),
        ("share of represented features in superposition", "superposed_fraction", s => s.SuperposedFraction, true),
        ("mean dimensionality D_i of represented features", "mean_dimensionality", s => s.MeanDimensionality, false),
    ];

    /// <summary>At how many settings the MoE held less, about the same, and more superposition than a dense model.</summary>
    public (int Less, int Same, int More) Count(Func<ComparisonRow, ComparedModel> dense, int metric)
    {
        var (_, _, of, lowerIsLess) = Metrics[metric];
        int less = 0, same = 0, more = 0;
        foreach (var row in Rows())
        {
            double moe = of(row.Moe.Summary), other = of(dense(row).Summary);
            var tolerance = metric == 0 ? Tolerance * Math.Max(Math.Abs(other), 1e-12) : Tolerance;
            if (Math.Abs(moe - other) <= tolerance) same++;
            else if (moe < other == lowerIsLess) less++;
            else more++;
        }
        return (less, same, more);
    }

    public IEnumerable<string> Verdict()
    {
        var settings = Rows().Count;
        foreach (var (label, dense) in new (string, Func<ComparisonRow, ComparedModel>)[]
                 {
                     ($"matched on active FLOPs (dense width {DenseFlops.Config.NHidden})", r => r.DenseFlops),
                     ($"matched on parameters (dense width {DenseParameters.Config.NHidden})", r => r.DenseParameters),
                 })
            for (var metric = 0; metric < Metrics.Length; metric++)
            {
                var (less, same, more) = Count(dense, metric);
                yield return $"{label}, {Metrics[metric].Name}: MoE less superposition at {less} of {settings} " +
                             $"settings, about the same at {same}, more at {more}";
            }
    }

    public string ToJson()
    {
        return Json.Document(w =>
        {
            var moe = Moe.Config;
            w.WriteStartObject();
            w.WriteStartObject("moe");
            w.WriteNumber("n_experts", moe.NExperts);
            w.WriteNumber("top_k", moe.TopK);
            w.WriteNumber("expert_hidden", moe.ExpertHidden);
            w.WriteNumber("active_flops_per_sample", moe.ActiveFlopsPerSample);
            w.WriteNumber("parameters", MoeParameterCount(moe));
            w.WriteEndObject();
            foreach (var (key, run) in new[] { ("dense_flop_matched", DenseFlops), ("dense_parameter_matched", DenseParameters) })
            {
                w.WriteStartObject(key);
                w.WriteNumber("n_hidden", run.Config.NHidden);
                w.WriteNumber("active_flops_per_sample", DenseFlopsPerSample(run.Config));
                w.WriteNumber("parameters", DenseParameterCount(run.Config));
                w.WriteEndObject();
            }
            w.WriteStartArray("settings");
            foreach (var row in Rows())
            {
                w.WriteStartObject();
                Json.Number(w, "feature_probability", row.Setting.FeatureProbability);
                Json.Number(w, "importance_ratio", row.Setting.ImportanceRatio);
                Json.Number(w, "l1", row.Setting.L1);
                foreach (var (key, model) in new[] { ("moe", row.Moe), ("dense_flop_matched", row.DenseFlops), ("dense_parameter_matched", row.DenseParameters) })
                {
                    w.WriteStartObject(key);
                    Json.Number(w, "loss", model.Loss);
                    foreach (var metric in Metrics) Json.Number(w, metric.Key, metric.Of(model.Summary));
                    w.WriteNumber("represented_features", model.Summary.RepresentedFeatures);
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("verdict");
            foreach (var line in Verdict()) w.WriteStringValue(line);
            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    public static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);
}

/// <summary>The comparison as an experiment: the three runs, compare.json and the report.</summary>
public static class MoeComparisonExperiment
{
    /// <summary>Trains the MoE of <paramref name="config"/> and the two dense models on the same data and sweep into
    /// moe/, dense_flops/ and dense_parameters/ under <paramref name="outDir"/>, then writes compare.json,
    /// figures/ and report.html there. Null when cancelled: the runs finished by then are written. The three runs'
    /// folders belong to this one (written over whatever they held). On several processes (mpirun, srun) the runs
    /// split their instances across them, and the first rank claims and writes the folders.</summary>
    public static MoeComparison? Run(EngineContext context, MoeConfig config, string outDir, IRunProgress progress,
        CancellationToken cancel, bool force = false)
    {
        var world = Communicator.World;
        if (world.Rank != 0) return Compare(context, config, outDir, progress, cancel, world);
        RunFolder.Claim(outDir, Kind, MoeConfigWriter.ToJson(config), force);
        return RunFolder.Track(outDir, () => Compare(context, config, outDir, progress, cancel, world));
    }

    public const string Kind = "moe_compare";

    private static MoeComparison? Compare(EngineContext context, MoeConfig config, string outDir, IRunProgress progress,
        CancellationToken cancel, Communicator world)
    {
        var moe = MoeExperiment.Run(context, config, Path.Combine(outDir, "moe"), progress, cancel, force: true, world);
        if (!moe.Completed) return null;
        var flopsWidth = config.TopK * config.ExpertHidden;
        var denseFlops = ToyExperiment.Run(context,
            MoeComparison.DenseConfig(config, flopsWidth, $"Dense, width {flopsWidth} (FLOP-matched)"),
            Path.Combine(outDir, "dense_flops"), progress, cancel, force: true, world);
        if (!denseFlops.Completed) return null;
        var parameterWidth = config.NExperts * config.ExpertHidden;
        var denseParameters = ToyExperiment.Run(context,
            MoeComparison.DenseConfig(config, parameterWidth, $"Dense, width {parameterWidth} (parameter-matched)"),
            Path.Combine(outDir, "dense_parameters"), progress, cancel, force: true, world);
        if (!denseParameters.Completed) return null;

        var comparison = new MoeComparison(moe, denseFlops, denseParameters);
        if (world.Rank == 0)
        {
            AtomicFile.WriteText(Path.Combine(outDir, "compare.json"), comparison.ToJson());
            WriteReport(outDir, comparison);
        }
        world.Barrier();
        return comparison;
    }

    public static readonly string[] ModelNames = ["MoE", "dense, FLOP-matched", "dense, parameter-matched"];

    public static IEnumerable<(string Name, ComparedModel Model)> Models(ComparisonRow row) =>
        [(ModelNames[0], row.Moe), (ModelNames[1], row.DenseFlops), (ModelNames[2], row.DenseParameters)];

    private static void WriteReport(string directory, MoeComparison comparison)
    {
        var moe = comparison.Moe.Config;
        var figures = new FigureFolder(directory);
        var report = new HtmlReport(moe.Run.Title ?? "Mixture of experts against dense models");
        report.AddParagraph(
            $"The MoE ({moe.NExperts} experts of width {moe.ExpertHidden}, top-{moe.TopK}, " +
            $"{MoeComparison.F(moe.ActiveFlopsPerSample, "G4")} forward FLOPs per sample, {MoeComparison.MoeParameterCount(moe):G4} parameters) " +
            $"beside a dense model of width {comparison.DenseFlops.Config.NHidden} matched on active FLOPs " +
            $"({MoeComparison.DenseFlopsPerSample(comparison.DenseFlops.Config):G4} FLOPs) and one of width {comparison.DenseParameters.Config.NHidden} matched on parameters " +
            $"({MoeComparison.DenseParameterCount(comparison.DenseParameters.Config):G4}), on the same data and sweep; each point is a setting's best instance. " +
            "Each model's own report is in moe/, dense_flops/ and dense_parameters/.");
        report.AddHeading("Verdict");
        foreach (var line in comparison.Verdict()) report.AddParagraph(line + ".");

        var rows = comparison.Rows().Where(r => !double.IsNaN(r.Setting.FeatureProbability))
            .OrderBy(r => r.Setting.FeatureProbability).ToArray();
        var charts = new List<(string, string)>();
        var plotted = new (string Name, string Key, Func<ComparedModel, double> Of, string Caption)[]
        {
            ("features per active dimension", "features_per_dimension", m => m.Summary.FeaturesPerDimension,
                "Σ_e p_e R_e / (m k) for the MoE (R_e: features represented in expert e), R / m for a dense model: about 1 without superposition."),
            ("share in superposition", "superposed_fraction", m => m.Summary.SuperposedFraction,
                "Share of represented features whose D_i < 0.9 (usage-weighted over experts)."),
            ("mean D_i", "mean_dimensionality", m => m.Summary.MeanDimensionality,
                "Mean dimensionality of the represented features: 1 = a dimension each."),
            ("represented features", "represented", m => m.Summary.RepresentedFeatures,
                "Features represented: ‖W_i‖ > ½·max(1, the largest norm of the expert) in some expert (‖W_i‖ > 0.5 for a dense model)."),
            ("loss", "loss", m => m.Loss, "Importance-weighted MSE on fresh batches."),
        };
        if (rows.Select(r => r.Setting.FeatureProbability).Distinct().Count() >= 2)
        {
            foreach (var (name, key, of, caption) in plotted)
            {
                var series = ModelNames.Select((label, j) => new LineSeries(label,
                    rows.Select(r => (r.Setting.FeatureProbability, of(Models(r).ElementAt(j).Model))).ToArray(),
                    Dashed: j > 0)).ToArray();
                charts.Add((figures.Save($"compare_{key}", ComparisonFigures.LineChart(series, "feature density p", name,
                    $"{char.ToUpperInvariant(name[0])}{name[1..]} against density")), caption));
            }
            report.AddHeading("Against feature density");
            report.AddFigureGrid(charts);
        }
        var table = comparison.Rows().SelectMany(r => Models(r).Select(m => new[]
        {
            MoeComparison.F(r.Setting.FeatureProbability, "G3"), m.Name, MoeComparison.F(m.Model.Loss, "G4"),
            MoeComparison.F(m.Model.Summary.FeaturesPerDimension, "F2"), MoeComparison.F(m.Model.Summary.SuperposedFraction, "P0"),
            MoeComparison.F(m.Model.Summary.MeanDimensionality, "F2"), m.Model.Summary.RepresentedFeatures.ToString(),
        }));
        report.AddTable(["p", "model", "loss", "features / dim", "in superposition", "mean D_i", "represented"], table);

        var run = comparison.Moe;
        var shown = run.ShownInstances();
        var usage = shown.Take(8).Select(k => new BarSeries($"p = {run.Config.Run.SettingOf(k).FeatureProbability:G3}",
            run.Metrics[k].Evaluation.Usage.Select(u => (double)u).ToArray())).ToArray();
        report.AddHeading("Expert usage");
        report.AddFigure(figures.Save("usage", ComparisonFigures.GroupedBars(
                Enumerable.Range(0, moe.NExperts).Select(e => $"expert {e}").ToArray(), usage, "fraction of tokens",
                "Expert usage per density", referenceLine: (double)moe.TopK / moe.NExperts, referenceLabel: "uniform (k/E)")),
            "Fraction of tokens routed to each expert, per density (best instance); dashed: uniform routing.");
        var sparsest = shown.OrderBy(k => run.Config.Run.SettingOf(k).FeatureProbability).Take(1).ToArray();
        MoeReport.AddExpertGeometry(report, figures, run, sparsest, "moe_");
        report.AddHeading("Config");
        report.AddPreformatted(MoeConfigWriter.ToJson(moe), "the MoE config; the dense models share everything but the width");
        report.Save(Path.Combine(directory, "report.html"));
    }
}
