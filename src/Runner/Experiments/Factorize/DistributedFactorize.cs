using System.Diagnostics;
using System.Globalization;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// The processes of a distributed factorization as a grid: world rank = group · LatentShards + shard. The ranks of one
/// data-parallel group (<see cref="Latents"/>) hold the latent shards of the dictionary and see the same tokens; the
/// ranks of one shard (<see cref="Data"/>) hold the same latents and read disjoint parts of the data.
/// </summary>
public sealed class FactorizeGrid : IDisposable
{
    public Communicator World { get; }
    public Communicator Latents { get; }
    public Communicator Data { get; }
    public int LatentShards { get; }
    public int Groups { get; }
    public int Shard => Latents.Rank;
    public int Group => Data.Rank;
    public bool IsRoot => World.Rank == 0;

    private FactorizeGrid(Communicator world, int latentShards)
    {
        World = world;
        LatentShards = latentShards;
        Groups = world.Size / latentShards;
        var shard = world.Rank % latentShards;
        var group = world.Rank / latentShards;
        Latents = world.Split(group, shard);
        Data = world.Split(shard, group);
    }

    /// <summary>The grid a config asks of <paramref name="world"/>; errors name the key and what would divide.</summary>
    public static FactorizeGrid Create(Communicator world, FactorizeConfig config)
    {
        var shards = config.Distributed?.LatentShards ?? 1;
        if (world.Size % shards != 0)
            throw new ConfigException($"distributed.latent_shards is {shards}, but this run has {world.Size} process(es); " +
                                      $"latent_shards must divide the process count (launch with mpirun -np N, N a multiple of {shards})");
        var groups = world.Size / shards;
        if (config.Train.BatchSize % groups != 0)
            throw new ConfigException($"train.batch_size is {config.Train.BatchSize}; split over the {groups} data-parallel groups " +
                                      $"({world.Size} processes / distributed.latent_shards {shards}) it must be divisible by {groups}");
        return new FactorizeGrid(world, shards);
    }

    public void Dispose()
    {
        Latents.Dispose();
        Data.Dispose();
    }
}

/// <summary>
/// A factorization split across processes (<see cref="FactorizeExperiment.Run"/> on more than one rank): the SAE's
/// step runs sharded in the engine (<see cref="SparseAutoencoder"/> over the grid's communicators), each data-parallel
/// group reads only its part of the data, every rank checkpoints its part (<see cref="ShardedCheckpoint"/>), and rank 0
/// claims the run folder and writes the run-level files and one dictionary gathered from the shards, laid out as a
/// one-process run's, plus communication.json.
/// <para>The data. Synthetic data: group g generates tokens [g·B/G, (g+1)·B/G) of every batch of the one-process
/// stream, so the run trains on exactly the tokens one process would. Files: group g reads a contiguous 1/G of the
/// tokens of all shards (opening the others only to size them), shuffled on its own, so the run sees every token
/// once per epoch but not in the one-process order.</para>
/// <para>Stopping. Every rank stops at the same step: an interruption on any rank is agreed on before each step, and
/// the engine agrees on a step that was not finite (its loss is summed over the grid, its parameters' check reduced),
/// so all ranks throw the same <see cref="NonFiniteException"/> together. Any other error on one rank ends every rank
/// (Program's error handler).</para>
/// </summary>
public static class DistributedFactorize
{
    public const string CommunicationFile = "communication.json";

