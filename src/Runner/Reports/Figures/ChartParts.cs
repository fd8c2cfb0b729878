using System.Globalization;

namespace NativeEngine.Runner.Reports.Figures;

/// <summary>Maps data values onto pixels, linearly or by log10 (then only positive values map).</summary>
internal readonly record struct Scale(double DomainMin, double DomainMax, double PixelMin, double PixelMax, bool Log = false)
{
    public double Map(double value)
    {
        if (Log)
        {
            if (!(value > 0)) return double.NaN;
            return Lerp(Math.Log10(value), Math.Log10(DomainMin), Math.Log10(DomainMax));
        }
        return Lerp(value, DomainMin, DomainMax);
    }

    private double Lerp(double v, double d0, double d1) =>
        d1 == d0 ? (PixelMin + PixelMax) / 2 : PixelMin + (v - d0) / (d1 - d0) * (PixelMax - PixelMin);
}

/// <summary>Numbers as a reader wants them on an axis or in a tooltip, always in the invariant culture.</summary>
public static class FigureFormat
{
    /// <summary>A few significant digits without trailing zeros: 0.01, 0.1, 1, 3.2, 1000; 1e-5 and 2e6 beyond.</summary>
    public static string Compact(double value, int significant = 2)
    {
        if (double.IsNaN(value)) return "no data";
        if (double.IsInfinity(value)) return value > 0 ? "∞" : "−∞";
        if (value == 0) return "0";
        var magnitude = Math.Abs(value);
        if (magnitude >= 1e5 || magnitude < 1e-4)
            return value.ToString("0.#e+0", CultureInfo.InvariantCulture).Replace("e+", "e", StringComparison.Ordinal);
        var exponent = (int)Math.Floor(Math.Log10(magnitude));
        var decimals = Math.Max(0, significant - 1 - exponent);
        var rounded = Math.Round(value, Math.Min(decimals, 15));
        var text = rounded.ToString("0.###############", CultureInfo.InvariantCulture);
        // A typographic minus reads better than a hyphen in figure text.
        return text.StartsWith('-') ? "−" + text[1..] : text;
    }

    /// <summary>For tooltips: enough digits to tell values apart.</summary>
    public static string Value(double value) => Compact(value, 4);

    public static string Integer(int value) => value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>Layout pieces shared by the figures: title, axes, ticks, legends.</summary>
internal static class Chart
{
    public const double Width = 480;
    /// <summary>The smallest text of a figure. Figures are shown at least at their drawn width (see HtmlReport), so
    /// this is also the smallest size text reaches on screen.</summary>
    public const double TickFont = 11;
    public const double LabelFont = 12;
    public const double TitleFont = 14;
    /// <summary>The title shrinks down to this before it is shortened.</summary>
    public const double MinTitleFont = 12;

    /// <summary>Rough advance width of sans-serif text; wide enough for DejaVu Sans, the common Linux default.</summary>
    public static double TextWidth(string text, double size) => text.Length * size * 0.62;

    /// <summary>The figure title, shrunk and then shortened until it fits the width.</summary>
    public static void Title(SvgCanvas svg, string title)
    {
        var size = TitleFont;
        var available = svg.Width - 20;
        while (size > MinTitleFont && TextWidth(title, size) > available) size -= 0.5;
        var text = title;
        var maxChars = (int)(available / (size * 0.62));
        if (text.Length > maxChars && maxChars > 1) text = text[..(maxChars - 1)] + "…";
        svg.Text(svg.Width / 2, 22, text, size, TextAnchor.Middle, bold: true, tooltip: text == title ? null : title);
    }

    public static void NoData(SvgCanvas svg, double x, double y, double width, double height, string message = "no data")
    {
        svg.Rect(x, y, width, height, new Paint(Fill: "#f7f7f7", Stroke: Palette.Grid));
        svg.Text(x + width / 2, y + height / 2, message, LabelFont, TextAnchor.Middle, Palette.Muted,
            baseline: TextBaseline.Middle, cssClass: "no-data");
    }

