namespace NativeEngine.Runner.Reports.Figures;

/// <summary>One line of a <see cref="ComparisonFigures.LineChart"/>: its points (drawn in order of X), a colour
/// (by default the categorical palette at the series' index) and whether the line is dashed.</summary>
public sealed record LineSeries(string Name, IReadOnlyList<(double X, double Y)> Points, string? Color = null,
    bool Dashed = false);

/// <summary>One bar per group in a <see cref="ComparisonFigures.GroupedBars"/> chart; Values[g] belongs to group g,
/// and a value that is missing or not finite draws no bar.</summary>
public sealed record BarSeries(string Name, IReadOnlyList<double> Values, string? Color = null);

/// <summary>
/// Figures that compare models side by side: a quantity against a swept setting for several models (dense and
/// mixture-of-experts variants, say), and one value per group and model as clustered bars (expert usage per
/// expert, Σ D_i per expert). Same width, fonts and palette as <see cref="ToyFigures"/>; none throws on empty,
/// NaN or infinite input, which is left out or shown as "no data".
/// </summary>
public static class ComparisonFigures
{
    private const double Top = 42;
    private const double MarkerRadius = 3.2;
    private const string DashPattern = "5 3";

    /// <summary>
    /// Each series as a polyline with a marker per point (named in a legend when there are several), broken where a point is not finite (or, on a log x axis,
    /// not positive). X is on a log axis with decade ticks when logX; y runs over [yMin, yMax] where given, else over
    /// the data with a sliver of room, and values beyond the given range are clipped at the frame.
    /// </summary>
    public static string LineChart(IReadOnlyList<LineSeries> series, string xLabel, string yLabel, string title,
        bool logX = true, double? yMin = null, double? yMax = null)
    {
        const double left = 62, right = 20, plotHeight = 300;
        var plotWidth = Chart.Width - left - right;
        bool Usable((double X, double Y) p) => double.IsFinite(p.X) && double.IsFinite(p.Y) && (!logX || p.X > 0);
        string ColorOf(int s) => series[s].Color ?? Palette.Categorical(s);

        // A legend names the series when there is more than one (a single series is the title's and the axis's).
        var entries = series.Count < 2 ? []
            : series.Select((s, k) => new LegendEntry(ColorOf(k), s.Name, LegendMark.LineAndMarker, s.Dashed)).ToList();
        var legend = LayoutLegend(entries, left, Chart.Width - right);
        var svg = new SvgCanvas(Chart.Width, Top + plotHeight + (entries.Count > 0 ? 66 : 52) + legend.Height, title);
        Chart.Title(svg, title);

        var usable = series.SelectMany(s => s.Points ?? []).Where(Usable).ToList();
        var xs = usable.Select(p => p.X).ToList();
        var ys = usable.Select(p => p.Y).ToList();

        // X: whole decades on a log axis, round steps on a linear one; a little room at either end, so that the
        // first and last markers are not drawn on the frame.
        Scale x;
        var xTicks = new List<(double, string)>();
        var xGrid = new List<double>();
        var minorTicks = new List<double>();
        if (logX)
        {
            // Tight as the linear axis: the data's range, labelled at whole decades when two or more fall inside it,
            // else at 1-2-5 steps, else at every integer multiple of a decade.
            var (lo, hi) = xs.Count == 0 ? (1.0, 1000.0) : (xs.Min(), xs.Max());
            if (hi <= lo) (lo, hi) = (lo / 2, hi * 2);
            x = new Scale(lo, hi, left, left + plotWidth, Log: true);
            int lowDecade = (int)Math.Floor(Math.Log10(lo) + 1e-9), highDecade = (int)Math.Ceiling(Math.Log10(hi) - 1e-9);
            List<double> Multiples(params int[] mantissas) => Enumerable.Range(lowDecade, highDecade - lowDecade + 1)
                .SelectMany(d => mantissas.Select(m => m * Math.Pow(10, d)))
                .Where(v => v >= lo * (1 - 1e-6) && v <= hi * (1 + 1e-6)).ToList();  // float data: 0.1f is 0.1000000015
            var major = Multiples(1);
            if (major.Count < 2) major = Multiples(1, 2, 5);
            if (major.Count < 2) major = Multiples(1, 2, 3, 4, 5, 6, 7, 8, 9);
            // Plain numbers while they stay short (0.001 … 10000), otherwise 1e5 for every decade: one axis, one notation.
            var plain = lowDecade >= -3 && highDecade <= 4;
            string Label(double v)
            {
                var decade = Math.Round(Math.Log10(v));
                return plain || Math.Abs(v - Math.Pow(10, decade)) > 1e-9 * v ? FigureFormat.Compact(v) : $"1e{FigureFormat.Integer((int)decade)}";
            }
            var labels = major.Select(Label).ToArray();
            var spacing = major.Count > 1 ? Enumerable.Range(1, major.Count - 1).Min(k => x.Map(major[k]) - x.Map(major[k - 1])) : plotWidth;
            var labelStride = labels.Length == 0 ? 1 : Chart.IndexStride(spacing, labels.Max(l => Chart.TextWidth(l, Chart.TickFont)) + 8);
            for (var k = 0; k < major.Count; k++)
            {
                xGrid.Add(major[k]);
                if (k % labelStride == 0) xTicks.Add((x.Map(major[k]), labels[k]));
            }
            if (highDecade - lowDecade <= 8) minorTicks.AddRange(Multiples(2, 3, 4, 5, 6, 7, 8, 9).Except(major));
        }
        else
        {
            // Tight: the axis spans the data and no further (a marker at either end overhangs the frame, inside the clip).
            var (lo, hi) = xs.Count == 0 ? (0.0, 1.0) : (xs.Min(), xs.Max());
            if (hi == lo) (lo, hi) = lo == 0 ? (0.0, 1.0) : (lo - Math.Abs(lo) / 2, hi + Math.Abs(hi) / 2);
            x = new Scale(lo, hi, left, left + plotWidth);
            var ticks = Chart.NiceTicks(lo, hi, 6);
            var labels = ticks.Select(t => FigureFormat.Compact(t, 3)).ToArray();
            var spacing = ticks.Length > 1 ? x.Map(ticks[1]) - x.Map(ticks[0]) : plotWidth;
            var stride = Chart.IndexStride(spacing, labels.Max(l => Chart.TextWidth(l, Chart.TickFont)) + 8);
            for (var k = 0; k < ticks.Length; k++)
            {
                xGrid.Add(ticks[k]);
                if (k % stride == 0) xTicks.Add((x.Map(ticks[k]), labels[k]));
            }
        }

        var (yLow, yHigh, yTicks) = ValueRange(ys, yMin, yMax, includeZero: false);
        var y = new Scale(yLow, yHigh, Top + plotHeight, Top);

        foreach (var g in xGrid) svg.Line(x.Map(g), Top, x.Map(g), Top + plotHeight, Paint.Stroked(Palette.Grid));
        foreach (var t in yTicks) svg.Line(left, y.Map(t), left + plotWidth, y.Map(t), Paint.Stroked(Palette.Grid));
        svg.Rect(left, Top, plotWidth, plotHeight, new Paint(Fill: "none", Stroke: Palette.Grid));
        foreach (var m in minorTicks)
            svg.Line(x.Map(m), Top + plotHeight, x.Map(m), Top + plotHeight + 2.5, Paint.Stroked(Palette.Axis, 0.75));

        // Markers on the frame stay whole; values beyond a given y range are cut off at it.
        svg.ClipRect("line-plot", left - MarkerRadius - 1, Top - MarkerRadius - 1, plotWidth + 2 * MarkerRadius + 2,
            plotHeight + 2 * MarkerRadius + 2);
        for (var s = 0; s < series.Count; s++)
        {
            var color = ColorOf(s);
            var name = series[s].Name;
            // Sorted by X so that a sweep finished out of order still reads left to right; a point that cannot be
            // drawn keeps its place and breaks the line there.
            var points = (series[s].Points ?? []).Where(p => !logX || !(p.X <= 0)).OrderBy(p => p.X).ToList();
            using (svg.Group("series-group", clipPathId: "line-plot"))
            {
                foreach (var run in Runs(points, Usable))
                    svg.Polyline(run.Select(p => (x.Map(p.X), y.Map(p.Y))),
                        Paint.Stroked(color, 1.8, series[s].Dashed ? DashPattern : null), "series", name);
                foreach (var p in points.Where(Usable))
                    svg.Circle(x.Map(p.X), y.Map(p.Y), MarkerRadius, new Paint(Fill: color, Stroke: "#ffffff", StrokeWidth: 0.8),
                        "marker", $"{name}: {xLabel} = {FigureFormat.Value(p.X)}, {yLabel} = {FigureFormat.Value(p.Y)}");
            }
        }
        if (usable.Count == 0) Chart.NoData(svg, left + plotWidth / 4, Top + plotHeight / 2 - 14, plotWidth / 2, 28);

        Chart.BottomAxis(svg, Top + plotHeight, left, left + plotWidth, xTicks, xLabel, 22, subscripts: true);
        Chart.LeftAxis(svg, left, Top, Top + plotHeight, yTicks.Select(t => (y.Map(t), FigureFormat.Compact(t, 3))), yLabel,
            subscripts: true);
        DrawLegend(svg, legend, entries, Top + plotHeight + 56);
        return svg.ToString();
    }

