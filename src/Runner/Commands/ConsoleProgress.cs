using System.Diagnostics;
using System.Globalization;
using NativeEngine.Runner.Experiments;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

/// <summary>
/// Shows a running experiment's progress on the error stream: a live bar per phase on a terminal; when redirected
/// (logs, CI) or under NO_COLOR, plain lines with the rate and the time left: when a phase starts, at every 10% and
/// at least every 30 seconds. Notes and warnings as they come.
/// </summary>
public static class ConsoleProgress
{
    public static T Run<T>(Cli cli, Func<IRunProgress, T> work)
    {
        var console = cli.Error;
        if (console.Profile.Capabilities.Interactive && Cli.Decorated(console))
            return console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                    new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(context => work(new Live(context, cli)));
        return work(new Lines(cli));
    }

    private sealed class Live(ProgressContext context, Cli cli) : IRunProgress
    {
        private readonly Dictionary<string, ProgressTask> tasks = [];

        public void Report(string phase, long done, long total)
        {
            if (!tasks.TryGetValue(phase, out var task)) tasks[phase] = task = context.AddTask(Markup.Escape(phase));
            task.MaxValue = Math.Max(total, 1);
            task.Value = done;
        }

        public void Note(string message) => cli.Error.MarkupLine(Markup.Escape(message));

        public void Warn(string message) => cli.Warn(message);
    }

    /// <summary>"phase: 400/1000 (40%), 1.2k/s, 5 s left": the rate since the phase's first report.</summary>
    public sealed class Lines(Cli cli) : IRunProgress
    {
        private const double QuietSeconds = 30;
        private readonly Dictionary<string, (long Decile, long FirstDone, Stopwatch Clock, double LastLine)> phases = [];

        public void Report(string phase, long done, long total)
        {
            var decile = done * 10 / Math.Max(total, 1);
            if (!phases.TryGetValue(phase, out var state))
            {
                phases[phase] = (decile, done, Stopwatch.StartNew(), 0);
                cli.Error.Profile.Out.Writer.WriteLine(Line(phase, done, total, 0, 0));
                return;
            }
            var now = state.Clock.Elapsed.TotalSeconds;
            if (state.Decile == decile && now - state.LastLine < QuietSeconds) return;
            phases[phase] = state with { Decile = decile, LastLine = now };
            cli.Error.Profile.Out.Writer.WriteLine(Line(phase, done, total, done - state.FirstDone, now));
        }

        public static string Line(string phase, long done, long total, long advanced, double seconds)
        {
            var percent = done * 100 / Math.Max(total, 1);
            var text = $"{phase}: {done}/{total} ({percent}%)";
            if (seconds <= 0 || advanced <= 0) return text;
            var rate = advanced / seconds;
            text += $", {Compact(rate)}/s";
            return done < total ? text + $", {Duration((total - done) / rate)} left" : text + $", done in {Duration(seconds)}";
        }

        public void Note(string message) => cli.Error.Profile.Out.Writer.WriteLine(message);

        public void Warn(string message) => cli.Warn(message);

        private static string Compact(double value) =>
            value >= 1e9 ? (value / 1e9).ToString("0.##", CultureInfo.InvariantCulture) + "G"
            : value >= 1e6 ? (value / 1e6).ToString("0.##", CultureInfo.InvariantCulture) + "M"
            : value >= 1e3 ? (value / 1e3).ToString("0.##", CultureInfo.InvariantCulture) + "k"
            : value.ToString("0.##", CultureInfo.InvariantCulture);

        private static string Duration(double seconds) =>
            seconds < 90 ? $"{Math.Ceiling(seconds):0} s"
            : seconds < 5400 ? $"{seconds / 60:0} min"
            : $"{seconds / 3600:0.#} h";
    }
}
