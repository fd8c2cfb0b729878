namespace NativeEngine.Runner.Analysis;

/// <summary>
/// Geometry of one toy model's features (Elhage et al. 2022), from W [n][m] whose row i is feature i's direction:
/// feature norm ‖W_i‖; superposition Σ_{j≠i} (Ŵ_i·W_j)²; dimensionality D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)²;
/// dimensions per feature D* = m / ‖W‖_F².
/// </summary>
public sealed record ToyMetrics(double[] FeatureNorm, double[] Superposition, double[] Dimensionality,
    double DimensionsPerFeature)
{
    /// <summary>Below this norm a feature counts as not represented: its direction is undefined, so its
    /// superposition and dimensionality are reported as 0.</summary>
    public const double TinyNorm = 1e-6;

    /// <summary>Conventional threshold for "feature i is represented".</summary>
    public const double RepresentedNorm = 0.5;

    public static ToyMetrics Compute(ReadOnlySpan<float> w, int n, int m)
    {
        if (w.Length != n * m) throw new ArgumentException($"W has {w.Length} values, expected n*m = {n * m}");
        var norm = new double[n];
        for (var i = 0; i < n; i++) norm[i] = Math.Sqrt(Dot(w, i, i, m));
        var superposition = new double[n];
        var dimensionality = new double[n];
        double frobenius = 0;
        for (var i = 0; i < n; i++)
        {
            frobenius += norm[i] * norm[i];
            if (norm[i] < TinyNorm) continue;
            double others = 0;
            for (var j = 0; j < n; j++)
            {
                if (j == i) continue;
                var projection = Dot(w, i, j, m) / norm[i];
                others += projection * projection;
            }
            superposition[i] = others;
            var squared = norm[i] * norm[i];
            dimensionality[i] = squared / (squared + others);
        }
        return new ToyMetrics(norm, superposition, dimensionality, frobenius > 0 ? m / frobenius : double.PositiveInfinity);
    }

    public int RepresentedCount => FeatureNorm.Count(v => v > RepresentedNorm);

    public double DimensionalitySum => Dimensionality.Sum();

    private static double Dot(ReadOnlySpan<float> w, int i, int j, int m)
    {
        double sum = 0;
        for (var k = 0; k < m; k++) sum += (double)w[i * m + k] * w[j * m + k];
        return sum;
    }
}

/// <summary>
/// How polysemantic the hidden neurons of a privileged-basis model are: neuron k counts feature i when
/// |W[i][k]| exceeds the threshold (W the encoder, row i feature i's weights onto the neurons).
/// </summary>
public sealed record NeuronMetrics(int[] FeaturesPerNeuron, double Threshold)
{
    /// <summary>Neurons that respond to two or more features.</summary>
    public int PolysemanticNeurons => FeaturesPerNeuron.Count(c => c >= 2);

    /// <summary>Neurons that respond to any feature.</summary>
    public int ActiveNeurons => FeaturesPerNeuron.Count(c => c >= 1);

    /// <summary>Mean features per active neuron (0 when none is active).</summary>
    public double MeanFeaturesPerActiveNeuron =>
        ActiveNeurons == 0 ? 0 : FeaturesPerNeuron.Where(c => c >= 1).Average();

    public static NeuronMetrics Compute(ReadOnlySpan<float> w, int n, int m, double threshold)
    {
        if (w.Length != n * m) throw new ArgumentException($"W has {w.Length} values, expected n*m = {n * m}");
        var counts = new int[m];
        for (var i = 0; i < n; i++)
            for (var k = 0; k < m; k++)
                if (Math.Abs(w[i * m + k]) > threshold) counts[k]++;
        return new NeuronMetrics(counts, threshold);
    }
}
