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
        // Under mpirun or srun only the first rank prints; the others speak only when they fail (Fail).
        if (LaunchedRank() > 0)
            console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(TextWriter.Null) });
        var code = Run(args, console);
        if (Communicator.WorldStarted) Communicator.FinalizeMpi();
        return code;
    }

    /// <summary>This process's rank as the MPI launcher set it (before MPI starts), or -1 when not launched by one.</summary>
    private static int LaunchedRank()
    {
        foreach (var name in new[] { "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID" })
            if (int.TryParse(Environment.GetEnvironmentVariable(name), out var rank)) return rank;
        return -1;
    }

    /// <summary>Parses the verb and runs it; errors become a message and exit code 2, never a stack trace.</summary>
    public static int Run(string[] args, IAnsiConsole console)
    {
        var parser = new Parser(settings =>
        {
            settings.HelpWriter = Console.Error;
            settings.CaseInsensitiveEnumValues = true;
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
        if (Communicator.WorldStarted && Communicator.World.Size > 1)
        {
            // One rank's error ends the run on every rank (MPI_Abort), so none waits in a collective for this one.
            var world = Communicator.World;
            Console.Error.WriteLine($"rank {world.Rank} of {world.Size}: {kind}: {message}; ending every rank");
            Console.Error.Flush();
            world.Abort(2);
        }
        console.MarkupLine($"[red]{kind}:[/] {Markup.Escape(message)}");
        return 2;
    }
}
