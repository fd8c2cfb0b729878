using System.Diagnostics;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;
using NativeEngine.Runner.Reports.Figures;

namespace NativeEngine.Runner.Experiments;

/// <summary>A factorization run: how far it got, and when it finished, the dictionary as saved and its metrics.</summary>
/// <param name="Dictionary">The dictionary as written (input normalisation folded in); null when interrupted.</param>
/// <param name="Metrics">Measured on fresh batches; null when interrupted.</param>
/// <param name="Tuning">The sparsity coefficient's schedule and controller (relu, jumprelu with sae.target_l0 or
/// sae.sparsity_warmup_steps); null otherwise.</param>
public sealed record FactorizeResult(FactorizeConfig Config, long Steps, long TotalSteps, long Tokens, double Seconds,
    IReadOnlyList<FactorizeCurvePoint> Curve, SaeDictionary? Dictionary, FactorizeMetrics? Metrics,
    SparsityTuning? Tuning = null)
{
    public bool Completed => Steps >= TotalSteps;
}

/// <summary>
/// Approach 2 (SCIENCE.md §3): learns an overcomplete dictionary of activations with a sparse autoencoder, with an
/// lr warm-up and a linear decay, checkpoints that make the run resumable bit for bit, and the dictionary written in
/// the SAELens or sparsify layout ("format") with its metrics and report.
/// <para>The run folder: run.json (the claim), config.json (the resolved config), metrics.json, figures/,
/// report.html, and dictionary/ holding the dictionary only (cfg.json, sae_weights.safetensors or sae.safetensors,
/// sparsity.safetensors: what SAELens or sparsify loads). checkpoint/ (<see cref="FactorizeCheckpoint"/>) is run state: it
/// exists while the run is unfinished and goes when it completes.</para>
/// </summary>
public static class FactorizeExperiment
{
    public const string Kind = "factorize";
    public const string ConfigFile = "config.json";
    public const string MetricsFile = "metrics.json";

