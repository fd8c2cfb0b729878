namespace NativeEngine.Interop;

/// <summary>Status codes of the C ABI. Must stay in sync with <c>ne_status</c> in cuda/include/nativeengine.h.</summary>
public enum Status
{
    Ok = 0,
    InvalidArgument = 1,
    OutOfMemory = 2,
    BackendUnavailable = 3,
    Cuda = 4,
    Unsupported = 5,
    Internal = 6,
}

/// <summary>Must stay in sync with <c>ne_backend</c>.</summary>
public enum Backend
{
    Auto = 0,
    Cpu = 1,
    Cuda = 2,
}

/// <summary>Must stay in sync with <c>ne_toy_model</c>.</summary>
public enum ToyModelKind
{
    /// <summary>h = Wᵀx, x' = W h + b.</summary>
    Linear = 0,
    /// <summary>h = Wᵀx, x' = ReLU(W h + b).</summary>
    ReluOutput = 1,
    /// <summary>h = ReLU(Wᵀx), x' = ReLU(W h + b): privileged basis, tied.</summary>
    ReluHidden = 2,
    /// <summary>h = ReLU(Wᵀx), x' = ReLU(W_out h + b), untied; x ~ U[−1, 1) when present, target |x|.</summary>
    AbsValue = 3,
}

/// <summary>Must stay in sync with <c>ne_feature_set_kind</c>.</summary>
public enum FeatureSetKind
{
    Independent = 0,
    /// <summary>The set's features fire together, on one shared draw.</summary>
    Correlated = 1,
    /// <summary>When the set is on, exactly one member, chosen uniformly, fires.</summary>
    Anticorrelated = 2,
}

/// <summary>Must stay in sync with <c>ne_optimizer</c>.</summary>
public enum OptimizerKind
{
    AdamW = 0,
    Adam = 1,
}
