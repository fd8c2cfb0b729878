using System.Globalization;
using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using NativeEngine.Runner.Reports.Figures;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("analyze", HelpText = "The paper's open questions for a trained model: superposition-test (is there superposition, " +
                            "with a p-value), feature-curves (a dictionary's estimate of the feature sparsity and importance " +
                            "curves), capacity (features stored against sparsity, beside compressed sensing's bound).")]
public sealed class AnalyzeOptions : BackendOptions
{
    [Value(0, MetaName = "analysis", Required = true, HelpText = "superposition-test | feature-curves | capacity")]
    public string Analysis { get; set; } = "";

    [Option("model", HelpText = "A toy run folder (config.json, weights.safetensors, results.json). feature-curves: the " +
                                "model the dictionary was trained on, for its true features and fresh activations.")]
    public string? Model { get; set; }

    [Option("dict", HelpText = "feature-curves: a dictionary folder (SAELens layout, as factorize writes it).")]
    public string? Dict { get; set; }

    [Option("ground-truth", HelpText = "feature-curves: a ground_truth.safetensors (features [n][d], probabilities [n]).")]
    public string? GroundTruth { get; set; }

    [Option("data", HelpText = "feature-curves: activations to measure the latents on (a factorize config, or " +
                               "{\"data\": {...}, \"batch_size\": B, \"tokens\": N}).")]
    public string? Data { get; set; }

    [Option("instance", HelpText = "superposition-test: an instance, all, or best (default: the best of each setting). " +
                                   "feature-curves with --model: the instance (default: the best of the first setting).")]
    public string? Instance { get; set; }

    [Option("samples", HelpText = "superposition-test: fresh samples per instance (default: enough for 500 non-zero values of " +
                                  "the rarest feature on average, at least 20000, at most 1000000).")]
    public int? Samples { get; set; }

    [Option("alpha", HelpText = "superposition-test: the level of the test (default 0.05).")]
    public double? Alpha { get; set; }

    [Option("rho", HelpText = "superposition-test: ρ0, the correlation above which a feature counts as represented (default 0.5).")]
    public double? Rho { get; set; }

    [Option("method", HelpText = "superposition-test: robust (default; Fisher z with the distribution-free variance) | fisher (classical, normal data only).")]
    public string? Method { get; set; }

    [Option("seed", HelpText = "superposition-test, feature-curves with --model: draws the fresh samples from this seed's " +
                               "stream instead of the run's (same distribution).")]
    public ulong? Seed { get; set; }

    [Option("tokens", HelpText = "feature-curves: activations to measure the latents on (default 65536).")]
    public long? Tokens { get; set; }

    [Option("cosine", HelpText = "feature-curves: the cosine at which a matched latent counts as recovering its feature (default 0.9).")]
    public double? Cosine { get; set; }

    [Option("constant", HelpText = "capacity: C of the compressed-sensing bound m >= C k ln(e n/k) (default 2).")]
    public double? Constant { get; set; }

    [Option("out", HelpText = "The JSON result (default: analysis_<name>.json in the --model or --dict folder; capacity " +
                              "also writes the chart beside it as .svg).")]
    public string? Out { get; set; }
}

/// <summary>`analyze`: the paper's open questions as commands (SCIENCE §4), one subcommand each.</summary>
public static class AnalyzeCommand
{
    public static readonly string[] Analyses = ["superposition-test", "feature-curves", "capacity"];

    // superposition-test's default sample size: this many non-zero values of the rarest feature on average,
    // within [20000, MaxDefaultSamples]; fewer than MinNonZero draws a warning.
    private const double ExpectedNonZero = 500;
    private const double MinNonZero = 100;
    private const int MaxDefaultSamples = 1_000_000;

    public static int Run(AnalyzeOptions options, Cli cli) => options.Analysis switch
    {
        "superposition-test" => SuperpositionTest(options, cli),
        "feature-curves" => FeatureCurves(options, cli.Out),
        "capacity" => Capacity(options, cli.Out),
        _ => throw new ConfigException($"analyze \"{options.Analysis}\" is unknown; valid: {string.Join(", ", Analyses)}"),
    };

