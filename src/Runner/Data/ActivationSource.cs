using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Data;

/// <summary>What a token holding a value that is not finite (NaN or infinity) does to a source.</summary>
public enum NonFiniteInput
{
    /// <summary>Reading it is an error naming the file, the token and the column.</summary>
    Error,
    /// <summary>It is left out of the stream and counted (<see cref="SourceState.SkippedTokens"/>).</summary>
    Skip,
}

/// <summary>
/// How batches are drawn from files. BufferTokens rows are held in memory (BufferTokens · d · 4 bytes);
/// ChunkTokens is the length of the contiguous runs read from the shards (0: BufferTokens / 64, between 1 and
/// 4096). Prefetch prepares the next batch on a background task while the caller works on the current one.
/// NonFinite says what a token holding NaN or infinity does.
/// </summary>
public sealed record ActivationSourceOptions(int BatchTokens, int BufferTokens = 65536, int ChunkTokens = 0, ulong Seed = 0,
    bool Prefetch = true, NonFiniteInput NonFinite = NonFiniteInput.Error);

/// <summary>
/// Shuffled float32 batches [BatchTokens][d] from activation shards, epoch after epoch.
/// <para>The scheme. The tokens of every shard are cut into chunks of ChunkTokens contiguous tokens (the last
/// chunk of a shard may be shorter). Each epoch visits the chunks in a fresh random order (a Fisher–Yates
/// permutation keyed by seed and epoch). The shuffle buffer holds up to BufferTokens tokens: whenever the next
/// chunk fits in its free rows, that chunk is read (one contiguous read per run of free rows) into them. Each
/// output token is drawn uniformly from the tokens in the buffer and removed (without replacement; the draw for
/// the p-th token of epoch e is a counter-based function of seed, e and p). When the chunks of the epoch are
/// used up the buffer drains, so the stream of output tokens is epoch after epoch, each epoch every token exactly
/// once; batches are consecutive slices of that stream and may straddle two epochs.</para>
/// <para>Resuming. Because every draw is a function of (seed, epoch, position), the state is the seed and the
/// number of tokens served. Restore replays the index bookkeeping of the epoch up to that position without
/// touching data (a few ns a token), then reads the rows the buffer holds at that point, so a resumed source
/// continues bit-identically.</para>
/// <para>Non-finite input. Every token is checked as it is read into the buffer. Under NonFiniteInput.Error a token
/// holding NaN or infinity is an error naming its file and index; under Skip it is drawn as usual but left out of
/// the batch (the next draw takes its place) and counted. The stream position is then the number of draws, which
/// the state records beside the tokens served, so a resumed source still continues bit-identically.</para>
/// <para>Files must not be truncated while mapped: reading a page that vanished kills the process (SIGBUS).</para>
/// </summary>
public sealed class ActivationSource : IActivationBatches
{
    private const ulong PickStream = 1;
    private const ulong PermutationStream = 2;

    private readonly IReadOnlyList<IActivationShard> shards;
    private readonly bool ownsShards;
    private readonly long[] shardStart;     // [shards + 1] first global token of each shard
    private readonly long[] chunkStart;     // [shards + 1] first chunk index of each shard
    private readonly int chunkCount;
    private readonly int capacity;
    private readonly int chunkTokens;
    private readonly float[] buffer;        // [capacity][d]
    private readonly int[] rows;            // positions → buffer rows: [0, count) hold tokens, the rest are free
    private readonly long[] tokenOfRow;     // [capacity] global token held by each buffer row
    private readonly int[] chunkOrder;      // [chunkCount] this epoch's chunk permutation
    private readonly bool[] nonFiniteRow;  // [capacity] the row holds a token with NaN or infinity (Skip only)
    private readonly NonFiniteInput nonFinite;
    private readonly BatchPrefetcher prefetcher;
    private readonly ulong seed;
    // (draws, skipped) after each filled batch, in order; Next takes the one of the batch it hands out.
    private readonly System.Collections.Concurrent.ConcurrentQueue<(long Drawn, long Skipped)> filled = new();

