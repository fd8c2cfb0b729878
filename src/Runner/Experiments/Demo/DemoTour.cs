using System.Text.Json;
using System.Reflection;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Reports.Figures;

namespace NativeEngine.Runner.Experiments;

/// <summary>One finished part of the tour, as it is shown.</summary>
public abstract record DemoPart(int Number, string Title);

public sealed record DemoToyPart(int Number, string Title, string Lesson, ToyRunResult Run) : DemoPart(Number, Title);

/// <param name="Comparison">Null when interrupted.</param>
public sealed record DemoMoePart(int Number, string Title, MoeComparison? Comparison) : DemoPart(Number, Title);

/// <param name="Models">Null when interrupted.</param>
public sealed record DemoHybridPart(int Number, string Title, string Lesson, HybridConfig Config,
    IReadOnlyList<HybridModel>? Models) : DemoPart(Number, Title);

/// <summary>The tour's configs: the toy experiments in order (<see cref="DemoTour.Experiments"/>), the MoE comparison and
/// the hybrid run.</summary>
public sealed record DemoConfigs(IReadOnlyList<ToyConfig> Toys, MoeConfig Moe, HybridConfig Hybrid)
{
    /// <summary>The configs embedded in the executable (configs/demo/).</summary>
    public static DemoConfigs Embedded() =>
        new(DemoTour.Experiments.Select(e => DemoTour.LoadDemoConfig(e.Name)).ToArray(), DemoTour.LoadDemoMoeConfig(),
            DemoTour.LoadDemoHybridConfig());
}

/// <summary>
/// The demo: a reduced tour of all three ways out of superposition, from the configs embedded in the executable
/// (configs/demo/): the paper's toy models, a mixture of experts against dense models, and the hybrid approach. Each
/// part gets its own run folder; report.html gathers their headline figures and tables.
/// </summary>
public static class DemoTour
{
    /// <summary>The experiments, in order: embedded config (configs/demo/NAME.json), what to look for.</summary>
    public static readonly (string Name, string Lesson)[] Experiments =
    [
        ("intro", "Dense features (p = 1): the model keeps the 2 most important, orthogonal, and drops the rest. As " +
                  "features get sparser it packs more into the plane, ending in a pentagon (every D_i = 2/5)."),
        ("relu_n20_m5", "With sparse features the ReLU model represents more features than it has dimensions."),
        ("privileged_n10_m5", "A ReLU on the hidden layer: dense features get their own neurons; sparse ones share them " +
                              "(polysemantic neurons)."),
        ("l1_n5_m2", "An L1 penalty on the hidden activations removes superposition: pentagon, then antipodal pairs, " +
                     "then orthogonal features."),
    ];

    // Figure files are NAME.svg for the run, instanceK_KIND.svg per instance (see ToyReport).
    private static int InstanceOf(string figure) =>
        figure.StartsWith("instance", StringComparison.Ordinal) && int.TryParse(figure[8..figure.IndexOf('_')], out var k) ? k : -1;

    private static string Caption(string figure)
    {
        var k = InstanceOf(figure);
        if (k < 0) return figure == "phase" ? "phase diagram" : "feature dimensionality against 1/(1−S)";
        var kind = figure[(figure.IndexOf('_') + 1)..] switch
        {
            "arrows" => "features in the plane",
            "neurons" => "neuron weights",
            "norms" => "feature norms",
            _ => "WᵀW",
        };
        return $"{kind}, instance {k}";
    }

    /// <summary>The last experiment: a mixture of experts against dense models (configs/demo/moe_compare.json).</summary>
    public const string MoeCompareName = "moe_compare";

    public static ToyConfig LoadDemoConfig(string name) => ToyConfigLoader.Parse(Embedded(name), $"configs/demo/{name}.json");

    /// <summary>The closing experiment: approach 3, decoding models trained with and without superposition.</summary>
    public const string HybridExperimentName = "hybrid";

    public static HybridConfig LoadDemoHybridConfig() =>
        HybridConfigLoader.Parse(Embedded(HybridExperimentName), $"configs/demo/{HybridExperimentName}.json");

    public static MoeConfig LoadDemoMoeConfig() =>
        MoeConfigLoader.Parse(Embedded(MoeCompareName), $"configs/demo/{MoeCompareName}.json");

