using Spectre.Console;

namespace NativeEngine.Runner.Commands;

/// <summary>
/// Where a command writes: results (tables, summaries, JSON, "wrote ...") on <see cref="Out"/>; errors, warnings,
/// progress and notes on <see cref="Error"/>, so redirected results stay clean. <see cref="Cancel"/> stops long work
/// from outside (tests, embedding); signals add their own (<see cref="Interrupt"/>).
/// </summary>
public sealed record Cli(IAnsiConsole Out, IAnsiConsole Error, CancellationToken Cancel = default)
{
    public void Warn(string message) => Line(Error, "warning: " + message, "yellow");

    /// <summary>A line about how the run ended when it did not complete (interrupted, stopped).</summary>
    public void Notice(string message) => Line(Error, message, "yellow");

    /// <summary>Boxes and colour only on a terminal that takes them (not when redirected or under NO_COLOR).</summary>
    public static bool Decorated(IAnsiConsole console) => console.Profile.Capabilities.Ansi;

    /// <summary>One line of text, coloured on a terminal; plain and never wrapped otherwise (logs keep a message on one
    /// line).</summary>
    public static void Line(IAnsiConsole console, string text, string colour)
    {
        if (Decorated(console)) console.MarkupLine($"[{colour}]{Markup.Escape(text)}[/]");
        else console.Profile.Out.Writer.WriteLine(text);
    }
}

/// <summary>The runner's exit codes (README, "Exit codes").</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>A usage or input error: unknown verb or option, a bad config, data or run folder.</summary>
    public const int Usage = 2;
    /// <summary>A bug: an unexpected exception, reported with the verb and a hint.</summary>
    public const int Internal = 3;
    /// <summary>Training met a value that is not finite and stopped at that step.</summary>
    public const int NonFinite = 4;
    /// <summary>Stopped by SIGINT (Ctrl-C) after writing a checkpoint or what was done.</summary>
    public const int Interrupted = 130;
    /// <summary>Stopped by SIGTERM (a scheduler's preemption or time limit), likewise.</summary>
    public const int Terminated = 143;
}
