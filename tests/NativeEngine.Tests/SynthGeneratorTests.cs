using NativeEngine.Interop;

namespace NativeEngine.Tests;

/// <summary>The native synthetic generator through its C# binding: the preset's values cross the ABI intact, the spec
/// round-trips field for field, errors name the field, sample ranges are reproducible, and sparse codes agree with
/// the dense ones.</summary>
public class SynthGeneratorTests
{
    // A reduced SynthSAEBench: 2 trees of branching 3, depth 2, and free features.
    private static SynthGeneratorSpec Small() => SynthGeneratorSpec.Preset(SynthPreset.SaeBench16k) with
    {
        NFeatures = 64, D = 10, RootNodes = 2, BranchingMin = 3, BranchingMax = 3, MaxDepth = 2, PMin = 0.01,
        CorrelationRank = 3, OrthoSteps = 3, OrthoLr = 1e-3, Seed = 8,
    };

    [Test]
    public void The16kPresetCrossesTheAbiWithEveryValue()
    {
        var p = SynthGeneratorSpec.Preset(SynthPreset.SaeBench16k);
        Assert.That(p, Is.EqualTo(new SynthGeneratorSpec(SynthKind.SaeBench, 16384, 768, 42, CorrelationRank: 25,
            ZipfExponent: 0.5, PMin: 5e-4, PMax: 0.4, Decay: p.Decay, ActiveMean: p.ActiveMean, RootNodes: 128,
            BranchingMin: 4, BranchingMax: 4, MaxDepth: 3, MeMinDepth: 0, MeMaxDepth: null, Compensate: true,
            ScaleChildren: true, MePortion: 1, CorrelationScale: 0.1, MeanStart: 5, MeanEnd: 4, StdMean: 0.5, StdStd: 0.5,
            BiasNorm: 0.5, OrthoLr: 3e-4, OrthoSteps: 100, OrthoChunk: 1024)));
        Assert.That(p.WhyInvalid(), Is.Null);
    }

    [Test]
    public void TheForestSettingsReachTheGenerator()
    {
        using var context = new EngineContext(Backend.Cpu);
        // Exclusion limited to the roots (depth 0), no compensation, no parent scaling.
        using var limited = new SynthGenerator(context, Small() with { MeMaxDepth = 0, Compensate = false, ScaleChildren = false });
        var truth = limited.Truth;
        Assert.That(truth.Flags.Count(f => (f & SynthGenerator.ExclusiveFlag) != 0), Is.EqualTo(2));
        Assert.That(truth.Flags.Count(f => (f & SynthGenerator.ScalesChildrenFlag) != 0), Is.EqualTo(0));
        Assert.That(truth.FireProbability, Is.EqualTo(truth.Probability), "no compensation");
        // Branching uniform in [3, 5]: every parent has 3 to 5 children.
        using var varied = new SynthGenerator(context, Small() with { BranchingMax = 5 });
        var children = varied.Truth.Parent.Where(p => p >= 0).GroupBy(p => p).Select(g => g.Count()).ToArray();
        Assert.That(children, Is.All.InRange(3, 5));
        Assert.That(children.Distinct().Count(), Is.GreaterThan(1));
    }

    [Test]
    public void InvalidSpecsAreNamed()
    {
        Assert.That(Small().WhyInvalid(), Is.Null);
        Assert.That((Small() with { PMin = 0.5, PMax = 0.4 }).WhyInvalid(), Does.Contain("p_min, p_max"));
        Assert.That((Small() with { NFeatures = 0 }).WhyInvalid(), Does.Contain("n_features is 0"));
        Assert.That((Small() with { MePortion = 2 }).WhyInvalid(), Does.Contain("me_portion"));
        using var context = new EngineContext(Backend.Cpu);
        var error = Assert.Throws<NativeEngineException>(() => new SynthGenerator(context, Small() with { D = 0 }).Dispose())!;
        Assert.That(error.NativeMessage, Does.Contain("d is 0"));
    }

    [Test]
    public void SamplesAreReproducibleAndSparseCodesMatchTheDenseOnes()
    {
        using var context = new EngineContext(Backend.Cpu);
        using var generator = new SynthGenerator(context, Small());
        const int count = 50;
        var x = new float[count * 10];
        var codes = new float[count * 64];
        generator.Sample(SynthStream.Evaluate, 1000, x, codes);
        var xAgain = new float[count * 10];
        generator.Sample(SynthStream.Evaluate, 1000 + 20, xAgain.AsSpan(20 * 10));
        generator.Sample(SynthStream.Evaluate, 1000, xAgain.AsSpan(0, 20 * 10));
        Assert.That(xAgain, Is.EqualTo(x));

        var xSparse = new float[count * 10];
        var sparse = generator.SampleSparse(SynthStream.Evaluate, 1000, count, xSparse);
        Assert.That(xSparse, Is.EqualTo(x));
        for (var t = 0; t < count; t++)
        {
            var dense = Enumerable.Range(0, 64).Where(i => codes[t * 64 + i] > 0).ToArray();
            var row = sparse.Index[(int)sparse.RowBegin[t]..(int)sparse.RowBegin[t + 1]];
            Assert.That(row, Is.EqualTo(dense), $"sample {t}");
            Assert.That(sparse.Value[(int)sparse.RowBegin[t]..(int)sparse.RowBegin[t + 1]], Is.EqualTo(dense.Select(i => codes[t * 64 + i])));
        }

        // The truth, given back, draws the same samples without the orthogonalisation.
        var truth = generator.Truth;
        Assert.That(truth.Parent.Count(p => p >= 0), Is.EqualTo(2 * 3 + 2 * 9));
        Assert.That(truth.Flags.Count(f => (f & SynthGenerator.ExclusiveFlag) != 0), Is.EqualTo(2 + 6));
        using var again = new SynthGenerator(context, Small(), truth.Features, truth.Bias);
        var xGiven = new float[count * 10];
        again.Sample(SynthStream.Evaluate, 1000, xGiven);
        Assert.That(xGiven, Is.EqualTo(x));
    }
}
