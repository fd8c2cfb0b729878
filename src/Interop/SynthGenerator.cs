using System.Runtime.InteropServices;

namespace NativeEngine.Interop;

/// <summary>Everything that defines a synthetic generator (<c>ne_synth_config</c>, field for field): which family,
/// the sizes, the seed, and each family's parameters (the other family's are ignored). docs/synthsaebench.md.</summary>
/// <param name="MeMaxDepth">Deepest parent whose children may exclude each other; null: no limit.</param>
/// <param name="OrthoChunk">Rows of the Gram matrix held at once while orthogonalising: memory only, no effect on
/// the result.</param>
public sealed record SynthGeneratorSpec(
    SynthKind Kind,
    long NFeatures,
    long D,
    ulong Seed,
    int CorrelationRank = 0,
    double ZipfExponent = 1,
    double PMin = 0.01,
    double PMax = 0.3,
    double Decay = 0.99,
    double ActiveMean = 5,
    long RootNodes = 0,
    int BranchingMin = 2,
    int BranchingMax = 2,
    int MaxDepth = 1,
    int MeMinDepth = 0,
    int? MeMaxDepth = null,
    bool Compensate = false,
    bool ScaleChildren = false,
    double MePortion = 0,
    double CorrelationScale = 0,
    double MeanStart = 1,
    double MeanEnd = 1,
    double StdMean = 0,
    double StdStd = 0,
    double BiasNorm = 0,
    double OrthoLr = 0.01,
    int OrthoSteps = 0,
    int OrthoChunk = 1024)
{
    /// <summary>Every value of a preset.</summary>
    public static SynthGeneratorSpec Preset(SynthPreset preset)
    {
        NativeEngineException.ThrowIfFailed(NativeMethods.SynthPreset((int)preset, out var native));
        return FromNative(native);
    }

    /// <summary>The Sharkey et al. set: p_i = min(1, c decay^i) with Σ p = activeMean, a copula of rank
    /// <paramref name="correlationRank"/> (0: independent), U(0, 1] coefficients, Gaussian unit rows, no bias.</summary>
    public static SynthGeneratorSpec Sharkey(long d, long nFeatures, double decay, double activeMean, int correlationRank,
        ulong seed) =>
        new(SynthKind.Sharkey, nFeatures, d, seed, CorrelationRank: correlationRank, Decay: decay, ActiveMean: activeMean);

    /// <summary>Null when the native side accepts the spec, else its message naming the field, value and what is valid.</summary>
    public string? WhyInvalid()
    {
        var native = ToNative();
        var status = NativeMethods.SynthCheck(in native);
        return status == Status.Ok ? null : Marshal.PtrToStringUTF8(NativeMethods.LastError()) ?? status.ToString();
    }

    internal SynthConfigNative ToNative() => new()
    {
        Kind = (int)Kind,
        CorrelationRank = CorrelationRank,
        NFeatures = NFeatures,
        D = D,
        Seed = Seed,
        ZipfExponent = ZipfExponent,
        PMin = PMin,
        PMax = PMax,
        Decay = Decay,
        ActiveMean = ActiveMean,
        RootNodes = RootNodes,
        BranchingMin = BranchingMin,
        BranchingMax = BranchingMax,
        MaxDepth = MaxDepth,
        MeMinDepth = MeMinDepth,
        MeMaxDepth = MeMaxDepth ?? -1,
        Compensate = Compensate ? 1 : 0,
        ScaleChildren = ScaleChildren ? 1 : 0,
        MePortion = MePortion,
        CorrelationScale = CorrelationScale,
        MeanStart = MeanStart,
        MeanEnd = MeanEnd,
        StdMean = StdMean,
        StdStd = StdStd,
        BiasNorm = BiasNorm,
        OrthoLr = OrthoLr,
        OrthoSteps = OrthoSteps,
        OrthoChunk = OrthoChunk,
    };

    internal static SynthGeneratorSpec FromNative(SynthConfigNative c) => new(
        (SynthKind)c.Kind, c.NFeatures, c.D, c.Seed, c.CorrelationRank, c.ZipfExponent, c.PMin, c.PMax, c.Decay,
        c.ActiveMean, c.RootNodes, c.BranchingMin, c.BranchingMax, c.MaxDepth, c.MeMinDepth,
        c.MeMaxDepth < 0 ? null : c.MeMaxDepth, c.Compensate != 0, c.ScaleChildren != 0, c.MePortion,
        c.CorrelationScale, c.MeanStart, c.MeanEnd, c.StdMean, c.StdStd, c.BiasNorm, c.OrthoLr, c.OrthoSteps,
        c.OrthoChunk);
}

