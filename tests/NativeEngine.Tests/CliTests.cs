using System.Text.Json;
using NativeEngine.Runner;
using Spectre.Console;

namespace NativeEngine.Tests;

/// <summary>The runner end to end, as a user calls it: verbs, run folders, results.json schema, error exits.</summary>
public class CliTests
{
    private static (int Code, string Output) Run(params string[] args) => TestSupport.RunCli(args);

    private static string WriteConfig(string directory, string json)
    {
        var path = Path.Combine(directory, "config.json");
        File.WriteAllText(path, json);
        return path;
    }

    private const string SmallConfig = """
        { "model": "relu_output", "n_features": 6, "n_hidden": 3, "n_instances": 2, "importance": 0.8,
          "feature_probability": [1.0, 0.1], "batch_size": 128, "steps": 40 }
        """;

    [Test]
    public void ToyWritesTheRunFolderWithTheExactResultsSchema()
    {
        var dir = TestSupport.TempDirectory("toy");
        var outDir = Path.Combine(dir, "run");
        var (code, output) = Run("toy", "--config", WriteConfig(dir, SmallConfig), "--out", outDir, "--backend", "cpu", "--seed", "5");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("relu_output n=6 m=3"));

        using var results = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "results.json")));
        var root = results.RootElement;
        Assert.That(root.EnumerateObject().Select(p => p.Name),
            Is.EqualTo(new[] { "model", "backend", "device", "steps", "seconds", "instances" }));
        Assert.That(root.GetProperty("model").GetString(), Is.EqualTo("relu_output"));
        Assert.That(root.GetProperty("backend").GetString(), Is.EqualTo("cpu"));
        Assert.That(root.GetProperty("steps").GetInt64(), Is.EqualTo(40));
        Assert.That(root.GetProperty("seconds").GetDouble(), Is.GreaterThan(0));
        var instances = root.GetProperty("instances").EnumerateArray().ToList();
        Assert.That(instances, Has.Count.EqualTo(2));
        foreach (var instance in instances)
        {
            Assert.That(instance.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[]
            {
                "feature_probability", "importance", "loss", "W", "b", "feature_norm", "superposition",
                "dimensionality", "dimensions_per_feature", "l1", "l1_penalty",
            }));
            foreach (var key in new[] { "feature_probability", "importance", "b", "feature_norm", "superposition", "dimensionality" })
                Assert.That(instance.GetProperty(key).GetArrayLength(), Is.EqualTo(6), key);
            var w = instance.GetProperty("W");
            Assert.That(w.GetArrayLength(), Is.EqualTo(6));
            Assert.That(w.EnumerateArray().All(row => row.GetArrayLength() == 3), Is.True);
            Assert.That(instance.GetProperty("loss").GetDouble(), Is.GreaterThan(0));
            // feature_norm is consistent with W.
            var row0 = w[0].EnumerateArray().Select(v => v.GetDouble()).ToArray();
            Assert.That(instance.GetProperty("feature_norm")[0].GetDouble(),
                Is.EqualTo(Math.Sqrt(row0.Sum(v => v * v))).Within(1e-5));
        }
        Assert.That(instances[1].GetProperty("feature_probability")[0].GetDouble(), Is.EqualTo(0.1).Within(1e-7));
        Assert.That(instances[0].GetProperty("importance")[1].GetDouble(), Is.EqualTo(0.8).Within(1e-7));

        var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "config.json"))).RootElement;
        Assert.That(config.GetProperty("seed").GetUInt64(), Is.EqualTo(5UL), "the resolved config records the --seed override");
        var (tensors, _) = Runner.Formats.SafeTensors.Read(Path.Combine(outDir, "weights.safetensors"));
        Assert.That(tensors.Single(t => t.Name == "W").Shape, Is.EqualTo(new long[] { 2, 6, 3 }));
        Assert.That(tensors.Single(t => t.Name == "W").Data[0], Is.EqualTo((float)instances[0].GetProperty("W")[0][0].GetDouble()));
    }

    [Test]
    public void BadConfigExitsWithAMessageAndTrainsNothing()
    {
        var dir = TestSupport.TempDirectory("bad");
        var outDir = Path.Combine(dir, "run");
        var (code, output) = Run("toy", "--config", WriteConfig(dir, SmallConfig.Replace("\"steps\": 40", "\"steps\": 40, \"momentum\": 0.9")), "--out", outDir);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("config error").And.Contain("unknown key \"momentum\""));
        Assert.That(Directory.Exists(outDir), Is.False);
    }

    [Test]
    public void MissingConfigFileIsNamed()
    {
        var (code, output) = Run("toy", "--config", "/nonexistent/c.json", "--out", TestSupport.TempDirectory("x"));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("/nonexistent/c.json does not exist"));
    }

    [Test]
    public void UnknownBackendIsNamed()
    {
        var (code, output) = Run("info", "--backend", "tpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--backend is \"tpu\"; valid: auto, cpu, cuda"));
    }

    [Test]
    public void InfoNamesVersionBackendsAndDevice()
    {
        var (code, output) = Run("info", "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("NativeEngine 0.2.0").And.Contain("backends compiled in: cpu")
            .And.Contain("backend chosen: cpu").And.Contain("cpu threads:").And.Contain("memory:"));
    }

    [Test]
    public void BenchToyPrintsJsonWithMachineBackendAndPeer()
    {
        var dir = TestSupport.TempDirectory("bench");
        var file = Path.Combine(dir, "bench.json");
        var (code, output) = Run("bench", "toy", "--backend", "cpu", "--seconds", "0.2", "--peer", "none", "--gemm-size", "64",
            "--out", file);
        Assert.That(code, Is.EqualTo(0), output);
        var root = JsonDocument.Parse(File.ReadAllText(file)).RootElement;
        Assert.That(root.GetProperty("benchmark").GetString(), Is.EqualTo("toy"));
        Assert.That(root.GetProperty("machine").GetProperty("logical_cores").GetInt32(), Is.EqualTo(Environment.ProcessorCount));
        var row = root.GetProperty("results")[0];
        Assert.That(row.GetProperty("nativeengine").GetProperty("backend").GetString(), Is.EqualTo("cpu"));
        Assert.That(row.GetProperty("nativeengine").GetProperty("throughput").GetDouble(), Is.GreaterThan(0));
        Assert.That(row.GetProperty("unit").GetString(), Is.EqualTo("steps/s"));
        Assert.That(row.GetProperty("workload").GetProperty("n_features").GetInt32(), Is.EqualTo(100));
        Assert.That(row.GetProperty("peer").GetProperty("status").GetString(), Does.StartWith("not run"));
    }

    [Test]
    public void DemoConfigsAreEmbeddedAndStartWithThePapersIntro()
    {
        var c = Runner.Experiments.DemoTour.LoadDemoConfig("intro");
        Assert.That((c.NFeatures, c.NHidden), Is.EqualTo((5, 2)));
        Assert.That(c.Importance, Is.EqualTo(new[] { 1f, 0.9f, 0.81f, 0.729f, 0.6561f }).Within(1e-6));
        Assert.That(c.Settings.First().FeatureProbability, Is.EqualTo(1.0));
        Assert.That(c.Settings.Last().FeatureProbability, Is.EqualTo(0.05).Within(1e-7));
        foreach (var (name, _) in Runner.Experiments.DemoTour.Experiments)
            Assert.That(Runner.Experiments.DemoTour.LoadDemoConfig(name).Steps, Is.GreaterThan(0), name);
        Assert.That(Runner.Experiments.DemoTour.LoadDemoMoeConfig().NExperts, Is.GreaterThan(1));
        var hybrid = Runner.Experiments.DemoTour.LoadDemoHybridConfig();
        Assert.That(hybrid.NHidden % hybrid.NExperts, Is.EqualTo(0), "the demo's MoE has the dense models' hidden size");
    }

    [Test]
    public void SweepWritesSettingsFiguresAndReport()
    {
        var dir = TestSupport.TempDirectory("sweep");
        var outDir = Path.Combine(dir, "run");
        var config = WriteConfig(dir, """
            { "model": "relu_hidden", "n_features": 4, "n_hidden": 2, "importance": 0.9, "batch_size": 64, "steps": 30,
              "sweep": { "feature_probability": [1.0, 0.1], "importance_ratio": [0.5, 2], "repeats": 3 } }
            """);
        var (code, output) = Run("toy", "--config", config, "--out", outDir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        var root = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "results.json"))).RootElement;
        Assert.That(root.GetProperty("instances").GetArrayLength(), Is.EqualTo(12), "every trained instance is kept");
        var settings = root.GetProperty("settings").EnumerateArray().ToList();
        Assert.That(settings, Has.Count.EqualTo(4));
        Assert.That(settings[0].EnumerateObject().Select(p => p.Name), Is.EqualTo(new[]
        {
            "feature_probability", "importance_ratio", "l1", "instances", "best_instance", "loss_best", "loss_median",
        }));
        foreach (var setting in settings)
        {
            var members = setting.GetProperty("instances").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var losses = members.Select(k => root.GetProperty("instances")[k].GetProperty("loss").GetDouble()).ToArray();
            var best = setting.GetProperty("best_instance").GetInt32();
            Assert.That(members, Does.Contain(best));
            Assert.That(setting.GetProperty("loss_best").GetDouble(), Is.EqualTo(losses.Min()).Within(1e-6), "no L1: best = lowest loss");
            Assert.That(setting.GetProperty("loss_median").GetDouble(), Is.EqualTo(losses.Order().ElementAt(1)).Within(1e-6));
        }
        // The ratio multiplies the last feature's importance only.
        var last = root.GetProperty("instances")[3].GetProperty("importance");
        Assert.That(last[3].GetDouble(), Is.EqualTo(2 * Math.Pow(0.9, 3)).Within(1e-6));
        Assert.That(last[0].GetDouble(), Is.EqualTo(1.0));
        var neurons = root.GetProperty("instances")[0].GetProperty("features_per_neuron");
        Assert.That(neurons.GetArrayLength(), Is.EqualTo(2));

        var figures = Directory.GetFiles(Path.Combine(outDir, "figures"), "*.svg").Select(Path.GetFileName).ToArray();
        Assert.That(figures, Does.Contain("phase.svg"));
        Assert.That(figures.Count(f => f!.EndsWith("_neurons.svg")), Is.EqualTo(4), "one neuron stack per setting's best instance");
        Assert.That(figures.Count(f => f!.EndsWith("_arrows.svg")), Is.EqualTo(4), "m = 2: arrows in the plane");
        var html = File.ReadAllText(Path.Combine(outDir, "report.html"));
        foreach (var figure in figures) Assert.That(html, Does.Contain($"figures/{figure}"));
        Assert.That(output, Does.Contain("report.html"));
    }

    [Test]
    public void UntiedModelWritesWOutAsHiddenByOutput()
    {
        var dir = TestSupport.TempDirectory("abs");
        var outDir = Path.Combine(dir, "run");
        var config = WriteConfig(dir, """
            { "model": "abs_value", "n_features": 3, "n_hidden": 6, "n_instances": 1, "feature_probability": 0.5,
              "batch_size": 32, "steps": 10 }
            """);
        var (code, output) = Run("toy", "--config", config, "--out", outDir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        var instance = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "results.json"))).RootElement
            .GetProperty("instances")[0];
        var wOut = instance.GetProperty("W_out");
        Assert.That(wOut.GetArrayLength(), Is.EqualTo(6), "W_out is [m][n]");
        Assert.That(wOut[0].GetArrayLength(), Is.EqualTo(3));
        Assert.That(instance.GetProperty("W").GetArrayLength(), Is.EqualTo(3), "W is [n][m]");
        var (tensors, _) = Runner.Formats.SafeTensors.Read(Path.Combine(outDir, "weights.safetensors"));
        var stored = tensors.Single(t => t.Name == "W_out");
        Assert.That(stored.Shape, Is.EqualTo(new long[] { 1, 3, 6 }));
        // results.json's W_out[j][i] is the weight from hidden j to output i: stored row i, column j.
        Assert.That((float)wOut[4][1].GetDouble(), Is.EqualTo(stored.Data[1 * 6 + 4]));
    }

    private static IEnumerable<string> PaperConfigs() =>
        Directory.GetFiles(Path.Combine(TestSupport.RepositoryRoot(), "configs", "paper"), "*.json")
            .Select(Path.GetFileName).Order()!;

    [TestCaseSource(nameof(PaperConfigs))]
    public void PaperConfigRunsAndWritesItsFigures(string file)
    {
        var dir = TestSupport.TempDirectory("paper");
        var config = Path.Combine(TestSupport.RepositoryRoot(), "configs", "paper", file);
        // A few steps: the config, the trainer, every figure and the report, not the science (PaperTests).
        var (code, output) = Run("toy", "--config", config, "--out", dir, "--backend", "cpu", "--steps", "5");
        Assert.That(code, Is.EqualTo(0), output);
        var figures = Directory.GetFiles(Path.Combine(dir, "figures"), "*.svg");
        Assert.That(figures, Is.Not.Empty);
        foreach (var figure in figures) Assert.DoesNotThrow(() => System.Xml.Linq.XDocument.Load(figure), figure);
        Assert.That(File.ReadAllText(Path.Combine(dir, "report.html")), Does.Contain("<img"));
    }
}
