using System.Text.Json;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

/// <summary>
/// `harvest --onnx` on tests/models/tiny_lm.onnx (built by tests/models/make_tiny_lm.py with python3-onnx): the
/// harvested tensors against the same one-block language model computed here by hand from the script's formulas.
/// </summary>
public class OnnxHarvestTests
{
    private const int Vocab = 13, DModel = 6, DMlp = 16;

    private static string ModelPath => Path.Combine(AppContext.BaseDirectory, "models", "tiny_lm.onnx");

    /// <summary>tests/models/scale.onnx (make_scale.py): x float32 [batch, 4] doubled by node "scale", then a ReLU.</summary>
    private static string ScalePath => Path.Combine(AppContext.BaseDirectory, "models", "scale.onnx");

    // make_tiny_lm.py's weight formulas (row i, column j), exact in float32.
    private static float E(int i, int j) => ((3 * i + 5 * j) % 11 - 5) / 4f;
    private static float WIn(int i, int j) => ((7 * i + 3 * j + 1) % 13 - 6) / 8f;
    private static float BIn(int j) => (j % 5 - 2) / 8f;
    private static float WOut(int i, int j) => ((5 * i + 2 * j) % 9 - 4) / 8f;
    private static float BOut(int j) => (j % 3 - 1) / 4f;

    /// <summary>The model's forward pass for one token: its MLP activations (d 16) and residual stream after the block (d 6).</summary>
    private static (double[] Act, double[] Resid) Forward(long token)
    {
        var embed = Enumerable.Range(0, DModel).Select(k => (double)E((int)token, k)).ToArray();
        var act = new double[DMlp];
        for (var j = 0; j < DMlp; j++)
        {
            double pre = BIn(j);
            for (var k = 0; k < DModel; k++) pre += embed[k] * WIn(k, j);
            act[j] = Math.Max(pre, 0);
        }
        var resid = new double[DModel];
        for (var k = 0; k < DModel; k++)
        {
            double sum = embed[k] + BOut(k);
            for (var j = 0; j < DMlp; j++) sum += act[j] * WOut(j, k);
            resid[k] = sum;
        }
        return (act, resid);
    }

    /// <summary>Token ids [rows][seq] as int64 .npy, every id of the vocabulary used.</summary>
    private static long[] WriteTokens(string path, int rows, int seq)
    {
        var ids = Enumerable.Range(0, rows * seq).Select(i => (long)((i * 7 + i / 5) % Vocab)).ToArray();
        var data = System.Runtime.InteropServices.MemoryMarshal.AsBytes(ids.AsSpan()).ToArray();
        var dict = $"{{'descr': '<i8', 'fortran_order': False, 'shape': ({rows}, {seq}), }}";
        var header = dict.PadRight(117) + "\n"; // 10 + 118 bytes: data aligned to 64
        var bytes = new List<byte> { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0, (byte)header.Length, 0 };
        bytes.AddRange(System.Text.Encoding.ASCII.GetBytes(header));
        bytes.AddRange(data);
        File.WriteAllBytes(path, bytes.ToArray());
        return ids;
    }

    private static float[] ReadShards(string folder, int d)
    {
        var shards = new ActivationFiles([Path.Combine(folder, "acts_*.npy")], ActivationFileFormat.Npy).Open();
        try
        {
            Assert.That(shards.All(s => s.D == d));
            return shards.SelectMany(s =>
            {
                var values = new float[s.Tokens * s.D];
                s.Read(0, values);
                return values;
            }).ToArray();
        }
        finally
        {
            foreach (var s in shards) s.Dispose();
        }
    }

