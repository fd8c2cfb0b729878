using System.Globalization;
using NativeEngine.Runner.Analysis;

namespace NativeEngine.Runner.Experiments;

/// <summary>The summary of a toy run, in the terminal and in its report: per shown instance its setting, loss and
/// feature geometry.</summary>
public static class ToySummary
{
    /// <summary>The summary as headers and text cells, shared by the terminal table and the report.</summary>
    public static (string[] Headers, List<string[]> Cells) Rows(ToyRunResult run)
    {
        var c = run.Config;
        var showRatio = c.Settings.Any(s => s.ImportanceRatio != 1.0);
        var showL1 = c.L1.Any(v => v != 0);
        var showD = c.NFeatures <= 8;  // wider rows wrap in a terminal
        var bestOf = c.Sweep is { KeepAll: false } && c.Sweep.Repeats > 1;
        var headers = new List<string> { bestOf ? "best inst" : "inst", "p" };
        if (showRatio) headers.Add("importance ratio");
        if (showL1) headers.Add("l1");
        headers.AddRange(["loss", "‖W_i‖ > 0.5", "Σ D_i", "D*"]);
        if (showD) headers.Add("D_i per feature");
        if (run.Neurons is not null) headers.Add("polysemantic neurons");
        headers.Add("geometry");
        var cells = new List<string[]>();
        foreach (var k in run.ShownInstances())
        {
            var setting = c.SettingOf(k);
            var metrics = run.Metrics[k];
            var row = new List<string>
            {
                k.ToString(CultureInfo.InvariantCulture),
                double.IsNaN(setting.FeatureProbability) ? "per feature" : F(setting.FeatureProbability, "G3"),
            };
            if (showRatio) row.Add(F(setting.ImportanceRatio, "G3"));
            if (showL1) row.Add(F(c.L1[k], "G3"));
            row.AddRange([
                F(run.Loss[k], "G4"),
                metrics.RepresentedCount.ToString(CultureInfo.InvariantCulture),
                F(metrics.DimensionalitySum, "F2"),
                // ‖W‖_F ≈ 0 makes D* meaningless (it grows without bound).
                metrics.DimensionsPerFeature > 1e3 ? "–" : F(metrics.DimensionsPerFeature, "F3"),
            ]);
            if (showD) row.Add(string.Join(" ", metrics.Dimensionality.Select(d => F(d, "F2"))));
            if (run.Neurons?[k] is { } neurons)
                row.Add($"{neurons.PolysemanticNeurons} of {c.NHidden}");
            row.Add(Describe(metrics, run.InstanceW(k), c.NHidden));
            cells.Add(row.ToArray());
        }
        return (headers.ToArray(), cells);
    }

    /// <summary>A plain-words reading of the geometry, for the common shapes of the paper. w: [n][m].</summary>
    public static string Describe(ToyMetrics metrics, ReadOnlySpan<float> w, int m)
    {
        var represented = metrics.RepresentedCount;
        if (represented == 0) return "nothing represented";
        var active = Enumerable.Range(0, metrics.FeatureNorm.Length)
            .Where(i => metrics.FeatureNorm[i] > ToyMetrics.RepresentedNorm).ToArray();
        bool All(double target) => active.All(i => Math.Abs(metrics.Dimensionality[i] - target) < 0.05);
        if (represented <= m && All(1.0)) return $"{represented} orthogonal";
        if (All(0.5) && represented % 2 == 0)
        {
            // D = 1/2 is a pair sharing one direction: opposite (antipodal) or the same (collapsed together).
            var partner = PartnerCosines(metrics, w, m, active);
            if (partner.All(cos => cos < -0.9)) return $"{represented / 2} antipodal pair(s)";
            if (partner.All(cos => cos > 0.9)) return $"{represented / 2} pair(s) sharing one direction";
        }
        if (m == 2 && represented >= 3 && All(2.0 / represented))
            return represented == 5 ? "pentagon" : $"regular {represented}-gon";
        var dedicated = active.Count(i => metrics.Dimensionality[i] > 0.95);
        return dedicated > 0
            ? $"{represented} features, {represented - dedicated} in superposition"
            : $"{represented} features in superposition";
    }

    // For each feature, the cosine to the represented feature it is most aligned with (by |cos|).
    private static double[] PartnerCosines(ToyMetrics metrics, ReadOnlySpan<float> w, int m, int[] active)
    {
        var result = new double[active.Length];
        for (var a = 0; a < active.Length; a++)
        {
            double best = 0;
            foreach (var j in active)
            {
                if (j == active[a]) continue;
                double dot = 0;
                for (var k = 0; k < m; k++) dot += (double)w[active[a] * m + k] * w[j * m + k];
                var cos = dot / (metrics.FeatureNorm[active[a]] * metrics.FeatureNorm[j]);
                if (Math.Abs(cos) > Math.Abs(best)) best = cos;
            }
            result[a] = best;
        }
        return result;
    }

    private static string F(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);
}
