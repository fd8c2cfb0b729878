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

    /// <summary>The column of the Arrow caches synthesize writes.</summary>
    public const string ArrowColumn = "activations";

    /// <param name="format">Npy, RawF32, or Arrow: a SAELens activation cache (a save_to_disk folder, column
    /// "activations" of rows of <paramref name="context"/> tokens) in <paramref name="outDir"/> itself.</param>
    /// <param name="force">See <see cref="RunFolder.Claim"/>.</param>
    public static Result Run(SyntheticSpec data, string outDir, long tokens, long tokensPerShard, ActivationFileFormat format,
        int context = 128, bool force = false)
    {
        if (tokens < 1) throw new ConfigException($"--tokens is {tokens}; valid: >= 1");
        if (tokensPerShard < 1) throw new ConfigException($"--shard-tokens is {tokensPerShard}; valid: >= 1");
        var arrow = format == ActivationFileFormat.Arrow;
        if (arrow && (context < 1 || tokens % context != 0))
            throw new ConfigException($"--context is {context}, --tokens {tokens}: an Arrow cache holds whole rows of context tokens; give tokens a multiple of it");
        // float32 values in every format (an Arrow row's list offsets and headers are a small share on top).
        RunFolder.CheckFreeSpace(outDir, 4.0 * data.D * tokens * (arrow ? 1.01 : 1) + 4.0 * data.NFeatures * (data.D + 1),
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
            w.WriteString("format", format switch { ActivationFileFormat.Npy => "npy", ActivationFileFormat.Arrow => "arrow", _ => "raw" });
            if (arrow) w.WriteNumber("context", context);
            w.WriteEndObject();
        }), force);
        using var synthetic = Factorization.Synthetic(data, batchTokens: 4096);
        if (!arrow)
        {
            var shards = synthetic.WriteShards(outDir, tokens, tokensPerShard, format);
            RunFolder.Finish(outDir, RunFolder.Status.Completed);
            return new Result(data.D, shards, shards.Sum(p => new FileInfo(p).Length));
        }
        var rowsPerFile = (int)Math.Clamp(tokensPerShard / context, 1, int.MaxValue);
        using (var writer = new SaeLensCacheWriter(outDir, ArrowColumn, context, data.D, tokens / context, rowsPerFile: rowsPerFile))
        {
            var rowsPerBlock = Math.Max(1, 4096 / context);
            var block = new float[(long)rowsPerBlock * context * data.D];
            for (long token = 0; token < tokens; token += (long)rowsPerBlock * context)
            {
                var span = block.AsSpan(0, (int)(Math.Min((long)rowsPerBlock * context, tokens - token) * data.D));
                synthetic.Generate(token, span);
                writer.Append(span);
            }
            writer.Complete();
        }
        synthetic.WriteGroundTruth(outDir, tokens);
        RunFolder.Finish(outDir, RunFolder.Status.Completed);
        var files = HfDatasetFolder.Read(outDir).DataFiles;
        return new Result(data.D, files, files.Sum(p => new FileInfo(p).Length));
    }
}
