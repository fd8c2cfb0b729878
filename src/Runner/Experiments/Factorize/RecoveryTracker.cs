using NativeEngine.Runner.Analysis;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// Recovery of the true features over training: at some curve points a copy of the decoder is measured against the
/// truth (<see cref="Recovery"/>) on a worker thread, so the training loop pays only for the copy; the results are
/// written into the curve when settled (before a checkpoint and at the end). The worker shares the training's cores,
/// so its cost must stay small beside training's: the one-to-one matched cosine is left out of the curve above
/// <see cref="MaxAssignmentWork"/> (the final metrics still have it), where the Hungarian algorithm would cost more
/// per point than hundreds of training steps.
/// </summary>
internal sealed class RecoveryTracker(float[]? truth, int truthCount, int dSae, int d,
    DictionaryMetrics.MatrixProduct? product = null)
{
    /// <summary>About this many measurements over a run (every tenth of the ~200 curve points).</summary>
    public const int Points = 20;

    /// <summary>The largest assignment (<see cref="Recovery.AssignmentWork"/>) measured at each curve point: 2^33
    /// steps, a few seconds; 2 048 features against 2 048 latents is below it, SynthSAEBench's 16k truth against 4 096
    /// latents (2.7·10^11) above.</summary>
    public const double MaxAssignmentWork = 8_589_934_592.0;

    private readonly bool matched = Recovery.AssignmentWork(truthCount, dSae) <= MaxAssignmentWork;

    private readonly List<(int CurveIndex, Task<Recovery> Measurement)> pending = [];

    public bool Enabled => truth is not null;

    /// <param name="wDec">The decoder [dSae][d] at the curve point; the tracker keeps it, so pass a copy.</param>
    public void Measure(int curveIndex, float[] wDec)
    {
        // A decoder that is not finite has no recovery (and the run stops at that step anyway).
        if (truth is null || !wDec.All(float.IsFinite)) return;
        pending.Add((curveIndex, Task.Run(() => Recovery.Measure(truth, truthCount, wDec, dSae, d, matched, product))));
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
