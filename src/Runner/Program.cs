using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Commands;
using NativeEngine.Runner.Configs;
using Spectre.Console;

namespace NativeEngine.Runner;

public static class Program
{
    public static int Main(string[] args)
    {
        var console = AnsiConsole.Console;
        // Redirected output (logs, CI) would otherwise wrap tables at 80 columns.
        if (Console.IsOutputRedirected) console.Profile.Width = 160;
        return Run(args, console);
    }

    /// <summary>Parses the verb and runs it; errors become a message and exit code 2, never a stack trace.</summary>
    public static int Run(string[] args, IAnsiConsole console)
    {
        var parser = new Parser(settings =>
        {
            settings.HelpWriter = Console.Error;
            settings.CaseInsensitiveEnumValues = true;
            // Repeatable options, e.g. harvest --node A --node B.
            settings.AllowMultiInstance = true;
        });
        var parsed = parser.ParseArguments<InfoOptions, ToyOptions, MoeOptions, FactorizeOptions, EvalOptions, EncodeOptions, HarvestOptions, HybridOptions, SynthesizeOptions, AnalyzeOptions, DemoOptions, BenchOptions>(args);
        try
        {
            return parsed.MapResult(
                (InfoOptions o) => InfoCommand.Run(o, console),
                (ToyOptions o) => ToyCommand.Run(o, console),
                (MoeOptions o) => MoeCommand.Run(o, console),
                (FactorizeOptions o) => FactorizeCommand.Run(o, console),
                (EvalOptions o) => EvalCommand.Run(o, console),
                (EncodeOptions o) => EvalCommand.Encode(o, console),
                (HarvestOptions o) => HarvestCommand.Run(o, console),
                (HybridOptions o) => HybridCommand.Run(o, console),
                (SynthesizeOptions o) => SynthesizeCommand.Run(o, console),
                (AnalyzeOptions o) => AnalyzeCommand.Run(o, console),
                (DemoOptions o) => DemoCommand.Run(o, console),
                (BenchOptions o) => BenchCommand.Run(o, console),
                errors => errors.All(e => e.Tag is ErrorType.HelpRequestedError or ErrorType.VersionRequestedError or ErrorType.HelpVerbRequestedError) ? 0 : 1);
        }
        catch (ConfigException e)
        {
            return Fail(console, "config error", e.Message);
        }
        catch (NativeEngineException e)
        {
            return Fail(console, "engine error", e.Message);
        }
        catch (DllNotFoundException e)
        {
            return Fail(console, "native library", e.Message);
        }
        catch (Exception e) when (e is Formats.DataFormatException or InvalidDataException)
        {
            return Fail(console, "data error", e.Message);
        }
    }

    private static int Fail(IAnsiConsole console, string kind, string message)
    {
        console.MarkupLine($"[red]{kind}:[/] {Markup.Escape(message)}");
        return 2;
    }
}
