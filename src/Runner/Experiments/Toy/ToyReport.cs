using System.Globalization;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Reports.Figures;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// The figures of a toy run (DIR/figures/*.svg) and the report that gathers them (DIR/report.html): per shown
/// instance the WᵀW heatmap, the feature norms coloured by superposition, the feature arrows when m = 2 and the
/// neuron stack for privileged-basis models; per run the dimensionality scatter against 1/(1−S) and, for
/// two-axis sweeps, the phase diagram.
/// </summary>
public static class ToyReport
{
    /// <summary>Instances drawn one by one; the summary table still lists every shown instance.</summary>
    public const int MaxInstanceFigures = 16;

    /// <summary>Above this many features a WᵀW heatmap (n² cells) is drawn for only a few instances.</summary>
    public const int LargeHeatmapFeatures = 50;
    public const int MaxLargeHeatmaps = 4;

    /// <summary>A represented feature with D_i above this has a dimension to itself.</summary>
    public const double DedicatedDimensionality = 0.9;

    public static readonly string[] LastFeatureClasses = ["not represented", "dedicated dimension", "superposition"];
    public static readonly string[] ModelClasses = ["nothing represented", "no superposition", "superposition"];
    private static readonly string[] ClassColors = ["#d9d9d9", "#2c7fb8", "#e6550d"];

    /// <returns>The files written, relative to <paramref name="directory"/>.</returns>
    public static IReadOnlyList<string> Write(string directory, ToyRunResult run)
    {
        var c = run.Config;
        var folder = new FigureFolder(directory);
        string Save(string name, string svg) => folder.Save(name, svg);

        var report = new HtmlReport(c.Title ?? $"{ToyConfig.ModelName(c.Model)}: {c.NFeatures} features in {c.NHidden} dimensions");
        report.AddParagraph(Description(run));

        var runFigures = new List<(string, string)>();
        if (DimensionalityPoints(run) is { } scatter)
            runFigures.Add((Save("dimensionality", ToyFigures.DimensionalityScatter(scatter.Points, scatter.DStar,
                "Feature dimensionality against sparsity")),
                "D_i of every feature of the best instance per density, against 1/(1−S) = 1/p; dashed lines mark the " +
                "fractions of the paper's geometries (1 = own dimension, 1/2 = antipodal pair, 2/5 = pentagon, ...); " +
                "faded points are features the model barely represents. The line is D* = m / ‖W‖²_F."));
        if (PhaseDiagram(run) is { } phase)
            runFigures.Add((Save("phase", phase.Svg), phase.Caption));
        if (runFigures.Count > 0)
        {
            report.AddHeading("Across the sweep");
            report.AddFigureGrid(runFigures);
        }

        var (headers, cells) = ToySummary.Rows(run);
        report.AddHeading(c.Sweep is { KeepAll: false } ? "Best instance of each setting" : "Instances");
        report.AddTable(headers, cells,
            "loss: importance-weighted MSE on fresh batches; ‖W_i‖ > 0.5: features represented; Σ D_i: dimensions used; " +
            "D*: dimensions per feature (m / ‖W‖²_F)" +
            (run.Neurons is null ? "" : $"; polysemantic neurons: neurons with |W_ik| > {c.PolysemanticityThreshold:G3} for two or more features"));

        var shown = run.ShownInstances();
        var drawn = EvenlySpaced(shown, MaxInstanceFigures);
        report.AddHeading("Geometry of each instance");
        if (drawn.Count < shown.Count)
            report.AddParagraph($"{drawn.Count} of the {shown.Count} instances above, evenly spaced through the sweep; results.json has them all.");
        var heatmaps = c.NFeatures > LargeHeatmapFeatures ? EvenlySpaced(drawn, MaxLargeHeatmaps) : drawn;
        if (heatmaps.Count < drawn.Count)
            report.AddParagraph($"With {c.NFeatures} features a WᵀW heatmap has {c.NFeatures * c.NFeatures} cells: it is drawn for {heatmaps.Count} of these instances.");
        foreach (var k in drawn)
        {
            var label = InstanceLabel(run, k);
            var w = run.InstanceW(k).ToArray();
            var metrics = run.Metrics[k];
            var figures = new List<(string, string)>();
            if (heatmaps.Contains(k))
                figures.Add((Save($"instance{k}_gram", ToyFigures.GramHeatmap(w, c.NFeatures, c.NHidden, $"WᵀW, {label}")),
                    $"WᵀW of {label}: the diagonal is ‖W_i‖², off-diagonal entries are interference between features."));
            figures.Add(
                (Save($"instance{k}_norms", ToyFigures.FeatureNormBars(metrics.FeatureNorm, metrics.Superposition, $"‖W_i‖, {label}")),
                    $"Feature norms of {label}, coloured by superposition Σ_j≠i (Ŵ_i·W_j)²: black = own dimension, yellow = shared."));
            if (c.NHidden == 2)
                figures.Add((Save($"instance{k}_arrows", ToyFigures.FeatureArrows(w, c.NFeatures, metrics.FeatureNorm, $"Features in the plane, {label}")),
                    $"Each feature's direction W_i in the 2-D hidden space, {label}."));
            if (c.HasPrivilegedBasis)
                figures.Add((Save($"instance{k}_neurons", ToyFigures.NeuronStack(w, c.NFeatures, c.NHidden, $"Neurons, {label}")),
                    $"Each hidden neuron's input weights from every feature, stacked ({label}); one colour per feature: " +
                    "a single colour is a monosemantic neuron."));
            report.AddHeading(label, 3);
            report.AddFigureGrid(figures);
        }

        report.AddHeading("Config");
        report.AddPreformatted(ToyConfigWriter.ToJson(c), "the resolved config (config.json)");
        report.Save(Path.Combine(directory, "report.html"));
        return [.. folder.Written, "report.html"];
    }

