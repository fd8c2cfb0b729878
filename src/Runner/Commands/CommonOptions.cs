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

/// <summary>--seed and --steps, which override a toy run's config (toy and moe verbs).</summary>
public abstract class TrainingOptions : BackendOptions
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

/// <summary>Ctrl-C as a cancellation: long work stops at its next check and still writes what it did.</summary>
public static class Interrupt
{
    /// <summary>The exit code of interrupted work (the shell's code for Ctrl-C).</summary>
    public const int ExitCode = 130;

    public static T Catch<T>(Func<CancellationToken, T> body)
    {
        using var interrupt = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            interrupt.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            return body(interrupt.Token);
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }
}
