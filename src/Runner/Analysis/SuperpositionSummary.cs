namespace NativeEngine.Runner.Analysis;

/// <summary>
/// How much superposition a model holds, in numbers comparable between a dense model and a mixture of experts.
/// A model is a set of blocks of m hidden dimensions, each with its geometry (<see cref="ToyMetrics"/>) and the
/// expected number of times a token uses it (the dense model: one block used once; an MoE: E experts with usage
/// p_e summing to k).
/// </summary>
/// <param name="FeaturesPerDimension">Σ_e p_e ‖W_e‖²_F / (m k): features stored per active hidden dimension
/// (1/D* for a dense model; about 1 without superposition).</param>
/// <param name="RepresentedFeatures">Features with ‖W_i‖ > 0.5 in at least one block.</param>
/// <param name="SuperposedFraction">Of the represented features (weighted by usage), the share that shares its
/// dimension (D_i below <see cref="DedicatedDimensionality"/>).</param>
/// <param name="MeanDimensionality">Usage-weighted mean D_i of the represented features.</param>
public sealed record SuperpositionSummary(double FeaturesPerDimension, int RepresentedFeatures,
    double SuperposedFraction, double MeanDimensionality)
{
    public const double DedicatedDimensionality = 0.9;

    public static SuperpositionSummary Of(IReadOnlyList<(double Usage, ToyMetrics Metrics)> blocks, int m, int k)
    {
        var n = blocks[0].Metrics.FeatureNorm.Length;
        double stored = 0, represented = 0, superposed = 0, dimensionality = 0;
        var anywhere = new bool[n];
        foreach (var (usage, metrics) in blocks)
        {
            stored += usage * metrics.FeatureNorm.Sum(v => v * v);
            for (var i = 0; i < n; i++)
            {
                if (metrics.FeatureNorm[i] <= ToyMetrics.RepresentedNorm) continue;
                anywhere[i] = true;
                represented += usage;
                dimensionality += usage * metrics.Dimensionality[i];
                if (metrics.Dimensionality[i] < DedicatedDimensionality) superposed += usage;
            }
        }
        return new SuperpositionSummary(
            stored / ((double)m * k),
            anywhere.Count(v => v),
            represented > 0 ? superposed / represented : 0,
            represented > 0 ? dimensionality / represented : 0);
    }
}
