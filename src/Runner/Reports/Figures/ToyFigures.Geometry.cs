using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Reports.Figures;

/// <summary>Figures of one model's weights: WᵀW, feature norms, 2-D arrows and the neuron stack.</summary>
public static partial class ToyFigures
{
    /// <summary>Above this many features the heatmap's cells carry no tooltip, and are drawn as one image (n² rects
    /// would make the file megabytes long and take longer to write than a short run takes to train).</summary>
    public const int MaxTooltipFeatures = 40;

    /// <summary>
    /// WᵀW as the paper shows it: entry (i, j) = W_i·W_j, blue negative, white 0, red positive, on a symmetric
    /// scale ±max(1, max|entry|) so that 1 (a dedicated feature) always has the same colour across figures.
    /// </summary>
    public static string GramHeatmap(float[] w, int n, int m, string title)
    {
        const double left = 58, size = 354, colorBarGap = 16, colorBarWidth = 12;
        var svg = new SvgCanvas(Chart.Width, Top + size + 48, title);
        Chart.Title(svg, title);
        if (!Shaped(w, n, m))
        {
            Chart.NoData(svg, left, Top, size, size);
            return svg.ToString();
        }

        var gram = new double[n, n];
        var largest = 0.0;
        var anyFinite = false;
        var anyMissing = false;
        for (var i = 0; i < n; i++)
            for (var j = 0; j <= i; j++)
            {
                var value = Dot(w, i, j, m);
                gram[i, j] = gram[j, i] = value;
                anyMissing |= !double.IsFinite(value);
                if (!double.IsFinite(value)) continue;
                anyFinite = true;
                largest = Math.Max(largest, Math.Abs(value));
            }
        var scale = Math.Max(1, largest);
        var map = Palette.Diverging(scale);

        var cell = size / n;
        if (n > MaxTooltipFeatures)
        {
            // One pixel per cell, row i at the top as the rects would be.
            var rgb = new byte[n * n * 3];
            for (var i = 0; i < n; i++)
                for (var j = 0; j < n; j++)
                {
                    var color = map.RgbAt(gram[i, j]);
                    var at = (i * n + j) * 3;
                    (rgb[at], rgb[at + 1], rgb[at + 2]) = (color.R, color.G, color.B);
                }
            svg.PixelImage(left, Top, size, size, Png.EncodeRgb(n, n, rgb), "cells");
        }
        else
            // Cells in their own unit grid keep the rects small; crispEdges, because neighbouring anti-aliased cells
            // would otherwise show faint seams. Each carries its value as a tooltip.
            using (svg.Group("cells", translate: (left, Top), scale: cell, crispEdges: true))
                for (var i = 0; i < n; i++)
                    for (var j = 0; j < n; j++)
                    {
                        var value = gram[i, j];
                        var tip = double.IsFinite(value) ? $"W_{i}·W_{j} = {FigureFormat.Value(value)}" : $"W_{i}·W_{j}: no data";
                        svg.Rect(j, i, 1, 1, Paint.Filled(map[value]), "cell", tip);
                    }
        svg.Rect(left, Top, size, size, new Paint(Fill: "none", Stroke: Palette.Axis, StrokeWidth: 0.75));
        if (!anyFinite) Chart.NoData(svg, left + size / 4, Top + size / 2 - 14, size / 2, 28);
        else if (anyMissing) Chart.Draw(svg, Chart.Legend([(Palette.NoData, "no data")], left + size - 56, left + size), Top + size + 24);

        var labelSpacing = IndexLabelWidth(n) + 6;
        Chart.BottomAxis(svg, Top + size, left, left + size, IndexTicks(n, left, cell, labelSpacing), "feature j", 22);
        Chart.LeftAxis(svg, left, Top, Top + size, IndexTicks(n, Top, cell, 13), "feature i");

        var barX = left + size + colorBarGap;
        // Round ticks inside the scale: its ends (±1.02, say) would only crowd the labels.
        Chart.ColorBar(svg, "gram-scale", map, barX, Top + 20, colorBarWidth, size - 20, vertical: true,
            Chart.NiceTicks(-scale, scale, 4).Select(v => (v, FigureFormat.Compact(v))), "W_i·W_j");
        return svg.ToString();
    }

