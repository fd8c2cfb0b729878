using System.Globalization;
using System.Xml.Linq;
using NativeEngine.Runner.Reports.Figures;

namespace NativeEngine.Tests;

/// <summary>Figures that compare models: lines against a swept setting, and clustered bars per group.</summary>
public class ComparisonFigureTests
{
    private static readonly XNamespace Svg = SvgCanvas.Namespace;

    private static XDocument Parse(string svg)
    {
        var document = XDocument.Parse(svg);
        Assert.That(document.Root!.Name, Is.EqualTo(Svg + "svg"));
        Assert.That(document.Root.Element(Svg + "title"), Is.Not.Null, "the figure names itself");
        return document;
    }

    private static List<XElement> OfClass(XDocument document, string cssClass) =>
        document.Descendants().Where(e => (string?)e.Attribute("class") == cssClass).ToList();

    private static double A(XElement e, string name) => double.Parse(e.Attribute(name)!.Value, CultureInfo.InvariantCulture);

    private static readonly double[] Densities = [0.001, 0.01, 0.03, 0.1, 1];

    private static LineSeries Series(string name, Func<double, double> f, string? color = null, bool dashed = false) =>
        new(name, Densities.Select(p => (p, f(p))).ToList(), color, dashed);

    [Test]
    public void LineChartDrawsOneLineAndOneMarkerPerPoint()
    {
        var series = new[]
        {
            Series("dense", p => 1 - p),
            Series("MoE (FLOP-matched)", p => 0.8 - p / 2, dashed: true),
            Series("MoE (parameter-matched)", p => 0.5 + p / 4, color: "#123456"),
        };
        var svg = ComparisonFigures.LineChart(series, "feature density p", "superposition", "superposition against density");
        var document = Parse(svg);
        var lines = OfClass(document, "series");
        Assert.That(lines, Has.Count.EqualTo(3));
        Assert.That(lines.All(l => l.Name == Svg + "polyline"));
        Assert.That(lines.Select(l => l.Attribute("points")!.Value.Split(' ').Length), Is.All.EqualTo(5));
        Assert.That(OfClass(document, "marker"), Has.Count.EqualTo(15));
        Assert.That(OfClass(document, "legend").Select(l => l.Value),
            Is.EqualTo(new[] { "dense", "MoE (FLOP-matched)", "MoE (parameter-matched)" }));
        Assert.That(lines[0].Attribute("stroke")!.Value, Is.EqualTo(Palette.Categorical(0)));
        Assert.That(lines[1].Attribute("stroke")!.Value, Is.EqualTo(Palette.Categorical(1)));
        Assert.That(lines[2].Attribute("stroke")!.Value, Is.EqualTo("#123456"), "a given colour wins");
        Assert.That(lines[1].Attribute("stroke-dasharray"), Is.Not.Null);
        Assert.That(lines[0].Attribute("stroke-dasharray"), Is.Null);
        Assert.That(OfClass(document, "tick").Select(t => t.Value), Is.SupersetOf(new[] { "0.001", "0.01", "0.1", "1" }),
            "decade ticks on the log axis");
        Assert.That(OfClass(document, "axis-title").Select(t => t.Value),
            Is.EquivalentTo(new[] { "feature density p", "superposition" }));
        Assert.That(OfClass(document, "no-data"), Is.Empty);

        // Larger x lies further right, by log10: 0.001 → 0.01 → 0.1 take equal steps.
        var x = OfClass(document, "marker").Take(5).Select(m => A(m, "cx")).ToList();
        Assert.That(x, Is.Ordered.Ascending);
        Assert.That(x[1] - x[0], Is.EqualTo(x[4] - x[3]).Within(0.01).And.EqualTo((x[4] - x[1]) / 2).Within(0.01));
        // Higher y lies further up: the dense line falls with p.
        var y = OfClass(document, "marker").Take(5).Select(m => A(m, "cy")).ToList();
        Assert.That(y, Is.Ordered.Ascending);
    }

    [Test]
    public void LineChartSkipsANaNPointAndBreaksTheLineThere()
    {
        var points = new List<(double, double)> { (1, 0.1), (10, 0.2), (100, double.NaN), (1000, 0.4), (10000, 0.5) };
        var document = Parse(ComparisonFigures.LineChart([new LineSeries("gap", points)], "1/(1−S)", "D", "gap"));
        Assert.That(OfClass(document, "marker"), Has.Count.EqualTo(4));
        var lines = OfClass(document, "series");
        Assert.That(lines, Has.Count.EqualTo(2), "the line breaks at the missing point");
        Assert.That(lines.Select(l => l.Attribute("points")!.Value.Split(' ').Length), Is.EqualTo(new[] { 2, 2 }));
    }

