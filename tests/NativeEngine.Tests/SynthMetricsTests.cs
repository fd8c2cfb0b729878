using NativeEngine.Runner.Analysis;

namespace NativeEngine.Tests;

/// <summary>SynthSAEBench's metrics (SynthMetrics) against cases worked by hand.</summary>
public class SynthMetricsTests
{
    // Features f0 = (1, 0), f1 = (0, 1), f2 = (0.6, 0.8); latents l0 = (-2, 0), l1 = (0.96, 0.28).
    // |cos|: l0 -> (1, 0, 0.6), l1 -> (0.96, 0.28, 0.8).
    private static readonly float[] Features = [1, 0, 0, 1, 0.6f, 0.8f];
    private static readonly float[] Latents = [-2, 0, 0.96f, 0.28f];

    [Test]
    public void MccMatchesAbsoluteCosinesOneToOne()
    {
        var cos = DictionaryMetrics.Cosines(Features, 3, Latents, 2, 2);
        // Best total: l0-f0 (1) + l1-f2 (0.8). Signed cosines would give l0-f0 -1 and a matching worth 0.96.
        Assert.That(SynthMetrics.Mcc(cos), Is.EqualTo(0.9).Within(1e-6));
        Assert.That(DictionaryMetrics.MatchedCosine(cos).Mean, Is.EqualTo(0.48).Within(1e-6));
    }

    [Test]
    public void UniquenessCountsDistinctBestFeaturesOverAllLatents()
    {
        var cos = DictionaryMetrics.Cosines(Features, 3, Latents, 2, 2);
        var best = SynthMetrics.BestFeatures(cos);
        Assert.That(best, Is.EqualTo(new[] { 0, 0 }));  // l1: 0.96 to f0 beats 0.8 to f2
        Assert.That(SynthMetrics.Uniqueness(best), Is.EqualTo(0.5));
        Assert.That(SynthMetrics.Uniqueness([]), Is.EqualTo(0));
    }

    [Test]
    public void AZeroDecoderRowMatchesFeatureZeroWithCosineZero()
    {
        var cos = DictionaryMetrics.Cosines(Features, 3, [0, 0, 0, 1], 2, 2);
        Assert.That(SynthMetrics.BestFeatures(cos), Is.EqualTo(new[] { 0, 1 }));
        Assert.That(SynthMetrics.Mcc(cos), Is.EqualTo(0.5).Within(1e-6));  // (0 + 1) / 2
    }

    // Three features, three latents whose best features are f0, f2, f1; four samples.
    //   true:   s0 {f0, f2}, s1 {f0}, s2 {f2}, s3 {}
    //   codes:  l0 fires in s0, s2; l1 in s0, s2, s3; l2 never (a negative code is not firing)
    //   l0 vs f0: TP 1 (s0), FP 1 (s2), FN 1 (s1), TN 1 -> P 1/2, R 1/2, F1 1/2, accuracy 1/2
    //   l1 vs f2: TP 2, FP 1 (s3), FN 0, TN 1         -> P 2/3, R 1, F1 4/5, accuracy 3/4
    //   l2 vs f1: never fires, f1 never on, TN 4       -> P 0, R 0, F1 0, accuracy 1
    private static (float[] Codes, float[] TrueCodes) ClassificationCase()
    {
        float[] trueCodes =
        [
            3.2f, 0, 4.5f,
            2.0f, 0, 0,
            0, 0, 1.5f,
            0, 0, 0,
        ];
        float[] codes =
        [
            0.7f, 1.1f, 0,
            0, 0, -0.5f,
            0.2f, 0.3f, 0,
            0, 0.9f, 0,
        ];
        return (codes, trueCodes);
    }

    [Test]
    public void ClassificationL0AndDeadLatentsByHand()
    {
        var (codes, trueCodes) = ClassificationCase();
        var x = new float[8];
        var accumulator = new SynthMetrics.Accumulator(2, 3, [0, 2, 1]);
        accumulator.Add(x, x, codes, trueCodes);
        var r = accumulator.Result(mcc: 0.25, uniqueness: 1);
        Assert.That(r.Precision, Is.EqualTo((0.5 + 2.0 / 3 + 0) / 3).Within(1e-12));
        Assert.That(r.Recall, Is.EqualTo((0.5 + 1 + 0) / 3).Within(1e-12));
        Assert.That(r.F1, Is.EqualTo((0.5 + 0.8 + 0) / 3).Within(1e-12));
        Assert.That(r.Accuracy, Is.EqualTo((0.5 + 0.75 + 1) / 3).Within(1e-12));
        Assert.That(r.L0, Is.EqualTo(5.0 / 4));
        Assert.That(r.TrueL0, Is.EqualTo(4.0 / 4));
        Assert.That(r.DeadLatents, Is.EqualTo(1));
        Assert.That(r.Mcc, Is.EqualTo(0.25));
    }