    /// <summary>
    /// Trains into <paramref name="outDir"/>: checkpoints every train.checkpoint_every steps and when cancelled, then
    /// dictionary/, metrics.json, figures/ and report.html, and removes the checkpoint. With
    /// <paramref name="resume"/> the run continues from the folder's checkpoint (with <paramref name="force"/>, even
    /// under another config). A step whose loss or parameters are not finite stops the run: the last checkpoint is
    /// kept, metrics.json says where it stopped, and a <see cref="NonFiniteException"/> says why. On several processes
    /// (<paramref name="ranks"/>, by default the world: mpirun or srun) every rank calls this, and the run is split as
    /// config.distributed says (<see cref="DistributedFactorize"/>).
    /// </summary>
    public static FactorizeResult Run(EngineContext context, FactorizeConfig config, string outDir, IRunProgress progress,
        CancellationToken cancel, bool resume = false, bool force = false, Communicator? ranks = null)
    {
        var world = ranks ?? Communicator.World;
        if (world.Size > 1 || config.Distributed is { LatentShards: > 1 })
            return DistributedFactorize.Run(context, config, outDir, progress, cancel, resume, force, world);
        if (resume) ShardedCheckpoint.RefuseInOneProcess(outDir);
        var configHash = Claim(outDir, config, resume, force);
        if (config.Data is SyntheticSpec synthetic && Factorization.SlowToBuild(synthetic))
            progress.Note($"building the ground truth: {synthetic.Generator.NFeatures} features in d = {synthetic.Generator.D}, " +
                          $"{synthetic.Generator.OrthoSteps} orthogonalisation steps (minutes on a CPU)");
        var (source, truth) = Factorization.OpenData(context, config);
        using var _ = source;
        using var __ = truth;
        var d = source.D;
        var spec = Factorization.ModelSpec(config, d);
        CheckSupported(context, spec);
        using var model = new SparseAutoencoder(context, spec);

        var totalSteps = config.Train.Steps;
        var curve = new List<FactorizeCurvePoint>();
        var tuning = SparsityTuning.Needed(config.Sae) ? new SparsityTuning(config.Sae) : null;
        long step = 0, tokens = 0, checkpointStep = -1;
        double previousSeconds = 0;
        var scale = 1f;
        if (resume)
        {
            var (checkpoint, folder) = FactorizeCheckpoint.Read(outDir, config, configHash, force, model, source);
            (step, tokens, previousSeconds, scale) = (checkpoint.Step, checkpoint.Tokens, checkpoint.Seconds, checkpoint.Scale);
            checkpointStep = step;
            curve.AddRange(checkpoint.Curve);
            if (tuning is not null)
            {
                if (checkpoint.Tuning is null)
                    throw new ConfigException($"--resume {outDir}: the checkpoint has no state of the sparsity coefficient's controller " +
                                              "(sae.target_l0, sae.sparsity_warmup_steps), which this config asks for");
                using var state = System.Text.Json.JsonDocument.Parse(checkpoint.Tuning);
                tuning.Read(state.RootElement);
            }
            progress.Note($"resuming at step {step} of {totalSteps} ({tokens} tokens)" +
                          (Path.GetFileName(folder) == FactorizeCheckpoint.PreviousFolder
                              ? $", from {FactorizeCheckpoint.PreviousFolder}/ ({FactorizeCheckpoint.Folder}/ was missing or damaged)" : ""));
        }
        else
        {
            FactorizeCheckpoint.Remove(outDir);  // a forced restart leaves no earlier state behind
            if (config.Sae.JumpInitialThreshold != SaeSpec.DefaultJumpInitialThreshold)
            {
                // The native initialisation's θ is the default; another start replaces it before any step.
                var initial = model.GetParameters();
                model.SetParameters(initial.WEnc, initial.BEnc, initial.WDec, initial.BDec,
                    Enumerable.Repeat((float)config.Sae.JumpInitialThreshold, spec.DSae).ToArray());
            }
            var first = source.Next().ToArray();
            if (config.Sae.Normalization == ActivationNormalization.ExpectedAverage) scale = ExpectedAverageScale(first, d);
            Scale(first, scale);
            model.InitDecoderBias(first, geometricMedian: true);
        }

        var buffer = new float[source is SyntheticSource ? 0 : config.Train.BatchSize * d];
        var clock = Stopwatch.StartNew();
        var phase = $"{FactorizeConfigLoader.Name(config.Sae.Architecture)} SAE, d_sae {config.Sae.DSae}";
        var curveEvery = Math.Max(1, totalSteps / 200);
        var recoveryEvery = curveEvery * Math.Max(1, 200 / RecoveryTracker.Points);
        var product = Factorization.Product(context);
        var recovery = new RecoveryTracker(truth?.Features, truth?.Count ?? 0, spec.DSae, d, product);
        var native = source as SyntheticSource;  // drawn where the SAE trains, never copied through here
        NonFinite? stopped = null;
        var appliedCoefficient = (float)config.Sae.SparsityCoefficient;  // what the model was created with
        double Seconds() => previousSeconds + clock.Elapsed.TotalSeconds;
        // A checkpoint of parameters that are all finite; false (nothing written) when some are not.
        bool Checkpoint()
        {
            var parameters = model.GetParameters();
            if (!FactorizeCheckpoint.AllFinite(parameters)) return false;
            recovery.Settle(curve);
            FactorizeCheckpoint.Write(outDir, model, parameters, source,
                new CheckpointProgress(step, tokens, Seconds(), scale, configHash, curve,
                    tuning is null ? null : Json.Document(tuning.Write)));
            checkpointStep = step;
            return true;
        }
        while (step < totalSteps && !cancel.IsCancellationRequested)
        {
            var lr = Factorization.LearningRate(config.Train, step, totalSteps);
            // The coefficient of this step, set only when it changes (it is not part of the native state).
            if (tuning is not null)
            {
                var coefficient = (float)tuning.CoefficientAt(step);
                if (coefficient != appliedCoefficient) model.SetSparsityCoefficient(coefficient);
                appliedCoefficient = coefficient;
            }
            SaeStats stats;
            if (native is not null) stats = model.TrainStep(native.Generator, native.Take(), scale, lr);
            else
            {
                source.Next().Span.CopyTo(buffer);
                Scale(buffer, scale);
                stats = model.TrainStep(buffer, lr);
            }
            if (model.NonFinite is { } where)
            {
                stopped = where;
                break;
            }
            tuning?.Update(step, stats.L0);
            step++;
            tokens += config.Train.BatchSize;
            if (step % curveEvery == 0 || step == totalSteps)
            {
                curve.Add(new FactorizeCurvePoint(step, tokens, stats.Mse, stats.Fvu, stats.L0, stats.Auxk, stats.Dead));
                tuning?.Record(step);
                if (recovery.Enabled && (step % recoveryEvery == 0 || step == totalSteps))
                    recovery.Measure(curve.Count - 1, model.GetParameters().WDec);
            }
            if (config.Train.CheckpointEvery > 0 && step % config.Train.CheckpointEvery == 0 && !Checkpoint())
            {
                stopped = new NonFinite(step, 0, NonFiniteQuantity.Parameters);
                break;
            }
            if (step % 10 == 0 || step == totalSteps) progress.Report(phase, step, totalSteps);
        }
        var seconds = Seconds();
        if (stopped is null && step < totalSteps)
        {
            if (!Checkpoint()) stopped = new NonFinite(step, 0, NonFiniteQuantity.Parameters);
            else
            {
                RunFolder.Finish(outDir, RunFolder.Status.Interrupted);
                return new FactorizeResult(config, step, totalSteps, tokens, seconds, curve, null, null, tuning);
            }
        }
        recovery.Settle(curve);
        var parameters = stopped is null ? model.GetParameters() : null;
        if (parameters is not null && !FactorizeCheckpoint.AllFinite(parameters)) stopped = new NonFinite(step, 0, NonFiniteQuantity.Parameters);
        if (stopped is { } nonFinite) throw Stop(outDir, config, nonFinite, tokens, seconds, checkpointStep);

        var metrics = Factorization.Measure(model, source, truth, tokens, seconds, out var density, inputScale: scale,
            product: product);
        var dictionary = Fold(config, spec, parameters!, scale);
        if (truth is { HasSamples: true }) metrics = metrics with { Truth = MeasureTruth(dictionary, truth, config, progress, cancel) };
        WriteDictionary(Path.Combine(outDir, DictionaryFolder.Subfolder), config, dictionary, tokens, scale, density);
        AtomicFile.WriteText(Path.Combine(outDir, MetricsFile),
            Factorization.MetricsJson(metrics, source.State.SkippedTokens, tuning?.Json(step)));
        FactorizeReport.Write(outDir, config, metrics, curve, density);
        FactorizeCheckpoint.Remove(outDir);
        RunFolder.Finish(outDir, RunFolder.Status.Completed);
        return new FactorizeResult(config, step, totalSteps, tokens, seconds, curve, dictionary, metrics, tuning);
    }

