using System.Diagnostics;
using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

/// <summary>
/// Runs split across processes: the runner launched by `mpirun -np 2|3|4 --oversubscribe` with one OpenMP thread per
/// rank, against the same run in this process. A factorization's dictionary must equal the one-process dictionary
/// within 2e-5 per parameter (the split sums in another order, ~1e-7 a step) with exactly the same choices (the
/// evaluation's firing densities and L0 are equal), two launches with the same process count must be bit-identical,
/// and sweeps must write the one-process results. Stopping is collective: SIGTERM, a killed rank, a checkpoint damaged on
/// one rank (every rank resumes from checkpoint.old/) and a diverging run (every rank stops at the one-process step and
/// exits 4). Each launch is bounded by a timeout that kills the job.
/// Ignored, with the reason, where mpirun, the MPI plugin or the runner executable is missing.
/// </summary>
[NonParallelizable]
public class DistributedTests
{
    private const double Tolerance = 2e-5;
    private static readonly TimeSpan Launch = TimeSpan.FromSeconds(120);

    // d = 32 (64 true features), 96 latents (split in 2 or 3), batch 240 (split in 2, 3 or 4), AuxK on latents dead
    // for 2 batches, 150 steps.
    private static string Config(string architecture, int? latentShards = null, int tokens = 36000, int checkpointEvery = 0) => $$"""
        { "data": { "synthetic": { "d": 32, "n_features": 64, "seed": 3 } },
          "sae": { "architecture": "{{architecture}}", "d_sae": 96{{(architecture is "topk" or "batchtopk" ? ", \"k\": 4" : "")}}, "dead_window": 480 },
          "train": { "tokens": {{tokens}}, "batch_size": 240, "lr": 0.003, "warmup_steps": 10, "checkpoint_every": {{checkpointEvery}} }
          {{(latentShards is { } l ? $", \"distributed\": {{ \"latent_shards\": {l} }}" : "")}} }
        """;

    [Test]
    public void LatentShardedTopKEqualsOneProcess()
    {
        var dir = Prepare("latent-sharded");
        var one = OneProcess(dir, Config("topk"));
        var split = Path.Combine(dir, "split");
        var (code, output) = MpiRun(2, "factorize", "--config", Write(dir, "split.json", Config("topk", latentShards: 2)), "--out", split);
        Assert.That(code, Is.EqualTo(0), output);
        AssertSameDictionary(one, split);
        Assert.That(Files(split), Is.EqualTo(Files(one).Append(DistributedFactorize.CommunicationFile).Order()),
            "a run folder laid out as a one-process run's (its checkpoint gone), plus the traffic");
        Assert.That(Files(Dictionary(split)), Is.EqualTo(Files(Dictionary(one))), "one SAELens dictionary");
        Assert.That(RunFolder.Read(split)!.Status, Is.EqualTo(RunFolder.Status.Completed));
        AssertTrafficMatchesTheModel(split, latentShards: 2, groups: 1);
    }

    [Test]
    public void DataParallelBatchTopKIsBitIdenticalAcrossLaunchesAndEqualsOneProcess()
    {
        var dir = Prepare("data-parallel");
        var one = OneProcess(dir, Config("batchtopk"));
        var config = Write(dir, "split.json", Config("batchtopk"));
        string[] runs = [Path.Combine(dir, "split"), Path.Combine(dir, "again")];
        foreach (var run in runs)
        {
            var (code, output) = MpiRun(3, "factorize", "--config", config, "--out", run);
            Assert.That(code, Is.EqualTo(0), output);
        }
        AssertSameDictionary(one, runs[0]);
        Assert.That(File.ReadAllBytes(Weights(runs[1])), Is.EqualTo(File.ReadAllBytes(Weights(runs[0]))),
            "two launches on 3 processes are bit-identical");
        AssertTrafficMatchesTheModel(runs[0], latentShards: 1, groups: 3, retry: 16 * 4 * 240 + 8);

        // SIGTERM to mpirun reaches every rank: they stop at the same step, checkpoint and say how to continue.
        var stopped = Path.Combine(dir, "stopped");
        var longer = Write(dir, "longer.json", Config("batchtopk", tokens: 240 * 3000, checkpointEvery: 20));
        var (stopCode, stopOutput) = MpiRun(3, ["factorize", "--config", longer, "--out", stopped], null, whileRunning: mpirun =>
        {
            WaitForCheckpoint(stopped, step: 20);
            using var kill = Process.Start("kill", ["-TERM", mpirun.Id.ToString()])!;
            kill.WaitForExit();
        });
        Assert.That(stopCode, Is.Not.EqualTo(0), stopOutput);
        Assert.That(stopOutput, Does.Contain("stopped by SIGTERM at step").And.Contain($"--resume {stopped}"));
        Assert.That(RunFolder.Read(stopped)!.Status, Is.EqualTo(RunFolder.Status.Interrupted));
        var sums = File.ReadAllLines(Path.Combine(stopped, "checkpoint", "SHA256SUMS")).Select(l => l.Split("  ")[1]).ToArray();
        Assert.That(sums, Is.EqualTo(new[] { "data_0000/source.json", "data_0001/source.json", "data_0002/source.json", "layout.json",
            "progress.json", "shard_0000/params.safetensors", "shard_0000/state.bin" }), "every rank's files, checksummed");
        var (resumed, message) = TestSupport.RunCli("factorize", "--resume", stopped, "--backend", "cpu");
        Assert.That(resumed, Is.EqualTo(2));
        Assert.That(message, Does.Contain("the checkpoint was written by 3 processes; resume it with mpirun -np 3"));
    }