    public static FactorizeResult Run(EngineContext context, FactorizeConfig config, string outDir, IRunProgress progress,
        CancellationToken cancel, bool resume, bool force, Communicator world)
    {
        if (SparsityTuning.Needed(config.Sae) || config.Sae.JumpInitialThreshold != SaeSpec.DefaultJumpInitialThreshold)
            throw new ConfigException("sae.target_l0, sae.sparsity_warmup_steps and sae.jump_initial_threshold are for runs on one process; " +
                                      "this run is split over " +
                                      $"{world.Size} process(es){(config.Distributed is { LatentShards: > 1 } ? " and latent shards" : "")}");
        using var grid = FactorizeGrid.Create(world, config);
        var configHash = grid.IsRoot ? FactorizeExperiment.Claim(outDir, config, resume, force)
            : RunFolder.Sha256(FactorizeConfigWriter.ToJson(config));
        world.Barrier();
        var (source, truth, truthCount) = OpenPart(context, config, grid);
        using var _ = source;
        var d = source.D;
        var whole = Factorization.ModelSpec(config, d);
        var spec = whole with { BatchSize = config.Train.BatchSize / grid.Groups };
        FactorizeExperiment.CheckSupported(context, whole);
        var model = new SparseAutoencoder(context, spec, grid.Latents, grid.Data);
        try
        {
            return Train(config, outDir, progress, cancel, resume, force, configHash, grid, source, truth, truthCount, spec, whole, model);
        }
        finally
        {
            model.Dispose();
        }
    }

