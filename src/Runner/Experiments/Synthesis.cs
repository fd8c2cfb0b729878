using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;

namespace NativeEngine.Runner.Experiments;

/// <summary>A factorize config's synthetic activations written to disk as shards, with the ground truth beside
/// them: activation sets of any size, larger than memory included, that factorize then scores against the truth.</summary>
public static class Synthesis
{
    public sealed record Result(int D, IReadOnlyList<string> Shards, long Bytes);

    /// <param name="format">Npy or RawF32.</param>
    public static Result Run(SyntheticSpec data, string outDir, long tokens, long tokensPerShard, ActivationFileFormat format)
    {
        if (tokens < 1) throw new ConfigException($"--tokens is {tokens}; valid: >= 1");
        if (tokensPerShard < 1) throw new ConfigException($"--shard-tokens is {tokensPerShard}; valid: >= 1");
        RunFolder.Prepare(outDir);
        using var synthetic = Factorization.Synthetic(data, batchTokens: 4096);
        var shards = synthetic.WriteShards(outDir, tokens, tokensPerShard, format);
        return new Result(data.D, shards, shards.Sum(p => new FileInfo(p).Length));
    }
}
