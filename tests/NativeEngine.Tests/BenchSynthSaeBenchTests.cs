using System.Diagnostics;
using System.Text.Json;
using NativeEngine.Runner.Bench;

namespace NativeEngine.Tests;

/// <summary>`bench synthsaebench`: its options are checked up front with messages naming them; a tiny protocol run
/// writes the shards once, trains each architecture on them, measures each on fresh samples and writes the JSON and
/// the paper's table, with the architectures the engine cannot create as rows that say so.</summary>
public class BenchSynthSaeBenchTests
{
    private static (int Code, string Output) Run(params string[] args) => TestSupport.RunCli(args);

    // 96 features in d = 24: two trees of branching 4 and depth 2, the rest free; builds in milliseconds.
    private const string TinyConfig = """
        { "data": { "synthetic": { "kind": "synthsaebench", "n_features": 96, "d": 24, "roots": 2, "depth": 2,
                                   "p_min": 0.01, "orthogonalization_steps": 10, "seed": 5 } },
          "sae": { "architecture": "batchtopk", "d_sae": 48, "k": 4 } }
        """;

    private static string WriteTinyConfig(string dir)
    {
        var path = Path.Combine(dir, "tiny.json");
        File.WriteAllText(path, TinyConfig);
        return path;
    }

    [Test]
    public void BadOptionsAreNamed()
    {
        var (code, output) = Run("bench", "synthsaebench", "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("bench synthsaebench needs --samples N"));
        (code, output) = Run("bench", "synthsaebench", "--samples", "4096", "--architectures", "batchtopk,gated");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--architectures has \"gated\"; valid: batchtopk, matryoshka_batchtopk, matching_pursuit, relu, jumprelu"));
        (code, output) = Run("bench", "synthsaebench", "--samples", "4096", "--architectures", "relu,relu");
        Assert.That(output, Does.Contain("--architectures names \"relu\" twice"));
        (code, output) = Run("bench", "synthsaebench", "--samples", "4096", "--l0", "0");
        Assert.That(output, Does.Contain("--l0 is 0; valid: 1..4096"));
        (code, output) = Run("bench", "synthsaebench", "--samples", "100", "--batch", "1024");
        Assert.That(output, Does.Contain("--samples is 100; valid: >= --batch (1024)"));
        (code, output) = Run("bench", "synthsaebench", "--samples", "4096", "--data-samples", "0");
        Assert.That(output, Does.Contain("--data-samples is 0; valid: >= 1"));
        (code, output) = Run("bench", "synthsaebench", "--samples", "4096", "--dtype", "float16");
        Assert.That(output, Does.Contain("--dtype is \"float16\"; valid: bfloat16, float32"));
        (code, output) = Run("bench", "synthsaebench", "--samples", "4096", "--top-k", "3");
        Assert.That(output, Does.Contain("bench synthsaebench takes --samples"));
        (code, output) = Run("bench", "synthsaebench", "--samples", "4096", "--peer", "always");
        Assert.That(output, Does.Contain("--peer is \"always\"; valid: auto, none"));
        (code, output) = Run("bench", "synthsaebench", "--samples", "4096", "--config", "no-such.json");
        Assert.That(output, Does.Contain("--config no-such.json does not exist"));
        (code, output) = Run("bench", "toy", "--samples", "4096");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("apply to bench synthsaebench only"));
    }

    [Test]
    public void ATinyProtocolRunMeasuresEachArchitectureAndPrintsThePapersTable()
    {
        var dir = TestSupport.TempDirectory("bench-synthsaebench");
        var config = WriteTinyConfig(dir);
        var work = Path.Combine(dir, "work");
        var file = Path.Combine(dir, "result.json");
        string[] Args(string architectures) =>
        [
            "bench", "synthsaebench", "--config", config, "--samples", "8192", "--data-samples", "4096", "--batch", "256",
            "--d-sae", "48", "--l0", "4", "--eval-samples", "3000", "--architectures", architectures, "--work", work,
            "--out", file, "--backend", "cpu", "--peer", "none",
        ];
        var (code, output) = Run(Args("batchtopk,matryoshka_batchtopk,relu"));
        Assert.That(code, Is.EqualTo(0), output);

        using var document = JsonDocument.Parse(File.ReadAllText(file));
        var root = document.RootElement;
        Assert.That(root.GetProperty("benchmark").GetString(), Is.EqualTo("synthsaebench"));
        Assert.That(root.GetProperty("backend").GetString(), Is.EqualTo("cpu"));
        Assert.That(root.GetProperty("machine").GetProperty("logical_cores").GetInt32(), Is.GreaterThan(0));
        var protocol = root.GetProperty("protocol");
        Assert.That(protocol.GetProperty("samples").GetInt64(), Is.EqualTo(8192));
        Assert.That(protocol.GetProperty("epochs").GetDouble(), Is.EqualTo(2.0));
        Assert.That(protocol.GetProperty("shard_dtype").GetString(), Is.EqualTo("bfloat16"));
        // The shards: 4096 samples of 24 bfloat16 values, written once.
        Assert.That(root.GetProperty("data").GetProperty("bytes").GetInt64(), Is.EqualTo(4096L * 24 * 2));
        Assert.That(root.GetProperty("data").GetProperty("reused").GetBoolean(), Is.False);

        var rows = root.GetProperty("results").EnumerateArray().ToDictionary(r => r.GetProperty("architecture").GetString()!);
        Assert.That(rows.Keys, Is.EqualTo(new[] { "batchtopk", "matryoshka_batchtopk", "relu" }));
        foreach (var name in new[] { "batchtopk", "relu" })
        {
            var row = rows[name];
            Assert.That(row.GetProperty("status").GetString(), Is.EqualTo("ok"), name);
            var m = row.GetProperty("metrics");
            Assert.That(m.GetProperty("samples").GetInt64(), Is.EqualTo(3000));
            Assert.That(m.GetProperty("mcc").GetDouble(), Is.InRange(0.0, 1.0));
            Assert.That(m.GetProperty("f1").GetDouble(), Is.InRange(0.0, 1.0));
            Assert.That(m.GetProperty("true_l0").GetDouble(), Is.GreaterThan(0));
            // Better than nothing: a trained dictionary explains part of the variance.
            Assert.That(m.GetProperty("explained_variance").GetDouble(), Is.GreaterThan(0.1), name);
        }
        // BatchTopK keeps k codes per sample on average; at inference its threshold gives about as many.
        Assert.That(rows["batchtopk"].GetProperty("metrics").GetProperty("l0").GetDouble(), Is.InRange(1.0, 16.0));
        if (rows["matryoshka_batchtopk"].GetProperty("status").GetString() != "ok")
            Assert.That(rows["matryoshka_batchtopk"].GetProperty("status").GetString(),
                Does.StartWith("not supported by this engine").And.Contain("matryoshka_batchtopk"));

        // The table: one row per architecture beside the paper's numbers.
        Assert.That(output, Does.Contain("| architecture | F1 / MCC (NativeEngine) |"));
        Assert.That(output, Does.Contain("| BatchTopK | "));
        Assert.That(output, Does.Contain("0.732 / 0.757"));
        Assert.That(output, Does.Contain("| Matryoshka BatchTopK | "));
        Assert.That(output, Does.Contain("0.556 / 0.604"));

        // The same samples again: the shards are reused, not written anew.
        (code, output) = Run(Args("batchtopk"));
        Assert.That(code, Is.EqualTo(0), output);
        using (var again = JsonDocument.Parse(File.ReadAllText(file)))
            Assert.That(again.RootElement.GetProperty("data").GetProperty("reused").GetBoolean(), Is.True);

        // Other settings write the folder anew: no shard of the earlier samples is left to be read with the new ones.
        var fewer = Args("batchtopk");
        fewer[Array.IndexOf(fewer, "--data-samples") + 1] = "2048";
        (code, output) = Run(fewer);
        Assert.That(code, Is.EqualTo(0), output);
        using (var third = JsonDocument.Parse(File.ReadAllText(file)))
        {
            Assert.That(third.RootElement.GetProperty("data").GetProperty("reused").GetBoolean(), Is.False);
            Assert.That(third.RootElement.GetProperty("data").GetProperty("bytes").GetInt64(), Is.EqualTo(2048L * 24 * 2));
        }
        Assert.That(Directory.GetFiles(Path.Combine(work, "data"), "shard_*").Length, Is.EqualTo(1));

        // A --data folder holding something else is refused, not written into.
        var other = Path.Combine(dir, "other");
        Directory.CreateDirectory(other);
        File.WriteAllText(Path.Combine(other, "notes.txt"), "mine");
        (code, output) = Run([.. Args("batchtopk"), "--data", other]);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain($"--data {other} holds files, not samples written by synthesize"));
        Assert.That(Directory.GetFiles(other), Has.Length.EqualTo(1));
    }

    /// <summary>The peer measures the engine's saved dictionary on the same evaluation samples: the two
    /// implementations of the metrics agree. Needs a Python with torch, numpy and scipy (bench/setup-peers.sh).</summary>
    [Test]
    public void ThePeersMetricsOfTheEnginesDictionaryAgreeWithTheEngines()
    {
        var python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        try
        {
            using var probe = Process.Start(new ProcessStartInfo(python, "-c \"import torch, numpy, scipy\"")
                { RedirectStandardError = true, RedirectStandardOutput = true })!;
            probe.WaitForExit();
            if (probe.ExitCode != 0) Assert.Ignore("ignored: no Python with torch, numpy and scipy (bench/setup-peers.sh installs them)");
        }
        catch (System.ComponentModel.Win32Exception)
        {
            Assert.Ignore("ignored: no python3 to run the peer");
        }
        var dir = TestSupport.TempDirectory("bench-synthsaebench-peer");
        var config = WriteTinyConfig(dir);
        var file = Path.Combine(dir, "result.json");
        var (code, output) = Run("bench", "synthsaebench", "--config", config, "--samples", "4096", "--batch", "256",
            "--d-sae", "48", "--l0", "4", "--eval-samples", "2000", "--architectures", "batchtopk,relu",
            "--work", Path.Combine(dir, "work"), "--out", file, "--backend", "cpu", "--peer", "auto");
        Assert.That(code, Is.EqualTo(0), output);
        var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(file))!;
        var peer = root["peer"]!;
        Assert.That(peer["status"]!.GetValue<string>(), Is.EqualTo("ok"), peer.ToJsonString());
        var peerRows = peer["rows"]!.AsArray();
        Assert.That(peerRows.Single(r => r!["architecture"]!.GetValue<string>() == "batchtopk")!["status"]!.GetValue<string>(), Is.EqualTo("ok"));
        Assert.That(peerRows.Single(r => r!["architecture"]!.GetValue<string>() == "relu")!["status"]!.GetValue<string>(),
            Does.StartWith("not implemented by the peer"));
        var agreement = peer["agreement"]!.AsArray();
        Assert.That(agreement.Select(a => a!["architecture"]!.GetValue<string>()), Is.EquivalentTo(new[] { "batchtopk", "relu" }));
        foreach (var a in agreement)
            Assert.That(SynthSaeBench.LargestDifference(root, a!), Is.LessThan(2e-3), a!.ToJsonString());
        Assert.That(output, Does.Contain("F1 / MCC (PyTorch "));
    }
}
