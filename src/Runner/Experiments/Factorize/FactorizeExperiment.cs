using System.Diagnostics;
using System.Globalization;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;
using NativeEngine.Runner.Reports.Figures;

namespace NativeEngine.Runner.Experiments;

/// <summary>A factorization run: how far it got, and when it finished, the dictionary as saved and its metrics.</summary>
/// <param name="Dictionary">The dictionary as written (input normalisation folded in); null when interrupted.</param>
/// <param name="Metrics">Measured on fresh batches; null when interrupted.</param>
public sealed record FactorizeResult(FactorizeConfig Config, long Steps, long TotalSteps, long Tokens, double Seconds,
    IReadOnlyList<FactorizeCurvePoint> Curve, SaeDictionary? Dictionary, FactorizeMetrics? Metrics)
{
    public bool Completed => Steps >= TotalSteps;
}

/// <summary>
/// Approach 2 (SCIENCE.md §3): learns an overcomplete dictionary of activations with a sparse autoencoder, with an
/// lr warm-up and a linear decay, checkpoints that make the run resumable bit for bit, and the dictionary written in
/// the SAELens layout with its metrics and report.
/// </summary>
public static class FactorizeExperiment
{
    public const string ConfigFile = "config.json";
    private const string ScaleFile = "scale.txt";

    /// <summary>
    /// Trains into <paramref name="outDir"/>: config.json, checkpoints (every train.checkpoint_every steps and when
    /// cancelled), then sae_weights.safetensors, cfg.json, sparsity.safetensors, metrics.json, figures/ and
    /// report.html. With <paramref name="resume"/> the run continues from the folder's checkpoint.
    /// </summary>
    public static FactorizeResult Run(EngineContext context, FactorizeConfig config, string outDir, IRunProgress progress,
        CancellationToken cancel, bool resume = false)
    {
        RunFolder.Prepare(outDir);
        if (!resume) AtomicFile.WriteText(Path.Combine(outDir, ConfigFile), FactorizeConfigWriter.ToJson(config));
        var (source, truth, truthCount) = Factorization.OpenData(config);
        using var _ = source;
        var d = source.D;
        var spec = Factorization.ModelSpec(config, d);
        CheckSupported(context, spec);
        using var model = new SparseAutoencoder(context, spec);

        var totalSteps = config.Train.Steps;
        var curve = new List<FactorizeCurvePoint>();
        long step = 0, tokens = 0;
        double previousSeconds = 0;
        var scale = 1f;
        if (resume)
        {
            var checkpoint = Factorization.ReadCheckpoint(outDir, model, source);
            (step, tokens, previousSeconds) = (checkpoint.Step, checkpoint.Tokens, checkpoint.Seconds);
            curve.AddRange(checkpoint.Curve);
            scale = ReadScale(outDir);
            progress.Note($"resuming at step {step} of {totalSteps} ({tokens} tokens)");
        }
        else
        {
            var first = source.Next().ToArray();
            if (config.Sae.Normalization == ActivationNormalization.ExpectedAverage) scale = ExpectedAverageScale(first, d);
            Scale(first, scale);
            model.InitDecoderBias(first, geometricMedian: true);
            AtomicFile.WriteText(Path.Combine(outDir, ScaleFile), scale.ToString("R", CultureInfo.InvariantCulture));
        }

        var buffer = new float[config.Train.BatchSize * d];
        var clock = Stopwatch.StartNew();
        var phase = $"{FactorizeConfigLoader.Name(config.Sae.Architecture)} SAE, d_sae {config.Sae.DSae}";
        var curveEvery = Math.Max(1, totalSteps / 200);
        var recoveryEvery = curveEvery * Math.Max(1, 200 / RecoveryTracker.Points);
        var recovery = new RecoveryTracker(truth, truthCount, spec.DSae, d);
        while (step < totalSteps && !cancel.IsCancellationRequested)
        {
            source.Next().Span.CopyTo(buffer);
            Scale(buffer, scale);
            var stats = model.TrainStep(buffer, Factorization.LearningRate(config.Train, step, totalSteps));
            step++;
            tokens += config.Train.BatchSize;
            if (step % curveEvery == 0 || step == totalSteps)
            {
                curve.Add(new FactorizeCurvePoint(step, tokens, stats.Mse, stats.Fvu, stats.L0, stats.Auxk, stats.Dead));
                if (recovery.Enabled && (step % recoveryEvery == 0 || step == totalSteps))
                    recovery.Measure(curve.Count - 1, model.GetParameters().WDec);
            }
            if (config.Train.CheckpointEvery > 0 && step % config.Train.CheckpointEvery == 0)
            {
                recovery.Settle(curve);
                Factorization.WriteCheckpoint(outDir, model, source, step, tokens, previousSeconds + clock.Elapsed.TotalSeconds, curve);
            }
            if (step % 10 == 0 || step == totalSteps) progress.Report(phase, step, totalSteps);
        }
        var seconds = previousSeconds + clock.Elapsed.TotalSeconds;
        recovery.Settle(curve);
        Factorization.WriteCheckpoint(outDir, model, source, step, tokens, seconds, curve);
        if (step < totalSteps) return new FactorizeResult(config, step, totalSteps, tokens, seconds, curve, null, null);

        var metrics = Factorization.Measure(model, source, truth, truthCount, tokens, seconds, out var density);
        var dictionary = Fold(config, spec, model.GetParameters(), scale);
        WriteDictionary(outDir, config, dictionary, tokens, scale, density);
        AtomicFile.WriteText(Path.Combine(outDir, "metrics.json"), Factorization.MetricsJson(metrics));
        FactorizeReport.Write(outDir, config, metrics, curve, density);
        return new FactorizeResult(config, step, totalSteps, tokens, seconds, curve, dictionary, metrics);
    }