    private static int SuperpositionTest(AnalyzeOptions o, Cli cli)
    {
        var console = cli.Out;
        Allow(o, "--model, --instance, --samples, --alpha, --rho, --method, --seed, --backend, --out",
            (o.Dict, "--dict"), (o.GroundTruth, "--ground-truth"), (o.Data, "--data"), (o.Tokens, "--tokens"),
            (o.Cosine, "--cosine"), (o.Constant, "--constant"));
        var model = TrainedToyModel.Load(Require(o.Model, "--model", "a toy run folder"));
        var c = model.Config;
        if (o.Samples is < 10) throw new ConfigException($"--samples is {o.Samples}; valid: >= 10");
        if (o.Samples is { } asked && (long)asked * c.NFeatures > Array.MaxLength)
            throw new ConfigException($"--samples is {asked}; valid: at most {Array.MaxLength / c.NFeatures} for n = {c.NFeatures} features");
        var alpha = o.Alpha ?? 0.05;
        if (!(alpha > 0 && alpha < 1)) throw new ConfigException($"--alpha is {alpha}; valid: a level in (0, 1)");
        var rho = o.Rho ?? 0.5;
        if (!(rho >= 0 && rho < 1)) throw new ConfigException($"--rho is {rho}; valid: a correlation in [0, 1)");
        var method = (o.Method ?? "robust") switch
        {
            "robust" => CorrelationMethod.Robust,
            "fisher" => CorrelationMethod.Fisher,
            _ => throw new ConfigException($"--method is \"{o.Method}\"; valid: robust, fisher"),
        };
        int[] instances = o.Instance switch
        {
            null or "best" => model.BestOfSetting.Distinct().ToArray(),
            "all" => Enumerable.Range(0, c.NInstances).ToArray(),
            var text when int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var k) => [model.CheckInstance(k)],
            _ => throw new ConfigException($"--instance is \"{o.Instance}\"; valid: an instance 0..{c.NInstances - 1}, all, or best"),
        };

        // The delta-method variance needs the rarest feature to be non-zero often enough.
        int SamplesFor(int k)
        {
            var rarest = c.InstanceProbability(k).ToArray().Min();
            var samples = o.Samples ?? (int)Math.Clamp(Math.Ceiling(ExpectedNonZero / rarest * (1 - 1e-6)), 20000, MaxDefaultSamples);
            if (samples * rarest < MinNonZero)
                cli.Warn($"instance {k}: {samples} samples give its rarest feature (p = {rarest:G3}) about {samples * rarest:F0} " +
                         $"non-zero values; the normal approximation needs more: --samples {Math.Ceiling(ExpectedNonZero / rarest):F0}");
            return samples;
        }

        using var context = new EngineContext(o.ParseBackend());
        var results = instances
            .Select(k => ModelAnalyses.SuperpositionTest(context, model, k, SamplesFor(k), rho, alpha, o.Seed, method))
            .ToArray();
        var path = OutPath(o, model.Directory, "superposition_test");
        AtomicFile.WriteText(path, Analysis.SuperpositionTest.ToJson(results));

