using System.Diagnostics;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;

namespace NativeEngine.Runner.Experiments;

/// <summary>A finished toy run: parameters, evaluation loss and metrics of every instance. Steps below the config's
/// mean training was interrupted there.</summary>
public sealed record ToyRunResult(
    ToyConfig Config,
    DeviceInfo Device,
    long Steps,
    double Seconds,
    float[] W,       // [instances][n][m]
    float[]? WOut,   // [instances][n][m], untied models only
    float[] B,       // [instances][n]
    float[] Loss,    // [instances] task loss on fresh evaluation batches
    float[] Penalty, // [instances] L1 term on the same batches
    ToyMetrics[] Metrics,
    NeuronMetrics[]? Neurons,  // privileged-basis models only
    NonFinite? NonFinite = null)  // the step training stopped at, when a value stopped being finite
{
    private int MatrixSize => Config.NFeatures * Config.NHidden;

    public bool Completed => Steps >= Config.Steps && NonFinite is null;

    public ReadOnlySpan<float> InstanceW(int k) => W.AsSpan(k * MatrixSize, MatrixSize);
    public ReadOnlySpan<float> InstanceWOut(int k) => WOut is null ? default : WOut.AsSpan(k * MatrixSize, MatrixSize);
    public ReadOnlySpan<float> InstanceB(int k) => B.AsSpan(k * Config.NFeatures, Config.NFeatures);

    /// <summary>What training minimised for instance k: task loss plus the L1 term.</summary>
    public double Objective(int k) => Loss[k] + Penalty[k];

    /// <summary>The instance with the lowest training objective among <paramref name="instances"/>.</summary>
    public int BestOf(IEnumerable<int> instances) => instances.MinBy(Objective);

    /// <summary>The instances a report shows: the best of each setting, or every instance when the sweep keeps all.</summary>
    public IReadOnlyList<int> ShownInstances() =>
        Config.Sweep is { KeepAll: true } || Config.Sweep is null
            ? Enumerable.Range(0, Config.NInstances).ToArray()
            : Config.Settings.Select(s => BestOf(s.Instances)).ToArray();
}

/// <summary>
/// The toy models of superposition (SCIENCE.md §1): trains a config's instances together, measures every instance
/// and writes the run folder (<see cref="ToyRunFolder"/>, <see cref="ToyReport"/>).
/// </summary>
public static class ToyExperiment
{
    /// <summary>Fresh batches the final loss is averaged over.</summary>
    public const int EvaluationBatches = 16;

    public const string Kind = "toy";

    /// <summary>Claims, trains, measures and writes the run folder <paramref name="outDir"/>. Cancelling stops training
    /// after the current chunk of steps; what was trained is still measured and written (the result says how far).
    /// A value that stops being finite stops training too: the folder is written (that instance with its last finite
    /// parameters, non-finite numbers as null, "non_finite" in results.json), then a <see cref="NonFiniteException"/>
    /// says where. <paramref name="force"/>: see <see cref="RunFolder.Claim"/>. On several processes
    /// (<paramref name="ranks"/>, by default the world) the instances are split across them and the first rank claims
    /// and writes the folder.</summary>
    public static ToyRunResult Run(EngineContext context, ToyConfig config, string outDir, IRunProgress progress,
        CancellationToken cancel, bool force = false, Communicator? ranks = null)
    {
        var world = ranks ?? Communicator.World;
        if (world.Rank == 0) RunFolder.Claim(outDir, Kind, ToyConfigWriter.ToJson(config), force);
        var run = Train(context, config, progress, cancel, world);
        if (world.Rank == 0)
        {
            ToyRunFolder.Write(outDir, run);
            ToyReport.Write(outDir, run);
            RunFolder.Finish(outDir, run.NonFinite is not null ? RunFolder.Status.NonFinite
                : run.Completed ? RunFolder.Status.Completed : RunFolder.Status.Interrupted);
        }
        world.Barrier();  // the run folder is complete when any rank returns
        // Every rank holds the gathered result, so all of them stop here together.
        if (run.NonFinite is { } where)
            throw new NonFiniteException($"{outDir}: {NonFiniteException.Describe(where, config.Steps, config.Lr, instances: true)}. " +
                                         "results.json holds the last finite parameters of that instance and \"non_finite\"; " +
                                         "lower lr and run again", where) { EveryRank = world.Size > 1 };
        return run;
    }

    /// <summary>Trains and measures, writing nothing; split across <paramref name="ranks"/> (by default the world),
    /// every rank returns the whole result.</summary>
    public static ToyRunResult Train(EngineContext context, ToyConfig config, IRunProgress progress,
        CancellationToken cancel = default, Communicator? ranks = null)
    {
        var world = ranks ?? Communicator.World;
        var phase = $"{ToyConfig.ModelName(config.Model)} on {context.Device.Backend.ToString().ToLowerInvariant()}";
        if (world.Size > 1) return TrainSplit(context, config, progress.For(phase), cancel, new InstanceSplit(world, config.NInstances));
        using var model = CreateModel(context, config);
        var (done, seconds) = TrainInChunks(model.Train, config.Steps, progress.For(phase), cancel, () => model.NonFinite is not null);
        return Measure(model, config, context.Device, done, seconds) with { NonFinite = model.NonFinite };
    }