    private static FactorizeResult Train(FactorizeConfig config, string outDir, IRunProgress progress, CancellationToken cancel,
        bool resume, bool force, string configHash, FactorizeGrid grid, IActivationBatches source, float[]? truth, int truthCount,
        SaeModelSpec spec, SaeModelSpec whole, SparseAutoencoder model)
    {
        var world = grid.World;
        var d = spec.DIn;

        var totalSteps = config.Train.Steps;
        var curve = new List<FactorizeCurvePoint>();
        long step = 0, tokens = 0, checkpointStep = -1;
        double previousSeconds = 0;
        var scale = 1f;
        if (resume)
        {
            var (checkpoint, folder) = ShardedCheckpoint.Read(outDir, grid, config, configHash, force, model, source);
            (step, tokens, previousSeconds, scale) = (checkpoint.Step, checkpoint.Tokens, checkpoint.Seconds, checkpoint.Scale);
            checkpointStep = step;
            curve.AddRange(checkpoint.Curve);
            progress.Note($"resuming at step {step} of {totalSteps} ({tokens} tokens) on {world.Size} processes" +
                          (Path.GetFileName(folder) == FactorizeCheckpoint.PreviousFolder
                              ? $", from {FactorizeCheckpoint.PreviousFolder}/ ({FactorizeCheckpoint.Folder}/ was missing or damaged)" : ""));
        }
        else
        {
            if (grid.IsRoot) FactorizeCheckpoint.Remove(outDir);  // a forced restart leaves no earlier state behind
            // The first batch of one process, gathered from the groups' parts: every rank derives the same scale and b_dec.
            var first = grid.Data.AllGather<float>(source.Next().Span);
            if (config.Sae.Normalization == ActivationNormalization.ExpectedAverage)
                scale = FactorizeExperiment.ExpectedAverageScale(first, d);
            FactorizeExperiment.Scale(first, scale);
            model.InitDecoderBias(first, geometricMedian: true);
        }

        var buffer = new float[spec.BatchSize * d];
        var traffic = new Traffic(grid, whole.KAux > 0 ? whole.KAux : Math.Max(1, d / 2), config.Sae.AuxkAlpha > 0);
        var clock = Stopwatch.StartNew();
        var phase = $"{FactorizeConfigLoader.Name(config.Sae.Architecture)} SAE, d_sae {config.Sae.DSae}, " +
                    $"{grid.LatentShards} latent shard(s) x {grid.Groups} data group(s)";
        var curveEvery = Math.Max(1, totalSteps / 200);
        var recoveryEvery = curveEvery * Math.Max(1, 200 / RecoveryTracker.Points);
        // Rank 0 measures the recovery of the true features on the decoder gathered from the shards.
        var recovery = new RecoveryTracker(grid.IsRoot ? truth : null, truthCount, whole.DSae, d);
        NonFinite? stopped = null;
        double Seconds() => previousSeconds + clock.Elapsed.TotalSeconds;
        // A checkpoint of parameters that are all finite on every rank; false (nothing written) when some are not.
        bool Checkpoint() => traffic.Outside(() =>
        {
            var parameters = model.GetParameters();
            if (!AllRanksFinite(world, parameters)) return false;
            recovery.Settle(curve);
            ShardedCheckpoint.Write(outDir, grid, model, parameters, source,
                new CheckpointProgress(step, tokens, Seconds(), scale, configHash, curve));
            checkpointStep = step;
            return true;
        });
        while (step < totalSteps)
        {
            // Every rank stops at the same step, whichever of them was interrupted.
            if (world.AllReduce(cancel.IsCancellationRequested ? 1 : 0, CommOp.Max) != 0) break;
            source.Next().Span.CopyTo(buffer);
            FactorizeExperiment.Scale(buffer, scale);
            var stats = model.TrainStep(buffer, Factorization.LearningRate(config.Train, step, totalSteps));
            traffic.Step(stats);
            // The same on every rank: the engine reduces what it checks over the grid.
            if (model.NonFinite is { } where)
            {
                stopped = where;
                break;
            }
            step++;
            tokens += config.Train.BatchSize;
            if (step % curveEvery == 0 || step == totalSteps)
            {
                curve.Add(new FactorizeCurvePoint(step, tokens, stats.Mse, stats.Fvu, stats.L0, stats.Auxk, stats.Dead));
                if (truth is not null && (step % recoveryEvery == 0 || step == totalSteps))
                    traffic.Outside(() =>
                    {
                        var decoder = grid.Group == 0 ? grid.Latents.Gather<float>(model.GetParameters().WDec) : null;
                        if (decoder is not null) recovery.Measure(curve.Count - 1, decoder);
                        return true;
                    });
            }
            if (config.Train.CheckpointEvery > 0 && step % config.Train.CheckpointEvery == 0 && !Checkpoint())
            {
                stopped = new NonFinite(step, 0, NonFiniteQuantity.Parameters);
                break;
            }
            if (step % 10 == 0 || step == totalSteps) progress.Report(phase, step, totalSteps);
        }
        var seconds = Seconds();
        var measured = traffic.Finish(config, whole);
        if (grid.IsRoot) AtomicFile.WriteText(Path.Combine(outDir, CommunicationFile), measured);
        if (stopped is null && step < totalSteps)
        {
            if (!Checkpoint()) stopped = new NonFinite(step, 0, NonFiniteQuantity.Parameters);
            else
            {
                if (grid.IsRoot) RunFolder.Finish(outDir, RunFolder.Status.Interrupted);
                world.Barrier();
                return new FactorizeResult(config, step, totalSteps, tokens, seconds, curve, null, null);
            }
        }
        recovery.Settle(curve);
        if (stopped is null && !AllRanksFinite(world, model.GetParameters())) stopped = new NonFinite(step, 0, NonFiniteQuantity.Parameters);
        if (stopped is { } nonFinite)
        {
            if (grid.IsRoot) FactorizeExperiment.WriteStopped(outDir, nonFinite, tokens, seconds);
            world.Barrier();
            throw new NonFiniteException(FactorizeExperiment.StopMessage(outDir, config, nonFinite, checkpointStep), nonFinite) { EveryRank = true };
        }

        var metrics = Measure(model, source, grid, tokens, seconds, out var density, scale);
        var skipped = world.AllReduce(grid.Shard == 0 ? source.State.SkippedTokens : 0, CommOp.Sum);
        // The dictionary on rank 0: the training state is released first, so the gathered copy fits beside the shard.
        var local = model.GetParameters();
        var shardLatents = model.Shard.Count;
        model.Dispose();
        var parameters = grid.Group == 0 ? GatherParameters(local, d, shardLatents, grid) : null;
        SaeDictionary? dictionary = null;
        if (grid.IsRoot)
        {
            if (truth is not null)
            {
                var found = Recovery.Measure(truth, truthCount, parameters!.WDec, whole.DSae, whole.DIn);
                metrics = metrics with { Mmcs = found.Mmcs, MatchedCosine = found.MatchedCosine, BestCosines = found.BestCosines };
            }
            dictionary = FoldInPlace(config, whole, parameters!, scale);
            FactorizeExperiment.WriteDictionary(Path.Combine(outDir, DictionaryFolder.Subfolder), config, dictionary, tokens, scale, density!);
            AtomicFile.WriteText(Path.Combine(outDir, FactorizeExperiment.MetricsFile), Factorization.MetricsJson(metrics, skipped));
            FactorizeReport.Write(outDir, config, metrics, curve, density!);
            FactorizeCheckpoint.Remove(outDir);
            RunFolder.Finish(outDir, RunFolder.Status.Completed);
        }
        world.Barrier();  // the run folder is complete when any rank returns
        return new FactorizeResult(config, step, totalSteps, tokens, seconds, curve, dictionary, metrics);
    }

