using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// Approach 2 on a model whose features are known: a trained toy model's hidden activations h on fresh data,
/// written as shards `factorize` reads, beside the ground truth: the model's feature directions W_i (rows of W,
/// [n][m]) and the true codes x. h = W x for linear and relu_output models, ReLU(W x) for relu_hidden and
/// abs_value (in the engine's layout, h = Σ_i x_i W_i).
/// </summary>
public static class Harvest
{
    /// <summary>What a harvest wrote: the hidden-activation shards, and the ground truth's feature directions
    /// [n][d] (also in ground_truth.safetensors).</summary>
    public sealed record Output(IReadOnlyList<string> Shards, float[] Features);

    /// <summary>The hidden activations of one instance for a batch x [batch][n]: [batch][m].</summary>
    public static float[] Hidden(ToyConfig c, ReadOnlySpan<float> w /*[n][m]*/, ReadOnlySpan<float> x)
    {
        int n = c.NFeatures, m = c.NHidden, batch = x.Length / n;
        var h = new float[batch * m];
        for (var t = 0; t < batch; t++)
        {
            var row = h.AsSpan(t * m, m);
            for (var i = 0; i < n; i++)
            {
                var xi = x[t * n + i];
                if (xi != 0) System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(w.Slice(i * m, m), xi, row, row);
            }
            if (c.HasPrivilegedBasis) System.Numerics.Tensors.TensorPrimitives.Max(row, 0f, row);
        }
        return h;
    }

    /// <summary>Harvests instance <paramref name="instance"/> of a toy model. Cancelling throws
    /// OperationCanceledException after removing the shard in progress (the finished ones stay).</summary>
    public static Output Run(EngineContext context, ToyConfig config, float[] weights, int instance,
        long tokens, long tokensPerShard, string outDir, Action<long, long>? progress = null, CancellationToken cancel = default)
    {
        CheckInstance(instance, config.NInstances);
        int n = config.NFeatures, m = config.NHidden;
        var w = weights.AsSpan(instance * n * m, n * m).ToArray();
        return Write(context, config, instance, m, x => Hidden(config, w, x), tokens, tokensPerShard, outDir, progress, cancel,
            () => (w, new Dictionary<string, string>
            {
                ["source"] = "toy model",
                ["model"] = ToyConfig.ModelName(config.Model),
                ["instance"] = instance.ToString(),
                ["layout"] = "features[i] is the model's direction of feature i in its hidden space; codes_*.npy hold the true x",
            }));
    }

    /// <summary>A mixture of experts: h is every expert's hidden activations side by side ([E·m]), zero for the
    /// experts the router did not choose. Feature i's direction is its row of W in the expert that handles it most
    /// often when it is active (its home expert), placed in that expert's block.</summary>
    public static Output Run(EngineContext context, MoeConfig config, MoeParameters parameters, int instance,
        long tokens, long tokensPerShard, string outDir, Action<long, long>? progress = null, CancellationToken cancel = default)
    {
        CheckInstance(instance, config.Run.NInstances);
        var moe = new MoeForward(config, parameters, instance);
        return Write(context, config.Run, instance, moe.HiddenSize, moe.Hidden, tokens, tokensPerShard, outDir, progress, cancel,
            () => (moe.HomeDirections(), new Dictionary<string, string>
            {
                ["source"] = "mixture of experts",
                ["expert_model"] = ToyConfig.ModelName(config.ExpertModel),
                ["n_experts"] = config.NExperts.ToString(),
                ["top_k"] = config.TopK.ToString(),
                ["instance"] = instance.ToString(),
                ["home_expert"] = string.Join(",", moe.HomeExperts()),
                ["layout"] = "h is the experts' hidden activations side by side (zero where not routed); features[i] is " +
                             "feature i's row of W in its home expert's block; codes_*.npy hold the true x",
            }));
    }

    private static void CheckInstance(int instance, int instances)
    {
        if (instance < 0 || instance >= instances)
            throw new ConfigException($"--instance is {instance}; the model has instances 0..{instances - 1}");
    }