    /// <summary>
    /// Vertical bars from zero, one cluster per group and one bar per series within it, each with its value as a
    /// tooltip. A legend names the series when there is more than one; the optional reference line (uniform usage
    /// k/E, say) is dashed across the plot and named in the legend. Group labels that would collide first lose a
    /// prefix they all share ("expert 0" … "expert 7" become 0 … 7 over the axis title "expert"), then every
    /// second, fifth… label.
    /// </summary>
    public static string GroupedBars(IReadOnlyList<string> groups, IReadOnlyList<BarSeries> series, string yLabel,
        string title, double? yMax = null, double? referenceLine = null, string? referenceLabel = null)
    {
        const double left = 62, right = 20, plotHeight = 280;
        var plotWidth = Chart.Width - left - right;
        string ColorOf(int s) => series[s].Color ?? Palette.Categorical(s);
        double ValueOf(int s, int g) => series[s].Values is { } v && g < v.Count ? v[g] : double.NaN;
        var reference = referenceLine is { } r && double.IsFinite(r) ? r : (double?)null;

        var entries = new List<LegendEntry>();
        if (series.Count > 1) entries.AddRange(series.Select((s, k) => new LegendEntry(ColorOf(k), s.Name, LegendMark.Swatch, false)));
        if (reference is { } rv)
            entries.Add(new LegendEntry(Palette.Ink, referenceLabel ?? $"reference = {FigureFormat.Value(rv)}", LegendMark.Line, true));
        var legend = LayoutLegend(entries, left, Chart.Width - right);

        // Group labels: in full where they fit, else without a shared prefix (which becomes the axis title), else thinned.
        var groupWidth = plotWidth / Math.Max(1, groups.Count);
        var names = groups.Select(g => g ?? "").ToArray();
        var labels = names;
        var axisTitle = "";
        if (labels.Length > 0 && !FitsEvery(labels, groupWidth) && SharedPrefix(labels) is { Length: > 0 } prefix)
        {
            labels = labels.Select(l => l[prefix.Length..]).ToArray();
            axisTitle = prefix.Trim().TrimEnd('=', ':').Trim();
        }
        var labelStride = labels.Length == 0 ? 1
            : Chart.IndexStride(groupWidth, labels.Max(l => Chart.TextWidth(l, Chart.TickFont)) + 6);

        var svg = new SvgCanvas(Chart.Width, Top + plotHeight + (axisTitle.Length > 0 ? 66 : 50) + legend.Height, title);
        Chart.Title(svg, title);

        var values = new List<double>();
        for (var s = 0; s < series.Count; s++)
            for (var g = 0; g < groups.Count; g++)
                if (double.IsFinite(ValueOf(s, g))) values.Add(ValueOf(s, g));
        var withReference = reference is { } rr ? values.Append(rr).ToList() : values;
        var (yLow, yHigh, yTicks) = ValueRange(withReference, null, yMax, includeZero: true);
        var y = new Scale(yLow, yHigh, Top + plotHeight, Top);

        foreach (var t in yTicks) svg.Line(left, y.Map(t), left + plotWidth, y.Map(t), Paint.Stroked(Palette.Grid));
        var clusterWidth = groupWidth * (series.Count > 1 ? 0.8 : 0.7);
        var barWidth = clusterWidth / Math.Max(1, series.Count);
        // A hairline of white between neighbouring bars, while the bars are wide enough to spare it.
        var gap = barWidth >= 6 ? Math.Min(2, barWidth * 0.12) : 0;
        svg.ClipRect("bar-plot", left, Top, plotWidth, plotHeight);
        using (svg.Group("bars", clipPathId: "bar-plot"))
            for (var g = 0; g < groups.Count; g++)
                for (var s = 0; s < series.Count; s++)
                {
                    var v = ValueOf(s, g);
                    if (!double.IsFinite(v)) continue;
                    var x0 = left + g * groupWidth + (groupWidth - clusterWidth) / 2 + s * barWidth + gap / 2;
                    var (top, bottom) = (y.Map(Math.Max(v, 0)), y.Map(Math.Min(v, 0)));
                    var tip = series.Count > 1 ? $"{names[g]}, {series[s].Name}: {FigureFormat.Value(v)}"
                        : $"{names[g]}: {FigureFormat.Value(v)}";
                    svg.Rect(x0, top, barWidth - gap, bottom - top, Paint.Filled(ColorOf(s)), "bar", tip);
                }
        if (yLow < 0) svg.Line(left, y.Map(0), left + plotWidth, y.Map(0), Paint.Stroked(Palette.Ink, 1), "zero-line");
        if (reference is { } line)
            svg.Line(left, y.Map(line), left + plotWidth, y.Map(line), Paint.Stroked(Palette.Ink, 1.2, DashPattern), "reference",
                $"{referenceLabel ?? "reference"}: {FigureFormat.Value(line)}");
        if (values.Count == 0) Chart.NoData(svg, left + plotWidth / 4, Top + plotHeight / 2 - 14, plotWidth / 2, 28);

        var groupTicks = new List<(double, string)>();
        for (var g = 0; g < labels.Length; g += labelStride) groupTicks.Add((left + (g + 0.5) * groupWidth, labels[g]));
        Chart.BottomAxis(svg, Top + plotHeight, left, left + plotWidth, groupTicks, axisTitle, 22);
        Chart.LeftAxis(svg, left, Top, Top + plotHeight, yTicks.Select(t => (y.Map(t), FigureFormat.Compact(t, 3))), yLabel,
            subscripts: true);
        DrawLegend(svg, legend, entries, Top + plotHeight + (axisTitle.Length > 0 ? 56 : 40));
        return svg.ToString();
    }

