using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;

namespace NativeEngine.Tests;

/// <summary>
/// The paper's results on the CPU backend at its settings (batch 1024, 10 000 AdamW steps). Small m is hard to
/// optimise (the paper says so), so each setting trains several instances with different initialisations and
/// the tests read the best one by evaluation loss.
/// </summary>
public class PaperTests
{
    private static readonly Dictionary<string, ToyRunResult> Runs = new();

    private static ToyRunResult Train(string json)
    {
        lock (Runs)
        {
            if (Runs.TryGetValue(json, out var run)) return run;
            var config = ToyConfigLoader.Parse(json, "test config");
            using var context = new EngineContext(Backend.Cpu);
            return Runs[json] = ToyExperiment.Train(context, config, RunProgress.Silent);
        }
    }

    // n=5, m=2, I_i = 0.9^i: p = 1 and p = 0.05, best of 4 each.
    private const string Intro = """
        { "model": "relu_output", "n_features": 5, "n_hidden": 2, "importance": 0.9,
          "sweep": { "feature_probability": [1.0, 0.05], "repeats": 4 } }
        """;

    // n=20, m=5, I_i = 0.7^i over the published densities, best of 3.
    private static string TwentyInFive(string model) => $$"""
        { "model": "{{model}}", "n_features": 20, "n_hidden": 5, "importance": 0.7,
          "sweep": { "feature_probability": [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001], "repeats": 3 } }
        """;

    private static int Best(ToyRunResult run, double p) =>
        run.BestOf(run.Config.Settings.Single(s => Math.Abs(s.FeatureProbability - p) < 1e-6 * p).Instances);

    [Test]
    public void DenseFeaturesGiveTwoOrthogonalFeaturesAndDropTheRest()
    {
        var run = Train(Intro);
        var best = Best(run, 1.0);
        var norms = run.Metrics[best].FeatureNorm;
        TestContext.Out.WriteLine($"p=1, best instance {best}: norms {string.Join(", ", norms.Select(v => v.ToString("F3")))}");
        Assert.That(norms[0], Is.EqualTo(1.0).Within(0.05));
        Assert.That(norms[1], Is.EqualTo(1.0).Within(0.05));
        Assert.That(norms[2..], Is.All.LessThan(0.1));
        var w = run.InstanceW(best);
        var cosine = (w[0] * w[2] + w[1] * w[3]) / (norms[0] * norms[1]);
        Assert.That(Math.Abs(cosine), Is.LessThan(0.05), "the two kept features are orthogonal");
    }

    [Test]
    public void SparseFeaturesFormAPentagon()
    {
        var run = Train(Intro);
        var best = Best(run, 0.05);
        var metrics = run.Metrics[best];
        TestContext.Out.WriteLine($"p=0.05, best instance {best}: D_i {string.Join(", ", metrics.Dimensionality.Select(v => v.ToString("F3")))}");
        Assert.That(metrics.Dimensionality, Is.All.EqualTo(0.4).Within(0.05));
        Assert.That(metrics.FeatureNorm, Is.All.GreaterThan(0.5), "all five features are represented");
    }

    [Test]
    public void LinearModelRepresentsExactlyTheFiveMostImportantFeatures()
    {
        var run = Train(TwentyInFive("linear"));
        foreach (var setting in run.Config.Settings)
        {
            var norms = run.Metrics[run.BestOf(setting.Instances)].FeatureNorm;
            TestContext.Out.WriteLine($"p={setting.FeatureProbability:G3}: {string.Join(" ", norms.Select(v => v.ToString("F2")))}");
            Assert.That(norms[..5], Is.All.GreaterThan(0.9), $"p={setting.FeatureProbability}: the 5 most important are kept");
            Assert.That(norms[5..], Is.All.LessThan(0.1), $"p={setting.FeatureProbability}: the other 15 are dropped");
        }
    }

    [Test]
    public void ReluModelRepresentsMoreFeaturesAsTheyGetSparser()
    {
        var run = Train(TwentyInFive("relu_output"));
        var counts = run.Config.Settings
            .Select(s => (P: s.FeatureProbability, Count: run.Metrics[run.BestOf(s.Instances)].RepresentedCount))
            .ToArray();
        TestContext.Out.WriteLine(string.Join(", ", counts.Select(c => $"p={c.P:G3}: {c.Count}")));
        Assert.That(counts[0].Count, Is.EqualTo(5), "dense features: exactly m = 5 represented");
        for (var j = 1; j < counts.Length; j++)
            Assert.That(counts[j].Count, Is.GreaterThanOrEqualTo(counts[j - 1].Count),
                $"the count does not fall from p={counts[j - 1].P} to p={counts[j].P}");
        foreach (var (p, count) in counts.Where(c => c.P <= 0.03))
            Assert.That(count, Is.GreaterThan(5), $"p={p}: more features than dimensions");
    }

    // Approach 1 of the paper: an L1 penalty on the hidden activations. At p = 0.05 the plain model packs five
    // features into a pentagon; a large λ leaves only features on dedicated (orthogonal) dimensions.
    private const string L1Sweep = """
        { "model": "relu_output", "n_features": 5, "n_hidden": 2, "importance": 0.9, "feature_probability": 0.05,
          "sweep": { "l1": [0, 0.1], "repeats": 2 } }
        """;

    [Test]
    public void LargeL1LeavesNoSuperposition()
    {
        var run = Train(L1Sweep);
        var plain = run.Metrics[run.BestOf(run.Config.Settings[0].Instances)];
        var penalised = run.Metrics[run.BestOf(run.Config.Settings[1].Instances)];
        TestContext.Out.WriteLine($"l1=0: D_i {string.Join(", ", plain.Dimensionality.Select(v => v.ToString("F3")))}");
        TestContext.Out.WriteLine($"l1=0.1: D_i {string.Join(", ", penalised.Dimensionality.Select(v => v.ToString("F3")))}, " +
                                  $"norms {string.Join(", ", penalised.FeatureNorm.Select(v => v.ToString("F3")))}");
        Assert.That(plain.Dimensionality.Count(d => d > 0.1 && d < 0.9), Is.GreaterThanOrEqualTo(3),
            "without the penalty, features share dimensions");
        Assert.That(penalised.RepresentedCount, Is.GreaterThanOrEqualTo(1), "the penalised model still represents features");
        for (var i = 0; i < 5; i++)
            Assert.That(penalised.Dimensionality[i], Is.LessThan(0.1).Or.GreaterThan(0.9),
                $"feature {i} (norm {penalised.FeatureNorm[i]:F3}) is either dropped or on its own dimension");
    }
}
