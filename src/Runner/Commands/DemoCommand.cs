using System.Reflection;
using System.Text.Json;
using CommandLine;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;
using NativeEngine.Runner.Reports;
using NativeEngine.Runner.Reports.Figures;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("demo", HelpText = "A reduced tour of all three ways out of superposition: the paper's toy models (the intro figure, 20 features in 5 dimensions, a privileged basis, an L1 penalty), a mixture of experts against dense models, and decoding models with dictionaries (hybrid).")]
public sealed class DemoOptions : BackendOptions
{
    [Option("out", Default = "runs/demo", HelpText = "Folder: one run folder per experiment and report.html gathering them.")]
    public string Out { get; set; } = "runs/demo";
}

public static class DemoCommand
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
    public const string MoeExperiment = "moe_compare";

    public static ToyConfig LoadDemoConfig(string name) => ToyConfigLoader.Parse(Embedded(name), $"configs/demo/{name}.json");

    /// <summary>The closing experiment: approach 3, decoding models trained with and without superposition.</summary>
    public const string HybridExperiment = "hybrid";

    public static HybridConfig LoadDemoHybridConfig() =>
        HybridConfigLoader.Parse(Embedded(HybridExperiment), $"configs/demo/{HybridExperiment}.json");

    public static MoeConfig LoadDemoMoeConfig() =>
        MoeConfigLoader.Parse(Embedded(MoeExperiment), $"configs/demo/{MoeExperiment}.json");

    private static string Embedded(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream($"demo/{name}.json")
                           ?? throw new InvalidOperationException($"demo/{name}.json is not embedded in the runner");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    public static int Run(DemoOptions options, IAnsiConsole console)
    {
        var backend = options.ParseBackend();
        var configs = Experiments.Select(e => LoadDemoConfig(e.Name)).ToArray();
        var moe = LoadDemoMoeConfig();
        ToyRunFolder.Prepare(options.Out);
        console.MarkupLine("[bold]Toy Models of Superposition[/], a reduced tour: " +
                           $"{configs.Length + 1} experiments, each a folder under {Markup.Escape(options.Out)}.");
        var index = new HtmlReport("Toy Models of Superposition: the demo");
        index.AddParagraph("Each experiment below has its own folder with report.html, results.json, config.json, " +
                           "weights.safetensors and figures/. The full-size configs of every figure are in configs/paper/.");
        for (var e = 0; e < configs.Length; e++)
        {
            var (name, lesson) = Experiments[e];
            console.WriteLine();
            console.MarkupLine($"[bold]{e + 1}. {Markup.Escape(configs[e].Title ?? name)}[/]");
            var run = ToyCommand.TrainAndSave(configs[e], backend, Path.Combine(options.Out, name), console);
            ToySummary.Print(run, console);
            console.MarkupLine(Markup.Escape(lesson));
            index.AddHeading($"{e + 1}. {configs[e].Title ?? name}");
            index.AddParagraph($"{lesson} Full report: {name}/report.html ({run.Seconds:F1} s of training).");
            var figures = Directory.GetFiles(Path.Combine(options.Out, name, "figures"), "*.svg")
                .Select(f => Path.GetFileNameWithoutExtension(f)!)
                .OrderBy(InstanceOf).ToArray();
            var headline = figures.Where(f => f is "dimensionality" or "phase")
                .Concat(figures.Where(f => f.EndsWith("_arrows") || f.EndsWith("_neurons")))
                .Concat(figures.Where(f => f.EndsWith("_norms")))
                .Take(4)
                .Select(f => ($"{name}/figures/{f}.svg", $"{name}: {Caption(f)}"));
            index.AddFigureGrid(headline);
            if (ToyCommand.ExitCode(run) != 0)
            {
                index.Save(Path.Combine(options.Out, "report.html"));
                return ToyCommand.ExitCode(run);
            }
        }
        console.WriteLine();
        console.MarkupLine($"[bold]{configs.Length + 1}. {Markup.Escape(moe.Run.Title ?? MoeExperiment)}[/]");
        var code = MoeCommand.Compare(moe, backend, Path.Combine(options.Out, MoeExperiment), console);
        index.AddHeading($"{configs.Length + 1}. {moe.Run.Title}");
        index.AddParagraph("The paper suggests that mixtures of experts, which activate only some neurons per token, " +
                           "leave less room for superposition. Verdict of this reduced run (full report: " +
                           $"{MoeExperiment}/report.html; the full-size comparison is configs/moe/compare_n20.json):");
        var verdict = Path.Combine(options.Out, MoeExperiment, "compare.json");
        if (File.Exists(verdict))
            foreach (var line in JsonDocument.Parse(File.ReadAllText(verdict)).RootElement.GetProperty("verdict").EnumerateArray())
                index.AddParagraph(line.GetString() + ".");
        index.AddFigureGrid(new[] { "compare_features_per_dimension", "compare_superposed_fraction", "usage" }
            .Where(f => File.Exists(Path.Combine(options.Out, MoeExperiment, "figures", f + ".svg")))
            .Select(f => ($"{MoeExperiment}/figures/{f}.svg", $"{MoeExperiment}: {f.Replace('_', ' ')}")));
        if (code != 0)
        {
            index.Save(Path.Combine(options.Out, "report.html"));
            return code;
        }

        var hybrid = LoadDemoHybridConfig();
        console.WriteLine();
        console.MarkupLine($"[bold]{configs.Length + 2}. {Markup.Escape(hybrid.Title ?? HybridExperiment)}[/]");
        var decoded = HybridCommand.Run(hybrid, backend, Path.Combine(options.Out, HybridExperiment), console);
        console.MarkupLine(Markup.Escape(HybridLesson));
        index.AddHeading($"{configs.Length + 2}. {hybrid.Title}");
        index.AddParagraph($"{HybridLesson} Full report: {HybridExperiment}/report.html; the full-size run is configs/hybrid/n20_m6.json.");
        var (headers, rows) = HybridCommand.Table(hybrid, decoded);
        index.AddTable(headers, rows);
        index.AddFigureGrid(Directory.GetFiles(Path.Combine(options.Out, HybridExperiment, "figures"), "*.svg").Order()
            .Select(f => ($"{HybridExperiment}/figures/{Path.GetFileName(f)}", $"{HybridExperiment}: {Path.GetFileNameWithoutExtension(f).Replace('_', ' ')}")));
        index.Save(Path.Combine(options.Out, "report.html"));
        console.MarkupLine($"report: {Markup.Escape(Path.GetFullPath(Path.Combine(options.Out, "report.html")))}");
        return 0;
    }

    private const string HybridLesson =
        "Approach 3: a dictionary must have a latent per represented feature. The ordinary model packs the most features " +
        "into its 6 dimensions, so small dictionaries recover it worst; the L1 and MoE models represent fewer features, " +
        "pay more loss, and are recovered by smaller dictionaries.";
}
