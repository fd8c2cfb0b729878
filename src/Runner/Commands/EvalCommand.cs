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
    [Option("dict", Required = true, HelpText = "Dictionary folder: SAELens (cfg.json, sae_weights.safetensors) or sparsify (cfg.json, sae.safetensors).")]
    public string Dict { get; set; } = "";

    [Option("data", Required = true, HelpText = "A factorize config, or {\"data\": {...}, \"batch_size\": B, \"tokens\": N}.")]
    public string Data { get; set; } = "";

    [Option("out", HelpText = "Also write the metrics JSON to this file.")]
    public string? Out { get; set; }
}

[Verb("encode", HelpText = "Write the sparse codes of activations under a dictionary: the SAE's encoder, FISTA (lasso) or OMP.")]
public sealed class EncodeOptions : BackendOptions
{
    [Option("dict", Required = true, HelpText = "Dictionary folder: SAELens or sparsify layout.")]
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
    public static int Run(EvalOptions options, IAnsiConsole console)
    {
        var dict = DictionaryFolder.Read(options.Dict);
        var data = EvalDataLoader.LoadFile(options.Data);
        using var context = new EngineContext(options.ParseBackend());
        var json = Factorization.MetricsJson(DictionaryEvaluation.Evaluate(context, dict, options.Dict, data));
        console.Profile.Out.Writer.WriteLine(json);
        if (options.Out is { } path) AtomicFile.WriteText(path, json);
        return 0;
    }

    public static int Encode(EncodeOptions options, IAnsiConsole console)
    {
        var encoder = options.Encoder switch
        {
            "sae" => SparseEncoder.Sae,
            "fista" => SparseEncoder.Fista,
            "omp" => SparseEncoder.Omp,
            _ => throw new ConfigException($"--encoder is \"{options.Encoder}\"; valid: sae, fista, omp"),
        };
        var dict = DictionaryFolder.Read(options.Dict);
        var slots = options.Slots ?? dict.K ?? 32;
        if (slots < 1 || slots > dict.DSae) throw new ConfigException($"--slots is {slots}; valid: 1..{dict.DSae}");
        var data = EvalDataLoader.LoadFile(options.Data);
        Interrupt.Catch(cancel => ConsoleProgress.Run(console, progress =>
        {
            DictionaryEvaluation.Encode(dict, options.Dict, data, encoder, slots, options.Lambda, options.Out, progress, cancel);
            return 0;
        }));
        console.MarkupLine($"wrote {data.Tokens} tokens x {slots} codes ({options.Encoder}): {Markup.Escape(options.Out)}_indices.npy, _values.npy");
        return 0;
    }
}
