using System.Text.Json;
using NativeEngine.Runner;
using NativeEngine.Runner.Formats;
using Spectre.Console;

namespace NativeEngine.Tests;

/// <summary>The `factorize` verb end to end on small synthetic data.</summary>
public class FactorizeCliTests
{
    private static (int Code, string Output) Run(params string[] args) => TestSupport.RunCli(args);

    private const string Config = """
        { "data": { "synthetic": { "d": 32, "n_features": 64, "seed": 4 } },
          "sae": { "architecture": "topk", "d_sae": 128, "k": 5, "dead_window": 20000 },
          "train": { "tokens": 409600, "batch_size": 512, "lr": 0.002, "warmup_steps": 10, "checkpoint_every": 200 } }
        """;

    [Test]
    public void WritesASaeLensDictionaryMetricsAndReport()
    {
        var dir = TestSupport.TempDirectory("factorize");
        var config = Path.Combine(dir, "f.json");
        File.WriteAllText(config, Config);
        var outDir = Path.Combine(dir, "run");
        var (code, output) = Run("factorize", "--config", config, "--out", outDir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        // The dictionary folder holds what SAELens loads and nothing else; the run's own files sit beside it, and the
        // checkpoint (run state) is gone once the run completed.
        var dictionary = Path.Combine(outDir, "dictionary");
        Assert.That(Directory.GetFileSystemEntries(dictionary).Select(Path.GetFileName).Order(),
            Is.EqualTo(new[] { "cfg.json", "sae_weights.safetensors", "sparsity.safetensors" }));
        Assert.That(Directory.GetFileSystemEntries(outDir).Select(Path.GetFileName).Order(),
            Is.EqualTo(new[] { "config.json", "dictionary", "figures", "metrics.json", "report.html", "run.json" }));
        var sae = SaeLens.Read(dictionary);
        Assert.That((sae.DIn, sae.DSae, sae.Architecture, sae.K), Is.EqualTo((32, 128, NativeEngine.Interop.SaeArchitecture.TopK, (int?)5)));
        var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "metrics.json"))).RootElement;
        Assert.That(metrics.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[]
        {
            "mse", "fvu", "l0", "dead_fraction", "dense_fraction", "mmcs", "matched_cosine", "tokens", "seconds", "tokens_per_second",
        }));
        Assert.That(metrics.GetProperty("mmcs").GetDouble(), Is.GreaterThan(0.9), "800 steps recover the 64 true features");
        Assert.That(metrics.GetProperty("tokens").GetInt64(), Is.EqualTo(409600));
        var (sparsity, _) = SafeTensors.Read(Path.Combine(dictionary, SaeLens.SparsityFile));
        Assert.That(sparsity.Single().Data, Has.Length.EqualTo(128).And.All.LessThanOrEqualTo(0f), "log10 densities");
        var marker = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "run.json"))).RootElement;
        Assert.That((marker.GetProperty("kind").GetString(), marker.GetProperty("status").GetString()), Is.EqualTo(("factorize", "completed")));
        Assert.That(File.ReadAllText(Path.Combine(outDir, "report.html")), Does.Contain("figures/loss.svg"));
    }

    [Test]
    public void RecoveryIsMeasuredOverTrainingAndEndsAtTheFinalMetrics()
    {
        var dir = TestSupport.TempDirectory("factorize-recovery");
        var config = NativeEngine.Runner.Configs.FactorizeConfigLoader.Parse(Config.Replace("409600", "102400"), "f.json", dir);
        using var context = new NativeEngine.Interop.EngineContext(NativeEngine.Interop.Backend.Cpu);
        var result = NativeEngine.Runner.Experiments.FactorizeExperiment.Run(context, config, dir,
            NativeEngine.Runner.Experiments.RunProgress.Silent, CancellationToken.None);
        var measured = result.Curve.Where(c => c.Mmcs is not null).ToList();
        Assert.That(measured, Has.Count.EqualTo(20), "every tenth of 200 curve points");
        Assert.That(measured.Select(c => c.Step), Is.Ordered.Ascending);
        Assert.That(measured[^1].Step, Is.EqualTo(result.TotalSteps));
        Assert.That(measured[^1].Mmcs, Is.EqualTo(result.Metrics!.Mmcs).Within(1e-12), "the last point is the final decoder");
        Assert.That(measured[^1].MatchedCosine, Is.EqualTo(result.Metrics.MatchedCosine).Within(1e-12));
        Assert.That(measured[^1].Mmcs, Is.GreaterThan(measured[0].Mmcs!.Value + 0.1), "recovery improves as it trains");
        Assert.That(measured.All(c => c.MatchedCosine <= c.Mmcs + 1e-12), "one-to-one matching is never above MMCS");
        Assert.That(result.Metrics.BestCosines, Has.Count.EqualTo(64));
        Assert.That(result.Metrics.BestCosines!.Average(), Is.EqualTo(result.Metrics.Mmcs).Within(1e-12), "MMCS is their mean");
        var report = File.ReadAllText(Path.Combine(dir, "report.html"));
        foreach (var figure in new[] { "loss", "l0", "dead", "recovery", "density", "best_cosine" })
            Assert.That(report, Does.Contain($"figures/{figure}.svg"));
    }

    [Test]
    public void ResumeWithoutACheckpointSaysWhatIsMissing()
    {
        var dir = TestSupport.TempDirectory("factorize-resume");
        File.WriteAllText(Path.Combine(dir, "config.json"), Config);
        var (code, output) = Run("factorize", "--resume", dir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("no run.json there, so it is not a run folder"));

        // A completed run has nothing to resume; one whose checkpoint is gone says so.
        var config = Path.Combine(dir, "small.json");
        File.WriteAllText(config, Config.Replace("409600", "10240").Replace("\"checkpoint_every\": 200", "\"checkpoint_every\": 5"));
        var run = Path.Combine(dir, "run");
        Assert.That(Run("factorize", "--config", config, "--out", run, "--backend", "cpu").Code, Is.EqualTo(0));
        (code, output) = Run("factorize", "--resume", run, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("that run completed").And.Contain("nothing to resume"));
        Runner.Experiments.RunFolder.Finish(run, Runner.Experiments.RunFolder.Status.Interrupted);
        (code, output) = Run("factorize", "--resume", run, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("no checkpoint/ there"));
    }

    [Test]
    public void SynthesizedShardsTrainLikeTheGeneratorAndCarryTheirGroundTruth()
    {
        var dir = TestSupport.TempDirectory("synthesize");
        var synthetic = Path.Combine(dir, "synthetic.json");
        File.WriteAllText(synthetic, Config);
        var shards = Path.Combine(dir, "shards");
        var (code, output) = Run("synthesize", "--config", synthetic, "--out", shards, "--tokens", "100000", "--shard-tokens", "30000");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(Directory.GetFiles(shards, "shard_*.npy"), Has.Length.EqualTo(4), "100000 tokens in shards of 30000");
        var files = Path.Combine(dir, "files.json");
        File.WriteAllText(files, Config.Replace("""{ "synthetic": { "d": 32, "n_features": 64, "seed": 4 } }""",
            $$"""{ "files": [{{JsonSerializer.Serialize(Path.Combine(shards, "shard_*.npy"))}}], "format": "npy" }"""));
        var outDir = Path.Combine(dir, "run");
        (code, output) = Run("factorize", "--config", files, "--out", outDir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "metrics.json"))).RootElement;
        Assert.That(metrics.GetProperty("mmcs").GetDouble(), Is.GreaterThan(0.9),
            "the ground truth written beside the shards scores the dictionary trained on them");

        (code, output) = Run("synthesize", "--config", files, "--out", Path.Combine(dir, "again"), "--tokens", "10");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("\"data\" must be {\"synthetic\": {...}} to synthesize"));
    }

    [Test]
    public void MissingShardsAreNamed()
    {
        var dir = TestSupport.TempDirectory("factorize-files");
        var config = Path.Combine(dir, "f.json");
        File.WriteAllText(config, """
            { "data": { "files": ["shards/*.npy"], "format": "npy" }, "sae": { "architecture": "topk", "d_sae": 64, "k": 4 } }
            """);
        var (code, output) = Run("factorize", "--config", config, "--out", Path.Combine(dir, "run"), "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), output);
        Assert.That(output, Does.Contain("shards/*.npy"));
    }

    [Test]
    public void BenchFactorizePrintsTokensPerSecondWithTheMachine()
    {
        var (code, output) = Run("bench", "factorize", "--backend", "cpu", "--seconds", "0.2", "--peer", "none",
            "--d-in", "16", "--d-sae", "64", "--top-k", "4", "--batch", "128", "--gemm-size", "64");
        Assert.That(code, Is.EqualTo(0), output);
        var root = JsonDocument.Parse(output).RootElement;
        Assert.That(root.GetProperty("benchmark").GetString(), Is.EqualTo("factorize"));
        var row = root.GetProperty("results").EnumerateArray().Single();
        Assert.That(row.GetProperty("workload").GetProperty("d_sae").GetInt32(), Is.EqualTo(64));
        Assert.That(row.GetProperty("unit").GetString(), Is.EqualTo("tokens/s"));
        Assert.That(row.GetProperty("nativeengine").GetProperty("throughput").GetDouble(), Is.GreaterThan(0));
        Assert.That(row.GetProperty("flops").GetProperty("per_unit").GetDouble(), Is.EqualTo(2.0 * 16 * 64 + 8.0 * 4 * 16));
        Assert.That(root.GetProperty("machine").GetProperty("cpu").GetString(), Is.Not.Empty);
        Assert.That(row.GetProperty("peer").GetProperty("status").GetString(), Does.StartWith("not run"));
    }

    // A factorize run folder; eval, encode and analyze take it or its dictionary/ alike.
    private static string TrainSmallDictionary(string dir)
    {
        var config = Path.Combine(dir, "f.json");
        File.WriteAllText(config, Config.Replace("409600", "102400"));
        var outDir = Path.Combine(dir, "dict");
        var (code, output) = Run("factorize", "--config", config, "--out", outDir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        return outDir;
    }

    [Test]
    public void EvalMeasuresADictionaryOnFreshActivations()
    {
        var dir = TestSupport.TempDirectory("eval");
        var dict = TrainSmallDictionary(dir);
        var data = Path.Combine(dir, "data.json");
        File.WriteAllText(data, """{ "data": { "synthetic": { "d": 32, "n_features": 64, "seed": 4 } }, "batch_size": 512, "tokens": 4096 }""");
        var (code, output) = Run("eval", "--dict", dict, "--data", data, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        var metrics = JsonDocument.Parse(output).RootElement;
        var trained = JsonDocument.Parse(File.ReadAllText(Path.Combine(dict, "metrics.json"))).RootElement;
        Assert.That(metrics.GetProperty("seconds").GetDouble(), Is.GreaterThan(0), "the measurement's own time");
        Assert.That(metrics.GetProperty("tokens_per_second").GetDouble(), Is.GreaterThan(0));
        (code, output) = Run("eval", "--dict", Path.Combine(dict, "dictionary"), "--data", data, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(JsonDocument.Parse(output).RootElement.GetProperty("mmcs").GetDouble(),
            Is.EqualTo(metrics.GetProperty("mmcs").GetDouble()), "the run folder and its dictionary/ are the same dictionary");
        Assert.That(metrics.GetProperty("tokens").GetInt64(), Is.EqualTo(4096));
        Assert.That(metrics.GetProperty("mmcs").GetDouble(), Is.EqualTo(trained.GetProperty("mmcs").GetDouble()).Within(1e-6),
            "the same dictionary against the same ground truth");
        Assert.That(metrics.GetProperty("fvu").GetDouble(), Is.EqualTo(trained.GetProperty("fvu").GetDouble()).Within(0.05));
        File.WriteAllText(data, """{ "data": { "synthetic": { "d": 16, "n_features": 64 } } }""");
        (code, output) = Run("eval", "--dict", dict, "--data", data, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("activations of d = 16; the dictionary in").And.Contain("has d_in = 32"));
    }

    [TestCase("sae", 5)]
    [TestCase("omp", 5)]
    [TestCase("fista", 8)]
    public void EncodeWritesSparseCodesThatReconstructTheInput(string encoder, int slots)
    {
        var dir = TestSupport.TempDirectory("encode");
        var dict = TrainSmallDictionary(dir);
        var data = Path.Combine(dir, "data.json");
        File.WriteAllText(data, """{ "data": { "synthetic": { "d": 32, "n_features": 64, "seed": 4 } }, "batch_size": 256, "tokens": 256 }""");
        var prefix = Path.Combine(dir, "codes");
        var (code, output) = Run("encode", "--dict", dict, "--data", data, "--out", prefix, "--encoder", encoder,
            "--slots", slots.ToString(), "--lambda", "0.01", "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        using var indexShard = Runner.Data.NpyShard.Open(prefix + "_values.npy");
        Assert.That((indexShard.Tokens, indexShard.D), Is.EqualTo((256L, slots)));
        var values = new float[256 * slots];
        indexShard.Read(0, values);
        var indices = ReadInt32Npy(prefix + "_indices.npy", 256 * slots);
        Assert.That(indices, Is.All.InRange(-1, 127));
        var sae = SaeLens.Read(Path.Combine(dict, "dictionary"));
        using var synthetic = new Runner.Data.SyntheticActivations(new Runner.Data.SyntheticOptions(32, 64, Seed: 4, BatchTokens: 256, Prefetch: false));
        var x = synthetic.Next().ToArray();
        var nativeXHat = new float[256 * 32];
        if (encoder == "sae")
        {
            using var context = new NativeEngine.Interop.EngineContext(NativeEngine.Interop.Backend.Cpu);
            using var native = Runner.Experiments.DictionaryEvaluation.Load(context, sae, 256);
            native.Evaluate(x, nativeXHat, default);
        }
        double error = 0, energy = 0, worstAgainstNative = 0;
        for (var t = 0; t < 256; t++)
        {
            var xHat = (float[])sae.BDec.Clone();
            for (var s = 0; s < slots; s++)
            {
                var j = indices[t * slots + s];
                if (j < 0) continue;
                for (var i = 0; i < 32; i++) xHat[i] += values[t * slots + s] * sae.WDec[j * 32 + i];
            }
            for (var i = 0; i < 32; i++)
            {
                error += Math.Pow(xHat[i] - x[t * 32 + i], 2);
                energy += Math.Pow(x[t * 32 + i], 2);
                worstAgainstNative = Math.Max(worstAgainstNative, Math.Abs(xHat[i] - nativeXHat[t * 32 + i]));
            }
        }
        TestContext.Out.WriteLine($"{encoder}: relative reconstruction error {error / energy:F4}");
        if (encoder == "sae")
            Assert.That(worstAgainstNative, Is.LessThan(1e-4), "the written codes decode to the engine's own reconstruction");
        else
            Assert.That(error / energy, Is.LessThan(0.2), "the codes reconstruct the activations");
    }

    private static int[] ReadInt32Npy(string path, int count)
    {
        var bytes = File.ReadAllBytes(path);
        var headerLength = BitConverter.ToUInt16(bytes, 8) + 10;
        Assert.That(System.Text.Encoding.ASCII.GetString(bytes, 10, headerLength - 10), Does.Contain("'<i4'"));
        return Enumerable.Range(0, count).Select(k => BitConverter.ToInt32(bytes, headerLength + 4 * k)).ToArray();
    }

    /// <summary>Stops a run (as a signal does) when its progress reaches a step.</summary>
    internal sealed class StopAt(long step, CancellationTokenSource stop) : Runner.Experiments.IRunProgress
    {
        public void Report(string phase, long done, long total)
        {
            if (done >= step) stop.Cancel();
        }
        public void Note(string message) { }
        public void Warn(string message) { }
    }

    internal const string ResumableConfig = """
        { "data": { "synthetic": { "d": 32, "n_features": 64, "seed": 9 } },
          "sae": { "architecture": "topk", "d_sae": 96, "k": 4, "dead_window": 5000 },
          "train": { "tokens": 51200, "batch_size": 512, "lr": 0.002, "warmup_steps": 5, "decay_steps": 20, "checkpoint_every": 30 } }
        """;

    /// <summary>Runs ResumableConfig into <paramref name="outDir"/> and stops it at step 50 (checkpoint written there).</summary>
    internal static void InterruptAt50(string configPath, string outDir)
    {
        using var stop = new CancellationTokenSource();
        using var context = new NativeEngine.Interop.EngineContext(NativeEngine.Interop.Backend.Cpu);
        var config = Runner.Configs.FactorizeConfigLoader.LoadFile(configPath);
        var result = Runner.Experiments.FactorizeExperiment.Run(context, config, outDir, new StopAt(50, stop), stop.Token);
        Assert.That((result.Completed, result.Steps), Is.EqualTo((false, 50L)));
    }

    [Test]
    public void AnInterruptedRunResumedEqualsTheUnbrokenRun()
    {
        var dir = TestSupport.TempDirectory("resume");
        var configPath = Path.Combine(dir, "full.json");
        File.WriteAllText(configPath, ResumableConfig);
        var unbroken = Path.Combine(dir, "unbroken");
        Assert.That(Run("factorize", "--config", configPath, "--out", unbroken, "--backend", "cpu").Code, Is.EqualTo(0));

        var resumed = Path.Combine(dir, "resumed");
        InterruptAt50(configPath, resumed);
        Assert.That(Directory.Exists(Path.Combine(resumed, "checkpoint")), Is.True);
        Assert.That(File.ReadAllText(Path.Combine(resumed, "run.json")), Does.Contain("\"interrupted\""));
        var progress = JsonDocument.Parse(File.ReadAllText(Path.Combine(resumed, "checkpoint", "progress.json"))).RootElement;
        Assert.That(progress.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[] { "step", "tokens", "seconds", "scale", "config_sha256", "curve" }),
            "snake_case, as every JSON file");
        Assert.That(progress.GetProperty("curve")[0].EnumerateObject().Select(p => p.Name),
            Is.EqualTo(new[] { "step", "tokens", "mse", "fvu", "l0", "auxk", "dead" }));

        // A new run into the unfinished folder would lose it: refused, naming --resume.
        var (code, output) = Run("factorize", "--config", configPath, "--out", resumed, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("unfinished factorize run").And.Contain("--resume"));

        (code, output) = Run("factorize", "--resume", resumed, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("resuming at step 50 of 100"));
        Assert.That(Directory.Exists(Path.Combine(resumed, "checkpoint")), Is.False, "the checkpoint goes when the run completes");

        var a = SafeTensors.Read(Path.Combine(unbroken, "dictionary", SaeLens.WeightsFile)).Tensors;
        var b = SafeTensors.Read(Path.Combine(resumed, "dictionary", SaeLens.WeightsFile)).Tensors;
        foreach (var name in new[] { "W_enc", "b_enc", "W_dec", "b_dec" })
            Assert.That(b.Single(t => t.Name == name).Data, Is.EqualTo(a.Single(t => t.Name == name).Data), name);
        var ma = JsonDocument.Parse(File.ReadAllText(Path.Combine(unbroken, "metrics.json"))).RootElement;
        var mb = JsonDocument.Parse(File.ReadAllText(Path.Combine(resumed, "metrics.json"))).RootElement;
        foreach (var key in new[] { "mse", "fvu", "l0", "mmcs", "tokens" })
            Assert.That(mb.GetProperty(key).GetRawText(), Is.EqualTo(ma.GetProperty(key).GetRawText()), key);
    }
}
