namespace NativeEngine.Interop;

/// <summary>Architecture, sizes and optimizer settings of a sparse autoencoder, as the native side takes them.</summary>
public sealed record SaeModelSpec(
    SaeArchitecture Architecture,
    int DIn,
    int DSae,
    int K,
    int BatchSize,
    ulong Seed,
    long DeadWindow = 10_000_000,
    int KAux = 0,
    float L1Coefficient = 0,
    float L0Coefficient = 0,
    float AuxkAlpha = 1f / 32,
    float JumpBandwidth = 1e-3f,
    bool SparseUpdates = false,
    float Beta1 = 0.9f,
    float Beta2 = 0.999f,
    float Eps = 1e-8f,
    SaePrecision Precision = SaePrecision.Fp32,
    IReadOnlyList<long>? MatryoshkaWidths = null,
    float ResidualThreshold = 1e-2f,
    int MaxIterations = 0,
    bool StopOnDuplicateSupport = true,
    bool MatryoshkaAuxLoss = false)
{
    /// <summary>Whether the architecture chooses codes over the whole batch in training and by a threshold at inference
    /// (batchtopk, matryoshka_batchtopk).</summary>
    public static bool SelectsOverBatch(SaeArchitecture architecture) =>
        architecture is SaeArchitecture.BatchTopK or SaeArchitecture.MatryoshkaBatchTopK;

    internal SaeConfigNative ToNative()
    {
        var native = Fields();
        var widths = MatryoshkaWidths ?? [];
        if (widths.Count > Interop.MatryoshkaWidths.MaxLevels)
            throw new ArgumentException($"MatryoshkaWidths has {widths.Count} widths; valid: at most " +
                                        $"{Interop.MatryoshkaWidths.MaxLevels}", nameof(MatryoshkaWidths));
        for (var l = 0; l < widths.Count; l++) native.MatryoshkaWidths[l] = widths[l];
        native.MatryoshkaLevels = widths.Count;
        return native;
    }

    private SaeConfigNative Fields() => new()
    {
        Architecture = (int)Architecture,
        SparseUpdates = SparseUpdates ? 1 : 0,
        DIn = DIn,
        DSae = DSae,
        K = K,
        KAux = KAux,
        BatchSize = BatchSize,
        DeadWindow = DeadWindow,
        L1Coefficient = L1Coefficient,
        L0Coefficient = L0Coefficient,
        AuxkAlpha = AuxkAlpha,
        JumpBandwidth = JumpBandwidth,
        Beta1 = Beta1,
        Beta2 = Beta2,
        Eps = Eps,
        Seed = Seed,
        Precision = (int)Precision,
        ResidualThreshold = ResidualThreshold,
        MaxIterations = MaxIterations,
        StopOnDuplicateSupport = StopOnDuplicateSupport ? 1 : 0,
        MatryoshkaAuxLoss = MatryoshkaAuxLoss ? 1 : 0,
    };
}

/// <summary>Parameters in the SAELens layout: WEnc [d_in][d_sae], BEnc [d_sae], WDec [d_sae][d_in], BDec [d_in],
/// Threshold [d_sae] (jumprelu: θ; batchtopk and matryoshka_batchtopk: the inference threshold repeated).</summary>
public sealed record SaeParameters(float[] WEnc, float[] BEnc, float[] WDec, float[] BDec, float[] Threshold);

/// <summary>A sparse autoencoder trained one caller-supplied batch at a time; or this rank's part of one split across
/// ranks (<c>ne_sae_create_sharded</c>), whose parameters, state and fire counts are its shard's.</summary>
public sealed class SparseAutoencoder : IDisposable
{
    private readonly SaeHandle _handle;
    private readonly Communicator? _latents, _data;  // kept alive as long as the model

    /// <summary>The whole dictionary's spec (DSae: every latent; BatchSize: this rank's tokens per step).</summary>
    public SaeModelSpec Spec { get; }

    /// <summary>This rank's latents: [First, First + Count) of d_sae (all of them in one process).</summary>
    public (long First, int Count) Shard { get; }

    public SparseAutoencoder(EngineContext context, SaeModelSpec spec)
    {
        Spec = spec;
        var native = spec.ToNative();
        NativeEngineException.ThrowIfFailed(NativeMethods.SaeCreate(context.Handle, in native, out _handle));
        Shard = (0, spec.DSae);
    }

    /// <summary>This rank's part of an SAE split over <paramref name="latents"/> (each holds d_sae / size latents and
    /// sees the same tokens) and <paramref name="data"/> (each passes its own batch; gradients summed); either may be
    /// null. Every rank of both must make the same calls in the same order.</summary>
    public SparseAutoencoder(EngineContext context, SaeModelSpec spec, Communicator? latents, Communicator? data)
    {
        Spec = spec;
        _latents = latents;
        _data = data;
        var native = spec.ToNative();
        NativeEngineException.ThrowIfFailed(NativeMethods.SaeCreateSharded(context.Handle, in native,
            latents?.Handle.DangerousGetHandle() ?? IntPtr.Zero, data?.Handle.DangerousGetHandle() ?? IntPtr.Zero,
            out _handle));
        NativeEngineException.ThrowIfFailed(NativeMethods.SaeShard(_handle, out var first, out var count));
        Shard = (first, (int)count);
    }

