using System.Diagnostics;
using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>One point of the training curves; at some of them, with the true features known, the decoder's recovery.</summary>
public sealed record FactorizeCurvePoint(long Step, long Tokens, double Mse, double Fvu, double L0, double Auxk, long Dead,
    double? Mmcs = null, double? MatchedCosine = null);

/// <summary>The measured dictionary: SCIENCE §3's metrics, the last two (and each true feature's best decoder cosine)
/// when the true features are known.</summary>
/// <param name="Truth">SynthSAEBench's metrics, when samples with known codes exist (synthetic data, files written
/// with their generator's settings, harvests with their codes).</param>
public sealed record FactorizeMetrics(double Mse, double Fvu, double L0, double DeadFraction, double DenseFraction,
    double? Mmcs, double? MatchedCosine, long Tokens, double Seconds, double TokensPerSecond,
    IReadOnlyList<double>? BestCosines = null, TruthEvaluation.Result? Truth = null);

/// <summary>A decoder against the true features: MMCS, the one-to-one matched cosine (null when not asked for), and
/// per true feature its best cosine to any atom.</summary>
public sealed record Recovery(double Mmcs, double? MatchedCosine, double[] BestCosines)
{
    /// <param name="truth">[count][d], one true feature per row.</param>
    /// <param name="wDec">[dSae][d], one atom per row.</param>
    /// <param name="matched">Whether to find the one-to-one assignment (the Hungarian algorithm, about
    /// count · dSae · min(count, dSae) steps: minutes at SynthSAEBench's 16 384 features and 4 096 latents).</param>
    /// <param name="product">The engine's GEMM for the cosines (<see cref="Factorization.Product"/>); null: a dot
    /// product per pair.</param>
    public static Recovery Measure(float[] truth, int count, float[] wDec, int dSae, int d, bool matched = true,
        DictionaryMetrics.MatrixProduct? product = null)
    {
        if (!matched && product is not null)
        {
            // MMCS and the best cosines alone: no cosine matrix kept (16 384 × 4 096 doubles at SynthSAEBench's size).
            var bestOnly = DictionaryMetrics.BestCosines(truth, count, wDec, dSae, d, product);
            return new Recovery(count > 0 ? bestOnly.Average() : 0, null, bestOnly);
        }
        var cos = DictionaryMetrics.Cosines(truth, count, wDec, dSae, d, product);
        var best = new double[count];
        for (var i = 0; i < count; i++)
        {
            best[i] = double.NegativeInfinity;
            for (var j = 0; j < dSae; j++) best[i] = Math.Max(best[i], cos[i, j]);
        }
        return new Recovery(DictionaryMetrics.Mmcs(cos), matched ? DictionaryMetrics.MatchedCosine(cos).Mean : null, best);
    }

    /// <summary>The Hungarian algorithm's steps for an assignment of count features to dSae atoms.</summary>
    public static double AssignmentWork(int count, int dSae) => (double)count * dSae * Math.Min(count, dSae);
}

/// <summary>
/// What a factorization needs besides its loop (<see cref="FactorizeExperiment"/>): its data, the learning-rate
/// schedule, the measurement of a dictionary, and checkpoints.
/// </summary>
public static class Factorization
{
    /// <summary>A latent firing on more than this share of tokens counts as dense.</summary>
    public const double DenseDensity = 0.1;
    public const int EvaluationBatches = 8;

    /// <summary>The engine's CPU GEMM (ne_sgemm) on a CPU context, for the cosines of a dictionary against its truth
    /// (16 384 × 4 096 × 768 multiply-adds at SynthSAEBench's size); null on a CUDA context (a dot product per pair
    /// then, on the many cores beside a GPU).</summary>
    public static DictionaryMetrics.MatrixProduct? Product(EngineContext context) =>
        context.Capabilities.Sgemm ? (m, n, k, a, b, c) => Gemm.Sgemm(context, m, n, k, a, b, c) : null;

