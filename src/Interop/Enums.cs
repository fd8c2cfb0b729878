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
    Linear = 0,
    ReluOutput = 1,
}

/// <summary>Must stay in sync with <c>ne_optimizer</c>.</summary>
public enum OptimizerKind
{
    AdamW = 0,
    Adam = 1,
}
