using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Reports.Figures;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// The figures of a factorize run (DIR/figures/*.svg) and DIR/report.html: reconstruction, sparsity and dead latents
/// over training, each on its own axis; with the true features known, recovery over training and each true feature's
/// best decoder cosine; the feature density histogram.
/// </summary>
public static class FactorizeReport
{
    private const string Tokens = "training tokens";

    public static void Write(string directory, FactorizeConfig config, FactorizeMetrics metrics,
        IReadOnlyList<FactorizeCurvePoint> curve, float[] log10Density)
    {
        var figures = new FigureFolder(directory);
        var dSae = config.Sae.DSae;
        var report = new HtmlReport($"Dictionary: {FactorizeConfigLoader.Name(config.Sae.Architecture)} SAE, d_sae {dSae}");
        report.AddParagraph($"{metrics.Tokens} tokens in {metrics.Seconds:F1} s ({metrics.TokensPerSecond:F0} tokens/s). " +
                            $"On fresh batches: fvu {metrics.Fvu:F4}, L0 {metrics.L0:F1}, dead {metrics.DeadFraction:P1}, dense {metrics.DenseFraction:P1}" +
                            (metrics.Mmcs is { } m ? $"; against the true features: MMCS {m:F3}, one-to-one matched cosine {metrics.MatchedCosine:F3}." : "."));
        LineSeries Series(string name, Func<FactorizeCurvePoint, double> value, string? color = null) =>
            new(name, curve.Select(c => ((double)c.Tokens, value(c))).ToArray(), color);

        var training = new List<(string, string)>
        {
            (figures.Save("loss", ComparisonFigures.LineChart([Series("fvu", c => c.Fvu)], Tokens,
                    "fraction of variance unexplained", "Reconstruction over training", logX: false, yMin: 0)),
                "FVU of each training batch: squared error over the batch's variance about its mean (0 = exact, 1 = no better than the mean)."),
            (figures.Save("l0", ComparisonFigures.LineChart([Series("L0", c => c.L0)], Tokens,
                    "active latents per token (L0)", "Sparsity over training", logX: false, yMin: 0)),
                "Mean number of non-zero codes per token of each training batch."),
            (figures.Save("dead", ComparisonFigures.LineChart([Series("dead latents", c => c.Dead, Palette.Categorical(3))], Tokens,
                    "dead latents (count)", $"Dead latents, of {dSae}", logX: false, yMin: 0)),
                $"Latents that have not fired in the last {config.Sae.DeadWindow:N0} training tokens (sae.dead_window)."),
        };
        var measured = curve.Where(c => c.Mmcs is not null).ToList();
        var matched = curve.Where(c => c.MatchedCosine is not null).ToList();
        if (measured.Count > 0)
            training.Add((figures.Save("recovery", ComparisonFigures.LineChart(
                    [new LineSeries("MMCS", measured.Select(c => ((double)c.Tokens, c.Mmcs!.Value)).ToArray()),
                     .. matched.Count > 0
                         ? [new LineSeries("matched cosine", matched.Select(c => ((double)c.Tokens, c.MatchedCosine!.Value)).ToArray(), Dashed: true)]
                         : Array.Empty<LineSeries>()],
                    Tokens, "cosine to the true features", "Recovery of the true features", logX: false, yMin: 0, yMax: 1)),
                "The decoder against the true features as training goes: MMCS, the mean over true features of the best cosine to " +
                "any atom" + (matched.Count > 0
                    ? ", and the one-to-one matched cosine (Hungarian assignment of features to distinct atoms)."
                    : "; the one-to-one matched cosine is in the final metrics only (an assignment this large would cost more " +
                      "per point than hundreds of training steps).")));
        report.AddHeading("Training");
        report.AddFigureGrid(training);

        report.AddHeading("The dictionary");
        var final = new List<(string, string)> { DensityHistogram(figures, log10Density) };
        if (metrics.BestCosines is { Count: > 0 } best)
        {
            const int bins = 20;
            var counts = new double[bins];
            foreach (var c in best) counts[Math.Clamp((int)Math.Floor(c * bins), 0, bins - 1)]++;
            final.Add((figures.Save("best_cosine", ComparisonFigures.Histogram(
                    Enumerable.Range(0, bins + 1).Select(b => b / (double)bins).ToArray(), counts,
                    "best decoder cosine", "true features", $"Each true feature's closest atom ({best.Count} features)")),
                "For every true feature, its largest cosine to any atom of the final decoder, in bins of 0.05 (values below 0 are in the first)."));
        }
        report.AddFigureGrid(final);
        if (metrics.Truth is { } truth) AddTruthTable(report, truth);
        report.AddPreformatted(FactorizeConfigWriter.ToJson(config), "the resolved config");
        report.Save(Path.Combine(directory, "report.html"));
    }