    [Test]
    public void LogAxisDropsNonPositiveXAndLinearAxisKeepsIt()
    {
        var points = new List<(double, double)> { (-1, 0.3), (0, 0.3), (0.01, 0.5), (0.1, 0.6), (1, 0.7) };
        var series = new[] { new LineSeries("s", points) };
        var log = Parse(ComparisonFigures.LineChart(series, "p", "y", "log"));
        Assert.That(OfClass(log, "marker"), Has.Count.EqualTo(3));
        Assert.That(OfClass(log, "series").Single().Attribute("points")!.Value.Split(' '), Has.Length.EqualTo(3));
        var plotLeft = A(log.Descendants(Svg + "line").First(l => (string?)l.Attribute("stroke") == Palette.Axis &&
            l.Attribute("x1")!.Value == l.Attribute("x2")!.Value && A(l, "y2") - A(l, "y1") > 100), "x1");
        Assert.That(OfClass(log, "marker").Select(m => A(m, "cx")), Is.All.GreaterThanOrEqualTo(plotLeft), "nothing left of the axis");
        Assert.That(OfClass(log, "marker").Min(m => A(m, "cx")), Is.EqualTo(plotLeft).Within(1e-6), "tight: the axis starts at the first point");

        var linear = Parse(ComparisonFigures.LineChart(series, "p", "y", "linear", logX: false));
        Assert.That(OfClass(linear, "marker"), Has.Count.EqualTo(5));
        Assert.That(OfClass(linear, "tick").Select(t => t.Value), Does.Contain("0").And.Contain("−1"));
    }

    [Test]
    public void LineChartHonoursAGivenYRange()
    {
        var series = new[] { new LineSeries("s", [(1, 0.2), (10, 0.4)]) };
        var document = Parse(ComparisonFigures.LineChart(series, "x", "y", "range", yMin: 0, yMax: 2));
        var ticks = OfClass(document, "tick").Where(t => (string?)t.Attribute("text-anchor") == "end").Select(t => t.Value).ToList();
        Assert.That(ticks.First(), Is.EqualTo("0"));
        Assert.That(ticks.Last(), Is.EqualTo("2"));
        // With 0…2 over the plot, 0.2 → 0.4 climbs a tenth of its height.
        var y = OfClass(document, "marker").Select(m => A(m, "cy")).ToList();
        Assert.That(y[0] - y[1], Is.EqualTo(30).Within(0.01));
    }

    [Test]
    public void GroupedBarsDrawOneBarPerGroupAndSeriesWithAReferenceLine()
    {
        var groups = Enumerable.Range(0, 8).Select(e => $"expert {e}").ToArray();
        var series = new[]
        {
            new BarSeries("p = 0.01", [0.30, 0.20, 0.25, 0.15, 0.35, 0.25, 0.20, 0.30]),
            new BarSeries("p = 0.1", [0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]),
        };
        var svg = ComparisonFigures.GroupedBars(groups, series, "usage", "expert usage", referenceLine: 0.25,
            referenceLabel: "uniform usage = k/E");
        var document = Parse(svg);
        var bars = OfClass(document, "bar");
        Assert.That(bars, Has.Count.EqualTo(16));
        Assert.That(bars.Select(b => b.Element(Svg + "title")!.Value), Does.Contain("expert 4, p = 0.01: 0.35"));
        Assert.That(bars.Select(b => b.Attribute("fill")!.Value).Distinct(),
            Is.EqualTo(new[] { Palette.Categorical(0), Palette.Categorical(1) }));
        Assert.That(OfClass(document, "legend").Select(l => l.Value),
            Is.EqualTo(new[] { "p = 0.01", "p = 0.1", "uniform usage = k/E" }));

        // The reference line lies level with the tops of the bars of value 0.25.
        var reference = OfClass(document, "reference").Single();
        Assert.That(reference.Attribute("stroke-dasharray"), Is.Not.Null);
        Assert.That(A(reference, "y1"), Is.EqualTo(A(reference, "y2")));
        Assert.That(A(reference, "y1"), Is.EqualTo(A(bars[1], "y")).Within(0.01));
        // Bars stand on a common baseline, and a 0.35 bar is 1.4 times a 0.25 one.
        var bottoms = bars.Select(b => A(b, "y") + A(b, "height")).ToList();
        Assert.That(bottoms.Max() - bottoms.Min(), Is.LessThan(0.01));
        Assert.That(A(bars[8], "height") / A(bars[1], "height"), Is.EqualTo(1.4).Within(1e-3));
        // Within a cluster the series follow each other left to right, and clusters follow the groups.
        Assert.That(bars.Select(b => A(b, "x")), Is.Ordered.Ascending);
        // Eight "expert k" labels would collide: the shared word becomes the axis title.
        Assert.That(OfClass(document, "axis-title").Select(t => t.Value), Does.Contain("expert"));
        Assert.That(OfClass(document, "tick").Where(t => (string?)t.Attribute("text-anchor") == "middle").Select(t => t.Value),
            Is.EqualTo(new[] { "0", "1", "2", "3", "4", "5", "6", "7" }));
    }

