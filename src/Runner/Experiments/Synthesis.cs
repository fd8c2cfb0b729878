using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>A factorize config's synthetic activations written to disk as shards, with the ground truth beside
/// them: activation sets of any size, larger than memory included, that factorize then scores against the truth.</summary>
public static class Synthesis
{
    public sealed record Result(int D, IReadOnlyList<string> Shards, long Bytes);

    public const string Kind = "synthesize";

    /// <param name="format">Npy or RawF32.</param>
    /// <param name="force">See <see cref="RunFolder.Claim"/>.</param>
    public static Result Run(SyntheticSpec data, string outDir, long tokens, long tokensPerShard, ActivationFileFormat format,
        bool force = false)
    {
        if (tokens < 1) throw new ConfigException($"--tokens is {tokens}; valid: >= 1");
        if (tokensPerShard < 1) throw new ConfigException($"--shard-tokens is {tokensPerShard}; valid: >= 1");
        RunFolder.CheckFreeSpace(outDir, 4.0 * data.D * tokens + 4.0 * data.NFeatures * (data.D + 1),
            $"synthesizing {tokens} tokens of d = {data.D}");
        RunFolder.Claim(outDir, Kind, Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteStartObject("synthetic");
            w.WriteNumber("d", data.D);
            w.WriteNumber("n_features", data.NFeatures);
            w.WriteNumber("active_mean", data.ActiveMean);
            w.WriteNumber("probability_decay", data.ProbabilityDecay);
            w.WriteBoolean("correlated", data.Correlated);
            w.WriteNumber("seed", data.Seed);
            w.WriteEndObject();
            w.WriteNumber("tokens", tokens);
            w.WriteNumber("shard_tokens", tokensPerShard);
            w.WriteString("format", format == ActivationFileFormat.Npy ? "npy" : "raw");
            w.WriteEndObject();
        }), force);
        using var synthetic = Factorization.Synthetic(data, batchTokens: 4096);
        var shards = synthetic.WriteShards(outDir, tokens, tokensPerShard, format);
        RunFolder.Finish(outDir, RunFolder.Status.Completed);
        return new Result(data.D, shards, shards.Sum(p => new FileInfo(p).Length));
    }
}
