using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using NativeEngine.Runner.Reports;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("harvest", HelpText = "Write a trained toy model's hidden activations on fresh data as shards factorize reads, with the ground truth (its feature directions and the true codes).")]
public sealed class HarvestOptions : BackendOptions
{
    [Option("model", Required = true, HelpText = "A toy run folder (config.json, weights.safetensors).")]
    public string Model { get; set; } = "";

    [Option("out", Required = true, HelpText = "Folder for hidden_*.npy, codes_*.npy and ground_truth.safetensors.")]
    public string Out { get; set; } = "";

    [Option("tokens", Required = true, HelpText = "Tokens to write.")]
    public long Tokens { get; set; }

    [Option("instance", HelpText = "Which instance (default: the best of the first setting, or 0).")]
    public int? Instance { get; set; }

    [Option("shard-tokens", Default = 1L << 20, HelpText = "Tokens per shard.")]
    public long ShardTokens { get; set; } = 1L << 20;
}

public static class HarvestCommand
{
    public static int Run(HarvestOptions options, IAnsiConsole console)
    {
        var configPath = Path.Combine(options.Model, "config.json");
        var weightsPath = Path.Combine(options.Model, "weights.safetensors");
        if (!File.Exists(configPath) || !File.Exists(weightsPath))
            throw new ConfigException($"--model {options.Model}: a toy run folder holds config.json and weights.safetensors " +
                                      "(written by `toy`); mixture-of-experts runs are not harvested yet");
        if (options.Tokens < 1) throw new ConfigException($"--tokens is {options.Tokens}; valid: >= 1");
        if (options.ShardTokens < 1) throw new ConfigException($"--shard-tokens is {options.ShardTokens}; valid: >= 1");
        var config = ToyConfigLoader.LoadFile(configPath);
        var weights = SafeTensors.Read(weightsPath).Tensors.FirstOrDefault(t => t.Name == "W")
                      ?? throw new ConfigException($"{weightsPath}: no tensor \"W\"");
        if (!weights.Shape.SequenceEqual(new long[] { config.NInstances, config.NFeatures, config.NHidden }))
            throw new ConfigException($"{weightsPath}: W has shape [{string.Join(", ", weights.Shape)}]; config.json says " +
                                      $"[{config.NInstances}, {config.NFeatures}, {config.NHidden}]");
        var instance = options.Instance ?? BestOfFirstSetting(options.Model, config);
        ToyRunFolder.Prepare(options.Out);
        using var context = new EngineContext(options.ParseBackend());
        var shards = ProgressDisplay.Run(console, $"harvest instance {instance}",
            progress => Harvest.Run(context, config, weights.Data, instance, options.Tokens, options.ShardTokens, options.Out, progress));
        console.MarkupLine($"wrote {options.Tokens} tokens of h (d = {config.NHidden}) from instance {instance} in {shards.Count} shard(s) " +
                           $"to {Markup.Escape(Path.GetFullPath(options.Out))}, with {Harvest.GroundTruthFile}");
        return 0;
    }

    // results.json names each setting's best instance; without it, instance 0.
    private static int BestOfFirstSetting(string runDirectory, ToyConfig config)
    {
        var results = Path.Combine(runDirectory, "results.json");
        if (config.Sweep is null || !File.Exists(results)) return 0;
        using var document = System.Text.Json.JsonDocument.Parse(File.ReadAllText(results));
        return document.RootElement.TryGetProperty("settings", out var settings) && settings.GetArrayLength() > 0
            ? settings[0].GetProperty("best_instance").GetInt32()
            : 0;
    }
}
