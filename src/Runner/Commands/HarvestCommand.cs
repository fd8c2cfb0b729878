using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("harvest", HelpText = "Write activations as shards factorize reads: a trained toy or MoE model's hidden activations with their ground truth (--model), or any ONNX model's intermediate tensors on your inputs (--onnx).")]
public sealed class HarvestOptions : RunFolderOptions
{
    [Option("model", HelpText = "A toy or moe run folder (config.json, weights.safetensors).")]
    public string? Model { get; set; }

    [Option("onnx", HelpText = "An ONNX model (e.g. from torch.onnx.export) run with ONNX Runtime.")]
    public string? Onnx { get; set; }

    [Option("node", HelpText = "--onnx: a node name or tensor name to harvest; repeat for several (--list-nodes lists them).")]
    public IEnumerable<string> Nodes { get; set; } = [];

    [Option("inputs", HelpText = "--onnx: the model's inputs, rows along the first dimension: FILE.npy (one input) or FILE.safetensors (a tensor per input name).")]
    public string? Inputs { get; set; }

    [Option("list-nodes", HelpText = "--onnx: print every tensor the model computes (node, operator, tensor, type, shape) and exit.")]
    public bool ListNodes { get; set; }

    [Option("batch-size", HelpText = "--onnx: input rows per run (default 32, or the model's fixed batch).")]
    public int BatchSize { get; set; }

    [Option("out", HelpText = "Required (except with --list-nodes). Folder: --model: hidden_*.npy, codes_*.npy and ground_truth.safetensors; --onnx: a folder of acts_*.npy per node and harvest.json.")]
    public string? Out { get; set; }

    [Option("tokens", HelpText = "--model: tokens to write.")]
    public long? Tokens { get; set; }

    [Option("instance", HelpText = "--model: which instance (default: the best of the first setting, or 0).")]
    public int? Instance { get; set; }

    [Option("shard-tokens", Default = 1L << 20, HelpText = "Tokens per shard.")]
    public long ShardTokens { get; set; } = 1L << 20;
}

public static class HarvestCommand
{
    public static int Run(HarvestOptions options, Cli cli)
    {
        if ((options.Model is null) == (options.Onnx is null))
            throw new ConfigException("harvest needs exactly one of --model DIR (a toy or moe run) and --onnx MODEL.onnx");
        return options.Onnx is { } onnx ? Onnx(options, onnx, cli) : Toy(options, options.Model!, cli);
    }

    private static int Toy(HarvestOptions options, string model, Cli cli)
    {
        foreach (var (given, name) in new[] { (options.Nodes.Any(), "--node"), (options.Inputs is not null, "--inputs"), (options.ListNodes, "--list-nodes"), (options.BatchSize != 0, "--batch-size") })
            if (given) throw new ConfigException($"{name} is for --onnx; --model harvests a toy or moe run");
        var tokens = options.Tokens ?? throw new ConfigException("--tokens is required with --model (tokens to write)");
        var outDir = options.Out ?? throw new ConfigException("--out is required (the folder to write)");
        using var context = new EngineContext(options.ParseBackend());
        using var interrupt = Interrupt.Listen(cli.Cancel);
        Harvest.FolderResult result;
        try
        {
            result = ConsoleProgress.Run(cli, progress => Harvest.Run(context, model, options.Instance, tokens,
                options.ShardTokens, outDir, progress, options.Force, interrupt.Token));
        }
        catch (OperationCanceledException) when (interrupt.Requested)
        {
            cli.Notice($"stopped by {interrupt.Cause}: the shards finished so far are written (no ground_truth.safetensors)");
            return interrupt.ExitCode;
        }
        cli.Out.MarkupLine($"wrote {tokens} tokens of h (d = {result.D}) from instance {result.Instance} in " +
                           $"{result.Shards.Count} shard(s) to {Markup.Escape(Path.GetFullPath(outDir))}, with {GroundTruthFile.Name}");
        return ExitCodes.Ok;
    }

    private static int Onnx(HarvestOptions options, string model, Cli cli)
    {
        if (options.Tokens is not null || options.Instance is not null)
            throw new ConfigException($"{(options.Tokens is not null ? "--tokens" : "--instance")} is for --model; --onnx harvests every row of --inputs");
        var console = cli.Out;
        if (options.ListNodes)
        {
            var tensors = OnnxHarvest.ListNodes(model);
            string[] headers = ["node", "op", "tensor (--node)", "type", "shape"];
            var rows = tensors.Select(t => new[] { t.Node, t.OpType, t.Tensor, t.ElementType, $"[{string.Join(", ", t.Shape)}]" }).ToList();
            // Every tensor (ConsoleTables.Print keeps the first rows of a run's results).
            if (Cli.Decorated(console))
            {
                var table = new Table().Border(TableBorder.Rounded);
                foreach (var header in headers) table.AddColumn(Markup.Escape(header));
                foreach (var row in rows) table.AddRow(row.Select(Markup.Escape).ToArray());
                console.Write(table);
            }
            else
            {
                foreach (var line in ConsoleTables.Plain(headers, rows)) console.Profile.Out.Writer.WriteLine(line);
            }
            console.MarkupLine($"{tensors.Count} tensors; harvest one with --node NAME (a node's name or a tensor's)");
            return ExitCodes.Ok;
        }
        var inputs = options.Inputs ?? throw new ConfigException("--inputs FILE.npy|FILE.safetensors is required with --onnx (or --list-nodes)");
        var outDir = options.Out ?? throw new ConfigException("--out is required (the folder to write)");
        var config = new OnnxHarvestConfig(model, options.Nodes.ToList(), inputs, options.BatchSize, options.ShardTokens);
        using var interrupt = Interrupt.Listen(cli.Cancel);
        var result = ConsoleProgress.Run(cli, progress => OnnxHarvest.Run(config, outDir, progress, interrupt.Token, options.Force));
        var manifest = Path.Combine(Path.GetFullPath(outDir), OnnxHarvest.ManifestFile);
        foreach (var node in result.Nodes)
        {
            console.MarkupLine(Markup.Escape($"{node.Node} ({node.Tensor}): {node.Tokens} tokens of d = {node.D} " +
                                             $"({node.TokensPerRow} per input row) in {node.Shards.Count} shard(s) under {node.Folder}/"));
            if (node.NonFiniteTokens > 0)
                cli.Warn($"--node {node.Node}: {node.NonFiniteTokens} of its tokens hold NaN or infinity (the first is token " +
                         $"{node.FirstNonFiniteToken}); factorize, eval and encode refuse them, naming the shard and token, unless the " +
                         "data section says \"non_finite\": \"skip\"");
        }
        if (!result.Completed)
        {
            cli.Notice($"stopped by {interrupt.Cause} after {result.Rows} of {result.TotalRows} input rows: the finished shards are kept " +
                       $"and listed in {manifest}");
            return interrupt.ExitCode;
        }
        console.MarkupLine(Markup.Escape($"{result.Rows} input rows in batches of {result.BatchRows}, {result.Seconds:F1} s; wrote {manifest} " +
                                         $"and {OnnxHarvest.DataConfigFile} per node (eval/encode --data)"));
        return ExitCodes.Ok;
    }
}
