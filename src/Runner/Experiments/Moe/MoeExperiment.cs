using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;

namespace NativeEngine.Runner.Experiments;

/// <summary>One MoE instance measured: its evaluation, each expert's geometry and the summary across experts.</summary>
public sealed record MoeInstanceMetrics(MoeEvaluation Evaluation, ToyMetrics[] Experts, NeuronMetrics[]? Neurons,
    SuperpositionSummary Summary, double ActiveFlopsPerSample)
{
    /// <summary>Training objective: task loss plus every auxiliary term.</summary>
    public double Objective => Evaluation.Loss + Evaluation.L1Penalty + Evaluation.BalanceLoss + Evaluation.ZLoss;

    public double LossPerActiveFlop => Evaluation.Loss / ActiveFlopsPerSample;
}

public sealed record MoeRunResult(MoeConfig Config, DeviceInfo Device, long Steps, double Seconds,
    MoeParameters Parameters, MoeInstanceMetrics[] Metrics, NonFinite? NonFinite = null)
{
    private int ExpertSize => Config.Run.NFeatures * Config.ExpertHidden;

    public bool Completed => Steps >= Config.Run.Steps && NonFinite is null;

    /// <summary>W of expert e of instance k: [n][m].</summary>
    public ReadOnlySpan<float> ExpertW(int k, int e) =>
        Parameters.W.AsSpan((k * Config.NExperts + e) * ExpertSize, ExpertSize);

    public int BestOf(IEnumerable<int> instances) => instances.MinBy(k => Metrics[k].Objective);

    public IReadOnlyList<int> ShownInstances() =>
        Config.Run.Sweep is { KeepAll: true } || Config.Run.Sweep is null
            ? Enumerable.Range(0, Config.Run.NInstances).ToArray()
            : Config.Run.Settings.Select(s => BestOf(s.Instances)).ToArray();
}

/// <summary>
/// Mixture-of-experts toy models (SCIENCE.md §2): trains a config's instances, measures each expert's geometry and
/// the superposition across experts, and writes the run folder (<see cref="MoeRunFolder"/>, <see cref="MoeReport"/>).
/// </summary>
public static class MoeExperiment
{
    public const string Kind = "moe";

    /// <summary>Claims, trains, measures and writes the run folder <paramref name="outDir"/>. Cancelling stops training
    /// after the current chunk of steps; what was trained is still measured and written. A value that stops being
    /// finite stops training as in <see cref="ToyExperiment.Run"/>.</summary>
    public static MoeRunResult Run(EngineContext context, MoeConfig config, string outDir, IRunProgress progress,
        CancellationToken cancel, bool force = false)
    {
        RunFolder.Claim(outDir, Kind, MoeConfigWriter.ToJson(config), force);
        if (config.RouterStarvedOfTaskGradient)
            progress.Warn("top_k = 1 with renormalised gates: every gate is exactly 1, so the router gets no gradient " +
                          "from the task loss and learns only from load_balance and z_loss. Set \"router\": " +
                          "{\"renormalize\": false} or top_k >= 2 for a router that learns from the task.");
        var run = Train(context, config, progress, cancel);
        MoeRunFolder.Write(outDir, run);
        MoeReport.Write(outDir, run);
        RunFolder.Finish(outDir, run.NonFinite is not null ? RunFolder.Status.NonFinite
            : run.Completed ? RunFolder.Status.Completed : RunFolder.Status.Interrupted);
        if (run.NonFinite is { } where)
            throw new NonFiniteException($"{outDir}: {NonFiniteException.Describe(where, config.Run.Steps, config.Run.Lr, instances: true)}. " +
                                         "results.json holds the last finite parameters of that instance and \"non_finite\"; " +
                                         "lower lr and run again", where);
        return run;
    }

    /// <summary>Trains and measures, writing nothing.</summary>
    public static MoeRunResult Train(EngineContext context, MoeConfig config, IRunProgress progress,
        CancellationToken cancel = default)
    {
        var run = config.Run;
        using var model = new MoeModel(context, config.ToSpec(), run.ImportancePerInstance(), run.FeatureProbability);
        if (run.L1.Any(v => v != 0)) model.SetL1(run.L1);
        if (run.FeatureSets.Length > 0)
            model.SetFeatureSets(run.SetOfFeature(), run.FeatureSets.Select(s => s.Kind).ToArray());
        var phase = $"moe on {context.Device.Backend.ToString().ToLowerInvariant()}";
        var (done, seconds) = ToyExperiment.TrainInChunks(model.Train, run.Steps, progress.For(phase), cancel,
            () => model.NonFinite is not null);
        var evaluations = model.Evaluate(ToyExperiment.EvaluationBatches);
        var parameters = model.GetParameters();
        var result = new MoeRunResult(config, context.Device, done, seconds, parameters, [], model.NonFinite);
        var metrics = Enumerable.Range(0, run.NInstances).Select(k => Measure(result, k, evaluations[k])).ToArray();
        return result with { Metrics = metrics };
    }

    private static MoeInstanceMetrics Measure(MoeRunResult result, int k, MoeEvaluation evaluation)
    {
        var c = result.Config;
        var n = c.Run.NFeatures;
        var m = c.ExpertHidden;
        var experts = Enumerable.Range(0, c.NExperts).Select(e => ToyMetrics.Compute(result.ExpertW(k, e), n, m)).ToArray();
        var neurons = c.Run.HasPrivilegedBasis
            ? Enumerable.Range(0, c.NExperts)
                .Select(e => NeuronMetrics.Compute(result.ExpertW(k, e), n, m, c.Run.PolysemanticityThreshold)).ToArray()
            : null;
        var summary = SuperpositionSummary.Of(
            experts.Select((metrics, e) => ((double)evaluation.Usage[e], metrics)).ToArray(), m, c.TopK);
        return new MoeInstanceMetrics(evaluation, experts, neurons, summary, c.ActiveFlopsPerSample);
    }
}
