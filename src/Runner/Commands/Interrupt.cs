using System.Runtime.InteropServices;

namespace NativeEngine.Runner.Commands;

/// <summary>
/// SIGINT (Ctrl-C) and SIGTERM (what cluster schedulers send before killing a job) as a cancellation: long work stops
/// at its next check, writes its checkpoint or what it did, and the command exits 130 or 143. A second signal is
/// not intercepted, so it ends the process at once.
/// </summary>
public sealed class Interrupt : IDisposable
{
    private readonly CancellationTokenSource source;
    private readonly PosixSignalRegistration[] registrations;
    private int signal;  // the first signal received (PosixSignal), 0 before any

    private Interrupt(CancellationToken outside)
    {
        source = CancellationTokenSource.CreateLinkedTokenSource(outside);
        registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal),
            PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal)];
    }

    /// <summary>Listens from now until disposed; <paramref name="outside"/> cancels too (as SIGINT would).</summary>
    public static Interrupt Listen(CancellationToken outside = default) => new(outside);

    public CancellationToken Token => source.Token;

    /// <summary>Whether a signal (or the outside token) asked the work to stop.</summary>
    public bool Requested => source.IsCancellationRequested;

    /// <summary>143 after SIGTERM, else 130.</summary>
    public int ExitCode => signal == (int)PosixSignal.SIGTERM ? ExitCodes.Terminated : ExitCodes.Interrupted;

    /// <summary>What stopped the work, for messages.</summary>
    public string Cause => signal == (int)PosixSignal.SIGTERM ? "SIGTERM" : signal == (int)PosixSignal.SIGINT ? "Ctrl-C" : "a cancellation";

    private void OnSignal(PosixSignalContext context)
    {
        // The first signal cancels the work; a later one keeps its default action and ends the process.
        if (Interlocked.CompareExchange(ref signal, (int)context.Signal, 0) != 0) return;
        context.Cancel = true;
        try { source.Cancel(); }
        catch (ObjectDisposedException) { }
    }

    public void Dispose()
    {
        foreach (var registration in registrations) registration.Dispose();
        source.Dispose();
    }
}
