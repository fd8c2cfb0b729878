using System.Text.Json;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Analysis;

/// <summary>How the per-feature correlation test estimates the spread of r.</summary>
public enum CorrelationMethod
{
    /// <summary>Fisher's z with the distribution-free (delta-method) variance of r from the sample's fourth
    /// moments: valid for sparse, heavy-tailed data.</summary>
    Robust,

    /// <summary>Classical Fisher z, Var(atanh r) = 1/(N − 3): exact only for bivariate normal data.</summary>
    Fisher,
}

/// <summary>One feature's test of H0_i: corr(target_i, x'_i) ≤ ρ0.</summary>
/// <param name="Absent">x'_i does not vary (float32 rounding aside): the feature is not in the output, p = 1.</param>
public sealed record FeatureCorrelation(int Feature, double Norm, double R, double Statistic, double P, bool Absent);

/// <summary>The outcome of the superposition test on one instance. P is the p-value of H0: at most m features
/// are represented; Reject says whether P ≤ α.</summary>
/// <param name="RepresentedAtAlpha">Features whose own test rejects at α (no multiplicity correction).</param>
/// <param name="RepresentedLowerBound">Features rejected by Holm's procedure at α: with probability ≥ 1 − α all of
/// them are represented, so it is a (1 − α) lower confidence bound on the count.</param>
/// <param name="RepresentedByNorm">Features with ‖W_i‖ above <see cref="ToyMetrics.RepresentedNorm"/>, for comparison.</param>
public sealed record SuperpositionTestResult(int Instance, double FeatureProbability, int NFeatures, int NHidden,
    int Samples, double Rho0, double Alpha, CorrelationMethod Method, FeatureCorrelation[] Features, double P,
    bool Reject, int RepresentedAtAlpha, int RepresentedLowerBound, int RepresentedByNorm);

/// <summary>
/// A statistical test for superposition (the paper's open question, SCIENCE §4). Feature i is represented when
/// the model's output x'_i correlates with its target x_i above a margin ρ0. For each feature, H0_i:
/// corr(x_i, x'_i) ≤ ρ0 is tested one-sided on fresh samples from the model's own data distribution, with
/// T_i = (atanh r_i − atanh ρ0) / se and p_i = P(Z > T_i). Superposition means more features represented than
/// hidden dimensions m; the null hypothesis H0: at most m features are represented is tested with the
/// partial-conjunction p-value of Benjamini and Heller (2008), p = min(1, (n − m) · p_(m+1)), p_(m+1) the
/// (m+1)-th smallest p_i: if m+1 features reject, at least one of them is a true null, and a union bound over
/// the ≥ n − m true nulls holds under any dependence between the features.
/// </summary>
public static class SuperpositionTest
{
    /// <summary>x'_i counts as constant when its spread is below this fraction of the target's: float32 rounding
    /// carries no signal.</summary>
    public const double ConstantSpread = 1e-6;

    /// <summary>A one-sided test of H0: corr(a, b) ≤ rho0 on paired samples.</summary>
    public static (double R, double Statistic, double P, bool Absent) TestCorrelation(IReadOnlyList<double> a,
        IReadOnlyList<double> b, double rho0, CorrelationMethod method)
    {
        if (a.Count != b.Count) throw new ArgumentException($"{a.Count} samples against {b.Count}");
        var count = a.Count;
        if (count < 4) throw new ArgumentException($"{count} samples; the test needs at least 4");
        if (!(rho0 > -1 && rho0 < 1)) throw new ArgumentOutOfRangeException(nameof(rho0), $"rho0 = {rho0}; must be in (-1, 1)");
        double meanA = 0, meanB = 0;
        for (var t = 0; t < count; t++)
        {
            meanA += a[t];
            meanB += b[t];
        }
        meanA /= count;
        meanB /= count;
        double aa = 0, bb = 0, ab = 0;
        for (var t = 0; t < count; t++)
        {
            double da = a[t] - meanA, db = b[t] - meanB;
            aa += da * da;
            bb += db * db;
            ab += da * db;
        }
        if (!(aa > 0) || !(bb > ConstantSpread * ConstantSpread * aa)) return (double.NaN, double.NaN, 1.0, true);
        var r = Math.Clamp(ab / Math.Sqrt(aa * bb), -1, 1);
        var z0 = Math.Atanh(rho0);
        if (r >= 1 - 1e-12) return (r, double.PositiveInfinity, 0.0, false);
        double standardError;
        if (method == CorrelationMethod.Fisher)
        {
            standardError = 1 / Math.Sqrt(count - 3);
        }
        else
        {
            // N·Var(r) → E[u²v²] − ρ(E[u³v] + E[uv³]) + ρ²/4 (E[u⁴] + 2E[u²v²] + E[v⁴]) for standardised u, v
            // (delta method; (1 − ρ²)² for normal data). On the z scale, divided by (1 − ρ²)².
            double sa = Math.Sqrt(aa / count), sb = Math.Sqrt(bb / count);
            double u4 = 0, v4 = 0, u2v2 = 0, u3v = 0, uv3 = 0;
            for (var t = 0; t < count; t++)
            {
                double u = (a[t] - meanA) / sa, v = (b[t] - meanB) / sb;
                double uu = u * u, vv = v * v;
                u4 += uu * uu;
                v4 += vv * vv;
                u2v2 += uu * vv;
                u3v += uu * u * v;
                uv3 += u * vv * v;
            }
            u4 /= count; v4 /= count; u2v2 /= count; u3v /= count; uv3 /= count;
            var variance = u2v2 - r * (u3v + uv3) + r * r / 4 * (u4 + 2 * u2v2 + v4);
            standardError = Math.Sqrt(Math.Max(variance, 0) / count) / (1 - r * r);
        }
        var statistic = standardError > 0
            ? (Math.Atanh(r) - z0) / standardError
            : Math.Atanh(r) > z0 ? double.PositiveInfinity : double.NegativeInfinity;
        return (r, statistic, Statistics.NormalUpperTail(statistic), false);
    }

