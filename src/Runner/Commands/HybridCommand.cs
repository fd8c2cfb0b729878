using System.Globalization;
using System.Text.Json;
using CommandLine;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using NativeEngine.Runner.Reports;
using NativeEngine.Runner.Reports.Figures;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("hybrid", HelpText = "Approach 3: over a density sweep, train ordinary, L1-penalised and MoE models of one hidden size, harvest and factorize each at several dictionary sizes, and report recovery of each model's own features beside the loss it pays.")]
public sealed class HybridOptions : BackendOptions
{
    [Option("config", Required = true, HelpText = "JSON config (comments allowed); see configs/hybrid/.")]
    public string Config { get; set; } = "";

    [Option("out", Required = true, HelpText = "Folder: hybrid.json, report.html, figures/, models/ and one folder per density and model.")]
    public string Out { get; set; } = "";
}

public static class HybridCommand
{
    public static int Run(HybridOptions options, IAnsiConsole console)
    {
        var config = HybridConfigLoader.LoadFile(options.Config);
        var results = Run(config, options.ParseBackend(), options.Out, console);
        console.MarkupLine($"report: {Markup.Escape(Path.GetFullPath(Path.Combine(options.Out, "report.html")))}");
        return results.Count > 0 ? 0 : 1;
    }

    /// <summary>Trains, harvests, factorizes and writes hybrid.json, figures/ and report.html.</summary>
    public static IReadOnlyList<HybridModel> Run(HybridConfig config, Interop.Backend backend, string outDir, IAnsiConsole console)
    {
        ToyRunFolder.Prepare(outDir);
        var quiet = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(TextWriter.Null) });
        var results = Hybrid.Run(config, backend, outDir, console, quiet);
        AtomicFile.WriteText(Path.Combine(outDir, "hybrid.json"), Json(config, results));
        WriteReport(outDir, config, results);
        PrintTable(config, results, console);
        return results;
    }

    public static void PrintTable(HybridConfig config, IReadOnlyList<HybridModel> results, IAnsiConsole console)
    {
        var table = new Table().AddColumns("p", "model", "loss", "features / dim", "represented");
        foreach (var size in config.DictionarySizes) table.AddColumn($"matched cos, d_sae {size}");
        foreach (var r in results)
            table.AddRow(new[] { F(r.FeatureProbability, "G3"), r.Kind, F(r.Loss, "G3"), F(r.FeaturesPerDimension, "F2"),
                    r.RepresentedFeatures.ToString() }
                .Concat(r.Recovery.Select(x => F(x.MatchedCosine, "F3"))).ToArray());
        console.Write(table);
    }

    /// <summary>The results as a table: headers, and per model its loss, superposition and recovery at each size.</summary>
    public static (string[] Headers, IEnumerable<string[]> Rows) Table(HybridConfig c, IReadOnlyList<HybridModel> results) =>
        (new[] { "p", "model", "loss", "features / dim", "represented" }
                .Concat(c.DictionarySizes.Select(s => $"matched cos (MMCS), d_sae {s}")).ToArray(),
            results.Select(r => new[] { F(r.FeatureProbability, "G3"), r.Kind, F(r.Loss, "G3"),
                    F(r.FeaturesPerDimension, "F2"), r.RepresentedFeatures.ToString() }
                .Concat(r.Recovery.Select(x => $"{F(x.MatchedCosine, "F3")} ({F(x.Mmcs, "F3")})")).ToArray()));

    private static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);

    private static string Json(HybridConfig c, IReadOnlyList<HybridModel> results)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteNumber("n_features", c.NFeatures);
            w.WriteNumber("n_hidden", c.NHidden);
            w.WriteString("recovery", "against each model's represented feature directions (norm > 0.5 of the largest, " +
                                      "at least 0.5): mmcs = mean best cosine; matched_cosine = one-to-one assignment, " +
                                      "summed over represented features and divided by their count");
            w.WriteStartArray("models");
            foreach (var r in results)
            {
                w.WriteStartObject();
                w.WriteString("kind", r.Kind);
                w.WriteNumber("feature_probability", r.FeatureProbability);
                w.WriteNumber("instance", r.Instance);
                Formats.Json.Number(w, "loss", r.Loss);
                Formats.Json.Number(w, "l1_penalty", r.L1Penalty);
                Formats.Json.Number(w, "features_per_dimension", r.FeaturesPerDimension);
                w.WriteNumber("represented_features", r.RepresentedFeatures);
                w.WriteStartArray("dictionaries");
                foreach (var d in r.Recovery)
                {
                    w.WriteStartObject();
                    w.WriteNumber("d_sae", d.DSae);
                    w.WriteNumber("k", d.K);
                    Formats.Json.Number(w, "mmcs", d.Mmcs);
                    Formats.Json.Number(w, "matched_cosine", d.MatchedCosine);
                    Formats.Json.Number(w, "fvu", d.Fvu);
                    Formats.Json.Number(w, "l0", d.L0);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteReport(string outDir, HybridConfig c, IReadOnlyList<HybridModel> results)
    {
        var figures = new FigureFolder(outDir);
        var report = new HtmlReport(c.Title ?? "Hybrid: decoding models trained to have less superposition");
        report.AddParagraph($"At each density, three models with {c.NHidden} hidden dimensions learn {c.NFeatures} features: an ordinary " +
                            $"ReLU-output model, the same with an L1 penalty of {c.L1:G3} on its hidden activations, and a mixture of " +
                            $"{c.NExperts} experts of width {c.ExpertHidden} (top-{c.TopK}). Each model's hidden activations on fresh data " +
                            "are factorized by TopK dictionaries; recovery is the one-to-one matched cosine between the dictionary's " +
                            "decoder rows and the model's own represented feature directions (for the MoE, a feature's row in the " +
                            "expert that handles it most often).");
        var list = new List<(string, string)>();
        foreach (var p in c.FeatureProbability)
        {
            var atP = results.Where(r => r.FeatureProbability == p).ToArray();
            var name = $"recovery_p{F(p, "R")}".Replace('.', '_');
            list.Add((figures.Save(name, ComparisonFigures.LineChart(
                    atP.Select(r => new LineSeries($"{r.Kind} ({r.RepresentedFeatures} features)",
                        r.Recovery.Select(x => ((double)x.DSae, x.MatchedCosine)).ToArray())).ToArray(),
                    "dictionary size (latents)", "matched cosine", $"Recovery at p = {F(p, "G3")}", logX: true, yMin: 0, yMax: 1)),
                $"p = {F(p, "G3")}: recovery of each model's features against dictionary size."));
        }
        var groups = c.FeatureProbability.Select(p => $"p = {F(p, "G3")}").ToArray();
        list.Add((figures.Save("loss", ComparisonFigures.GroupedBars(groups,
                Hybrid.Kinds.Select(k => new BarSeries(k, c.FeatureProbability
                    .Select(p => results.Single(r => r.Kind == k && r.FeatureProbability == p).Loss).ToArray())).ToArray(),
                "task loss", "The loss each model pays")),
            "Task loss (importance-weighted reconstruction error) of each model on fresh data."));
        list.Add((figures.Save("features_per_dimension", ComparisonFigures.GroupedBars(groups,
                Hybrid.Kinds.Select(k => new BarSeries(k, c.FeatureProbability
                    .Select(p => results.Single(r => r.Kind == k && r.FeatureProbability == p).FeaturesPerDimension).ToArray())).ToArray(),
                "features per dimension", "How much superposition each model has", referenceLine: 1, referenceLabel: "1: none")),
            "Features per hidden dimension (above 1: superposition)."));
        report.AddFigureGrid(list, 420);
        var (headers, rows) = Table(c, results);
        report.AddTable(headers, rows);
        report.AddParagraph("Folders: models/dense and models/moe hold the trained models (each with its own report); " +
                            "p*/KIND/activations the harvested shards and ground truth; p*/KIND/dict_N each dictionary in the " +
                            "SAELens layout with its metrics and report.");
        report.Save(Path.Combine(outDir, "report.html"));
    }
}
