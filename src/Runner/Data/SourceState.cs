using System.Text.Json;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Data;

/// <summary>
/// Where a batch source stands, enough to continue bit-identically: every draw is a counter-based function of
/// (seed, epoch, position), so the seed and the number of tokens served are the whole state. The remaining fields
/// describe the source it came from and are checked on restore, so a state is not applied to other data or
/// another buffer. Epoch and TokenInEpoch are the draws so far (TokensServed + SkippedTokens) split by the epoch
/// length (0 for synthetic data); SkippedTokens counts tokens left out for holding NaN or infinity.
/// </summary>
public sealed record SourceState(
    string Source,
    ulong Seed,
    long TokensServed,
    long Epoch,
    long TokenInEpoch,
    long TokensPerEpoch,
    int D,
    int BufferTokens,
    int ChunkTokens,
    long SkippedTokens = 0)
{
    public string ToJson() => Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteString("source", Source);
            w.WriteNumber("seed", Seed);
            w.WriteNumber("tokens_served", TokensServed);
            w.WriteNumber("epoch", Epoch);
            w.WriteNumber("token_in_epoch", TokenInEpoch);
            w.WriteNumber("tokens_per_epoch", TokensPerEpoch);
            w.WriteNumber("d", D);
            w.WriteNumber("buffer_tokens", BufferTokens);
            w.WriteNumber("chunk_tokens", ChunkTokens);
            w.WriteNumber("skipped_tokens", SkippedTokens);
            w.WriteEndObject();
        });

    public static SourceState FromJson(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var r = doc.RootElement;
            return new SourceState(
                r.GetProperty("source").GetString() ?? "",
                r.GetProperty("seed").GetUInt64(),
                r.GetProperty("tokens_served").GetInt64(),
                r.GetProperty("epoch").GetInt64(),
                r.GetProperty("token_in_epoch").GetInt64(),
                r.GetProperty("tokens_per_epoch").GetInt64(),
                r.GetProperty("d").GetInt32(),
                r.GetProperty("buffer_tokens").GetInt32(),
                r.GetProperty("chunk_tokens").GetInt32(),
                r.TryGetProperty("skipped_tokens", out var skipped) ? skipped.GetInt64() : 0);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new DataFormatException($"source state: not a valid state ({e.Message})", e);
        }
    }
}

/// <summary>Batches of activations [BatchTokens][D] as float32, from files or generated.</summary>
public interface IActivationBatches : IDisposable
{
    int D { get; }
    int BatchTokens { get; }

    /// <summary>The next batch [BatchTokens][D]; valid until the following call of Next, Restore or Dispose.</summary>
    ReadOnlyMemory<float> Next();

    /// <summary>The position after the batches returned so far (batches prepared ahead do not count).</summary>
    SourceState State { get; }

    /// <summary>Continues from a saved state, as if the batches before it had just been returned.</summary>
    void Restore(SourceState state);
}