    /// <summary>Whether every rank's part of the parameters is finite.</summary>
    private static bool AllRanksFinite(Communicator world, SaeParameters parameters) =>
        world.AllReduce(FactorizeCheckpoint.AllFinite(parameters) ? 1 : 0, CommOp.Min) != 0;

    /// <summary>The part of a config's data this rank's data-parallel group reads (see the class comment), with the
    /// true features when they are known.</summary>
    internal static (IActivationBatches Source, float[]? Truth, int TruthCount) OpenPart(EngineContext context,
        FactorizeConfig c, FactorizeGrid grid)
    {
        var part = c.Train.BatchSize / grid.Groups;
        switch (c.Data)
        {
            case SyntheticSpec s:
                var generator = Factorization.Synthetic(context, s);
                return (new SyntheticPart(generator, c.Train.BatchSize, grid.Group * part, part), generator.Truth.Features,
                    generator.NFeatures);
            case FilesSpec f:
                var shards = f.ToActivationFiles().Open();
                var slices = TokenRange(shards, grid.Group, grid.Groups);
                var source = new ActivationSource(slices, new ActivationSourceOptions(part, Seed: c.Train.Seed, NonFinite: f.NonFinite),
                    ownsShards: true);
                using (var known = KnownTruth.Beside(context, f.Files[0], source.D))
                    return (source, known?.Features, known?.Count ?? 0);
            default:
                throw new InvalidOperationException("unknown data spec");
        }
    }

    /// <summary>Tokens [g·T/G, (g+1)·T/G) of the shards' T tokens, as slices of the shards they fall in; the shards
    /// outside it are closed.</summary>
    private static List<IActivationShard> TokenRange(List<IActivationShard> shards, int group, int groups)
    {
        var total = shards.Sum(s => s.Tokens);
        if (total < groups)
        {
            foreach (var shard in shards) shard.Dispose();
            throw new DataFormatException($"the activation files hold {total} tokens, fewer than the {groups} data-parallel groups");
        }
        long begin = total * group / groups, end = total * (group + 1) / groups, start = 0;
        var slices = new List<IActivationShard>();
        foreach (var shard in shards)
        {
            long from = Math.Max(begin, start), to = Math.Min(end, start + shard.Tokens);
            if (from < to) slices.Add(new ShardSlice(shard, from - start, to - from));
            else shard.Dispose();
            start += shard.Tokens;
        }
        return slices;
    }

    /// <summary>Tokens [first, first + count) of a shard (which the slice owns).</summary>
    private sealed class ShardSlice(IActivationShard shard, long first, long count) : IActivationShard
    {
        public string Path => $"{shard.Path} (tokens {first}..{first + count})";
        public long Tokens => count;
        public int D => shard.D;
        public ActivationDType DType => shard.DType;
        public void Read(long firstToken, Span<float> destination) => shard.Read(first + firstToken, destination);
        public void Dispose() => shard.Dispose();
    }

    /// <summary>One group's slice of every batch of the one-process synthetic stream: batch b of this source is
    /// tokens [b·whole + offset, b·whole + offset + tokens). Its state counts the whole stream's tokens, as one
    /// process's would.</summary>
    private sealed class SyntheticPart : IActivationBatches
    {
        private readonly SynthGenerator generator;
        private readonly int whole, offset;
        private readonly BatchPrefetcher prefetcher;
        private long filled, served;  // batches