    [Test]
    public void GroupedBarsLeaveOutNaNAndOneSeriesNeedsNoLegend()
    {
        var groups = new[] { "a", "b", "c", "d" };
        var document = Parse(ComparisonFigures.GroupedBars(groups, [new BarSeries("Σ D_i", [1.5, double.NaN, 2, double.PositiveInfinity])],
            "Σ D_i", "per-expert dimensionality"));
        Assert.That(OfClass(document, "bar"), Has.Count.EqualTo(2));
        Assert.That(OfClass(document, "legend"), Is.Empty);
        Assert.That(OfClass(document, "reference"), Is.Empty);
        Assert.That(OfClass(document, "tick").Where(t => (string?)t.Attribute("text-anchor") == "middle").Select(t => t.Value),
            Is.EqualTo(groups), "short labels stay as they are");

        // A short Values list leaves the remaining groups without a bar rather than throwing.
        var shorter = Parse(ComparisonFigures.GroupedBars(groups, [new BarSeries("x", [1]), new BarSeries("y", [1, 2, 3, 4])], "v", "short"));
        Assert.That(OfClass(shorter, "bar"), Has.Count.EqualTo(5));
    }

    [Test]
    public void CrowdedGroupLabelsAreThinned()
    {
        var groups = Enumerable.Range(0, 64).Select(e => $"group {e}").ToArray();
        var document = Parse(ComparisonFigures.GroupedBars(groups, [new BarSeries("v", groups.Select((_, k) => (double)k).ToList())],
            "v", "many"));
        Assert.That(OfClass(document, "bar"), Has.Count.EqualTo(64), "a zero value is a bar of no height, still drawn");
        var x = OfClass(document, "tick").Where(t => (string?)t.Attribute("text-anchor") == "middle")
            .Select(t => A(t, "x")).ToList();
        Assert.That(x.Count, Is.InRange(4, 20));
        Assert.That(x.Zip(x.Skip(1), (a, b) => b - a), Is.All.GreaterThanOrEqualTo(2 * 6.2 + 4));
    }

    [Test]
    public void GroupedBarsClipToAGivenMaximum()
    {
        var document = Parse(ComparisonFigures.GroupedBars(["a", "b"], [new BarSeries("v", [0.5, 4])], "v", "clipped", yMax: 1));
        var ticks = OfClass(document, "tick").Where(t => (string?)t.Attribute("text-anchor") == "end").Select(t => t.Value).ToList();
        Assert.That(ticks.Last(), Is.EqualTo("1"));
        Assert.That(OfClass(document, "bar"), Has.Count.EqualTo(2));
        Assert.That(document.Descendants().Any(e => ((string?)e.Attribute("clip-path"))?.Contains("bar-plot") == true));
    }