    private static string Embedded(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream($"demo/{name}.json")
                           ?? throw new InvalidOperationException($"demo/{name}.json is not embedded in the runner");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>Runs every part in order into <paramref name="outDir"/>; <paramref name="starting"/> is called before
    /// a part with its number and title, <paramref name="finished"/> after it. Returns false when cancelled (the
    /// parts done, and report.html up to them, are written).</summary>
    /// <param name="tour">The configs; by default the embedded ones.</param>
    public static bool Run(EngineContext context, string outDir, IRunProgress progress, CancellationToken cancel,
        Action<int, string> starting, Action<DemoPart> finished, DemoConfigs? tour = null, bool force = false)
    {
        tour ??= DemoConfigs.Embedded();
        // The tour's identity is its configs; every experiment's folder below outDir belongs to it.
        RunFolder.Claim(outDir, Kind, "[" + string.Join(",", tour.Toys.Select(ToyConfigWriter.ToJson).Append(MoeConfigWriter.ToJson(tour.Moe))
            .Append(JsonSerializer.Serialize(tour.Hybrid, HybridExperiment.ConfigJson))) + "]", force);
        return RunFolder.Track(outDir, () => Tour(context, tour, outDir, progress, cancel, starting, finished) ? "completed" : null)
               is not null;
    }

    public const string Kind = "demo";

    private static bool Tour(EngineContext context, DemoConfigs tour, string outDir, IRunProgress progress,
        CancellationToken cancel, Action<int, string> starting, Action<DemoPart> finished)
    {
        var configs = tour.Toys;
        var moe = tour.Moe;
        var index = new HtmlReport("Toy Models of Superposition: the demo");
        index.AddParagraph("Each experiment below has its own folder with report.html, results.json, config.json, " +
                           "weights.safetensors and figures/. The full-size configs of every figure are in configs/paper/.");
        var indexPath = Path.Combine(outDir, "report.html");
        for (var e = 0; e < configs.Count; e++)
        {
            var (name, lesson) = Experiments[e];
            var title = configs[e].Title ?? name;
            starting(e + 1, title);
            var run = ToyExperiment.Run(context, configs[e], Path.Combine(outDir, name), progress, cancel, force: true);
            finished(new DemoToyPart(e + 1, title, lesson, run));
            index.AddHeading($"{e + 1}. {title}");
            index.AddParagraph($"{lesson} Full report: {name}/report.html ({run.Seconds:F1} s of training).");
            var figures = Directory.GetFiles(Path.Combine(outDir, name, "figures"), "*.svg")
                .Select(f => Path.GetFileNameWithoutExtension(f)!)
                .OrderBy(InstanceOf).ToArray();
            var headline = figures.Where(f => f is "dimensionality" or "phase")
                .Concat(figures.Where(f => f.EndsWith("_arrows") || f.EndsWith("_neurons")))
                .Concat(figures.Where(f => f.EndsWith("_norms")))
                .Take(4)
                .Select(f => ($"{name}/figures/{f}.svg", $"{name}: {Caption(f)}"));
            index.AddFigureGrid(headline);
            if (!run.Completed)
            {
                index.Save(indexPath);
                return false;
            }
        }

        var moeTitle = moe.Run.Title ?? MoeCompareName;
        starting(configs.Count + 1, moeTitle);
        var comparison = MoeComparisonExperiment.Run(context, moe, Path.Combine(outDir, MoeCompareName), progress, cancel, force: true);
        finished(new DemoMoePart(configs.Count + 1, moeTitle, comparison));
        index.AddHeading($"{configs.Count + 1}. {moeTitle}");
        index.AddParagraph("The paper suggests that mixtures of experts, which activate only some neurons per token, " +
                           "leave less room for superposition. Verdict of this reduced run (full report: " +
                           $"{MoeCompareName}/report.html; the full-size comparison is configs/moe/compare_n20.json):");
        foreach (var line in comparison?.Verdict() ?? []) index.AddParagraph(line + ".");
        index.AddFigureGrid(new[] { "compare_features_per_dimension", "compare_superposed_fraction", "usage" }
            .Where(f => File.Exists(Path.Combine(outDir, MoeCompareName, "figures", f + ".svg")))
            .Select(f => ($"{MoeCompareName}/figures/{f}.svg", $"{MoeCompareName}: {f.Replace('_', ' ')}")));
        if (comparison is null)
        {
            index.Save(indexPath);
            return false;
        }

        var hybrid = tour.Hybrid;
        var hybridTitle = hybrid.Title ?? HybridExperimentName;
        starting(configs.Count + 2, hybridTitle);
        var decoded = HybridExperiment.Run(context, hybrid, Path.Combine(outDir, HybridExperimentName), progress, cancel, force: true);
        finished(new DemoHybridPart(configs.Count + 2, hybridTitle, HybridLesson, hybrid, decoded));
        if (decoded is null)
        {
            index.Save(indexPath);
            return false;
        }
        index.AddHeading($"{configs.Count + 2}. {hybridTitle}");
        index.AddParagraph($"{HybridLesson} Full report: {HybridExperimentName}/report.html; the full-size run is configs/hybrid/n20_m6.json.");
        var (headers, rows) = HybridExperiment.Table(hybrid, decoded);
        index.AddTable(headers, rows);
        index.AddFigureGrid(Directory.GetFiles(Path.Combine(outDir, HybridExperimentName, "figures"), "*.svg").Order()
            .Select(f => ($"{HybridExperimentName}/figures/{Path.GetFileName(f)}", $"{HybridExperimentName}: {Path.GetFileNameWithoutExtension(f).Replace('_', ' ')}")));
        index.Save(indexPath);
        return true;
    }

    public const string HybridLesson =
        "Approach 3: a dictionary must have a latent per represented feature. The ordinary model packs the most features " +
        "into its 6 dimensions, so small dictionaries recover it worst; the L1 and MoE models represent fewer features, " +
        "pay more loss, and are recovered by smaller dictionaries.";
}
