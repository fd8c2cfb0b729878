namespace NativeEngine.Runner.Reports.Figures;

/// <summary>Figures over many models: dimensionality against sparsity, and phase diagrams.</summary>
public static partial class ToyFigures
{
    /// <summary>The fractions at which the paper's dimensionality plot shows sticky geometries: 1 dedicated,
    /// 3/4 tetrahedron, 2/3 triangle, 1/2 antipodal pair, 2/5 pentagon, 3/8 square antiprism, 1/3, 2/7.</summary>
    public static readonly IReadOnlyList<(int Numerator, int Denominator)> ReferenceFractions =
        [(1, 1), (3, 4), (2, 3), (1, 2), (2, 5), (3, 8), (1, 3), (2, 7)];

    /// <summary>
    /// Feature dimensionality D_i against 1/(1−S) on a log axis, with the paper's reference fractions as dashed
    /// lines; a point's opacity follows ‖W_i‖ so unrepresented features fade. The optional line is D* per model.
    /// </summary>
    public static string DimensionalityScatter(IReadOnlyList<DimensionalityPoint> points,
        IReadOnlyList<(double X, double Y)>? dimensionsPerFeature, string title)
    {
        const double left = 62, right = 60, plotHeight = 300;
        var plotWidth = Chart.Width - left - right;
        var svg = new SvgCanvas(Chart.Width, Top + plotHeight + 84, title);
        Chart.Title(svg, title);

        var usable = points.Where(p => p.X > 0 && double.IsFinite(p.X) && double.IsFinite(p.D)).ToList();
        var line = (dimensionsPerFeature ?? []).Where(p => p.X > 0 && double.IsFinite(p.X)).OrderBy(p => p.X).ToList();
        var xs = usable.Select(p => p.X).Concat(line.Select(p => p.X)).ToList();
        var (lowDecade, highDecade) = xs.Count == 0
            ? (0, 3)
            : ((int)Math.Floor(Math.Log10(xs.Min()) + 1e-9), (int)Math.Ceiling(Math.Log10(xs.Max()) - 1e-9));
        if (highDecade <= lowDecade) highDecade = lowDecade + 1;
        var x = new Scale(Math.Pow(10, lowDecade), Math.Pow(10, highDecade), left, left + plotWidth, Log: true);
        // A little headroom above 1 so that points at D = 1 are not drawn on the frame.
        var y = new Scale(0, 1.08, Top + plotHeight, Top);

        svg.Rect(left, Top, plotWidth, plotHeight, new Paint(Fill: "none", Stroke: Palette.Grid));
        var decades = highDecade - lowDecade;
        // Plain numbers while they stay short (1, 10, 100, 1000), otherwise 1e5 for every decade: one axis, one notation.
        var plain = lowDecade >= -3 && highDecade <= 4;
        string DecadeLabel(int d) => plain ? FigureFormat.Compact(Math.Pow(10, d)) : $"1e{FigureFormat.Integer(d)}";
        var widest = Math.Max(DecadeLabel(lowDecade).Length, DecadeLabel(highDecade).Length);
        var labelStride = Chart.IndexStride(plotWidth / decades, widest * Chart.TickFont * 0.62 + 8);
        var xTicks = new List<(double, string)>();
        for (var d = lowDecade; d <= highDecade; d++)
        {
            var px = x.Map(Math.Pow(10, d));
            svg.Line(px, Top, px, Top + plotHeight, Paint.Stroked(Palette.Grid));
            if ((d - lowDecade) % labelStride == 0) xTicks.Add((px, DecadeLabel(d)));
            if (d == highDecade || decades > 8) continue;
            for (var minor = 2; minor <= 9; minor++)
            {
                var mx = x.Map(minor * Math.Pow(10, d));
                svg.Line(mx, Top + plotHeight, mx, Top + plotHeight + 2.5, Paint.Stroked(Palette.Axis, 0.75));
            }
        }

        // Labels at the right edge; close neighbours (2/5 and 3/8 differ by 0.025) are nudged apart vertically.
        var lineY = ReferenceFractions.Select(f => y.Map((double)f.Numerator / f.Denominator)).ToArray();
        var labelY = Chart.Separate(lineY, 11.5);
        for (var k = 0; k < ReferenceFractions.Count; k++)
        {
            var (numerator, denominator) = ReferenceFractions[k];
            var label = denominator == 1 ? FigureFormat.Integer(numerator) : $"{numerator}/{denominator}";
            svg.Line(left, lineY[k], left + plotWidth, lineY[k], Paint.Stroked("#8c8c8c", 0.8, "4 3"), "reference",
                $"D = {label} ({FigureFormat.Value((double)numerator / denominator)})");
            svg.Text(left + plotWidth + 6, labelY[k], label, Chart.TickFont, fill: Palette.Muted,
                baseline: TextBaseline.Middle, cssClass: "reference-label");
        }

        svg.ClipRect("scatter-plot", left, Top, plotWidth, plotHeight);
        if (line.Count > 0)
            using (svg.Group("dstar-line", clipPathId: "scatter-plot"))
                foreach (var run in FiniteRuns(line))
                    svg.Polyline(run.Select(p => (x.Map(p.X), y.Map(p.Y))), Paint.Stroked(Palette.Highlight, 1.8), "dstar",
                        "dimensions per feature D* = m / ‖W‖_F²");
        using (svg.Group("points"))
            foreach (var p in usable)
            {
                var opacity = double.IsFinite(p.Norm) ? Math.Clamp(p.Norm, 0.08, 1) : 0.08;
                svg.Circle(x.Map(p.X), y.Map(Math.Clamp(p.D, 0, 1.08)), 3.2, Paint.Filled(Palette.Point, opacity), "point",
                    $"feature {p.Feature}: D = {FigureFormat.Value(p.D)}, 1/(1−S) = {FigureFormat.Value(p.X)}, ‖W_i‖ = {FigureFormat.Value(p.Norm)}");
            }
        if (usable.Count == 0 && line.Count == 0) Chart.NoData(svg, left + plotWidth / 4, Top + plotHeight / 2 - 14, plotWidth / 2, 28);

        Chart.BottomAxis(svg, Top + plotHeight, left, left + plotWidth, xTicks, "1/(1−S) (log)", 22);
        Chart.LeftAxis(svg, left, Top, Top + plotHeight,
            Chart.NiceTicks(0, 1, 5).Select(t => (y.Map(t), FigureFormat.Compact(t))), "dimensionality D_i", subscripts: true);

        var legendY = Top + plotHeight + 62;
        svg.Circle(left + 5, legendY, 3.2, Paint.Filled(Palette.Point));
        svg.Text(left + 13, legendY, "feature (fainter: smaller ‖W_i‖)", Chart.TickFont, baseline: TextBaseline.Middle,
            cssClass: "legend", subscripts: true);
        if (line.Count > 0)
        {
            svg.Line(left + 215, legendY, left + 235, legendY, Paint.Stroked(Palette.Highlight, 1.8));
            svg.Text(left + 240, legendY, "dimensions per feature D*", Chart.TickFont, baseline: TextBaseline.Middle, cssClass: "legend");
        }
        return svg.ToString();
    }

