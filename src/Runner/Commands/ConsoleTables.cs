using System.Globalization;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

/// <summary>The tables the commands print after a run; the rows are the ones its report shows.</summary>
public static class ConsoleTables
{
    /// <summary>Rows printed to the terminal; the report lists them all.</summary>
    public const int MaxRows = 40;

    public static void Print(IAnsiConsole console, string[] headers, IEnumerable<string[]> rows)
    {
        var table = new Table().Border(TableBorder.Rounded);
        foreach (var header in headers) table.AddColumn(new TableColumn(Markup.Escape(header)).RightAligned());
        var all = rows.ToList();
        foreach (var row in all.Take(MaxRows)) table.AddRow(row.Select(Markup.Escape).ToArray());
        console.Write(table);
        if (all.Count > MaxRows) console.MarkupLine($"({all.Count - MaxRows} more rows in results.json and report.html)");
    }

    public static void Print(ToyRunResult run, IAnsiConsole console)
    {
        var c = run.Config;
        console.MarkupLine($"[bold]{ToyConfig.ModelName(c.Model)}[/] n={c.NFeatures} m={c.NHidden}, " +
                           $"{c.NInstances} instances, {run.Steps} steps in {run.Seconds:F2} s on {Markup.Escape(run.Device.Describe())}");
        var (headers, cells) = ToySummary.Rows(run);
        Print(console, headers, cells);
    }

    public static void Print(MoeRunResult run, IAnsiConsole console)
    {
        var c = run.Config;
        console.MarkupLine($"[bold]moe[/] {c.NExperts} experts ({ToyConfig.ModelName(c.ExpertModel)}, width {c.ExpertHidden}), " +
                           $"top-{c.TopK}, n={c.Run.NFeatures}, {c.Run.NInstances} instances, {run.Steps} steps in " +
                           $"{run.Seconds:F2} s on {Markup.Escape(run.Device.Describe())}");
        var (headers, cells) = MoeReport.Rows(run);
        Print(console, headers, cells);
    }

    public static void Print(MoeComparison comparison, IAnsiConsole console)
    {
        var rows = comparison.Rows().SelectMany(row => MoeComparisonExperiment.Models(row).Select(m => new[]
        {
            MoeComparison.F(row.Setting.FeatureProbability, "G3"), m.Name, MoeComparison.F(m.Model.Loss, "G4"),
            MoeComparison.F(m.Model.Summary.FeaturesPerDimension, "F2"), MoeComparison.F(m.Model.Summary.SuperposedFraction, "P0"),
            MoeComparison.F(m.Model.Summary.MeanDimensionality, "F2"), m.Model.Summary.RepresentedFeatures.ToString(CultureInfo.InvariantCulture),
        }));
        Print(console, ["p", "model", "loss", "features / dim", "in superposition", "mean D_i", "represented"], rows);
        foreach (var line in comparison.Verdict()) console.WriteLine(line);
    }

    public static void Print(HybridConfig config, IReadOnlyList<HybridModel> results, IAnsiConsole console)
    {
        var (headers, rows) = HybridExperiment.Table(config, results);
        Print(console, headers, rows);
    }
}