    /// <summary>The native SAE a config trains, for activations of dimension d.</summary>
    public static SaeModelSpec ModelSpec(FactorizeConfig c, int d) =>
        new(c.Sae.Architecture, d, c.Sae.DSae, c.Sae.K ?? 0, c.Train.BatchSize, c.Train.Seed, c.Sae.DeadWindow,
            L1Coefficient: (float)c.Sae.L1Coefficient, L0Coefficient: (float)c.Sae.L0Coefficient,
            JumpBandwidth: (float)c.Sae.JumpBandwidth,
            AuxkAlpha: (float)c.Sae.AuxkAlpha, Precision: c.Train.Precision, MatryoshkaWidths: c.Sae.MatryoshkaWidths,
            ResidualThreshold: (float)(c.Sae.Pursuit?.ResidualThreshold ?? 1e-2), MaxIterations: c.Sae.Pursuit?.MaxIterations ?? 0,
            StopOnDuplicateSupport: c.Sae.Pursuit?.StopOnDuplicateSupport ?? true, MatryoshkaAuxLoss: c.Sae.MatryoshkaAuxLoss);

    /// <summary>The batches a config reads, and the ground truth when it is known.</summary>
    public static (IActivationBatches Source, KnownTruth? Truth) OpenData(EngineContext context, FactorizeConfig c,
        bool prefetch = true) =>
        OpenData(context, c.Data, c.Train.BatchSize, c.Train.Seed, prefetch);

    /// <summary>A config's synthetic generator, its ground truth built (minutes for the SynthSAEBench-16k dictionary on
    /// a CPU).</summary>
    public static SynthGenerator Synthetic(EngineContext context, SyntheticSpec s) => new(context, s.Generator);

    /// <summary>Whether building a generator's truth takes long enough to say so: the orthogonalisation's two GEMMs of
    /// n² d per step, beyond about 10^11 multiply-adds.</summary>
    public static bool SlowToBuild(SyntheticSpec s) =>
        2.0 * s.Generator.OrthoSteps * s.Generator.NFeatures * s.Generator.NFeatures * s.Generator.D > 1e11;

    /// <param name="seed">The files' shuffle.</param>
    public static (IActivationBatches Source, KnownTruth? Truth) OpenData(EngineContext context, DataSpec data, int batchSize,
        ulong seed, bool prefetch = true)
    {
        switch (data)
        {
            case SyntheticSpec s:
                var synthetic = new SyntheticSource(Synthetic(context, s), batchSize);
                return (synthetic, KnownTruth.Of(synthetic.Generator));
            case FilesSpec f:
                var source = ActivationSource.Open(f.ToActivationFiles(),
                    new ActivationSourceOptions(batchSize, Seed: seed, Prefetch: prefetch, NonFinite: f.NonFinite));
                try
                {
                    return (source, KnownTruth.Beside(context, f.Files[0], source.D));
                }
                catch
                {
                    source.Dispose();
                    throw;
                }
            default:
                throw new InvalidOperationException("unknown data spec");
        }
    }

    /// <summary>lr at a step: linear warm-up over warmup_steps, then constant, then linear decay to 0 over the
    /// last decay_steps.</summary>
    public static float LearningRate(TrainSpec t, long step, long totalSteps)
    {
        var lr = t.Lr;
        if (t.WarmupSteps > 0) lr *= Math.Min(1.0, (step + 1) / (double)t.WarmupSteps);
        if (t.DecaySteps > 0 && step >= totalSteps - t.DecaySteps)
            lr *= Math.Max(0.0, (totalSteps - step) / (double)t.DecaySteps);
        return (float)Math.Max(lr, 1e-12);
    }

    /// <summary>The metrics over <paramref name="batches"/> batches; cancelling throws OperationCanceledException.</summary>
    /// <param name="inputScale">The scale training applied to every batch (normalize_activations): the model is
    /// measured on the inputs it was trained on, and the MSE given in the input's units (divided by the scale squared).
    /// </param>
    public static FactorizeMetrics Measure(SparseAutoencoder sae, IActivationBatches source, KnownTruth? truth,
        long tokens, double seconds, out float[] log10Density, int batches = EvaluationBatches, CancellationToken cancel = default,
        float inputScale = 1f, DictionaryMetrics.MatrixProduct? product = null)
    {
        var spec = sae.Spec;
        var fire = new long[spec.DSae];
        double mse = 0, fvu = 0, l0 = 0;
        long evaluated = 0;
        for (var b = 0; b < batches; b++)
        {
            cancel.ThrowIfCancellationRequested();
            var batch = ScaledForModel(source.Next(), inputScale);
            var stats = sae.Evaluate(batch, default, fire);
            mse += stats.Mse / ((double)inputScale * inputScale);
            fvu += stats.Fvu;
            l0 += stats.L0;
            evaluated += batch.Length / spec.DIn;
        }
        log10Density = fire.Select(f => (float)Math.Log10(f / (double)evaluated + 1e-10)).ToArray();
        var recovery = truth is null ? null : Recovery.Measure(truth.Features, truth.Count, sae.GetParameters().WDec, spec.DSae, spec.DIn,
            product: product);
        return new FactorizeMetrics(mse / batches, fvu / batches, l0 / batches,
            fire.Count(f => f == 0) / (double)spec.DSae, fire.Count(f => f > DenseDensity * evaluated) / (double)spec.DSae,
            recovery?.Mmcs, recovery?.MatchedCosine, tokens, seconds, seconds > 0 ? tokens / seconds : 0, recovery?.BestCosines);
    }