    // Advanced by the fill (on the background task when prefetching).
    private long epoch;
    private long tokenInEpoch;
    private int count;
    private int chunkCursor;
    private long skippedByFill;

    // Advanced by the caller.
    private long tokensServed;
    private long drawnServed;    // draws behind the batches handed out (tokens served + tokens skipped)
    private long skippedServed;

    public int D { get; }
    public int BatchTokens { get; }
    public long TotalTokens { get; }
    public int BufferTokens => capacity;
    public int ChunkTokens => chunkTokens;

    /// <summary>Opens the shards of <paramref name="files"/>; disposing the source closes them.</summary>
    public static ActivationSource Open(ActivationFiles files, ActivationSourceOptions options)
    {
        var shards = files.Open();
        try { return new ActivationSource(shards, options, ownsShards: true); }
        catch
        {
            foreach (var shard in shards) shard.Dispose();
            throw;
        }
    }

    public ActivationSource(IReadOnlyList<IActivationShard> shards, ActivationSourceOptions options, bool ownsShards = false)
    {
        if (shards.Count == 0) throw new ArgumentException("no activation shards", nameof(shards));
        if (options.BatchTokens < 1) throw new ArgumentOutOfRangeException(nameof(options), $"batch_tokens = {options.BatchTokens}; must be ≥ 1");
        if (options.BufferTokens < 1) throw new ArgumentOutOfRangeException(nameof(options), $"buffer_tokens = {options.BufferTokens}; must be ≥ 1");
        if (options.ChunkTokens < 0) throw new ArgumentOutOfRangeException(nameof(options), $"chunk_tokens = {options.ChunkTokens}; must be ≥ 0 (0: automatic)");
        this.shards = shards;
        this.ownsShards = ownsShards;
        D = shards[0].D;
        foreach (var shard in shards)
            if (shard.D != D)
                throw new DataFormatException($"{shard.Path}: d = {shard.D}, but {shards[0].Path} has d = {D}; all shards must share one d");
        BatchTokens = options.BatchTokens;
        if ((long)BatchTokens * D > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(options), $"batch_tokens = {BatchTokens} × d = {D} exceeds one array ({Array.MaxLength} values)");
        seed = options.Seed;

        shardStart = new long[shards.Count + 1];
        for (var s = 0; s < shards.Count; s++) shardStart[s + 1] = shardStart[s] + shards[s].Tokens;
        TotalTokens = shardStart[^1];
        if (TotalTokens == 0) throw new DataFormatException($"{shards[0].Path}: the shards hold no tokens");

        capacity = (int)Math.Min(options.BufferTokens, TotalTokens);
        if ((long)capacity * D > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(options), $"buffer_tokens = {capacity} × d = {D} exceeds one array ({Array.MaxLength} values); lower buffer_tokens");
        chunkTokens = Math.Min(capacity, options.ChunkTokens > 0 ? options.ChunkTokens : Math.Clamp(capacity / 64, 1, 4096));

        chunkStart = new long[shards.Count + 1];
        for (var s = 0; s < shards.Count; s++) chunkStart[s + 1] = chunkStart[s] + (shards[s].Tokens + chunkTokens - 1) / chunkTokens;
        if (chunkStart[^1] > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(options), $"{chunkStart[^1]} chunks of {chunkTokens} tokens are too many; raise chunk_tokens");
        chunkCount = (int)chunkStart[^1];

        buffer = new float[(long)capacity * D];
        nonFinite = options.NonFinite;
        nonFiniteRow = new bool[capacity];
        rows = new int[capacity];
        tokenOfRow = new long[capacity];
        chunkOrder = new int[chunkCount];
        prefetcher = new BatchPrefetcher(BatchTokens * D, Fill, options.Prefetch);
        Reset(0, 0);
    }

