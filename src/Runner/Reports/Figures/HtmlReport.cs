using System.Globalization;
using System.Net;
using System.Text;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Reports.Figures;

/// <summary>
/// One self-contained HTML page: inline CSS, no scripts, nothing fetched from elsewhere, so a run folder can be
/// copied or mailed and still opens. Figures are SVG files beside the page, referenced by relative path; each
/// links to its file, because hover tooltips inside an SVG only work when it is opened by itself.
/// All text passed in is HTML-escaped.
/// </summary>
public sealed class HtmlReport(string title)
{
    /// <summary>A grid column never narrower than a figure's drawn width plus its frame (padding 10, border 1 each
    /// side), so a figure is never shown smaller than drawn and its smallest text (Chart.TickFont) stays legible.</summary>
    public const int FigureColumnWidth = (int)Chart.Width + 22;

    private readonly List<object> blocks = [];

    private sealed record Html(string Fragment);

    /// <param name="Open">Made by <see cref="AddFigure"/>: the next AddFigure joins it.</param>
    private sealed record FigureGrid(List<(string Path, string Caption)> Figures, int MinWidth, bool Open = false);

    public string Title { get; } = title;

    public HtmlReport AddHeading(string text, int level = 2)
    {
        var h = Math.Clamp(level, 2, 4);
        blocks.Add(new Html($"<h{h}>{Escape(text)}</h{h}>"));
        return this;
    }

    public HtmlReport AddParagraph(string text)
    {
        blocks.Add(new Html($"<p>{Escape(text)}</p>"));
        return this;
    }

    /// <summary>A table; cells that read as numbers are right-aligned so their digits line up.</summary>
    public HtmlReport AddTable(string[] headers, IEnumerable<string[]> rows, string? caption = null)
    {
        var html = new StringBuilder("<div class=\"table\"><table>");
        if (caption is not null) html.Append("<caption>").Append(Escape(caption)).Append("</caption>");
        html.Append("<thead><tr>");
        foreach (var header in headers) html.Append("<th>").Append(Escape(header)).Append("</th>");
        html.Append("</tr></thead><tbody>");
        foreach (var row in rows)
        {
            html.Append("<tr>");
            foreach (var cell in row)
                html.Append(IsNumber(cell) ? "<td class=\"num\">" : "<td>").Append(Escape(cell)).Append("</td>");
            html.Append("</tr>");
        }
        html.Append("</tbody></table></div>");
        blocks.Add(new Html(html.ToString()));
        return this;
    }

    /// <summary>One figure; consecutive figures flow together in a grid as wide as the page allows.</summary>
    public HtmlReport AddFigure(string relativeSvgPath, string caption)
    {
        if (blocks.Count > 0 && blocks[^1] is FigureGrid { Open: true } grid)
            grid.Figures.Add((relativeSvgPath, caption));
        else
            blocks.Add(new FigureGrid([(relativeSvgPath, caption)], FigureColumnWidth, Open: true));
        return this;
    }

    /// <summary>Figures in a grid of their own, columns at least <paramref name="minWidth"/> wide and never narrower
    /// than <see cref="FigureColumnWidth"/>; each links to its file.</summary>
    public HtmlReport AddFigureGrid(IEnumerable<(string RelativeSvgPath, string Caption)> figures, int minWidth = FigureColumnWidth)
    {
        blocks.Add(new FigureGrid(figures.ToList(), Math.Clamp(minWidth, FigureColumnWidth, 1200)));
        return this;
    }

    /// <summary>Verbatim text such as a config file, folded away under the summary when one is given.</summary>
    public HtmlReport AddPreformatted(string text, string? summary = null)
    {
        var pre = $"<pre>{Escape(text)}</pre>";
        blocks.Add(new Html(summary is null ? pre : $"<details><summary>{Escape(summary)}</summary>{pre}</details>"));
        return this;
    }

    public string ToHtml()
    {
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
            .Append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
            .Append("<title>").Append(Escape(Title)).Append("</title>\n")
            .Append("<style>\n").Append(Css).Append("</style>\n</head>\n<body>\n<main>\n")
            .Append("<h1>").Append(Escape(Title)).Append("</h1>\n");
        foreach (var block in blocks)
        {
            switch (block)
            {
                case Html fragment:
                    html.Append(fragment.Fragment).Append('\n');
                    break;
                case FigureGrid grid:
                    AppendGrid(html, grid);
                    break;
            }
        }
        html.Append("</main>\n</body>\n</html>\n");
        return html.ToString();
    }

    /// <summary>Writes the page under a temporary name and renames it, so a crash never leaves half a page.</summary>
    public void Save(string path)
    {
        var directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (directory is not null) Directory.CreateDirectory(directory);
        AtomicFile.WriteText(path, ToHtml(), durable: false);
    }

    private static void AppendGrid(StringBuilder html, FigureGrid grid)
    {
        html.Append(grid.MinWidth == FigureColumnWidth
            ? "<div class=\"figures\">\n"
            : $"<div class=\"figures\" style=\"grid-template-columns: repeat(auto-fill, minmax({grid.MinWidth.ToString(CultureInfo.InvariantCulture)}px, 1fr))\">\n");
        foreach (var (path, caption) in grid.Figures)
        {
            var src = Escape(UrlPath(path));
            html.Append($"<figure><a href=\"{src}\"><img src=\"{src}\" alt=\"{Escape(caption)}\" loading=\"lazy\"></a>")
                .Append($"<figcaption>{Escape(caption)}</figcaption></figure>\n");
        }
        html.Append("</div>\n");
    }

    /// <summary>A relative file path as a URL: forward slashes, each segment percent-encoded (a '#' or '?'
    /// in a file name would otherwise cut the link short).</summary>
    private static string UrlPath(string path) =>
        string.Join('/', path.Replace('\\', '/').Split('/').Select(Uri.EscapeDataString));

    private static string Escape(string text) => WebUtility.HtmlEncode(text);

    private static bool IsNumber(string cell) =>
        double.TryParse(cell.Replace('−', '-'), NumberStyles.Float, CultureInfo.InvariantCulture, out _);

    private const string Css = """
        :root { color-scheme: light; }
        body { margin: 0; background: #fafafa; color: #222; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
        main { max-width: 1280px; margin: 0 auto; padding: 24px 28px 48px; }
        h1 { font-size: 1.6em; margin: 0 0 0.6em; }
        h2 { font-size: 1.25em; margin: 1.6em 0 0.5em; padding-bottom: 0.2em; border-bottom: 1px solid #ddd; }
        h3, h4 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
        p { max-width: 80ch; }
        .figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(502px, 1fr)); gap: 18px; align-items: start; margin: 12px 0 20px; }
        figure { margin: 0; padding: 10px; background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; }
        figure img { display: block; width: 100%; height: auto; }
        figcaption { margin-top: 6px; font-size: 0.88em; color: #555; }
        .table { overflow-x: auto; margin: 12px 0 20px; }
        table { border-collapse: collapse; background: #fff; font-size: 0.9em; }
        caption { text-align: left; color: #555; padding-bottom: 4px; }
        th, td { padding: 4px 10px; border-bottom: 1px solid #e6e6e6; text-align: left; white-space: nowrap; }
        th { background: #f2f2f2; font-weight: 600; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        details { margin: 12px 0; }
        summary { cursor: pointer; color: #444; }
        pre { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: 10px 12px; overflow-x: auto; font-size: 0.85em; }

        """;
}