/// <summary>A generator's ground truth. Per feature i: Features row i (unit, [n][d]), its target firing probability,
/// its probability after compensation for the forest (clamped to 1), its parent (-1: a root or in no tree), flags
/// (<see cref="SynthGenerator.ExclusiveFlag"/>, <see cref="SynthGenerator.ScalesChildrenFlag"/>), and its magnitude's
/// mean and standard deviation; Bias [d].</summary>
public sealed record SynthTruth(float[] Features, float[] Bias, float[] Probability, float[] FireProbability,
    int[] Parent, int[] Flags, float[] MagnitudeMean, float[] MagnitudeStd);

/// <summary>Sparse true codes of a range of samples: sample t's active features (ascending, code &gt; 0) are
/// Index[RowBegin[t] .. RowBegin[t+1]) with their Value.</summary>
public sealed record SparseCodes(long[] RowBegin, int[] Index, float[] Value);

/// <summary>
/// A synthetic generator with a known ground truth (<c>ne_synth</c>): x = Σ a_i W_i + b. The truth is built once when
/// it is created (the SynthSAEBench dictionary's orthogonalisation is O(steps n² d): minutes at 16k on a CPU), or
/// given back (<see cref="SynthGenerator(EngineContext, SynthGeneratorSpec, float[], float[])"/>). Sample s of a
/// stream is a pure function of the spec, the stream and s.
/// </summary>
public sealed class SynthGenerator : IDisposable
{
    /// <summary>Flag of a parent whose children exclude each other.</summary>
    public const int ExclusiveFlag = 1;
    /// <summary>Flag of a parent that scales its children by its value over its mean.</summary>
    public const int ScalesChildrenFlag = 2;

    internal SynthHandle Handle { get; }

    public SynthGeneratorSpec Spec { get; }
    public int D => (int)Spec.D;
    public int NFeatures => (int)Spec.NFeatures;

    public SynthGenerator(EngineContext context, SynthGeneratorSpec spec) : this(context, spec, null, null) { }

    /// <param name="features">[n][d] and <paramref name="bias"/> [d]: the dictionary to use instead of building it
    /// (both or neither).</param>
    public SynthGenerator(EngineContext context, SynthGeneratorSpec spec, float[]? features, float[]? bias)
    {
        Spec = spec;
        var native = spec.ToNative();
        NativeEngineException.ThrowIfFailed(NativeMethods.SynthCreate(context.Handle, in native, features, features?.Length ?? 0,
            bias, bias?.Length ?? 0, out var handle));
        Handle = handle;
    }

    /// <summary>Samples [firstSample, firstSample + count) of a stream, count = x.Length / d (or codes.Length / n when
    /// x is empty): x [count][d] and dense codes [count][n]; either may be empty.</summary>
    public void Sample(SynthStream stream, long firstSample, Span<float> x, Span<float> codes = default)
    {
        var count = x.Length > 0 ? x.Length / D : codes.Length / NFeatures;
        NativeEngineException.ThrowIfFailed(NativeMethods.SynthSample(Handle, (int)stream, firstSample, count, x, x.Length,
            codes, codes.Length));
    }

    /// <summary>Samples [firstSample, firstSample + count) with their true codes, sparse; x [count][d] or empty.</summary>
    public SparseCodes SampleSparse(SynthStream stream, long firstSample, int count, Span<float> x)
    {
        var rowBegin = new long[count + 1];
        var capacity = (long)count * 64;
        while (true)
        {
            var index = new int[capacity];
            var value = new float[capacity];
            NativeEngineException.ThrowIfFailed(NativeMethods.SynthSampleSparse(Handle, (int)stream, firstSample, count, x,
                x.Length, rowBegin, rowBegin.Length, index, value, capacity, out var total));
            if (total <= capacity) return new SparseCodes(rowBegin, index[..(int)total], value[..(int)total]);
            capacity = total;
        }
    }

    public SynthTruth Truth
    {
        get
        {
            long n = Spec.NFeatures, d = Spec.D;
            var truth = new SynthTruth(new float[n * d], new float[d], new float[n], new float[n], new int[n], new int[n],
                new float[n], new float[n]);
            NativeEngineException.ThrowIfFailed(NativeMethods.SynthGetTruth(Handle, truth.Features, n * d, truth.Bias, d,
                truth.Probability, n, truth.FireProbability, n, truth.Parent, n, truth.Flags, n, truth.MagnitudeMean, n,
                truth.MagnitudeStd, n));
            return truth;
        }
    }

    public void Dispose() => Handle.Dispose();
}