    /// <summary>
    /// A histogram over a numeric axis: bins between consecutive <paramref name="edges"/> (counts[b] in
    /// [edges[b], edges[b+1])), drawn as adjacent bars from zero, each with its range and count as a tooltip. The x
    /// axis spans exactly the edges with round ticks inside; an empty or all-zero histogram says "no data".
    /// </summary>
    public static string Histogram(IReadOnlyList<double> edges, IReadOnlyList<double> counts, string xLabel, string yLabel,
        string title, string? color = null)
    {
        const double left = 62, right = 20, plotHeight = 280;
        var plotWidth = Chart.Width - left - right;
        var svg = new SvgCanvas(Chart.Width, Top + plotHeight + 66, title);
        Chart.Title(svg, title);
        var usable = edges.Count >= 2 && counts.Count == edges.Count - 1 && edges.All(double.IsFinite) && edges[^1] > edges[0];
        var (lo, hi) = usable ? (edges[0], edges[^1]) : (0.0, 1.0);
        var x = new Scale(lo, hi, left, left + plotWidth);
        var values = usable ? counts.Where(double.IsFinite).ToList() : [];
        var (yLow, yHigh, yTicks) = ValueRange(values, 0, null, includeZero: true);
        var y = new Scale(yLow, yHigh, Top + plotHeight, Top);

        foreach (var t in yTicks) svg.Line(left, y.Map(t), left + plotWidth, y.Map(t), Paint.Stroked(Palette.Grid));
        if (usable)
            using (svg.Group("bars"))
                for (var b = 0; b < counts.Count; b++)
                {
                    if (!double.IsFinite(counts[b]) || counts[b] <= 0) continue;
                    var (x0, x1) = (x.Map(edges[b]), x.Map(edges[b + 1]));
                    var gap = x1 - x0 >= 6 ? 1 : 0;
                    svg.Rect(x0 + gap / 2.0, y.Map(counts[b]), Math.Max(0.5, x1 - x0 - gap), y.Map(0) - y.Map(counts[b]),
                        Paint.Filled(color ?? Palette.Categorical(0)), "bar",
                        $"[{FigureFormat.Value(edges[b])}, {FigureFormat.Value(edges[b + 1])}): {FigureFormat.Value(counts[b])}");
                }
        if (values.All(v => v <= 0)) Chart.NoData(svg, left + plotWidth / 4, Top + plotHeight / 2 - 14, plotWidth / 2, 28);

        var ticks = Chart.NiceTicks(lo, hi, 6);
        var labels = ticks.Select(t => FigureFormat.Compact(t, 3)).ToArray();
        var spacing = ticks.Length > 1 ? x.Map(ticks[1]) - x.Map(ticks[0]) : plotWidth;
        var stride = labels.Length == 0 ? 1 : Chart.IndexStride(spacing, labels.Max(l => Chart.TextWidth(l, Chart.TickFont)) + 8);
        Chart.BottomAxis(svg, Top + plotHeight, left, left + plotWidth,
            ticks.Select((t, k) => (t, k)).Where(p => p.k % stride == 0).Select(p => (x.Map(p.t), labels[p.k])), xLabel, 22, subscripts: true);
        Chart.LeftAxis(svg, left, Top, Top + plotHeight, yTicks.Select(t => (y.Map(t), FigureFormat.Compact(t, 3))), yLabel, subscripts: true);
        return svg.ToString();
    }

