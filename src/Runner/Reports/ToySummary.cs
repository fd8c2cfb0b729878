using System.Globalization;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using Spectre.Console;

namespace NativeEngine.Runner.Reports;

/// <summary>The table a toy run prints: per instance its density, loss and feature geometry.</summary>
public static class ToySummary
{
    public static void Print(ToyRunResult run, IAnsiConsole console)
    {
        var c = run.Config;
        console.MarkupLine($"[bold]{ToyConfig.ModelName(c.Model)}[/] n={c.NFeatures} m={c.NHidden}, " +
                           $"{c.NInstances} instances, {run.Steps} steps in {run.Seconds:F2} s on {Markup.Escape(run.Device.Describe())}");
        var table = new Table().Border(TableBorder.Rounded);
        foreach (var header in new[] { "inst", "p", "loss", "‖W_i‖ > 0.5", "Σ D_i", "D*", "D_i per feature", "geometry" })
            table.AddColumn(new TableColumn(header).RightAligned());
        for (var k = 0; k < c.NInstances; k++)
        {
            var metrics = run.Metrics[k];
            table.AddRow(
                k.ToString(CultureInfo.InvariantCulture),
                F(c.FeatureProbability[k], "G3"),
                F(run.Loss[k], "G4"),
                metrics.RepresentedCount.ToString(CultureInfo.InvariantCulture),
                F(metrics.DimensionalitySum, "F2"),
                F(metrics.DimensionsPerFeature, "F3"),
                string.Join(" ", metrics.Dimensionality.Select(d => F(d, "F2"))),
                Markup.Escape(Describe(metrics, c.NHidden)));
        }
        console.Write(table);
    }

    /// <summary>A plain-words reading of the geometry, for the common shapes of the paper.</summary>
    public static string Describe(ToyMetrics metrics, int m)
    {
        var represented = metrics.RepresentedCount;
        if (represented == 0) return "nothing represented";
        var active = metrics.Dimensionality.Where((_, i) => metrics.FeatureNorm[i] > ToyMetrics.RepresentedNorm).ToArray();
        bool All(double target) => active.All(d => Math.Abs(d - target) < 0.05);
        if (represented <= m && All(1.0)) return $"{represented} orthogonal";
        if (All(0.5) && represented % 2 == 0) return $"{represented / 2} antipodal pair(s)";
        if (m == 2 && represented >= 3 && All(2.0 / represented))
            return represented == 5 ? "pentagon" : $"regular {represented}-gon";
        return $"{represented} features in superposition";
    }

    private static string F(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);
}
