using NativeEngine.Runner.Analysis;

namespace NativeEngine.Runner.Reports.Figures;

/// <summary>The figures of the analyses (analyze).</summary>
public static class AnalysisFigures
{
    /// <summary>Represented and superposed features and the bounds against 1/(1 − S) on a log axis; one pair of
    /// model lines per (importance ratio, L1) group when the sweep varies those too.</summary>
    public static string Capacity(CapacityResult r)
    {
        var series = new List<LineSeries>();
        var groups = r.Points.GroupBy(p => (p.ImportanceRatio, p.L1)).ToArray();
        for (var g = 0; g < groups.Length; g++)
        {
            var suffix = groups.Length > 1 ? $" (ratio {groups[g].Key.ImportanceRatio:G3}, l1 {groups[g].Key.L1:G3})" : "";
            series.Add(new LineSeries("represented" + suffix, groups[g].Select(p => (1 / p.FeatureProbability, (double)p.Represented)).ToArray(),
                Palette.Categorical(2 * g)));
            series.Add(new LineSeries("in superposition" + suffix, groups[g].Select(p => (1 / p.FeatureProbability, (double)p.Superposed)).ToArray(),
                Palette.Categorical(2 * g + 1)));
        }
        var unique = r.Points.GroupBy(p => p.FeatureProbability).Select(g => g.First()).ToArray();
        series.Add(new LineSeries($"l1 bound (C = {r.Constant:G3})", unique.Select(p => (1 / p.FeatureProbability, (double)p.L1Bound)).ToArray(),
            "#555555", Dashed: true));
        series.Add(new LineSeries("l0 bound (m >= 2k)", unique.Select(p => (1 / p.FeatureProbability, (double)p.L0Bound)).ToArray(),
            "#999999", Dashed: true));
        return ComparisonFigures.LineChart(series, "1/(1 - S)", "features",
            $"Features stored in {r.NHidden} dimensions against sparsity ({r.Model}, n = {r.NFeatures})", logX: true, yMin: 0,
            yMax: r.NFeatures);
    }
}
