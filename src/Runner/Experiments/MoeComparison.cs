using System.Globalization;
using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;

namespace NativeEngine.Runner.Experiments;

/// <summary>One model's numbers at one setting (its best instance).</summary>
public sealed record ComparedModel(double Loss, SuperpositionSummary Summary);

/// <summary>The three models at one setting of the sweep.</summary>
public sealed record ComparisonRow(ToySetting Setting, ComparedModel Moe, ComparedModel DenseFlops, ComparedModel DenseParameters);

/// <summary>
/// The paper's proposed test: does a mixture of experts hold less superposition than a dense model? The MoE of
/// the config is trained beside two dense toy models of the same expert kind, the same data and the same sweep:
/// one with the MoE's active hidden width (k·m: matched on active FLOPs, up to the router's 2nE) and one with its
/// total hidden width (E·m: matched on parameters, up to the router's).
/// </summary>
public sealed record MoeComparison(MoeRunResult Moe, ToyRunResult DenseFlops, ToyRunResult DenseParameters)
{
    /// <summary>A difference smaller than this (relative for features per dimension, absolute for fractions and
    /// D) counts as a tie.</summary>
    public const double Tolerance = 0.02;

    public static ToyConfig DenseConfig(MoeConfig moe, int width, string title) =>
        moe.Run with { NHidden = width, Title = title };

    public static double DenseParameterCount(ToyConfig c) => (double)c.NFeatures * c.NHidden + c.NFeatures;

    public static double MoeParameterCount(MoeConfig c) =>
        (double)c.NExperts * (c.Run.NFeatures * c.ExpertHidden + c.Run.NFeatures) +
        c.Run.NFeatures * c.NExperts * (c.Router.Noise == RouterNoise.NoisyTopK ? 2 : 1);

    public static double DenseFlopsPerSample(ToyConfig c) => 4.0 * c.NFeatures * c.NHidden;

    private IReadOnlyList<ComparisonRow>? _rows;

    /// <summary>The best instance of each model at each setting, in the sweep's order.</summary>
    public IReadOnlyList<ComparisonRow> Rows() => _rows ??= BuildRows();

    private List<ComparisonRow> BuildRows()
    {
        ComparedModel Dense(ToyRunResult run, ToySetting setting)
        {
            var best = run.BestOf(setting.Instances);
            return new ComparedModel(run.Loss[best],
                SuperpositionSummary.Of([(1.0, run.Metrics[best])], run.Config.NHidden, 1));
        }
        var rows = new List<ComparisonRow>();
        for (var s = 0; s < Moe.Config.Run.Settings.Length; s++)
        {
            var setting = Moe.Config.Run.Settings[s];
            var best = Moe.BestOf(setting.Instances);
            rows.Add(new ComparisonRow(setting,
                new ComparedModel(Moe.Metrics[best].Evaluation.Loss, Moe.Metrics[best].Summary),
                Dense(DenseFlops, DenseFlops.Config.Settings[s]), Dense(DenseParameters, DenseParameters.Config.Settings[s])));
        }
        return rows;
    }

    /// <summary>The metrics the verdict reads, with the direction that means less superposition.</summary>
    public static readonly (string Name, string Key, Func<SuperpositionSummary, double> Of, bool LowerIsLess)[] Metrics =
    [
        ("features per active dimension", "features_per_dimension", s => s.FeaturesPerDimension, true),
        ("share of represented features in superposition", "superposed_fraction", s => s.SuperposedFraction, true),
        ("mean dimensionality D_i of represented features", "mean_dimensionality", s => s.MeanDimensionality, false),
    ];

    /// <summary>At how many settings the MoE held less, about the same, and more superposition than a dense model.</summary>
    public (int Less, int Same, int More) Count(Func<ComparisonRow, ComparedModel> dense, int metric)
    {
        var (_, _, of, lowerIsLess) = Metrics[metric];
        int less = 0, same = 0, more = 0;
        foreach (var row in Rows())
        {
            double moe = of(row.Moe.Summary), other = of(dense(row).Summary);
            var tolerance = metric == 0 ? Tolerance * Math.Max(Math.Abs(other), 1e-12) : Tolerance;
            if (Math.Abs(moe - other) <= tolerance) same++;
            else if (moe < other == lowerIsLess) less++;
            else more++;
        }
        return (less, same, more);
    }

    public IEnumerable<string> Verdict()
    {
        var settings = Rows().Count;
        foreach (var (label, dense) in new (string, Func<ComparisonRow, ComparedModel>)[]
                 {
                     ($"matched on active FLOPs (dense width {DenseFlops.Config.NHidden})", r => r.DenseFlops),
                     ($"matched on parameters (dense width {DenseParameters.Config.NHidden})", r => r.DenseParameters),
                 })
            for (var metric = 0; metric < Metrics.Length; metric++)
            {
                var (less, same, more) = Count(dense, metric);
                yield return $"{label}, {Metrics[metric].Name}: MoE less superposition at {less} of {settings} " +
                             $"settings, about the same at {same}, more at {more}";
            }
    }

    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            var moe = Moe.Config;
            w.WriteStartObject();
            w.WriteStartObject("moe");
            w.WriteNumber("n_experts", moe.NExperts);
            w.WriteNumber("top_k", moe.TopK);
            w.WriteNumber("expert_hidden", moe.ExpertHidden);
            w.WriteNumber("active_flops_per_sample", moe.ActiveFlopsPerSample);
            w.WriteNumber("parameters", MoeParameterCount(moe));
            w.WriteEndObject();
            foreach (var (key, run) in new[] { ("dense_flop_matched", DenseFlops), ("dense_parameter_matched", DenseParameters) })
            {
                w.WriteStartObject(key);
                w.WriteNumber("n_hidden", run.Config.NHidden);
                w.WriteNumber("active_flops_per_sample", DenseFlopsPerSample(run.Config));
                w.WriteNumber("parameters", DenseParameterCount(run.Config));
                w.WriteEndObject();
            }
            w.WriteStartArray("settings");
            foreach (var row in Rows())
            {
                w.WriteStartObject();
                Formats.Json.Number(w, "feature_probability", row.Setting.FeatureProbability);
                Formats.Json.Number(w, "importance_ratio", row.Setting.ImportanceRatio);
                Formats.Json.Number(w, "l1", row.Setting.L1);
                foreach (var (key, model) in new[] { ("moe", row.Moe), ("dense_flop_matched", row.DenseFlops), ("dense_parameter_matched", row.DenseParameters) })
                {
                    w.WriteStartObject(key);
                    Formats.Json.Number(w, "loss", model.Loss);
                    foreach (var metric in Metrics) Formats.Json.Number(w, metric.Key, metric.Of(model.Summary));
                    w.WriteNumber("represented_features", model.Summary.RepresentedFeatures);
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("verdict");
            foreach (var line in Verdict()) w.WriteStringValue(line);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    public static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);
}
