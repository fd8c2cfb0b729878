using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("hybrid", HelpText = "Approach 3: over a density sweep, train ordinary, L1-penalised and MoE models of one hidden size, harvest and factorize each at several dictionary sizes, and report recovery of each model's own features beside the loss it pays.")]
public sealed class HybridOptions : RunFolderOptions
{
    [Option("config", Required = true, HelpText = "JSON config (comments allowed); see configs/hybrid/.")]
    public string Config { get; set; } = "";

    [Option("out", Required = true, HelpText = "Folder: hybrid.json, report.html, figures/, models/ and one folder per density and model.")]
    public string Out { get; set; } = "";
}

public static class HybridCommand
{
    public static int Run(HybridOptions options, Cli cli)
    {
        var config = HybridConfigLoader.LoadFile(options.Config);
        using var context = new EngineContext(options.ParseBackend());
        var console = cli.Out;
        PrintPlan(config, console);
        using var interrupt = Interrupt.Listen(cli.Cancel);
        var results = ConsoleProgress.Run(cli, progress =>
            HybridExperiment.Run(context, config, options.Out, progress, interrupt.Token, options.Force));
        if (results is null)
        {
            cli.Notice($"stopped by {interrupt.Cause}: the models and dictionaries finished so far are written");
            return interrupt.ExitCode;
        }
        ConsoleTables.Print(config, results, console);
        console.MarkupLine($"report: {Markup.Escape(Path.GetFullPath(Path.Combine(options.Out, "report.html")))}");
        return 0;
    }

    public static void PrintPlan(HybridConfig c, IAnsiConsole console) =>
        console.MarkupLine($"training {c.DenseConfig().NInstances} dense and {c.MoeConfig().Run.NInstances} MoE models " +
                           $"({c.NFeatures} features, {c.NHidden} hidden; MoE {c.NExperts} experts of width {c.ExpertHidden}, " +
                           $"top-{c.TopK}), then {c.FeatureProbability.Length * HybridExperiment.Kinds.Length * c.DictionarySizes.Length} dictionaries");
}