    /// <summary>The dictionary in the config's layout, with its log10 densities (sparsity.safetensors, as SAELens
    /// names them) in either.</summary>
    private static void WriteDictionary(string outDir, FactorizeConfig config, SaeDictionary dictionary, long tokens, float scale,
        float[] density)
    {
        if (config.Format == DictionaryFormat.Sparsify)
        {
            Sparsify.Write(outDir, dictionary);
            SafeTensors.Write(Path.Combine(outDir, SaeLens.SparsityFile), [new Tensor("sparsity", [dictionary.DSae], density)]);
            return;
        }
        var extra = new List<(string, object?)>
        {
            ("trained_with", "nativeengine factorize"),
            ("training_architecture", FactorizeConfigLoader.Name(config.Sae.Architecture)),
        };
        if (config.Sae.K is { } k) extra.Add(("training_k", k));
        extra.Add(("tokens", tokens));
        extra.Add(("normalization_scale_folded", scale));
        SaeLens.Write(outDir, dictionary, config.Metadata ?? DictionaryMetadata.None, extra, density);
    }

    /// <summary>Refuses, before any training, what the context's backend cannot run, naming the config key.</summary>
    private static void CheckSupported(EngineContext context, SaeModelSpec spec)
    {
        var capabilities = context.Capabilities;
        if (!capabilities.SaePrecisions.Contains(spec.Precision))
            throw new ConfigException($"train.precision is \"{PrecisionName(spec.Precision)}\"; the " +
                                      $"{context.Device.Backend.ToString().ToLowerInvariant()} backend takes " +
                                      string.Join(", ", capabilities.SaePrecisions.Select(p => $"\"{PrecisionName(p)}\"")) +
                                      " (tf32 and bf16 need the CUDA backend)");
        if (context.WhyUnsupported(spec) is { } why)
            throw new ConfigException($"the {context.Device.Backend.ToString().ToLowerInvariant()} backend cannot train this " +
                                      $"dictionary: {why}");
    }

    private static string PrecisionName(SaePrecision precision) =>
        FactorizeConfigLoader.Precisions.First(p => p.Value == precision).Key;

    // Unit mean squared norm: x * sqrt(d / E||x||^2) (SAELens's "expected_average_only_in").
    private static float ExpectedAverageScale(float[] batch, int d)
    {
        double sum = 0;
        foreach (var v in batch) sum += (double)v * v;
        var meanSquaredNorm = sum / (batch.Length / d);
        return meanSquaredNorm > 0 ? (float)Math.Sqrt(d / meanSquaredNorm) : 1f;
    }

    private static float ReadScale(string directory)
    {
        var path = Path.Combine(directory, ScaleFile);
        return File.Exists(path) ? float.Parse(File.ReadAllText(path), CultureInfo.InvariantCulture) : 1f;
    }

    private static void Scale(float[] batch, float scale)
    {
        if (scale != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(batch, scale, batch);
    }

    // Training saw s·x; the saved dictionary applies to x: W_enc·s, W_dec/s, b_dec/s.
    private static SaeDictionary Fold(FactorizeConfig config, SaeModelSpec sae, SaeParameters p, float scale)
    {
        var wEnc = p.WEnc.Select(v => v * scale).ToArray();
        var wDec = p.WDec.Select(v => v / scale).ToArray();
        var bDec = p.BDec.Select(v => v / scale).ToArray();
        var threshold = config.Sae.Architecture is SaeArchitecture.JumpRelu or SaeArchitecture.BatchTopK ? p.Threshold : null;
        return new SaeDictionary(sae.DIn, sae.DSae, config.Sae.Architecture, config.Sae.K, wEnc, p.BEnc, wDec, bDec, threshold);
    }
}
