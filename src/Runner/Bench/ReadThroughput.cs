using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Bench;

/// <summary>
/// `bench read`: how fast activations come off disk in each format factorize reads, on the same data. The same
/// tokens are written as .npy shards and as a SAELens activation cache (Arrow, Array2D rows of ContextSize
/// tokens, record batches of 1000 rows as datasets writes them), in float32 and float16, split into the same
/// files; each is then read sequentially (every shard front to back, 4096 tokens a read) and through
/// ActivationSource as factorize draws batches (shuffled, prefetched). The files are freshly written, so they are
/// read from the page cache: this measures the readers, not the disk.
/// </summary>
public static class ReadThroughput
{
    public const int ContextSize = 128;
    public const int Files = 4;

    /// <summary>The largest d (a factorize config's limit too) and batch measured: one context row of the largest d is
    /// 512 MiB of float32 values.</summary>
    public const int MaxD = 1 << 20, MaxBatch = 1 << 20;

    public static JsonArray Measure(int d, long tokens, int batchTokens, double seconds)
    {
        if (d is < 1 or > MaxD || batchTokens is < 1 or > MaxBatch || tokens < ContextSize || (double)tokens * d > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(d), $"d {d}, tokens {tokens}, batch {batchTokens}");
        // The same tokens in four files sets: .npy and Arrow, float32 and float16.
        RunFolder.CheckFreeSpace(Path.GetTempPath(), 2.0 * (4 + 2) * tokens * d * 1.01,
            $"bench read's files ({tokens} tokens of d = {d} as .npy and Arrow, float32 and float16)", "lower --d-in");
        var folder = Path.Combine(Path.GetTempPath(), $"nativeengine-bench-read-{Guid.NewGuid():N}"[..36]);
        Directory.CreateDirectory(folder);
        try
        {
            var rows = (int)(tokens / ContextSize);
            var values = new float[(long)rows * ContextSize * d];
            var rng = new Random(0);
            for (var i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1);
            var rowsPerFile = (rows + Files - 1) / Files;
            var results = new JsonArray();
            foreach (var dtype in new[] { "float32", "float16" })
            {
                var npy = Path.Combine(folder, $"npy-{dtype}");
                Directory.CreateDirectory(npy);
                for (var f = 0; f * rowsPerFile < rows; f++)
                {
                    var first = (long)f * rowsPerFile * ContextSize * d;
                    var count = Math.Min((long)rowsPerFile * ContextSize * d, values.Length - first);
                    WriteNpy(Path.Combine(npy, $"part{f:D2}.npy"), values.AsSpan((int)first, (int)count), d, dtype);
                }
                var arrow = Path.Combine(folder, $"arrow-{dtype}");
                SaeLensActivationCache.Write(arrow, "blocks.0.hook_resid_pre", values, ContextSize, d, dtype, rowsPerFile: rowsPerFile);
                results.Add(Row($"npy {dtype}", new ActivationFiles([Path.Combine(npy, "part*.npy")], ActivationFileFormat.Npy), d, dtype, batchTokens, seconds));
                results.Add(Row($"arrow {dtype} (SAELens cache)", new ActivationFiles([arrow], ActivationFileFormat.Arrow), d, dtype, batchTokens, seconds));
            }
            return results;
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static JsonObject Row(string format, ActivationFiles files, int d, string dtype, int batchTokens, double seconds)
    {
        var bytesPerToken = d * (dtype == "float32" ? 4 : 2);
        var shards = files.Open();
        Timing sequential;
        long total;
        try
        {
            total = shards.Sum(s => s.Tokens);
            var buffer = new float[4096L * d];
            sequential = Timing.Measure(passes =>
            {
                for (var p = 0; p < passes; p++)
                    foreach (var shard in shards)
                        for (long t = 0; t < shard.Tokens; t += 4096)
                        {
                            var n = (int)Math.Min(4096, shard.Tokens - t);
                            shard.Read(t, buffer.AsSpan(0, n * d));
                        }
            }, seconds);
        }
        finally
        {
            foreach (var shard in shards) shard.Dispose();
        }
        using var source = ActivationSource.Open(files, new ActivationSourceOptions(batchTokens, Seed: 0));
        var shuffled = Timing.Measure(batches => { for (var b = 0; b < batches; b++) source.Next(); }, seconds, warmup: 4);
        var sequentialTokens = sequential.Units * total / sequential.Seconds;
        var shuffledTokens = shuffled.Units * (double)batchTokens / shuffled.Seconds;
        return new JsonObject
        {
            ["format"] = format,
            ["d"] = d,
            ["tokens"] = total,
            ["file_bytes_per_token"] = bytesPerToken,
            ["sequential_tokens_per_second"] = Math.Round(sequentialTokens),
            ["sequential_bytes_per_second"] = Math.Round(sequentialTokens * bytesPerToken),
            ["shuffled_batch_tokens"] = batchTokens,
            ["shuffled_buffer_tokens"] = source.BufferTokens,
            ["shuffled_tokens_per_second"] = Math.Round(shuffledTokens),
        };
    }

    private static void WriteNpy(string path, ReadOnlySpan<float> values, int d, string dtype)
    {
        var rows = values.Length / d;
        using var stream = File.Create(path);
        stream.Write(Npy.HeaderBytes(rows, d, dtype == "float32" ? "<f4" : "<f2"));
        if (dtype == "float32") stream.Write(MemoryMarshal.AsBytes(values));
        else
        {
            var halves = new Half[values.Length];
            for (var i = 0; i < halves.Length; i++) halves[i] = (Half)values[i];
            stream.Write(MemoryMarshal.AsBytes(halves.AsSpan()));
        }
    }
}