    // SynthSAEBench's metrics (metrics.json "synthsaebench"), as the benchmark reports them.
    private static void AddTruthTable(HtmlReport report, TruthEvaluation.Result truth)
    {
        var r = truth.Metrics;
        string F(double v) => v.ToString("F3", System.Globalization.CultureInfo.InvariantCulture);
        report.AddHeading("Against the ground truth (SynthSAEBench's metrics)");
        report.AddTable(["metric", "value", "what it is"],
        [
            ["MCC", F(r.Mcc), "mean |cosine| of the one-to-one matching of latents and true features that maximises it"],
            ["F1", F(r.F1), "mean over latents of F1 as a classifier of its best-matching feature's firing"],
            ["precision", F(r.Precision), "mean over latents (0 for a latent that never fires)"],
            ["recall", F(r.Recall), "mean over latents"],
            ["uniqueness", F(r.Uniqueness), "distinct best-matching features over the number of latents"],
            ["explained variance", F(r.ExplainedVariance), "1 − E‖x − x̂‖² / Var x"],
            ["shrinkage", F(r.Shrinkage), "mean ‖x̂‖ / ‖x‖"],
            ["L0", r.L0.ToString("F2", System.Globalization.CultureInfo.InvariantCulture), "latents firing per sample"],
            ["true L0", r.TrueL0.ToString("F2", System.Globalization.CultureInfo.InvariantCulture), "true features active per sample"],
            ["dead latents", r.DeadLatents.ToString(System.Globalization.CultureInfo.InvariantCulture), "latents that never fired"],
        ], $"On {truth.Samples:N0} samples with known codes ({(truth.Source == "generator" ? "fresh samples of the generator" : "the harvest's own tokens and codes")}), " +
           $"measured in {truth.Seconds:F1} s.");
    }

    // log10 of each latent's firing share on the evaluation batches; latents that never fired (log10 of 0 + 1e-10)
    // are counted in the title instead of stretching the axis to -10.
    private static (string, string) DensityHistogram(FigureFolder figures, float[] log10Density)
    {
        var never = log10Density.Count(v => v <= -9.999f);
        var firing = log10Density.Where(v => v > -9.999f).Select(v => (double)v).ToList();
        var low = firing.Count == 0 ? -1 : Math.Floor(firing.Min() * 4) / 4;
        var width = -low > 5 ? 0.5 : 0.25;
        low = Math.Floor(low / width) * width;
        var count = Math.Max(1, (int)Math.Round(-low / width));
        var edges = Enumerable.Range(0, count + 1).Select(b => low + b * width).ToArray();
        var counts = new double[count];
        foreach (var v in firing) counts[Math.Clamp((int)Math.Floor((v - low) / width), 0, count - 1)]++;
        var svg = ComparisonFigures.Histogram(edges, counts, "log10 firing density (share of evaluation tokens)", "latents",
            never > 0 ? $"Feature density ({never} latents never fired)" : "Feature density");
        return (figures.Save("density", svg),
            $"Latents by log10 of the share of evaluation tokens they fire on, in bins of {width}; a latent firing on every token is at 0." +
            (never > 0 ? $" The {never} latents that never fired are not drawn." : ""));
    }
}
