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
    internal const string ScaleFile = "scale.txt";

    /// <summary>
    /// Trains into <paramref name="outDir"/>: config.json, checkpoints (every train.checkpoint_every steps and when
    /// cancelled), then sae_weights.safetensors, cfg.json, sparsity.safetensors, metrics.json, figures/ and
    /// report.html. With <paramref name="resume"/> the run continues from the folder's checkpoint. On several
    /// processes (<paramref name="ranks"/>, by default the world: mpirun or srun) every rank calls this, and the run is
    /// split as config.distributed says (<see cref="DistributedFactorize"/>).
    /// </summary>
    public static FactorizeResult Run(EngineContext context, FactorizeConfig config, string outDir, IRunProgress progress,
        CancellationToken cancel, bool resume = false, Communicator? ranks = null)
    {
        var world = ranks ?? Communicator.World;
        if (world.Size > 1 || config.Distributed is { LatentShards: > 1 })
            return DistributedFactorize.Run(context, config, outDir, progress, cancel, resume, world);
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
            ShardedCheckpoint.RefuseInOneProcess(outDir);
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
        while (step < totalSteps && !cancel.IsCancellationRequested)
        {
            source.Next().Span.CopyTo(buffer);
            Scale(buffer, scale);
            var stats = model.TrainStep(buffer, Factorization.LearningRate(config.Train, step, totalSteps));
            step++;
            tokens += config.Train.BatchSize;
            if (step % curveEvery == 0 || step == totalSteps)
                curve.Add(new FactorizeCurvePoint(step, tokens, stats.Mse, stats.Fvu, stats.L0, stats.Auxk, stats.Dead));
            if (config.Train.CheckpointEvery > 0 && step % config.Train.CheckpointEvery == 0)
                Factorization.WriteCheckpoint(outDir, model, source, step, tokens, previousSeconds + clock.Elapsed.TotalSeconds, curve);
            if (step % 10 == 0 || step == totalSteps) progress.Report(phase, step, totalSteps);
        }
        var seconds = previousSeconds + clock.Elapsed.TotalSeconds;
        Factorization.WriteCheckpoint(outDir, model, source, step, tokens, seconds, curve);
        if (step < totalSteps) return new FactorizeResult(config, step, totalSteps, tokens, seconds, curve, null, null);

        var metrics = Factorization.Measure(model, source, truth, truthCount, tokens, seconds, out var density);
        var dictionary = Fold(config, spec, model.GetParameters(), scale);
        SaeLens.Write(outDir, dictionary, new Dictionary<string, string>
        {
            ["trained_with"] = "nativeengine factorize",
            ["tokens"] = tokens.ToString(CultureInfo.InvariantCulture),
            ["normalization_scale_folded"] = scale.ToString("R", CultureInfo.InvariantCulture),
        }, density);
        AtomicFile.WriteText(Path.Combine(outDir, "metrics.json"), Factorization.MetricsJson(metrics));
        WriteReport(outDir, config, metrics, curve, density);
        return new FactorizeResult(config, step, totalSteps, tokens, seconds, curve, dictionary, metrics);
    }

    /// <summary>Refuses, before any training, what the context's backend cannot run, naming the config key.</summary>
    internal static void CheckSupported(EngineContext context, SaeModelSpec spec)
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
    internal static float ExpectedAverageScale(float[] batch, int d)
    {
        double sum = 0;
        foreach (var v in batch) sum += (double)v * v;
        var meanSquaredNorm = sum / (batch.Length / d);
        return meanSquaredNorm > 0 ? (float)Math.Sqrt(d / meanSquaredNorm) : 1f;
    }

    internal static float ReadScale(string directory)
    {
        var path = Path.Combine(directory, ScaleFile);
        return File.Exists(path) ? float.Parse(File.ReadAllText(path), CultureInfo.InvariantCulture) : 1f;
    }

    internal static void Scale(float[] batch, float scale)
    {
        if (scale != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(batch, scale, batch);
    }

    // Training saw s·x; the saved dictionary applies to x: W_enc·s, W_dec/s, b_dec/s.
    internal static SaeDictionary Fold(FactorizeConfig config, SaeModelSpec sae, SaeParameters p, float scale)
    {
        var wEnc = p.WEnc.Select(v => v * scale).ToArray();
        var wDec = p.WDec.Select(v => v / scale).ToArray();
        var bDec = p.BDec.Select(v => v / scale).ToArray();
        var threshold = config.Sae.Architecture is SaeArchitecture.JumpRelu or SaeArchitecture.BatchTopK ? p.Threshold : null;
        return new SaeDictionary(sae.DIn, sae.DSae, config.Sae.Architecture, config.Sae.K, wEnc, p.BEnc, wDec, bDec, threshold);
    }

    internal static void WriteReport(string directory, FactorizeConfig config, FactorizeMetrics metrics,
        IReadOnlyList<FactorizeCurvePoint> curve, float[] density)
    {
        var figures = new FigureFolder(directory);
        var report = new HtmlReport($"Dictionary: {FactorizeConfigLoader.Name(config.Sae.Architecture)} SAE, d_sae {config.Sae.DSae}");
        report.AddParagraph($"{metrics.Tokens} tokens in {metrics.Seconds:F1} s ({metrics.TokensPerSecond:F0} tokens/s). " +
                            $"fvu {metrics.Fvu:F4}, L0 {metrics.L0:F1}, dead {metrics.DeadFraction:P1}, dense {metrics.DenseFraction:P1}" +
                            (metrics.Mmcs is { } m ? $"; against the true features: MMCS {m:F3}, one-to-one matched cosine {metrics.MatchedCosine:F3}." : "."));
        var list = new List<(string, string)>
        {
            (figures.Save("loss", ComparisonFigures.LineChart(
                [new LineSeries("fvu", curve.Select(c => ((double)c.Tokens, c.Fvu)).ToArray())],
                "tokens", "fraction of variance unexplained", "Training curve", logX: false, yMin: 0)),
             "Fraction of variance unexplained on each training batch."),
            (figures.Save("l0", ComparisonFigures.LineChart(
                [new LineSeries("L0", curve.Select(c => ((double)c.Tokens, c.L0)).ToArray()),
                 new LineSeries("dead latents", curve.Select(c => ((double)c.Tokens, (double)c.Dead)).ToArray(), Dashed: true)],
                "tokens", "latents", "Active and dead latents", logX: false, yMin: 0)),
             "Mean active latents per token and latents dead for the dead window."),
        };
        var bins = Enumerable.Range(-10, 11).ToArray();  // log10 density from 1e-10 to 1
        var counts = bins.Select(b => (double)density.Count(v => Math.Floor(v) == b || (b == 0 && v >= 0))).ToArray();
        list.Add((figures.Save("density", ComparisonFigures.GroupedBars(bins.Select(b => b.ToString(CultureInfo.InvariantCulture)).ToArray(),
                [new BarSeries("latents", counts)], "latents", "Feature density (log10)")),
            "Latents by log10 of the share of evaluation tokens they fire on (-10: never)."));
        report.AddFigureGrid(list, 480);
        report.AddPreformatted(File.ReadAllText(Path.Combine(directory, ConfigFile)), "the config");
        report.Save(Path.Combine(directory, "report.html"));
    }
}
