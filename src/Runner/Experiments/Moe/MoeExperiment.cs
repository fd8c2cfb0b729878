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
    /// finite stops training as in <see cref="ToyExperiment.Run"/>. On several processes (<paramref name="ranks"/>, by
    /// default the world) the instances are split across them and the first rank claims and writes the folder.</summary>
    public static MoeRunResult Run(EngineContext context, MoeConfig config, string outDir, IRunProgress progress,
        CancellationToken cancel, bool force = false, Communicator? ranks = null)
    {
        var world = ranks ?? Communicator.World;
        if (world.Rank == 0) RunFolder.Claim(outDir, Kind, MoeConfigWriter.ToJson(config), force);
        if (config.RouterStarvedOfTaskGradient)
            progress.Warn("top_k = 1 with renormalised gates: every gate is exactly 1, so the router gets no gradient " +
                          "from the task loss and learns only from load_balance and z_loss. Set \"router\": " +
                          "{\"renormalize\": false} or top_k >= 2 for a router that learns from the task.");
        var run = Train(context, config, progress, cancel, world);
        if (world.Rank == 0)
        {
            MoeRunFolder.Write(outDir, run);
            MoeReport.Write(outDir, run);
            RunFolder.Finish(outDir, run.NonFinite is not null ? RunFolder.Status.NonFinite
                : run.Completed ? RunFolder.Status.Completed : RunFolder.Status.Interrupted);
        }
        world.Barrier();
        // Every rank holds the gathered result, so all of them stop here together.
        if (run.NonFinite is { } where)
            throw new NonFiniteException($"{outDir}: {NonFiniteException.Describe(where, config.Run.Steps, config.Run.Lr, instances: true)}. " +
                                         "results.json holds the last finite parameters of that instance and \"non_finite\"; " +
                                         "lower lr and run again", where) { EveryRank = world.Size > 1 };
        return run;
    }

    /// <summary>Trains and measures, writing nothing; split across <paramref name="ranks"/> (by default the world),
    /// every rank returns the whole result.</summary>
    public static MoeRunResult Train(EngineContext context, MoeConfig config, IRunProgress progress,
        CancellationToken cancel = default, Communicator? ranks = null)
    {
        var run = config.Run;
        var world = ranks ?? Communicator.World;
        var split = world.Size > 1 ? new InstanceSplit(world, run.NInstances) : null;
        using var model = split is null ? CreateModel(context, config, null) : split.Count > 0 ? CreateModel(context, config, split) : null;
        var phase = $"moe on {context.Device.Backend.ToString().ToLowerInvariant()}";
        var (done, seconds) = split is null
            ? ToyExperiment.TrainInChunks(model!.Train, run.Steps, progress.For(phase), cancel, () => model!.NonFinite is not null)
            : split.TrainInChunks(steps => model!.Train(steps), run.Steps, progress.For(phase), cancel, () => model?.NonFinite is not null);
        var evaluations = model?.Evaluate(ToyExperiment.EvaluationBatches) ?? [];
        var parameters = model?.GetParameters();
        var nonFinite = split is null ? model!.NonFinite : split.Earliest(model?.NonFinite);
        if (split is not null)
        {
            int n = run.NFeatures, m = config.ExpertHidden, E = config.NExperts, fields = 5 + E;
            var gathered = split.Gather(evaluations.SelectMany(e =>
                new[] { e.Loss, e.L1Penalty, e.BalanceLoss, e.ZLoss, e.DroppedFraction }.Concat(e.Usage)).ToArray(), fields);
            evaluations = Enumerable.Range(0, run.NInstances).Select(k =>
            {
                var o = gathered.AsSpan(k * fields, fields);
                return new MoeEvaluation(o[0], o[1], o[2], o[3], o[4], o[5..].ToArray());
            }).ToArray();
            parameters = new MoeParameters(split.Gather(parameters?.W ?? [], E * n * m), split.Gather(parameters?.B ?? [], E * n),
                split.Gather(parameters?.WGate ?? [], n * E), split.Gather(parameters?.WNoise ?? [], n * E),
                split.Gather(parameters?.RouteBias ?? [], E));
        }
        var result = new MoeRunResult(config, context.Device, done, seconds, parameters!, [], nonFinite);
        var metrics = Enumerable.Range(0, run.NInstances).Select(k => Measure(result, k, evaluations[k])).ToArray();
        return result with { Metrics = metrics };
    }

    /// <summary>The native model of a config, or of this rank's part of its instances, with its L1 coefficients and
    /// feature sets applied.</summary>
    private static MoeModel CreateModel(EngineContext context, MoeConfig config, InstanceSplit? part)
    {
        var run = config.Run;
        var n = run.NFeatures;
        var model = part is null
            ? new MoeModel(context, config.ToSpec(), run.ImportancePerInstance(), run.FeatureProbability)
            : new MoeModel(context, config.ToSpec() with { NInstances = part.Count }, part.First, part.Total,
                part.Mine(run.ImportancePerInstance(), n), part.Mine(run.FeatureProbability, n));
        try
        {
            var l1 = part is null ? run.L1 : part.Mine(run.L1, 1);
            if (l1.Any(v => v != 0)) model.SetL1(l1);
            if (run.FeatureSets.Length > 0)
                model.SetFeatureSets(run.SetOfFeature(), run.FeatureSets.Select(s => s.Kind).ToArray());
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
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
