using System.Text.Json;
using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Commands;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using Spectre.Console;

namespace NativeEngine.Runner;

public static class Program
{
    public static int Main(string[] args)
    {
        // Colour, live progress and boxed tables only on a terminal, and never under NO_COLOR (no-color.org).
        var noColor = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR"));
        var output = Console(System.Console.Out, System.Console.IsOutputRedirected, noColor);
        var errors = Console(System.Console.Error, System.Console.IsErrorRedirected, noColor);
        // Under mpirun or srun only the first rank prints; the others speak only when they fail (Report).
        if (LaunchedRank() > 0) (output, errors) = (Console(TextWriter.Null, true, true), Console(TextWriter.Null, true, true));
        var code = Run(args, output, errors);
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

    private static IAnsiConsole Console(TextWriter writer, bool redirected, bool noColor)
    {
        var plain = redirected || noColor;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = plain ? AnsiSupport.No : AnsiSupport.Detect,
            ColorSystem = plain ? ColorSystemSupport.NoColors : ColorSystemSupport.Detect,
            Interactive = redirected ? InteractionSupport.No : InteractionSupport.Detect,
        });
        // Redirected output (logs, CI) would otherwise wrap at 80 columns.
        if (redirected) console.Profile.Width = 4096;
        return console;
    }

    /// <summary>Runs one command line with results on <paramref name="output"/> and everything else on
    /// <paramref name="errors"/>. Usage and input errors exit 2 with a message naming what to fix; anything unexpected
    /// exits 3 with the verb and a hint (the stack trace with --verbose). No exception leaves this method.</summary>
    public static int Run(string[] args, IAnsiConsole output, IAnsiConsole errors, CancellationToken cancel = default)
    {
        var verb = args.FirstOrDefault(a => !a.StartsWith('-')) ?? "";
        var verbose = args.Contains("--verbose");
        try
        {
            var parser = new Parser(settings =>
            {
                settings.HelpWriter = null;
                settings.CaseInsensitiveEnumValues = true;
                // Repeatable options, e.g. harvest --node A --node B.
                settings.AllowMultiInstance = true;
            });
            var parsed = parser.ParseArguments<InfoOptions, ToyOptions, MoeOptions, FactorizeOptions, EvalOptions, EncodeOptions,
                HarvestOptions, HybridOptions, SynthesizeOptions, AnalyzeOptions, DemoOptions, BenchOptions>(args);
            var cli = new Cli(output, errors, cancel);
            return parsed.MapResult(
                (InfoOptions o) => InfoCommand.Run(o, cli),
                (ToyOptions o) => ToyCommand.Run(o, cli),
                (MoeOptions o) => MoeCommand.Run(o, cli),
                (FactorizeOptions o) => FactorizeCommand.Run(o, cli),
                (EvalOptions o) => EvalCommand.Run(o, cli),
                (EncodeOptions o) => EvalCommand.Encode(o, cli),
                (HarvestOptions o) => HarvestCommand.Run(o, cli),
                (HybridOptions o) => HybridCommand.Run(o, cli),
                (SynthesizeOptions o) => SynthesizeCommand.Run(o, cli),
                (AnalyzeOptions o) => AnalyzeCommand.Run(o, cli),
                (DemoOptions o) => DemoCommand.Run(o, cli),
                (BenchOptions o) => BenchCommand.Run(o, cli),
                parseErrors => ParseFailed(parsed, parseErrors.ToList(), output, errors));
        }
        catch (Exception e)
        {
            return Report(e, verb, verbose, errors);
        }
    }

    // --help (and help VERB) print to the output and exit 0; an unknown verb or option, a missing or malformed value
    // print the errors and the usage to the error stream and exit 2.
    private static int ParseFailed<T>(ParserResult<T> parsed, List<Error> parseErrors, IAnsiConsole output, IAnsiConsole errors)
    {
        if (parseErrors.All(e => e.Tag == ErrorType.VersionRequestedError))
        {
            output.Profile.Out.Writer.WriteLine($"{Help.Program} {Engine.Version}");
            return ExitCodes.Ok;
        }
        if (parseErrors.OfType<HelpVerbRequestedError>().FirstOrDefault() is { Matched: true, Verb: { } verb })
            return Run([verb, "--help"], output, errors);  // `help VERB` is `VERB --help`
        var asked = parseErrors.All(e => e.Tag is ErrorType.HelpRequestedError or ErrorType.HelpVerbRequestedError);
        var text = Help.Text(parsed, withErrors: !asked);
        (asked ? output : errors).Profile.Out.Writer.WriteLine(text);
        return asked ? ExitCodes.Ok : ExitCodes.Usage;
    }

    /// <summary>The one place an exception becomes a message and an exit code.</summary>
    private static int Report(Exception e, string verb, bool verbose, IAnsiConsole errors)
    {
        if (e is AggregateException { InnerExceptions.Count: 1 } aggregate) e = aggregate.InnerException!;
        var (kind, message, code) = e switch
        {
            ConfigException => ("config error", e.Message, ExitCodes.Usage),
            Formats.DataFormatException or InvalidDataException => ("data error", e.Message, ExitCodes.Usage),
            JsonException json => ("data error", $"not valid JSON{Where(json)}: {json.Message}", ExitCodes.Usage),
            NonFiniteException => ("stopped", e.Message, ExitCodes.NonFinite),
            NativeEngineException { Status: NativeEngine.Interop.Status.Internal } => ("internal error", $"{verb}: {e.Message}", ExitCodes.Internal),
            NativeEngineException { Status: NativeEngine.Interop.Status.OutOfMemory } => ("out of memory", e.Message +
                "; lower the batch size or the model size, or use a machine with more memory", ExitCodes.Usage),
            NativeEngineException => ("engine error", e.Message, ExitCodes.Usage),
            DllNotFoundException => ("native library", e.Message, ExitCodes.Usage),
            OutOfMemoryException => ("out of memory", $"{verb}: {e.Message}; lower the sizes in the config (batch, model, " +
                                                      "buffer) or use a machine with more memory", ExitCodes.Usage),
            UnauthorizedAccessException => ("i/o error", e.Message, ExitCodes.Usage),
            IOException => ("i/o error", e.Message + IoHint(e), ExitCodes.Usage),
            OperationCanceledException => ("interrupted", $"{verb} stopped before it finished", ExitCodes.Interrupted),
            _ => ("internal error", $"{verb}: {e.GetType().Name}: {e.Message}. This is a bug in nativeengine; " +
                                    (verbose ? "please report it with the trace below" : "rerun with --verbose for the stack trace and report it"),
                ExitCodes.Internal),
        };
        if (Communicator.WorldStarted && Communicator.World.Size > 1 && e is not NonFiniteException { EveryRank: true })
        {
            // One rank's error ends the run on every rank (MPI_Abort with this exit code), so none waits in a collective
            // for this one. The other ranks print nothing, so this goes to the process's own error stream.
            var world = Communicator.World;
            System.Console.Error.WriteLine($"rank {world.Rank} of {world.Size}: {kind}: {message}; ending every rank");
            if (verbose) System.Console.Error.WriteLine(e.ToString());
            System.Console.Error.Flush();
            world.Abort(code);
        }
        if (Cli.Decorated(errors)) errors.MarkupLine($"[red]{Markup.Escape(kind)}:[/] {Markup.Escape(message)}");
        else errors.Profile.Out.Writer.WriteLine($"{kind}: {message}");
        if (verbose) errors.Profile.Out.Writer.WriteLine(e.ToString());
        return code;
    }

    private static string Where(JsonException e) =>
        e.Path is { Length: > 0 } path ? $" at {path}" : e.LineNumber is { } line ? $" (line {line + 1})" : "";

    private static string IoHint(Exception e) =>
        e.HResult == 28 || e.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase)
            ? "; free some space or choose another folder (what was written before is kept)"
            : "";
}
