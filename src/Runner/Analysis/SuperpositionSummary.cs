namespace NativeEngine.Runner.Analysis;

/// <summary>
/// How much superposition a model holds, in numbers comparable between a dense model and a mixture of experts.
/// A model is a set of blocks of m hidden dimensions, each with its geometry (<see cref="ToyMetrics"/>) and the
/// expected number of times a token uses it (the dense model: one block used once; an MoE: E experts with usage
/// p_e summing to k).
/// A feature counts as represented in a block when ‖W_i‖ > ½·max(1, the block's largest ‖W_j‖): an expert whose
/// gate is below 1 scales its weights up to compensate, and a count must not read that scale as more features.
/// </summary>
/// <param name="FeaturesPerDimension">Σ_e p_e R_e / (m k), R_e the features represented in block e: features
/// stored per hidden dimension a token uses (about 1 without superposition).</param>
/// <param name="RepresentedFeatures">Features represented in at least one block.</param>
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
        double represented = 0, superposed = 0, dimensionality = 0;
        var anywhere = new bool[n];
        foreach (var (usage, metrics) in blocks)
        {
            var threshold = ToyMetrics.RepresentedNorm * Math.Max(1.0, metrics.FeatureNorm.Max());
            for (var i = 0; i < n; i++)
            {
                if (metrics.FeatureNorm[i] <= threshold) continue;
                anywhere[i] = true;
                represented += usage;
                dimensionality += usage * metrics.Dimensionality[i];
                if (metrics.Dimensionality[i] < DedicatedDimensionality) superposed += usage;
            }
        }
        return new SuperpositionSummary(
            represented / ((double)m * k),
            anywhere.Count(v => v),
            represented > 0 ? superposed / represented : 0,
            represented > 0 ? dimensionality / represented : 0);
    }
}
