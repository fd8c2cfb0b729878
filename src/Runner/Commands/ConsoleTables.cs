using System.Globalization;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

/// <summary>The tables the commands print after a run; the rows are the ones its report shows. Boxed on a terminal,
/// plain aligned text when redirected or under NO_COLOR.</summary>
public static class ConsoleTables
{
    /// <summary>Rows printed to the terminal; the report lists them all.</summary>
    public const int MaxRows = 40;

    public static void Print(IAnsiConsole console, string[] headers, IEnumerable<string[]> rows)
    {
        var all = rows.ToList();
        var shown = all.Take(MaxRows).ToList();
        if (Cli.Decorated(console))
        {
            var table = new Table().Border(TableBorder.Rounded);
            foreach (var header in headers) table.AddColumn(new TableColumn(Markup.Escape(header)).RightAligned());
            foreach (var row in shown) table.AddRow(row.Select(Markup.Escape).ToArray());
            console.Write(table);
        }
        else
        {
            foreach (var line in Plain(headers, shown)) console.Profile.Out.Writer.WriteLine(line);
        }
        if (all.Count > MaxRows) console.WriteLine($"({all.Count - MaxRows} more rows in results.json and report.html)");
    }

    /// <summary>Right-aligned columns separated by two spaces, with a dashed rule under the header.</summary>
    public static IEnumerable<string> Plain(string[] headers, IReadOnlyList<string[]> rows)
    {
        var widths = headers.Select((h, c) => rows.Select(r => c < r.Length ? r[c].Length : 0).Append(h.Length).Max()).ToArray();
        string Line(IReadOnlyList<string> cells) =>
            string.Join("  ", widths.Select((w, c) => (c < cells.Count ? cells[c] : "").PadLeft(w))).TrimEnd();
        yield return Line(headers);
        yield return string.Join("  ", widths.Select(w => new string('-', w)));
        foreach (var row in rows) yield return Line(row);
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