    /// <summary>b_dec from a sample [tokens][d_in]: the mean, or the geometric median.</summary>
    public void InitDecoderBias(ReadOnlySpan<float> sample, bool geometricMedian) =>
        NativeEngineException.ThrowIfFailed(NativeMethods.SaeInitDecoderBias(_handle, sample, sample.Length,
            geometricMedian ? 1 : 0));

    /// <summary>The first step whose loss (that step was not applied) or updated decoder was not finite; null while
    /// all were.</summary>
    public NonFinite? NonFinite
    {
        get
        {
            NativeEngineException.ThrowIfFailed(NativeMethods.SaeNonFinite(_handle, out var result));
            return result.ToRecord();
        }
    }

    /// <summary>One step; a batch whose loss is not finite is not applied (see <see cref="NonFinite"/>).</summary>
    public SaeStats TrainStep(ReadOnlySpan<float> batch, float lr)
    {
        NativeEngineException.ThrowIfFailed(NativeMethods.SaeTrainStep(_handle, batch, batch.Length, lr, out var stats));
        return stats;
    }

    /// <summary>A step on samples [firstSample, firstSample + batch) of the generator's training stream, each times
    /// <paramref name="scale"/>, drawn natively where the SAE trains (the batch never passes through managed memory).</summary>
    public SaeStats TrainStep(SynthGenerator synth, long firstSample, float scale, float lr)
    {
        NativeEngineException.ThrowIfFailed(NativeMethods.SaeTrainStepSynth(_handle, synth.Handle, firstSample, scale, lr,
            out var stats));
        return stats;
    }

    /// <param name="xHat">Empty, or [tokens][d_in] for the reconstruction.</param>
    /// <param name="fireCount">Empty, or [d_sae]: += tokens on which each latent fired.</param>
    public SaeStats Evaluate(ReadOnlySpan<float> x, Span<float> xHat, Span<long> fireCount)
    {
        NativeEngineException.ThrowIfFailed(NativeMethods.SaeEvaluate(_handle, x, x.Length, xHat, xHat.Length,
            fireCount, fireCount.Length, out var stats));
        return stats;
    }

    /// <summary>This rank's latents' parameters (all of them in one process).</summary>
    public SaeParameters GetParameters()
    {
        long d = Spec.DIn, m = Shard.Count;
        var p = new SaeParameters(new float[d * m], new float[m], new float[m * d], new float[d], new float[m]);
        NativeEngineException.ThrowIfFailed(NativeMethods.SaeGetParams(_handle, p.WEnc, p.WEnc.Length, p.BEnc,
            p.BEnc.Length, p.WDec, p.WDec.Length, p.BDec, p.BDec.Length, p.Threshold, p.Threshold.Length));
        return p;
    }

    /// <summary>The sparsity coefficient of the steps that follow: relu's L1 coefficient or jumprelu's L0 coefficient (a
    /// schedule or controller of the caller's; not part of the state a checkpoint saves).</summary>
    public void SetSparsityCoefficient(float coefficient) =>
        NativeEngineException.ThrowIfFailed(NativeMethods.SaeSetSparsityCoefficient(_handle, coefficient));

    /// <summary>Replaces the parameters (threshold empty, or θ for jumprelu / the inference threshold for
    /// batchtopk) and resets the optimizer state.</summary>
    public void SetParameters(ReadOnlySpan<float> wEnc, ReadOnlySpan<float> bEnc, ReadOnlySpan<float> wDec,
        ReadOnlySpan<float> bDec, ReadOnlySpan<float> threshold) =>
        NativeEngineException.ThrowIfFailed(NativeMethods.SaeSetParams(_handle, wEnc, wEnc.Length, bEnc, bEnc.Length,
            wDec, wDec.Length, bDec, bDec.Length, threshold, threshold.Length));

    /// <summary>Bytes of <see cref="GetState"/>.</summary>
    public long StateSize
    {
        get
        {
            NativeEngineException.ThrowIfFailed(NativeMethods.SaeStateSize(_handle, out var bytes));
            return bytes;
        }
    }

    /// <summary>The optimizer and firing state a checkpoint stores beside the parameters.</summary>
    public byte[] GetState()
    {
        NativeEngineException.ThrowIfFailed(NativeMethods.SaeStateSize(_handle, out var bytes));
        var state = new byte[bytes];
        NativeEngineException.ThrowIfFailed(NativeMethods.SaeGetState(_handle, state, state.Length));
        return state;
    }

    public void Restore(SaeParameters parameters, ReadOnlySpan<byte> state) =>
        NativeEngineException.ThrowIfFailed(NativeMethods.SaeRestore(_handle, parameters.WEnc, parameters.WEnc.Length,
            parameters.BEnc, parameters.BEnc.Length, parameters.WDec, parameters.WDec.Length, parameters.BDec,
            parameters.BDec.Length, parameters.Threshold, parameters.Threshold.Length, state, state.Length));

    public void Dispose() => _handle.Dispose();
}
