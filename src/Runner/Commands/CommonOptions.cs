using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;

namespace NativeEngine.Runner.Commands;

/// <summary>--verbose, which every verb takes.</summary>
public abstract class VerbOptions
{
    [Option("verbose", HelpText = "On an internal error, print the stack trace.")]
    public bool Verbose { get; set; }
}

/// <summary>--backend, shared by every verb that computes.</summary>
public abstract class BackendOptions : VerbOptions
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

/// <summary>--force, for verbs that write a run folder: replace a run of another kind or config there.</summary>
public abstract class RunFolderOptions : BackendOptions
{
    [Option("force", HelpText = "Write into --out even when it holds a run of another kind or another config, or an unfinished run (replacing it).")]
    public bool Force { get; set; }
}

/// <summary>--seed and --steps, which override a toy run's config (toy and moe verbs).</summary>
public abstract class TrainingOptions : RunFolderOptions
{
    [Option("seed", HelpText = "Overrides the config's seed.")]
    public ulong? Seed { get; set; }

    [Option("steps", HelpText = "Overrides the config's steps.")]
    public long? Steps { get; set; }

    public ToyConfig ApplyTo(ToyConfig config)
    {
        if (Seed is { } seed) config = config with { Seed = seed };
        if (Steps is { } steps)
        {
            if (steps < 1) throw new ConfigException($"--steps is {steps}; valid: >= 1");
            config = config with { Steps = steps };
        }
        return config;
    }
}
