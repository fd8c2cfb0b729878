using NativeEngine.Runner.Experiments;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

/// <summary>
/// Shows a running experiment's progress: a live bar per phase on a terminal, a line every 10% of a phase when
/// output is redirected (logs, CI); warnings as they come.
/// </summary>
public static class ConsoleProgress
{
    public static T Run<T>(IAnsiConsole console, Func<IRunProgress, T> work)
    {
        if (console.Profile.Capabilities.Interactive && console.Profile.Capabilities.Ansi)
            return console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                    new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(context => work(new Live(context, console)));
        return work(new Lines(console));
    }

    private static void Warn(IAnsiConsole console, string message) =>
        console.MarkupLine($"[yellow]warning: {Markup.Escape(message)}[/]");

    private sealed class Live(ProgressContext context, IAnsiConsole console) : IRunProgress
    {
        private readonly Dictionary<string, ProgressTask> tasks = [];

        public void Report(string phase, long done, long total)
        {
            if (!tasks.TryGetValue(phase, out var task)) tasks[phase] = task = context.AddTask(Markup.Escape(phase));
            task.MaxValue = Math.Max(total, 1);
            task.Value = done;
        }

        public void Note(string message) => console.MarkupLine(Markup.Escape(message));

        public void Warn(string message) => ConsoleProgress.Warn(console, message);
    }

    private sealed class Lines(IAnsiConsole console) : IRunProgress
    {
        private readonly Dictionary<string, long> lastDecile = [];

        public void Report(string phase, long done, long total)
        {
            var decile = done * 10 / Math.Max(total, 1);
            if (lastDecile.TryGetValue(phase, out var last) && last == decile) return;
            lastDecile[phase] = decile;
            console.WriteLine($"{phase}: {done}/{total} ({decile * 10}%)");
        }

        public void Note(string message) => console.WriteLine(message);

        public void Warn(string message) => ConsoleProgress.Warn(console, message);
    }
}