    /// <summary>A batch as the model saw it in training: scaled by <paramref name="scale"/> (a copy; the source's buffer
    /// is left as it is).</summary>
    internal static ReadOnlySpan<float> ScaledForModel(ReadOnlyMemory<float> batch, float scale)
    {
        if (scale == 1f) return batch.Span;  // Scale would leave it as it is; no copy
        var copy = batch.ToArray();
        FactorizeExperiment.Scale(copy, scale);
        return copy;
    }

    /// <summary>metrics.json: the metrics (null where not finite), with the tokens of non-finite input skipped when
    /// there were any.</summary>
    /// <param name="tuning">"sparsity_tuning" (the coefficient's trajectory and final value), when the run had a
    /// controller or a warm-up.</param>
    public static string MetricsJson(FactorizeMetrics m, long skippedTokens = 0, System.Text.Json.Nodes.JsonObject? tuning = null)
    {
        return Json.Document(w =>
        {
            w.WriteStartObject();
            Json.Number(w, "mse", m.Mse);
            Json.Number(w, "fvu", m.Fvu);
            Json.Number(w, "l0", m.L0);
            Json.Number(w, "dead_fraction", m.DeadFraction);
            Json.Number(w, "dense_fraction", m.DenseFraction);
            if (m.Mmcs is { } mmcs) Json.Number(w, "mmcs", mmcs);
            if (m.MatchedCosine is { } matched) Json.Number(w, "matched_cosine", matched);
            w.WriteNumber("tokens", m.Tokens);
            Json.Number(w, "seconds", m.Seconds);
            Json.Number(w, "tokens_per_second", m.TokensPerSecond);
            if (skippedTokens > 0) w.WriteNumber("skipped_non_finite_tokens", skippedTokens);
            if (m.Truth is { } truth) WriteTruth(w, truth);
            if (tuning is not null)
            {
                w.WritePropertyName("sparsity_tuning");
                tuning.WriteTo(w);
            }
            w.WriteEndObject();
        });
    }

    /// <summary>The key of SynthSAEBench's metrics in metrics.json.</summary>
    public const string TruthKey = "synthsaebench";

    private static void WriteTruth(System.Text.Json.Utf8JsonWriter w, TruthEvaluation.Result truth)
    {
        var r = truth.Metrics;
        w.WriteStartObject(TruthKey);
        Json.Number(w, "mcc", r.Mcc);
        Json.Number(w, "uniqueness", r.Uniqueness);
        Json.Number(w, "precision", r.Precision);
        Json.Number(w, "recall", r.Recall);
        Json.Number(w, "f1", r.F1);
        Json.Number(w, "accuracy", r.Accuracy);
        Json.Number(w, "explained_variance", r.ExplainedVariance);
        Json.Number(w, "shrinkage", r.Shrinkage);
        w.WriteNumber("dead_latents", r.DeadLatents);
        Json.Number(w, "l0", r.L0);
        Json.Number(w, "true_l0", r.TrueL0);
        w.WriteNumber("samples", truth.Samples);
        w.WriteString("samples_from", truth.Source);
        Json.Number(w, "seconds", truth.Seconds);
        w.WriteEndObject();
    }

    /// <summary>metrics.json of a run that stopped on a value that was not finite: no metrics (null), where it
    /// stopped, and how far it got.</summary>
    public static string StoppedMetricsJson(NonFinite where, long tokens, double seconds) => Json.Document(w =>
    {
        w.WriteStartObject();
        foreach (var key in new[] { "mse", "fvu", "l0", "dead_fraction", "dense_fraction" }) w.WriteNull(key);
        w.WriteNumber("tokens", tokens);
        Json.Number(w, "seconds", seconds);
        NonFiniteException.Write(w, where);
        w.WriteEndObject();
    });
}