        /// <param name="generator">Owned: disposed with the source.</param>
        public SyntheticPart(SynthGenerator generator, int whole, int offset, int tokens)
        {
            this.generator = generator;
            this.whole = whole;
            this.offset = offset;
            BatchTokens = tokens;
            prefetcher = new BatchPrefetcher(tokens * generator.D, Fill, prefetch: true);
        }

        public int D => generator.D;
        public int BatchTokens { get; }

        private void Fill(Span<float> batch) => generator.Sample(SynthStream.Train, filled++ * whole + offset, batch);

        public ReadOnlyMemory<float> Next()
        {
            var batch = prefetcher.Next();
            served++;
            return batch;
        }

        public SourceState State => new("synthetic", generator.Spec.Seed, served * whole, 0, served * whole, 0, D, 0, 0);

        public void Restore(SourceState state)
        {
            if (state.Source != "synthetic" || state.Seed != generator.Spec.Seed || state.D != D || state.TokensServed % whole != 0)
                throw new DataFormatException($"source state ({state.Source}, seed {state.Seed}, d = {state.D}, {state.TokensServed} tokens) " +
                                              $"does not match this synthetic source (seed {generator.Spec.Seed}, d = {D}, batches of {whole})");
            prefetcher.Stop();
            served = filled = state.TokensServed / whole;
        }

        public void Dispose()
        {
            prefetcher.Dispose();
            generator.Dispose();
        }
    }

    /// <summary>The metrics of a one-process run but the recovery of true features: each group evaluates its part of
    /// the evaluation batches (the engine sums the statistics and fire counts over the groups); rank 0 gathers the
    /// shards' densities (group 0 holds them; null elsewhere).</summary>
    private static FactorizeMetrics Measure(SparseAutoencoder sae, IActivationBatches source, FactorizeGrid grid, long tokens,
        double seconds, out float[]? log10Density, float inputScale, int batches = Factorization.EvaluationBatches)
    {
        var spec = sae.Spec;  // d_sae: the whole dictionary's; batch: this rank's part
        var fire = new long[sae.Shard.Count];
        double mse = 0, fvu = 0, l0 = 0;
        for (var b = 0; b < batches; b++)
        {
            var stats = sae.Evaluate(Factorization.ScaledForModel(source.Next(), inputScale), default, fire);
            mse += stats.Mse / ((double)inputScale * inputScale);
            fvu += stats.Fvu;
            l0 += stats.L0;
        }
        long evaluated = (long)batches * spec.BatchSize * grid.Groups, m = spec.DSae;
        var rates = new double[2];
        log10Density = null;
        if (grid.Group == 0)
        {
            var fired = grid.Latents.Gather<long>(fire);
            if (fired is not null)
            {
                log10Density = fired.Select(f => (float)Math.Log10(f / (double)evaluated + 1e-10)).ToArray();
                rates[0] = fired.Count(f => f == 0) / (double)m;
                rates[1] = fired.Count(f => f > Factorization.DenseDensity * evaluated) / (double)m;
            }
        }
        return new FactorizeMetrics(mse / batches, fvu / batches, l0 / batches, rates[0], rates[1], null, null, tokens,
            seconds, seconds > 0 ? tokens / seconds : 0);
    }

    /// <summary>The whole dictionary on the group's first rank (null on the others): the other tensors' rows
    /// concatenated in shard order, W_enc's columns gathered a block of rows at a time (so no second whole copy is
    /// held); b_dec is the same on every rank.</summary>
    private static SaeParameters? GatherParameters(SaeParameters p, int d, int local, FactorizeGrid grid)
    {
        var shards = grid.LatentShards;
        var root = grid.Latents.Rank == 0;
        var m = (long)local * shards;
        var columns = root ? new float[d * m] : null;  // [d][m]
        const int rows = 64;
        for (var i0 = 0; i0 < d; i0 += rows)
        {
            var count = Math.Min(rows, d - i0);
            var block = grid.Latents.Gather<float>(p.WEnc.AsSpan(i0 * local, count * local));  // [shards][count][local]
            if (block is null) continue;
            for (var s = 0; s < shards; s++)
                for (var i = 0; i < count; i++)
                    Array.Copy(block, ((long)s * count + i) * local, columns!, (i0 + i) * m + (long)s * local, local);
        }
        var bEnc = grid.Latents.Gather<float>(p.BEnc);
        var wDec = grid.Latents.Gather<float>(p.WDec);
        var threshold = grid.Latents.Gather<float>(p.Threshold);
        return root ? new SaeParameters(columns!, bEnc!, wDec!, p.BDec, threshold!) : null;
    }

