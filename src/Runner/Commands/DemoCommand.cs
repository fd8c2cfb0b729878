using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Experiments;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("demo", HelpText = "A reduced tour of all three ways out of superposition: the paper's toy models (the intro figure, 20 features in 5 dimensions, a privileged basis, an L1 penalty), a mixture of experts against dense models, and decoding models with dictionaries (hybrid).")]
public sealed class DemoOptions : RunFolderOptions
{
    [Option("out", Default = "runs/demo", HelpText = "Folder: one run folder per experiment and report.html gathering them.")]
    public string Out { get; set; } = "runs/demo";
}

public static class DemoCommand
{
    public static int Run(DemoOptions options, Cli cli)
    {
        using var context = new EngineContext(options.ParseBackend());
        var console = cli.Out;
        console.MarkupLine("[bold]Toy Models of Superposition[/], a reduced tour: " +
                           $"{DemoTour.Experiments.Length + 2} experiments, each a folder under {Markup.Escape(options.Out)}.");
        using var interrupt = Interrupt.Listen(cli.Cancel);
        var completed = ConsoleProgress.Run(cli, progress =>
            DemoTour.Run(context, options.Out, progress, interrupt.Token, (number, title) =>
            {
                console.WriteLine();
                console.MarkupLine($"[bold]{number}. {Markup.Escape(title)}[/]");
            }, part => Show(part, console), force: options.Force));
        if (!completed)
        {
            cli.Notice($"stopped by {interrupt.Cause}: the experiments finished so far, and report.html up to them, are written");
            return interrupt.ExitCode;
        }
        console.MarkupLine($"report: {Markup.Escape(Path.GetFullPath(Path.Combine(options.Out, "report.html")))}");
        return 0;
    }

    private static void Show(DemoPart part, IAnsiConsole console)
    {
        switch (part)
        {
            case DemoToyPart toy:
                ConsoleTables.Print(toy.Run, console);
                console.MarkupLine(Markup.Escape(toy.Lesson));
                break;
            case DemoMoePart { Comparison: { } comparison }:
                ConsoleTables.Print(comparison, console);
                break;
            case DemoHybridPart { Models: { } models } hybrid:
                ConsoleTables.Print(hybrid.Config, models, console);
                console.MarkupLine(Markup.Escape(hybrid.Lesson));
                break;
        }
    }
}