    /// <summary>Round tick values covering [min, max]: steps of 1, 2 or 5 times a power of ten.</summary>
    public static double[] NiceTicks(double min, double max, int targetCount)
    {
        if (!double.IsFinite(min) || !double.IsFinite(max)) return [];
        if (max < min) (min, max) = (max, min);
        if (max == min) return [min];
        var step = NiceStep((max - min) / Math.Max(1, targetCount));
        var first = Math.Ceiling(min / step - 1e-9) * step;
        var ticks = new List<double>();
        for (var v = first; v <= max + step * 1e-9; v += step) ticks.Add(Math.Abs(v) < step * 1e-9 ? 0 : v);
        return ticks.ToArray();
    }

    /// <summary>Moves labels apart along one axis until neighbours are at least gap apart, each staying as near its
    /// own position as the others allow (so a label still sits beside the line it names).</summary>
    public static double[] Separate(IReadOnlyList<double> positions, double gap)
    {
        var order = Enumerable.Range(0, positions.Count).OrderBy(k => positions[k]).ToArray();
        var placed = positions.ToArray();
        for (var iteration = 0; iteration < 200; iteration++)
        {
            var moved = false;
            for (var k = 1; k < order.Length; k++)
            {
                var (a, b) = (order[k - 1], order[k]);
                var deficit = gap - (placed[b] - placed[a]);
                if (deficit <= 1e-6) continue;
                placed[a] -= deficit / 2;
                placed[b] += deficit / 2;
                moved = true;
            }
            if (!moved) break;
        }
        return placed;
    }

    public static double NiceStep(double rough)
    {
        if (!(rough > 0) || !double.IsFinite(rough)) return 1;
        var power = Math.Pow(10, Math.Floor(Math.Log10(rough)));
        // The tolerance keeps a range of 2.0000002 (a float's 1 squared) on the step it is meant to have.
        var fraction = rough / power * (1 - 1e-6);
        return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
    }

    /// <summary>The smallest stride of 1, 2, 5, 10, 20, 50… between labelled indices that keeps labels
    /// at least minSpacing pixels apart, so that up to hundreds of features stay legible.</summary>
    public static int IndexStride(double pixelsPerIndex, double minSpacing)
    {
        if (!(pixelsPerIndex > 0)) return 1;
        foreach (var power in new[] { 1, 10, 100, 1000, 10000 })
            foreach (var factor in new[] { 1, 2, 5 })
                if (factor * power * pixelsPerIndex >= minSpacing) return factor * power;
        return 100000;
    }

    /// <summary>Horizontal axis: a baseline, ticks and their labels at the given pixel positions.</summary>
    public static void BottomAxis(SvgCanvas svg, double y, double x0, double x1, IEnumerable<(double X, string Label)> ticks,
        string title, double titleGap = 30, bool subscripts = false)
    {
        svg.Line(x0, y, x1, y, Paint.Stroked(Palette.Axis));
        foreach (var (x, label) in ticks)
        {
            svg.Line(x, y, x, y + 4, Paint.Stroked(Palette.Axis));
            svg.Text(x, y + 6, label, TickFont, TextAnchor.Middle, baseline: TextBaseline.Hanging, cssClass: "tick");
        }
        svg.Text((x0 + x1) / 2, y + titleGap, title, LabelFont, TextAnchor.Middle, baseline: TextBaseline.Hanging,
            cssClass: "axis-title", subscripts: subscripts);
    }