    private static string Description(ToyRunResult run)
    {
        var c = run.Config;
        var formula = c.Model switch
        {
            Interop.ToyModelKind.Linear => "x' = WᵀW x + b",
            Interop.ToyModelKind.ReluOutput => "x' = ReLU(WᵀW x + b)",
            Interop.ToyModelKind.ReluHidden => "h = ReLU(W x), x' = ReLU(Wᵀh + b)",
            _ => "h = ReLU(W₁ x), y' = ReLU(W₂ h + b), target |x|",
        };
        var text = $"{ToyConfig.ModelName(c.Model)} ({formula}): {c.NFeatures} features, {c.NHidden} hidden dimensions, " +
                   $"{c.NInstances} instances trained together for {run.Steps} steps in {run.Seconds:F1} s on {run.Device.Describe()}.";
        if (c.Sweep is { } sweep)
            text += $" Sweep: {c.Settings.Length} settings × {sweep.Repeats} repeat(s); " +
                    (sweep.KeepAll ? "every instance is shown." : "each setting shows its best instance (lowest training loss).");
        if (c.FeatureSets.Length > 0)
            text += " Feature sets: " + string.Join("; ", c.FeatureSets.Select(s =>
                $"{ToyConfig.FeatureSetName(s.Kind)} {{{string.Join(", ", s.Features)}}}")) + ".";
        if (run.Steps < c.Steps) text += $" Interrupted after {run.Steps} of {c.Steps} steps.";
        return text;
    }

    private static string InstanceLabel(ToyRunResult run, int k)
    {
        var setting = run.Config.SettingOf(k);
        var parts = new List<string> { $"instance {k}" };
        if (!double.IsNaN(setting.FeatureProbability)) parts.Add($"p = {F(setting.FeatureProbability)}");
        if (setting.ImportanceRatio != 1) parts.Add($"ratio {F(setting.ImportanceRatio)}");
        if (setting.L1 != 0) parts.Add($"λ = {F(setting.L1)}");
        return string.Join(", ", parts);
    }

    // The scatter needs settings that differ in density only.
    private static (List<DimensionalityPoint> Points, List<(double X, double Y)> DStar)? DimensionalityPoints(ToyRunResult run)
    {
        var settings = run.Config.Settings;
        if (settings.Any(s => double.IsNaN(s.FeatureProbability))) return null;
        if (settings.Select(s => s.FeatureProbability).Distinct().Count() < 2) return null;
        if (settings.Select(s => (s.ImportanceRatio, s.L1)).Distinct().Count() > 1) return null;
        var points = new List<DimensionalityPoint>();
        var dstar = new List<(double X, double Y)>();
        foreach (var setting in settings.OrderBy(s => 1 / s.FeatureProbability))
        {
            var best = run.BestOf(setting.Instances);
            var metrics = run.Metrics[best];
            var x = 1 / setting.FeatureProbability;
            for (var i = 0; i < run.Config.NFeatures; i++)
                points.Add(new DimensionalityPoint(x, metrics.Dimensionality[i], metrics.FeatureNorm[i], i));
            if (double.IsFinite(metrics.DimensionsPerFeature) && metrics.DimensionsPerFeature <= 1)
                dstar.Add((x, metrics.DimensionsPerFeature));
        }
        return (points, dstar);
    }

