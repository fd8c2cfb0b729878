using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("eval", HelpText = "Measure a dictionary (ours, or any SAELens or sparsify folder) on activations: mse, fvu, L0, dead and dense latents, and recovery when the true features are known.")]
public sealed class EvalOptions : BackendOptions
{
    [Option("dict", Required = true, HelpText = "Dictionary folder: SAELens (cfg.json, sae_weights.safetensors) or sparsify (cfg.json, sae.safetensors), or a factorize run folder (its dictionary/).")]
    public string Dict { get; set; } = "";

    [Option("data", Required = true, HelpText = "A factorize config, or {\"data\": {...}, \"batch_size\": B, \"tokens\": N}.")]
    public string Data { get; set; } = "";

    [Option("out", HelpText = "Also write the metrics JSON to this file.")]
    public string? Out { get; set; }
}

[Verb("encode", HelpText = "Write the sparse codes of activations under a dictionary: the SAE's encoder, FISTA (lasso) or OMP.")]
public sealed class EncodeOptions : BackendOptions
{
    [Option("dict", Required = true, HelpText = "Dictionary folder: SAELens or sparsify layout, or a factorize run folder (its dictionary/).")]
    public string Dict { get; set; } = "";

    [Option("data", Required = true, HelpText = "A factorize config, or {\"data\": {...}, \"batch_size\": B, \"tokens\": N}.")]
    public string Data { get; set; } = "";

    [Option("out", Required = true, HelpText = "Output prefix: PREFIX_indices.npy (int32 [tokens][slots], -1 = empty) and PREFIX_values.npy.")]
    public string Out { get; set; } = "";

    [Option("encoder", Default = "sae", HelpText = "sae | fista | omp.")]
    public string Encoder { get; set; } = "sae";

    [Option("slots", HelpText = "Codes kept per token (largest |value| first); default k, or 32.")]
    public int? Slots { get; set; }

    [Option("lambda", Default = 0.05, HelpText = "fista: the L1 weight.")]
    public double Lambda { get; set; } = 0.05;
}

public static class EvalCommand
{
    public static int Run(EvalOptions options, Cli cli)
    {
        var dict = ReadDictionary(options.Dict);
        var data = EvalDataLoader.LoadFile(options.Data);
        if (options.Out is { } path) CheckOutputFile(path, "--out");
        using var context = new EngineContext(options.ParseBackend());
        using var interrupt = Interrupt.Listen(cli.Cancel);
        FactorizeMetrics metrics;
        long skipped;
        try
        {
            (metrics, skipped) = DictionaryEvaluation.Evaluate(context, dict, options.Dict, data, interrupt.Token);
        }
        catch (OperationCanceledException) when (interrupt.Requested)
        {
            cli.Notice($"stopped by {interrupt.Cause}: nothing measured");
            return interrupt.ExitCode;
        }
        var json = Factorization.MetricsJson(metrics, skipped);
        cli.Out.Profile.Out.Writer.WriteLine(json);
        if (options.Out is { } file) AtomicFile.WriteText(file, json);
        return ExitCodes.Ok;
    }

    /// <summary>Reads the dictionary --dict names: a dictionary folder (SAELens or sparsify layout) or a factorize run
    /// folder (its dictionary/); a path that is missing or a file is a usage error naming the option.</summary>
    public static SaeDictionary ReadDictionary(string path, string option = "--dict")
    {
        if (File.Exists(path))
            throw new ConfigException($"{option} {path} is a file; give the dictionary's folder (cfg.json and {SaeLens.WeightsFile} " +
                                      $"or {Sparsify.WeightsFile}) or a factorize run folder");
        if (!Directory.Exists(path))
            throw new ConfigException($"{option} {path} does not exist; give a dictionary folder or a factorize run folder");
        return DictionaryFolder.Read(path);
    }

    /// <summary>Refuses, before any work, an output file whose folder is missing or that names a folder.</summary>
    public static void CheckOutputFile(string path, string option)
    {
        if (Directory.Exists(path)) throw new ConfigException($"{option} {path} is a folder; give a file name");
        var folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(folder))
            throw new ConfigException($"{option} {path}: the folder {folder} does not exist; create it first");
    }

    public static int Encode(EncodeOptions options, Cli cli)
    {
        var console = cli.Out;
        var encoder = options.Encoder switch
        {
            "sae" => SparseEncoder.Sae,
            "fista" => SparseEncoder.Fista,
            "omp" => SparseEncoder.Omp,
            _ => throw new ConfigException($"--encoder is \"{options.Encoder}\"; valid: sae, fista, omp"),
        };
        if (!double.IsFinite(options.Lambda) || options.Lambda < 0 || options.Lambda > 1e6)
            throw new ConfigException($"--lambda is {options.Lambda}; valid: a number in [0, 1e6] (fista's L1 weight)");
        var dict = ReadDictionary(options.Dict);
        var slots = options.Slots ?? Math.Min(dict.K ?? 32, dict.DSae);
        if (slots < 1 || slots > dict.DSae) throw new ConfigException($"--slots is {slots}; valid: 1..{dict.DSae}");
        var data = EvalDataLoader.LoadFile(options.Data);
        CheckOutputFile(options.Out + "_indices.npy", "--out");
        if ((double)data.Tokens * slots > Array.MaxLength)
            throw new ConfigException($"tokens {data.Tokens} × --slots {slots} codes are more than one array holds ({Array.MaxLength}); " +
                                      "encode fewer tokens at a time");
        using var interrupt = Interrupt.Listen(cli.Cancel);
        var done = ConsoleProgress.Run(cli, progress =>
            DictionaryEvaluation.Encode(dict, options.Dict, data, encoder, slots, options.Lambda, options.Out, progress, interrupt.Token));
        if (!done)
        {
            cli.Notice($"stopped by {interrupt.Cause}: no codes written");
            return interrupt.ExitCode;
        }
        console.MarkupLine($"wrote {data.Tokens} tokens x {slots} codes ({options.Encoder}): {Markup.Escape(options.Out)}_indices.npy, _values.npy");
        return ExitCodes.Ok;
    }
}
