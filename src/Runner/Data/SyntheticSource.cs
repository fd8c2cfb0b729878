using NativeEngine.Interop;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Data;

/// <summary>
/// Batches of a native synthetic generator's training stream (<see cref="SynthGenerator"/>): batch b of a fresh source
/// is samples [b·BatchTokens, (b+1)·BatchTokens), each a pure function of the generator's spec and its index, so the
/// number of tokens served is the whole state. A trainer that can draw a batch where it trains takes the next
/// batch's first sample with <see cref="Take"/> instead of copying it out with <see cref="Next"/>.
/// </summary>
public sealed class SyntheticSource : IActivationBatches
{
    private readonly float[] batch;
    private readonly bool ownsGenerator;
    private long tokensServed;

    public SynthGenerator Generator { get; }
    public int D => Generator.D;
    public int BatchTokens { get; }

    /// <param name="ownsGenerator">Dispose the generator with the source.</param>
    public SyntheticSource(SynthGenerator generator, int batchTokens, bool ownsGenerator = true)
    {
        if (batchTokens < 1) throw new ArgumentOutOfRangeException(nameof(batchTokens), $"batch_tokens = {batchTokens}; must be ≥ 1");
        if ((long)batchTokens * generator.D > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(batchTokens), $"batch_tokens = {batchTokens} × d = {generator.D} exceeds one array");
        Generator = generator;
        BatchTokens = batchTokens;
        this.ownsGenerator = ownsGenerator;
        batch = new float[(long)batchTokens * generator.D];
    }

    public ReadOnlyMemory<float> Next()
    {
        Generator.Sample(SynthStream.Train, Take(), batch);
        return batch;
    }

    /// <summary>Serves the next batch without drawing it here: its first sample index (the batch is samples
    /// [index, index + BatchTokens) of the training stream).</summary>
    public long Take()
    {
        var first = tokensServed;
        tokensServed += BatchTokens;
        return first;
    }

    public SourceState State => new("synthetic", Generator.Spec.Seed, tokensServed, 0, tokensServed, 0, D, 0, 0);

    public void Restore(SourceState state)
    {
        if (state.Source != "synthetic" || state.Seed != Generator.Spec.Seed || state.D != D)
            throw new DataFormatException($"source state ({state.Source}, seed {state.Seed}, d = {state.D}) does not match this synthetic source (seed {Generator.Spec.Seed}, d = {D})");
        if (state.TokensServed < 0) throw new DataFormatException($"source state: tokens_served = {state.TokensServed}; must be ≥ 0");
        tokensServed = state.TokensServed;
    }

    public void Dispose()
    {
        if (ownsGenerator) Generator.Dispose();
    }
}
