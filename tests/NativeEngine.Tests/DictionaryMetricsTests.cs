using NativeEngine.Runner.Analysis;

namespace NativeEngine.Tests;

public class DictionaryMetricsTests
{
    private static float[] RandomRows(int count, int d, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count * d).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    [Test]
    public void APermutedScaledCopyIsRecoveredExactly()
    {
        const int n = 12, d = 7;
        var truth = RandomRows(n, d, 1);
        var permutation = Enumerable.Range(0, n).OrderBy(i => (i * 5) % n).ToArray();
        var atoms = new float[n * d];
        for (var i = 0; i < n; i++)
            for (var k = 0; k < d; k++) atoms[permutation[i] * d + k] = 3f * truth[i * d + k];  // scale does not matter
        var cos = DictionaryMetrics.Cosines(truth, n, atoms, n, d);
        Assert.That(DictionaryMetrics.Mmcs(cos), Is.EqualTo(1.0).Within(1e-6));
        var (mean, assignment) = DictionaryMetrics.MatchedCosine(cos);
        Assert.That(mean, Is.EqualTo(1.0).Within(1e-6));
        Assert.That(assignment, Is.EqualTo(permutation));
    }

    [Test]
    public void CosinesByTheEnginesGemmEqualThePerPairDots()
    {
        // Shapes that leave partial GEMM panels, a zero truth row and a zero atom (both give 0).
        const int n = 37, m = 53, d = 19;
        var truth = RandomRows(n, d, 3);
        var atoms = RandomRows(m, d, 4);
        Array.Clear(truth, 5 * d, d);
        Array.Clear(atoms, 11 * d, d);
        using var context = new NativeEngine.Interop.EngineContext(NativeEngine.Interop.Backend.Cpu);
        var product = NativeEngine.Runner.Experiments.Factorization.Product(context);
        Assert.That(product, Is.Not.Null);
        var perPair = DictionaryMetrics.Cosines(truth, n, atoms, m, d);
        var byGemm = DictionaryMetrics.Cosines(truth, n, atoms, m, d, product);
        double worst = 0;
        for (var i = 0; i < n; i++)
            for (var j = 0; j < m; j++) worst = Math.Max(worst, Math.Abs(perPair[i, j] - byGemm[i, j]));
        Assert.That(worst, Is.LessThan(1e-6));
        Assert.That((byGemm[5, 0], byGemm[0, 11]), Is.EqualTo((0.0, 0.0)));
        Assert.That(DictionaryMetrics.Mmcs(byGemm), Is.EqualTo(DictionaryMetrics.Mmcs(perPair)).Within(1e-6));
        // The best cosine of each feature without the matrix: the row maxima.
        var best = DictionaryMetrics.BestCosines(truth, n, atoms, m, d, product!);
        for (var i = 0; i < n; i++)
            Assert.That(best[i], Is.EqualTo(Enumerable.Range(0, m).Max(j => perPair[i, j])).Within(1e-6));
        Assert.That(best.Average(), Is.EqualTo(DictionaryMetrics.Mmcs(perPair)).Within(1e-6));
    }

    [Test]
    public void RecoveryWithoutTheAssignmentKeepsMmcsAndTheBestCosines()
    {
        const int n = 29, m = 41, d = 11;
        var truth = RandomRows(n, d, 5);
        var atoms = RandomRows(m, d, 6);
        using var context = new NativeEngine.Interop.EngineContext(NativeEngine.Interop.Backend.Cpu);
        var full = NativeEngine.Runner.Experiments.Recovery.Measure(truth, n, atoms, m, d);
        var quick = NativeEngine.Runner.Experiments.Recovery.Measure(truth, n, atoms, m, d, matched: false,
            product: NativeEngine.Runner.Experiments.Factorization.Product(context));
        Assert.That(full.MatchedCosine, Is.Not.Null);
        Assert.That(quick.MatchedCosine, Is.Null);
        Assert.That(quick.Mmcs, Is.EqualTo(full.Mmcs).Within(1e-6));
        Assert.That(quick.BestCosines, Is.EqualTo(full.BestCosines).Within(1e-6));
        // The tracker's limit: SynthSAEBench's 16k truth against 4 096 latents is above it, 2 048 x 2 048 at it.
        Assert.That(NativeEngine.Runner.Experiments.Recovery.AssignmentWork(16384, 4096), Is.GreaterThan(8_589_934_592.0));
        Assert.That(NativeEngine.Runner.Experiments.Recovery.AssignmentWork(2048, 2048), Is.EqualTo(8_589_934_592.0));
    }

    [Test]
    public void MmcsCountsTheBestAtomEvenWhenShared()
    {
        // Two true features, both closest to atom 0: MMCS lets them share it, the matching does not.
        float[] truth = [1, 0, 0.8f, 0.6f];
        float[] atoms = [1, 0, 0, 1];
        var cos = DictionaryMetrics.Cosines(truth, 2, atoms, 2, 2);
        Assert.That(DictionaryMetrics.Mmcs(cos), Is.EqualTo((1.0 + 0.8) / 2).Within(1e-6));
        var (mean, assignment) = DictionaryMetrics.MatchedCosine(cos);
        Assert.That(assignment, Is.EqualTo(new[] { 0, 1 }));
        Assert.That(mean, Is.EqualTo((1.0 + 0.6) / 2).Within(1e-6));
    }

    [TestCase(5, 5)]
    [TestCase(4, 7)]
    [TestCase(6, 3)]
    public void HungarianEqualsBruteForce(int rows, int columns)
    {
        var rng = new Random(rows * 31 + columns);
        for (var trial = 0; trial < 20; trial++)
        {
            var cos = new double[rows, columns];
            for (var i = 0; i < rows; i++)
                for (var j = 0; j < columns; j++) cos[i, j] = rng.NextDouble() * 2 - 1;
            var (mean, assignment) = DictionaryMetrics.MatchedCosine(cos);
            var matched = Math.Min(rows, columns);
            Assert.That(assignment.Where(a => a >= 0).Distinct().Count(), Is.EqualTo(matched), "distinct atoms");
            Assert.That(mean, Is.EqualTo(BestByBruteForce(cos) / matched).Within(1e-9));
        }
    }

    // Maximum total cosine over injective maps from the smaller side to the larger, by enumeration.
    private static double BestByBruteForce(double[,] cos)
    {
        int rows = cos.GetLength(0), columns = cos.GetLength(1);
        var transposed = rows > columns;
        int small = Math.Min(rows, columns), large = Math.Max(rows, columns);
        double Value(int s, int l) => transposed ? cos[l, s] : cos[s, l];
        var best = double.NegativeInfinity;
        var used = new bool[large];
        void Search(int s, double total)
        {
            if (s == small)
            {
                best = Math.Max(best, total);
                return;
            }
            for (var l = 0; l < large; l++)
            {
                if (used[l]) continue;
                used[l] = true;
                Search(s + 1, total + Value(s, l));
                used[l] = false;
            }
        }
        Search(0, 0);
        return best;
    }
}