    /// <summary>
    /// A phase diagram: one cell per (column value, row value), coloured by the class found there (cellClass[row,
    /// column] indexes classNames and classColors; −1 = no data, hatched). Cells span halfway to their neighbours
    /// on a log or linear axis, so unevenly spaced sweeps still read correctly; row 0 is at the bottom.
    /// </summary>
    public static string PhaseDiagram(double[] columns, double[] rows, int[,] cellClass, string[] classNames,
        string[] classColors, string xLabel, string yLabel, string title, bool logX = true, bool logY = true)
    {
        const double left = 64, right = 20, plotHeight = 300;
        var plotWidth = Chart.Width - left - right;
        string NameOf(int k) => k >= 0 && k < classNames.Length ? classNames[k] : "no data";
        int ClassAt(int r, int c) =>
            r < cellClass.GetLength(0) && c < cellClass.GetLength(1) && cellClass[r, c] >= 0 && cellClass[r, c] < classNames.Length
                ? cellClass[r, c] : -1;
        string ColorOf(int k) => k < 0 ? "url(#no-data-hatch)" : k < classColors.Length ? classColors[k] : Palette.Categorical(k);

        var anyMissing = false;
        for (var r = 0; r < rows.Length; r++)
            for (var c = 0; c < columns.Length; c++)
                anyMissing |= ClassAt(r, c) < 0;
        var entries = classNames.Select((name, k) => (ColorOf(k), name)).ToList();
        if (anyMissing) entries.Add((ColorOf(-1), "no data"));
        var legend = Chart.Legend(entries, left, Chart.Width - right);
        var svg = new SvgCanvas(Chart.Width, Top + plotHeight + 66 + legend.Height, title);
        Chart.Title(svg, title);
        svg.HatchPattern("no-data-hatch", "#c4c4c4", "#f4f4f4");
        if (columns.Length == 0 || rows.Length == 0)
        {
            Chart.NoData(svg, left, Top, plotWidth, plotHeight);
            Chart.Draw(svg, legend, Top + plotHeight + 56);
            return svg.ToString();
        }

        var xEdges = CellEdges(columns, logX, left, left + plotWidth);
        var yEdges = CellEdges(rows, logY, Top + plotHeight, Top);
        using (svg.Group("cells"))
            for (var r = 0; r < rows.Length; r++)
                for (var c = 0; c < columns.Length; c++)
                {
                    var k = ClassAt(r, c);
                    var (x0, x1) = (Math.Min(xEdges[c], xEdges[c + 1]), Math.Max(xEdges[c], xEdges[c + 1]));
                    var (y0, y1) = (Math.Min(yEdges[r], yEdges[r + 1]), Math.Max(yEdges[r], yEdges[r + 1]));
                    svg.Rect(x0, y0, x1 - x0, y1 - y0, Paint.Filled(ColorOf(k)), "cell",
                        $"{xLabel} = {FigureFormat.Value(columns[c])}, {yLabel} = {FigureFormat.Value(rows[r])}: {NameOf(k)}",
                        crispEdges: true);
                }
        svg.Rect(left, Top, plotWidth, plotHeight, new Paint(Fill: "none", Stroke: Palette.Axis, StrokeWidth: 0.75));

        Chart.BottomAxis(svg, Top + plotHeight, left, left + plotWidth,
            CellTicks(columns, xEdges, horizontal: true), xLabel, 22);
        Chart.LeftAxis(svg, left, Top, Top + plotHeight, CellTicks(rows, yEdges, horizontal: false), yLabel);
        Chart.Draw(svg, legend, Top + plotHeight + 56);
        return svg.ToString();
    }

