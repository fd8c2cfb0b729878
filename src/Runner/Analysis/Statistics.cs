namespace NativeEngine.Runner.Analysis;

/// <summary>The few statistics the analyses need: the normal tail, ranks and rank correlation, the median.</summary>
public static class Statistics
{
    /// <summary>P(Z > z) for a standard normal Z, with small relative error far into either tail.</summary>
    public static double NormalUpperTail(double z) => double.IsNaN(z) ? double.NaN : 0.5 * Erfc(z / Math.Sqrt(2));

    /// <summary>The complementary error function: Chebyshev fit of Numerical Recipes (erfcc), fractional error
    /// below 1.2e-7 everywhere, so tail probabilities keep their relative precision.</summary>
    public static double Erfc(double x)
    {
        var z = Math.Abs(x);
        var t = 1 / (1 + 0.5 * z);
        var r = t * Math.Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? r : 2 - r;
    }

    /// <summary>Ranks 1..n with ties given their average rank.</summary>
    public static double[] Ranks(IReadOnlyList<double> values)
    {
        var order = Enumerable.Range(0, values.Count).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Count];
        for (var start = 0; start < order.Length;)
        {
            var end = start;
            while (end + 1 < order.Length && values[order[end + 1]] == values[order[start]]) end++;
            var rank = (start + end) / 2.0 + 1;
            for (var j = start; j <= end; j++) ranks[order[j]] = rank;
            start = end + 1;
        }
        return ranks;
    }

    /// <summary>Pearson correlation; NaN when either side is constant or there are fewer than two points.</summary>
    public static double Pearson(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        if (a.Count != b.Count) throw new ArgumentException($"{a.Count} values against {b.Count}");
        if (a.Count < 2) return double.NaN;
        double meanA = a.Average(), meanB = b.Average(), ab = 0, aa = 0, bb = 0;
        for (var i = 0; i < a.Count; i++)
        {
            ab += (a[i] - meanA) * (b[i] - meanB);
            aa += (a[i] - meanA) * (a[i] - meanA);
            bb += (b[i] - meanB) * (b[i] - meanB);
        }
        return aa > 0 && bb > 0 ? ab / Math.Sqrt(aa * bb) : double.NaN;
    }

    /// <summary>Spearman's rank correlation (Pearson on average ranks); NaN when either side is constant.</summary>
    public static double Spearman(IReadOnlyList<double> a, IReadOnlyList<double> b) => Pearson(Ranks(a), Ranks(b));

    /// <summary>The median; NaN when empty.</summary>
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) return double.NaN;
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
