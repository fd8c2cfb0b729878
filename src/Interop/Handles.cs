using Microsoft.Win32.SafeHandles;

namespace NativeEngine.Interop;

/// <summary>Owns an <c>ne_context*</c>.</summary>
public sealed class ContextHandle() : SafeHandleZeroOrMinusOneIsInvalid(ownsHandle: true)
{
    protected override bool ReleaseHandle() => NativeMethods.ContextDestroy(handle) == Status.Ok;
}

/// <summary>Owns an <c>ne_toy*</c>.</summary>
public sealed class ToyHandle() : SafeHandleZeroOrMinusOneIsInvalid(ownsHandle: true)
{
    protected override bool ReleaseHandle() => NativeMethods.ToyDestroy(handle) == Status.Ok;
}

/// <summary>Owns an <c>ne_moe*</c>.</summary>
public sealed class MoeHandle() : SafeHandleZeroOrMinusOneIsInvalid(ownsHandle: true)
{
    protected override bool ReleaseHandle() => NativeMethods.MoeDestroy(handle) == Status.Ok;
}

/// <summary>Owns an <c>ne_comm*</c>.</summary>
public sealed class CommHandle() : SafeHandleZeroOrMinusOneIsInvalid(ownsHandle: true)
{
    protected override bool ReleaseHandle() => NativeMethods.CommDestroy(handle) == Status.Ok;
}

/// <summary>Owns an <c>ne_sae*</c>.</summary>
public sealed class SaeHandle() : SafeHandleZeroOrMinusOneIsInvalid(ownsHandle: true)
{
    protected override bool ReleaseHandle() => NativeMethods.SaeDestroy(handle) == Status.Ok;
}

/// <summary>Owns an <c>ne_synth*</c>.</summary>
public sealed class SynthHandle() : SafeHandleZeroOrMinusOneIsInvalid(ownsHandle: true)
{
    protected override bool ReleaseHandle() => NativeMethods.SynthDestroy(handle) == Status.Ok;
}
