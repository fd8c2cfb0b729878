using System.Diagnostics;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;

namespace NativeEngine.Runner.Experiments;

/// <summary>A finished toy run: parameters, evaluation loss and metrics of every instance.</summary>
public sealed record ToyRunResult(
    ToyConfig Config,
    DeviceInfo Device,
    long Steps,
    double Seconds,
    float[] W,     // [instances][n][m]
    float[] B,     // [instances][n]
    float[] Loss,  // [instances], on fresh evaluation batches
    ToyMetrics[] Metrics)
{
    public ReadOnlySpan<float> InstanceW(int k) => W.AsSpan(k * Config.NFeatures * Config.NHidden, Config.NFeatures * Config.NHidden);
    public ReadOnlySpan<float> InstanceB(int k) => B.AsSpan(k * Config.NFeatures, Config.NFeatures);

    /// <summary>Index of the instance with the lowest loss among <paramref name="instances"/>.</summary>
    public int BestOf(IEnumerable<int> instances) => instances.MinBy(k => Loss[k]);
}

/// <summary>Trains a toy config on a context, reporting progress, and measures the result.</summary>
public static class ToyTraining
{
    /// <summary>Fresh batches the final loss is averaged over.</summary>
    public const int EvaluationBatches = 16;

    /// <param name="progress">Called with (steps done, steps total) after each chunk of steps.</param>
    /// <param name="stop">Ends training after the current chunk; the result then holds the steps done so far.</param>
    public static ToyRunResult Run(EngineContext context, ToyConfig config, Action<long, long>? progress = null,
        CancellationToken stop = default)
    {
        using var model = new ToyModel(context, config.ToSpec(), config.ImportancePerInstance(),
            config.ProbabilityPerInstance());
        var clock = Stopwatch.StartNew();
        // Chunks sized for about a quarter second each: progress stays live, and the per-call cost stays
        // negligible (the CUDA backend runs a whole chunk in one launch).
        long done = 0, chunk = 8;
        while (done < config.Steps && !stop.IsCancellationRequested)
        {
            var count = Math.Min(chunk, config.Steps - done);
            var start = clock.Elapsed.TotalSeconds;
            model.Train(count);
            done += count;
            progress?.Invoke(done, config.Steps);
            var elapsed = Math.Max(clock.Elapsed.TotalSeconds - start, 1e-6);
            chunk = Math.Clamp((long)(count * 0.25 / elapsed), 1, 4096);
        }
        var seconds = clock.Elapsed.TotalSeconds;
        var loss = model.Evaluate(EvaluationBatches);
        var (w, b) = model.GetParameters();
        var metrics = Enumerable.Range(0, config.NInstances)
            .Select(k => ToyMetrics.Compute(w.AsSpan(k * config.NFeatures * config.NHidden, config.NFeatures * config.NHidden),
                config.NFeatures, config.NHidden))
            .ToArray();
        return new ToyRunResult(config, context.Device, done, seconds, w, b, loss, metrics);
    }
}
