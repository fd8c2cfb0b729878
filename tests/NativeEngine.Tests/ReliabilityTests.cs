using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

/// <summary>
/// What a careful user and an attacker found, one test per finding: non-finite values, sizes that overflow,
/// damaged run folders, outputs that overwrite or fill the disk, arguments out of range, and signals. Each must end
/// in its own message and exit code, never an unhandled exception.
/// </summary>
public class ReliabilityTests
{
    private static (int Code, string Output, string Errors) Run(params string[] args) => TestSupport.RunCliStreams(args);

    private static string Write(string dir, string name, string text)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private const string SmallToy = """
        { "model": "relu_output", "n_features": 6, "n_hidden": 3, "n_instances": 2, "feature_probability": 0.1,
          "batch_size": 64, "steps": 100 }
        """;

    private const string SmallFactorize = """
        { "data": { "synthetic": { "d": 16, "n_features": 32, "seed": 1 } },
          "sae": { "architecture": "topk", "d_sae": 64, "k": 4 },
          "train": { "tokens": 20480, "batch_size": 512, "lr": 0.001, "checkpoint_every": 1 } }
        """;

    /// <summary>A float32 .npy of [tokens][d] values from <paramref name="value"/>.</summary>
    internal static string WriteNpy(string path, int tokens, int d, Func<int, int, float> value)
    {
        var data = new float[tokens * d];
        for (var t = 0; t < tokens; t++)
            for (var c = 0; c < d; c++) data[t * d + c] = value(t, c);
        Npy.WriteF32(path, data, d);
        return path;
    }

    private static float Gaussian(int t, int c) => (float)Math.Sin(0.7 * t + 1.3 * c) + 0.1f * (c % 3);

    // ---- 1. non-finite values ----------------------------------------------------------------------------------

