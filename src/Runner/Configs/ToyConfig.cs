using NativeEngine.Interop;

namespace NativeEngine.Runner.Configs;

/// <summary>Features that fire together (correlated) or exclusively (anticorrelated).</summary>
public sealed record FeatureSet(FeatureSetKind Kind, int[] Features);

/// <summary>The swept values of a config; every combination is a <see cref="ToySetting"/> of
/// <see cref="Repeats"/> instances, all trained in one batched run.</summary>
public sealed record ToySweep(double[]? FeatureProbability, double[]? ImportanceRatio, double[]? L1, int Repeats,
    bool KeepAll)
{
    /// <summary>Instances the sweep makes: every combination of its values, each <see cref="Repeats"/> times.</summary>
    public long InstanceCount => (long)(FeatureProbability?.Length ?? 1) * (ImportanceRatio?.Length ?? 1) *
                                 (L1?.Length ?? 1) * Repeats;

    /// <summary>The instances' probabilities [instances][n] and L1 coefficients [instances], and the settings: every
    /// combination in the order feature_probability × importance_ratio × l1, each <see cref="Repeats"/> consecutive
    /// instances. A value the sweep does not sweep takes <paramref name="probability"/> or <paramref name="l1"/>.</summary>
    public (float[] Probability, float[] L1, ToySetting[] Settings) Expand(int n, double probability, double l1)
    {
        var instances = checked((int)InstanceCount);
        var probabilities = new float[instances * n];
        var lambdas = new float[instances];
        var settings = new List<ToySetting>();
        var next = 0;
        foreach (var p in FeatureProbability ?? [probability])
            foreach (var ratio in ImportanceRatio ?? [1.0])
                foreach (var lambda in L1 ?? [l1])
                {
                    var members = Enumerable.Range(next, Repeats).ToArray();
                    foreach (var k in members)
                    {
                        Array.Fill(probabilities, (float)p, k * n, n);
                        lambdas[k] = (float)lambda;
                    }
                    settings.Add(new ToySetting((float)p, (float)ratio, (float)lambda, members));
                    next += Repeats;
                }
        return (probabilities, lambdas, settings.ToArray());
    }
}

/// <summary>One combination of the swept values and the instances trained with it.</summary>
/// <param name="FeatureProbability">p shared by every feature, or NaN when it differs between features.</param>
/// <param name="ImportanceRatio">Multiplies the last feature's importance.</param>
public sealed record ToySetting(double FeatureProbability, double ImportanceRatio, double L1, int[] Instances);

/// <summary>A toy-model run, fully resolved: every default filled in, every shorthand and sweep expanded.</summary>
public sealed record ToyConfig
{
    /// <summary>Heading of the run's report.</summary>
    public string? Title { get; init; }

    public required ToyModelKind Model { get; init; }
    public required int NFeatures { get; init; }
    public required int NHidden { get; init; }
    public required int NInstances { get; init; }

    /// <summary>I_i for each feature, [n_features], before a setting's importance ratio.</summary>
    public required float[] Importance { get; init; }

    /// <summary>p of every feature of every instance, [n_instances][n_features] row-major.</summary>
    public required float[] FeatureProbability { get; init; }

    /// <summary>λ of the L1 penalty on hidden activations, [n_instances].</summary>
    public required float[] L1 { get; init; }

    public FeatureSet[] FeatureSets { get; init; } = [];

    /// <summary>The sweep the instances came from; null when the config lists its instances directly.</summary>
    public ToySweep? Sweep { get; init; }

    /// <summary>Groups of instances sharing their data settings (one per instance without a sweep).</summary>
    public required ToySetting[] Settings { get; init; }

    /// <summary>A neuron counts feature i when |W[i][neuron]| exceeds this (polysemanticity metric).</summary>
    public double PolysemanticityThreshold { get; init; } = DefaultPolysemanticityThreshold;

    public const double DefaultPolysemanticityThreshold = 0.3;

    public int BatchSize { get; init; } = 1024;
    public long Steps { get; init; } = 10_000;
    public float Lr { get; init; } = 1e-3f;
    public float WeightDecay { get; init; } = 0.01f;
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.AdamW;
    public ulong Seed { get; init; }

    /// <summary>A swept config built in code (as the loader builds it from JSON): the instances, probabilities, L1
    /// coefficients and settings come from the sweep; importance I_i = importanceRatio^i.</summary>
    public static ToyConfig Swept(ToyModelKind model, int nFeatures, int nHidden, double importanceRatio, ToySweep sweep,
        double probability = 1, double l1 = 0, string? title = null)
    {
        var (p, lambdas, settings) = sweep.Expand(nFeatures, probability, l1);
        return new ToyConfig
        {
            Title = title,
            Model = model,
            NFeatures = nFeatures,
            NHidden = nHidden,
            NInstances = lambdas.Length,
            Importance = Enumerable.Range(0, nFeatures).Select(i => (float)Math.Pow(importanceRatio, i)).ToArray(),
            FeatureProbability = p,
            L1 = lambdas,
            Sweep = sweep,
            Settings = settings,
        };
    }

    public ToyModelSpec ToSpec() =>
        new(Model, NFeatures, NHidden, NInstances, BatchSize, Lr, WeightDecay, Optimizer, Seed);

    /// <summary>Models with hidden neurons that have a privileged basis (a ReLU on h).</summary>
    public bool HasPrivilegedBasis => Model is ToyModelKind.ReluHidden or ToyModelKind.AbsValue;

    /// <summary>[instances][n] row-major, as the native side takes it: the base importance with the last
    /// feature's multiplied by the instance's setting's ratio.</summary>
    public float[] ImportancePerInstance()
    {
        var result = new float[NInstances * NFeatures];
        foreach (var setting in Settings)
            foreach (var k in setting.Instances)
            {
                Importance.CopyTo(result, k * NFeatures);
                result[k * NFeatures + NFeatures - 1] *= (float)setting.ImportanceRatio;
            }
        return result;
    }

    public ReadOnlySpan<float> InstanceProbability(int k) => FeatureProbability.AsSpan(k * NFeatures, NFeatures);

    /// <summary>The setting an instance belongs to.</summary>
    public ToySetting SettingOf(int instance) => Settings.First(s => s.Instances.Contains(instance));

    /// <summary>[n]: each feature's set index or −1.</summary>
    public int[] SetOfFeature()
    {
        var result = Enumerable.Repeat(-1, NFeatures).ToArray();
        for (var s = 0; s < FeatureSets.Length; s++)
            foreach (var i in FeatureSets[s].Features) result[i] = s;
        return result;
    }

    public static string ModelName(ToyModelKind model) => model switch
    {
        ToyModelKind.Linear => "linear",
        ToyModelKind.ReluOutput => "relu_output",
        ToyModelKind.ReluHidden => "relu_hidden",
        ToyModelKind.AbsValue => "abs_value",
        _ => throw new ArgumentOutOfRangeException(nameof(model)),
    };

    public static string OptimizerName(OptimizerKind optimizer) => optimizer switch
    {
        OptimizerKind.AdamW => "adamw",
        OptimizerKind.Adam => "adam",
        _ => throw new ArgumentOutOfRangeException(nameof(optimizer)),
    };

    public static string FeatureSetName(FeatureSetKind kind) => kind switch
    {
        FeatureSetKind.Correlated => "correlated",
        FeatureSetKind.Anticorrelated => "anticorrelated",
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };
}
