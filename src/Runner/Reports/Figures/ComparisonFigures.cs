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
    /// Each series as a polyline with a marker per point, broken where a point is not finite (or, on a log x axis,
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

        var entries = series.Select((s, k) => new LegendEntry(ColorOf(k), s.Name, LegendMark.LineAndMarker, s.Dashed)).ToList();
        var legend = LayoutLegend(entries, left, Chart.Width - right);
        var svg = new SvgCanvas(Chart.Width, Top + plotHeight + 66 + legend.Height, title);
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
            var (lowDecade, highDecade) = xs.Count == 0
                ? (0, 3)
                : ((int)Math.Floor(Math.Log10(xs.Min()) + 1e-9), (int)Math.Ceiling(Math.Log10(xs.Max()) - 1e-9));
            if (highDecade <= lowDecade) highDecade = lowDecade + 1;
            var decades = highDecade - lowDecade;
            var pad = decades * 0.03;
            x = new Scale(Math.Pow(10, lowDecade - pad), Math.Pow(10, highDecade + pad), left, left + plotWidth, Log: true);
            // Plain numbers while they stay short (0.001 … 1000), otherwise 1e5 for every decade: one axis, one notation.
            var plain = lowDecade >= -3 && highDecade <= 4;
            string DecadeLabel(int d) => plain ? FigureFormat.Compact(Math.Pow(10, d)) : $"1e{FigureFormat.Integer(d)}";
            var widest = Math.Max(DecadeLabel(lowDecade).Length, DecadeLabel(highDecade).Length);
            var labelStride = Chart.IndexStride(plotWidth / (decades + 2 * pad), widest * Chart.TickFont * 0.62 + 8);
            for (var d = lowDecade; d <= highDecade; d++)
            {
                xGrid.Add(Math.Pow(10, d));
                if ((d - lowDecade) % labelStride == 0) xTicks.Add((x.Map(Math.Pow(10, d)), DecadeLabel(d)));
                if (d == highDecade || decades > 8) continue;
                for (var minor = 2; minor <= 9; minor++) minorTicks.Add(minor * Math.Pow(10, d));
            }
        }
        else
        {
            var (lo, hi) = xs.Count == 0 ? (0.0, 1.0) : (xs.Min(), xs.Max());
            (lo, hi) = RoundOut(lo, hi, 6);
            var pad = (hi - lo) * 0.03;
            x = new Scale(lo - pad, hi + pad, left, left + plotWidth);
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

    /// <summary>[lo, hi] widened to whole steps of the round step for about targetCount ticks.</summary>
    private static (double, double) RoundOut(double lo, double hi, int targetCount)
    {
        if (hi == lo) (lo, hi) = lo == 0 ? (0.0, 1.0) : (lo - Math.Abs(lo) / 2, hi + Math.Abs(hi) / 2);
        var step = Chart.NiceStep((hi - lo) / targetCount);
        return (Math.Floor(lo / step + 1e-9) * step, Math.Ceiling(hi / step - 1e-9) * step);
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