    [Test]
    public void Case1_ADivergingFactorizeRunStopsAtTheStepKeepsItsLastCheckpointAndExits4()
    {
        var dir = TestSupport.TempDirectory("diverge");
        var config = Write(dir, "f.json", SmallFactorize.Replace("\"lr\": 0.001", "\"lr\": 1e10"));
        var outDir = Path.Combine(dir, "run");
        var (code, _, errors) = Run("factorize", "--config", config, "--out", outDir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(4), errors);
        Assert.That(errors, Does.StartWith("stopped: ").And.Contain("step 2 of 40: the loss is not finite")
            .And.Contain("likely cause: the learning rate (lr 1e+10) is too large").And.Contain("the checkpoint of step 1 is kept"));
        Assert.That(errors, Does.Not.Contain("internal error").And.Not.Contain("   at "));
        var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "metrics.json"))).RootElement;
        Assert.That(metrics.GetProperty("mse").ValueKind, Is.EqualTo(JsonValueKind.Null));
        Assert.That(metrics.GetProperty("non_finite").GetProperty("step").GetInt64(), Is.EqualTo(2));
        Assert.That(metrics.GetProperty("non_finite").GetProperty("quantity").GetString(), Is.EqualTo("loss"));
        var progress = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "checkpoint", "progress.json"))).RootElement;
        Assert.That(progress.GetProperty("step").GetInt64(), Is.EqualTo(1), "the last good checkpoint");
        Assert.That(File.ReadAllText(Path.Combine(outDir, "run.json")), Does.Contain("\"stopped_non_finite\""));
        Assert.That(Directory.Exists(Path.Combine(outDir, "dictionary")), Is.False, "no dictionary from a diverged run");
    }

    [TestCase("toy")]
    [TestCase("moe")]
    public void Case1_ADivergingToyOrMoeRunExits4WithNullsAndTheStepRecorded(string verb)
    {
        var dir = TestSupport.TempDirectory("diverge-" + verb);
        var json = SmallToy.Replace("\"batch_size\"", "\"lr\": 1e30, \"batch_size\"");
        if (verb == "moe") json = json.Replace("\"model\": \"relu_output\", ", "").Replace("\"n_hidden\": 3", "\"n_experts\": 3, \"top_k\": 2, \"expert_hidden\": 2");
        var outDir = Path.Combine(dir, "run");
        var (code, _, errors) = Run(verb, "--config", Write(dir, "c.json", json), "--out", outDir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(4), errors);
        Assert.That(errors, Does.Contain("step 2 of 100: the loss of instance 0 is not finite (NaN or infinity)").And.Contain("lr 1e+30"));
        var results = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "results.json"))).RootElement;
        Assert.That(results.GetProperty("non_finite").GetProperty("step").GetInt64(), Is.EqualTo(2));
        Assert.That(results.GetProperty("instances")[0].GetProperty("loss").ValueKind, Is.EqualTo(JsonValueKind.Null));
        // The instance keeps its last finite parameters: W holds numbers, not nulls.
        var w = verb == "toy" ? results.GetProperty("instances")[0].GetProperty("W")
            : results.GetProperty("instances")[0].GetProperty("experts")[0].GetProperty("W");
        Assert.That(w.EnumerateArray().SelectMany(row => row.EnumerateArray()).All(v => v.ValueKind == JsonValueKind.Number), Is.True);
    }

    [Test]
    public void Case1_NonFiniteActivationsAreNamedByFileAndTokenOrSkippedAndCounted()
    {
        var dir = TestSupport.TempDirectory("nan-input");
        WriteNpy(Path.Combine(dir, "acts.npy"), 2048, 16, (t, c) => t == 700 && c == 3 ? float.NaN : Gaussian(t, c));
        var config = SmallFactorize.Replace("""{ "synthetic": { "d": 16, "n_features": 32, "seed": 1 } }""",
            """{ "files": ["acts.npy"], "format": "npy" }""").Replace("\"checkpoint_every\": 1", "\"checkpoint_every\": 0");
        var (code, _, errors) = Run("factorize", "--config", Write(dir, "f.json", config), "--out", Path.Combine(dir, "a"), "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("acts.npy: token 700 holds NaN at column 3").And.Contain("\"non_finite\": \"skip\""));

        var skip = Write(dir, "s.json", config.Replace("\"format\": \"npy\"", "\"format\": \"npy\", \"non_finite\": \"skip\""));
        (code, _, errors) = Run("factorize", "--config", skip, "--out", Path.Combine(dir, "b"), "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), errors);
        var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "b", "metrics.json"))).RootElement;
        Assert.That(double.IsFinite(metrics.GetProperty("fvu").GetDouble()), Is.True);
        Assert.That(metrics.GetProperty("skipped_non_finite_tokens").GetInt64(), Is.GreaterThan(0));

        // eval and encode read through the same check: all-NaN input is an error, never "fvu 0" or NaN codes.
        WriteNpy(Path.Combine(dir, "nan.npy"), 512, 16, (_, _) => float.NaN);
        var data = Write(dir, "d.json", """{ "data": { "files": ["nan.npy"], "format": "npy" }, "batch_size": 256, "tokens": 512 }""");
        (code, _, errors) = Run("eval", "--dict", Path.Combine(dir, "b"), "--data", data, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("nan.npy: token").And.Contain("holds NaN at column 0"));
        (code, _, errors) = Run("encode", "--dict", Path.Combine(dir, "b"), "--data", data, "--out", Path.Combine(dir, "codes"), "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(File.Exists(Path.Combine(dir, "codes_values.npy")), Is.False);
        var skipAll = Write(dir, "e.json", """{ "data": { "files": ["nan.npy"], "format": "npy", "non_finite": "skip" }, "batch_size": 256, "tokens": 512 }""");
        (code, _, errors) = Run("eval", "--dict", Path.Combine(dir, "b"), "--data", skipAll, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("every token of the activation files holds NaN or infinity"));
    }

    // ---- 2. 32-bit overflow ------------------------------------------------------------------------------------

    [Test]
    public void Case2_SizesEachInRangeWhoseProductOverflowsAreRefused()
    {
        var dir = TestSupport.TempDirectory("overflow");
        var config = Write(dir, "t.json", """
            { "model": "linear", "n_features": 1000000, "n_hidden": 1, "n_instances": 1000000, "feature_probability": 0.1 }
            """);
        var (code, _, errors) = Run("toy", "--config", config, "--out", Path.Combine(dir, "run"));
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("\"n_instances\" makes instances × n_features × n_hidden = 1000000 × 1000000 × 1"));
        var sweep = Write(dir, "s.json", """
            { "model": "linear", "n_features": 1000000, "n_hidden": 1000, "sweep": { "feature_probability": [0.1, 0.2], "repeats": 2 } }
            """);
        (code, _, errors) = Run("toy", "--config", sweep, "--out", Path.Combine(dir, "run"));
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("\"sweep\" makes instances × n_features × n_hidden"));
    }

    // ---- 3. damaged run folders --------------------------------------------------------------------------------

    /// <summary>A factorize run stopped at step 50 with its checkpoint; the unbroken run beside it.</summary>
    private static (string Config, string Interrupted, string Unbroken) InterruptedRun(string name, bool unbroken = false)
    {
        var dir = TestSupport.TempDirectory(name);
        var config = Write(dir, "f.json", FactorizeCliTests.ResumableConfig);
        var interrupted = Path.Combine(dir, "run");
        FactorizeCliTests.InterruptAt50(config, interrupted);
        var full = Path.Combine(dir, "unbroken");
        if (unbroken) Assert.That(Run("factorize", "--config", config, "--out", full, "--backend", "cpu").Code, Is.EqualTo(0));
        return (config, interrupted, full);
    }

    [Test]
    public void Case3_AGarbageProgressJsonOrAMissingStateBinIsNamed()
    {
        var (_, run, _) = InterruptedRun("garbage");
        var progress = Path.Combine(run, "checkpoint", "progress.json");
        var original = File.ReadAllText(progress);
        File.WriteAllText(progress, "{ garbage");
        var (code, _, errors) = Run("factorize", "--resume", run, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("checkpoint/progress.json does not match its checksum in SHA256SUMS"));
        File.WriteAllText(progress, original);
        File.Delete(Path.Combine(run, "checkpoint", "state.bin"));
        (code, _, errors) = Run("factorize", "--resume", run, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("checkpoint/state.bin is missing"));
    }

    [Test]
    public void Case3_ACfgJsonThatIsNotJsonIsADataErrorNamingIt()
    {
        var dir = TestSupport.TempDirectory("cfg");
        var dict = Path.Combine(dir, "dict");
        Directory.CreateDirectory(dict);
        File.WriteAllText(Path.Combine(dict, "cfg.json"), "{ \"d_in\": 3,");
        File.WriteAllBytes(Path.Combine(dict, "sae_weights.safetensors"), [0, 0, 0, 0, 0, 0, 0, 0]);
        var data = Write(dir, "d.json", """{ "data": { "synthetic": { "d": 3, "n_features": 4 } }, "batch_size": 8, "tokens": 8 }""");
        var (code, _, errors) = Run("eval", "--dict", dict, "--data", data, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.StartWith("data error: ").And.Contain("dict/cfg.json: not valid JSON"));
    }

    [Test]
    public void Case3_ACheckpointLeftInCheckpointOldByAKillBetweenTheRenamesIsResumedBitIdentically()
    {
        var (_, run, unbroken) = InterruptedRun("old", unbroken: true);
        Directory.Move(Path.Combine(run, "checkpoint"), Path.Combine(run, "checkpoint.old"));
        var (code, _, errors) = Run("factorize", "--resume", run, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), errors);
        Assert.That(errors, Does.Contain("resuming at step 50 of 100").And.Contain("from checkpoint.old/"));
        var a = SafeTensors.Read(Path.Combine(unbroken, "dictionary", SaeLens.WeightsFile)).Tensors;
        var b = SafeTensors.Read(Path.Combine(run, "dictionary", SaeLens.WeightsFile)).Tensors;
        Assert.That(b.Single(t => t.Name == "W_dec").Data, Is.EqualTo(a.Single(t => t.Name == "W_dec").Data));
        Assert.That(Directory.Exists(Path.Combine(run, "checkpoint.old")), Is.False);
    }

    [Test]
    public void Case3_AHandEditedCheckpointIsRefusedEvenWithItsChecksumsRewritten()
    {
        var (_, run, _) = InterruptedRun("edited");
        var folder = Path.Combine(run, "checkpoint");
        var progress = Path.Combine(folder, "progress.json");
        File.WriteAllText(progress, File.ReadAllText(progress).Replace("\"step\": 50,", "\"step\": 999999,").Replace("\"tokens\": 25600,", "\"tokens\": -5,"));
        var (code, _, errors) = Run("factorize", "--resume", run, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("does not match its checksum"));

        // An attacker who also rewrites SHA256SUMS meets the checks of the values themselves.
        var sums = string.Concat(new[] { "params.safetensors", "state.bin", "source.json", "progress.json" }
            .Select(f => $"{Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(folder, f))))}  {f}\n"));
        File.WriteAllText(Path.Combine(folder, "SHA256SUMS"), sums);
        (code, _, errors) = Run("factorize", "--resume", run, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("step 999999 is past this config's 100 steps"));
    }

    [Test]
    public void Case3_ResumingWithAnotherConfigSaysTheConfigsDiffer()
    {
        var (config, run, _) = InterruptedRun("other-config");
        var other = Write(Path.GetDirectoryName(config)!, "other.json",
            File.ReadAllText(config).Replace("\"d_sae\": 96", "\"d_sae\": 128"));
        var (code, _, errors) = Run("factorize", "--resume", run, "--config", other, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("the checkpoint was written with another config (sae.d_sae 96 → 128)").And.Contain("--force"));
        (code, _, errors) = Run("factorize", "--resume", run, "--config", other, "--backend", "cpu", "--force");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("\"W_enc\" is [32, 96], but this config's SAE needs [32, 128]"));
        Assert.That(errors, Does.Not.Contain("ne_sae_restore"));
    }

    // ---- 4. outputs ----------------------------------------------------------------------------------------------

    [Test]
    public void Case4_AToyRunIntoAFactorizeFolderIsRefusedAndTheFactorizeRunStaysResumable()
    {
        var (_, run, _) = InterruptedRun("claimed");
        var dir = Path.GetDirectoryName(run)!;
        var config = File.ReadAllText(Path.Combine(run, "config.json"));
        var toy = Write(dir, "toy.json", SmallToy);
        var (code, _, errors) = Run("toy", "--config", toy, "--out", run, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("holds a factorize run (run.json); a toy run would write over its files").And.Contain("--force"));
        Assert.That(File.ReadAllText(Path.Combine(run, "config.json")), Is.EqualTo(config), "config.json untouched");

        // A toy run of another config into a toy folder is refused too, naming what differs; --force replaces it.
        var toyRun = Path.Combine(dir, "toy");
        Assert.That(Run("toy", "--config", toy, "--out", toyRun, "--backend", "cpu").Code, Is.EqualTo(0));
        (code, _, errors) = Run("toy", "--config", toy, "--out", toyRun, "--backend", "cpu", "--steps", "50");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("holds a toy run of another config (steps 100 → 50)"));
        Assert.That(Run("toy", "--config", toy, "--out", toyRun, "--backend", "cpu", "--steps", "50", "--force").Code, Is.EqualTo(0));
        Assert.That(Run("toy", "--config", toy, "--out", toyRun, "--backend", "cpu", "--steps", "50").Code, Is.EqualTo(0),
            "the same config again is a rerun");
    }

    [Test]
    public void Case4_EncodeIntoAMissingFolderFailsBeforeComputingAndHugeOutputsAreRefused()
    {
        var dir = TestSupport.TempDirectory("outputs");
        var dict = Path.Combine(dir, "dict");
        var dictionary = new SaeDictionary(4, 8, NativeEngine.Interop.SaeArchitecture.TopK, 2, new float[32], new float[8], new float[32],
            new float[4], null);
        SaeLens.Write(dict, dictionary, DictionaryMetadata.None, []);
        var data = Write(dir, "d.json", """{ "data": { "synthetic": { "d": 4, "n_features": 8 } }, "batch_size": 8, "tokens": 64 }""");
        var (code, _, errors) = Run("encode", "--dict", dict, "--data", data, "--out", Path.Combine(dir, "missing", "codes"), "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("missing does not exist; create it first"));

        var toyRun = Path.Combine(dir, "toy");
        Assert.That(Run("toy", "--config", Write(dir, "t.json", SmallToy), "--out", toyRun, "--backend", "cpu").Code, Is.EqualTo(0));
        (code, _, errors) = Run("harvest", "--model", toyRun, "--out", Path.Combine(dir, "h"), "--tokens", "1000000000000000");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("harvesting 1000000000000000 tokens").And.Contain("PB, but").And.Contain("free"));
        Assert.That(Directory.Exists(Path.Combine(dir, "h")), Is.False, "nothing written");
        (code, _, errors) = Run("synthesize", "--config", Write(dir, "f.json", SmallFactorize), "--out", Path.Combine(dir, "s"),
            "--tokens", "1000000000000000");
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("synthesizing 1000000000000000 tokens of d = 16 needs"));
    }

    // ---- 5. arguments --------------------------------------------------------------------------------------------

    [TestCase("-1")]
    [TestCase("NaN")]
    [TestCase("1e39")]
    public void Case5_EncodeLambdaOutOfRangeIsRefused(string lambda)
    {
        var (code, _, errors) = Run("encode", "--dict", "x", "--data", "y", "--out", "z", "--lambda", lambda);
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("--lambda is").And.Contain("valid: a number in [0, 1e6]"));
    }

    [Test]
    public void Case5_OtherArgumentsAndConfigsOutOfRangeAreRefusedWithTheirOwnMessage()
    {
        var dir = TestSupport.TempDirectory("arguments");
        var (code, _, errors) = Run("bench", "peak", "--gemm-size", "10000000");
        Assert.That((code, errors.Contains("--gemm-size is 10000000; valid: 1..16384")), Is.EqualTo((2, true)), errors);
        (code, _, errors) = Run("bench", "table", Write(dir, "notjson.json", "not json"));
        Assert.That((code, errors.Contains("not a bench result (not valid JSON")), Is.EqualTo((2, true)), errors);
        (code, _, errors) = Run("toy", "--config", dir, "--out", Path.Combine(dir, "r"));
        Assert.That((code, errors.Contains($"config file {dir} is a folder; give the JSON file")), Is.EqualTo((2, true)), errors);
        var small = Write(dir, "f.json", SmallFactorize.Replace("\"tokens\": 20480", "\"tokens\": 100"));
        (code, _, errors) = Run("factorize", "--config", small, "--out", Path.Combine(dir, "r"));
        Assert.That((code, errors.Contains("\"tokens\" is 100, less than one batch (batch_size 512)")), Is.EqualTo((2, true)), errors);
        var duplicate = Write(dir, "t.json", SmallToy.Replace("\"steps\": 100", "\"steps\": 100, \"steps\": 5"));
        (code, _, errors) = Run("toy", "--config", duplicate, "--out", Path.Combine(dir, "r"));
        Assert.That((code, errors.Contains("key \"steps\" is given twice")), Is.EqualTo((2, true)), errors);
    }

    // ---- 6. signals ----------------------------------------------------------------------------------------------

    [Test]
    public void Case6_SigtermCheckpointsLikeCtrlCAndExits143()
    {
        var runner = Path.Combine(AppContext.BaseDirectory, "nativeengine");
        Assert.That(File.Exists(runner), Is.True, $"the runner executable beside the tests: {runner}");
        var dir = TestSupport.TempDirectory("sigterm");
        var config = Write(dir, "f.json", SmallFactorize.Replace("\"tokens\": 20480", "\"tokens\": 2000000000")
            .Replace("\"checkpoint_every\": 1", "\"checkpoint_every\": 0"));
        var outDir = Path.Combine(dir, "run");
        var info = new ProcessStartInfo(runner, ["factorize", "--config", config, "--out", outDir, "--backend", "cpu"])
        {
            RedirectStandardError = true, RedirectStandardOutput = true,
        };
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var errors = new System.Text.StringBuilder();
        var training = new ManualResetEventSlim();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (errors) errors.AppendLine(e.Data);
            if (e.Data.Contains("topk SAE")) training.Set();  // the first progress line: steps are being taken
        };
        process.BeginErrorReadLine();
        Assert.That(training.Wait(TimeSpan.FromSeconds(60)), Is.True, "the run started training");
        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString()])!) kill.WaitForExit();
        Assert.That(process.WaitForExit(TimeSpan.FromSeconds(60)), Is.True, "the run stopped after SIGTERM");
        process.WaitForExit();
        var text = errors.ToString();
        Assert.That(process.ExitCode, Is.EqualTo(143), text);
        Assert.That(text, Does.Contain("stopped by SIGTERM at step").And.Contain($"--resume {outDir}"));
        Assert.That(File.Exists(Path.Combine(outDir, "checkpoint", "SHA256SUMS")), Is.True, "a whole checkpoint");
        Assert.That(File.ReadAllText(Path.Combine(outDir, "run.json")), Does.Contain("\"interrupted\""));

        // The checkpoint resumes (stopped again at once by a cancelled token: 130, as Ctrl-C).
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        var (code, _, resumed) = TestSupport.RunCliStreams(["factorize", "--resume", outDir, "--backend", "cpu"], cancel.Token);
        Assert.That(code, Is.EqualTo(130), resumed);
        Assert.That(resumed, Does.Match("resuming at step [1-9][0-9]* of 3906250"));
    }
}
