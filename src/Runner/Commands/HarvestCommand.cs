using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("harvest", HelpText = "Write a trained toy or MoE model's hidden activations on fresh data as shards factorize reads, with the ground truth (its feature directions and the true codes).")]
public sealed class HarvestOptions : RunFolderOptions
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
    public static int Run(HarvestOptions options, Cli cli)
    {
        using var context = new EngineContext(options.ParseBackend());
        using var interrupt = Interrupt.Listen(cli.Cancel);
        Harvest.FolderResult result;
        try
        {
            result = ConsoleProgress.Run(cli, progress => Harvest.Run(context, options.Model, options.Instance, options.Tokens,
                options.ShardTokens, options.Out, progress, options.Force, interrupt.Token));
        }
        catch (OperationCanceledException) when (interrupt.Requested)
        {
            cli.Notice($"stopped by {interrupt.Cause}: the shards finished so far are written (no ground_truth.safetensors)");
            return interrupt.ExitCode;
        }
        var console = cli.Out;
        console.MarkupLine($"wrote {options.Tokens} tokens of h (d = {result.D}) from instance {result.Instance} in " +
                           $"{result.Shards.Count} shard(s) to {Markup.Escape(Path.GetFullPath(options.Out))}, with {GroundTruthFile.Name}");
        return ExitCodes.Ok;
    }
}
