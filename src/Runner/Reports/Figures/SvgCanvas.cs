using System.Globalization;
using System.Text;

namespace NativeEngine.Runner.Reports.Figures;

public enum TextAnchor { Start, Middle, End }

/// <summary>Where the given y sits relative to the text: on its baseline, at its middle, or at its top.</summary>
public enum TextBaseline { Alphabetic, Middle, Hanging }

/// <summary>Fill and stroke of one shape; null leaves the attribute out (fill then defaults to black in SVG).</summary>
public readonly record struct Paint(string? Fill = null, string? Stroke = null, double StrokeWidth = 1,
    double Opacity = 1, string? Dash = null)
{
    public static Paint Filled(string color, double opacity = 1) => new(Fill: color, Opacity: opacity);

    public static Paint Stroked(string color, double width = 1, string? dash = null) =>
        new(Fill: "none", Stroke: color, StrokeWidth: width, Dash: dash);
}

/// <summary>
/// A minimal SVG writer: shapes, text and groups appended in order, emitted as one standalone document.
/// Every shape whose geometry is not finite is silently left out, so a NaN in the data can never reach the
/// file as "NaN" and break the document; callers that care say "no data" themselves.
/// </summary>
public sealed class SvgCanvas
{
    public const string Namespace = "http://www.w3.org/2000/svg";

    private readonly StringBuilder body = new();
    private readonly StringBuilder defs = new();
    private readonly string title;
    private int openGroups;

    public SvgCanvas(double width, double height, string title, string? background = "#ffffff")
    {
        Width = width;
        Height = height;
        this.title = title;
        // An explicit background keeps the figure legible in viewers with a dark page.
        if (background is not null) Rect(0, 0, width, height, Paint.Filled(background));
    }

    public double Width { get; }

    public double Height { get; }

    /// <summary>At most four decimals: sub-pixel precision beyond that only inflates the file.</summary>
    public static string Number(double value)
    {
        var rounded = Math.Round(value, 4);
        if (rounded == 0) return "0"; // also turns -0 into 0
        // Whole numbers (grid cells, most pixel positions) print as integers, the same text as the format below.
        if (rounded == Math.Floor(rounded) && Math.Abs(rounded) < 1e15)
            return ((long)rounded).ToString(CultureInfo.InvariantCulture);
        return rounded.ToString("0.####", CultureInfo.InvariantCulture);
    }

    public static string Escape(string text)
    {
        var escaped = new StringBuilder(text.Length);
        foreach (var c in text)
        {
            switch (c)
            {
                case '&': escaped.Append("&amp;"); break;
                case '<': escaped.Append("&lt;"); break;
                case '>': escaped.Append("&gt;"); break;
                case '"': escaped.Append("&quot;"); break;
                case '\'': escaped.Append("&apos;"); break;
                // Control characters other than tab and newlines are not allowed in XML 1.0 at all.
                case < ' ' when c is not ('\t' or '\n' or '\r'): break;
                default: escaped.Append(c); break;
            }
        }
        return escaped.ToString();
    }

    public SvgCanvas Rect(double x, double y, double width, double height, Paint paint, string? cssClass = null,
        string? tooltip = null, bool crispEdges = false)
    {
        if (!Finite(x, y, width, height) || width < 0 || height < 0) return this;
        var attributes = $"x=\"{Number(x)}\" y=\"{Number(y)}\" width=\"{Number(width)}\" height=\"{Number(height)}\"";
        if (crispEdges) attributes += " shape-rendering=\"crispEdges\"";
        return Element("rect", attributes, paint, cssClass, tooltip);
    }

    /// <summary>A PNG drawn into the rectangle, its pixels kept sharp when scaled (a heatmap's cells).</summary>
    public SvgCanvas PixelImage(double x, double y, double width, double height, byte[] png, string? cssClass = null)
    {
        if (!Finite(x, y, width, height) || width < 0 || height < 0) return this;
        body.Append($"<image x=\"{Number(x)}\" y=\"{Number(y)}\" width=\"{Number(width)}\" height=\"{Number(height)}\" ")
            .Append("preserveAspectRatio=\"none\" style=\"image-rendering:pixelated\" ");
        if (cssClass is not null) body.Append($"class=\"{Escape(cssClass)}\" ");
        body.Append("href=\"data:image/png;base64,").Append(Convert.ToBase64String(png)).Append("\"/>\n");
        return this;
    }

    public SvgCanvas Line(double x1, double y1, double x2, double y2, Paint paint, string? cssClass = null,
        string? tooltip = null)
    {
        if (!Finite(x1, y1, x2, y2)) return this;
        return Element("line", $"x1=\"{Number(x1)}\" y1=\"{Number(y1)}\" x2=\"{Number(x2)}\" y2=\"{Number(y2)}\"",
            paint, cssClass, tooltip);
    }