    /// <summary>
    /// ‖W_i‖ per feature as horizontal bars, feature 0 at the top as in the paper; the colour says how much the
    /// feature shares its direction: black = a dedicated dimension (superposition 0), yellow = superposition ≥ 1.
    /// </summary>
    public static string FeatureNormBars(double[] norms, double[] superposition, string title)
    {
        const double left = 64, right = 24;
        var n = norms.Length;
        var band = Math.Clamp(300.0 / Math.Max(1, n), 2.2, 20);
        var plotHeight = Math.Max(band * n, 60);
        var plotWidth = Chart.Width - left - right;
        var svg = new SvgCanvas(Chart.Width, Top + plotHeight + 106, title);
        Chart.Title(svg, title);
        if (n == 0)
        {
            Chart.NoData(svg, left, Top, plotWidth, plotHeight);
            return svg.ToString();
        }

        var finiteNorms = norms.Where(double.IsFinite).ToArray();
        var max = Math.Max(1, finiteNorms.Length > 0 ? finiteNorms.Max() : 0);
        var ticks = Chart.NiceTicks(0, max, 5);
        // A little room past the longest bar, so that ‖W_i‖ = 1 does not run into the frame.
        var x = new Scale(0, max * 1.03, left, left + plotWidth);
        foreach (var t in ticks.Skip(1))
            svg.Line(x.Map(t), Top, x.Map(t), Top + plotHeight, Paint.Stroked(Palette.Grid));

        var thickness = band > 4 ? band * 0.78 : band * 0.9;
        using (svg.Group("bars"))
            for (var i = 0; i < n; i++)
            {
                var norm = norms[i];
                var y = Top + i * band + (band - thickness) / 2;
                if (!double.IsFinite(norm))
                {
                    if (band >= Chart.TickFont) svg.Text(left + 4, Top + (i + 0.5) * band, "no data", Chart.TickFont, fill: Palette.Muted,
                        baseline: TextBaseline.Middle, cssClass: "no-data");
                    continue;
                }
                var s = i < superposition.Length ? superposition[i] : double.NaN;
                var tip = $"feature {i}: ‖W_i‖ = {FigureFormat.Value(norm)}, superposition = {FigureFormat.Value(s)}";
                svg.Rect(left, y, Math.Max(0, x.Map(Math.Max(0, norm)) - left), thickness,
                    Paint.Filled(Palette.Superposition[s]), "bar", tip);
            }
        if (finiteNorms.Length == 0) Chart.NoData(svg, left + plotWidth / 4, Top + plotHeight / 2 - 14, plotWidth / 2, 28);

        Chart.BottomAxis(svg, Top + plotHeight, left, left + plotWidth,
            ticks.Select(t => (x.Map(t), FigureFormat.Compact(t))), "‖W_i‖", 22, subscripts: true);
        Chart.LeftAxis(svg, left, Top, Top + plotHeight, IndexTicks(n, Top, band, 13), "feature");

        var legendY = Top + plotHeight + 58;
        const double legendX = left + 110, legendWidth = 170;
        Chart.ColorBar(svg, "superposition-scale", Palette.Superposition, legendX, legendY, legendWidth, 9, vertical: false,
            [(0, "0"), (0.5, "0.5"), (1, "≥ 1")], "superposition");
        svg.Text(legendX + legendWidth / 2, legendY + 38, "0: a dimension of its own · 1: fully shared",
            Chart.TickFont, TextAnchor.Middle, Palette.Muted, cssClass: "note");
        return svg.ToString();
    }