    [Test]
    public void EmptyAndNonFiniteInputsNeverThrowNorWriteNaN()
    {
        var nan = new List<(double, double)> { (double.NaN, double.NaN), (1, double.NaN), (double.PositiveInfinity, 2), (0, 1) };
        var figures = new[]
        {
            ComparisonFigures.LineChart([new LineSeries("nan", nan)], "p", "y", "non-finite only"),
            ComparisonFigures.LineChart([], "p", "y", "no series"),
            ComparisonFigures.LineChart([new LineSeries("empty", [])], "p", "y", "empty series", logX: false),
            ComparisonFigures.LineChart([new LineSeries("flat", [(1, 3), (10, 3)])], "p", "y", "flat", yMin: double.NaN, yMax: double.PositiveInfinity),
            ComparisonFigures.GroupedBars(["a", "b"], [new BarSeries("nan", [double.NaN, double.NaN])], "v", "non-finite bars",
                yMax: double.NaN, referenceLine: double.NaN),
            ComparisonFigures.GroupedBars([], [], "v", "no groups", referenceLine: 0.25, referenceLabel: "uniform"),
            ComparisonFigures.GroupedBars(["a"], [], "v", "no series"),
            ComparisonFigures.GroupedBars(["a", "b"], [new BarSeries("zero", [0, 0])], "v", "zeros"),
        };
        foreach (var svg in figures)
        {
            Parse(svg);
            Assert.That(svg, Does.Not.Contain("NaN").And.Not.Contain("Infinity").And.Not.Contain("∞"));
        }
        foreach (var k in new[] { 0, 1, 2, 4, 5, 6 })
            Assert.That(OfClass(Parse(figures[k]), "no-data"), Has.Count.EqualTo(1), $"figure {k} says it has no data");
        Assert.That(OfClass(Parse(figures[0]), "marker"), Is.Empty);
        Assert.That(OfClass(Parse(figures[4]), "bar"), Is.Empty);
        Assert.That(OfClass(Parse(figures[3]), "marker"), Has.Count.EqualTo(2));
        Assert.That(OfClass(Parse(figures[7]), "no-data"), Is.Empty, "zeros are data");
    }

    [Test]
    public void ALinearAxisEndsWithTheDataAndASingleSeriesNeedsNoLegend()
    {
        // A training curve: 37 points up to 1.9 million tokens; the axis must not run on to 2 million.
        var points = Enumerable.Range(1, 37).Select(k => (k * 51200.0, 1.0 / k)).ToList();
        var document = Parse(ComparisonFigures.LineChart([new LineSeries("fvu", points)], "training tokens", "fvu", "curve", logX: false, yMin: 0));
        var frame = OfClass(document, "marker").Select(m => A(m, "cx")).ToList();
        var axis = document.Descendants(Svg + "line").Where(l => (string?)l.Attribute("stroke") == Palette.Axis && A(l, "y1") == A(l, "y2") &&
            A(l, "x2") - A(l, "x1") > 100).Single();
        Assert.That(frame.Min(), Is.EqualTo(A(axis, "x1")).Within(1e-6), "the first point is at the axis's start");
        Assert.That(frame.Max(), Is.EqualTo(A(axis, "x2")).Within(1e-6), "the last point is at its end");
        Assert.That(OfClass(document, "tick").Select(t => t.Value), Does.Not.Contain("2e6"));
        Assert.That(OfClass(document, "legend"), Is.Empty);
    }

    [Test]
    public void ALogAxisOverLessThanTwoDecadesIsLabelledInsideTheData()
    {
        var series = new[] { new LineSeries("a", [(6, 0.4), (12, 0.6), (24, 0.8)]), new LineSeries("b", [(6, 0.5), (24, 0.7)]) };
        var ticks = OfClass(Parse(ComparisonFigures.LineChart(series, "latents", "cosine", "sizes")), "tick")
            .Where(t => (string?)t.Attribute("text-anchor") == "middle").Select(t => t.Value).ToList();
        Assert.That(ticks, Is.EqualTo(new[] { "10", "20" }), "1-2-5 steps between 6 and 24, no decades beyond the data");
    }

    [Test]
    public void AHistogramSpansItsEdgesWithOneBarPerNonEmptyBin()
    {
        double[] edges = [-3, -2.5, -2, -1.5, -1, -0.5, 0];
        double[] counts = [1, 0, 4, 9, 3, 2];
        var document = Parse(ComparisonFigures.Histogram(edges, counts, "log10 density", "latents", "density"));
        var bars = OfClass(document, "bar");
        Assert.That(bars, Has.Count.EqualTo(5), "the empty bin draws nothing");
        Assert.That(bars.Select(b => b.Element(Svg + "title")!.Value).First(), Is.EqualTo("[−3, −2.5): 1"));
        var heights = bars.Select(b => A(b, "height")).ToList();
        Assert.That(heights[2] / heights[1], Is.EqualTo(9.0 / 4).Within(1e-6), "heights are counts");
        var left = bars.Min(b => A(b, "x"));
        var right = bars.Max(b => A(b, "x") + A(b, "width"));
        Assert.That(right - left, Is.EqualTo(480 - 62 - 20).Within(1.5), "the bins fill the plot from edge to edge");
        Assert.That(OfClass(document, "axis-title").Select(t => t.Value), Is.EqualTo(new[] { "log10 density", "latents" }));
        Assert.That(OfClass(Parse(ComparisonFigures.Histogram([0, 1], [0], "x", "y", "empty")), "no-data"), Has.Count.EqualTo(1));
    }
}
