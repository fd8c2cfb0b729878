using System.Numerics.Tensors;
using System.Text.Json;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Analysis;

/// <summary>
/// The features a dictionary is scored against: directions f_i [n][d] in activation space and firing
/// probabilities p_i. Both generators draw an active feature's coefficient from U[0, 1] (|U[−1, 1]| for
/// abs_value toy models), so feature i's mean magnitude when it fires is ½‖f_i‖: its true scale.
/// A feature is present in the activations when ‖f_i‖ exceeds PresentNorm: 0 for generated features, the
/// paper's ½ for a toy model's columns W_i (the ones it drops have ‖W_i‖ ≈ 0 and directions that are noise).
/// </summary>
public sealed record GroundTruth(string Source, float[] Features, int Count, int D, double[] Probabilities,
    double PresentNorm = 0)
{
    /// <summary>The metadata "source" harvest writes into its ground truth.</summary>
    public const string ToyModelSource = "toy model";

    public bool IsPresent(int i) => Norm(i) > PresentNorm;

    /// <summary>E[coefficient | active] of both generators.</summary>
    public const double MeanCoefficient = 0.5;

    public double Norm(int i) => TensorPrimitives.Norm(Features.AsSpan(i * D, D));

    public double Scale(int i) => MeanCoefficient * Norm(i);

    /// <summary>A ground_truth.safetensors (harvest, or the synthetic generator's WriteShards): "features"
    /// [n][d] and "probabilities" [n].</summary>
    public static GroundTruth Read(string path)
    {
        if (!File.Exists(path))
            throw new ConfigException($"--ground-truth {path} does not exist; give a ground_truth.safetensors (written by " +
                                      "`harvest` or beside synthetic shards) with \"features\" [n][d] and \"probabilities\" [n]");
        var (tensors, metadata) = SafeTensors.Read(path);
        var features = tensors.FirstOrDefault(t => t.Name == "features");
        if (features is not { Shape.Length: 2 })
            throw new ConfigException($"{path}: needs a tensor \"features\" of shape [n][d] (feature i's direction in row i)");
        var (n, d) = ((int)features.Shape[0], (int)features.Shape[1]);
        var probabilities = tensors.FirstOrDefault(t => t.Name == "probabilities");
        if (probabilities is null || !probabilities.Shape.SequenceEqual(new long[] { n }))
            throw new ConfigException($"{path}: needs a tensor \"probabilities\" of shape [{n}] (each feature's firing probability)" +
                                      (probabilities is null ? "" : $"; found [{string.Join(", ", probabilities.Shape)}]"));
        var toy = metadata.TryGetValue("source", out var source) && source == ToyModelSource;
        return new GroundTruth(path, features.Data, n, d, probabilities.Data.Select(v => (double)v).ToArray(),
            toy ? ToyMetrics.RepresentedNorm : 0);
    }
}

/// <summary>Per latent, over the tokens measured: the share of tokens it fires on and its mean value when it fires.</summary>
public sealed record LatentStatistics(double[] Density, double[] MeanWhenFiring, long Tokens);

/// <summary>One true feature beside the latent matched to it (−1: none: the feature is not present in the
/// activations, or there are fewer live latents than features).</summary>
public sealed record FeatureCurvePair(int Feature, double TrueProbability, double TrueScale, bool Present, int Latent,
    double Cosine, bool Recovered, double EstimatedDensity, double? EstimatedScale);

/// <summary>What <see cref="FeatureCurves.Compare"/> finds; metrics over the recovered features (cosine ≥ the cut).</summary>
/// <param name="DensityLog10Error">Median |log10 p̂ − log10 p| over recovered features.</param>
/// <param name="DensityLog10Bias">Median log10 p̂ − log10 p (positive: the latents fire more often than their feature).</param>
/// <param name="CurveLog10Error">Median |log10| gap between the true probabilities and the recovered latents'
/// densities, each sorted descending (the curves compared rank by rank).</param>
/// <param name="UnsupervisedCurveLog10Error">The same with the n most frequent live latents of the whole
/// dictionary instead of the matched ones: what the estimate gives without knowing the truth.</param>
/// <param name="FractionRecovered">Recovered features over the features present in the activations.</param>
public sealed record FeatureCurvesResult(string TruthSource, string DensitySource, long Tokens, int NFeatures,
    int PresentFeatures, int DSae, int LiveLatents, double CosineCut, FeatureCurvePair[] Pairs, double FractionRecovered, double MatchedCosine, double DensityLog10Error,
    double DensityLog10Bias, double DensitySpearman, double CurveLog10Error, double UnsupervisedCurveLog10Error,
    double? ScaleSpearman, double? ScaleRatio, string? ScaleNote, double[] TrueCurve, double[] EstimatedCurve,
    double[] AllLatentsCurve);

