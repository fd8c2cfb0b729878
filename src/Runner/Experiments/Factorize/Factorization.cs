using System.Diagnostics;
using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>One point of the training curves.</summary>
public sealed record FactorizeCurvePoint(long Step, long Tokens, double Mse, double Fvu, double L0, double Auxk, long Dead);

/// <summary>The measured dictionary: SCIENCE §3's metrics, the last two when the true features are known.</summary>
public sealed record FactorizeMetrics(double Mse, double Fvu, double L0, double DeadFraction, double DenseFraction,
    double? Mmcs, double? MatchedCosine, long Tokens, double Seconds, double TokensPerSecond);

/// <summary>
/// What a factorization needs besides its loop (<see cref="FactorizeExperiment"/>): its data, the learning-rate
/// schedule, the measurement of a dictionary, and checkpoints.
/// </summary>
public static class Factorization
{
    public const string CheckpointFolder = "checkpoint";
    /// <summary>A latent firing on more than this share of tokens counts as dense.</summary>
    public const double DenseDensity = 0.1;
    public const int EvaluationBatches = 8;

    /// <summary>The native SAE a config trains, for activations of dimension d.</summary>
    public static SaeModelSpec ModelSpec(FactorizeConfig c, int d) =>
        new(c.Sae.Architecture, d, c.Sae.DSae, c.Sae.K ?? 0, c.Train.BatchSize, c.Train.Seed, c.Sae.DeadWindow,
            L1Coefficient: (float)c.Sae.L1Coefficient, L0Coefficient: (float)c.Sae.L0Coefficient,
            AuxkAlpha: (float)c.Sae.AuxkAlpha, Precision: c.Train.Precision);

    /// <summary>The batches a config reads, and the true features when they are known.</summary>
    public static (IActivationBatches Source, float[]? Truth, int TruthCount) OpenData(FactorizeConfig c, bool prefetch = true) =>
        OpenData(c.Data, c.Train.BatchSize, c.Train.Seed, prefetch);

    /// <summary>A factorize config's synthetic generator (Sharkey et al.), one token per call.</summary>
    public static SyntheticActivations Synthetic(SyntheticSpec s, int batchTokens = 1, bool prefetch = false) =>
        new(new SyntheticOptions(s.D, s.NFeatures, s.ProbabilityDecay, s.ActiveMean, s.Correlated, Seed: s.Seed,
            BatchTokens: batchTokens, Prefetch: prefetch));

    public static (IActivationBatches Source, float[]? Truth, int TruthCount) OpenData(DataSpec data, int batchSize, ulong seed,
        bool prefetch = true)
    {
        switch (data)
        {
            case SyntheticSpec s:
                var synthetic = Synthetic(s, batchSize, prefetch);
                return (synthetic, synthetic.Features.ToArray(), synthetic.FeatureCount);
            case FilesSpec f:
                var source = ActivationSource.Open(new ActivationFiles(f.Files, f.Format, f.D, f.Tensor),
                    new ActivationSourceOptions(batchSize, Seed: seed, Prefetch: prefetch));
                var (truth, count) = GroundTruthBeside(f.Files[0], source.D);
                return (source, truth, count);
            default:
                throw new InvalidOperationException("unknown data spec");
        }
    }