    /// <summary>Pixel edges of each cell: halfway (in log or linear terms) between neighbouring values. Values that
    /// are not finite, not monotone, or not positive on a log axis fall back to equal cells in the given order.</summary>
    private static double[] CellEdges(double[] values, bool log, double pixelStart, double pixelEnd)
    {
        var count = values.Length;
        var t = values.Select(v => log ? (v > 0 ? Math.Log10(v) : double.NaN) : v).ToArray();
        var increasing = true;
        var decreasing = true;
        for (var k = 1; k < count; k++)
        {
            increasing &= t[k] > t[k - 1];
            decreasing &= t[k] < t[k - 1];
        }
        if (count < 2 || t.Any(v => !double.IsFinite(v)) || !(increasing || decreasing))
            t = Enumerable.Range(0, count).Select(k => (double)k).ToArray();
        var edges = new double[count + 1];
        if (count == 1)
            (edges[0], edges[1]) = (t[0] - 0.5, t[0] + 0.5);
        else
        {
            for (var k = 1; k < count; k++) edges[k] = (t[k - 1] + t[k]) / 2;
            edges[0] = t[0] - (t[1] - t[0]) / 2;
            edges[count] = t[count - 1] + (t[count - 1] - t[count - 2]) / 2;
        }
        // Larger values always lie towards pixelEnd, whichever order the sweep was given in.
        var scale = new Scale(Math.Min(edges[0], edges[count]), Math.Max(edges[0], edges[count]), pixelStart, pixelEnd);
        return edges.Select(scale.Map).ToArray();
    }

    /// <summary>A label at each cell's centre, thinned to every 2nd, 5th… when neighbours would collide.</summary>
    private static IEnumerable<(double, string)> CellTicks(double[] values, double[] edges, bool horizontal)
    {
        var labels = values.Select(v => FigureFormat.Compact(v)).ToArray();
        var narrowest = Enumerable.Range(0, values.Length).Min(k => Math.Abs(edges[k + 1] - edges[k]));
        var needed = horizontal ? labels.Max(l => Chart.TextWidth(l, Chart.TickFont)) + 6 : 13;
        var stride = Chart.IndexStride(narrowest, needed);
        for (var k = 0; k < values.Length; k += stride)
            yield return ((edges[k] + edges[k + 1]) / 2, labels[k]);
    }

    private static IEnumerable<List<(double X, double Y)>> FiniteRuns(IEnumerable<(double X, double Y)> points)
    {
        var run = new List<(double X, double Y)>();
        foreach (var p in points)
        {
            if (double.IsFinite(p.Y)) run.Add(p);
            else if (run.Count > 0)
            {
                yield return run;
                run = [];
            }
        }
        if (run.Count > 0) yield return run;
    }
}