    // SynthSAEBench's metrics of the saved dictionary; an interruption skips them (the run is complete without).
    private static TruthEvaluation.Result? MeasureTruth(SaeDictionary dictionary, KnownTruth truth, FactorizeConfig config,
        IRunProgress progress, CancellationToken cancel)
    {
        progress.Note($"measuring against the ground truth on {config.Evaluation.Samples} samples ({truth.SamplesSource})");
        try
        {
            return TruthEvaluation.Measure(dictionary, truth, config.Evaluation.Samples, config.Train.BatchSize, cancel);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            progress.Note($"interrupted: {Factorization.TruthKey} metrics not measured; the dictionary and the other metrics are written");
            return null;
        }
    }

    /// <summary>Claims <paramref name="outDir"/> for this run (checking first that a resume has something to continue
    /// under this config, unless forced) and writes its config.json; returns the config's SHA-256.</summary>
    internal static string Claim(string outDir, FactorizeConfig config, bool resume, bool force)
    {
        var configJson = FactorizeConfigWriter.ToJson(config);
        if (resume)
        {
            if (RunFolder.Read(outDir) is { Kind: Kind, Status: RunFolder.Status.Completed } && !FactorizeCheckpoint.Exists(outDir))
                throw new ConfigException($"--resume {outDir}: that run completed ({DictionaryFolder.Subfolder}/, {MetricsFile}); there is " +
                                          "nothing to resume");
            FactorizeCheckpoint.CheckConfig(outDir, configJson, force);
        }
        RunFolder.Claim(outDir, Kind, configJson, force, resume);
        var configPath = Path.Combine(outDir, ConfigFile);
        if (!resume || !File.Exists(configPath) || File.ReadAllText(configPath) != configJson) AtomicFile.WriteText(configPath, configJson);
        return RunFolder.Sha256(configJson);
    }

