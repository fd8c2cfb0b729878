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
    public static int Run(MoeOptions options, IAnsiConsole console)
    {
        var config = MoeConfigLoader.LoadFile(options.Config);
        config = config with { Run = options.ApplyTo(config.Run) };
        using var context = new EngineContext(options.ParseBackend());
        return options.Compare ? Compare(context, config, options.Out, console) : Train(context, config, options.Out, console);
    }

    private static int Train(EngineContext context, MoeConfig config, string outDir, IAnsiConsole console)
    {
        var run = Interrupt.Catch(cancel =>
            ConsoleProgress.Run(console, progress => MoeExperiment.Run(context, config, outDir, progress, cancel)));
        if (!run.Completed)
            console.MarkupLine($"[yellow]interrupted after {run.Steps} of {config.Run.Steps} steps: the results are of that point[/]");
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(outDir))}: config.json, results.json, weights.safetensors, report.html, figures/");
        ConsoleTables.Print(run, console);
        return run.Completed ? 0 : Interrupt.ExitCode;
    }

    /// <summary>The MoE against dense models of its active width and of its total width.</summary>
    public static int Compare(EngineContext context, MoeConfig config, string outDir, IAnsiConsole console)
    {
        console.MarkupLine($"[bold]MoE against dense[/]: {config.NExperts} experts of width {config.ExpertHidden}, top-{config.TopK}; " +
                           $"dense width {config.TopK * config.ExpertHidden} (matched on active FLOPs) and " +
                           $"{config.NExperts * config.ExpertHidden} (matched on parameters).");
        var comparison = Interrupt.Catch(cancel =>
            ConsoleProgress.Run(console, progress => MoeComparisonExperiment.Run(context, config, outDir, progress, cancel)));
        if (comparison is null)
        {
            console.MarkupLine("[yellow]interrupted: the runs finished so far are written[/]");
            return Interrupt.ExitCode;
        }
        ConsoleTables.Print(comparison, console);
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(outDir))}: compare.json, report.html, figures/, and the three run folders moe/, dense_flops/, dense_parameters/");
        return 0;
    }
}
