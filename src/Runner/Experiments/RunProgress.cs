namespace NativeEngine.Runner.Experiments;

/// <summary>
/// How a running experiment reports to whoever started it: how far its current phase has come, and warnings worth
/// showing while it runs. Commands show these on the console; tests and callers that want quiet pass
/// <see cref="RunProgress.Silent"/>. An experiment that calls another passes its own progress on.
/// </summary>
public interface IRunProgress
{
    /// <summary>A phase advanced: <paramref name="done"/> of <paramref name="total"/> units (steps, tokens).</summary>
    void Report(string phase, long done, long total);

    /// <summary>A line worth showing while the run goes on (where it resumed, what it is about to do).</summary>
    void Note(string message);

    /// <summary>Something the user should know while the run goes on (it does not stop the run).</summary>
    void Warn(string message);
}

public static class RunProgress
{
    public static readonly IRunProgress Silent = new SilentProgress();

    /// <summary>A progress callback (done, total) for one phase.</summary>
    public static Action<long, long> For(this IRunProgress progress, string phase) =>
        (done, total) => progress.Report(phase, done, total);

    private sealed class SilentProgress : IRunProgress
    {
        public void Report(string phase, long done, long total) { }
        public void Note(string message) { }
        public void Warn(string message) { }
    }
}