    [Test]
    public void TwoByTwoGridEqualsOneProcess()
    {
        var dir = Prepare("grid");
        var one = OneProcess(dir, Config("jumprelu"));
        var split = Path.Combine(dir, "split");
        var (code, output) = MpiRun(4, "factorize", "--config", Write(dir, "split.json", Config("jumprelu", latentShards: 2)), "--out", split);
        Assert.That(code, Is.EqualTo(0), output);
        AssertSameDictionary(one, split);
        AssertTrafficMatchesTheModel(split, latentShards: 2, groups: 2);
    }

    [Test]
    public void ARankKilledMidRunLeavesACheckpointThatResumesToTheUnbrokenRun()
    {
        var dir = Prepare("killed");
        var config = Write(dir, "f.json", Config("topk", latentShards: 2, tokens: 240 * 600, checkpointEvery: 20));
        var unbroken = Path.Combine(dir, "unbroken");
        var (code, output) = MpiRun(2, "factorize", "--config", config, "--out", unbroken);
        Assert.That(code, Is.EqualTo(0), output);

        var killed = Path.Combine(dir, "killed");
        var marker = Guid.NewGuid().ToString("N");
        var clock = Stopwatch.StartNew();
        (code, output) = MpiRun(2, ["factorize", "--config", config, "--out", killed], marker, whileRunning: _ =>
        {
            WaitForCheckpoint(killed, step: 40);
            KillRank(marker, rank: 1);
            clock.Restart();
        });
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(30)), "the other rank ended soon after");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(output, Does.Contain("signal 9").Or.Contain("Killed"), "mpirun says which rank died and how");
        Assert.That(File.Exists(Weights(killed)), Is.False, "the run did not finish");

        // checkpoint/ damaged in rank 1's shard only: every rank falls back to checkpoint.old/ together.
        var checkpoint = Path.Combine(killed, FactorizeCheckpoint.Folder);
        CopyFolder(checkpoint, Path.Combine(killed, FactorizeCheckpoint.PreviousFolder));
        var state = Path.Combine(checkpoint, "shard_0001", "state.bin");
        var bytes = File.ReadAllBytes(state);
        bytes[^1] ^= 0xff;
        File.WriteAllBytes(state, bytes);
        (code, output) = MpiRun(2, "factorize", "--resume", killed);
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("resuming at step").And.Contain("from checkpoint.old/ (checkpoint/ was missing or damaged)"));
        Assert.That(File.ReadAllBytes(Weights(killed)), Is.EqualTo(File.ReadAllBytes(Weights(unbroken))),
            "the resumed run is the unbroken one");

        (code, output) = MpiRun(3, "factorize", "--resume", killed);
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(output, Does.Contain("distributed.latent_shards is 2, but this run has 3 process(es)"), "refused on every rank");
        (code, output) = TestSupport.RunCli("factorize", "--resume", killed, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("distributed.latent_shards is 2, but this run has 1 process(es)"));
    }

    [Test]
    public void ADivergingRunStopsEveryRankAtTheOneProcessStepAndExits4()
    {
        var dir = Prepare("diverging");
        // lr 1e10: the parameters stop being finite at the second step, as in one process.
        var diverging = Config("topk", checkpointEvery: 1).Replace("\"lr\": 0.003", "\"lr\": 1e10");
        var one = Path.Combine(dir, "one");
        var (code, output) = TestSupport.RunCli("factorize", "--config", Write(dir, "one.json", diverging), "--out", one, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(4), output);
        var split = Path.Combine(dir, "split");
        (code, output) = MpiRun(2, "factorize", "--config", Write(dir, "split.json", Config("topk", latentShards: 2, checkpointEvery: 1)
            .Replace("\"lr\": 0.003", "\"lr\": 1e10")), "--out", split);
        Assert.That(code, Is.EqualTo(4), output);
        Assert.That(output, Does.Contain("stopped: ").And.Contain("the checkpoint of step 1 is kept"));
        Assert.That(output, Does.Not.Contain("ending every rank").And.Not.Contain("MPI_ABORT"), "every rank stopped on its own, together");
        Assert.That(NonFiniteOf(split, "metrics.json"), Is.EqualTo(NonFiniteOf(one, "metrics.json")));
        Assert.That(Step(Path.Combine(split, "checkpoint", "progress.json")), Is.EqualTo(1), "the last good checkpoint");
        Assert.That(RunFolder.Read(split)!.Status, Is.EqualTo(RunFolder.Status.NonFinite));
        Assert.That(Directory.Exists(Dictionary(split)), Is.False);

        var toy = Write(dir, "toy.json", """
            { "model": "relu_output", "n_features": 6, "n_hidden": 3, "n_instances": 3, "feature_probability": 0.1,
              "lr": 1e30, "batch_size": 64, "steps": 100 }
            """);
        (code, output) = TestSupport.RunCli("toy", "--config", toy, "--out", Path.Combine(dir, "toy-one"), "--backend", "cpu");
        Assert.That(code, Is.EqualTo(4), output);
        (code, output) = MpiRun(2, "toy", "--config", toy, "--out", Path.Combine(dir, "toy-split"));
        Assert.That(code, Is.EqualTo(4), output);
        Assert.That(output, Does.Contain("the loss of instance 0 is not finite").And.Not.Contain("ending every rank"));
        Assert.That(NonFiniteOf(Path.Combine(dir, "toy-split"), "results.json"), Is.EqualTo(NonFiniteOf(Path.Combine(dir, "toy-one"), "results.json")));
    }

    [Test]
    public void SweepsSplitAcrossRanksWriteTheOneProcessResults()
    {
        var dir = Prepare("sweeps");
        var root = TestSupport.RepositoryRoot();
        foreach (var (verb, config, processes) in new[]
                 {
                     ("toy", Path.Combine(root, "configs", "paper", "intro_n5_m2.json"), 2),
                     ("moe", Path.Combine(root, "configs", "moe", "compare_n20.json"), 3),
                 })
        {
            var one = Path.Combine(dir, verb + "-one");
            var (code, output) = TestSupport.RunCli(verb, "--config", config, "--out", one, "--steps", "200", "--backend", "cpu");
            Assert.That(code, Is.EqualTo(0), output);
            var split = Path.Combine(dir, verb + "-split");
            (code, output) = MpiRun(processes, verb, "--config", config, "--out", split, "--steps", "200");
            Assert.That(code, Is.EqualTo(0), output);
            Assert.That(WithoutSeconds(Path.Combine(split, "results.json")), Is.EqualTo(WithoutSeconds(Path.Combine(one, "results.json"))),
                $"{verb} on {processes} processes");
            Assert.That(File.ReadAllBytes(Path.Combine(split, "weights.safetensors")),
                Is.EqualTo(File.ReadAllBytes(Path.Combine(one, "weights.safetensors"))));
        }

        var hybrid = Write(dir, "hybrid.json", """
            { "n_features": 20, "n_hidden": 6, "importance": 0.9, "feature_probability": [0.1, 0.01], "l1": 0.01,
              "n_experts": 3, "top_k": 1, "steps": 400, "harvest_tokens": 8192, "dictionary_sizes": [6, 12],
              "sae_tokens": 32768, "sae_batch_size": 1024 }
            """);
        var hybridOne = Path.Combine(dir, "hybrid-one");
        var (hybridCode, hybridOutput) = TestSupport.RunCli("hybrid", "--config", hybrid, "--out", hybridOne, "--backend", "cpu");
        Assert.That(hybridCode, Is.EqualTo(0), hybridOutput);
        var hybridSplit = Path.Combine(dir, "hybrid-split");
        (hybridCode, hybridOutput) = MpiRun(2, "hybrid", "--config", hybrid, "--out", hybridSplit);
        Assert.That(hybridCode, Is.EqualTo(0), hybridOutput);
        Assert.That(File.ReadAllText(Path.Combine(hybridSplit, "hybrid.json")), Is.EqualTo(File.ReadAllText(Path.Combine(hybridOne, "hybrid.json"))));
    }

    [Test]
    public void InfoReportsTheRankAndSize()
    {
        var (code, output) = MpiRun(2, "info");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("mpi: running, rank 0 of 2"));
        Assert.That(output.Split("(C ABI ").Length - 1, Is.EqualTo(1), "only the first rank prints");
    }

    // ---- helpers ------------------------------------------------------------------------------------------------

    private static string Prepare(string name)
    {
        RequireMpi();
        return TestSupport.TempDirectory("mpi-" + name);
    }

    private static void RequireMpi()
    {
        var mpi = Engine.Mpi;
        if (!mpi.PluginLoaded) Assert.Ignore($"ignored: the MPI plugin is unavailable ({mpi.Reason})");
        if (MpiRunPath() is null) Assert.Ignore("ignored: no mpirun on PATH (install openmpi-bin)");
        if (!File.Exists(Runner)) Assert.Ignore($"ignored: no runner executable at {Runner} to launch under mpirun");
    }

    private static string Runner => Path.Combine(AppContext.BaseDirectory, "nativeengine");

    private static string? MpiRunPath() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists);

    private static (int Code, string Output) MpiRun(int processes, params string[] args) => MpiRun(processes, args, null, null);

    /// <summary>mpirun -np N the runner with args (CPU backend, one thread per rank); whileRunning runs as it runs, given
    /// the mpirun process. The job is killed, and the test failed, when it outlives the timeout.</summary>
    private static (int Code, string Output) MpiRun(int processes, string[] args, string? marker, Action<Process>? whileRunning)
    {
        RequireMpi();
        var info = new ProcessStartInfo(MpiRunPath()!) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-np", processes.ToString(), "--oversubscribe", "--allow-run-as-root", Runner }.Concat(args)
                     .Concat(args[0] == "info" ? [] : ["--backend", "cpu"]))
            info.ArgumentList.Add(a);
        info.Environment["OMP_NUM_THREADS"] = "1";
        if (marker is not null) info.Environment["NE_TEST_MARKER"] = marker;
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        whileRunning?.Invoke(process);
        if (!process.WaitForExit(Launch))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"mpirun -np {processes} {string.Join(' ', args)} did not end within {Launch.TotalSeconds} s:\n" +
                        stdout.Result + stderr.Result);
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    private static void KillRank(string marker, int rank)
    {
        foreach (var process in Process.GetProcesses())
        {
            string environment;
            try { environment = File.ReadAllText($"/proc/{process.Id}/environ"); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            var variables = environment.Split('\0');
            if (variables.Contains($"NE_TEST_MARKER={marker}") && variables.Contains($"OMPI_COMM_WORLD_RANK={rank}"))
            {
                process.Kill();
                return;
            }
        }
        Assert.Fail($"no process of rank {rank} found");
    }

    private static string OneProcess(string dir, string config)
    {
        var outDir = Path.Combine(dir, "one");
        var (code, output) = TestSupport.RunCli("factorize", "--config", Write(dir, "one.json", config), "--out", outDir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        return outDir;
    }

    private static string Write(string dir, string name, string text)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static void WaitForCheckpoint(string run, long step)
    {
        var progress = Path.Combine(run, "checkpoint", "progress.json");
        var clock = Stopwatch.StartNew();
        while (!(File.Exists(progress) && Step(progress) >= step))
        {
            if (clock.Elapsed > Launch) Assert.Fail($"no checkpoint at step {step} appeared in {run}");
            Thread.Sleep(20);
        }
    }

    private static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (var folder in Directory.EnumerateDirectories(from)) CopyFolder(folder, Path.Combine(to, Path.GetFileName(folder)));
    }

    private static string NonFiniteOf(string run, string file) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(run, file))).RootElement.GetProperty("non_finite").GetRawText();

    private static long Step(string progress)
    {
        try { return JsonDocument.Parse(File.ReadAllText(progress)).RootElement.GetProperty("step").GetInt64(); }
        catch (Exception e) when (e is IOException or JsonException) { return -1; }  // being replaced
    }

    private static string Dictionary(string run) => Path.Combine(run, DictionaryFolder.Subfolder);

    private static string Weights(string run) => Path.Combine(Dictionary(run), SaeLens.WeightsFile);

    private static string[] Files(string dir) =>
        Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).Order().ToArray()!;

    private static string WithoutSeconds(string resultsJson)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(resultsJson))!.AsObject();
        node.Remove("seconds");
        return node.ToJsonString();
    }

    // The same dictionary within Tolerance per parameter, the same choices (firing densities on the evaluation batches,
    // L0 and dead fraction), the same cfg.json.
    private static void AssertSameDictionary(string one, string split)
    {
        var a = SaeLens.Read(Dictionary(one));
        var b = SaeLens.Read(Dictionary(split));
        Assert.That((b.DIn, b.DSae, b.Architecture, b.K), Is.EqualTo((a.DIn, a.DSae, a.Architecture, a.K)));
        foreach (var (name, x, y) in new[] { ("W_enc", b.WEnc, a.WEnc), ("b_enc", b.BEnc, a.BEnc), ("W_dec", b.WDec, a.WDec), ("b_dec", b.BDec, a.BDec) })
            Assert.That(x.Zip(y).Max(p => Math.Abs(p.First - p.Second)), Is.LessThanOrEqualTo(Tolerance), name);
        Assert.That(SafeTensors.Read(Path.Combine(Dictionary(split), SaeLens.SparsityFile)).Tensors.Single().Data,
            Is.EqualTo(SafeTensors.Read(Path.Combine(Dictionary(one), SaeLens.SparsityFile)).Tensors.Single().Data), "every latent fires as often");
        var m1 = JsonDocument.Parse(File.ReadAllText(Path.Combine(one, "metrics.json"))).RootElement;
        var m2 = JsonDocument.Parse(File.ReadAllText(Path.Combine(split, "metrics.json"))).RootElement;
        foreach (var key in new[] { "l0", "dead_fraction", "dense_fraction", "tokens" })
            Assert.That(m2.GetProperty(key).GetDouble(), Is.EqualTo(m1.GetProperty(key).GetDouble()), key);
        foreach (var key in new[] { "mse", "fvu", "mmcs", "matched_cosine" })
            Assert.That(m2.GetProperty(key).GetDouble(), Is.EqualTo(m1.GetProperty(key).GetDouble()).Within(1e-4).Percent, key);
        Assert.That(File.ReadAllText(Path.Combine(Dictionary(split), SaeLens.ConfigFile)),
            Is.EqualTo(File.ReadAllText(Path.Combine(Dictionary(one), SaeLens.ConfigFile))));
    }

    // Every rank contributed exactly the bytes per step the communication model predicts. batchtopk (retry: the bytes
    // of one more merge of the step's k·B best, 16·k·B + 8) may add whole retries, when a token's candidates saturate.
    private static void AssertTrafficMatchesTheModel(string run, int latentShards, int groups, long retry = 0)
    {
        var traffic = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, DistributedFactorize.CommunicationFile))).RootElement;
        Assert.That((traffic.GetProperty("latent_shards").GetInt32(), traffic.GetProperty("data_groups").GetInt32()),
            Is.EqualTo((latentShards, groups)));
        var steps = traffic.GetProperty("steps").GetInt64();
        var model = traffic.GetProperty("model");
        foreach (var rank in traffic.GetProperty("ranks").EnumerateArray())
            foreach (var key in new[] { "latent_bytes_per_step", "data_bytes_per_step", "control_bytes_per_step" })
            {
                var extra = Math.Round((rank.GetProperty(key).GetDouble() - model.GetProperty(key).GetDouble()) * steps);
                var what = $"rank {rank.GetProperty("rank").GetInt32()}: {key} over {steps} steps";
                if (retry == 0 || key.StartsWith("control")) Assert.That(extra, Is.EqualTo(0), what);
                else Assert.That(extra >= 0 && extra % retry == 0, Is.True, $"{what}: {extra} bytes beyond the model are not whole retries of {retry}");
            }
    }
}
