using CommandLine;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Experiments;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("synthesize", HelpText = "Write a factorize config's synthetic activations (sharkey or synthsaebench) to disk as shards, with ground_truth.safetensors beside them: the dictionary, bias, probabilities, forest and the generator's settings (activation sets of any size, larger than memory included).")]
public sealed class SynthesizeOptions : VerbOptions
{
    [Option("force", HelpText = "Write into --out even when it holds another run's files.")]
    public bool Force { get; set; }

    [Option("config", Required = true, HelpText = "A factorize config whose data is {\"synthetic\": {...}}.")]
    public string Config { get; set; } = "";

    [Option("out", Required = true, HelpText = "Folder for shard_*.npy (or .f32, or a SAELens cache) and ground_truth.safetensors.")]
    public string Out { get; set; } = "";

    [Option("tokens", Required = true, HelpText = "Tokens to write.")]
    public long Tokens { get; set; }

    [Option("shard-tokens", Default = 1L << 20, HelpText = "Tokens per shard.")]
    public long ShardTokens { get; set; } = 1L << 20;

    [Option("format", Default = "npy", HelpText = "npy | raw (float32, no header) | arrow (a SAELens activation cache: save_to_disk folder, column \"activations\").")]
    public string Format { get; set; } = "npy";

    [Option("dtype", Default = "float32", HelpText = "raw: float32 | bfloat16 (half the bytes; each value rounded to nearest even; factorize reads it with \"dtype\": \"bfloat16\").")]
    public string DType { get; set; } = "float32";

    [Option("context", Default = 128, HelpText = "arrow: tokens per row (SAELens's context_size).")]
    public int Context { get; set; } = 128;
}

public static class SynthesizeCommand
{
    public static int Run(SynthesizeOptions options, Cli cli)
    {
        var console = cli.Out;
        var config = FactorizeConfigLoader.LoadFile(options.Config);
        if (config.Data is not SyntheticSpec synthetic)
            throw new ConfigException($"{options.Config}: \"data\" must be {{\"synthetic\": {{...}}}} to synthesize; it reads files already");
        var format = options.Format switch
        {
            "npy" => ActivationFileFormat.Npy,
            "raw" => options.DType switch
            {
                "float32" => ActivationFileFormat.RawF32,
                "bfloat16" => ActivationFileFormat.RawBF16,
                _ => throw new ConfigException($"--dtype is \"{options.DType}\"; valid: float32, bfloat16"),
            },
            "arrow" => ActivationFileFormat.Arrow,
            _ => throw new ConfigException($"--format is \"{options.Format}\"; valid: npy, raw, arrow"),
        };
        if (options.DType != "float32" && format != ActivationFileFormat.RawBF16 && options.Format != "raw")
            throw new ConfigException($"--dtype {options.DType} applies to --format raw only (npy and arrow shards are float32)");
        var result = ConsoleProgress.Run(cli, progress =>
            Synthesis.Run(synthetic, options.Out, options.Tokens, options.ShardTokens, format, options.Context, options.Force, progress));
        console.MarkupLine($"wrote {options.Tokens} tokens (d = {result.D}, {result.Bytes / 1e9:F2} GB) in {result.Shards.Count} shard(s) and " +
                           $"ground_truth.safetensors to {Markup.Escape(Path.GetFullPath(options.Out))}");
        return ExitCodes.Ok;
    }
}