        console.MarkupLine($"[bold]superposition test[/] {ToyConfig.ModelName(c.Model)} n={c.NFeatures} m={c.NHidden}: " +
                           $"H0 \"at most m = {c.NHidden} features are represented\" (feature i represented: corr(x_i, x'_i) > ρ0 = {rho:G3}); " +
                           $"fresh samples of each instance's data, {(method == CorrelationMethod.Robust ? "robust" : "classical")} Fisher z, " +
                           $"p = min(1, (n − m)·p_(m+1))");
        ConsoleTables.Print(console, ["inst", "p (density)", "samples", "‖W_i‖ > 0.5", "r_i > ρ0 at α", "lower bound (Holm)", "p-value", "decision"],
            results.Select(r => new[]
            {
                F(r.Instance), F(r.FeatureProbability, "G3"), F(r.Samples), F(r.RepresentedByNorm), F(r.RepresentedAtAlpha),
                F(r.RepresentedLowerBound), PValue(r.P), r.Reject ? "superposition" : "not rejected",
            }));
        if (results.Length == 1)
        {
            var r = results[0];
            console.MarkupLine("per feature (r, p): " + Markup.Escape(string.Join("  ", r.Features.Select(f =>
                f.Absent ? $"{f.Feature}: absent" : $"{f.Feature}: {F(f.R, "F3")}, {PValue(f.P)}"))));
        }
        console.MarkupLine($"decision at α = {alpha:G3}: superposition where p ≤ α (each instance is its own test). " +
                           $"wrote {Markup.Escape(Path.GetFullPath(path))}");
        return 0;
    }

    private static int Capacity(AnalyzeOptions o, IAnsiConsole console)
    {
        Allow(o, "--model, --constant, --out", (o.Dict, "--dict"), (o.GroundTruth, "--ground-truth"), (o.Data, "--data"),
            (o.Instance, "--instance"), (o.Samples, "--samples"), (o.Alpha, "--alpha"), (o.Rho, "--rho"), (o.Method, "--method"),
            (o.Seed, "--seed"), (o.Tokens, "--tokens"), (o.Cosine, "--cosine"));
        var model = TrainedToyModel.Load(Require(o.Model, "--model", "a toy run folder, ideally of a density sweep"));
        var constant = o.Constant ?? CompressedSensing.L1Constant;
        if (!(constant > 0) || !double.IsFinite(constant)) throw new ConfigException($"--constant is {constant}; valid: a number > 0");
        var result = ModelAnalyses.Capacity(model, constant);
        var path = OutPath(o, model.Directory, "capacity");
        AtomicFile.WriteText(path, Analysis.Capacity.ToJson(result));
        var chart = Path.ChangeExtension(path, ".svg");
        AtomicFile.WriteText(chart, AnalysisFigures.Capacity(result), durable: false);

        console.MarkupLine($"[bold]capacity[/] {result.Model} n={result.NFeatures} m={result.NHidden}: features stored against density, " +
                           $"beside compressed sensing's bounds for k = n·p active features (ℓ1: m ≥ {constant:G3}·k·ln(e·n/k); ℓ0: m ≥ 2k; capped to [[m, n]])");
        ConsoleTables.Print(console, ["p", "1/(1−S)", "inst", "‖W_i‖ > 0.5", "in superposition", "Σ D_i", "ℓ1 bound", "ℓ0 bound"],
            result.Points.Select(p => new[]
            {
                F(p.FeatureProbability, "G3"), F(1 / p.FeatureProbability, "G4"), F(p.Instance), F(p.Represented),
                F(p.Superposed), F(p.DimensionalitySum, "F2"), F(p.L1Bound), F(p.L0Bound),
            }));
        console.MarkupLine($"the ℓ1 bound allows all {result.NFeatures} features at p ≤ {result.L1DensityForAll:G3}; the model represents all of them " +
                           (result.ModelDensityForAll is { } all ? $"at p = {all:G3} (the densest such setting)" : "at no density of the sweep") +
                           $". Spearman(represented, 1/p) = {F(result.RankCorrelation, "F2")}");
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(path))} and {Markup.Escape(Path.GetFileName(chart))}");
        return 0;
    }

    private static int FeatureCurves(AnalyzeOptions o, IAnsiConsole console)
    {
        Allow(o, "--dict, --model, --ground-truth, --data, --instance, --tokens, --cosine, --seed, --backend, --out",
            (o.Samples, "--samples"), (o.Alpha, "--alpha"), (o.Rho, "--rho"), (o.Method, "--method"), (o.Constant, "--constant"));
        var dictDir = Require(o.Dict, "--dict", "a dictionary folder (SAELens or sparsify layout) or a factorize run folder");
        var dict = EvalCommand.ReadDictionary(dictDir);
        var cosine = o.Cosine ?? Analysis.FeatureCurves.DefaultCosineCut;
        if (!(cosine > 0 && cosine <= 1)) throw new ConfigException($"--cosine is {cosine}; valid: a cosine in (0, 1]");
        if (o.Tokens is < 1) throw new ConfigException($"--tokens is {o.Tokens}; valid: >= 1");
        var model = o.Model is { } modelDir ? TrainedToyModel.Load(modelDir) : null;
        var instance = model is null ? 0
            : o.Instance is null ? model.BestOfSetting[0]
            : int.TryParse(o.Instance, NumberStyles.Integer, CultureInfo.InvariantCulture, out var k) ? model.CheckInstance(k)
            : throw new ConfigException($"--instance is \"{o.Instance}\"; valid with feature-curves: one instance 0..{model.Config.NInstances - 1}");
        if (model is null && o.Instance is not null) throw new ConfigException("--instance picks an instance of --model; give --model too");
        using var context = new EngineContext(o.ParseBackend());
        var (result, truth, source) = ModelAnalyses.FeatureCurves(context, dictDir, dict, model, instance, o.GroundTruth, o.Data,
            o.Tokens, o.Seed, cosine);
        var path = OutPath(o, FactorizeExperiment.RunFolderOf(dictDir) ?? dictDir, "feature_curves");
        AtomicFile.WriteText(path, Analysis.FeatureCurves.ToJson(result));

        console.MarkupLine($"[bold]feature curves[/] of {Markup.Escape(dictDir)} ({SaeLens.Name(dict.Architecture)}, d_sae {dict.DSae}) against " +
                           $"{Markup.Escape(truth.Source)} ({truth.Count} features); densities {Markup.Escape(source)}");
        console.MarkupLine($"recovered (matched cosine ≥ {cosine:G3}): {result.FractionRecovered:P1} of the {result.PresentFeatures} features present in the " +
                           $"activations (of {result.NFeatures}; {result.LiveLatents} live latents); mean matched cosine {result.MatchedCosine:F3}");
        console.MarkupLine($"sparsity: median |log10 p̂ − log10 p| = {F(result.DensityLog10Error, "F3")} (bias {F(result.DensityLog10Bias, "+0.000;-0.000")}), " +
                           $"Spearman {(double.IsFinite(result.DensitySpearman) ? F(result.DensitySpearman, "F3") : "n/a (the true probabilities are equal)")}; sorted curves {F(result.CurveLog10Error, "F3")}, " +
                           $"without the truth (top live latents) {F(result.UnsupervisedCurveLog10Error, "F3")}");
        console.MarkupLine("importance: " + (result.ScaleRatio is { } ratio
            ? $"median estimated/true scale {ratio:F3}, Spearman " + (result.ScaleSpearman is { } rs ? rs.ToString("F3", CultureInfo.InvariantCulture) : "n/a")
            : "n/a") + (result.ScaleNote is { } note ? $" ({Markup.Escape(note)})" : ""));
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(path))}");
        return 0;
    }

    private static string Require(string? value, string option, string what) =>
        value ?? throw new ConfigException($"{option} is required: {what}");

    // Options of another analysis are an error, not silently ignored.
    private static void Allow(AnalyzeOptions o, string allowed, params (object? Value, string Name)[] others)
    {
        var given = others.Where(p => p.Value is not null).Select(p => p.Name).ToArray();
        if (given.Length > 0)
            throw new ConfigException($"analyze {o.Analysis} does not take {string.Join(", ", given)}; it takes {allowed}");
    }

    private static string OutPath(AnalyzeOptions o, string directory, string name)
    {
        var path = o.Out ?? Path.Combine(directory, $"analysis_{name}.json");
        if (Directory.Exists(path)) throw new ConfigException($"--out {path} is a folder; give a file name");
        var folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        try
        {
            Directory.CreateDirectory(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"--out {path}: cannot write there ({e.Message}); choose a writable file");
        }
        return path;
    }

    private static string F(double value, string format = "G") =>
        double.IsFinite(value) ? value.ToString(format, CultureInfo.InvariantCulture) : "–";

    // A p-value that underflows double precision prints as a bound, not as 0.
    private static string PValue(double p) => p == 0 ? "< 1e-300" : F(p, "G3");

    private static string F(int value) => value.ToString(CultureInfo.InvariantCulture);
}
