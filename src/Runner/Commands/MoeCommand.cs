using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("moe", HelpText = "Train mixture-of-experts toy models from a JSON config; --compare trains dense models beside them.")]
public sealed class MoeOptions : TrainingOptions
{
    [Option("config", Required = true, HelpText = "JSON config (comments allowed); see configs/moe/.")]
    public string Config { get; set; } = "";

    [Option("out", Required = true, HelpText = "Run folder: config.json, results.json, weights.safetensors, report.html, figures/.")]
    public string Out { get; set; } = "";

    [Option("compare", HelpText = "Also train dense models matched on active FLOPs (width k·m) and on parameters (width E·m) and compare their superposition.")]
    public bool Compare { get; set; }
}

public static class MoeCommand
{
    public static int Run(MoeOptions options, Cli cli)
    {
        var config = MoeConfigLoader.LoadFile(options.Config);
        config = config with { Run = options.ApplyTo(config.Run) };
        using var context = new EngineContext(options.ParseBackend());
        return options.Compare ? Compare(context, config, options, cli) : Train(context, config, options, cli);
    }

    private static int Train(EngineContext context, MoeConfig config, MoeOptions options, Cli cli)
    {
        using var interrupt = Interrupt.Listen(cli.Cancel);
        var run = ConsoleProgress.Run(cli, progress =>
            MoeExperiment.Run(context, config, options.Out, progress, interrupt.Token, options.Force));
        var console = cli.Out;
        if (!run.Completed)
            cli.Notice($"stopped by {interrupt.Cause} after {run.Steps} of {config.Run.Steps} steps: the results are of that point");
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(options.Out))}: config.json, results.json, weights.safetensors, report.html, figures/");
        ConsoleTables.Print(run, console);
        return run.Completed ? ExitCodes.Ok : interrupt.ExitCode;
    }

    /// <summary>The MoE against dense models of its active width and of its total width.</summary>
    private static int Compare(EngineContext context, MoeConfig config, MoeOptions options, Cli cli)
    {
        var console = cli.Out;
        var outDir = options.Out;
        console.MarkupLine($"[bold]MoE against dense[/]: {config.NExperts} experts of width {config.ExpertHidden}, top-{config.TopK}; " +
                           $"dense width {config.TopK * config.ExpertHidden} (matched on active FLOPs) and " +
                           $"{config.NExperts * config.ExpertHidden} (matched on parameters).");
        using var interrupt = Interrupt.Listen(cli.Cancel);
        var comparison = ConsoleProgress.Run(cli, progress =>
            MoeComparisonExperiment.Run(context, config, outDir, progress, interrupt.Token, options.Force));
        if (comparison is null)
        {
            cli.Notice($"stopped by {interrupt.Cause}: the runs finished so far are written");
            return interrupt.ExitCode;
        }
        ConsoleTables.Print(comparison, console);
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(outDir))}: compare.json, report.html, figures/, and the three run folders moe/, dense_flops/, dense_parameters/");
        return 0;
    }
}