    /// <summary>The dictionary in the config's layout, with its log10 densities (sparsity.safetensors, as SAELens
    /// names them) in either; <paramref name="directory"/> holds nothing else.</summary>
    internal static void WriteDictionary(string directory, FactorizeConfig config, SaeDictionary dictionary, long tokens, float scale,
        float[] density)
    {
        if (config.Format == DictionaryFormat.Sparsify)
        {
            Sparsify.Write(directory, dictionary);
            SafeTensors.Write(Path.Combine(directory, SaeLens.SparsityFile), [new Tensor("sparsity", [dictionary.DSae], density)]);
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
        SaeLens.Write(directory, dictionary, config.Metadata ?? DictionaryMetadata.None, extra, density);
    }

    /// <summary>The factorize run folder a dictionary folder belongs to (for its config.json), or null: the parent of
    /// a run's dictionary/, or the folder itself when it is a run folder.</summary>
    public static string? RunFolderOf(string directory)
    {
        var dictionary = Path.GetFullPath(DictionaryFolder.Resolve(directory));
        var parent = Path.GetFileName(dictionary) == DictionaryFolder.Subfolder ? Path.GetDirectoryName(dictionary) : null;
        if (parent is not null && File.Exists(Path.Combine(parent, ConfigFile))) return parent;
        return File.Exists(Path.Combine(directory, ConfigFile)) ? directory : null;
    }

    // Writes what a run stopped by a non-finite value can keep (metrics.json saying where, the last checkpoint as
    // it was) and the exception that tells the user.
    private static NonFiniteException Stop(string outDir, FactorizeConfig config, NonFinite where, long tokens, double seconds,
        long checkpointStep)
    {
        WriteStopped(outDir, where, tokens, seconds);
        return new NonFiniteException(StopMessage(outDir, config, where, checkpointStep), where);
    }

    /// <summary>metrics.json of a run stopped by a non-finite value (saying where), and run.json's status.</summary>
    internal static void WriteStopped(string outDir, NonFinite where, long tokens, double seconds)
    {
        AtomicFile.WriteText(Path.Combine(outDir, MetricsFile), Factorization.StoppedMetricsJson(where, tokens, seconds));
        RunFolder.Finish(outDir, RunFolder.Status.NonFinite);
    }

    /// <summary>What stopped the run, and what of it was kept.</summary>
    internal static string StopMessage(string outDir, FactorizeConfig config, NonFinite where, long checkpointStep)
    {
        var lr = Factorization.LearningRate(config.Train, Math.Max(0, where.Step - 1), config.Train.Steps);
        var kept = checkpointStep >= 0
            ? $"the checkpoint of step {checkpointStep} is kept: lower train.lr in a copy of config.json and continue with " +
              $"--resume {outDir} --config COPY --force"
            : "no checkpoint was written before it (train.checkpoint_every is " +
              $"{config.Train.CheckpointEvery}); lower train.lr and run again";
        return $"{outDir}: {NonFiniteException.Describe(where, config.Train.Steps, lr, instances: false)}; " +
               $"{kept}. {MetricsFile} records where it stopped";
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

    internal static void Scale(float[] batch, float scale)
    {
        if (scale != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(batch, scale, batch);
    }

    // Training saw s·x; the saved dictionary applies to x: W_enc·s, W_dec/s, b_dec/s. Matching pursuit instead keeps
    // its unit decoder rows (its codes on s·x are s times those on x) and scales b_dec and the residual threshold by
    // 1/s (PursuitFold).
    private static SaeDictionary Fold(FactorizeConfig config, SaeModelSpec sae, SaeParameters p, float scale)
    {
        var pursuit = config.Sae.Architecture == SaeArchitecture.MatchingPursuit;
        var wEnc = pursuit ? p.WEnc : p.WEnc.Select(v => v * scale).ToArray();
        var wDec = pursuit ? p.WDec : p.WDec.Select(v => v / scale).ToArray();
        var bDec = p.BDec.Select(v => v / scale).ToArray();
        var threshold = config.Sae.Architecture == SaeArchitecture.JumpRelu ||
                        SaeModelSpec.SelectsOverBatch(config.Sae.Architecture) ? p.Threshold : null;
        return PursuitFold(config, new SaeDictionary(sae.DIn, sae.DSae, config.Sae.Architecture, config.Sae.K, wEnc, p.BEnc,
            wDec, bDec, threshold), scale);
    }

    /// <summary>A matching-pursuit dictionary takes its settings from the config, the residual threshold divided by
    /// the normalisation scale s (the pursuit of s·x stops where that of x reaches threshold/s), and W_enc = W_dec^T
    /// (the tied encoder, in place of the unused native one); others pass unchanged.</summary>
    internal static SaeDictionary PursuitFold(FactorizeConfig config, SaeDictionary dict, float scale)
    {
        if (dict.Architecture != SaeArchitecture.MatchingPursuit) return dict;
        var settings = config.Sae.Pursuit ?? new MatchingPursuitSettings();
        var wEnc = new float[dict.WDec.Length];
        for (var j = 0; j < dict.DSae; j++)
            for (var i = 0; i < dict.DIn; i++) wEnc[i * dict.DSae + j] = dict.WDec[j * dict.DIn + i];
        return dict with
        {
            WEnc = wEnc, BEnc = new float[dict.DSae],
            Pursuit = settings with { ResidualThreshold = settings.ResidualThreshold / scale },
        };
    }
}
