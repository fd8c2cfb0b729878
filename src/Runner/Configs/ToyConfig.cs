using NativeEngine.Interop;

namespace NativeEngine.Runner.Configs;

/// <summary>A toy-model run, fully resolved: every default filled in and every shorthand expanded.</summary>
public sealed record ToyConfig
{
    public required ToyModelKind Model { get; init; }
    public required int NFeatures { get; init; }
    public required int NHidden { get; init; }
    public required int NInstances { get; init; }

    /// <summary>I_i for each feature, [n_features].</summary>
    public required float[] Importance { get; init; }

    /// <summary>p for each instance, [n_instances] (the same for every feature of the instance).</summary>
    public required float[] FeatureProbability { get; init; }

    public int BatchSize { get; init; } = 1024;
    public long Steps { get; init; } = 10_000;
    public float Lr { get; init; } = 1e-3f;
    public float WeightDecay { get; init; } = 0.01f;
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.AdamW;
    public ulong Seed { get; init; }

    public ToyModelSpec ToSpec() =>
        new(Model, NFeatures, NHidden, NInstances, BatchSize, Lr, WeightDecay, Optimizer, Seed);

    /// <summary>[instances][n] row-major, as the native side takes it.</summary>
    public float[] ImportancePerInstance()
    {
        var result = new float[NInstances * NFeatures];
        for (var k = 0; k < NInstances; k++) Importance.CopyTo(result, k * NFeatures);
        return result;
    }

    /// <summary>[instances][n] row-major.</summary>
    public float[] ProbabilityPerInstance()
    {
        var result = new float[NInstances * NFeatures];
        for (var k = 0; k < NInstances; k++) Array.Fill(result, FeatureProbability[k], k * NFeatures, NFeatures);
        return result;
    }

    public static string ModelName(ToyModelKind model) => model switch
    {
        ToyModelKind.Linear => "linear",
        ToyModelKind.ReluOutput => "relu_output",
        _ => throw new ArgumentOutOfRangeException(nameof(model)),
    };

    public static string OptimizerName(OptimizerKind optimizer) => optimizer switch
    {
        OptimizerKind.AdamW => "adamw",
        OptimizerKind.Adam => "adam",
        _ => throw new ArgumentOutOfRangeException(nameof(optimizer)),
    };
}