/// <summary>
/// Estimates a model's feature sparsity and importance curves from a learned dictionary (the paper's open question,
/// SCIENCE §4) and compares them with the true ones. Latents are matched one to one to the true features
/// (Hungarian on decoder cosines, <see cref="DictionaryMetrics.MatchedCosine"/>, among the latents that fire at all
/// and the features present in the activations); a feature is recovered when its
/// latent's cosine reaches the cut. Sparsity curve: each recovered latent's firing density p̂ against its feature's
/// probability p. Importance (norm) curve: each latent's scale, its mean activation when firing × ‖W_dec,j‖,
/// against the feature's ½‖f_i‖ (a toy model's ‖W_i‖ up to the factor ½): compared by rank (Spearman) and by the
/// median ratio.
/// </summary>
public static class FeatureCurves
{
    /// <summary>Densities are floored here before taking log10, as SAELens stores them (log10(density + 1e-10)).</summary>
    public const double DensityFloor = 1e-10;

    public const double DefaultCosineCut = 0.9;

    /// <summary>True scales within this relative spread count as equal (no ranking to recover).</summary>
    public const double EqualScales = 1e-4;

    /// <summary>Firing densities and mean activations of every latent over the batches ([rows][d_in] each),
    /// stopping after the given number of tokens.</summary>
    public static LatentStatistics Measure(SaeDictionary dict, IEnumerable<ReadOnlyMemory<float>> batches, long tokens)
    {
        int d = dict.DIn, m = dict.DSae;
        var fires = new long[m];
        var sums = new double[m];
        long seen = 0;
        var gate = new object();
        foreach (var batch in batches)
        {
            if (seen >= tokens) break;
            if (batch.Length % d != 0) throw new ArgumentException($"a batch holds {batch.Length} values, not a multiple of d_in = {d}");
            var rows = (int)Math.Min(batch.Length / d, tokens - seen);
            var parts = Math.Max(1, Math.Min(Environment.ProcessorCount, rows / 256));
            Parallel.For(0, parts, part =>
            {
                var encoder = new DictionaryEncoder(dict);
                var code = new float[m];
                var localFires = new long[m];
                var localSums = new double[m];
                for (var t = (int)((long)rows * part / parts); t < (int)((long)rows * (part + 1) / parts); t++)
                {
                    encoder.Encode(batch.Span.Slice(t * d, d), code);
                    for (var j = 0; j < m; j++)
                    {
                        if (code[j] == 0) continue;
                        localFires[j]++;
                        localSums[j] += code[j];
                    }
                }
                lock (gate)
                    for (var j = 0; j < m; j++)
                    {
                        fires[j] += localFires[j];
                        sums[j] += localSums[j];
                    }
            });
            seen += rows;
        }
        if (seen == 0) throw new ArgumentException("no tokens to measure");
        return new LatentStatistics(fires.Select(f => f / (double)seen).ToArray(),
            fires.Select((f, j) => f > 0 ? sums[j] / f : 0).ToArray(), seen);
    }

    /// <summary>Densities as SAELens's sparsity.safetensors holds them: log10(density + 1e-10) per latent.</summary>
    public static double[] DensityFromLog10(IReadOnlyList<float> log10Density) =>
        log10Density.Select(v => Math.Max(0, Math.Pow(10, v) - DensityFloor)).ToArray();

