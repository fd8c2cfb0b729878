using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner;
using NativeEngine.Runner.Configs;
using Spectre.Console;

namespace NativeEngine.Tests;

/// <summary>Mixture-of-experts models through the interop, the config loader and the `moe` verb.</summary>
public class MoeTests
{
    private const string Small = """
        { "n_experts": 4, "top_k": 2, "expert_hidden": 3, "n_features": 8, "importance": 0.9,
          "router": { "renormalize": true, "load_balance": 0.01, "capacity_factor": 1.25 },
          "sweep": { "feature_probability": [1.0, 0.1], "repeats": 2 }, "batch_size": 128, "steps": 40 }
        """;

    private static string ErrorOf(string json) =>
        Assert.Throws<ConfigException>(() => MoeConfigLoader.Parse(json, "moe.json"))!.Message;

    [Test]
    public void ConfigReadsTheRouterBesideATypicalToyRun()
    {
        var c = MoeConfigLoader.Parse(Small, "moe.json");
        Assert.That((c.NExperts, c.TopK, c.ExpertHidden, c.ExpertModel), Is.EqualTo((4, 2, 3, ToyModelKind.ReluOutput)));
        Assert.That(c.Router, Is.EqualTo(new RouterSettings(true, RouterNoise.None, 0.01f, 0.001f, 0f, 1.25f)));
        Assert.That(c.Run.NInstances, Is.EqualTo(4));
        Assert.That(c.RouterStarvedOfTaskGradient, Is.False);
        Assert.That(c.ActiveFlopsPerSample, Is.EqualTo(2.0 * 8 * 4 + 2 * 4.0 * 8 * 3));
        var again = MoeConfigLoader.Parse(MoeConfigWriter.ToJson(c), "resolved");
        Assert.That(MoeConfigWriter.ToJson(again), Is.EqualTo(MoeConfigWriter.ToJson(c)));
    }

    [TestCase("\"top_k\": 2", "\"top_k\": 5", "\"top_k\" is 5; valid: an integer in [1, 4]")]
    [TestCase("\"expert_hidden\": 3,", "\"expert_hidden\": 3, \"expert_model\": \"linear\",", "\"expert_model\" is the string \"linear\"; valid: \"relu_output\" | \"relu_hidden\"")]
    [TestCase("\"capacity_factor\": 1.25", "\"capacity_factor\": -1", "\"router\": \"capacity_factor\" is -1; valid: a number >= 0")]
    [TestCase("\"renormalize\": true", "\"renormalize\": \"yes\"", "\"renormalize\" must be true or false")]
    [TestCase("\"load_balance\": 0.01", "\"load_balance\": 0.01, \"noise\": \"gumbel\"", "\"noise\" is the string \"gumbel\"; valid: \"none\" | \"noisy_topk\" | \"jitter\"")]
    [TestCase("\"load_balance\": 0.01", "\"load_balance\": 0.01, \"temperature\": 2", "unknown key \"temperature\"")]
    [TestCase("\"n_experts\": 4,", "\"n_experts\": 4, \"n_hidden\": 5,", "unknown key \"n_hidden\"")]
    public void BadValueIsNamed(string from, string to, string expected)
    {
        Assert.That(ErrorOf(Small.Replace(from, to)), Does.Contain(expected).And.Contain("moe.json"));
    }

    [Test]
    public void TrainingRoutesEveryTokenToTopKExperts()
    {
        var c = MoeConfigLoader.Parse(Small, "moe.json");
        using var context = new EngineContext(Backend.Cpu);
        var run = Runner.Experiments.MoeExperiment.Train(context, c, Runner.Experiments.RunProgress.Silent);
        foreach (var metrics in run.Metrics)
        {
            Assert.That(metrics.Evaluation.Usage.Sum(), Is.EqualTo(2.0).Within(1e-5), "usages sum to top_k");
            Assert.That(metrics.Evaluation.Loss, Is.GreaterThan(0));
            Assert.That(metrics.Evaluation.DroppedFraction, Is.InRange(0.0, 1.0));
            Assert.That(metrics.Experts, Has.Length.EqualTo(4));
        }
    }

    private static (int Code, string Output) Run(params string[] args) => TestSupport.RunCli(args);

    [Test]
    public void MoeVerbWritesResultsAndWarnsWhenTheRouterCannotLearn()
    {
        var dir = TestSupport.TempDirectory("moe");
        var config = Path.Combine(dir, "moe.json");
        File.WriteAllText(config, Small.Replace("\"top_k\": 2", "\"top_k\": 1"));
        var outDir = Path.Combine(dir, "run");
        var (code, output) = Run("moe", "--config", config, "--out", outDir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("warning: top_k = 1 with renormalised gates"));
        var root = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "results.json"))).RootElement;
        Assert.That(root.GetProperty("n_experts").GetInt32(), Is.EqualTo(4));
        var instance = root.GetProperty("instances")[0];
        foreach (var key in new[] { "loss", "balance_loss", "z_loss", "dropped_fraction", "usage", "active_flops_per_sample",
                     "loss_per_active_flop", "features_per_dimension", "represented_features", "superposed_fraction", "experts", "W_gate" })
            Assert.That(instance.TryGetProperty(key, out _), Is.True, key);
        Assert.That(instance.GetProperty("experts").GetArrayLength(), Is.EqualTo(4));
        Assert.That(instance.GetProperty("experts")[0].GetProperty("W").GetArrayLength(), Is.EqualTo(8));
        Assert.That(root.GetProperty("settings").GetArrayLength(), Is.EqualTo(2));
        Assert.That(File.Exists(Path.Combine(outDir, "report.html")), Is.True);
        Assert.That(File.Exists(Path.Combine(outDir, "figures", "usage.svg")), Is.True);
    }

    [Test]
    public void CompareTrainsDenseModelsMatchedOnFlopsAndParameters()
    {
        var dir = TestSupport.TempDirectory("compare");
        var config = Path.Combine(dir, "moe.json");
        File.WriteAllText(config, Small);
        var (code, output) = Run("moe", "--compare", "--config", config, "--out", dir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        var root = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "compare.json"))).RootElement;
        Assert.That(root.GetProperty("dense_flop_matched").GetProperty("n_hidden").GetInt32(), Is.EqualTo(2 * 3), "k · m");
        Assert.That(root.GetProperty("dense_parameter_matched").GetProperty("n_hidden").GetInt32(), Is.EqualTo(4 * 3), "E · m");
        var settings = root.GetProperty("settings");
        Assert.That(settings.GetArrayLength(), Is.EqualTo(2));
        foreach (var key in new[] { "moe", "dense_flop_matched", "dense_parameter_matched" })
            Assert.That(settings[0].GetProperty(key).GetProperty("features_per_dimension").GetDouble(), Is.GreaterThan(0), key);
        Assert.That(root.GetProperty("verdict").GetArrayLength(), Is.EqualTo(6));
        foreach (var folder in new[] { "moe", "dense_flops", "dense_parameters" })
            Assert.That(File.Exists(Path.Combine(dir, folder, "results.json")), Is.True, folder);
        Assert.That(File.ReadAllText(Path.Combine(dir, "report.html")), Does.Contain("figures/compare_features_per_dimension.svg"));
        Assert.That(output, Does.Contain("matched on active FLOPs (dense width 6)"));
    }
}