    /// <summary><see cref="FactorizeExperiment.Fold"/> in the gathered arrays themselves (the whole dictionary is not
    /// copied again).</summary>
    private static SaeDictionary FoldInPlace(FactorizeConfig config, SaeModelSpec sae, SaeParameters p, float scale)
    {
        if (scale != 1f)
        {
            System.Numerics.Tensors.TensorPrimitives.Multiply(p.WEnc, scale, p.WEnc);
            System.Numerics.Tensors.TensorPrimitives.Divide(p.WDec, scale, p.WDec);
            System.Numerics.Tensors.TensorPrimitives.Divide(p.BDec, scale, p.BDec);
        }
        // matching_pursuit runs in one process (the native SAE refuses a split one), so it never comes here.
        var threshold = config.Sae.Architecture == SaeArchitecture.JumpRelu ||
                        SaeModelSpec.SelectsOverBatch(config.Sae.Architecture) ? p.Threshold : null;
        return new SaeDictionary(sae.DIn, sae.DSae, config.Sae.Architecture, config.Sae.K, p.WEnc, p.BEnc, p.WDec, p.BDec, threshold);
    }

    /// <summary>Counts what this rank contributed to the collectives of the training steps (checkpoints and recovery
    /// measurements left out), and the communication model's prediction of it (README, "Communication").</summary>
    private sealed class Traffic(FactorizeGrid grid, int kAux, bool auxk)
    {
        private CommCounters latents0 = grid.Latents.Counters, data0 = grid.Data.Counters, world0 = grid.World.Counters;
        private long steps, auxSteps, auxCodes;

        /// <summary>Runs <paramref name="work"/> without counting its collectives.</summary>
        public T Outside<T>(Func<T> work)
        {
            var (latents, data, world) = (grid.Latents.Counters, grid.Data.Counters, grid.World.Counters);
            var result = work();
            latents0 = latents0.Plus(grid.Latents.Counters.Minus(latents));
            data0 = data0.Plus(grid.Data.Counters.Minus(data));
            world0 = world0.Plus(grid.World.Counters.Minus(world));
            return result;
        }

        public void Step(SaeStats stats)
        {
            steps++;
            if (auxk && stats.Dead > 0)
            {
                auxSteps++;
                auxCodes += Math.Min(kAux, stats.Dead);  // AuxK's codes per token this step
            }
        }

