using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using NativeEngine.Runner.Reports;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("toy", HelpText = "Train toy models of superposition from a JSON config.")]
public sealed class ToyOptions : TrainingOptions
{
    [Option("config", Required = true, HelpText = "JSON config (comments allowed); see configs/.")]
    public string Config { get; set; } = "";

    [Option("out", Required = true, HelpText = "Run folder: config.json, results.json, weights.safetensors, report.html, figures/.")]
    public string Out { get; set; } = "";

}

public static class ToyCommand
{
    public static int Run(ToyOptions options, IAnsiConsole console)
    {
        var config = options.ApplyTo(ToyConfigLoader.LoadFile(options.Config));
        var run = TrainAndSave(config, options.ParseBackend(), options.Out, console);
        ToySummary.Print(run, console);
        return ExitCode(run);
    }

    /// <summary>0, or 130 (the shell's code for Ctrl-C) when training was interrupted.</summary>
    public static int ExitCode(ToyRunResult run) => run.Steps < run.Config.Steps ? 130 : 0;

    /// <summary>Validates the destination, trains with progress, and writes the run folder.</summary>
    public static ToyRunResult TrainAndSave(ToyConfig config, Backend backend, string outDir, IAnsiConsole console)
    {
        ToyRunFolder.Prepare(outDir);
        using var context = new EngineContext(backend);
        // Ctrl-C stops after the current chunk of steps and still writes what was trained.
        var run = Interrupt.Catch(token => ProgressDisplay.Run(console,
            $"{ToyConfig.ModelName(config.Model)} on {context.Device.Backend.ToString().ToLowerInvariant()}",
            progress => ToyTraining.Run(context, config, progress, token)));
        ToyRunFolder.Write(outDir, run);
        var figures = ToyReport.Write(outDir, run).Count(f => f.EndsWith(".svg", StringComparison.Ordinal));
        if (run.Steps < config.Steps)
            console.MarkupLine($"[yellow]interrupted after {run.Steps} of {config.Steps} steps: the results are of that point[/]");
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(outDir))}: config.json, results.json, weights.safetensors, " +
                           $"report.html, figures/ ({figures} SVG)");
        return run;
    }
}