    /// <summary>
    /// For m = 2: each feature as an arrow from the origin to W_i, coloured and labelled by its index (features are
    /// numbered in order of importance), with the unit circle for scale. Features with ‖W_i‖ below 1e-3 have no
    /// direction to draw and are listed beneath instead.
    /// </summary>
    public static string FeatureArrows(float[] w, int n, double[] norms, string title)
    {
        const double size = 360, left = (Chart.Width - size) / 2, tiny = 1e-3;
        var svg = new SvgCanvas(Chart.Width, Top + size + 52, title);
        Chart.Title(svg, title);
        if (n <= 0 || w.Length != n * 2)
        {
            var reason = n > 0 && w.Length % n == 0 && w.Length / n != 2 ? $"no data: needs m = 2, got m = {w.Length / n}" : "no data";
            Chart.NoData(svg, left, Top, size, size, reason);
            return svg.ToString();
        }

        var length = new double[n];
        for (var i = 0; i < n; i++)
            length[i] = i < norms.Length && double.IsFinite(norms[i]) ? norms[i] : Math.Sqrt(Dot(w, i, i, 2));
        var longest = length.Where(double.IsFinite).DefaultIfEmpty(0).Max();
        var extent = Math.Max(1.15, longest * 1.12);
        // One scale for both axes: the angles between features are the figure's whole point.
        var unit = size / (2 * extent);
        var (cx, cy) = (left + size / 2, Top + size / 2);

        svg.Rect(left, Top, size, size, new Paint(Fill: "none", Stroke: Palette.Grid));
        svg.Line(left, cy, left + size, cy, Paint.Stroked(Palette.Grid));
        svg.Line(cx, Top, cx, Top + size, Paint.Stroked(Palette.Grid));
        svg.Circle(cx, cy, unit, new Paint(Fill: "none", Stroke: "#b0b0b0", StrokeWidth: 1, Dash: "3 3"), "unit-circle",
            "unit circle: ‖W_i‖ = 1");

        var omitted = new List<int>();
        var labels = new List<(double X, double Y)>();
        for (var i = 0; i < n; i++)
        {
            var (wx, wy) = ((double)w[2 * i], (double)w[2 * i + 1]);
            if (!double.IsFinite(wx) || !double.IsFinite(wy) || !(length[i] >= tiny))
            {
                omitted.Add(i);
                continue;
            }
            var color = Palette.Categorical(i);
            var (tx, ty) = (cx + wx * unit, cy - wy * unit);
            var pixels = Math.Sqrt(wx * wx + wy * wy) * unit;
            var (ux, uy) = pixels > 0 ? ((tx - cx) / pixels, (ty - cy) / pixels) : (1.0, 0.0);
            var head = Math.Min(10, pixels * 0.6);
            var (bx, by) = (tx - ux * head, ty - uy * head);
            using (svg.Group("arrow", $"feature {i}: W_i = ({FigureFormat.Value(wx)}, {FigureFormat.Value(wy)}), ‖W_i‖ = {FigureFormat.Value(length[i])}"))
            {
                svg.Line(cx, cy, bx, by, new Paint(Stroke: color, StrokeWidth: 2));
                svg.Polygon([(tx, ty), (bx - uy * head * 0.45, by + ux * head * 0.45), (bx + uy * head * 0.45, by - ux * head * 0.45)],
                    Paint.Filled(color));
            }
            // Label beyond the tip; features sharing a direction get their labels pushed further out.
            var distance = 11.0;
            var (lx, ly) = (tx + ux * distance, ty + uy * distance);
            for (var attempt = 0; attempt < 8 && labels.Any(p => Math.Abs(p.X - lx) < 12 && Math.Abs(p.Y - ly) < 11); attempt++)
            {
                distance += 11;
                (lx, ly) = (tx + ux * distance, ty + uy * distance);
            }
            lx = Math.Clamp(lx, left + 6, left + size - 6);
            ly = Math.Clamp(ly, Top + 7, Top + size - 7);
            labels.Add((lx, ly));
            svg.Text(lx, ly, FigureFormat.Integer(i), Chart.LabelFont, TextAnchor.Middle, color, bold: true,
                baseline: TextBaseline.Middle, cssClass: "arrow-label");
        }

        var noteY = Top + size + 18;
        svg.Text(left, noteY, "label and colour: feature index (0 = most important); dashed: unit circle",
            Chart.TickFont, fill: Palette.Muted, cssClass: "note");
        if (omitted.Count > 0)
            svg.Text(left, noteY + 16, $"not drawn, ‖W_i‖ < 0.001 or no data: {IndexList(omitted, 60)}", Chart.TickFont,
                fill: Palette.Muted, cssClass: "note", subscripts: true);
        return svg.ToString();
    }