    private enum LegendMark { Swatch, Line, LineAndMarker }

    private sealed record LegendEntry(string Color, string Label, LegendMark Mark, bool Dashed);

    private const double LineSwatch = 20;

    /// <summary>The shared legend layout; entries drawn as a line take two characters' more room for the longer mark.</summary>
    private static LegendLayout LayoutLegend(IReadOnlyList<LegendEntry> entries, double x0, double maxX)
    {
        var lines = entries.Any(e => e.Mark != LegendMark.Swatch);
        return Chart.Legend(entries.Select(e => (e.Color, lines ? "  " + e.Label : e.Label)), x0, maxX);
    }

    /// <summary>As <see cref="Chart.Draw"/>, with a short line and marker for the series of a line chart.</summary>
    private static void DrawLegend(SvgCanvas svg, LegendLayout legend, IReadOnlyList<LegendEntry> entries, double y0)
    {
        for (var k = 0; k < legend.Entries.Count && k < entries.Count; k++)
        {
            var (x, row, _, _) = legend.Entries[k];
            var entry = entries[k];
            var y = y0 + row * Chart.LegendRowHeight + 5;
            double textX;
            if (entry.Mark == LegendMark.Swatch)
            {
                svg.Rect(x, y - 5, 10, 10, new Paint(Fill: entry.Color, Stroke: "#999999", StrokeWidth: 0.5), "legend-swatch");
                textX = x + 14;
            }
            else
            {
                svg.Line(x, y, x + LineSwatch, y, Paint.Stroked(entry.Color, entry.Dashed ? 1.4 : 1.8, entry.Dashed ? "4 2" : null),
                    "legend-swatch");
                if (entry.Mark == LegendMark.LineAndMarker)
                    svg.Circle(x + LineSwatch / 2, y, MarkerRadius, new Paint(Fill: entry.Color, Stroke: "#ffffff", StrokeWidth: 0.8));
                textX = x + LineSwatch + 4;
            }
            svg.Text(textX, y, entry.Label, Chart.TickFont, baseline: TextBaseline.Middle, cssClass: "legend");
        }
    }

