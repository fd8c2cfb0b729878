using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;

namespace NativeEngine.Runner.Commands;

/// <summary>--backend, shared by every verb that computes.</summary>
public abstract class BackendOptions
{
    [Option("backend", Default = "auto", HelpText = "auto (CUDA when a device is present, else CPU) | cpu | cuda.")]
    public string Backend { get; set; } = "auto";

    public Backend ParseBackend() => Backend switch
    {
        "auto" => Interop.Backend.Auto,
        "cpu" => Interop.Backend.Cpu,
        "cuda" => Interop.Backend.Cuda,
        _ => throw new ConfigException($"--backend is \"{Backend}\"; valid: auto, cpu, cuda"),
    };
}
