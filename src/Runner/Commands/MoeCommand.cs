using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using NativeEngine.Runner.Reports;
using NativeEngine.Runner.Reports.Figures;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("moe", HelpText = "Train mixture-of-experts toy models from a JSON config; --compare trains dense models beside them.")]
public sealed class MoeOptions : TrainingOptions
{
    [Option("config", Required = true, HelpText = "JSON config (comments allowed); see configs/moe/.")]
    public string Config { get; set; } = "";

    [Option("out", Required = true, HelpText = "Run folder: config.json, results.json, weights.safetensors, report.html, figures/.")]
    public string Out { get; set; } = "";

    [Option("compare", HelpText = "Also train dense models matched on active FLOPs (width k·m) and on parameters (width E·m) and compare their superposition.")]
    public bool Compare { get; set; }

}

public static class MoeCommand
{
    public static int Run(MoeOptions options, IAnsiConsole console)
    {
        var config = MoeConfigLoader.LoadFile(options.Config);
        config = config with { Run = options.ApplyTo(config.Run) };
        return options.Compare
            ? Compare(config, options.ParseBackend(), options.Out, console)
            : Train(config, options.ParseBackend(), options.Out, console) is { } result && result.Steps < config.Run.Steps ? 130 : 0;
    }

    public static void WarnAboutRouter(MoeConfig config, IAnsiConsole console)
    {
        if (config.RouterStarvedOfTaskGradient)
            console.MarkupLine("[yellow]warning: top_k = 1 with renormalised gates: every gate is exactly 1, so the router " +
                               "gets no gradient from the task loss and learns only from load_balance and z_loss. Set " +
                               "\"router\": {\"renormalize\": false} or top_k >= 2 for a router that learns from the task.[/]");
    }

    /// <summary>Trains with progress (Ctrl-C stops after the current chunk) and writes the run folder.</summary>
    public static MoeRunResult Train(MoeConfig config, Backend backend, string outDir, IAnsiConsole console)
    {
        ToyRunFolder.Prepare(outDir);
        WarnAboutRouter(config, console);
        using var context = new EngineContext(backend);
        var run = Interrupt.Catch(token => ProgressDisplay.Run(console, $"moe on {context.Device.Backend.ToString().ToLowerInvariant()}",
            progress => MoeTraining.Run(context, config, progress, token)));
        MoeRunFolder.Write(outDir, run);
        MoeReport.Write(outDir, run);
        if (run.Steps < config.Run.Steps)
            console.MarkupLine($"[yellow]interrupted after {run.Steps} of {config.Run.Steps} steps: the results are of that point[/]");
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(outDir))}: config.json, results.json, weights.safetensors, report.html, figures/");
        MoeReport.Print(run, console);
        return run;
    }

    public static int Compare(MoeConfig config, Backend backend, string outDir, IAnsiConsole console)
    {
        ToyRunFolder.Prepare(outDir);
        var flopsWidth = config.TopK * config.ExpertHidden;
        var parameterWidth = config.NExperts * config.ExpertHidden;
        console.MarkupLine($"[bold]MoE against dense[/]: {config.NExperts} experts of width {config.ExpertHidden}, top-{config.TopK}; " +
                           $"dense width {flopsWidth} (matched on active FLOPs) and {parameterWidth} (matched on parameters).");
        var moe = Train(config, backend, Path.Combine(outDir, "moe"), console);
        if (moe.Steps < config.Run.Steps) return 130;
        var denseFlops = ToyCommand.TrainAndSave(MoeComparison.DenseConfig(config, flopsWidth, $"Dense, width {flopsWidth} (FLOP-matched)"),
            backend, Path.Combine(outDir, "dense_flops"), console);
        if (ToyCommand.ExitCode(denseFlops) != 0) return 130;
        var denseParameters = ToyCommand.TrainAndSave(MoeComparison.DenseConfig(config, parameterWidth, $"Dense, width {parameterWidth} (parameter-matched)"),
            backend, Path.Combine(outDir, "dense_parameters"), console);
        if (ToyCommand.ExitCode(denseParameters) != 0) return 130;

        var comparison = new MoeComparison(moe, denseFlops, denseParameters);
        AtomicFile.WriteText(Path.Combine(outDir, "compare.json"), comparison.ToJson());
        WriteReport(outDir, comparison);
        PrintComparison(comparison, console);
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(outDir))}: compare.json, report.html, figures/, and the three run folders moe/, dense_flops/, dense_parameters/");
        return 0;
    }

    private static readonly string[] ModelNames = ["MoE", "dense, FLOP-matched", "dense, parameter-matched"];

    private static IEnumerable<(string Name, ComparedModel Model)> Models(ComparisonRow row) =>
        [(ModelNames[0], row.Moe), (ModelNames[1], row.DenseFlops), (ModelNames[2], row.DenseParameters)];

    private static void PrintComparison(MoeComparison comparison, IAnsiConsole console)
    {
        var table = new Table().Border(TableBorder.Rounded);
        foreach (var header in new[] { "p", "model", "loss", "features / dim", "in superposition", "mean D_i", "represented" })
            table.AddColumn(new TableColumn(header).RightAligned());
        foreach (var row in comparison.Rows())
            foreach (var (name, model) in Models(row))
                table.AddRow(MoeComparison.F(row.Setting.FeatureProbability, "G3"), name, MoeComparison.F(model.Loss, "G4"),
                    MoeComparison.F(model.Summary.FeaturesPerDimension, "F2"), MoeComparison.F(model.Summary.SuperposedFraction, "P0"),
                    MoeComparison.F(model.Summary.MeanDimensionality, "F2"), model.Summary.RepresentedFeatures.ToString());
        console.Write(table);
        foreach (var line in comparison.Verdict()) console.WriteLine(line);
    }

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
            report.AddFigureGrid(charts, 480);
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
