using System.Text.Json;
using NativeEngine.Runner;
using NativeEngine.Runner.Formats;
using Spectre.Console;

namespace NativeEngine.Tests;

/// <summary>The `factorize` verb end to end on small synthetic data.</summary>
public class FactorizeCliTests
{
    private static (int Code, string Output) Run(params string[] args)
    {
        var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer), Ansi = AnsiSupport.No, Interactive = InteractionSupport.No,
        });
        console.Profile.Width = 200;
        return (Program.Run(args, console), writer.ToString());
    }

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
        var sae = SaeLens.Read(outDir);
        Assert.That((sae.DIn, sae.DSae, sae.Architecture, sae.K), Is.EqualTo((32, 128, "topk", (int?)5)));
        var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "metrics.json"))).RootElement;
        Assert.That(metrics.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[]
        {
            "mse", "fvu", "l0", "dead_fraction", "dense_fraction", "mmcs", "matched_cosine", "tokens", "seconds", "tokens_per_second",
        }));
        Assert.That(metrics.GetProperty("mmcs").GetDouble(), Is.GreaterThan(0.9), "800 steps recover the 64 true features");
        Assert.That(metrics.GetProperty("tokens").GetInt64(), Is.EqualTo(409600));
        var (sparsity, _) = SafeTensors.Read(Path.Combine(outDir, SaeLens.SparsityFile));
        Assert.That(sparsity.Single().Data, Has.Length.EqualTo(128).And.All.LessThanOrEqualTo(0f), "log10 densities");
        Assert.That(Directory.Exists(Path.Combine(outDir, "checkpoint")), Is.True);
        Assert.That(File.ReadAllText(Path.Combine(outDir, "report.html")), Does.Contain("figures/loss.svg"));
    }

    [Test]
    public void ResumeWithoutACheckpointSaysWhatIsMissing()
    {
        var dir = TestSupport.TempDirectory("factorize-resume");
        File.WriteAllText(Path.Combine(dir, "config.json"), Config);
        var (code, output) = Run("factorize", "--resume", dir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("no checkpoint/ there"));
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
            "--d-in", "16", "--d-sae", "64", "--top-k", "4", "--batch", "128");
        Assert.That(code, Is.EqualTo(0), output);
        var root = JsonDocument.Parse(output).RootElement;
        Assert.That(root.GetProperty("benchmark").GetString(), Is.EqualTo("factorize"));
        Assert.That(root.GetProperty("workload").GetProperty("d_sae").GetInt32(), Is.EqualTo(64));
        Assert.That(root.GetProperty("nativeengine").GetProperty("tokens_per_second").GetDouble(), Is.GreaterThan(0));
        Assert.That(root.GetProperty("machine").GetProperty("cpu").GetString(), Is.Not.Empty);
        Assert.That(root.GetProperty("peer").GetProperty("status").GetString(), Does.StartWith("not run"));
    }
}
