using System.Globalization;
using System.Text.Json;
using System.Xml.Linq;
using NativeEngine.Interop;
using NativeEngine.Runner.Experiments;

namespace NativeEngine.Tests;

/// <summary>
/// Every kind of report.html opened in a real headless browser (Debian's chromium, <see cref="HeadlessBrowser"/>) at a
/// desktop viewport: it renders without exceptions, console errors or failed loads; every figure loads and has a
/// size; figure text is at least 11 px as shown (the SVG's smallest font size times the scale it is drawn at) and so
/// is the page's own text. Set NE_REPORT_SCREENSHOTS to a folder to keep a screenshot of each (docs/screenshots/
/// holds the committed ones).
/// </summary>
[NonParallelizable]
public class ReportRenderingTests
{
    private const int ViewportWidth = 1280, ViewportHeight = 900;
    private const double MinimumFontPx = 11;

    private static string? unavailable;
    private static HeadlessBrowser? browser;
    private static string root = "";

    [OneTimeSetUp]
    public static void MakeEveryKindOfReport()
    {
        unavailable = HeadlessBrowser.WhyUnavailable();
        if (unavailable is not null) return;
        root = TestSupport.TempDirectory("reports");
        using var context = new EngineContext(Backend.Cpu);

        // The tour, shortened: four toy reports, the MoE comparison (moe --compare), the hybrid report and the index.
        var tour = DemoConfigs.Embedded();
        tour = new DemoConfigs(tour.Toys.Select(t => t with { Steps = 60, BatchSize = 256 }).ToArray(),
            tour.Moe with { Run = tour.Moe.Run with { Steps = 60, BatchSize = 256 } },
            tour.Hybrid with { Steps = 60, HarvestTokens = 4096, SaeTokens = 8192, SaeBatchSize = 512 });
        Assert.That(DemoTour.Run(context, Path.Combine(root, "demo"), RunProgress.Silent, CancellationToken.None, (_, _) => { }, _ => { }, tour));

        File.WriteAllText(Path.Combine(root, "moe.json"), """
            { "n_experts": 4, "top_k": 2, "expert_hidden": 3, "n_features": 8, "importance": 0.9,
              "sweep": { "feature_probability": [1.0, 0.1], "repeats": 2 }, "batch_size": 128, "steps": 40 }
            """);
        Assert.That(TestSupport.RunCli("moe", "--config", Path.Combine(root, "moe.json"), "--out", Path.Combine(root, "moe"), "--backend", "cpu").Code,
            Is.EqualTo(0));
        File.WriteAllText(Path.Combine(root, "factorize.json"), """
            { "data": { "synthetic": { "d": 16, "n_features": 24, "seed": 3 } },
              "sae": { "architecture": "topk", "d_sae": 48, "k": 3, "dead_window": 20000 },
              "train": { "tokens": 102400, "batch_size": 512, "lr": 0.004 } }
            """);
        Assert.That(TestSupport.RunCli("factorize", "--config", Path.Combine(root, "factorize.json"), "--out", Path.Combine(root, "factorize"),
            "--backend", "cpu").Code, Is.EqualTo(0));
        browser = HeadlessBrowser.Launch();
    }

    [OneTimeTearDown]
    public static void CloseTheBrowser() => browser?.Dispose();

    // Every image's load state and shown size, with lazy images made eager and awaited; and the smallest font of
    // the page's own text.
    private const string Measure = """
        (async () => {
          const images = [...document.images];
          for (const img of images) img.loading = 'eager';
          await Promise.all(images.map(img => img.complete ? img.decode().catch(() => null)
            : new Promise(done => { img.onload = img.onerror = done; })));
          let smallest = 1e9;
          for (const element of document.body.querySelectorAll('*')) {
            const text = [...element.childNodes].some(n => n.nodeType === 3 && n.textContent.trim().length > 0);
            if (text && element.getClientRects().length > 0) smallest = Math.min(smallest, parseFloat(getComputedStyle(element).fontSize));
          }
          return { smallest, images: images.map(img => { const r = img.getBoundingClientRect();
            return { src: img.getAttribute('src'), natural: img.naturalWidth, width: r.width, height: r.height }; }) };
        })()
        """;

    [TestCase("toy", "demo/intro/report.html", 4)]
    [TestCase("toy_privileged", "demo/privileged_n10_m5/report.html", 4)]
    [TestCase("moe", "moe/report.html", 2)]
    [TestCase("moe_compare", "demo/moe_compare/report.html", 3)]
    [TestCase("factorize", "factorize/report.html", 6)]
    [TestCase("hybrid", "demo/hybrid/report.html", 3)]
    [TestCase("demo_index", "demo/report.html", 10)]
    public void TheReportRendersWithLegibleFigures(string kind, string report, int atLeastFigures)
    {
        if (unavailable is not null) Assert.Ignore($"ignored: no headless browser ({unavailable})");
        var path = Path.Combine(root, report);
        using var page = browser!.Open(path, ViewportWidth, ViewportHeight);
        var measured = page.Evaluate(Measure);
        Assert.That(page.Errors(), Is.Empty, $"{report}: errors while rendering");

        var images = measured.GetProperty("images").EnumerateArray().ToList();
        Assert.That(images, Has.Count.GreaterThanOrEqualTo(atLeastFigures), $"{report}: figures");
        var folder = Path.GetDirectoryName(path)!;
        foreach (var image in images)
        {
            var src = Uri.UnescapeDataString(image.GetProperty("src").GetString()!);
            Assert.That(image.GetProperty("natural").GetDouble(), Is.GreaterThan(0), $"{src} did not load or decode");
            Assert.That(image.GetProperty("width").GetDouble(), Is.GreaterThan(0), $"{src}: shown width");
            Assert.That(image.GetProperty("height").GetDouble(), Is.GreaterThan(0), $"{src}: shown height");
            var scale = image.GetProperty("width").GetDouble() / image.GetProperty("natural").GetDouble();
            var smallest = SmallestFont(Path.Combine(folder, src));
            Assert.That(smallest * scale, Is.GreaterThanOrEqualTo(MinimumFontPx - 1e-6),
                $"{src}: smallest text {smallest:G4} px drawn at {scale:G4}x");
        }
        Assert.That(measured.GetProperty("smallest").GetDouble(), Is.GreaterThanOrEqualTo(MinimumFontPx), $"{report}: page text");

        var png = page.Screenshot(ViewportWidth, 1400, 0.6);
        Assert.That(png[..4], Is.EqualTo(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }));
        if (Environment.GetEnvironmentVariable("NE_REPORT_SCREENSHOTS") is { Length: > 0 } keep)
        {
            Directory.CreateDirectory(keep);
            File.WriteAllBytes(Path.Combine(keep, kind + ".png"), png);
        }
    }

    /// <summary>The smallest font size in an SVG, in its own units: every text's font-size, and a tspan's percentage
    /// of its text's.</summary>
    private static double SmallestFont(string svgPath)
    {
        var document = XDocument.Load(svgPath);
        XNamespace svg = "http://www.w3.org/2000/svg";
        var smallest = double.PositiveInfinity;
        foreach (var text in document.Descendants(svg + "text"))
        {
            var size = double.Parse((string?)text.Attribute("font-size") ?? "16", CultureInfo.InvariantCulture);
            smallest = Math.Min(smallest, size);
            foreach (var span in text.Descendants(svg + "tspan"))
                if ((string?)span.Attribute("font-size") is { } relative && relative.EndsWith('%'))
                    smallest = Math.Min(smallest, size * double.Parse(relative[..^1], CultureInfo.InvariantCulture) / 100);
        }
        return smallest;
    }
}
