using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using NativeEngine.Runner.Reports;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("harvest", HelpText = "Write a trained toy or MoE model's hidden activations on fresh data as shards factorize reads, with the ground truth (its feature directions and the true codes).")]
public sealed class HarvestOptions : BackendOptions
{
    [Option("model", Required = true, HelpText = "A toy or moe run folder (config.json, weights.safetensors).")]
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
            throw new ConfigException($"--model {options.Model}: a run folder holds config.json and weights.safetensors " +
                                      "(written by `toy` or `moe`)");
        if (options.Tokens < 1) throw new ConfigException($"--tokens is {options.Tokens}; valid: >= 1");
        if (options.ShardTokens < 1) throw new ConfigException($"--shard-tokens is {options.ShardTokens}; valid: >= 1");
        using var context = new EngineContext(options.ParseBackend());
        var (shards, instance, d) = IsMoeRun(configPath)
            ? HarvestMoe(options, context, console, configPath, weightsPath)
            : HarvestToy(options, context, console);
        console.MarkupLine($"wrote {options.Tokens} tokens of h (d = {d}) from instance {instance} in {shards.Count} shard(s) " +
                           $"to {Markup.Escape(Path.GetFullPath(options.Out))}, with {Harvest.GroundTruthFile}");
        return 0;
    }

    private static bool IsMoeRun(string configPath)
    {
        using var document = System.Text.Json.JsonDocument.Parse(File.ReadAllText(configPath),
            new System.Text.Json.JsonDocumentOptions { CommentHandling = System.Text.Json.JsonCommentHandling.Skip });
        return document.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object &&
               document.RootElement.TryGetProperty("n_experts", out _);
    }

    private static (IReadOnlyList<string>, int, int) HarvestToy(HarvestOptions options, EngineContext context,
        IAnsiConsole console)
    {
        var model = TrainedToyModel.Load(options.Model);
        var instance = options.Instance ?? model.BestOfSetting[0];
        ToyRunFolder.Prepare(options.Out);
        var shards = ProgressDisplay.Run(console, $"harvest instance {instance}",
            progress => Harvest.Run(context, model.Config, model.W, instance, options.Tokens, options.ShardTokens, options.Out, progress));
        return (shards, instance, model.Config.NHidden);
    }

    private static (IReadOnlyList<string>, int, int) HarvestMoe(HarvestOptions options, EngineContext context,
        IAnsiConsole console, string configPath, string weightsPath)
    {
        var config = MoeConfigLoader.LoadFile(configPath);
        long I = config.Run.NInstances, E = config.NExperts, n = config.Run.NFeatures, m = config.ExpertHidden;
        var (tensors, _) = SafeTensors.Read(weightsPath);
        const string holds = "a moe run's weights hold W, b, W_gate, W_noise and route_bias";
        float[] Read(string name, params long[] shape) => SafeTensors.Require(tensors, weightsPath, name, shape, holds);
        var parameters = new MoeParameters(Read("W", I, E, n, m), Read("b", I, E, n), Read("W_gate", I, n, E),
            Read("W_noise", I, n, E), Read("route_bias", I, E));
        var instance = options.Instance ?? TrainedToyModel.BestInstances(options.Model, config.Run)[0];
        ToyRunFolder.Prepare(options.Out);
        var shards = ProgressDisplay.Run(console, $"harvest MoE instance {instance}",
            progress => Harvest.Run(context, config, parameters, instance, options.Tokens, options.ShardTokens, options.Out, progress));
        return (shards, instance, (int)(E * m));
    }
}
