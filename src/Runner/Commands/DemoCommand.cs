using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Experiments;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("demo", HelpText = "A reduced tour of all three ways out of superposition: the paper's toy models (the intro figure, 20 features in 5 dimensions, a privileged basis, an L1 penalty), a mixture of experts against dense models, and decoding models with dictionaries (hybrid).")]
public sealed class DemoOptions : BackendOptions
{
    [Option("out", Default = "runs/demo", HelpText = "Folder: one run folder per experiment and report.html gathering them.")]
    public string Out { get; set; } = "runs/demo";
}

public static class DemoCommand
{
    public static int Run(DemoOptions options, IAnsiConsole console)
    {
        using var context = new EngineContext(options.ParseBackend());
        console.MarkupLine("[bold]Toy Models of Superposition[/], a reduced tour: " +
                           $"{DemoTour.Experiments.Length + 2} experiments, each a folder under {Markup.Escape(options.Out)}.");
        var completed = Interrupt.Catch(cancel => ConsoleProgress.Run(console, progress =>
            DemoTour.Run(context, options.Out, progress, cancel, (number, title) =>
            {
                console.WriteLine();
                console.MarkupLine($"[bold]{number}. {Markup.Escape(title)}[/]");
            }, part => Show(part, console))));
        if (!completed)
        {
            console.MarkupLine("[yellow]interrupted: the experiments finished so far, and report.html up to them, are written[/]");
            return Interrupt.ExitCode;
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