    public ReadOnlyMemory<float> Next()
    {
        var batch = prefetcher.Next();
        tokensServed += BatchTokens;
        if (!filled.TryDequeue(out var after)) throw new InvalidOperationException("a batch was handed out that was never filled");
        (drawnServed, skippedServed) = after;
        return batch;
    }

    public SourceState State => new("files", seed, tokensServed, drawnServed / TotalTokens, drawnServed % TotalTokens,
                                     TotalTokens, D, capacity, chunkTokens, skippedServed);

    public void Restore(SourceState state)
    {
        if (state.Source != "files" || state.TokensPerEpoch != TotalTokens || state.D != D || state.BufferTokens != capacity || state.ChunkTokens != chunkTokens)
            throw new DataFormatException($"source state ({state.Source}, {state.TokensPerEpoch} tokens of d = {state.D}, buffer {state.BufferTokens}, chunk {state.ChunkTokens}) " +
                                          $"does not match these files (files, {TotalTokens} tokens of d = {D}, buffer {capacity}, chunk {chunkTokens})");
        if (state.TokensServed < 0 || state.SkippedTokens < 0 || state.Epoch < 0 || state.TokenInEpoch < 0 || state.TokenInEpoch >= TotalTokens)
            throw new DataFormatException($"source state: tokens_served {state.TokensServed}, skipped_tokens {state.SkippedTokens}, epoch " +
                                          $"{state.Epoch}, token_in_epoch {state.TokenInEpoch}: counts must be ≥ 0 and token_in_epoch < {TotalTokens}");
        var drawn = state.TokensServed + state.SkippedTokens;
        if (state.Epoch > long.MaxValue / TotalTokens || state.Epoch * TotalTokens + state.TokenInEpoch != drawn)
            throw new DataFormatException($"source state: epoch {state.Epoch} × {TotalTokens} + token_in_epoch {state.TokenInEpoch} " +
                                          $"is not tokens_served + skipped_tokens ({drawn})");
        if (state.Seed != seed)
            throw new DataFormatException($"source state: seed {state.Seed}, but this source was opened with seed {seed}");
        prefetcher.Stop();
        filled.Clear();
        tokensServed = state.TokensServed;
        (drawnServed, skippedServed) = (drawn, state.SkippedTokens);
        skippedByFill = state.SkippedTokens;
        Reset(state.Epoch, state.TokenInEpoch);
    }

    /// <summary>Puts the buffer where it stands after <paramref name="position"/> tokens of epoch <paramref name="atEpoch"/>.</summary>
    private void Reset(long atEpoch, long position)
    {
        epoch = atEpoch;
        BeginEpoch();
        while (tokenInEpoch < position) NextRow(load: false);
        LoadPositions(0, count);
    }

    private void BeginEpoch()
    {
        tokenInEpoch = 0;
        count = 0;
        chunkCursor = 0;
        for (var i = 0; i < capacity; i++) rows[i] = i;
        for (var i = 0; i < chunkCount; i++) chunkOrder[i] = i;
        var key = CounterRng.Key(seed, PermutationStream, (ulong)epoch);
        for (var i = chunkCount - 1; i > 0; i--)
        {
            var j = (int)CounterRng.Below(CounterRng.Next(key, (ulong)i), i + 1);
            (chunkOrder[i], chunkOrder[j]) = (chunkOrder[j], chunkOrder[i]);
        }
    }

    private void Fill(Span<float> batch)
    {
        for (var k = 0; k < BatchTokens; k++)
        {
            var row = NextRow(load: true);
            for (long skippedInARow = 0; nonFiniteRow[row]; row = NextRow(load: true))
            {
                skippedByFill++;
                if (++skippedInARow > TotalTokens)
                    throw new DataFormatException($"{shards[0].Path}: every token of the activation files holds NaN or infinity " +
                                                  $"({skippedInARow} skipped in a row)");
            }
            buffer.AsSpan(row * D, D).CopyTo(batch.Slice(k * D, D));
        }
        filled.Enqueue((epoch * TotalTokens + tokenInEpoch, skippedByFill));
    }