    // ground_truth.safetensors in the folder of the first shard (as the synthetic generator writes it).
    internal static (float[]?, int) GroundTruthBeside(string pattern, int d)
    {
        var path = Path.Combine(Path.GetDirectoryName(pattern) ?? ".", GroundTruthFile.Name);
        if (!File.Exists(path)) return (null, 0);
        var features = SafeTensors.Read(path).Tensors.FirstOrDefault(t => t.Name == "features");
        return features is { Shape.Length: 2 } && features.Shape[1] == d ? (features.Data, (int)features.Shape[0]) : (null, 0);
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

    public static FactorizeMetrics Measure(SparseAutoencoder sae, IActivationBatches source, float[]? truth, int truthCount,
        long tokens, double seconds, out float[] log10Density, int batches = EvaluationBatches)
    {
        var spec = sae.Spec;
        var fire = new long[spec.DSae];
        double mse = 0, fvu = 0, l0 = 0;
        long evaluated = 0;
        for (var b = 0; b < batches; b++)
        {
            var batch = source.Next().Span;
            var stats = sae.Evaluate(batch, default, fire);
            mse += stats.Mse;
            fvu += stats.Fvu;
            l0 += stats.L0;
            evaluated += batch.Length / spec.DIn;
        }
        log10Density = fire.Select(f => (float)Math.Log10(f / (double)evaluated + 1e-10)).ToArray();
        double? mmcs = null, matched = null;
        if (truth is not null)
        {
            var p = sae.GetParameters();
            var cos = DictionaryMetrics.Cosines(truth, truthCount, p.WDec, spec.DSae, spec.DIn);
            mmcs = DictionaryMetrics.Mmcs(cos);
            matched = DictionaryMetrics.MatchedCosine(cos).Mean;
        }
        return new FactorizeMetrics(mse / batches, fvu / batches, l0 / batches,
            fire.Count(f => f == 0) / (double)spec.DSae, fire.Count(f => f > DenseDensity * evaluated) / (double)spec.DSae,
            mmcs, matched, tokens, seconds, seconds > 0 ? tokens / seconds : 0);
    }

    public static string MetricsJson(FactorizeMetrics m)
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
            w.WriteEndObject();
        });
    }

    /// <summary>Writes a checkpoint folder (weights, optimizer state, data position, curve) beside the run, then
    /// swaps it in by rename, so a crash leaves the previous checkpoint whole.</summary>
    public static void WriteCheckpoint(string runDirectory, SparseAutoencoder sae, IActivationBatches source, long step,
        long tokens, double seconds, IReadOnlyList<FactorizeCurvePoint> curve)
    {
        var final = Path.Combine(runDirectory, CheckpointFolder);
        var temporary = final + ".tmp";
        if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
        Directory.CreateDirectory(temporary);
        var p = sae.GetParameters();
        SafeTensors.Write(Path.Combine(temporary, "params.safetensors"),
        [
            new Tensor("W_enc", [sae.Spec.DIn, sae.Spec.DSae], p.WEnc), new Tensor("b_enc", [sae.Spec.DSae], p.BEnc),
            new Tensor("W_dec", [sae.Spec.DSae, sae.Spec.DIn], p.WDec), new Tensor("b_dec", [sae.Spec.DIn], p.BDec),
            new Tensor("threshold", [sae.Spec.DSae], p.Threshold),
        ]);
        AtomicFile.Write(Path.Combine(temporary, "state.bin"), stream => stream.Write(sae.GetState()));
        AtomicFile.WriteText(Path.Combine(temporary, "source.json"), source.State.ToJson());
        AtomicFile.WriteText(Path.Combine(temporary, "progress.json"), JsonSerializer.Serialize(new CheckpointProgress(step, tokens, seconds, curve.ToArray())));
        var old = final + ".old";
        if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
        if (Directory.Exists(final)) Directory.Move(final, old);
        Directory.Move(temporary, final);
        if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
    }

    public sealed record CheckpointProgress(long Step, long Tokens, double Seconds, FactorizeCurvePoint[] Curve);

    /// <summary>Restores the model and the data position; returns the progress recorded.</summary>
    public static CheckpointProgress ReadCheckpoint(string runDirectory, SparseAutoencoder sae, IActivationBatches source)
    {
        var folder = Path.Combine(runDirectory, CheckpointFolder);
        if (!Directory.Exists(folder))
            throw new ConfigException($"--resume {runDirectory}: no {CheckpointFolder}/ there; a run writes one every " +
                                      "train.checkpoint_every steps and when interrupted");
        var tensors = SafeTensors.Read(Path.Combine(folder, "params.safetensors")).Tensors.ToDictionary(t => t.Name, t => t.Data);
        sae.Restore(new SaeParameters(tensors["W_enc"], tensors["b_enc"], tensors["W_dec"], tensors["b_dec"], tensors["threshold"]),
            File.ReadAllBytes(Path.Combine(folder, "state.bin")));
        source.Restore(SourceState.FromJson(File.ReadAllText(Path.Combine(folder, "source.json"))));
        return JsonSerializer.Deserialize<CheckpointProgress>(File.ReadAllText(Path.Combine(folder, "progress.json")))
               ?? throw new InvalidDataException($"{folder}/progress.json is empty");
    }
}
