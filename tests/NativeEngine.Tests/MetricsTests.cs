using NativeEngine.Runner.Analysis;

namespace NativeEngine.Tests;

/// <summary>Feature dimensionality on geometries whose answer is known exactly (Elhage et al. 2022).</summary>
public class MetricsTests
{
    private static float[] Flatten(double[][] rows) => rows.SelectMany(r => r.Select(v => (float)v)).ToArray();

    private static ToyMetrics Of(double[][] rows) => ToyMetrics.Compute(Flatten(rows), rows.Length, rows[0].Length);

    private static double[][] RegularPolygon(int k) =>
        Enumerable.Range(0, k).Select(j => new[] { Math.Cos(2 * Math.PI * j / k), Math.Sin(2 * Math.PI * j / k) }).ToArray();

    [TestCase(3)]
    [TestCase(5)]
    [TestCase(6)]
    [TestCase(8)]
    public void RegularPolygonHasDimensionalityTwoOverK(int k)
    {
        var metrics = Of(RegularPolygon(k));
        Assert.That(metrics.Dimensionality, Is.All.EqualTo(2.0 / k).Within(1e-6));
        Assert.That(metrics.DimensionalitySum, Is.EqualTo(2.0).Within(1e-6));
        Assert.That(metrics.FeatureNorm, Is.All.EqualTo(1.0).Within(1e-6));
    }

    [Test]
    public void AntipodalPairIsOneHalf()
    {
        var metrics = Of([[0.0, 1.0], [0.0, -1.0], [1.0, 0.0]]);
        Assert.That(metrics.Dimensionality, Is.EqualTo(new[] { 0.5, 0.5, 1.0 }).Within(1e-6));
        Assert.That(metrics.Superposition, Is.EqualTo(new[] { 1.0, 1.0, 0.0 }).Within(1e-6));
    }

    [Test]
    public void TetrahedronIsThreeQuarters()
    {
        var s = 1 / Math.Sqrt(3);
        var metrics = Of([[s, s, s], [s, -s, -s], [-s, s, -s], [-s, -s, s]]);
        Assert.That(metrics.Dimensionality, Is.All.EqualTo(0.75).Within(1e-6));
    }

    [Test]
    public void SquareAntiprismIsThreeEighths()
    {
        // Eight unit vectors: two squares at heights ±h, one turned by 45°. h = 1/√3 makes them a tight frame
        // (Σ_j w_j w_jᵀ = 8/3 I), so Σ_j (ŵ_i·w_j)² = 8/3 and D_i = 3/8 for every vertex.
        var h = Math.Sqrt(1.0 / 3.0);
        var r = Math.Sqrt(1 - h * h);
        var rows = new List<double[]>();
        for (var j = 0; j < 4; j++)
        {
            rows.Add([r * Math.Cos(Math.PI / 2 * j), r * Math.Sin(Math.PI / 2 * j), h]);
            rows.Add([r * Math.Cos(Math.PI / 2 * j + Math.PI / 4), r * Math.Sin(Math.PI / 2 * j + Math.PI / 4), -h]);
        }
        var metrics = Of(rows.ToArray());
        Assert.That(metrics.Dimensionality, Is.All.EqualTo(3.0 / 8.0).Within(1e-6));
    }

    [Test]
    public void OrthogonalFeaturesHaveNoSuperpositionAndUnusedOnesAreZero()
    {
        var metrics = Of([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]]);
        Assert.That(metrics.Dimensionality, Is.EqualTo(new[] { 1.0, 1.0, 0.0 }));
        Assert.That(metrics.Superposition, Is.EqualTo(new[] { 0.0, 0.0, 0.0 }));
        Assert.That(metrics.FeatureNorm, Is.EqualTo(new[] { 2.0, 1.0, 0.0 }).Within(1e-9));
        Assert.That(metrics.DimensionsPerFeature, Is.EqualTo(2.0 / 5.0).Within(1e-9));
        Assert.That(metrics.RepresentedCount, Is.EqualTo(2));
    }

    [Test]
    public void NeuronsCountTheFeaturesAboveTheThreshold()
    {
        // 3 features on 2 neurons: neuron 0 carries features 0 and 2, neuron 1 only feature 1 (0.05 is below 0.3).
        float[] w = [0.9f, 0.05f, 0f, -1.1f, -0.4f, 0.2f];
        var neurons = NeuronMetrics.Compute(w, 3, 2, 0.3);
        Assert.That(neurons.FeaturesPerNeuron, Is.EqualTo(new[] { 2, 1 }));
        Assert.That(neurons.PolysemanticNeurons, Is.EqualTo(1));
        Assert.That(neurons.MeanFeaturesPerActiveNeuron, Is.EqualTo(1.5));
        Assert.That(NeuronMetrics.Compute(w, 3, 2, 1.0).FeaturesPerNeuron, Is.EqualTo(new[] { 0, 1 }));
    }

    [TestCase(new float[] { 1, 0, -1, 0, 0, 1, 0, -1 }, "2 antipodal pair(s)")]
    [TestCase(new float[] { 0.7f, 0, 0.7f, 0, 0, 0.7f, 0, 0.7f }, "2 pair(s) sharing one direction")]
    [TestCase(new float[] { 1, 0, 0, 1, 0, 0, 0, 0 }, "2 orthogonal")]
    public void GeometryIsDescribedInWords(float[] w, string expected)
    {
        var metrics = ToyMetrics.Compute(w, 4, 2);
        Assert.That(Runner.Experiments.ToySummary.Describe(metrics, w, 2), Is.EqualTo(expected));
    }
}
