namespace NativeEngine.Interop;

/// <summary>Shape, router and optimizer settings of a batch of mixture-of-experts toy models.</summary>
public sealed record MoeModelSpec(
    ToyModelKind ExpertModel,
    int NFeatures,
    int ExpertHidden,
    int NExperts,
    int TopK,
    int NInstances,
    int BatchSize,
    float Lr,
    float WeightDecay,
    OptimizerKind Optimizer,
    ulong Seed,
    bool Renormalize,
    RouterNoise Noise,
    float LoadBalance,
    float ZLoss,
    float BiasUpdate,
    float CapacityFactor,
    float Beta1 = 0.9f,
    float Beta2 = 0.999f,
    float Eps = 1e-8f)
{
    internal MoeConfigNative ToNative() => new()
    {
        ExpertModel = (int)ExpertModel,
        Optimizer = (int)Optimizer,
        NFeatures = NFeatures,
        ExpertHidden = ExpertHidden,
        NExperts = NExperts,
        TopK = TopK,
        NInstances = NInstances,
        BatchSize = BatchSize,
        Lr = Lr,
        WeightDecay = WeightDecay,
        Beta1 = Beta1,
        Beta2 = Beta2,
        Eps = Eps,
        Renormalize = Renormalize ? 1 : 0,
        Noise = (int)Noise,
        LoadBalance = LoadBalance,
        ZLoss = ZLoss,
        BiasUpdate = BiasUpdate,
        CapacityFactor = CapacityFactor,
        Seed = Seed,
    };
}

/// <summary>One instance's evaluation: the loss terms, the fraction of routed slots dropped by the capacity
/// limit, and each expert's usage (fraction of tokens routed to it; the usages sum to top_k).</summary>
public sealed record MoeEvaluation(float Loss, float L1Penalty, float BalanceLoss, float ZLoss, float DroppedFraction,
    float[] Usage);

/// <summary>Parameters of every instance: W [instances][E][n][m], b [instances][E][n], WGate and WNoise
/// [instances][n][E], RouteBias [instances][E].</summary>
public sealed record MoeParameters(float[] W, float[] B, float[] WGate, float[] WNoise, float[] RouteBias);

/// <summary>n_instances mixture-of-experts toy models trained together on the context's backend.</summary>
public sealed class MoeModel : IDisposable
{
    private const int EvaluationFields = 5;  // NE_MOE_EVAL_FIELDS
    private readonly MoeHandle _handle;

    public MoeModelSpec Spec { get; }

    public MoeModel(EngineContext context, MoeModelSpec spec, ReadOnlySpan<float> importance,
        ReadOnlySpan<float> featureProbability)
    {
        Spec = spec;
        var native = spec.ToNative();
        NativeEngineException.ThrowIfFailed(NativeMethods.MoeCreate(context.Handle, in native, importance,
            importance.Length, featureProbability, featureProbability.Length, out _handle));
    }

    /// <summary>A part of a batch split across ranks, as <see cref="ToyModel"/>'s.</summary>
    public MoeModel(EngineContext context, MoeModelSpec spec, long firstInstance, long totalInstances,
        ReadOnlySpan<float> importance, ReadOnlySpan<float> featureProbability)
    {
        Spec = spec;
        var native = spec.ToNative();
        NativeEngineException.ThrowIfFailed(NativeMethods.MoeCreatePart(context.Handle, in native, firstInstance,
            totalInstances, importance, importance.Length, featureProbability, featureProbability.Length, out _handle));
    }

    public void SetL1(ReadOnlySpan<float> l1) =>
        NativeEngineException.ThrowIfFailed(NativeMethods.MoeSetL1(_handle, l1, l1.Length));

    public void SetFeatureSets(ReadOnlySpan<int> setOfFeature, ReadOnlySpan<FeatureSetKind> setKind)
    {
        var kinds = new int[setKind.Length];
        for (var s = 0; s < kinds.Length; s++) kinds[s] = (int)setKind[s];
        NativeEngineException.ThrowIfFailed(NativeMethods.MoeSetFeatureSets(_handle, setOfFeature, setOfFeature.Length,
            kinds, kinds.Length));
    }

    public void Train(long steps) => NativeEngineException.ThrowIfFailed(NativeMethods.MoeTrain(_handle, steps));

    /// <summary>As <see cref="ToyModel.NonFinite"/>.</summary>
    public NonFinite? NonFinite
    {
        get
        {
            NativeEngineException.ThrowIfFailed(NativeMethods.MoeNonFinite(_handle, out var result));
            return result.ToRecord();
        }
    }

    public MoeEvaluation[] Evaluate(int batches)
    {
        var fields = EvaluationFields + Spec.NExperts;
        var output = new float[Spec.NInstances * fields];
        NativeEngineException.ThrowIfFailed(NativeMethods.MoeEvaluate(_handle, batches, output, output.Length));
        return Enumerable.Range(0, Spec.NInstances).Select(k =>
        {
            var o = output.AsSpan(k * fields, fields);
            return new MoeEvaluation(o[0], o[1], o[2], o[3], o[4], o[EvaluationFields..].ToArray());
        }).ToArray();
    }

    public MoeParameters GetParameters()
    {
        long I = Spec.NInstances, n = Spec.NFeatures, m = Spec.ExpertHidden, E = Spec.NExperts;
        var p = new MoeParameters(new float[I * E * n * m], new float[I * E * n], new float[I * n * E],
            new float[I * n * E], new float[I * E]);
        NativeEngineException.ThrowIfFailed(NativeMethods.MoeGetParams(_handle, p.W, p.W.Length, p.B, p.B.Length,
            p.WGate, p.WGate.Length, p.WNoise, p.WNoise.Length, p.RouteBias, p.RouteBias.Length));
        return p;
    }

    public void Dispose() => _handle.Dispose();
}
