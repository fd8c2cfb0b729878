using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NativeEngine.Interop;

/// <summary>What the loaded library offers: version, backends, and the native sizes of the ABI structs.</summary>
public static class Engine
{
    public static string Version => Marshal.PtrToStringUTF8(NativeMethods.Version()) ?? "";

    public static RuntimeInfo Runtime
    {
        get
        {
            NativeEngineException.ThrowIfFailed(NativeMethods.RuntimeQuery(out var info));
            return new RuntimeInfo(info.CudaCompiled != 0, info.CudaLoaded != 0, info.CudaDeviceCount,
                info.CpuThreads, Marshal.PtrToStringUTF8(NativeMethods.CudaUnavailableReason()) ?? "");
        }
    }

    /// <summary>Each ABI struct: (name, size in C#, size in C). They must agree.</summary>
    public static IReadOnlyList<(string Name, int Managed, int Native)> StructSizes =>
    [
        ("ne_runtime_info", Unsafe.SizeOf<RuntimeInfoNative>(), (int)NativeMethods.RuntimeInfoSize()),
        ("ne_device_info", Unsafe.SizeOf<DeviceInfoNative>(), (int)NativeMethods.DeviceInfoSize()),
        ("ne_toy_config", Unsafe.SizeOf<ToyConfigNative>(), (int)NativeMethods.ToyConfigSize()),
        ("ne_moe_config", Unsafe.SizeOf<MoeConfigNative>(), (int)NativeMethods.MoeConfigSize()),
        ("ne_sae_config", Unsafe.SizeOf<SaeConfigNative>(), (int)NativeMethods.SaeConfigSize()),
        ("ne_sae_stats", Unsafe.SizeOf<SaeStats>(), (int)NativeMethods.SaeStatsSize()),
    ];
}

public sealed record RuntimeInfo(bool CudaCompiled, bool CudaLoaded, int CudaDeviceCount, int CpuThreads,
    string CudaUnavailableReason)
{
    public bool CudaUsable => CudaLoaded && CudaDeviceCount > 0;
}

public sealed record DeviceInfo(Backend Backend, int DeviceIndex, string Name, long TotalMemory, long FreeMemory,
    int ComputeMajor, int ComputeMinor, int Multiprocessors)
{
    public string Describe() => Backend == Backend.Cuda
        ? $"{Name} (CUDA device {DeviceIndex}, sm_{ComputeMajor}{ComputeMinor}, {TotalMemory / (1L << 20)} MiB)"
        : $"{Name} ({Multiprocessors} threads)";
}

/// <summary>A backend and device. Models created on it keep running there.</summary>
public sealed class EngineContext : IDisposable
{
    internal ContextHandle Handle { get; }

    public EngineContext(Backend backend = Backend.Auto, int device = 0)
    {
        NativeEngineException.ThrowIfFailed(NativeMethods.ContextCreate((int)backend, device, out var handle));
        Handle = handle;
        Device = QueryDevice();
    }

    public DeviceInfo Device { get; }

    private DeviceInfo QueryDevice()
    {
        NativeEngineException.ThrowIfFailed(NativeMethods.ContextDeviceInfo(Handle, out var d));
        return new DeviceInfo((Backend)d.Backend, d.DeviceIndex, d.Name.ToString(), d.TotalMemory, d.FreeMemory,
            d.ComputeMajor, d.ComputeMinor, d.Multiprocessors);
    }

    public void Dispose() => Handle.Dispose();
}