    public SvgCanvas Circle(double cx, double cy, double r, Paint paint, string? cssClass = null, string? tooltip = null)
    {
        if (!Finite(cx, cy, r) || r < 0) return this;
        return Element("circle", $"cx=\"{Number(cx)}\" cy=\"{Number(cy)}\" r=\"{Number(r)}\"", paint, cssClass, tooltip);
    }

    public SvgCanvas Polyline(IEnumerable<(double X, double Y)> points, Paint paint, string? cssClass = null,
        string? tooltip = null) => Poly("polyline", points, paint, cssClass, tooltip);

    public SvgCanvas Polygon(IEnumerable<(double X, double Y)> points, Paint paint, string? cssClass = null,
        string? tooltip = null) => Poly("polygon", points, paint, cssClass, tooltip);

    /// <summary>A path from raw path data; build it with <see cref="Number"/> so it stays invariant-culture.</summary>
    public SvgCanvas Path(string data, Paint paint, string? cssClass = null, string? tooltip = null)
    {
        if (data.Contains("NaN", StringComparison.Ordinal) || data.Contains("Infinity", StringComparison.Ordinal) ||
            data.Contains('∞')) return this;
        return Element("path", $"d=\"{Escape(data)}\"", paint, cssClass, tooltip);
    }

    public SvgCanvas Text(double x, double y, string text, double size = 11, TextAnchor anchor = TextAnchor.Start,
        string fill = Palette.Ink, bool bold = false, double rotate = 0, TextBaseline baseline = TextBaseline.Alphabetic,
        string? cssClass = null, string? tooltip = null, bool subscripts = false)
    {
        if (!Finite(x, y, size, rotate)) return this;
        var a = new StringBuilder($"x=\"{Number(x)}\" y=\"{Number(y)}\" font-size=\"{Number(size)}\"");
        if (anchor != TextAnchor.Start) a.Append($" text-anchor=\"{(anchor == TextAnchor.Middle ? "middle" : "end")}\"");
        // dy instead of dominant-baseline: every SVG renderer honours it.
        if (baseline == TextBaseline.Middle) a.Append(" dy=\"0.35em\"");
        else if (baseline == TextBaseline.Hanging) a.Append(" dy=\"0.75em\"");
        if (bold) a.Append(" font-weight=\"bold\"");
        if (rotate != 0) a.Append($" transform=\"rotate({Number(rotate)} {Number(x)} {Number(y)})\"");
        a.Append($" fill=\"{Escape(fill)}\"");
        if (cssClass is not null) a.Append($" class=\"{Escape(cssClass)}\"");
        body.Append("<text ").Append(a).Append('>');
        if (tooltip is not null) body.Append("<title>").Append(Escape(tooltip)).Append("</title>");
        body.Append(subscripts ? WithSubscripts(text, size) : Escape(text)).Append("</text>\n");
        return this;
    }

    /// <summary>Subscripts' size relative to their text; large enough that 11 px text keeps subscripts above 9 px.</summary>
    public const int SubscriptPercent = 85;

    /// <summary>"W_i" and "x_{ij}" as real subscripts. Shifts are in absolute units: an em in a smaller tspan
    /// is a smaller em, and the way down and back up must cancel exactly.</summary>
    private static string WithSubscripts(string text, double size)
    {
        var shift = Number(size * 0.28);
        var result = new StringBuilder();
        var k = 0;
        while (k < text.Length)
        {
            var underscore = text.IndexOf('_', k);
            var braced = underscore >= 0 && underscore + 1 < text.Length && text[underscore + 1] == '{';
            var start = underscore + (braced ? 2 : 1);
            var end = braced ? text.IndexOf('}', start) : start;
            if (!braced) while (end < text.Length && char.IsLetterOrDigit(text[end])) end++;
            if (underscore < 0 || end < 0 || end == start)
            {
                result.Append(Escape(text[k..]));
                break;
            }
            result.Append(Escape(text[k..underscore]))
                .Append($"<tspan dy=\"{shift}\" font-size=\"{SubscriptPercent}%\">{Escape(text[start..end])}</tspan>");
            k = braced ? end + 1 : end;
            // The rest of the text returns to the baseline; an empty tspan would carry the shift just as well.
            result.Append($"<tspan dy=\"-{shift}\">");
            var closeAt = text.IndexOf('_', k);
            var plain = closeAt < 0 ? text[k..] : text[k..closeAt];
            result.Append(Escape(plain)).Append("</tspan>");
            k += plain.Length;
        }
        return result.ToString();
    }