    private static ToyRunResult TrainSplit(EngineContext context, ToyConfig config, Action<long, long>? progress,
        CancellationToken cancel, InstanceSplit split)
    {
        using var model = split.Count > 0 ? CreateModel(context, config, split) : null;
        var (done, seconds) = split.TrainInChunks(steps => model!.Train(steps), config.Steps, progress, cancel,
            () => model?.NonFinite is not null);
        int n = config.NFeatures, nm = config.NFeatures * config.NHidden;
        var evaluation = model?.Evaluate(EvaluationBatches);
        var parameters = model?.GetParameters();
        var w = split.Gather(parameters?.W ?? [], nm);
        var wOut = config.Model == ToyModelKind.AbsValue ? split.Gather(parameters?.WOut ?? [], nm) : null;
        var b = split.Gather(parameters?.B ?? [], n);
        return Assemble(config, context.Device, done, seconds, w, wOut, b, split.Gather(evaluation?.Loss ?? [], 1),
            split.Gather(evaluation?.Penalty ?? [], 1)) with { NonFinite = split.Earliest(model?.NonFinite) };
    }

    /// <summary>Runs train(count) until total steps are done or stop is requested, in chunks sized for about a
    /// quarter second each: progress stays live and the per-call cost negligible (a CUDA backend runs a whole
    /// chunk in one launch). <paramref name="diverged"/> is asked after each chunk (a step that was not finite) and
    /// stops training too. Returns the steps done and the seconds they took.</summary>
    public static (long Done, double Seconds) TrainInChunks(Action<long> train, long total, Action<long, long>? progress,
        CancellationToken stop, Func<bool>? diverged = null)
    {
        var clock = Stopwatch.StartNew();
        long done = 0, chunk = 8;
        while (done < total && !stop.IsCancellationRequested && diverged?.Invoke() != true)
        {
            var count = Math.Min(chunk, total - done);
            var start = clock.Elapsed.TotalSeconds;
            train(count);
            done += count;
            progress?.Invoke(done, total);
            var elapsed = Math.Max(clock.Elapsed.TotalSeconds - start, 1e-6);
            chunk = Math.Clamp((long)(count * 0.25 / elapsed), 1, 4096);
        }
        return (done, clock.Elapsed.TotalSeconds);
    }

    /// <summary>The native model of a config (or of this rank's part of its instances), with its L1 coefficients and
    /// feature sets applied.</summary>
    public static ToyModel CreateModel(EngineContext context, ToyConfig config, InstanceSplit? part = null)
    {
        var n = config.NFeatures;
        var model = part is null
            ? new ToyModel(context, config.ToSpec(), config.ImportancePerInstance(), config.FeatureProbability)
            : new ToyModel(context, config.ToSpec() with { NInstances = part.Count }, part.First, part.Total,
                part.Mine(config.ImportancePerInstance(), n), part.Mine(config.FeatureProbability, n));
        var l1 = part is null ? config.L1 : part.Mine(config.L1, 1);
        try
        {
            if (l1.Any(v => v != 0)) model.SetL1(l1);
            if (config.FeatureSets.Length > 0)
                model.SetFeatureSets(config.SetOfFeature(), config.FeatureSets.Select(s => s.Kind).ToArray());
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Evaluates a model and computes every instance's metrics.</summary>
    public static ToyRunResult Measure(ToyModel model, ToyConfig config, DeviceInfo device, long steps, double seconds)
    {
        var evaluation = model.Evaluate(EvaluationBatches);
        var parameters = model.GetParameters();
        return Assemble(config, device, steps, seconds, parameters.W, parameters.WOut, parameters.B, evaluation.Loss,
            evaluation.Penalty);
    }

    /// <summary>Every instance's metrics from its parameters and evaluation.</summary>
    private static ToyRunResult Assemble(ToyConfig config, DeviceInfo device, long steps, double seconds, float[] w,
        float[]? wOut, float[] b, float[] loss, float[] penalty)
    {
        var parameters = new ToyParameters(w, wOut, b);
        var evaluation = new ToyEvaluation(loss, penalty);
        var size = config.NFeatures * config.NHidden;
        var metrics = Enumerable.Range(0, config.NInstances)
            .Select(k => ToyMetrics.Compute(parameters.W.AsSpan(k * size, size), config.NFeatures, config.NHidden))
            .ToArray();
        var neurons = config.HasPrivilegedBasis
            ? Enumerable.Range(0, config.NInstances)
                .Select(k => NeuronMetrics.Compute(parameters.W.AsSpan(k * size, size), config.NFeatures, config.NHidden,
                    config.PolysemanticityThreshold))
                .ToArray()
            : null;
        return new ToyRunResult(config, device, steps, seconds, parameters.W, parameters.WOut, parameters.B,
            evaluation.Loss, evaluation.Penalty, metrics, neurons);
    }
}