    /// <summary>Class of the last feature (the one an importance ratio changes): not represented, on a dimension
    /// of its own, or sharing one.</summary>
    public static int ClassifyLastFeature(ToyMetrics metrics)
    {
        var last = metrics.FeatureNorm.Length - 1;
        if (metrics.FeatureNorm[last] <= ToyMetrics.RepresentedNorm) return 0;
        return metrics.Dimensionality[last] > DedicatedDimensionality ? 1 : 2;
    }

    /// <summary>Class of a whole model: nothing represented, every represented feature on its own dimension, or
    /// some in superposition.</summary>
    public static int ClassifyModel(ToyMetrics metrics)
    {
        var represented = Enumerable.Range(0, metrics.FeatureNorm.Length)
            .Where(i => metrics.FeatureNorm[i] > ToyMetrics.RepresentedNorm).ToArray();
        if (represented.Length == 0) return 0;
        return represented.All(i => metrics.Dimensionality[i] > DedicatedDimensionality) ? 1 : 2;
    }

    // Two swept axes with at least two values each: density across, and importance ratio or L1 up.
    private static (string Svg, string Caption)? PhaseDiagram(ToyRunResult run)
    {
        var c = run.Config;
        if (c.Sweep is not { } sweep) return null;
        var axes = new List<(string Name, double[] Values, Func<ToySetting, double> Of)>();
        if (sweep.FeatureProbability is { Length: >= 2 } p) axes.Add(("feature density p = 1 − S", Distinct(p), s => s.FeatureProbability));
        if (sweep.ImportanceRatio is { Length: >= 2 } r) axes.Add(("relative importance of the last feature", Distinct(r), s => s.ImportanceRatio));
        if (sweep.L1 is { Length: >= 2 } l) axes.Add(("L1 coefficient λ", Distinct(l), s => s.L1));
        if (axes.Count < 2) return null;
        var (x, y) = (axes[0], axes[1]);
        var byImportance = y.Name.StartsWith("relative", StringComparison.Ordinal);
        var classes = new int[y.Values.Length, x.Values.Length];
        for (var row = 0; row < y.Values.Length; row++)
            for (var column = 0; column < x.Values.Length; column++)
                classes[row, column] = -1;
        foreach (var setting in c.Settings)
        {
            var column = Array.FindIndex(x.Values, v => Same(v, x.Of(setting)));
            var row = Array.FindIndex(y.Values, v => Same(v, y.Of(setting)));
            var metrics = run.Metrics[run.BestOf(setting.Instances)];
            // With a third swept axis, the first setting of each cell is drawn.
            if (classes[row, column] == -1)
                classes[row, column] = byImportance ? ClassifyLastFeature(metrics) : ClassifyModel(metrics);
        }
        var names = byImportance ? LastFeatureClasses : ModelClasses;
        // A log axis; with a 0 among the values (λ = 0) the diagram draws equal rows instead.
        const bool logY = true;
        var svg = ToyFigures.PhaseDiagram(x.Values, y.Values, classes, names, ClassColors, x.Name, y.Name,
            byImportance ? "What the last feature gets" : "Superposition across the sweep", logX: true, logY: logY);
        var caption = byImportance
            ? "For each density and relative importance, the best instance's last feature: not represented (‖W‖ ≤ 0.5), " +
              $"on a dimension of its own (D > {DedicatedDimensionality}), or sharing a dimension (superposition)."
            : $"For each setting, the best instance: no feature represented, every represented feature on its own dimension (D > {DedicatedDimensionality}), or some in superposition.";
        return (svg, caption);
    }

    private static double[] Distinct(double[] values) => values.Distinct().Order().ToArray();

    private static bool Same(double a, double b) => Math.Abs(a - b) <= 1e-6 * Math.Max(Math.Abs(a), Math.Abs(b));

    private static List<int> EvenlySpaced(IReadOnlyList<int> items, int count)
    {
        if (items.Count <= count) return items.ToList();
        return Enumerable.Range(0, count).Select(j => items[(int)Math.Round(j * (items.Count - 1) / (double)(count - 1))])
            .Distinct().ToList();
    }

    private static string F(double value) => value.ToString("G3", CultureInfo.InvariantCulture);
}
