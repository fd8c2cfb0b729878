using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("factorize", HelpText = "Learn an overcomplete dictionary (sparse autoencoder) of activations from a JSON config.")]
public sealed class FactorizeOptions : RunFolderOptions
{
    [Option("config", HelpText = "JSON config (comments allowed); see configs/factorize/. Not needed with --resume (the run's config.json).")]
    public string? Config { get; set; }

    [Option("out", HelpText = "Required (or --resume DIR). Run folder: dictionary/ (the SAELens or sparsify files), metrics.json, figures/, report.html, config.json, run.json; checkpoint/ while unfinished.")]
    public string? Out { get; set; }

    [Option("resume", HelpText = "Continue the unfinished run in this folder from its checkpoint (with --config and --force: under another config).")]
    public string? Resume { get; set; }

    [Option("format", HelpText = "Dictionary layout: saelens (default; every architecture) or sparsify (topk); overrides the config's \"format\".")]
    public string? Format { get; set; }
}

public static class FactorizeCommand
{
    public static int Run(FactorizeOptions options, Cli cli)
    {
        var resume = options.Resume;
        var outDir = options.Out ?? resume ?? throw new ConfigException("--out is required (the run folder), or --resume DIR");
        if (resume is not null && Path.GetFullPath(resume) != Path.GetFullPath(outDir))
            throw new ConfigException($"--resume {resume} continues that folder; --out {outDir} must be the same folder or omitted");
        if (resume is not null && !Directory.Exists(resume))
            throw new ConfigException($"--resume {resume} does not exist; give the folder of an unfinished factorize run");
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
        using var interrupt = Interrupt.Listen(cli.Cancel);
        var result = ConsoleProgress.Run(cli, progress =>
            FactorizeExperiment.Run(context, config, outDir, progress, interrupt.Token, resume is not null, options.Force));
        if (!result.Completed)
        {
            cli.Notice($"stopped by {interrupt.Cause} at step {result.Steps} of {result.TotalSteps}: checkpoint written; continue with " +
                       $"--resume {outDir}");
            return interrupt.ExitCode;
        }
        var metrics = result.Metrics!;
        var console = cli.Out;
        console.MarkupLine(Markup.Escape($"fvu {metrics.Fvu:F4}, mse {metrics.Mse:G4}, L0 {metrics.L0:F1}, dead {metrics.DeadFraction:P1}, " +
                                         $"dense {metrics.DenseFraction:P1}" +
                                         (metrics.Mmcs is { } mmcs ? $", MMCS {mmcs:F3}, matched cosine {metrics.MatchedCosine:F3}" : "") +
                                         $"; {result.Tokens} tokens in {result.Seconds:F1} s ({metrics.TokensPerSecond:F0} tokens/s)"));
        var (weights, loader) = config.Format == DictionaryFormat.Sparsify ? (Sparsify.WeightsFile, "sparsify") : (SaeLens.WeightsFile, "SAELens");
        console.MarkupLine(Markup.Escape($"wrote {Path.GetFullPath(outDir)}: {DictionaryFolder.Subfolder}/ ({weights}, cfg.json " +
                                         $"({DictionaryFolder.Name(config.Format)}), sparsity.safetensors: load it with {loader}), " +
                                         "metrics.json, report.html"));
        return ExitCodes.Ok;
    }
}
