using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Data;

namespace NativeEngine.Tests;

/// <summary>The sparse autoencoder through the C ABI: it learns the synthetic ground truth, and a checkpoint
/// (parameters and state) continued equals the unbroken run.</summary>
public class SaeTests
{
    private static SaeModelSpec Spec(SaeArchitecture architecture = SaeArchitecture.TopK) =>
        new(architecture, DIn: 32, DSae: 128, K: 5, BatchSize: 512, Seed: 3, DeadWindow: 20_000,
            MatryoshkaWidths: architecture == SaeArchitecture.MatryoshkaBatchTopK ? [8, 32, 128] : null, MaxIterations: 8);

    private static SyntheticSource Data(EngineContext context, int seed = 11) =>
        new(new SynthGenerator(context, SynthGeneratorSpec.Sharkey(32, 64, 0.99, 5, 0, (ulong)seed)), batchTokens: 512);

    [Test]
    public void TopKRecoversTheSyntheticFeatures()
    {
        using var context = new EngineContext(Backend.Cpu);
        using var sae = new SparseAutoencoder(context, Spec());
        using var data = Data(context);
        sae.InitDecoderBias(data.Next().Span, geometricMedian: true);
        SaeStats stats = default;
        for (var step = 0; step < 1500; step++) stats = sae.TrainStep(data.Next().Span, 2e-3f);
        var p = sae.GetParameters();
        var mmcs = DictionaryMetrics.Mmcs(DictionaryMetrics.Cosines(data.Generator.Truth.Features, 64, p.WDec, 128, 32));
        TestContext.Out.WriteLine($"after {stats.Steps} steps: fvu {stats.Fvu:F3}, l0 {stats.L0:F2}, MMCS {mmcs:F3}");
        Assert.That(stats.Steps, Is.EqualTo(1500));
        Assert.That(stats.L0, Is.InRange(4.0, 5.0), "topk: at most k codes per token (ReLU drops negative ones)");
        Assert.That(mmcs, Is.GreaterThanOrEqualTo(0.9));
        Assert.That(stats.Fvu, Is.LessThan(0.3));
    }

    [TestCase(SaeArchitecture.TopK)]
    [TestCase(SaeArchitecture.BatchTopK)]
    [TestCase(SaeArchitecture.JumpRelu)]
    [TestCase(SaeArchitecture.MatryoshkaBatchTopK)]
    [TestCase(SaeArchitecture.MatchingPursuit)]
    public void ResumingFromACheckpointEqualsTheUnbrokenRun(SaeArchitecture architecture)
    {
        using var context = new EngineContext(Backend.Cpu);
        var spec = Spec(architecture) with { L0Coefficient = architecture == SaeArchitecture.JumpRelu ? 1e-3f : 0 };
        var batches = Enumerable.Range(0, 60).Select(_ => Array.Empty<float>()).ToArray();
        using (var data = Data(context, 5))
            for (var b = 0; b < batches.Length; b++) batches[b] = data.Next().ToArray();

        using var unbroken = new SparseAutoencoder(context, spec);
        foreach (var batch in batches) unbroken.TrainStep(batch, 1e-3f);

        SaeParameters saved;
        byte[] state;
        using (var first = new SparseAutoencoder(context, spec))
        {
            foreach (var batch in batches.Take(25)) first.TrainStep(batch, 1e-3f);
            saved = first.GetParameters();
            state = first.GetState();
        }
        using var resumed = new SparseAutoencoder(context, spec with { Seed = 999 });  // init is overwritten
        resumed.Restore(saved, state);
        SaeStats last = default;
        foreach (var batch in batches.Skip(25)) last = resumed.TrainStep(batch, 1e-3f);

        var a = unbroken.GetParameters();
        var b2 = resumed.GetParameters();
        Assert.That(last.Steps, Is.EqualTo(60));
        Assert.That(b2.WDec, Is.EqualTo(a.WDec), "bit-identical decoder");
        Assert.That(b2.WEnc, Is.EqualTo(a.WEnc), "bit-identical encoder");
        Assert.That(b2.BEnc, Is.EqualTo(a.BEnc));
        Assert.That(b2.BDec, Is.EqualTo(a.BDec));
        Assert.That(b2.Threshold, Is.EqualTo(a.Threshold));
        Assert.That(resumed.GetState(), Is.EqualTo(unbroken.GetState()), "optimizer and firing state too");
    }

    [Test]
    public void BadArgumentsAreNamed()
    {
        using var context = new EngineContext(Backend.Cpu);
        var error = Assert.Throws<NativeEngineException>(() => new SparseAutoencoder(context, Spec() with { K = 500 }).Dispose())!;
        Assert.That(error.NativeMessage, Does.Contain("config.k is 500; valid: 1..d_sae (128)"));
        using var sae = new SparseAutoencoder(context, Spec());
        error = Assert.Throws<NativeEngineException>(() => sae.TrainStep(new float[100], 1e-3f))!;
        Assert.That(error.NativeMessage, Does.Contain("x has room for 100 floats; expected 16384"));
        var state = sae.GetState();
        state[0] ^= 0xff;
        error = Assert.Throws<NativeEngineException>(() => sae.Restore(sae.GetParameters(), state))!;
        Assert.That(error.NativeMessage, Does.Contain("not written by ne_sae_get_state"));
    }

