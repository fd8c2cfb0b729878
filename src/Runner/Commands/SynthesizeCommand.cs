using CommandLine;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("synthesize", HelpText = "Write a factorize config's synthetic activations to disk as shards, with ground_truth.safetensors beside them (activation sets of any size, larger than memory included).")]
public sealed class SynthesizeOptions
{
    [Option("config", Required = true, HelpText = "A factorize config whose data is {\"synthetic\": {...}}.")]
    public string Config { get; set; } = "";

    [Option("out", Required = true, HelpText = "Folder for shard_*.npy (or .f32) and ground_truth.safetensors.")]
    public string Out { get; set; } = "";

    [Option("tokens", Required = true, HelpText = "Tokens to write.")]
    public long Tokens { get; set; }

    [Option("shard-tokens", Default = 1L << 20, HelpText = "Tokens per shard.")]
    public long ShardTokens { get; set; } = 1L << 20;

    [Option("format", Default = "npy", HelpText = "npy | raw (float32, no header).")]
    public string Format { get; set; } = "npy";
}

public static class SynthesizeCommand
{
    public static int Run(SynthesizeOptions options, IAnsiConsole console)
    {
        var config = FactorizeConfigLoader.LoadFile(options.Config);
        if (config.Data is not SyntheticSpec s)
            throw new ConfigException($"{options.Config}: \"data\" must be {{\"synthetic\": {{...}}}} to synthesize; it reads files already");
        if (options.Tokens < 1) throw new ConfigException($"--tokens is {options.Tokens}; valid: >= 1");
        if (options.ShardTokens < 1) throw new ConfigException($"--shard-tokens is {options.ShardTokens}; valid: >= 1");
        var format = options.Format switch
        {
            "npy" => ActivationFileFormat.Npy,
            "raw" => ActivationFileFormat.RawF32,
            _ => throw new ConfigException($"--format is \"{options.Format}\"; valid: npy, raw"),
        };
        ToyRunFolder.Prepare(options.Out);
        using var synthetic = new SyntheticActivations(new SyntheticOptions(s.D, s.NFeatures, s.ProbabilityDecay, s.ActiveMean,
            s.Correlated, Seed: s.Seed, BatchTokens: 4096, Prefetch: false));
        var shards = synthetic.WriteShards(options.Out, options.Tokens, options.ShardTokens, format);
        var bytes = shards.Sum(p => new FileInfo(p).Length);
        console.MarkupLine($"wrote {options.Tokens} tokens (d = {s.D}, {bytes / 1e9:F2} GB) in {shards.Count} shard(s) and " +
                           $"ground_truth.safetensors to {Markup.Escape(Path.GetFullPath(options.Out))}");
        return 0;
    }
}