    /// <param name="density">Each latent's firing density [d_sae].</param>
    /// <param name="meanWhenFiring">Each latent's mean activation when firing [d_sae]; null when no activations were
    /// measured (the importance curve is then not estimated).</param>
    public static FeatureCurvesResult Compare(SaeDictionary dict, GroundTruth truth, double[] density,
        double[]? meanWhenFiring, long tokens, string densitySource, double cosineCut = DefaultCosineCut)
    {
        if (truth.D != dict.DIn)
            throw new ConfigException($"the ground truth ({truth.Source}) has features of d = {truth.D}; the dictionary has d_in = {dict.DIn}");
        if (density.Length != dict.DSae) throw new ArgumentException($"{density.Length} densities for {dict.DSae} latents");
        int n = truth.Count, m = dict.DSae, d = dict.DIn;
        // Only latents that fire take part: a dead latent's decoder row may point anywhere, and it estimates nothing.
        var present = Enumerable.Range(0, n).Where(truth.IsPresent).ToArray();
        var live = Enumerable.Range(0, m).Where(j => density[j] > 0).ToArray();
        var features = Rows(truth.Features, present, d);
        var atoms = Rows(dict.WDec, live, d);
        var cosines = DictionaryMetrics.Cosines(features, present.Length, atoms, live.Length, d);
        var (matchedCosine, assignment) = live.Length > 0 && present.Length > 0
            ? DictionaryMetrics.MatchedCosine(cosines)
            : (0, Enumerable.Repeat(-1, present.Length).ToArray());
        var decoderNorm = Enumerable.Range(0, m).Select(j => (double)TensorPrimitives.Norm(dict.WDec.AsSpan(j * d, d))).ToArray();
        var pairs = Enumerable.Range(0, n)
            .Select(i => new FeatureCurvePair(i, truth.Probabilities[i], truth.Scale(i), false, -1, double.NaN, false, double.NaN, null))
            .ToArray();
        for (var a = 0; a < present.Length; a++)
        {
            var i = present[a];
            var j = assignment[a] >= 0 ? live[assignment[a]] : -1;
            var cosine = j >= 0 ? cosines[a, assignment[a]] : double.NaN;
            pairs[i] = pairs[i] with
            {
                Present = true, Latent = j, Cosine = cosine, Recovered = j >= 0 && cosine >= cosineCut,
                EstimatedDensity = j >= 0 ? density[j] : double.NaN,
                EstimatedScale = j >= 0 && meanWhenFiring is not null ? meanWhenFiring[j] * decoderNorm[j] : null,
            };
        }
        var recovered = pairs.Where(p => p.Recovered).ToArray();
        static double Log(double v) => Math.Log10(Math.Max(v, DensityFloor));
        var trueCurve = present.Select(i => truth.Probabilities[i]).OrderDescending().ToArray();
        var estimatedCurve = recovered.Select(p => p.EstimatedDensity).OrderDescending().ToArray();
        var recoveredTrueCurve = recovered.Select(p => p.TrueProbability).OrderDescending().ToArray();
        var allLatents = density.OrderDescending().ToArray();
        var topLive = allLatents.Where(v => v > 0).Take(present.Length).ToArray();

        double? scaleSpearman = null, scaleRatio = null;
        string? scaleNote = null;
        if (meanWhenFiring is null)
            scaleNote = "not estimated: the latents' activations were not measured (give --data, --model, or a dictionary " +
                        "whose config.json names its data)";
        else if (recovered.Length > 0)
        {
            scaleRatio = Statistics.Median(recovered.Select(p => p.EstimatedScale!.Value / p.TrueScale));
            // Unit-norm features differ only by float rounding: ranking them would rank noise.
            var trueScales = recovered.Select(p => p.TrueScale).ToArray();
            var spearman = trueScales.Max() - trueScales.Min() > EqualScales * trueScales.Max()
                ? Statistics.Spearman(trueScales, recovered.Select(p => p.EstimatedScale!.Value).ToArray())
                : double.NaN;
            if (double.IsFinite(spearman)) scaleSpearman = spearman;
            else scaleNote = "no rank correlation: the recovered features' true scales are all equal (unit-norm features), " +
                             "so only the ratio is informative";
        }
        return new FeatureCurvesResult(truth.Source, densitySource, tokens, n, present.Length, m, live.Length, cosineCut, pairs,
            present.Length > 0 ? recovered.Length / (double)present.Length : 0, matchedCosine,
            Statistics.Median(recovered.Select(p => Math.Abs(Log(p.EstimatedDensity) - Log(p.TrueProbability)))),
            Statistics.Median(recovered.Select(p => Log(p.EstimatedDensity) - Log(p.TrueProbability))),
            Statistics.Spearman(recovered.Select(p => p.TrueProbability).ToArray(), recovered.Select(p => p.EstimatedDensity).ToArray()),
            Statistics.Median(estimatedCurve.Select((v, r) => Math.Abs(Log(v) - Log(recoveredTrueCurve[r])))),
            Statistics.Median(topLive.Select((v, r) => Math.Abs(Log(v) - Log(trueCurve[r])))),
            scaleSpearman, scaleRatio, scaleNote, trueCurve, estimatedCurve, allLatents);
    }

