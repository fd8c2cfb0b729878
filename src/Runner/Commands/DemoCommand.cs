using System.Reflection;
using CommandLine;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Reports;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("demo", HelpText = "The paper's intro experiment: n=5 features in m=2 dimensions, from dense to sparse.")]
public sealed class DemoOptions : BackendOptions
{
    [Option("out", Default = "runs/demo", HelpText = "Run folder.")]
    public string Out { get; set; } = "runs/demo";
}

public static class DemoCommand
{
    public static ToyConfig LoadDemoConfig()
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("demo.json")
                           ?? throw new InvalidOperationException("demo.json is not embedded in the runner");
        using var reader = new StreamReader(stream);
        return ToyConfigLoader.Parse(reader.ReadToEnd(), "configs/demo.json");
    }

    public static int Run(DemoOptions options, IAnsiConsole console)
    {
        var config = LoadDemoConfig();
        console.MarkupLine("[bold]Toy Models of Superposition, intro figure[/]: 5 features of importance 0.9^i " +
                           "squeezed into 2 dimensions, one model per feature density p.");
        var run = ToyCommand.TrainAndSave(config, options.ParseBackend(), options.Out, console);
        ToySummary.Print(run, console);
        console.MarkupLine("Dense features (p = 1): the model keeps the 2 most important, orthogonal, and drops the rest. " +
                           "As features get sparser it packs more of them into the plane, ending in a pentagon " +
                           "(every D_i = 2/5) when p is small.");
        return ToyCommand.ExitCode(run);
    }
}