    /// <summary>Opens a &lt;g&gt;; dispose the result to close it. translate and scale place the group's own
    /// coordinates (scale first), which keeps thousands of grid cells at small integer coordinates.</summary>
    public GroupScope Group(string? cssClass = null, string? tooltip = null, string? clipPathId = null,
        double opacity = 1, (double X, double Y)? translate = null, double scale = 1, bool crispEdges = false)
    {
        body.Append("<g");
        if (cssClass is not null) body.Append($" class=\"{Escape(cssClass)}\"");
        if (translate is { } t && double.IsFinite(t.X) && double.IsFinite(t.Y) || scale != 1 && double.IsFinite(scale))
        {
            var (tx, ty) = translate ?? (0, 0);
            body.Append($" transform=\"translate({Number(tx)} {Number(ty)}) scale({Number(scale)})\"");
        }
        if (crispEdges) body.Append(" shape-rendering=\"crispEdges\"");
        if (clipPathId is not null) body.Append($" clip-path=\"url(#{Escape(clipPathId)})\"");
        if (opacity < 1 && double.IsFinite(opacity)) body.Append($" opacity=\"{Number(opacity)}\"");
        body.Append('>');
        if (tooltip is not null) body.Append("<title>").Append(Escape(tooltip)).Append("</title>");
        body.Append('\n');
        openGroups++;
        return new GroupScope(this);
    }

    public readonly struct GroupScope(SvgCanvas canvas) : IDisposable
    {
        public void Dispose()
        {
            canvas.body.Append("</g>\n");
            canvas.openGroups--;
        }
    }

    /// <summary>A gradient for colour bars; stops are (offset in [0, 1], colour).</summary>
    public SvgCanvas LinearGradient(string id, IEnumerable<(double Offset, string Color)> stops, bool vertical)
    {
        defs.Append($"<linearGradient id=\"{Escape(id)}\" x1=\"0\" y1=\"{(vertical ? 1 : 0)}\" x2=\"{(vertical ? 0 : 1)}\" y2=\"0\">");
        foreach (var (offset, color) in stops)
            defs.Append($"<stop offset=\"{Number(offset)}\" stop-color=\"{Escape(color)}\"/>");
        defs.Append("</linearGradient>\n");
        return this;
    }

    public SvgCanvas ClipRect(string id, double x, double y, double width, double height)
    {
        defs.Append($"<clipPath id=\"{Escape(id)}\"><rect x=\"{Number(x)}\" y=\"{Number(y)}\" width=\"{Number(width)}\" height=\"{Number(height)}\"/></clipPath>\n");
        return this;
    }

    /// <summary>Diagonal hatching, for cells that have no data (distinct from any colour of a scale).</summary>
    public SvgCanvas HatchPattern(string id, string lineColor, string background)
    {
        defs.Append($"<pattern id=\"{Escape(id)}\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">" +
                    $"<rect width=\"6\" height=\"6\" fill=\"{Escape(background)}\"/>" +
                    $"<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"{Escape(lineColor)}\" stroke-width=\"2\"/></pattern>\n");
        return this;
    }

    public override string ToString()
    {
        var document = new StringBuilder(body.Length + defs.Length + 512);
        document.Append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        document.Append($"<svg xmlns=\"{Namespace}\" width=\"{Number(Width)}\" height=\"{Number(Height)}\" ")
            .Append($"viewBox=\"0 0 {Number(Width)} {Number(Height)}\" font-family=\"sans-serif\" role=\"img\">\n");
        document.Append("<title>").Append(Escape(title)).Append("</title>\n");
        if (defs.Length > 0) document.Append("<defs>\n").Append(defs).Append("</defs>\n");
        document.Append(body);
        // A group left open is a bug in the figure code, but the document must still be well-formed.
        for (var i = 0; i < openGroups; i++) document.Append("</g>\n");
        document.Append("</svg>\n");
        return document.ToString();
    }

    private SvgCanvas Poly(string name, IEnumerable<(double X, double Y)> points, Paint paint, string? cssClass,
        string? tooltip)
    {
        var list = points.ToList();
        if (list.Count == 0 || list.Any(p => !Finite(p.X, p.Y))) return this;
        var data = string.Join(" ", list.Select(p => $"{Number(p.X)},{Number(p.Y)}"));
        return Element(name, $"points=\"{data}\"", paint, cssClass, tooltip);
    }

    private SvgCanvas Element(string name, string geometry, Paint paint, string? cssClass, string? tooltip)
    {
        body.Append('<').Append(name).Append(' ').Append(geometry);
        if (paint.Fill is not null) body.Append($" fill=\"{Escape(paint.Fill)}\"");
        if (paint.Stroke is not null)
        {
            body.Append($" stroke=\"{Escape(paint.Stroke)}\"");
            if (paint.StrokeWidth != 1) body.Append($" stroke-width=\"{Number(paint.StrokeWidth)}\"");
            if (paint.Dash is not null) body.Append($" stroke-dasharray=\"{Escape(paint.Dash)}\"");
        }
        if (paint.Opacity < 1 && double.IsFinite(paint.Opacity))
            body.Append($" opacity=\"{Number(Math.Max(0, paint.Opacity))}\"");
        if (cssClass is not null) body.Append($" class=\"{Escape(cssClass)}\"");
        if (tooltip is null)
        {
            body.Append("/>\n");
            return this;
        }
        body.Append("><title>").Append(Escape(tooltip)).Append("</title></").Append(name).Append(">\n");
        return this;
    }

    private static bool Finite(params ReadOnlySpan<double> values)
    {
        foreach (var v in values)
            if (!double.IsFinite(v)) return false;
        return true;
    }
}
