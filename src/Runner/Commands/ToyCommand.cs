using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("toy", HelpText = "Train toy models of superposition from a JSON config.")]
public sealed class ToyOptions : TrainingOptions
{
    [Option("config", Required = true, HelpText = "JSON config (comments allowed); see configs/paper/.")]
    public string Config { get; set; } = "";

    [Option("out", Required = true, HelpText = "Run folder: config.json, results.json, weights.safetensors, report.html, figures/.")]
    public string Out { get; set; } = "";
}

public static class ToyCommand
{
    public static int Run(ToyOptions options, Cli cli)
    {
        var config = options.ApplyTo(ToyConfigLoader.LoadFile(options.Config));
        using var context = new EngineContext(options.ParseBackend());
        using var interrupt = Interrupt.Listen(cli.Cancel);
        var run = ConsoleProgress.Run(cli, progress =>
            ToyExperiment.Run(context, config, options.Out, progress, interrupt.Token, options.Force));
        var console = cli.Out;
        if (!run.Completed)
            cli.Notice($"stopped by {interrupt.Cause} after {run.Steps} of {config.Steps} steps: the results are of that point");
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(options.Out))}: config.json, results.json, weights.safetensors, " +
                           "report.html, figures/");
        ConsoleTables.Print(run, console);
        return run.Completed ? ExitCodes.Ok : interrupt.ExitCode;
    }
}