    /// <summary>Draws the next token of the stream and returns its buffer row, valid until the next call.</summary>
    private int NextRow(bool load)
    {
        if (tokenInEpoch == TotalTokens)
        {
            epoch++;
            BeginEpoch();
        }
        Refill(load);
        var r = (int)CounterRng.Below(CounterRng.Hash(seed, PickStream, (ulong)epoch, (ulong)tokenInEpoch), count);
        var row = rows[r];
        rows[r] = rows[count - 1];
        rows[count - 1] = row;
        count--;
        tokenInEpoch++;
        return row;
    }

    private void Refill(bool load)
    {
        while (chunkCursor < chunkCount)
        {
            var chunk = chunkOrder[chunkCursor];
            var s = ShardOfChunk(chunk);
            var first = (chunk - chunkStart[s]) * chunkTokens;
            var length = (int)Math.Min(chunkTokens, shards[s].Tokens - first);
            if (capacity - count < length) return;
            for (var i = 0; i < length; i++) tokenOfRow[rows[count + i]] = shardStart[s] + first + i;
            if (load) LoadPositions(count, count + length);
            count += length;
            chunkCursor++;
        }
    }

    /// <summary>Reads the tokens of positions [from, to) into their rows, one read per run contiguous in both.</summary>
    private void LoadPositions(int from, int to)
    {
        var p = from;
        while (p < to)
        {
            var row = rows[p];
            var token = tokenOfRow[row];
            var s = ShardOf(token);
            var run = 1;
            while (p + run < to && rows[p + run] == row + run && tokenOfRow[row + run] == token + run && token + run < shardStart[s + 1]) run++;
            var shard = shards[s];
            var local = token - shardStart[s];
            try
            {
                shard.Read(local, buffer.AsSpan(row * D, run * D));
            }
            catch (Exception e) when (e is not DataFormatException)
            {
                throw new DataFormatException($"{shard.Path}: reading tokens [{local}, {local + run}) failed: {e.Message}", e);
            }
            CheckFinite(shard, local, row, run);
            p += run;
        }
    }

    // Marks (Skip) or refuses (Error) the tokens of rows [row, row + run) that hold NaN or infinity; a run whose sum
    // is finite holds none, so clean data costs one vectorised sum per run.
    private void CheckFinite(IActivationShard shard, long local, int row, int run)
    {
        var values = buffer.AsSpan(row * D, run * D);
        var clean = float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum<float>(values));
        for (var i = 0; i < run; i++)
        {
            var bad = !clean && FirstNonFinite(values.Slice(i * D, D)) >= 0;
            if (bad && nonFinite == NonFiniteInput.Error)
            {
                var c = FirstNonFinite(values.Slice(i * D, D));
                throw new DataFormatException($"{shard.Path}: token {local + i} holds {values[i * D + c]} at column {c} (NaN or " +
                                              "infinity); fix the data, or set \"data\": {\"non_finite\": \"skip\"} to leave such tokens out");
            }
            nonFiniteRow[row + i] = bad;
        }
    }

    private static int FirstNonFinite(ReadOnlySpan<float> token)
    {
        for (var c = 0; c < token.Length; c++)
            if (!float.IsFinite(token[c])) return c;
        return -1;
    }

    private int ShardOf(long token)
    {
        var i = Array.BinarySearch(shardStart, token);
        // An exact hit may be the start of empty shards: take the last shard starting there.
        if (i >= 0) { while (i + 1 < shards.Count && shardStart[i + 1] == token) i++; return i; }
        return ~i - 1;
    }

    private int ShardOfChunk(long chunk)
    {
        var i = Array.BinarySearch(chunkStart, chunk);
        if (i >= 0) { while (i + 1 < shards.Count && chunkStart[i + 1] == chunk) i++; return i; }
        return ~i - 1;
    }

    public void Dispose()
    {
        prefetcher.Dispose();
        if (ownsShards)
            foreach (var shard in shards) shard.Dispose();
    }
}