    [Test]
    public void SparseTrueCodesGiveTheSameResult()
    {
        var (codes, trueCodes) = ClassificationCase();
        var x = new float[8];
        var dense = new SynthMetrics.Accumulator(2, 3, [0, 2, 1]);
        dense.Add(x, x, codes, trueCodes);
        var sparse = new SynthMetrics.Accumulator(2, 3, [0, 2, 1]);
        // Two batches of two samples.
        sparse.AddSparse(x.AsSpan(0, 4), x.AsSpan(0, 4), codes.AsSpan(0, 6), [0, 2, 3], [0, 2, 0]);
        sparse.AddSparse(x.AsSpan(4, 4), x.AsSpan(4, 4), codes.AsSpan(6, 6), [0, 1, 1], [2]);
        Assert.That(sparse.Result(0, 0), Is.EqualTo(dense.Result(0, 0)));
        Assert.That(sparse.Samples, Is.EqualTo(4));
    }

    [Test]
    public void ExplainedVarianceAndShrinkageByHand()
    {
        // x = (1,0), (3,0), (0,0); x̂ = (1,0), (2,0), (0,1).
        // E|x|^2 = 10/3, |E x|^2 = 16/9, variance 14/9; E|x - x̂|^2 = 2/3; explained 1 - (2/3)/(14/9) = 4/7.
        // Shrinkage leaves out the zero sample: (1/1 + 2/3) / 2 = 5/6.
        float[] x = [1, 0, 3, 0, 0, 0];
        float[] xHat = [1, 0, 2, 0, 0, 1];
        var accumulator = new SynthMetrics.Accumulator(2, 1, [0]);
        accumulator.Add(x, xHat, new float[3], new float[3]);
        var r = accumulator.Result(0, 0);
        Assert.That(r.ExplainedVariance, Is.EqualTo(4.0 / 7).Within(1e-12));
        Assert.That(r.Shrinkage, Is.EqualTo(5.0 / 6).Within(1e-12));
        Assert.That(r.DeadLatents, Is.EqualTo(1));
    }

    [Test]
    public void ExplainedVarianceOfConstantData()
    {
        float[] x = [1, 1, 1, 1];
        var exact = new SynthMetrics.Accumulator(2, 1, [0]);
        exact.Add(x, x, new float[2], new float[2]);
        Assert.That(exact.Result(0, 0).ExplainedVariance, Is.EqualTo(1));
        var off = new SynthMetrics.Accumulator(2, 1, [0]);
        off.Add(x, [1, 1, 1, 2], new float[2], new float[2]);
        Assert.That(off.Result(0, 0).ExplainedVariance, Is.EqualTo(0));
        Assert.That(new SynthMetrics.Accumulator(2, 1, [0]).Result(0, 0).Shrinkage, Is.EqualTo(0));
    }

    [Test]
    public void APerfectDictionaryScoresOne()
    {
        // Truth 4 features in 3 dimensions; the dictionary is the truth permuted and rescaled, codes follow it.
        float[] truth = [1, 0, 0, 0, 1, 0, 0, 0, 1, 0.6f, 0.8f, 0];
        int[] order = [2, 0, 3, 1];  // latent j is feature order[j]
        var decoder = new float[12];
        for (var j = 0; j < 4; j++)
            for (var k = 0; k < 3; k++) decoder[j * 3 + k] = -1.5f * truth[order[j] * 3 + k];
        var rng = new Random(5);
        const int samples = 50;
        var trueCodes = new float[samples * 4];
        var codes = new float[samples * 4];
        var x = new float[samples * 3];
        for (var t = 0; t < samples; t++)
            for (var i = 0; i < 4; i++)
            {
                var value = rng.NextDouble() < 0.4 ? (float)(1 + rng.NextDouble()) : 0f;
                trueCodes[t * 4 + i] = value;
                for (var k = 0; k < 3; k++) x[t * 3 + k] += value * truth[i * 3 + k];
            }
        for (var t = 0; t < samples; t++)
            for (var j = 0; j < 4; j++) codes[t * 4 + j] = trueCodes[t * 4 + order[j]];
        var r = SynthMetrics.Evaluate(truth, 4, decoder, 4, 3, x, x, codes, trueCodes);
        Assert.That(r.Mcc, Is.EqualTo(1).Within(1e-6));
        Assert.That(r.Uniqueness, Is.EqualTo(1));
        Assert.That(r.F1, Is.EqualTo(1));
        Assert.That(r.Precision, Is.EqualTo(1));
        Assert.That(r.Recall, Is.EqualTo(1));
        Assert.That(r.ExplainedVariance, Is.EqualTo(1));
        Assert.That(r.Shrinkage, Is.EqualTo(1).Within(1e-12));
        Assert.That(r.L0, Is.EqualTo(r.TrueL0));
        Assert.That(r.DeadLatents, Is.EqualTo(0));
    }

    [Test]
    public void ArgumentsAreChecked()
    {
        Assert.Throws<ArgumentException>(() => new SynthMetrics.Accumulator(2, 3, [3]));
        var accumulator = new SynthMetrics.Accumulator(2, 3, [0]);
        Assert.Throws<ArgumentException>(() => accumulator.Add(new float[4], new float[4], new float[2], new float[5]));
        Assert.Throws<ArgumentException>(() => accumulator.Add(new float[3], new float[3], new float[1], new float[3]));
        Assert.Throws<ArgumentException>(() => accumulator.AddSparse(new float[2], new float[2], new float[1], [0, 1], [7]));
    }
}