    /// <summary>
    /// The privileged-basis figure: one column per hidden neuron; each feature's weight on that neuron is a segment
    /// of height |W[i][k]|, positive ones stacked up from zero and negative ones down, coloured by feature.
    /// </summary>
    public static string NeuronStack(float[] w, int n, int m, string title)
    {
        const double left = 58, right = 16, plotHeight = 280;
        var plotWidth = Chart.Width - left - right;
        var showLegend = n is > 0 and <= 20;
        var legend = Chart.Legend(showLegend
            ? Enumerable.Range(0, n).Select(i => (Palette.Categorical(i), FigureFormat.Integer(i)))
            : [], left + 50, Chart.Width - right);
        var svg = new SvgCanvas(Chart.Width, Top + plotHeight + 60 + Math.Max(Chart.LegendRowHeight, legend.Height), title);
        Chart.Title(svg, title);
        if (!Shaped(w, n, m))
        {
            Chart.NoData(svg, left, Top, plotWidth, plotHeight);
            return svg.ToString();
        }

        var up = new double[m];
        var down = new double[m];
        for (var k = 0; k < m; k++)
            for (var i = 0; i < n; i++)
            {
                double v = w[i * m + k];
                if (!double.IsFinite(v)) continue;
                if (v > 0) up[k] += v;
                else down[k] += v;
            }
        var top = up.Max();
        var bottom = down.Min();
        var empty = top == 0 && bottom == 0;
        if (empty) (top, bottom) = (1, -1);
        // Only a sliver of room beyond the tallest stacks: rounding the axis out to the next tick can waste a
        // third of the height.
        var pad = (top - bottom) * 0.04;
        var (domainMin, domainMax) = (bottom - (bottom < 0 ? pad : 0), top + (top > 0 ? pad : 0));
        var ticks = Chart.NiceTicks(domainMin, domainMax, 6);
        var y = new Scale(domainMin, domainMax, Top + plotHeight, Top);

        foreach (var t in ticks)
            svg.Line(left, y.Map(t), left + plotWidth, y.Map(t), Paint.Stroked(Palette.Grid));
        var columnWidth = plotWidth / m;
        var barWidth = Math.Min(56, columnWidth * 0.72);
        using (svg.Group("segments"))
            for (var k = 0; k < m; k++)
            {
                var x = left + (k + 0.5) * columnWidth - barWidth / 2;
                double positive = 0, negative = 0;
                for (var i = 0; i < n; i++)
                {
                    double v = w[i * m + k];
                    if (!double.IsFinite(v) || v == 0) continue;
                    var (from, to) = v > 0 ? (positive, positive + v) : (negative + v, negative);
                    if (v > 0) positive = to;
                    else negative = from;
                    var (y0, y1) = (y.Map(to), y.Map(from));
                    // A white edge separates neighbours, but would swallow a segment only a few pixels high.
                    var paint = y1 - y0 >= 3
                        ? new Paint(Fill: Palette.Categorical(i), Stroke: "#ffffff", StrokeWidth: 0.6)
                        : Paint.Filled(Palette.Categorical(i));
                    svg.Rect(x, y0, barWidth, y1 - y0, paint, "segment", $"neuron {k}, feature {i}: W = {FigureFormat.Value(v)}");
                }
            }
        svg.Line(left, y.Map(0), left + plotWidth, y.Map(0), Paint.Stroked(Palette.Ink, 1.2), "zero-line");
        if (empty) Chart.NoData(svg, left + plotWidth / 4, Top + plotHeight / 2 - 30, plotWidth / 2, 24, "all weights are zero or no data");

        Chart.BottomAxis(svg, Top + plotHeight, left, left + plotWidth,
            IndexTicks(m, left, columnWidth, IndexLabelWidth(m) + 6), "neuron", 22);
        Chart.LeftAxis(svg, left, Top, Top + plotHeight, ticks.Select(t => (y.Map(t), FigureFormat.Compact(t))), "weight");

        var legendY = Top + plotHeight + 50;
        if (showLegend)
        {
            svg.Text(left, legendY + 5, "feature", Chart.TickFont, fill: Palette.Muted, baseline: TextBaseline.Middle);
            Chart.Draw(svg, legend, legendY);
        }
        else
        {
            svg.Text(left, legendY + 5, $"colour: feature index ({n} features; palette repeats every {Palette.CategoricalCount})",
                Chart.TickFont, fill: Palette.Muted, baseline: TextBaseline.Middle, cssClass: "note");
        }
        return svg.ToString();
    }

    private static string IndexList(IReadOnlyList<int> indices, int maxChars)
    {
        var text = "";
        for (var k = 0; k < indices.Count; k++)
        {
            var next = text.Length == 0 ? FigureFormat.Integer(indices[k]) : text + ", " + FigureFormat.Integer(indices[k]);
            if (next.Length > maxChars) return $"{text} and {indices.Count - k} more";
            text = next;
        }
        return text;
    }
}