    [TestCase(new long[] { 8, 8, 128 }, "config.matryoshka_widths[1] is 8; valid: strictly increasing widths in 9..d_sae (128)")]
    [TestCase(new long[] { 8, 32 }, "config.matryoshka_widths[1] (the last) is 32; valid: d_sae (128)")]
    [TestCase(new long[0], "config.matryoshka_levels is 0; valid: 1..8")]
    public void BadMatryoshkaWidthsAreNamed(long[] widths, string expected)
    {
        using var context = new EngineContext(Backend.Cpu);
        var spec = Spec(SaeArchitecture.MatryoshkaBatchTopK) with { MatryoshkaWidths = widths };
        var error = Assert.Throws<NativeEngineException>(() => new SparseAutoencoder(context, spec).Dispose())!;
        Assert.That(error.NativeMessage, Does.Contain(expected));
        error = Assert.Throws<NativeEngineException>(() =>
            new SparseAutoencoder(context, Spec(SaeArchitecture.BatchTopK) with { MatryoshkaWidths = [128] }).Dispose())!;
        Assert.That(error.NativeMessage, Does.Contain("config.matryoshka_levels is 1; valid: 0 unless the architecture is matryoshka_batchtopk"));
        error = Assert.Throws<NativeEngineException>(() =>
            new SparseAutoencoder(context, Spec(SaeArchitecture.BatchTopK) with { MatryoshkaAuxLoss = true }).Dispose())!;
        Assert.That(error.NativeMessage, Does.Contain("config.matryoshka_aux_loss is 1; valid: 0 unless the architecture is matryoshka_batchtopk"));
    }

    [Test]
    public void MatchingPursuitLearnsTheFeaturesWithinItsIterationLimit()
    {
        using var context = new EngineContext(Backend.Cpu);
        using var data = Data(context);
        using var sae = new SparseAutoencoder(context, Spec(SaeArchitecture.MatchingPursuit));
        var before = sae.GetParameters();
        SaeStats first = default, stats = default;
        for (var step = 0; step < 200; step++)
        {
            stats = sae.TrainStep(data.Next().Span, 2e-3f);
            if (step == 0) first = stats;
        }
        Assert.That(stats.Fvu, Is.LessThan(first.Fvu));
        Assert.That(stats.L0, Is.InRange(1.0, 8.0), "at most max_iterations latents per token");
        var after = sae.GetParameters();
        Assert.That(after.WEnc, Is.EqualTo(before.WEnc), "no encoder: W_enc is never trained");
        Assert.That(after.BEnc, Is.EqualTo(before.BEnc));
        Assert.That(after.WDec, Is.Not.EqualTo(before.WDec));
        var fired = new long[128];
        var eval = sae.Evaluate(data.Next().Span, [], fired);
        Assert.That(eval.L0, Is.LessThanOrEqualTo(8.0));
        Assert.That(fired.Sum(), Is.EqualTo((long)Math.Round(eval.L0 * 512)), "fire counts add up to the codes");
    }

    [Test]
    public void MatchingPursuitSettingsAreChecked()
    {
        using var context = new EngineContext(Backend.Cpu);
        var error = Assert.Throws<NativeEngineException>(() =>
            new SparseAutoencoder(context, Spec(SaeArchitecture.MatchingPursuit) with { MaxIterations = -1 }).Dispose())!;
        Assert.That(error.NativeMessage, Does.Contain("config.max_iterations is -1; valid: >= 0 (0: d_in)"));
        error = Assert.Throws<NativeEngineException>(() =>
            new SparseAutoencoder(context, Spec(SaeArchitecture.MatchingPursuit) with { ResidualThreshold = float.NaN }).Dispose())!;
        Assert.That(error.NativeMessage, Does.Contain("config.residual_threshold is").And.Contain("valid: finite"));
    }

    [Test]
    public void MatryoshkaTrainsItsPrefixesAndEvaluatesWithItsThreshold()
    {
        using var context = new EngineContext(Backend.Cpu);
        using var data = Data(context);
        using var sae = new SparseAutoencoder(context, Spec(SaeArchitecture.MatryoshkaBatchTopK));
        SaeStats stats = default;
        for (var step = 0; step < 300; step++) stats = sae.TrainStep(data.Next().Span, 2e-3f);
        Assert.That(stats.Sparsity, Is.GreaterThan(stats.Mse), "the inner levels' reconstruction (two levels of fewer latents)");
        var p = sae.GetParameters();
        Assert.That(p.Threshold.Distinct().Count(), Is.EqualTo(1), "one inference threshold, repeated");
        Assert.That(p.Threshold[0], Is.GreaterThan(0));
        var eval = sae.Evaluate(data.Next().Span, [], []);
        Assert.That(eval.L0, Is.InRange(2.0, 10.0), "the threshold keeps about k codes per token");
        Assert.That(eval.Fvu, Is.LessThan(0.5));
    }
}