        public string Finish(FactorizeConfig config, SaeModelSpec whole)
        {
            var latents = grid.Latents.Counters.Minus(latents0);
            var data = grid.Data.Counters.Minus(data0);
            var world = grid.World.Counters.Minus(world0);
            double per(long bytes) => steps > 0 ? bytes / (double)steps : 0;
            var mine = new[] { per(latents.Bytes), per(data.Bytes), per(world.Bytes), per(latents.Calls + data.Calls + world.Calls) };
            var everyone = grid.World.Gather<double>(mine);
            if (everyone is null) return "";
            var model = CommunicationModel.BytesPerStep(config.Sae.Architecture, whole.DIn, whole.DSae, whole.K, whole.BatchSize,
                grid.LatentShards, grid.Groups, auxStepFraction: steps > 0 ? auxSteps / (double)steps : 0,
                auxCodesPerToken: auxSteps > 0 ? auxCodes / (double)auxSteps : 0);
            return Json.Document(w =>
            {
                w.WriteStartObject();
                w.WriteString("what", "payload bytes each rank contributed to collectives per training step (the buffers handed to " +
                                      "MPI; a ring allreduce puts about 2(P-1)/P of its buffer on the wire), against the model");
                w.WriteNumber("processes", grid.World.Size);
                w.WriteNumber("latent_shards", grid.LatentShards);
                w.WriteNumber("data_groups", grid.Groups);
                w.WriteNumber("steps", steps);
                w.WriteNumber("steps_with_dead_latents", auxSteps);
                w.WriteStartObject("model");
                Json.Number(w, "latent_bytes_per_step", model.Latents);
                Json.Number(w, "data_bytes_per_step", model.Data);
                Json.Number(w, "control_bytes_per_step", model.Control);
                w.WriteEndObject();
                w.WriteStartArray("ranks");
                for (var r = 0; r < grid.World.Size; r++)
                {
                    w.WriteStartObject();
                    w.WriteNumber("rank", r);
                    Json.Number(w, "latent_bytes_per_step", everyone[r * 4]);
                    Json.Number(w, "data_bytes_per_step", everyone[r * 4 + 1]);
                    Json.Number(w, "control_bytes_per_step", everyone[r * 4 + 2]);
                    Json.Number(w, "collectives_per_step", everyone[r * 4 + 3]);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            });
        }
    }
}

/// <summary>
/// The payload each rank contributes to collectives per training step (README, "Communication"), for a dictionary of
/// m latents over d inputs split into L latent shards × G data-parallel groups, with a global batch of B tokens.
/// Latent group (L &gt; 1), per rank: the top-k merge 8·(B/G)·k (a value and an index per candidate), the partial
/// reconstructions 4·(B/G)·d, b_dec's gradient 4·d, and 32 bytes of counts and flags (the dead count, sparsity and L0,
/// whether the updated parameters are finite); when latents are dead, AuxK adds its own
/// merge 8·(B/G)·k_aux and reconstruction 4·(B/G)·d. batchtopk merges the step's k·B best (16·k·B) instead of the
/// per-token lists, and once more (16·k·B + 8, on both groups) on the rare step where a token's candidates saturate. Data group (G &gt; 1): the gradients of the rank's m/L latents
/// 4·(2·d·m/L + m/L + d) (+4·m/L for jumprelu's thresholds), their fire counts 8·m/L, the batch mean 8·d and 40
/// bytes of sums (+16 with AuxK); batchtopk's merge 16·k·B. Control: 8 bytes per step (the agreement to stop).
/// </summary>
public static class CommunicationModel
{
    public static (double Latents, double Data, double Control) BytesPerStep(SaeArchitecture architecture, long d, long m,
        long k, long batch, int latentShards, int groups, double auxStepFraction, double auxCodesPerToken)
    {
        double tokens = batch / (double)groups, local = m / (double)latentShards;
        var selects = architecture is SaeArchitecture.TopK || SaeModelSpec.SelectsOverBatch(architecture);
        var batchTopK = SaeModelSpec.SelectsOverBatch(architecture);
        double latents = 0, data = 0;
        if (latentShards > 1)
        {
            // dead count, sparsity and l0, the agreement that the updated parameters are finite, reconstruction, b_dec
            latents = 8 + 16 + 8 + 4.0 * tokens * d + 4.0 * d;
            if (architecture == SaeArchitecture.TopK) latents += 8.0 * tokens * k;
            if (batchTopK) latents += 16.0 * k * batch + 16;  // the step's best, saturation flag, smallest kept
            if (selects) latents += auxStepFraction * (8.0 * tokens * auxCodesPerToken + 4.0 * tokens * d);
        }
        if (groups > 1)
        {
            var thresholds = architecture == SaeArchitecture.JumpRelu ? local : 0;
            data = 4.0 * (2 * d * local + local + d + thresholds) + 8.0 * local + 8.0 * d + 24 + 8;
            if (batchTopK) data += 16.0 * k * batch + 16;
            if (selects) data += auxStepFraction * 16;
        }
        return (latents, data, 8);
    }
}
