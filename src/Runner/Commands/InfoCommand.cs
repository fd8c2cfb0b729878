using CommandLine;
using NativeEngine.Interop;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("info", HelpText = "Version, backends compiled in and usable, the backend chosen and its device, MPI.")]
public sealed class InfoOptions : BackendOptions;

public static class InfoCommand
{
    public static int Run(InfoOptions options, Cli cli)
    {
        var console = cli.Out;
        var runtime = Engine.Runtime;
        console.MarkupLine($"[bold]NativeEngine[/] {Engine.Version} (C ABI {Engine.LibraryAbiVersion})");
        console.MarkupLine("backends compiled in: cpu" + (runtime.CudaCompiled ? ", cuda" : ""));
        console.MarkupLine(runtime.CudaUsable
            ? $"cuda: usable, {runtime.CudaDeviceCount} device(s)"
            : $"cuda: unavailable ({Markup.Escape(runtime.CudaUnavailableReason)})");
        console.MarkupLine($"cpu threads: {runtime.CpuThreads}");
        console.MarkupLine($"nvtx ranges: {(runtime.Nvtx ? "on" : "off (built without the CUDA toolkit's nvtx3 headers)")}");
        var mpi = Engine.Mpi;
        var library = mpi.Library.Length > 0 ? $" ({Markup.Escape(mpi.Library)})" : "";
        console.MarkupLine(mpi.Initialized
            ? $"mpi: running, rank {mpi.WorldRank} of {mpi.WorldSize}{library}"
            : mpi.PluginLoaded
                ? $"mpi: found{library}; not in use: {Markup.Escape(mpi.Reason)}"
                : $"mpi: unavailable ({Markup.Escape(mpi.Reason)})");
        console.MarkupLine(mpi.NcclLoaded ? $"nccl: {Markup.Escape(mpi.Nccl)}" : $"nccl: unavailable ({Markup.Escape(mpi.Nccl)})");
        using var context = new EngineContext(options.ParseBackend());
        var device = context.Device;
        console.MarkupLine($"backend chosen: {(device.Backend == Backend.Cuda ? "cuda" : "cpu")} (asked: {options.Backend})");
        console.MarkupLine($"device: {Markup.Escape(device.Name)}");
        console.MarkupLine($"memory: {device.TotalMemory / (1L << 20)} MiB total, {device.FreeMemory / (1L << 20)} MiB free");
        if (device.Backend == Backend.Cuda)
            console.MarkupLine($"compute capability: {device.ComputeMajor}.{device.ComputeMinor}, {device.Multiprocessors} SMs");
        var capabilities = context.Capabilities;
        console.MarkupLine("sae precisions: " + string.Join(", ", capabilities.SaePrecisions.Select(p => p.ToString().ToLowerInvariant())) +
                           (capabilities.MaxSharedBytes > 0 ? $"; fused toy and MoE kernels: {capabilities.MaxSharedBytes / 1024} KiB of shared memory per block" : ""));
        return 0;
    }
}
