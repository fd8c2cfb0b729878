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

/// <summary>Element types of a collective. Must stay in sync with <c>ne_comm_type</c>.</summary>
public enum CommType
{
    Float = 0,
    Double = 1,
    Int64 = 2,
    UInt8 = 3,
}

/// <summary>Reductions of a collective. Must stay in sync with <c>ne_comm_op</c>.</summary>
public enum CommOp
{
    Sum = 0,
    Max = 1,
    Min = 2,
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

/// <summary>Must stay in sync with <c>ne_moe_noise</c>.</summary>
public enum RouterNoise
{
    None = 0,
    /// <summary>H = xW_g + N(0,1)·softplus(xW_noise), training only.</summary>
    NoisyTopK = 1,
    /// <summary>The router sees x·U[0.99, 1.01] per element, training only.</summary>
    Jitter = 2,
}

/// <summary>Must stay in sync with <c>ne_sae_architecture</c>.</summary>
public enum SaeArchitecture
{
    TopK = 0,
    BatchTopK = 1,
    Relu = 2,
    JumpRelu = 3,
    /// <summary>BatchTopK codes trained to reconstruct from every nested prefix of latents (matryoshka widths); a
    /// threshold at inference, like BatchTopK.</summary>
    MatryoshkaBatchTopK = 4,
    /// <summary>No encoder: codes by greedy matching pursuit on the decoder rows (residual threshold, iteration limit,
    /// stop on a repeated support). One process.</summary>
    MatchingPursuit = 5,
}

/// <summary>Inputs of the SAE's encoder GEMM (accumulation and master weights stay fp32). Must stay in sync with
/// <c>ne_sae_precision</c>. Tf32 and Bf16 need the CUDA backend.</summary>
public enum SaePrecision
{
    Fp32 = 0,
    Tf32 = 1,
    Bf16 = 2,
}

/// <summary>Which value stopped being finite in training. Must stay in sync with <c>ne_non_finite_quantity</c>.</summary>
public enum NonFiniteQuantity
{
    None = 0,
    /// <summary>The loss of a step's batch, or its gradient: the step was not applied.</summary>
    Loss = 1,
    /// <summary>Parameters after an update (for an SAE, a decoder row's norm).</summary>
    Parameters = 2,
}

/// <summary>Must stay in sync with <c>ne_synth_kind</c>.</summary>
public enum SynthKind
{
    /// <summary>SynthSAEBench (SAELens): Zipfian firing, a feature forest, a low-rank copula, an orthogonalised
    /// dictionary and a bias.</summary>
    SaeBench = 0,
    /// <summary>Sharkey et al. (2022): p_i ∝ decay^i, optional copula, U(0, 1] coefficients, Gaussian unit rows.</summary>
    Sharkey = 1,
}

/// <summary>Must stay in sync with <c>ne_synth_preset</c>.</summary>
public enum SynthPreset
{
    /// <summary>SynthSAEBench-16k: 16,384 features in 768 dimensions.</summary>
    SaeBench16k = 0,
}

/// <summary>Must stay in sync with <c>ne_synth_stream</c>: disjoint streams of samples.</summary>
public enum SynthStream
{
    Train = 0,
    /// <summary>Fresh samples for measuring, never met in training.</summary>
    Evaluate = 1,
}
