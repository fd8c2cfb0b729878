using System.Globalization;
using NativeEngine.Interop;
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

    /// <param name="format">Npy, RawF32, RawBF16 (half the bytes; values rounded to bfloat16), or Arrow: a SAELens activation cache (a save_to_disk folder, column
    /// "activations" of rows of <paramref name="context"/> tokens) in <paramref name="outDir"/> itself.</param>
    /// <param name="force">See <see cref="RunFolder.Claim"/>.</param>
    public static Result Run(SyntheticSpec data, string outDir, long tokens, long tokensPerShard, ActivationFileFormat format,
        int context = 128, bool force = false, IRunProgress? progress = null)
    {
        if (tokens < 1) throw new ConfigException($"--tokens is {tokens}; valid: >= 1");
        if (tokensPerShard < 1) throw new ConfigException($"--shard-tokens is {tokensPerShard}; valid: >= 1");
        var arrow = format == ActivationFileFormat.Arrow;
        if (arrow && (context < 1 || tokens % context != 0))
            throw new ConfigException($"--context is {context}, --tokens {tokens}: an Arrow cache holds whole rows of context tokens; give tokens a multiple of it");
        var g = data.Generator;
        // float32 values in every format but RawBF16 (an Arrow row's list offsets and headers are a small share on top).
        var bytesPerValue = format == ActivationFileFormat.RawBF16 ? 2.0 : 4.0;
        RunFolder.CheckFreeSpace(outDir, bytesPerValue * g.D * tokens * (arrow ? 1.01 : 1) + 4.0 * g.NFeatures * (g.D + 7),
            $"synthesizing {tokens} tokens of d = {g.D}");
        RunFolder.Claim(outDir, Kind, Json.Document(w =>
        {
            w.WriteStartObject();
            FactorizeConfigWriter.WriteSynthetic(w, data);
            w.WriteNumber("tokens", tokens);
            w.WriteNumber("shard_tokens", tokensPerShard);
            w.WriteString("format", format switch { ActivationFileFormat.Npy => "npy", ActivationFileFormat.Arrow => "arrow", _ => "raw" });
            if (format == ActivationFileFormat.RawBF16) w.WriteString("dtype", "bfloat16");
            if (arrow) w.WriteNumber("context", context);
            w.WriteEndObject();
        }), force);
        if (Factorization.SlowToBuild(data))
            progress?.Note($"building the ground truth: {g.NFeatures} features in d = {g.D}, {g.OrthoSteps} orthogonalisation steps (minutes on a CPU)");
        using var engine = new EngineContext(Backend.Cpu);
        using var generator = Factorization.Synthetic(engine, data);
        var report = progress?.For("synthesize");
        IReadOnlyList<string> files;
        if (!arrow)
        {
            files = WriteShards(generator, outDir, tokens, tokensPerShard, format, report);
        }
        else
        {
            var rowsPerFile = (int)Math.Clamp(tokensPerShard / context, 1, int.MaxValue);
            using (var writer = new SaeLensCacheWriter(outDir, ArrowColumn, context, generator.D, tokens / context, rowsPerFile: rowsPerFile))
            {
                var rowsPerBlock = Math.Max(1, 4096 / context);
                var block = new float[(long)rowsPerBlock * context * generator.D];
                for (long token = 0; token < tokens; token += (long)rowsPerBlock * context)
                {
                    var span = block.AsSpan(0, (int)(Math.Min((long)rowsPerBlock * context, tokens - token) * generator.D));
                    generator.Sample(SynthStream.Train, token, span);
                    writer.Append(span);
                    report?.Invoke(Math.Min(tokens, token + span.Length / generator.D), tokens);
                }
                writer.Complete();
            }
            files = HfDatasetFolder.Read(outDir).DataFiles;
        }
        WriteGroundTruth(outDir, data, generator, tokens);
        RunFolder.Finish(outDir, RunFolder.Status.Completed);
        return new Result(generator.D, files, files.Sum(p => new FileInfo(p).Length));
    }

    /// <summary>Samples [0, tokens) of the generator's training stream as shards of tokensPerShard tokens
    /// (shard_00000.npy, … or .f32 for RawF32, .bf16 for RawBF16). Returns the shard paths.</summary>
    public static IReadOnlyList<string> WriteShards(SynthGenerator generator, string directory, long tokens, long tokensPerShard,
        ActivationFileFormat format, Action<long, long>? progress = null)
    {
        if (format is not (ActivationFileFormat.Npy or ActivationFileFormat.RawF32 or ActivationFileFormat.RawBF16))
            throw new ArgumentException($"synthetic shards are written as Npy, RawF32 or RawBF16, not {format}", nameof(format));
        Directory.CreateDirectory(directory);
        var d = generator.D;
        var extension = format switch { ActivationFileFormat.Npy => ".npy", ActivationFileFormat.RawBF16 => ".bf16", _ => ".f32" };
        var paths = new List<string>();
        var block = new float[(int)Math.Min(4096, tokensPerShard) * d];
        for (long first = 0, index = 0; first < tokens; first += tokensPerShard, index++)
        {
            var path = Path.Combine(directory, "shard_" + index.ToString("D5", CultureInfo.InvariantCulture) + extension);
            var count = Math.Min(tokensPerShard, tokens - first);
            using var writer = ActivationShardWriter.Create(path, format, count, d);
            for (long t = 0; t < count; t += block.Length / d)
            {
                var span = block.AsSpan(0, (int)Math.Min(block.Length / d, count - t) * d);
                generator.Sample(SynthStream.Train, first + t, span);
                writer.Append(span);
                progress?.Invoke(first + t + span.Length / d, tokens);
            }
            writer.Complete();
            paths.Add(path);
        }
        return paths;
    }

    /// <summary>ground_truth.safetensors: the generator's whole truth (features, bias, probabilities, forest,
    /// magnitudes) and its settings (metadata "synthetic"), from which factorize and eval build the same generator
    /// again for fresh samples.</summary>
    public static void WriteGroundTruth(string directory, SyntheticSpec data, SynthGenerator generator, long tokens)
    {
        var t = generator.Truth;
        var metadata = new Dictionary<string, string>
        {
            [GroundTruthFile.GeneratorKey] = FactorizeConfigLoader.Name(data.Generator.Kind),
            [GroundTruthFile.SyntheticKey] = SyntheticJson(data),
            ["tokens"] = tokens.ToString(CultureInfo.InvariantCulture),
            ["stream"] = "samples 0 .. tokens-1 of the training stream, in order",
        };
        GroundTruthFile.Write(directory, new GroundTruthFileContents(t.Features, generator.NFeatures, generator.D, t.Probability,
            metadata, t.Bias, t.FireProbability, t.Parent, t.Flags, t.MagnitudeMean, t.MagnitudeStd));
    }

    // The data.synthetic section alone, every value.
    private static string SyntheticJson(SyntheticSpec data)
    {
        var wrapped = Json.Document(w =>
        {
            w.WriteStartObject();
            FactorizeConfigWriter.WriteSynthetic(w, data);
            w.WriteEndObject();
        });
        using var document = System.Text.Json.JsonDocument.Parse(wrapped);
        return document.RootElement.GetProperty("synthetic").GetRawText();
    }
}