    /// <summary>A value axis: the given ends where finite, else the data's with a sliver of room (and zero, for
    /// bars), and round ticks inside. An empty or flat range still gets a span to draw.</summary>
    private static (double Low, double High, double[] Ticks) ValueRange(IReadOnlyList<double> values, double? givenMin,
        double? givenMax, bool includeZero)
    {
        double? min = givenMin is { } a && double.IsFinite(a) ? a : null;
        double? max = givenMax is { } b && double.IsFinite(b) ? b : null;
        var (dataLow, dataHigh) = values.Count == 0 ? (0.0, 1.0) : (values.Min(), values.Max());
        if (includeZero) (dataLow, dataHigh) = (Math.Min(0, dataLow), Math.Max(0, dataHigh));
        if (dataHigh == dataLow) (dataLow, dataHigh) = dataLow == 0 ? (0.0, 1.0) : (dataLow - Math.Abs(dataLow) / 2, dataHigh + Math.Abs(dataHigh) / 2);
        var pad = (dataHigh - dataLow) * 0.05;
        var low = min ?? (includeZero && dataLow == 0 ? 0 : dataLow - pad);
        var high = max ?? (includeZero && dataHigh == 0 ? 0 : dataHigh + pad);
        if (high < low) (low, high) = (high, low);
        if (high == low) (low, high) = (low - 0.5, high + 0.5);
        return (low, high, Chart.NiceTicks(low, high, 5));
    }

