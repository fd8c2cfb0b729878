using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

/// <summary>SynthSAEBench end to end: a small run on the native generator reaches a good MCC and reports the
/// benchmark's metrics in metrics.json, eval and the report; synthesize writes the whole ground truth beside the
/// shards, and factorize and eval on those files measure the same metrics on the generator built again from it.</summary>
public class SynthSaeBenchTests
{
    // 256 features in d = 32: 2 trees of branching 4 and depth 3 (170 features) and 86 free ones; true L0 about 3.3.
    private const string Synthetic = """
        { "kind": "synthsaebench", "n_features": 256, "d": 32, "roots": 2, "p_min": 0.005, "orthogonalization_steps": 20, "seed": 3 }
        """;

    private static string Config(string data) => $$"""
        { "data": {{data}},
          "sae": { "architecture": "topk", "d_sae": 256, "k": 4, "dead_window": 50000 },
          "train": { "tokens": 204800, "batch_size": 512, "lr": 0.003, "warmup_steps": 10, "decay_steps": 100 },
          "eval": { "samples": 20000 } }
        """;

    private static readonly string[] Keys =
        ["mcc", "uniqueness", "precision", "recall", "f1", "accuracy", "explained_variance", "shrinkage", "dead_latents", "l0", "true_l0"];

    private static JsonElement Block(JsonElement metrics) => metrics.GetProperty(Runner.Experiments.Factorization.TruthKey);

