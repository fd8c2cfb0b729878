using Spectre.Console;

namespace NativeEngine.Runner.Reports;

/// <summary>Shows a live bar on a terminal and a line every 10% when output is redirected (logs, CI).</summary>
public static class ProgressDisplay
{
    public static T Run<T>(IAnsiConsole console, string description, Func<Action<long, long>, T> work)
    {
        if (console.Profile.Capabilities.Interactive && console.Profile.Capabilities.Ansi)
        {
            return console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                    new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask(Markup.Escape(description));
                    return work((done, total) =>
                    {
                        task.MaxValue = total;
                        task.Value = done;
                    });
                });
        }
        var lastDecile = -1L;
        return work((done, total) =>
        {
            var decile = done * 10 / Math.Max(total, 1);
            if (decile == lastDecile) return;
            lastDecile = decile;
            console.WriteLine($"{description}: {done}/{total} steps ({decile * 10}%)");
        });
    }
}
