using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("factorize", HelpText = "Learn an overcomplete dictionary (sparse autoencoder) of activations from a JSON config.")]
public sealed class FactorizeOptions : BackendOptions
{
    [Option("config", HelpText = "JSON config (comments allowed); see configs/factorize/. Not needed with --resume.")]
    public string? Config { get; set; }

    [Option("out", HelpText = "Run folder: the dictionary (SAELens or sparsify layout), metrics.json, figures/, report.html.")]
    public string? Out { get; set; }

    [Option("resume", HelpText = "Continue the run in this folder from its checkpoint.")]
    public string? Resume { get; set; }

    [Option("format", HelpText = "Dictionary layout: saelens (default; every architecture) or sparsify (topk); overrides the config's \"format\".")]
    public string? Format { get; set; }
}

public static class FactorizeCommand
{
    public static int Run(FactorizeOptions options, IAnsiConsole console)
    {
        var resume = options.Resume;
        var outDir = options.Out ?? resume ?? throw new ConfigException("--out is required (the run folder), or --resume DIR");
        if (resume is not null && Path.GetFullPath(resume) != Path.GetFullPath(outDir))
            throw new ConfigException($"--resume {resume} continues that folder; --out {outDir} must be the same folder or omitted");
        var configPath = options.Config ?? (resume is not null ? Path.Combine(resume, FactorizeExperiment.ConfigFile) : null)
                         ?? throw new ConfigException("--config is required (or --resume DIR, which reads DIR/config.json)");
        var config = FactorizeConfigLoader.LoadFile(configPath);
        if (options.Format is { } name)
        {
            if (!DictionaryFolder.Names.TryGetValue(name, out var format))
                throw new ConfigException($"--format is \"{name}\"; valid: {string.Join(", ", DictionaryFolder.Names.Keys)}");
            FactorizeConfigLoader.CheckFormat(format, config.Sae.Architecture, "--format");
            config = config with { Format = format };
        }
        using var context = new EngineContext(options.ParseBackend());
        var result = Interrupt.Catch(cancel => ConsoleProgress.Run(console, progress =>
            FactorizeExperiment.Run(context, config, outDir, progress, cancel, resume is not null)));
        if (!result.Completed)
        {
            console.MarkupLine($"[yellow]interrupted at step {result.Steps} of {result.TotalSteps}: checkpoint written; continue with " +
                               $"--resume {Markup.Escape(outDir)}[/]");
            return Interrupt.ExitCode;
        }
        var metrics = result.Metrics!;
        console.MarkupLine($"fvu {metrics.Fvu:F4}, mse {metrics.Mse:G4}, L0 {metrics.L0:F1}, dead {metrics.DeadFraction:P1}, " +
                           $"dense {metrics.DenseFraction:P1}" +
                           (metrics.Mmcs is { } mmcs ? $", MMCS {mmcs:F3}, matched cosine {metrics.MatchedCosine:F3}" : "") +
                           $"; {result.Tokens} tokens in {result.Seconds:F1} s ({metrics.TokensPerSecond:F0} tokens/s)");
        var weights = config.Format == DictionaryFormat.Sparsify ? Sparsify.WeightsFile : SaeLens.WeightsFile;
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(outDir))}: {weights}, cfg.json ({DictionaryFolder.Name(config.Format)}), " +
                           "sparsity.safetensors, metrics.json, report.html");
        return 0;
    }
}