    /// <summary>The p-value of "fewer than u of the hypotheses are false" from p-values under any dependence
    /// (Bonferroni partial conjunction): min(1, (n − u + 1) · p_(u)); 1 when u > n.</summary>
    public static double PartialConjunction(IReadOnlyList<double> p, int u)
    {
        if (u < 1) throw new ArgumentOutOfRangeException(nameof(u), $"u = {u}; must be >= 1");
        if (u > p.Count) return 1;
        var sorted = p.Order().ToArray();
        return Math.Min(1, (p.Count - u + 1) * sorted[u - 1]);
    }

    /// <summary>How many hypotheses Holm's step-down procedure rejects at family-wise level alpha.</summary>
    public static int HolmCount(IReadOnlyList<double> p, double alpha)
    {
        var sorted = p.Order().ToArray();
        var count = 0;
        while (count < sorted.Length && sorted[count] <= alpha / (sorted.Length - count)) count++;
        return count;
    }

    public const string Method =
        "Per feature i, H0_i: corr(x_i, x'_i) <= rho0 (x'_i the model's output, x_i its target), tested one-sided on " +
        "fresh samples of the model's data: T = (atanh r - atanh rho0) / se, p_i = P(Z > T). robust: se from the " +
        "distribution-free (delta-method) variance of r, valid for sparse heavy-tailed data; fisher: se = 1/sqrt(N-3). " +
        "Outputs that do not vary get p_i = 1. H0: at most m features are represented; p = min(1, (n - m) p_(m+1)) " +
        "(Bonferroni partial conjunction, valid under any dependence). Superposition is claimed when p <= alpha.";

    /// <summary>The results of one or more instances as a JSON document.</summary>
    public static string ToJson(IReadOnlyList<SuperpositionTestResult> results)
    {
        return Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteString("analysis", "superposition-test");
            w.WriteString("null_hypothesis", "at most m (n_hidden) features are represented, feature i being represented when corr(x_i, x'_i) > rho0");
            w.WriteString("method", Method);
            w.WriteStartArray("instances");
            foreach (var r in results)
            {
                w.WriteStartObject();
                w.WriteNumber("instance", r.Instance);
                Json.Number(w, "feature_probability", r.FeatureProbability);
                w.WriteNumber("n_features", r.NFeatures);
                w.WriteNumber("n_hidden", r.NHidden);
                w.WriteNumber("samples", r.Samples);
                Json.Number(w, "rho0", r.Rho0);
                Json.Number(w, "alpha", r.Alpha);
                w.WriteString("correlation_test", r.Method == CorrelationMethod.Robust ? "robust" : "fisher");
                AnalysisJson.Exact(w, "p_value", r.P);
                w.WriteBoolean("reject", r.Reject);
                w.WriteString("decision", Decision(r));
                w.WriteNumber("represented_at_alpha", r.RepresentedAtAlpha);
                w.WriteNumber("represented_lower_bound", r.RepresentedLowerBound);
                w.WriteNumber("represented_by_norm", r.RepresentedByNorm);
                w.WriteStartArray("features");
                foreach (var f in r.Features)
                {
                    w.WriteStartObject();
                    w.WriteNumber("feature", f.Feature);
                    Json.Number(w, "norm", f.Norm);
                    Json.Number(w, "r", f.R);
                    Json.Number(w, "statistic", f.Statistic);
                    AnalysisJson.Exact(w, "p", f.P);
                    w.WriteBoolean("absent", f.Absent);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }, AnalysisJson.Options);
    }

    public static string Decision(SuperpositionTestResult r) => r.Reject
        ? $"reject H0 at alpha {r.Alpha}: more than m = {r.NHidden} features are represented (superposition)"
        : $"H0 not rejected at alpha {r.Alpha}: no evidence of more than m = {r.NHidden} represented features";
}
