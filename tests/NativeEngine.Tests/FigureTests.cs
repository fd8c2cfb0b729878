using System.Globalization;
using System.Xml.Linq;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Reports.Figures;

namespace NativeEngine.Tests;

/// <summary>The report's figures: well-formed SVG, the right number of marks, colours that mean what they say.</summary>
public class FigureTests
{
    private static readonly XNamespace Svg = SvgCanvas.Namespace;

    private static float[] Polygon(int k)
    {
        var w = new float[2 * k];
        for (var j = 0; j < k; j++)
        {
            w[2 * j] = (float)Math.Cos(2 * Math.PI * j / k);
            w[2 * j + 1] = (float)Math.Sin(2 * Math.PI * j / k);
        }
        return w;
    }

    private static float[] Random(int count, int seed, double zeroFraction = 0)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count)
            .Select(_ => rng.NextDouble() < zeroFraction ? 0f : (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    private static XDocument Parse(string svg)
    {
        var document = XDocument.Parse(svg);
        Assert.That(document.Root!.Name, Is.EqualTo(Svg + "svg"));
        Assert.That(document.Root.Element(Svg + "title"), Is.Not.Null, "the figure names itself");
        return document;
    }

    private static List<XElement> OfClass(XDocument document, string cssClass) =>
        document.Descendants().Where(e => (string?)e.Attribute("class") == cssClass).ToList();

    private static Rgb FillOf(XElement element) => Rgb.Parse((string)element.Attribute("fill")!);

    private static string TitleOf(XElement element) => element.Element(Svg + "title")!.Value;

    [Test]
    public void CanvasWritesAStandaloneDocumentWithEscapedText()
    {
        var canvas = new SvgCanvas(100, 50, "a < b & c");
        canvas.Rect(1.234567, 2, 3, 4, Paint.Filled("#ff0000"), "box", "tip \"quoted\"");
        canvas.Text(5, 6, "<script>alert(1)</script>");
        using (canvas.Group("g")) canvas.Circle(1, 2, 3, Paint.Filled("#000000"));
        var text = canvas.ToString();
        var document = Parse(text);
        Assert.That(document.Root!.Attribute("viewBox")!.Value, Is.EqualTo("0 0 100 50"));
        Assert.That(document.Root.Attribute("font-family")!.Value, Is.EqualTo("sans-serif"));
        Assert.That(document.Root.Element(Svg + "title")!.Value, Is.EqualTo("a < b & c"));
        Assert.That(text, Does.Not.Contain("<script>"));
        Assert.That(document.Descendants(Svg + "text").Single().Value, Is.EqualTo("<script>alert(1)</script>"));
        var box = OfClass(document, "box").Single();
        Assert.That(box.Attribute("x")!.Value, Is.EqualTo("1.2346"), "at most four decimals");
        Assert.That(TitleOf(box), Is.EqualTo("tip \"quoted\""));
        Assert.That(OfClass(document, "g").Single().Elements(Svg + "circle").Count(), Is.EqualTo(1));
    }

    [Test]
    public void CanvasLeavesOutShapesWithNonFiniteGeometry()
    {
        var canvas = new SvgCanvas(10, 10, "t", background: null);
        canvas.Rect(double.NaN, 0, 1, 1, Paint.Filled("#000000"));
        canvas.Line(0, 0, double.PositiveInfinity, 1, Paint.Stroked("#000000"));
        canvas.Polyline([(0, 0), (1, double.NaN)], Paint.Stroked("#000000"));
        canvas.Circle(1, 1, 1, Paint.Filled("#000000"), "kept");
        var document = Parse(canvas.ToString());
        Assert.That(document.Root!.Elements().Count(e => e.Name != Svg + "title"), Is.EqualTo(1));
        Assert.That(OfClass(document, "kept"), Has.Count.EqualTo(1));
        Assert.That(canvas.ToString(), Does.Not.Contain("NaN").And.Not.Contain("Infinity"));
    }

    [Test]
    public void SubscriptsShiftDownAndBackUp()
    {
        var canvas = new SvgCanvas(10, 10, "t");
        canvas.Text(0, 0, "‖W_i‖ and D_{ij}", subscripts: true);
        canvas.Text(0, 0, "relu_hidden");
        var texts = Parse(canvas.ToString()).Descendants(Svg + "text").ToList();
        Assert.That(texts[0].Value, Is.EqualTo("‖Wi‖ and Dij"));
        var shifts = texts[0].Elements(Svg + "tspan").Select(t => (string?)t.Attribute("dy")).Where(d => d is not null)
            .Sum(d => double.Parse(d!, CultureInfo.InvariantCulture));
        Assert.That(shifts, Is.EqualTo(0).Within(1e-9), "the text ends on its baseline");
        Assert.That(texts[1].Value, Is.EqualTo("relu_hidden"), "plain text keeps its underscores");
    }

    [Test]
    public void CompactNumbersReadAsOnAnAxis()
    {
        Assert.That(new[] { 0.01, 0.1, 1, 3.16, 1000, 0.0046, -0.5, 0, 1e-6, 2e6 }.Select(v => FigureFormat.Compact(v)),
            Is.EqualTo(new[] { "0.01", "0.1", "1", "3.2", "1000", "0.0046", "−0.5", "0", "1e-6", "2e6" }));
    }

    [Test]
    public void GramHeatmapOfThePentagonHasOneCellPerPairColouredBySign()
    {
        var document = Parse(ToyFigures.GramHeatmap(Polygon(5), 5, 2, "pentagon"));
        var cells = OfClass(document, "cell");
        Assert.That(cells, Has.Count.EqualTo(25));
        Assert.That(cells.All(c => c.Element(Svg + "title") is not null));
        // Row-major: cell (0, 0) is W_0·W_0 = 1, (0, 1) is cos 72° > 0, (0, 2) is cos 144° < 0.
        var diagonal = FillOf(cells[0]);
        var negative = FillOf(cells[2]);
        Assert.That(diagonal.R, Is.GreaterThan(diagonal.B + 100), "positive is red");
        Assert.That(negative.B, Is.GreaterThan(negative.R + 100), "negative is blue");
        Assert.That(TitleOf(cells[2]), Does.Contain("−0.809"));
        var zero = FillOf(OfClass(Parse(ToyFigures.GramHeatmap([1, 0, 0, 1], 2, 2, "orthogonal")), "cell")[1]);
        Assert.That(new[] { zero.R, zero.G, zero.B }, Is.All.GreaterThan(240), "zero is white");
        var scaleLabels = OfClass(document, "tick").Select(t => t.Value).ToList();
        Assert.That(scaleLabels, Does.Contain("−1").And.Contain("1"), "the colour bar states the scale");
    }

    [Test]
    public void LargeGramHeatmapIsOnePixelPerCellInOneImage()
    {
        // 60 features: above the tooltip limit the cells are one PNG, pixel (i, j) coloured as rect (i, j) would be.
        const int n = 60, m = 7;
        var w = Random(n * m, 11);
        var document = Parse(ToyFigures.GramHeatmap(w, n, m, "large"));
        Assert.That(OfClass(document, "cell"), Is.Empty);
        var image = OfClass(document, "cells").Single();
        Assert.That(image.Name, Is.EqualTo(Svg + "image"));
        var href = (string)image.Attribute("href")!;
        Assert.That(href, Does.StartWith("data:image/png;base64,"));
        var (width, height, rgb) = DecodePng(Convert.FromBase64String(href["data:image/png;base64,".Length..]));
        Assert.That((width, height), Is.EqualTo((n, n)));
        double Dot(int i, int j) => Enumerable.Range(0, m).Sum(k => (double)w[i * m + k] * w[j * m + k]);
        var largest = Enumerable.Range(0, n).SelectMany(i => Enumerable.Range(0, n).Select(j => Math.Abs(Dot(i, j)))).Max();
        var map = Palette.Diverging(Math.Max(1, largest));
        foreach (var (i, j) in new[] { (0, 0), (0, 1), (5, 17), (n - 1, 3), (n - 1, n - 1) })
        {
            var expected = map.RgbAt(Dot(i, j));
            var at = (i * n + j) * 3;
            Assert.That((rgb[at], rgb[at + 1], rgb[at + 2]), Is.EqualTo((expected.R, expected.G, expected.B)), $"cell ({i}, {j})");
        }
    }

    // Enough of PNG to read back what Formats.Png writes: IHDR's size, IDAT's zlib stream, filter type 0 rows.
    private static (int Width, int Height, byte[] Rgb) DecodePng(byte[] png)
    {
        Assert.That(png[..8], Is.EqualTo(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }));
        int width = 0, height = 0;
        var idat = new MemoryStream();
        for (var at = 8; at < png.Length;)
        {
            var length = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at));
            var type = System.Text.Encoding.ASCII.GetString(png, at + 4, 4);
            var data = png.AsSpan(at + 8, length);
            if (type == "IHDR")
            {
                width = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(data);
                height = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                Assert.That((data[8], data[9]), Is.EqualTo(((byte)8, (byte)2)), "8-bit RGB");
            }
            if (type == "IDAT") idat.Write(data);
            at += 12 + length;
        }
        idat.Position = 0;
        using var zlib = new System.IO.Compression.ZLibStream(idat, System.IO.Compression.CompressionMode.Decompress);
        var raw = new MemoryStream();
        zlib.CopyTo(raw);
        var bytes = raw.ToArray();
        Assert.That(bytes, Has.Length.EqualTo(height * (1 + width * 3)));
        var rgb = new byte[width * height * 3];
        for (var row = 0; row < height; row++)
        {
            Assert.That(bytes[row * (1 + width * 3)], Is.EqualTo(0), "filter: none");
            Array.Copy(bytes, row * (1 + width * 3) + 1, rgb, row * width * 3, width * 3);
        }
        return (width, height, rgb);
    }

    [Test]
    public void GramHeatmapScaleGrowsBeyondOneOnlyWhenEntriesDo()
    {
        // Entries up to 4: the colour bar must reach 4, and a 1 is then no longer the darkest red.
        var document = Parse(ToyFigures.GramHeatmap([2, 0, 0, 1], 2, 2, "scaled"));
        Assert.That(OfClass(document, "tick").Select(t => t.Value), Does.Contain("4"));
        var cells = OfClass(document, "cell");
        Assert.That(FillOf(cells[3]).G, Is.GreaterThan(FillOf(cells[0]).G + 50), "1 is paler than 4");
    }

    [Test]
    public void FeatureNormBarsAreColouredBySuperposition()
    {
        var norms = new[] { 1.0, 0.9, 0.8, 0.5, 0.2, 0.0, 1.2 };
        var superposition = new[] { 0.0, 1.0, 0.5, 3.0, 0.1, 0.0, 0.0 };
        var document = Parse(ToyFigures.FeatureNormBars(norms, superposition, "bars"));
        var bars = OfClass(document, "bar");
        Assert.That(bars, Has.Count.EqualTo(7));
        var dedicated = FillOf(bars[0]);
        var shared = FillOf(bars[1]);
        Assert.That(dedicated.R + dedicated.G + dedicated.B, Is.LessThan(60), "no superposition is black");
        Assert.That(shared.R, Is.GreaterThan(200), "superposition 1 is yellow");
        Assert.That(shared.G, Is.GreaterThan(180));
        Assert.That(shared.B, Is.LessThan(100));
        Assert.That(FillOf(bars[3]), Is.EqualTo(shared), "superposition is clamped at 1");
        // Feature 0 is at the top, and bar length follows the norm.
        double Y(XElement e) => double.Parse(e.Attribute("y")!.Value, CultureInfo.InvariantCulture);
        double W(XElement e) => double.Parse(e.Attribute("width")!.Value, CultureInfo.InvariantCulture);
        Assert.That(bars.Select(Y), Is.Ordered.Ascending);
        Assert.That(W(bars[6]), Is.GreaterThan(W(bars[0])));
        Assert.That(W(bars[0]) / W(bars[4]), Is.EqualTo(5).Within(1e-3));
        Assert.That(OfClass(document, "tick").Select(t => t.Value), Does.Contain("1"), "value axis reaches at least 1");
    }

    [Test]
    public void FeatureArrowsDrawThePentagonToScale()
    {
        var w = Polygon(5);
        var metrics = ToyMetrics.Compute(w, 5, 2);
        var document = Parse(ToyFigures.FeatureArrows(w, 5, metrics.FeatureNorm, "pentagon"));
        var arrows = OfClass(document, "arrow");
        Assert.That(arrows, Has.Count.EqualTo(5));
        Assert.That(arrows.All(a => a.Element(Svg + "line") is not null && a.Element(Svg + "polygon") is not null));
        Assert.That(OfClass(document, "arrow-label").Select(l => l.Value), Is.EqualTo(new[] { "0", "1", "2", "3", "4" }));
        // Equal aspect ratio: every unit-norm tip lies on the drawn unit circle.
        var circle = OfClass(document, "unit-circle").Single();
        double A(XElement e, string name) => double.Parse(e.Attribute(name)!.Value, CultureInfo.InvariantCulture);
        var (cx, cy, r) = (A(circle, "cx"), A(circle, "cy"), A(circle, "r"));
        foreach (var arrow in arrows)
        {
            var tip = arrow.Element(Svg + "polygon")!.Attribute("points")!.Value.Split(' ')[0].Split(',')
                .Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
            Assert.That(Math.Sqrt((tip[0] - cx) * (tip[0] - cx) + (tip[1] - cy) * (tip[1] - cy)), Is.EqualTo(r).Within(0.01));
        }
        Assert.That(arrows.Select(a => a.Element(Svg + "line")!.Attribute("stroke")!.Value).Distinct().Count(), Is.EqualTo(5));
    }

    [Test]
    public void FeatureArrowsListTheFeaturesTheyCannotDraw()
    {
        var w = new float[] { 1, 0, 0, 1, 0, 0, 1e-5f, 0 };
        var document = Parse(ToyFigures.FeatureArrows(w, 4, [1, 1, 0, 1e-5], "two dead"));
        Assert.That(OfClass(document, "arrow"), Has.Count.EqualTo(2));
        Assert.That(OfClass(document, "note").Select(n => n.Value), Has.Some.Contains(": 2, 3"));
        var wrongShape = Parse(ToyFigures.FeatureArrows(new float[9], 3, [], "m = 3"));
        Assert.That(OfClass(wrongShape, "no-data").Single().Value, Does.Contain("m = 2"));
    }

    [Test]
    public void DimensionalityScatterHasTheReferenceFractionsAndDecadeTicks()
    {
        var points = new List<DimensionalityPoint>
        {
            new(1, 1, 1, 0), new(10, 0.5, 1, 1), new(100, 0.4, 0.9, 2), new(1000, 0.05, 0.01, 3),
            new(double.NaN, 0.5, 1, 4), new(10, double.NaN, 1, 5), new(0, 0.5, 1, 6),
        };
        var dstar = new List<(double X, double Y)> { (1, 1), (10, 0.6), (100, double.PositiveInfinity), (1000, 0.3) };
        var svg = ToyFigures.DimensionalityScatter(points, dstar, "scatter");
        var document = Parse(svg);
        Assert.That(OfClass(document, "reference"), Has.Count.EqualTo(8));
        Assert.That(OfClass(document, "reference-label").Select(l => l.Value),
            Is.EqualTo(new[] { "1", "3/4", "2/3", "1/2", "2/5", "3/8", "1/3", "2/7" }));
        var labelY = OfClass(document, "reference-label")
            .Select(l => double.Parse(l.Attribute("y")!.Value, CultureInfo.InvariantCulture)).Order().ToList();
        Assert.That(labelY.Zip(labelY.Skip(1), (a, b) => b - a), Is.All.GreaterThanOrEqualTo(11), "labels do not overlap");
        var dots = OfClass(document, "point");
        Assert.That(dots, Has.Count.EqualTo(4), "NaN and non-positive X are skipped");
        Assert.That((string?)dots[3].Attribute("opacity"), Is.Not.Null, "an unrepresented feature fades");
        Assert.That((string?)dots[0].Attribute("opacity"), Is.Null);
        Assert.That(OfClass(document, "dstar"), Has.Count.EqualTo(2), "the D* line breaks at a non-finite value");
        Assert.That(OfClass(document, "tick").Select(t => t.Value), Is.SupersetOf(new[] { "1", "10", "100", "1000" }));
        Assert.That(OfClass(document, "axis-title").Select(t => t.Value), Does.Contain("1/(1−S) (log)"));
        Assert.That(svg, Does.Not.Contain("NaN").And.Not.Contain("Infinity"));
    }

    [Test]
    public void PhaseDiagramHasOneCellPerSettingAndALegend()
    {
        var columns = new[] { 0.01, 0.1, 1, 10 };
        var rows = new[] { 0.1, 1, 10 };
        var cls = new[,] { { 0, 1, 1, -1 }, { 0, 0, 1, 1 }, { 0, 0, 0, 1 } };
        var document = Parse(ToyFigures.PhaseDiagram(columns, rows, cls, ["dedicated", "superposition"],
            ["#4e79a7", "#f28e2b"], "density", "importance", "phase"));
        var cells = OfClass(document, "cell");
        Assert.That(cells, Has.Count.EqualTo(12));
        Assert.That(cells.Select(c => (string)c.Attribute("fill")!).Distinct(),
            Is.EquivalentTo(new[] { "#4e79a7", "#f28e2b", "url(#no-data-hatch)" }));
        Assert.That(OfClass(document, "legend").Select(l => l.Value), Is.EqualTo(new[] { "dedicated", "superposition", "no data" }));
        Assert.That(OfClass(document, "tick").Select(t => t.Value), Is.SupersetOf(new[] { "0.01", "0.1", "1", "10" }));
        // Row 0 is at the bottom: the cell of (row 0, column 3) lies below that of (row 2, column 3).
        double Y(XElement e) => double.Parse(e.Attribute("y")!.Value, CultureInfo.InvariantCulture);
        Assert.That(Y(cells[3]), Is.GreaterThan(Y(cells[11])));
        Assert.That(TitleOf(cells[3]), Is.EqualTo("density = 10, importance = 0.1: no data"));
    }

    [Test]
    public void NeuronStackStacksPositiveUpAndNegativeDown()
    {
        // n = 3, m = 2: neuron 0 gets +1, +0.5, −0.25; neuron 1 gets 0, −1, NaN.
        var w = new[] { 1f, 0f, 0.5f, -1f, -0.25f, float.NaN };
        var svg = ToyFigures.NeuronStack(w, 3, 2, "stack");
        var document = Parse(svg);
        var segments = OfClass(document, "segment");
        Assert.That(segments, Has.Count.EqualTo(4), "zero and NaN weights draw nothing");
        double A(XElement e, string name) => double.Parse(e.Attribute(name)!.Value, CultureInfo.InvariantCulture);
        var zero = A(OfClass(document, "zero-line").Single(), "y1");
        var (first, second, below) = (segments[0], segments[1], segments[2]);
        Assert.That(A(first, "y") + A(first, "height"), Is.EqualTo(zero).Within(0.01), "first positive sits on zero");
        Assert.That(A(second, "y") + A(second, "height"), Is.EqualTo(A(first, "y")).Within(0.01), "second stacks on it");
        Assert.That(A(below, "y"), Is.EqualTo(zero).Within(0.01), "negative hangs below zero");
        Assert.That(A(first, "height") / A(below, "height"), Is.EqualTo(4).Within(1e-3));
        Assert.That(OfClass(document, "legend").Select(l => l.Value), Is.EqualTo(new[] { "0", "1", "2" }));
        Assert.That(svg, Does.Not.Contain("NaN"));

        var stack = Parse(ToyFigures.NeuronStack(Random(50, 3), 10, 5, "n = 10, m = 5"));
        Assert.That(OfClass(stack, "segment"), Has.Count.EqualTo(50));
    }

    [Test]
    public void NonFiniteAndEmptyInputsNeverThrowNorWriteNaN()
    {
        var nan = new[] { float.NaN, 1, float.PositiveInfinity, 0, float.NegativeInfinity, float.NaN };
        var figures = new[]
        {
            ToyFigures.GramHeatmap(nan, 3, 2, "gram"),
            ToyFigures.GramHeatmap(new float[6], 3, 2, "zeros"),
            ToyFigures.GramHeatmap([], 0, 0, "empty"),
            ToyFigures.FeatureNormBars([double.NaN, double.PositiveInfinity, 1], [double.NaN, 0, double.NegativeInfinity], "bars"),
            ToyFigures.FeatureNormBars([], [], "no bars"),
            ToyFigures.FeatureArrows(nan, 3, [double.NaN, double.NaN, double.NaN], "arrows"),
            ToyFigures.FeatureArrows(new float[6], 3, [0, 0, 0], "zero arrows"),
            ToyFigures.DimensionalityScatter([new(double.NaN, double.NaN, double.NaN, 0)], [(double.NaN, double.NaN)], "scatter"),
            ToyFigures.PhaseDiagram([double.NaN, 1], [double.PositiveInfinity], new int[1, 2], ["a"], [], "x", "y", "phase"),
            ToyFigures.PhaseDiagram([], [], new int[0, 0], [], [], "x", "y", "empty phase"),
            ToyFigures.NeuronStack(nan, 3, 2, "stack"),
            ToyFigures.NeuronStack(new float[6], 3, 2, "zero stack"),
        };
        foreach (var svg in figures)
        {
            Parse(svg);
            Assert.That(svg, Does.Not.Contain("NaN").And.Not.Contain("Infinity"));
        }
        Assert.That(OfClass(Parse(figures[2]), "no-data"), Has.Count.EqualTo(1));
        Assert.That(OfClass(Parse(figures[4]), "no-data"), Has.Count.EqualTo(1));
    }

    [Test]
    public void LargeFiguresThinTheirTickLabels()
    {
        const int n = 200;
        var w = Random(n * 20, 5, zeroFraction: 0.5);
        var metrics = ToyMetrics.Compute(w, n, 20);
        var bars = Parse(ToyFigures.FeatureNormBars(metrics.FeatureNorm, metrics.Superposition, "n = 200"));
        Assert.That(OfClass(bars, "bar"), Has.Count.EqualTo(n));
        var gram = Parse(ToyFigures.GramHeatmap(w, n, 20, "n = 200"));
        Assert.That(OfClass(gram, "cells").Single().Name, Is.EqualTo(Svg + "image"), "n² cells as one image");
        foreach (var document in new[] { bars, gram })
        {
            // Vertical labels at least a line apart, horizontal ones at least their width apart.
            var ticks = OfClass(document, "tick").Where(t => (string?)t.Attribute("text-anchor") == "end")
                .Select(t => double.Parse(t.Attribute("y")!.Value, CultureInfo.InvariantCulture)).Order().ToList();
            Assert.That(ticks.Count, Is.InRange(5, 40));
            Assert.That(ticks.Zip(ticks.Skip(1), (a, b) => b - a), Is.All.GreaterThanOrEqualTo(12));
        }
        var horizontal = OfClass(gram, "tick").Where(t => (string?)t.Attribute("text-anchor") == "middle" && t.Value.Length >= 2)
            .Select(t => double.Parse(t.Attribute("x")!.Value, CultureInfo.InvariantCulture)).Order().ToList();
        Assert.That(horizontal.Zip(horizontal.Skip(1), (a, b) => b - a), Is.All.GreaterThanOrEqualTo(3 * 6.2 + 4));
    }

    [Test]
    public void ReportEscapesTextAndReferencesItsFigures()
    {
        var report = new HtmlReport("Run <1> & co")
            .AddHeading("Geometry")
            .AddParagraph("<script>alert('x')</script>")
            .AddTable(["p", "geometry"], [["0.05", "pentagon"], ["1", "<b>two</b>"]])
            .AddFigure("figures/gram_0.svg", "WᵀW of \"instance\" 0")
            .AddFigure("figures/bars 0.svg", "bars")
            .AddFigureGrid([("figures/arrows_0.svg", "arrows 0"), ("figures/arrows_1.svg", "arrows 1")])
            .AddPreformatted("{\"model\": \"<relu_output>\"}", "config.json");
        var html = report.ToHtml();
        Assert.That(html, Does.Not.Contain("<script>"));
        Assert.That(html, Does.Contain("&lt;script&gt;"));
        Assert.That(html, Does.Contain("<title>Run &lt;1&gt; &amp; co</title>"));
        Assert.That(html, Does.Contain("src=\"figures/gram_0.svg\""));
        Assert.That(html, Does.Contain("src=\"figures/bars%200.svg\""));
        Assert.That(html, Does.Contain("alt=\"WᵀW of &quot;instance&quot; 0\""));
        Assert.That(html, Does.Contain("src=\"figures/arrows_1.svg\""));
        Assert.That(html, Does.Contain("<details><summary>config.json</summary><pre>{&quot;model&quot;: &quot;&lt;relu_output&gt;&quot;}</pre></details>"));
        Assert.That(html, Does.Contain("<td class=\"num\">0.05</td>"));
        Assert.That(html, Does.Not.Contain("http").And.Not.Contain("<link").And.Not.Contain("<script"), "self-contained");
        // The two single figures share one grid; the explicit grid is a second one.
        Assert.That(html.Split("<div class=\"figures\"").Length - 1, Is.EqualTo(2));

        var path = Path.Combine(TestSupport.TempDirectory("report"), "sub", "report.html");
        report.Save(path);
        Assert.That(File.ReadAllText(path), Is.EqualTo(html));
        Assert.That(File.Exists(path + ".tmp"), Is.False, "the temporary file is renamed away");
    }
}