    private static Output Write(EngineContext context, ToyConfig config, int instance, int d,
        Func<float[], float[]> hiddenOf, long tokens, long tokensPerShard, string outDir, Action<long, long>? progress,
        CancellationToken cancel, Func<(float[] Features, Dictionary<string, string> Metadata)> groundTruth)
    {
        RunFolder.Prepare(outDir);
        var n = config.NFeatures;
        RunFolder.CheckFreeSpace(outDir, ((double)d + n) * 4 * tokens + 4.0 * n * d, $"harvesting {tokens} tokens (hidden_*.npy and codes_*.npy)");
        // Fresh data: the training stream past the steps the model trained on.
        using var model = ToyExperiment.CreateModel(context, config);
        var step = config.Steps + 1;
        var paths = new List<string>();
        long written = 0;
        for (var shard = 0; written < tokens; shard++)
        {
            var count = Math.Min(tokensPerShard, tokens - written);
            var path = Path.Combine(outDir, $"hidden_{shard:D5}.npy");
            var codesPath = Path.Combine(outDir, $"codes_{shard:D5}.npy");
            using var hidden = ActivationShardWriter.Create(path, ActivationFileFormat.Npy, count, d);
            using var codes = ActivationShardWriter.Create(codesPath, ActivationFileFormat.Npy, count, n);
            for (long done = 0; done < count;)
            {
                cancel.ThrowIfCancellationRequested();  // the writers' Dispose removes the unfinished shard
                var x = model.SampleBatch(step++, instance);
                var rows = (int)Math.Min(config.BatchSize, count - done);
                var xs = x.AsSpan(0, rows * n).ToArray();
                hidden.Append(hiddenOf(xs));
                codes.Append(xs);
                done += rows;
                progress?.Invoke(written + done, tokens);
            }
            hidden.Complete();
            codes.Complete();
            paths.Add(path);
            written += count;
        }
        var (features, metadata) = groundTruth();
        GroundTruthFile.Write(outDir, features, n, d, config.InstanceProbability(instance).ToArray(), metadata);
        return new Output(paths, features);
    }

    /// <summary>A toy or MoE run folder harvested: which instance, the activations' d, and the shards written.</summary>
    public sealed record FolderResult(int Instance, int D, IReadOnlyList<string> Shards);

    /// <summary>Harvests the run folder <paramref name="modelDir"/> (written by `toy` or `moe`) into
    /// <paramref name="outDir"/>; instance null takes the best instance of its first setting.</summary>
    public const string Kind = "harvest";

    /// <param name="force">See <see cref="RunFolder.Claim"/>: outDir is claimed as a harvest of this model, instance
    /// and token count.</param>
    public static FolderResult Run(EngineContext context, string modelDir, int? instance, long tokens, long tokensPerShard,
        string outDir, IRunProgress progress, bool force = false, CancellationToken cancel = default)
    {
        var configPath = Path.Combine(modelDir, "config.json");
        var weightsPath = Path.Combine(modelDir, "weights.safetensors");
        if (!File.Exists(configPath) || !File.Exists(weightsPath))
            throw new ConfigException($"--model {modelDir}: a run folder holds config.json and weights.safetensors " +
                                      "(written by `toy` or `moe`)");
        if (tokens < 1) throw new ConfigException($"--tokens is {tokens}; valid: >= 1");
        if (tokensPerShard < 1) throw new ConfigException($"--shard-tokens is {tokensPerShard}; valid: >= 1");
        void Claim(int chosen, int d, int n)
        {
            RunFolder.CheckFreeSpace(outDir, ((double)d + n) * 4 * tokens + 4.0 * n * d,
                $"harvesting {tokens} tokens (hidden_*.npy and codes_*.npy)");
            RunFolder.Claim(outDir, Kind, Arguments(chosen), force);
        }
        string Arguments(int chosen) => Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteString("model", Path.GetFullPath(modelDir));
            w.WriteNumber("instance", chosen);
            w.WriteNumber("tokens", tokens);
            w.WriteNumber("shard_tokens", tokensPerShard);
            w.WriteEndObject();
        });
        if (IsMoeRun(configPath))
        {
            var config = MoeConfigLoader.LoadFile(configPath);
            var parameters = MoeRunFolder.ReadParameters(weightsPath, config);
            var k = instance ?? TrainedToyModel.BestInstances(modelDir, config.Run)[0];
            CheckInstance(k, config.Run.NInstances);
            Claim(k, config.NExperts * config.ExpertHidden, config.Run.NFeatures);
            var shards = Run(context, config, parameters, k, tokens, tokensPerShard, outDir,
                progress.For($"harvest MoE instance {k}"), cancel).Shards;
            RunFolder.Finish(outDir, RunFolder.Status.Completed);
            return new FolderResult(k, config.NExperts * config.ExpertHidden, shards);
        }
        var model = TrainedToyModel.Load(modelDir);
        var chosen = instance ?? model.BestOfSetting[0];
        CheckInstance(chosen, model.Config.NInstances);
        Claim(chosen, model.Config.NHidden, model.Config.NFeatures);
        var written = Run(context, model.Config, model.W, chosen, tokens, tokensPerShard, outDir,
            progress.For($"harvest instance {chosen}"), cancel).Shards;
        RunFolder.Finish(outDir, RunFolder.Status.Completed);
        return new FolderResult(chosen, model.Config.NHidden, written);
    }

    private static bool IsMoeRun(string configPath)
    {
        using var document = JsonObjectReader.Parse(File.ReadAllText(configPath), configPath);
        return document.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object &&
               document.RootElement.TryGetProperty("n_experts", out _);
    }
}