    /// <summary>Consecutive runs of drawable points; a point that is not drawable ends the run before it.</summary>
    private static IEnumerable<List<(double X, double Y)>> Runs(IEnumerable<(double X, double Y)> points,
        Func<(double X, double Y), bool> drawable)
    {
        var run = new List<(double X, double Y)>();
        foreach (var p in points)
        {
            if (drawable(p)) run.Add(p);
            else if (run.Count > 0)
            {
                yield return run;
                run = [];
            }
        }
        if (run.Count > 0) yield return run;
    }

    private static bool FitsEvery(IReadOnlyList<string> labels, double spacing) =>
        labels.Max(l => Chart.TextWidth(l, Chart.TickFont)) + 6 <= spacing;

    /// <summary>The longest prefix ending in a space that every label has and none consists of alone.</summary>
    private static string SharedPrefix(IReadOnlyList<string> labels)
    {
        var first = labels[0];
        var length = first.Length;
        foreach (var label in labels.Skip(1))
        {
            var k = 0;
            while (k < length && k < label.Length && label[k] == first[k]) k++;
            length = k;
        }
        if (length == 0) return "";
        var space = first.LastIndexOf(' ', length - 1);
        if (space < 0) return "";
        var prefix = first[..(space + 1)];
        return labels.All(l => l.Length > prefix.Length) ? prefix : "";
    }
}
