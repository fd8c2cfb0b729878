using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NativeEngine.Interop;

/// <summary>What the loaded library offers: version, backends, and the native sizes of the ABI structs.</summary>
public static class Engine
{
    /// <summary>The <c>NE_ABI_VERSION</c> these bindings mirror; the resolver refuses a library of another.</summary>
    public const int AbiVersion = 7;

    public static string Version => Marshal.PtrToStringUTF8(NativeMethods.Version()) ?? "";

    /// <summary>The loaded library's <c>NE_ABI_VERSION</c> (equal to <see cref="AbiVersion"/> once loaded).</summary>
    public static int LibraryAbiVersion => NativeMethods.AbiVersion();

    public static RuntimeInfo Runtime
    {
        get
        {
            NativeEngineException.ThrowIfFailed(NativeMethods.RuntimeQuery(out var info));
            return new RuntimeInfo(info.CudaCompiled != 0, info.CudaLoaded != 0, info.CudaDeviceCount,
                info.CpuThreads, Marshal.PtrToStringUTF8(NativeMethods.CudaUnavailableReason()) ?? "", info.Nvtx != 0);
        }
    }

    /// <summary>Each ABI struct: (name, size in C#, size in C). They must agree.</summary>
    public static IReadOnlyList<(string Name, int Managed, int Native)> StructSizes =>
    [
        ("ne_runtime_info", Unsafe.SizeOf<RuntimeInfoNative>(), (int)NativeMethods.RuntimeInfoSize()),
        ("ne_device_info", Unsafe.SizeOf<DeviceInfoNative>(), (int)NativeMethods.DeviceInfoSize()),
        ("ne_capabilities", Unsafe.SizeOf<CapabilitiesNative>(), (int)NativeMethods.CapabilitiesSize()),
        ("ne_toy_config", Unsafe.SizeOf<ToyConfigNative>(), (int)NativeMethods.ToyConfigSize()),
        ("ne_moe_config", Unsafe.SizeOf<MoeConfigNative>(), (int)NativeMethods.MoeConfigSize()),
        ("ne_sae_config", Unsafe.SizeOf<SaeConfigNative>(), (int)NativeMethods.SaeConfigSize()),
        ("ne_sae_stats", Unsafe.SizeOf<SaeStats>(), (int)NativeMethods.SaeStatsSize()),
        ("ne_mpi_info", Unsafe.SizeOf<MpiInfoNative>(), (int)NativeMethods.MpiInfoSize()),
        ("ne_comm_counters", Unsafe.SizeOf<CommCountersNative>(), (int)NativeMethods.CommCountersSize()),
        ("ne_non_finite", Unsafe.SizeOf<NonFiniteNative>(), (int)NativeMethods.NonFiniteSize()),
        ("ne_synth_config", Unsafe.SizeOf<SynthConfigNative>(), (int)NativeMethods.SynthConfigSize()),
    ];

    /// <summary>Whether the MPI plugin was built and loads, and this process's rank when launched by mpirun or srun
    /// (which starts MPI).</summary>
    public static MpiInfo Mpi
    {
        get
        {
            NativeEngineException.ThrowIfFailed(NativeMethods.MpiQuery(out var info));
            return new MpiInfo(info.PluginFound != 0, info.PluginLoaded != 0, info.Launched != 0, info.Initialized != 0,
                info.WorldRank, info.WorldSize, info.Library.ToString(), info.Reason.ToString(), info.NcclLoaded != 0,
                info.Nccl.ToString());
        }
    }
}

/// <param name="Library">The MPI library's version line ("" when the plugin does not load).</param>
/// <param name="Reason">Why MPI is not used ("" when it runs).</param>
/// <param name="Nccl">"NCCL x.y.z" when NcclLoaded (collectives on device memory), else why it is unavailable.</param>
public sealed record MpiInfo(bool PluginFound, bool PluginLoaded, bool Launched, bool Initialized, int WorldRank,
    int WorldSize, string Library, string Reason, bool NcclLoaded, string Nccl);

/// <param name="Nvtx">NVTX ranges are compiled in: Nsight Systems shows the "nativeengine" domain.</param>
public sealed record RuntimeInfo(bool CudaCompiled, bool CudaLoaded, int CudaDeviceCount, int CpuThreads,
    string CudaUnavailableReason, bool Nvtx)
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

/// <summary>What a context's backend can run (<c>ne_capabilities</c>).</summary>
/// <param name="MaxSharedBytes">CUDA: shared memory a block of the fused toy and MoE kernels may use, which bounds
/// n_features × n_hidden per instance; 0 on the CPU, which has no such bound.</param>
/// <param name="MaxSaeSlots">The largest batch_size × (k + k_aux) one SAE step may hold.</param>
public sealed record Capabilities(Backend Backend, IReadOnlyList<ToyModelKind> ToyModels, IReadOnlyList<RouterNoise> MoeNoise,
    IReadOnlyList<SaeArchitecture> SaeArchitectures, IReadOnlyList<SaePrecision> SaePrecisions, bool Sgemm,
    long MaxSharedBytes, long MaxSaeSlots)
{
    internal static Capabilities From(CapabilitiesNative c) => new((Backend)c.Backend, Members<ToyModelKind>(c.ToyModels),
        Members<RouterNoise>(c.MoeNoise), Members<SaeArchitecture>(c.SaeArchitectures), Members<SaePrecision>(c.SaePrecisions),
        c.Sgemm != 0, c.MaxSharedBytes, c.MaxSaeSlots);

    // The enum values whose bit (1 << value) is set.
    private static T[] Members<T>(int mask) where T : struct, Enum =>
        Enum.GetValues<T>().Where(v => (mask & (1 << Convert.ToInt32(v))) != 0).ToArray();
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

    public Capabilities Capabilities
    {
        get
        {
            NativeEngineException.ThrowIfFailed(NativeMethods.ContextCapabilities(Handle, out var c));
            return Capabilities.From(c);
        }
    }

    /// <summary>Null when this context can run a toy model of <paramref name="spec"/>; otherwise why not: the native
    /// message naming the field, its value and what is valid. Nothing is created.</summary>
    public string? WhyUnsupported(ToyModelSpec spec) => Reason(NativeMethods.ContextSupportsToy(Handle, spec.ToNative()));

    /// <inheritdoc cref="WhyUnsupported(ToyModelSpec)"/>
    public string? WhyUnsupported(MoeModelSpec spec) => Reason(NativeMethods.ContextSupportsMoe(Handle, spec.ToNative()));

    /// <inheritdoc cref="WhyUnsupported(ToyModelSpec)"/>
    public string? WhyUnsupported(SaeModelSpec spec) => Reason(NativeMethods.ContextSupportsSae(Handle, spec.ToNative()));

    private static string? Reason(Status status) =>
        status == Status.Ok ? null : Marshal.PtrToStringUTF8(NativeMethods.LastError()) ?? status.ToString();

    private DeviceInfo QueryDevice()
    {
        NativeEngineException.ThrowIfFailed(NativeMethods.ContextDeviceInfo(Handle, out var d));
        return new DeviceInfo((Backend)d.Backend, d.DeviceIndex, d.Name.ToString(), d.TotalMemory, d.FreeMemory,
            d.ComputeMajor, d.ComputeMinor, d.Multiprocessors);
    }

    public void Dispose() => Handle.Dispose();
}