    /// <summary>Vertical axis on the left; the title is turned and placed left of the widest label.</summary>
    public static void LeftAxis(SvgCanvas svg, double x, double y0, double y1, IEnumerable<(double Y, string Label)> ticks,
        string title, bool subscripts = false)
    {
        svg.Line(x, y0, x, y1, Paint.Stroked(Palette.Axis));
        var widest = 0.0;
        foreach (var (y, label) in ticks)
        {
            svg.Line(x - 4, y, x, y, Paint.Stroked(Palette.Axis));
            svg.Text(x - 6, y, label, TickFont, TextAnchor.End, baseline: TextBaseline.Middle, cssClass: "tick");
            widest = Math.Max(widest, TextWidth(label, TickFont));
        }
        var titleX = x - 10 - widest - 6;
        svg.Text(titleX, (y0 + y1) / 2, title, LabelFont, TextAnchor.Middle, rotate: -90, cssClass: "axis-title",
            subscripts: subscripts);
    }

    /// <summary>A colour bar along the given rectangle, with its stops as a gradient and labelled ticks.</summary>
    public static void ColorBar(SvgCanvas svg, string id, ColorMap map, double x, double y, double width, double height,
        bool vertical, IEnumerable<(double Value, string Label)> ticks, string? caption = null)
    {
        svg.LinearGradient(id, map.GradientStops(), vertical);
        svg.Rect(x, y, width, height, new Paint(Fill: $"url(#{id})", Stroke: Palette.Axis, StrokeWidth: 0.5), "colorbar");
        foreach (var (value, label) in ticks)
        {
            var t = (value - map.Min) / (map.Max - map.Min);
            if (!double.IsFinite(t)) continue;
            if (vertical)
            {
                var ty = y + height - t * height;
                svg.Line(x + width, ty, x + width + 3, ty, Paint.Stroked(Palette.Axis));
                svg.Text(x + width + 5, ty, label, TickFont, baseline: TextBaseline.Middle, cssClass: "tick");
            }
            else
            {
                var tx = x + t * width;
                svg.Line(tx, y + height, tx, y + height + 3, Paint.Stroked(Palette.Axis));
                svg.Text(tx, y + height + 5, label, TickFont, TextAnchor.Middle, baseline: TextBaseline.Hanging,
                    cssClass: "tick");
            }
        }
        if (caption is null) return;
        if (vertical)
            svg.Text(x + width / 2, y - 11, caption, TickFont, TextAnchor.Middle, Palette.Muted, subscripts: true);
        else
            svg.Text(x - 6, y + height / 2, caption, TickFont, TextAnchor.End, Palette.Muted, baseline: TextBaseline.Middle,
                subscripts: true);
    }

    public const double LegendRowHeight = 16;

    /// <summary>Places legend entries (swatch and label) in equal columns, row by row, as many columns as fit
    /// before maxX; the row count is known before drawing, so the canvas can be sized to fit.</summary>
    public static LegendLayout Legend(IEnumerable<(string Color, string Label)> entries, double x0, double maxX)
    {
        var list = entries.ToList();
        if (list.Count == 0) return new LegendLayout([], 0);
        var column = list.Max(e => LegendSwatch + 4 + TextWidth(e.Label, TickFont)) + 14;
        var columns = Math.Max(1, Math.Min(list.Count, (int)((maxX - x0 + 14) / column)));
        var placed = list.Select((e, k) => (x0 + k % columns * column, k / columns, e.Color, e.Label)).ToList();
        return new LegendLayout(placed, (list.Count + columns - 1) / columns);
    }

    public static void Draw(SvgCanvas svg, LegendLayout legend, double y0)
    {
        foreach (var (x, row, color, label) in legend.Entries)
        {
            var y = y0 + row * LegendRowHeight;
            svg.Rect(x, y, LegendSwatch, LegendSwatch, new Paint(Fill: color, Stroke: "#999999", StrokeWidth: 0.5), "legend-swatch");
            svg.Text(x + LegendSwatch + 4, y + LegendSwatch / 2, label, TickFont, baseline: TextBaseline.Middle, cssClass: "legend");
        }
    }

    private const double LegendSwatch = 10;
}

internal sealed record LegendLayout(IReadOnlyList<(double X, int Row, string Color, string Label)> Entries, int Rows)
{
    public double Height => Rows * Chart.LegendRowHeight;
}
