using System.Text.Json;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Analysis;

/// <summary>
/// Compressed sensing's answer to "how many features fit in m dimensions at density p". A k-sparse signal of
/// n' features is recovered from m random measurements by ℓ1 minimisation when m ≥ C·k·ln(e·n'/k)
/// (Donoho–Tanner's phase transition: C → 2 as k/n' → 0; the form with e·n'/k, as in Foucart–Rauhut, stays
/// monotone up to dense signals). With k = n'p expected active features, ln(e·n'/k) = 1 + ln(1/p), so
/// n_max(p) = ⌊m / (C·p·(1 + ln 1/p))⌋. The ℓ0 limit, m ≥ 2k (every k-sparse signal is determined by its
/// measurements), gives ⌊m / (2p)⌋. Both are capped to [m, n]: a model can always keep m features on their own
/// dimensions, and has only n.
/// </summary>
public static class CompressedSensing
{
    /// <summary>The ℓ1 phase-transition constant of the sparse limit (Donoho–Tanner).</summary>
    public const double L1Constant = 2;

    /// <summary>n_max(p) of the ℓ1 bound with constant c, capped to [m, n].</summary>
    public static int L1MaxFeatures(int n, int m, double p, double c = L1Constant) =>
        Cap(m / (c * p * (1 + Math.Log(1 / p))), n, m);

    /// <summary>n_max(p) of the ℓ0 limit m ≥ 2k, capped to [m, n].</summary>
    public static int L0MaxFeatures(int n, int m, double p) => Cap(m / (2 * p), n, m);

    /// <summary>The largest density at which the ℓ1 bound allows all n features: the p solving
    /// c·n·p·(1 + ln 1/p) = m (the left side rises with p); 1 when even dense features fit.</summary>
    public static double L1DensityForAll(int n, int m, double c = L1Constant)
    {
        double F(double p) => c * n * p * (1 + Math.Log(1 / p));
        if (F(1) <= m) return 1;
        double lo = 0, hi = 1;
        for (var iteration = 0; iteration < 200; iteration++)
        {
            var mid = 0.5 * (lo + hi);
            if (F(mid) <= m) lo = mid; else hi = mid;
        }
        return lo;
    }

    private static int Cap(double value, int n, int m)
    {
        var floor = double.IsFinite(value) ? Math.Floor(value + 1e-9) : n;
        return (int)Math.Clamp(floor, Math.Min(m, n), n);
    }
}

/// <summary>One density of a sweep: the best instance's features against the bounds.</summary>
/// <param name="Represented">Features with ‖W_i‖ &gt; ½.</param>
/// <param name="Superposed">Represented features sharing their dimensions: D_i &lt; <see cref="SuperpositionSummary.DedicatedDimensionality"/>.</param>
/// <param name="RepresentedPerRepeat">Represented features of every instance of the setting.</param>
public sealed record CapacityPoint(int Setting, double FeatureProbability, double ImportanceRatio, double L1,
    int Instance, int Represented, int Superposed, double DimensionalitySum, double DimensionsPerFeature,
    int L1Bound, int L0Bound, int[] RepresentedPerRepeat);

public sealed record CapacityResult(string Model, int NFeatures, int NHidden, double Constant, CapacityPoint[] Points,
    double L1DensityForAll, double? ModelDensityForAll, double RankCorrelation);

/// <summary>
/// How many features a toy model stores, and how many in superposition, against sparsity (the paper's open
/// question, SCIENCE §4), beside compressed sensing's bounds for the same n and m (<see cref="CompressedSensing"/>).
/// </summary>
public static class Capacity
{
    public static string ToJson(CapacityResult r)
    {
        return Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteString("analysis", "capacity");
            w.WriteString("method", $"Per setting, the best instance: represented = features with ||W_i|| > {ToyMetrics.RepresentedNorm}; " +
                                    $"superposed = represented with D_i < {SuperpositionSummary.DedicatedDimensionality}. Bounds for the same " +
                                    $"n and m with k = n p expected active features: l1 (Donoho-Tanner) m >= C k ln(e n/k), C = {r.Constant}, " +
                                    "n_max = floor(m / (C p (1 + ln 1/p))); l0 m >= 2k, n_max = floor(m / (2p)); both capped to [m, n].");
            w.WriteString("model", r.Model);
            w.WriteNumber("n_features", r.NFeatures);
            w.WriteNumber("n_hidden", r.NHidden);
            Json.Number(w, "constant", r.Constant);
            Json.Number(w, "l1_density_for_all_features", r.L1DensityForAll);
            Json.Number(w, "model_density_for_all_features", r.ModelDensityForAll ?? double.NaN);
            Json.Number(w, "spearman_represented_vs_sparsity", r.RankCorrelation);
            w.WriteStartArray("points");
            foreach (var p in r.Points)
            {
                w.WriteStartObject();
                w.WriteNumber("setting", p.Setting);
                Json.Number(w, "feature_probability", p.FeatureProbability);
                Json.Number(w, "one_over_one_minus_s", 1 / p.FeatureProbability);
                Json.Number(w, "expected_active", r.NFeatures * p.FeatureProbability);
                Json.Number(w, "importance_ratio", p.ImportanceRatio);
                Json.Number(w, "l1", p.L1);
                w.WriteNumber("instance", p.Instance);
                w.WriteNumber("represented", p.Represented);
                w.WriteNumber("superposed", p.Superposed);
                Json.Number(w, "dimensionality_sum", p.DimensionalitySum);
                Json.Number(w, "dimensions_per_feature", p.DimensionsPerFeature);
                w.WriteNumber("bound_l1", p.L1Bound);
                w.WriteNumber("bound_l0", p.L0Bound);
                w.WriteStartArray("represented_per_repeat");
                foreach (var count in p.RepresentedPerRepeat) w.WriteNumberValue(count);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }, AnalysisJson.Options);
    }
}
