using System.Diagnostics;
using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using NativeEngine.Runner.Reports;
using NativeEngine.Runner.Reports.Figures;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("factorize", HelpText = "Learn an overcomplete dictionary (sparse autoencoder) of activations from a JSON config.")]
public sealed class FactorizeOptions : BackendOptions
{
    [Option("config", HelpText = "JSON config (comments allowed); see configs/factorize/. Not needed with --resume.")]
    public string? Config { get; set; }

    [Option("out", HelpText = "Run folder: the dictionary in the SAELens layout, metrics.json, figures/, report.html.")]
    public string? Out { get; set; }

    [Option("resume", HelpText = "Continue the run in this folder from its checkpoint.")]
    public string? Resume { get; set; }
}

public static class FactorizeCommand
{
    public static int Run(FactorizeOptions options, IAnsiConsole console)
    {
        var resume = options.Resume;
        var outDir = options.Out ?? resume ?? throw new ConfigException("--out is required (the run folder), or --resume DIR");
        var configPath = options.Config ?? (resume is not null ? Path.Combine(resume, "config.json") : null)
                         ?? throw new ConfigException("--config is required (or --resume DIR, which reads DIR/config.json)");
        var config = FactorizeConfigLoader.LoadFile(configPath);
        ToyRunFolder.Prepare(outDir);
        if (resume is null) AtomicFile.WriteText(Path.Combine(outDir, "config.json"), File.ReadAllText(configPath));
        else if (Path.GetFullPath(resume) != Path.GetFullPath(outDir))
            throw new ConfigException($"--resume {resume} continues that folder; --out {outDir} must be the same folder or omitted");

        using var context = new EngineContext(options.ParseBackend());
        var precision = Factorization.Precision(config.Train.Precision);
        if (precision != SaePrecision.Fp32 && context.Device.Backend == Backend.Cpu)
            throw new ConfigException($"train.precision \"{config.Train.Precision}\" needs the CUDA backend; on the CPU use \"fp32\"");
        var (source, truth, truthCount) = Factorization.OpenData(config);
        using var _ = source;
        var d = source.D;
        var sae = new SaeModelSpec(Factorization.Architecture(config.Sae.Architecture), d, config.Sae.DSae,
            config.Sae.K ?? 0, config.Train.BatchSize, config.Train.Seed, config.Sae.DeadWindow,
            L1Coefficient: config.Sae.Architecture == "relu" ? (float)config.Sae.L1Coefficient : 0,
            L0Coefficient: config.Sae.Architecture == "jumprelu" ? (float)config.Sae.L1Coefficient : 0,
            AuxkAlpha: (float)config.Sae.AuxkAlpha, Precision: precision);
        using var model = new SparseAutoencoder(context, sae);

        var totalSteps = (config.Train.Tokens + config.Train.BatchSize - 1) / config.Train.BatchSize;
        var curve = new List<FactorizeCurvePoint>();
        long step = 0, tokens = 0;
        double previousSeconds = 0;
        var scale = 1f;
        if (resume is not null)
        {
            var progress = Factorization.ReadCheckpoint(resume, model, source);
            (step, tokens, previousSeconds) = (progress.Step, progress.Tokens, progress.Seconds);
            curve.AddRange(progress.Curve);
            scale = ScaleFromFile(resume);
            console.MarkupLine($"resuming at step {step} of {totalSteps} ({tokens} tokens)");
        }
        else
        {
            var first = source.Next().ToArray();
            if (config.Sae.NormalizeActivations == "expected_average") scale = ExpectedAverageScale(first, d);
            Scale(first, scale);
            model.InitDecoderBias(first, geometricMedian: true);
            AtomicFile.WriteText(Path.Combine(outDir, "scale.txt"), scale.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
        }

        var buffer = new float[config.Train.BatchSize * d];
        var clock = Stopwatch.StartNew();
        // Ctrl-C stops after the current step; the checkpoint below keeps everything done.
        Interrupt.Catch(stop => ProgressDisplay.Run(console, $"{config.Sae.Architecture} SAE, d_sae {config.Sae.DSae}", report =>
        {
            var curveEvery = Math.Max(1, totalSteps / 200);
            while (step < totalSteps && !stop.IsCancellationRequested)
            {
                source.Next().Span.CopyTo(buffer);
                Scale(buffer, scale);
                var stats = model.TrainStep(buffer, Factorization.LearningRate(config.Train, step, totalSteps));
                step++;
                tokens += config.Train.BatchSize;
                if (step % curveEvery == 0 || step == totalSteps)
                    curve.Add(new FactorizeCurvePoint(step, tokens, stats.Mse, stats.Fvu, stats.L0, stats.Auxk, stats.Dead));
                if (config.Train.CheckpointEvery > 0 && step % config.Train.CheckpointEvery == 0)
                    Factorization.WriteCheckpoint(outDir, model, source, step, tokens, previousSeconds + clock.Elapsed.TotalSeconds, curve);
                if (step % 10 == 0 || step == totalSteps) report(step, totalSteps);
            }
            return 0;
        }));
        var seconds = previousSeconds + clock.Elapsed.TotalSeconds;
        Factorization.WriteCheckpoint(outDir, model, source, step, tokens, seconds, curve);
        if (step < totalSteps)
        {
            console.MarkupLine($"[yellow]interrupted at step {step} of {totalSteps}: checkpoint written; continue with " +
                               $"--resume {Markup.Escape(outDir)}[/]");
            return 130;
        }

        var metrics = Factorization.Measure(model, source, truth, truthCount, tokens, seconds, out var density);
        var parameters = model.GetParameters();
        SaeLens.Write(outDir, Fold(config, sae, parameters, scale), new Dictionary<string, string>
        {
            ["trained_with"] = "nativeengine factorize",
            ["tokens"] = tokens.ToString(),
            ["normalization_scale_folded"] = scale.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        }, density);
        AtomicFile.WriteText(Path.Combine(outDir, "metrics.json"), Factorization.MetricsJson(metrics));
        WriteReport(outDir, config, metrics, curve, density);
        console.MarkupLine($"fvu {metrics.Fvu:F4}, mse {metrics.Mse:G4}, L0 {metrics.L0:F1}, dead {metrics.DeadFraction:P1}, " +
                           $"dense {metrics.DenseFraction:P1}" +
                           (metrics.Mmcs is { } mmcs ? $", MMCS {mmcs:F3}, matched cosine {metrics.MatchedCosine:F3}" : "") +
                           $"; {tokens} tokens in {seconds:F1} s ({metrics.TokensPerSecond:F0} tokens/s)");
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(outDir))}: sae_weights.safetensors, cfg.json, sparsity.safetensors, metrics.json, report.html");
        return 0;
    }

    // Unit mean squared norm: x * sqrt(d / E||x||^2) (SAELens's "expected_average_only_in").
    private static float ExpectedAverageScale(float[] batch, int d)
    {
        double sum = 0;
        foreach (var v in batch) sum += (double)v * v;
        var meanSquaredNorm = sum / (batch.Length / d);
        return meanSquaredNorm > 0 ? (float)Math.Sqrt(d / meanSquaredNorm) : 1f;
    }

    private static float ScaleFromFile(string directory)
    {
        var path = Path.Combine(directory, "scale.txt");
        return File.Exists(path) ? float.Parse(File.ReadAllText(path), System.Globalization.CultureInfo.InvariantCulture) : 1f;
    }

    private static void Scale(float[] batch, float scale)
    {
        if (scale != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(batch, scale, batch);
    }

    // Training saw s·x; the saved dictionary applies to x: W_enc·s, W_dec/s, b_dec/s.
    private static SaeDictionary Fold(FactorizeConfig config, SaeModelSpec sae, SaeParameters p, float scale)
    {
        var wEnc = p.WEnc.Select(v => v * scale).ToArray();
        var wDec = p.WDec.Select(v => v / scale).ToArray();
        var bDec = p.BDec.Select(v => v / scale).ToArray();
        var architecture = config.Sae.Architecture == "relu" ? "standard" : config.Sae.Architecture;
        return new SaeDictionary(sae.DIn, sae.DSae, architecture, config.Sae.K, wEnc, p.BEnc, wDec, bDec,
            config.Sae.Architecture is "jumprelu" or "batchtopk" ? p.Threshold : null);
    }

    private static void WriteReport(string directory, FactorizeConfig config, FactorizeMetrics metrics,
        IReadOnlyList<FactorizeCurvePoint> curve, float[] density)
    {
        var figures = new FigureFolder(directory);
        var report = new HtmlReport($"Dictionary: {config.Sae.Architecture} SAE, d_sae {config.Sae.DSae}");
        report.AddParagraph($"{metrics.Tokens} tokens in {metrics.Seconds:F1} s ({metrics.TokensPerSecond:F0} tokens/s). " +
                            $"fvu {metrics.Fvu:F4}, L0 {metrics.L0:F1}, dead {metrics.DeadFraction:P1}, dense {metrics.DenseFraction:P1}" +
                            (metrics.Mmcs is { } m ? $"; against the true features: MMCS {m:F3}, one-to-one matched cosine {metrics.MatchedCosine:F3}." : "."));
        var list = new List<(string, string)>
        {
            (figures.Save("loss", ComparisonFigures.LineChart(
                [new LineSeries("fvu", curve.Select(c => ((double)c.Tokens, c.Fvu)).ToArray())],
                "tokens", "fraction of variance unexplained", "Training curve", logX: false, yMin: 0)),
             "Fraction of variance unexplained on each training batch."),
            (figures.Save("l0", ComparisonFigures.LineChart(
                [new LineSeries("L0", curve.Select(c => ((double)c.Tokens, c.L0)).ToArray()),
                 new LineSeries("dead latents", curve.Select(c => ((double)c.Tokens, (double)c.Dead)).ToArray(), Dashed: true)],
                "tokens", "latents", "Active and dead latents", logX: false, yMin: 0)),
             "Mean active latents per token and latents dead for the dead window."),
        };
        var bins = Enumerable.Range(-10, 11).ToArray();  // log10 density from 1e-10 to 1
        var counts = bins.Select(b => (double)density.Count(v => Math.Floor(v) == b || (b == 0 && v >= 0))).ToArray();
        list.Add((figures.Save("density", ComparisonFigures.GroupedBars(bins.Select(b => b.ToString()).ToArray(),
                [new BarSeries("latents", counts)], "latents", "Feature density (log10)")),
            "Latents by log10 of the share of evaluation tokens they fire on (-10: never)."));
        report.AddFigureGrid(list, 480);
        report.AddPreformatted(File.ReadAllText(Path.Combine(directory, "config.json")), "the config");
        report.Save(Path.Combine(directory, "report.html"));
    }
}
