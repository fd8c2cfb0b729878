namespace NativeEngine.Interop;

/// <summary>Shape and optimizer settings of a batch of toy models, as the native side takes them.</summary>
public sealed record ToyModelSpec(
    ToyModelKind Model,
    int NFeatures,
    int NHidden,
    int NInstances,
    int BatchSize,
    float Lr,
    float WeightDecay,
    OptimizerKind Optimizer,
    ulong Seed,
    float Beta1 = 0.9f,
    float Beta2 = 0.999f,
    float Eps = 1e-8f)
{
    internal ToyConfigNative ToNative() => new()
    {
        Model = (int)Model,
        Optimizer = (int)Optimizer,
        NFeatures = NFeatures,
        NHidden = NHidden,
        NInstances = NInstances,
        BatchSize = BatchSize,
        Lr = Lr,
        WeightDecay = WeightDecay,
        Beta1 = Beta1,
        Beta2 = Beta2,
        Eps = Eps,
        Seed = Seed,
    };
}

/// <summary>Parameters of a batch of toy models: W [instances][n][m] (row i = feature i's direction), W_out of
/// the same shape for untied models (row i = output i's weights over the hidden units; null otherwise), b [instances][n].</summary>
public sealed record ToyParameters(float[] W, float[]? WOut, float[] B);

/// <summary>Per-instance means over evaluation batches: the task loss (importance-weighted MSE) and the L1 term.
/// Training minimises their sum.</summary>
public sealed record ToyEvaluation(float[] Loss, float[] Penalty)
{
    public float Objective(int instance) => Loss[instance] + Penalty[instance];
}

/// <summary>
/// n_instances independent toy models trained together on the context's backend. Parameters stay there;
/// <see cref="GetParameters()"/> copies them out.
/// </summary>
public sealed class ToyModel : IDisposable
{
    private readonly ToyHandle _handle;

    public ToyModelSpec Spec { get; }

    /// <summary>True for models whose decoder is its own matrix W_out (abs_value).</summary>
    public bool IsUntied => Spec.Model == ToyModelKind.AbsValue;

    /// <param name="importance">[instances][n] row-major.</param>
    /// <param name="featureProbability">[instances][n] row-major.</param>
    public ToyModel(EngineContext context, ToyModelSpec spec, ReadOnlySpan<float> importance,
        ReadOnlySpan<float> featureProbability)
    {
        Spec = spec;
        var native = spec.ToNative();
        NativeEngineException.ThrowIfFailed(NativeMethods.ToyCreate(context.Handle, in native, importance,
            importance.Length, featureProbability, featureProbability.Length, out _handle));
    }

    /// <summary>A part of a batch split across ranks: the spec's NInstances instances (with their rows of importance
    /// and featureProbability) are [firstInstance, firstInstance + NInstances) of totalInstances, and train exactly as
    /// those instances of the whole would (the same initial values and data streams).</summary>
    public ToyModel(EngineContext context, ToyModelSpec spec, long firstInstance, long totalInstances,
        ReadOnlySpan<float> importance, ReadOnlySpan<float> featureProbability)
    {
        Spec = spec;
        var native = spec.ToNative();
        NativeEngineException.ThrowIfFailed(NativeMethods.ToyCreatePart(context.Handle, in native, firstInstance,
            totalInstances, importance, importance.Length, featureProbability, featureProbability.Length, out _handle));
    }

    /// <summary>The L1 coefficient λ of each instance: training adds λ·mean‖h‖₁ to the loss.</summary>
    public void SetL1(ReadOnlySpan<float> l1) =>
        NativeEngineException.ThrowIfFailed(NativeMethods.ToySetL1(_handle, l1, l1.Length));

    /// <param name="setOfFeature">[n]: each feature's set index, or −1 for none.</param>
    /// <param name="setKind">[sets]: <see cref="FeatureSetKind.Correlated"/> or <see cref="FeatureSetKind.Anticorrelated"/>.</param>
    public void SetFeatureSets(ReadOnlySpan<int> setOfFeature, ReadOnlySpan<FeatureSetKind> setKind)
    {
        var kinds = new int[setKind.Length];
        for (var s = 0; s < kinds.Length; s++) kinds[s] = (int)setKind[s];
        NativeEngineException.ThrowIfFailed(NativeMethods.ToySetFeatureSets(_handle, setOfFeature, setOfFeature.Length,
            kinds, kinds.Length));
    }

    public void Train(long steps) => NativeEngineException.ThrowIfFailed(NativeMethods.ToyTrain(_handle, steps));

    /// <summary>The first step whose loss or updated parameters were not finite; null while all were. That step was
    /// not applied to its instance, which then takes no further updates.</summary>
    public NonFinite? NonFinite
    {
        get
        {
            NativeEngineException.ThrowIfFailed(NativeMethods.ToyNonFinite(_handle, out var result));
            return result.ToRecord();
        }
    }

    public long StepsDone
    {
        get
        {
            NativeEngineException.ThrowIfFailed(NativeMethods.ToyStepsDone(_handle, out var steps));
            return steps;
        }
    }

    /// <summary>Means per instance over fresh evaluation batches (a stream disjoint from training's).</summary>
    public ToyEvaluation Evaluate(int batches)
    {
        var loss = new float[Spec.NInstances];
        var penalty = new float[Spec.NInstances];
        NativeEngineException.ThrowIfFailed(NativeMethods.ToyEvaluate(_handle, batches, loss, loss.Length, penalty,
            penalty.Length));
        return new ToyEvaluation(loss, penalty);
    }

    public ToyParameters GetParameters()
    {
        var count = (long)Spec.NInstances * Spec.NFeatures * Spec.NHidden;
        var parameters = new ToyParameters(new float[count], IsUntied ? new float[count] : null,
            new float[(long)Spec.NInstances * Spec.NFeatures]);
        GetParameters(parameters.W, parameters.WOut, parameters.B);
        return parameters;
    }

    /// <param name="wOut">Empty for tied models.</param>
    public void GetParameters(Span<float> w, Span<float> wOut, Span<float> b) =>
        NativeEngineException.ThrowIfFailed(NativeMethods.ToyGetParams(_handle, w, w.Length, wOut, wOut.Length, b,
            b.Length));

    /// <summary>Replaces the parameters and restarts the optimizer state. <paramref name="wOut"/> is empty for
    /// tied models.</summary>
    public void SetParameters(ReadOnlySpan<float> w, ReadOnlySpan<float> wOut, ReadOnlySpan<float> b) =>
        NativeEngineException.ThrowIfFailed(NativeMethods.ToySetParams(_handle, w, w.Length, wOut, wOut.Length, b,
            b.Length));

    /// <summary>The batch training draws at <paramref name="step"/> for one instance: [batch][n].</summary>
    public float[] SampleBatch(long step, int instance)
    {
        var x = new float[(long)Spec.BatchSize * Spec.NFeatures];
        NativeEngineException.ThrowIfFailed(NativeMethods.ToySampleBatch(_handle, step, instance, x, x.Length));
        return x;
    }

    public void Dispose() => _handle.Dispose();
}
