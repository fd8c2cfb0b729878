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

/// <summary>
/// n_instances independent toy models trained together on the context's backend. Parameters stay there;
/// <see cref="GetParameters"/> copies them out. W is [instances][n][m] (row i = feature i's direction), b [instances][n].
/// </summary>
public sealed class ToyModel : IDisposable
{
    private readonly ToyHandle _handle;

    public ToyModelSpec Spec { get; }

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

    public void Train(long steps) => NativeEngineException.ThrowIfFailed(NativeMethods.ToyTrain(_handle, steps));

    public long StepsDone
    {
        get
        {
            NativeEngineException.ThrowIfFailed(NativeMethods.ToyStepsDone(_handle, out var steps));
            return steps;
        }
    }

    /// <summary>Mean loss per instance over fresh evaluation batches (a stream disjoint from training's).</summary>
    public float[] Evaluate(int batches)
    {
        var loss = new float[Spec.NInstances];
        NativeEngineException.ThrowIfFailed(NativeMethods.ToyEvaluate(_handle, batches, loss, loss.Length));
        return loss;
    }

    public (float[] W, float[] B) GetParameters()
    {
        var w = new float[(long)Spec.NInstances * Spec.NFeatures * Spec.NHidden];
        var b = new float[(long)Spec.NInstances * Spec.NFeatures];
        GetParameters(w, b);
        return (w, b);
    }

    public void GetParameters(Span<float> w, Span<float> b) =>
        NativeEngineException.ThrowIfFailed(NativeMethods.ToyGetParams(_handle, w, w.Length, b, b.Length));

    /// <summary>Replaces the parameters and restarts the optimizer state.</summary>
    public void SetParameters(ReadOnlySpan<float> w, ReadOnlySpan<float> b) =>
        NativeEngineException.ThrowIfFailed(NativeMethods.ToySetParams(_handle, w, w.Length, b, b.Length));

    /// <summary>The batch training draws at <paramref name="step"/> for one instance: [batch][n].</summary>
    public float[] SampleBatch(long step, int instance)
    {
        var x = new float[(long)Spec.BatchSize * Spec.NFeatures];
        NativeEngineException.ThrowIfFailed(NativeMethods.ToySampleBatch(_handle, step, instance, x, x.Length));
        return x;
    }

    public void Dispose() => _handle.Dispose();
}
