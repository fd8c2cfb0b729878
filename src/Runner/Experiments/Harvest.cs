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
    public const string GroundTruthFile = "ground_truth.safetensors";

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

    /// <returns>The shard paths written.</returns>
    public static IReadOnlyList<string> Run(EngineContext context, ToyConfig config, float[] weights, int instance,
        long tokens, long tokensPerShard, string outDir, Action<long, long>? progress = null)
    {
        CheckInstance(instance, config.NInstances);
        int n = config.NFeatures, m = config.NHidden;
        var w = weights.AsSpan(instance * n * m, n * m).ToArray();
        return Write(context, config, instance, m, x => Hidden(config, w, x), tokens, tokensPerShard, outDir, progress,
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
    public static IReadOnlyList<string> Run(EngineContext context, MoeConfig config, MoeParameters parameters, int instance,
        long tokens, long tokensPerShard, string outDir, Action<long, long>? progress = null)
    {
        CheckInstance(instance, config.Run.NInstances);
        var moe = new MoeForward(config, parameters, instance);
        return Write(context, config.Run, instance, moe.HiddenSize, moe.Hidden, tokens, tokensPerShard, outDir, progress,
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

    private static IReadOnlyList<string> Write(EngineContext context, ToyConfig config, int instance, int d,
        Func<float[], float[]> hiddenOf, long tokens, long tokensPerShard, string outDir, Action<long, long>? progress,
        Func<(float[] Features, Dictionary<string, string> Metadata)> groundTruth)
    {
        Directory.CreateDirectory(outDir);
        var n = config.NFeatures;
        // Fresh data: the training stream past the steps the model trained on.
        using var model = ToyTraining.Create(context, config);
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
        SafeTensors.Write(Path.Combine(outDir, GroundTruthFile),
        [
            new Tensor("features", [n, d], features),
            new Tensor("probabilities", [n], config.InstanceProbability(instance).ToArray()),
        ], metadata);
        return paths;
    }
}
