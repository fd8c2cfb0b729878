using NativeEngine.Runner.Analysis;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// Recovery of the true features over training: at some curve points a copy of the decoder is measured against the
/// truth (<see cref="Recovery"/>) on a worker thread, so the training loop pays only for the copy; the results are
/// written into the curve when settled (before a checkpoint and at the end).
/// </summary>
internal sealed class RecoveryTracker(float[]? truth, int truthCount, int dSae, int d)
{
    /// <summary>About this many measurements over a run (every tenth of the ~200 curve points).</summary>
    public const int Points = 20;

    private readonly List<(int CurveIndex, Task<Recovery> Measurement)> pending = [];

    public bool Enabled => truth is not null;

    /// <param name="wDec">The decoder [dSae][d] at the curve point; the tracker keeps it, so pass a copy.</param>
    public void Measure(int curveIndex, float[] wDec)
    {
        // A decoder that is not finite has no recovery (and the run stops at that step anyway).
        if (truth is null || !wDec.All(float.IsFinite)) return;
        pending.Add((curveIndex, Task.Run(() => Recovery.Measure(truth, truthCount, wDec, dSae, d))));
    }

    /// <summary>Waits for the measurements still running and writes them into their curve points.</summary>
    public void Settle(List<FactorizeCurvePoint> curve)
    {
        foreach (var (index, measurement) in pending)
        {
            var r = measurement.GetAwaiter().GetResult();
            curve[index] = curve[index] with { Mmcs = r.Mmcs, MatchedCosine = r.MatchedCosine };
        }
        pending.Clear();
    }
}