    private static readonly Lazy<string> SmallRun = new(() =>
    {
        var dir = TestSupport.TempDirectory("synthsaebench-run");
        var config = Path.Combine(dir, "f.json");
        File.WriteAllText(config, Config($$"""{ "synthetic": {{Synthetic}} }"""));
        var run = Path.Combine(dir, "run");
        var (code, output) = TestSupport.RunCli("factorize", "--config", config, "--out", run, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        return run;
    });

    [Test]
    public void ASmallRunRecoversTheFeaturesAndReportsTheBenchmarksMetrics()
    {
        var run = SmallRun.Value;
        var block = Block(JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))).RootElement);
        TestContext.Out.WriteLine(block.ToString());
        Assert.That(Keys.Where(k => !block.TryGetProperty(k, out _)), Is.Empty, "every metric of the benchmark");
        Assert.That(block.GetProperty("samples").GetInt64(), Is.EqualTo(20000));
        Assert.That(block.GetProperty("samples_from").GetString(), Is.EqualTo("generator"));
        foreach (var key in new[] { "mcc", "uniqueness", "precision", "recall", "f1", "accuracy" })
            Assert.That(block.GetProperty(key).GetDouble(), Is.InRange(0.0, 1.0), key);
        // The recovered dictionary: far above what random directions match (below), reconstructing most variance.
        Assert.That(block.GetProperty("mcc").GetDouble(), Is.GreaterThan(0.55));
        Assert.That(block.GetProperty("f1").GetDouble(), Is.GreaterThan(0.3));
        Assert.That(block.GetProperty("explained_variance").GetDouble(), Is.GreaterThan(0.8));
        Assert.That(block.GetProperty("shrinkage").GetDouble(), Is.InRange(0.8, 1.05));
        Assert.That(block.GetProperty("l0").GetDouble(), Is.InRange(3.5, 4.0), "topk, k = 4 (ReLU may drop a non-positive one)");
        Assert.That(block.GetProperty("dead_latents").GetInt32(), Is.InRange(0, 25));

        // The true L0 of these samples, from the generator itself: the same 20,000 fresh samples.
        using var context = new EngineContext(Backend.Cpu);
        var spec = (SyntheticSpec)FactorizeConfigLoader.LoadFile(Path.Combine(run, "config.json")).Data;
        using var generator = new SynthGenerator(context, spec.Generator);
        var codes = generator.SampleSparse(SynthStream.Evaluate, 0, 20000, default);
        Assert.That(block.GetProperty("true_l0").GetDouble(), Is.EqualTo(codes.RowBegin[^1] / 20000.0).Within(1e-9));

        // Random unit directions as a decoder: the MCC a dictionary gets for nothing in d = 32.
        var random = new Random(1);
        var decoder = Enumerable.Range(0, 256 * 32).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        var chance = SynthMetrics.Mcc(DictionaryMetrics.Cosines(generator.Truth.Features, 256, decoder, 256, 32));
        TestContext.Out.WriteLine($"MCC of random directions: {chance:F3}");
        Assert.That(block.GetProperty("mcc").GetDouble(), Is.GreaterThan(chance + 0.1));

        var report = File.ReadAllText(Path.Combine(run, "report.html"));
        Assert.That(report, Does.Contain("SynthSAEBench").And.Contain("MCC").And.Contain("uniqueness"));
    }

    [Test]
    public void EvalOfTheRunMeasuresTheSameMetricsOnTheSameFreshSamples()
    {
        var run = SmallRun.Value;
        var trained = Block(JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))).RootElement);
        var (code, output) = TestSupport.RunCli("eval", "--dict", run, "--data", Path.Combine(run, "config.json"), "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        var measured = Block(JsonDocument.Parse(output).RootElement);
        foreach (var key in Keys)
            Assert.That(measured.GetProperty(key).GetDouble(), Is.EqualTo(trained.GetProperty(key).GetDouble()).Within(1e-6), key);
    }

    [Test]
    public void SynthesizedFilesCarryTheWholeTruthAndFactorizeOnThemMeasuresIt()
    {
        var dir = TestSupport.TempDirectory("synthsaebench-files");
        var config = Path.Combine(dir, "f.json");
        File.WriteAllText(config, Config($$"""{ "synthetic": {{Synthetic}} }"""));
        var shards = Path.Combine(dir, "shards");
        var (code, output) = TestSupport.RunCli("synthesize", "--config", config, "--out", shards, "--tokens", "204800",
            "--shard-tokens", "65536");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(Directory.GetFiles(shards, "shard_*.npy"), Has.Length.EqualTo(4));

        // The truth beside them is the generator's, whole, with its settings.
        using var context = new EngineContext(Backend.Cpu);
        var spec = (SyntheticSpec)FactorizeConfigLoader.LoadFile(config).Data;
        using var generator = new SynthGenerator(context, spec.Generator);
        var truth = generator.Truth;
        var file = GroundTruthFile.Read(Path.Combine(shards, GroundTruthFile.Name));
        Assert.That(file.Features, Is.EqualTo(truth.Features));
        Assert.That(file.Bias, Is.EqualTo(truth.Bias));
        Assert.That(file.Probabilities, Is.EqualTo(truth.Probability));
        Assert.That(file.FireProbabilities, Is.EqualTo(truth.FireProbability));
        Assert.That(file.Parents, Is.EqualTo(truth.Parent));
        Assert.That(file.Flags, Is.EqualTo(truth.Flags));
        Assert.That(file.MagnitudeMean, Is.EqualTo(truth.MagnitudeMean));
        Assert.That(file.MagnitudeStd, Is.EqualTo(truth.MagnitudeStd));
        Assert.That(file.Metadata[GroundTruthFile.GeneratorKey], Is.EqualTo("synthsaebench"));
        Assert.That(FactorizeConfigLoader.ParseSynthetic(file.Metadata[GroundTruthFile.SyntheticKey], "metadata"), Is.EqualTo(spec));
        Assert.That(file.Parents!.Count(p => p >= 0), Is.EqualTo(2 * (4 + 16 + 64)), "two trees of 85 features");

        // The shards are the training stream in order.
        using (var shard = Runner.Data.NpyShard.Open(Path.Combine(shards, "shard_00001.npy")))
        {
            var read = new float[10 * 32];
            shard.Read(0, read);
            var expected = new float[10 * 32];
            generator.Sample(SynthStream.Train, 65536, expected);
            Assert.That(read, Is.EqualTo(expected));
        }

        // factorize on the files: the truth beside them is found, the generator built again from it, and the metrics
        // measured on fresh samples of it, as on the generator itself.
        var filesConfig = Path.Combine(dir, "files.json");
        File.WriteAllText(filesConfig, Config($$"""{ "files": ["{{shards}}/shard_*.npy"] }"""));
        var run = Path.Combine(dir, "run");
        (code, output) = TestSupport.RunCli("factorize", "--config", filesConfig, "--out", run, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        var block = Block(JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))).RootElement);
        TestContext.Out.WriteLine(block.ToString());
        Assert.That(block.GetProperty("samples_from").GetString(), Is.EqualTo("generator"));
        Assert.That(block.GetProperty("mcc").GetDouble(), Is.GreaterThan(0.55));
        var onGenerator = Block(JsonDocument.Parse(File.ReadAllText(Path.Combine(SmallRun.Value, "metrics.json"))).RootElement);
        Assert.That(block.GetProperty("true_l0").GetDouble(), Is.EqualTo(onGenerator.GetProperty("true_l0").GetDouble()),
            "the same fresh samples");
    }

    [Test]
    public void FilesWithFeaturesButNoSettingsScoreMmcsWithoutTheBlock()
    {
        var dir = TestSupport.TempDirectory("synthsaebench-plain-truth");
        var shards = Path.Combine(dir, "shards");
        Directory.CreateDirectory(shards);
        var random = new Random(2);
        var x = Enumerable.Range(0, 2048 * 8).Select(_ => (float)random.NextDouble()).ToArray();
        Npy.WriteF32(Path.Combine(shards, "a.npy"), x, 8);
        var features = Enumerable.Range(0, 16 * 8).Select(_ => (float)random.NextDouble()).ToArray();
        GroundTruthFile.Write(shards, features, 16, 8, new float[16], new Dictionary<string, string>());
        var config = Path.Combine(dir, "f.json");
        File.WriteAllText(config, $$"""
            { "data": { "files": ["{{shards}}/a.npy"] }, "sae": { "architecture": "topk", "d_sae": 16, "k": 2 },
              "train": { "tokens": 2048, "batch_size": 512 } }
            """);
        var run = Path.Combine(dir, "run");
        var (code, output) = TestSupport.RunCli("factorize", "--config", config, "--out", run, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))).RootElement;
        Assert.That(metrics.TryGetProperty("mmcs", out _), Is.True);
        Assert.That(metrics.TryGetProperty(Runner.Experiments.Factorization.TruthKey, out _), Is.False,
            "no codes are known: no sample-based metrics");
    }
}