    // The given rows of a [rows][d] matrix, in that order.
    private static float[] Rows(float[] matrix, int[] rows, int d)
    {
        var result = new float[rows.Length * d];
        for (var r = 0; r < rows.Length; r++) matrix.AsSpan(rows[r] * d, d).CopyTo(result.AsSpan(r * d, d));
        return result;
    }

    private static void Exact(Utf8JsonWriter w, string name, IEnumerable<double> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values)
            if (double.IsFinite(v)) w.WriteNumberValue(v);
            else w.WriteNullValue();
        w.WriteEndArray();
    }

    public static string ToJson(FeatureCurvesResult r)
    {
        return Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteString("analysis", "feature-curves");
            w.WriteString("method", "The true features present in the activations (all generated ones; a toy model's with ||W_i|| > 0.5) are matched one to " +
                                    "one to the live latents (Hungarian on decoder cosines); a feature is recovered when its " +
                                    "latent's cosine >= cosine_cut. Sparsity curve: the recovered latents' firing densities " +
                                    "against the true probabilities. Importance curve: each latent's mean activation when firing " +
                                    "x its decoder norm, against the feature's true scale 0.5 ||f_i|| (mean coefficient x norm).");
            w.WriteString("ground_truth", r.TruthSource);
            w.WriteString("densities_from", r.DensitySource);
            w.WriteNumber("tokens", r.Tokens);
            w.WriteNumber("n_features", r.NFeatures);
            w.WriteNumber("present_features", r.PresentFeatures);
            w.WriteNumber("d_sae", r.DSae);
            w.WriteNumber("live_latents", r.LiveLatents);
            Json.Number(w, "cosine_cut", r.CosineCut);
            Json.Number(w, "fraction_recovered", r.FractionRecovered);
            Json.Number(w, "matched_cosine", r.MatchedCosine);
            w.WriteStartObject("sparsity");
            Json.Number(w, "median_abs_log10_error", r.DensityLog10Error);
            Json.Number(w, "median_log10_bias", r.DensityLog10Bias);
            Json.Number(w, "spearman", r.DensitySpearman);
            Json.Number(w, "curve_median_abs_log10_error", r.CurveLog10Error);
            Json.Number(w, "unsupervised_curve_median_abs_log10_error", r.UnsupervisedCurveLog10Error);
            w.WriteEndObject();
            w.WriteStartObject("importance");
            Json.Number(w, "spearman", r.ScaleSpearman ?? double.NaN);
            Json.Number(w, "median_ratio", r.ScaleRatio ?? double.NaN);
            if (r.ScaleNote is { } note) w.WriteString("note", note);
            w.WriteEndObject();
            Exact(w, "true_curve", r.TrueCurve);
            Exact(w, "estimated_curve", r.EstimatedCurve);
            Exact(w, "all_latents_curve", r.AllLatentsCurve);
            w.WriteStartArray("features");
            foreach (var p in r.Pairs)
            {
                w.WriteStartObject();
                w.WriteNumber("feature", p.Feature);
                AnalysisJson.Exact(w, "true_probability", p.TrueProbability);
                Json.Number(w, "true_scale", p.TrueScale);
                w.WriteBoolean("present", p.Present);
                w.WriteNumber("latent", p.Latent);
                Json.Number(w, "cosine", p.Cosine);
                w.WriteBoolean("recovered", p.Recovered);
                AnalysisJson.Exact(w, "estimated_density", p.EstimatedDensity);
                Json.Number(w, "estimated_scale", p.EstimatedScale ?? double.NaN);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }, AnalysisJson.Options);
    }
}