    [Test]
    public void HarvestedTensorsEqualTheForwardPassByHand()
    {
        var dir = TestSupport.TempDirectory("onnx-harvest");
        const int rows = 23, seq = 5;
        var ids = WriteTokens(Path.Combine(dir, "tokens.npy"), rows, seq);
        var outDir = Path.Combine(dir, "harvest");
        var (code, output) = TestSupport.RunCli("harvest", "--onnx", ModelPath, "--node", "mlp.act", "--node", "hook_resid_post",
            "--inputs", Path.Combine(dir, "tokens.npy"), "--out", outDir, "--batch-size", "4", "--shard-tokens", "32");
        Assert.That(code, Is.EqualTo(0), output);

        var act = ReadShards(Path.Combine(outDir, "mlp.act"), DMlp);
        var resid = ReadShards(Path.Combine(outDir, "hook_resid_post"), DModel);
        Assert.That((act.Length, resid.Length), Is.EqualTo((rows * seq * DMlp, rows * seq * DModel)), "[rows, seq, d] flattened to rows·seq tokens");
        for (var t = 0; t < rows * seq; t++)
        {
            var (a, r) = Forward(ids[t]);
            for (var j = 0; j < DMlp; j++) Assert.That(act[t * DMlp + j], Is.EqualTo(a[j]).Within(1e-5), $"token {t} act {j}");
            for (var k = 0; k < DModel; k++) Assert.That(resid[t * DModel + k], Is.EqualTo(r[k]).Within(1e-5), $"token {t} resid {k}");
        }
        Assert.That(act.Count(v => v == 0), Is.GreaterThan(0).And.LessThan(act.Length), "the ReLU is active and inactive somewhere");

        using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "harvest.json")));
        var root = manifest.RootElement;
        Assert.That((root.GetProperty("input_rows").GetInt64(), root.GetProperty("complete").GetBoolean()), Is.EqualTo((23L, true)));
        var node = root.GetProperty("nodes")[0];
        Assert.That((node.GetProperty("node").GetString(), node.GetProperty("tensor").GetString(), node.GetProperty("d").GetInt32(),
            node.GetProperty("tokens").GetInt64()), Is.EqualTo(("mlp.act", "hook_mlp_act", DMlp, (long)rows * seq)));
        Assert.That(node.GetProperty("batch_shape").EnumerateArray().Select(e => e.GetInt64()), Is.EqualTo(new long[] { 4, seq, DMlp }));
        Assert.That(node.GetProperty("shards").GetArrayLength(), Is.EqualTo(4), "115 tokens in shards of 32");
        Assert.That(Directory.GetFiles(outDir, "*.tmp", SearchOption.AllDirectories), Is.Empty);

        // data.json beside the shards is a data section eval and encode read.
        var data = EvalDataLoader.LoadFile(Path.Combine(outDir, "mlp.act", OnnxHarvest.DataConfigFile));
        Assert.That(data.Tokens, Is.EqualTo(rows * seq));
        using var source = ActivationSource.Open(((FilesSpec)data.Data).ToActivationFiles(), new ActivationSourceOptions(5));
        Assert.That((source.TotalTokens, source.D), Is.EqualTo(((long)rows * seq, DMlp)));
    }

    [Test]
    public void SafetensorsInputsOfAnotherIntegerTypeGiveTheSameActivations()
    {
        var dir = TestSupport.TempDirectory("onnx-safetensors");
        var ids = WriteTokens(Path.Combine(dir, "tokens.npy"), 6, 3);
        // int32 token ids in a .safetensors tensor named after the model's input.
        var header = "{\"tokens\":{\"dtype\":\"I32\",\"shape\":[6,3],\"data_offsets\":[0,72]}}";
        var bytes = new List<byte>(BitConverter.GetBytes((ulong)header.Length));
        bytes.AddRange(System.Text.Encoding.ASCII.GetBytes(header));
        foreach (var id in ids) bytes.AddRange(BitConverter.GetBytes((int)id));
        File.WriteAllBytes(Path.Combine(dir, "tokens.safetensors"), bytes.ToArray());

        var fromNpy = OnnxHarvest.Run(new OnnxHarvestConfig(ModelPath, ["resid"], Path.Combine(dir, "tokens.npy")), Path.Combine(dir, "a"),
            RunProgress.Silent, CancellationToken.None);
        var fromSafetensors = OnnxHarvest.Run(new OnnxHarvestConfig(ModelPath, ["resid"], Path.Combine(dir, "tokens.safetensors"), BatchRows: 5),
            Path.Combine(dir, "b"), RunProgress.Silent, CancellationToken.None);
        Assert.That((fromNpy.Completed, fromSafetensors.Completed, fromNpy.BatchRows), Is.EqualTo((true, true, OnnxHarvest.DefaultBatchRows)));
        Assert.That(ReadShards(Path.Combine(dir, "b", "resid"), DModel), Is.EqualTo(ReadShards(Path.Combine(dir, "a", "resid"), DModel)));
    }

    [Test]
    public void ListNodesShowsEveryTensorWithItsInferredShape()
    {
        var tensors = OnnxHarvest.ListNodes(ModelPath);
        Assert.That(tensors.Select(t => t.Tensor), Is.EqualTo(new[]
        {
            "hook_embed", "mlp_in", "mlp_pre", "hook_mlp_act", "mlp_out", "mlp_out_biased", "hook_resid_post", "logits",
        }));
        var act = tensors.Single(t => t.Node == "mlp.act");
        Assert.That((act.OpType, act.ElementType, string.Join(",", act.Shape)), Is.EqualTo(("Relu", "float32", "batch,seq,16")));
        var (code, output) = TestSupport.RunCli("harvest", "--onnx", ModelPath, "--list-nodes");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("hook_mlp_act").And.Contain("[batch, seq, 16]").And.Contain("8 tensors"));
    }

    [Test]
    public void AnInterruptedHarvestKeepsAndListsItsFinishedShards()
    {
        var dir = TestSupport.TempDirectory("onnx-interrupt");
        WriteTokens(Path.Combine(dir, "tokens.npy"), 40, 5);
        using var cancel = new CancellationTokenSource();
        var progress = new CancelAfter(cancel, rows: 15);
        var result = OnnxHarvest.Run(new OnnxHarvestConfig(ModelPath, ["mlp.act"], Path.Combine(dir, "tokens.npy"), BatchRows: 3, ShardTokens: 20),
            Path.Combine(dir, "out"), progress, cancel.Token);
        Assert.That(result.Completed, Is.False);
        Assert.That(result.Rows, Is.EqualTo(15), "stopped at the first batch boundary after the request");
        // 75 tokens ran: shards of 20 tokens 0..2 finished, the fourth (15 of 20 tokens) was removed.
        var folder = Path.Combine(dir, "out", "mlp.act");
        Assert.That(Directory.GetFiles(folder).Select(Path.GetFileName).Order(), Is.EqualTo(new[] { "acts_00000.npy", "acts_00001.npy", "acts_00002.npy" }));
        using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "out", "harvest.json")));
        Assert.That(manifest.RootElement.GetProperty("complete").GetBoolean(), Is.False);
        var node = manifest.RootElement.GetProperty("nodes")[0];
        Assert.That(node.GetProperty("tokens").GetInt64(), Is.EqualTo(60));
        Assert.That(node.GetProperty("shards").EnumerateArray().Select(e => e.GetString()),
            Is.EqualTo(new[] { "mlp.act/acts_00000.npy", "mlp.act/acts_00001.npy", "mlp.act/acts_00002.npy" }));
        Assert.That(ReadShards(folder, DMlp), Has.Length.EqualTo(60 * DMlp), "the finished shards are whole and readable");
    }

    private sealed class CancelAfter(CancellationTokenSource cancel, long rows) : IRunProgress
    {
        public void Report(string phase, long done, long total)
        {
            if (done >= rows) cancel.Cancel();
        }

        public void Note(string message) { }
        public void Warn(string message) { }
    }

    [Test]
    public void MistakesNameTheNodeTheInputAndWhatIsValid()
    {
        var dir = TestSupport.TempDirectory("onnx-errors");
        WriteTokens(Path.Combine(dir, "tokens.npy"), 4, 3);
        Npy.WriteF32(Path.Combine(dir, "floats.npy"), new float[12], 3);
        string Run(params string[] args)
        {
            var (code, output) = TestSupport.RunCli(["harvest", "--onnx", ModelPath, "--out", Path.Combine(dir, "out"), .. args]);
            Assert.That(code, Is.EqualTo(2), output);
            return output;
        }
        Assert.That(Run("--node", "mlp", "--inputs", Path.Combine(dir, "tokens.npy")),
            Does.Contain("--node mlp: no node or tensor of that name").And.Contain("mlp.act").And.Contain("--list-nodes"));
        Assert.That(Run("--node", "tokens", "--inputs", Path.Combine(dir, "tokens.npy")), Does.Contain("is an input of the model"));
        Assert.That(Run("--node", "mlp.act", "--inputs", Path.Combine(dir, "floats.npy")),
            Does.Contain("floats [4, 3] of float32").And.Contain("the model's input tokens is int64"));
        Assert.That(Run("--inputs", Path.Combine(dir, "tokens.npy")), Does.Contain("--node is required"));
        Assert.That(TestSupport.RunCli("harvest", "--onnx", ModelPath, "--model", dir, "--out", dir).Output, Does.Contain("exactly one of --model"));
        Assert.That(TestSupport.RunCli("harvest", "--onnx", Path.Combine(dir, "tokens.npy"), "--list-nodes").Output,
            Does.Contain("tokens.npy: not an ONNX model"));
    }

    [Test]
    public void HarvestFactorizeAndEvalRunOnTheCommittedModel()
    {
        var dir = TestSupport.TempDirectory("onnx-pipeline");
        WriteTokens(Path.Combine(dir, "tokens.npy"), 400, 16);
        var harvest = Path.Combine(dir, "harvest");
        var (code, output) = TestSupport.RunCli("harvest", "--onnx", ModelPath, "--node", "mlp.act", "--inputs", Path.Combine(dir, "tokens.npy"),
            "--out", harvest);
        Assert.That(code, Is.EqualTo(0), output);
        var config = Path.Combine(dir, "factorize.json");
        File.WriteAllText(config, """
            { "data": { "files": ["harvest/mlp.act/acts_*.npy"], "format": "npy" },
              "sae": { "architecture": "topk", "d_sae": 32, "k": 2 },
              "train": { "tokens": 100000, "batch_size": 256, "lr": 0.01, "seed": 2 } }
            """);
        (code, output) = TestSupport.RunCli("factorize", "--config", config, "--out", Path.Combine(dir, "sae"), "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        (code, output) = TestSupport.RunCli("eval", "--dict", Path.Combine(dir, "sae"), "--data", Path.Combine(harvest, "mlp.act", "data.json"), "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        using var metrics = JsonDocument.Parse(output);
        // 13 distinct tokens give 13 distinct activation vectors: two latents per token reconstruct them well.
        Assert.That(metrics.RootElement.GetProperty("fvu").GetDouble(), Is.LessThan(0.1), output);
    }

    [Test]
    public void NonFiniteOutputsAreWrittenCountedAndWarnedAndTheReadersRefuseOrSkipThem()
    {
        var dir = TestSupport.TempDirectory("onnx-non-finite");
        // 40 rows of 4: row 3 holds a NaN, row 17 a value whose double overflows float32.
        var x = Enumerable.Range(0, 40 * 4).Select(i => (float)Math.Sin(i * 0.7)).ToArray();
        x[3 * 4 + 2] = float.NaN;
        x[17 * 4] = 3e38f;
        Npy.WriteF32(Path.Combine(dir, "x.npy"), x, 4);
        var harvest = Path.Combine(dir, "h");
        var (code, output, errors) = TestSupport.RunCliStreams(["harvest", "--onnx", ScalePath, "--node", "scale", "--inputs",
            Path.Combine(dir, "x.npy"), "--out", harvest, "--batch-size", "8"]);
        Assert.That(code, Is.EqualTo(0), errors);
        Assert.That(errors, Does.Contain("warning: --node scale: 2 of its tokens hold NaN or infinity (the first is token 3)"));
        Assert.That(output, Does.Contain("scale (hook_scaled): 40 tokens of d = 4"));
        using (var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(harvest, OnnxHarvest.ManifestFile))))
            Assert.That(manifest.RootElement.GetProperty("nodes")[0].GetProperty("non_finite_tokens").GetInt64(), Is.EqualTo(2));
        var acts = ReadShards(Path.Combine(harvest, "scale"), 4);
        Assert.That((float.IsNaN(acts[3 * 4 + 2]), float.IsPositiveInfinity(acts[17 * 4]), acts[5]), Is.EqualTo((true, true, 2 * x[5])),
            "written as computed");

        // The readers decide: an error naming the shard and token by default, or left out and counted.
        var config = Path.Combine(dir, "f.json");
        const string factorize = """
            { "data": { "files": ["h/scale/acts_*.npy"]NON_FINITE }, "sae": { "architecture": "topk", "d_sae": 8, "k": 2 },
              "train": { "tokens": 256, "batch_size": 16 } }
            """;
        File.WriteAllText(config, factorize.Replace("NON_FINITE", ""));
        (code, _, errors) = TestSupport.RunCliStreams(["factorize", "--config", config, "--out", Path.Combine(dir, "a"), "--backend", "cpu"]);
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Match(@"acts_00000\.npy: token (3|17) holds \S+ at column (2|0) \(NaN or infinity\)"));
        File.WriteAllText(config, factorize.Replace("NON_FINITE", ", \"non_finite\": \"skip\""));
        (code, _, errors) = TestSupport.RunCliStreams(["factorize", "--config", config, "--out", Path.Combine(dir, "b"), "--backend", "cpu"]);
        Assert.That(code, Is.EqualTo(0), errors);
        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "b", "metrics.json")));
        Assert.That(metrics.RootElement.GetProperty("skipped_non_finite_tokens").GetInt64(), Is.GreaterThan(0));
    }

    [Test]
    public void AHarvestClaimsItsFolderAndRefusesAnotherRunsFolderUnlessForced()
    {
        var dir = TestSupport.TempDirectory("onnx-claim");
        WriteTokens(Path.Combine(dir, "tokens.npy"), 8, 4);
        string[] Harvest(string node, string outDir, params string[] more) =>
            ["harvest", "--onnx", ModelPath, "--node", node, "--inputs", Path.Combine(dir, "tokens.npy"), "--out", outDir, .. more];
        var outDir = Path.Combine(dir, "h");
        var (code, _, errors) = TestSupport.RunCliStreams(Harvest("mlp.act", outDir));
        Assert.That(code, Is.EqualTo(0), errors);
        using (var run = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "run.json"))))
            Assert.That((run.RootElement.GetProperty("kind").GetString(), run.RootElement.GetProperty("status").GetString()),
                Is.EqualTo(("harvest", "completed")));
        Assert.That(TestSupport.RunCliStreams(Harvest("mlp.act", outDir)).Code, Is.EqualTo(0), "the same harvest again is a rerun");

        (code, _, errors) = TestSupport.RunCliStreams(Harvest("resid", outDir));
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("holds a harvest run of another config (nodes [\"mlp.act\"] → [\"resid\"])").And.Contain("--force"));
        Assert.That(TestSupport.RunCliStreams(Harvest("resid", outDir, "--force")).Code, Is.EqualTo(0));

        // A folder holding another kind of run is not written into.
        var toy = Path.Combine(dir, "toy");
        File.WriteAllText(Path.Combine(dir, "toy.json"), """
            { "model": "relu_output", "n_features": 5, "n_hidden": 2, "n_instances": 1, "feature_probability": 0.1, "batch_size": 32, "steps": 10 }
            """);
        Assert.That(TestSupport.RunCli("toy", "--config", Path.Combine(dir, "toy.json"), "--out", toy, "--backend", "cpu").Code, Is.EqualTo(0));
        (code, _, errors) = TestSupport.RunCliStreams(Harvest("mlp.act", toy));
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("holds a toy run (run.json); a harvest run would write over its files"));
        Assert.That(Directory.Exists(Path.Combine(toy, "mlp.act")), Is.False, "nothing written");
    }
}
