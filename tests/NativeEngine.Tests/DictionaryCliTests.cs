using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

/// <summary>factorize, eval and encode with SAELens and sparsify folders, end to end as a user runs them.</summary>
public class DictionaryCliTests
{
    private static (int Code, string Output) Run(params string[] args) => TestSupport.RunCli(args);

    private static string Config(string sae, string extra = "") => $$"""
        { "data": { "synthetic": { "d": 16, "n_features": 32, "seed": 2 } },
          "sae": { {{sae}}, "d_sae": 48, "dead_window": 4096 },
          "train": { "tokens": 8192, "batch_size": 512, "lr": 0.003 }{{extra}} }
        """;

    private const string Metadata = """
        , "metadata": { "model_name": "gpt2", "hook_name": "blocks.5.hook_resid_post", "context_size": 1024,
                        "prepend_bos": true, "dataset_path": "Skylion007/openwebtext" }
        """;

    private static string Write(string dir, string name, string text)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static string EvalData(string dir, int d = 16) =>
        Write(dir, "eval.json", $$"""{ "data": { "synthetic": { "d": {{d}}, "n_features": 32, "seed": 7 } }, "batch_size": 256, "tokens": 1024 }""");

    private static JsonElement Eval(string dict, string data)
    {
        var (code, output) = Run("eval", "--dict", dict, "--data", data, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        return JsonDocument.Parse(output[output.IndexOf('{')..]).RootElement;
    }

    // eval's metrics without the timing of the measurement itself (seconds, tokens_per_second), which differs run to run.
    // The metrics without the measurement's own timing (at the top level and in the "synthsaebench" block).
    private static Dictionary<string, string> Measured(JsonElement metrics) =>
        metrics.EnumerateObject().Where(p => p.Name is not ("seconds" or "tokens_per_second")).ToDictionary(p => p.Name,
            p => p.Value.ValueKind == JsonValueKind.Object
                ? string.Join(", ", Measured(p.Value).Select(e => $"{e.Key}: {e.Value}"))
                : p.Value.GetRawText());

    [TestCase("\"architecture\": \"topk\", \"k\": 3", "topk", "TopKSAE")]
    [TestCase("\"architecture\": \"batchtopk\", \"k\": 3", "jumprelu", "JumpReLUSAE")]
    [TestCase("\"architecture\": \"relu\", \"l1_coefficient\": 1", "standard", "StandardSAE")]
    [TestCase("\"architecture\": \"jumprelu\", \"l0_coefficient\": 0.5", "jumprelu", "JumpReLUSAE")]
    [TestCase("\"architecture\": \"matryoshka_batchtopk\", \"k\": 3, \"matryoshka_widths\": [6, 24]", "jumprelu", "JumpReLUSAE")]
    [TestCase("\"architecture\": \"matching_pursuit\", \"max_iterations\": 4", "matching_pursuit", "MatchingPursuitSAE")]
    public void FactorizeWritesWhatSaeLensLoadsAndEvalReadsItBack(string sae, string architecture, string saeClass)
    {
        var dir = TestSupport.TempDirectory("factorize-saelens");
        var outDir = Path.Combine(dir, "run");
        var (code, output) = Run("factorize", "--config", Write(dir, "f.json", Config(sae, Metadata)), "--out", outDir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);

        // The run folder keeps the dictionary, and only it, in dictionary/: the folder SAELens loads.
        var loaded = SaeLensRules.LoadFromDisk(Path.Combine(outDir, "dictionary"));
        Assert.That((loaded.Architecture, loaded.ClassName, loaded.DIn, loaded.DSae), Is.EqualTo((architecture, saeClass, 16, 48)));
        Assert.That(loaded.Metadata["hook_name"].GetString(), Is.EqualTo("blocks.5.hook_resid_post"));
        Assert.That(loaded.Metadata["context_size"].GetInt32(), Is.EqualTo(1024));
        Assert.That(loaded.Metadata["tokens"].GetInt64(), Is.EqualTo(8192));
        Assert.That(loaded.Metadata["training_architecture"].GetString(), Is.EqualTo(sae.Split('"')[3]));
        var cfg = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "dictionary", SaeLens.ConfigFile))).RootElement;
        Assert.That(cfg.EnumerateObject().Where(p => p.Name is "d_in" or "d_sae" or "k").Select(p => p.Value.ValueKind),
            Is.All.EqualTo(JsonValueKind.Number));

        var trained = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "metrics.json"))).RootElement;
        var measured = Eval(outDir, EvalData(dir));
        Assert.That(measured.GetProperty("l0").GetDouble(), Is.GreaterThan(0));
        if (architecture == "topk") Assert.That(measured.GetProperty("l0").GetDouble(), Is.LessThanOrEqualTo(3));
        if (architecture == "matching_pursuit")
        {
            Assert.That(measured.GetProperty("l0").GetDouble(), Is.LessThanOrEqualTo(4), "at most max_iterations codes");
            Assert.That(loaded.Fields["max_iterations"], Is.EqualTo(4L));
        }
        Assert.That(trained.GetProperty("fvu").GetDouble(), Is.LessThan(1));
    }

    [Test]
    public void EvalReadsHalfPrecisionWeights()
    {
        var dir = TestSupport.TempDirectory("eval-f16");
        var dict = RandomTopK(out var dictDir, dir);
        var tensors = SafeTensors.Read(Path.Combine(dictDir, SaeLens.WeightsFile)).Tensors;
        SafeTensors.Write(Path.Combine(dictDir, SaeLens.WeightsFile), tensors, dtype: "F16");
        var cfgPath = Path.Combine(dictDir, SaeLens.ConfigFile);
        File.WriteAllText(cfgPath, File.ReadAllText(cfgPath).Replace("\"float32\"", "\"float16\""));
        var metrics = Eval(dictDir, EvalData(dir));
        Assert.That(metrics.GetProperty("l0").GetDouble(), Is.EqualTo(dict.K!.Value), "b_enc is large: every selected code is positive");
    }

    [Test]
    public void EvalReadsAnOldCfgWithNormalizeActivationsFalse()
    {
        var dir = TestSupport.TempDirectory("eval-old");
        RandomTopK(out var dictDir, dir);
        File.WriteAllText(Path.Combine(dictDir, SaeLens.ConfigFile), """
            {"d_in": 16, "d_sae": 64, "dtype": "float32", "device": "cuda", "hook_point": "blocks.8.hook_resid_pre",
             "hook_point_layer": 8, "activation_fn_str": "relu", "normalize_activations": false, "apply_b_dec_to_input": true,
             "model_name": "gpt2-small", "context_size": 128, "l1_coefficient": 8e-05, "sae_lens_training_version": "2.1.3"}
            """);
        var metrics = Eval(dictDir, EvalData(dir));
        Assert.That(metrics.GetProperty("l0").GetDouble(), Is.EqualTo(64), "a ReLU SAE whose biases keep every latent on");
    }

    [Test]
    public void EvalScoresAnOldStyleTopKCfgAsTopK()
    {
        var dir = TestSupport.TempDirectory("eval-old-topk");
        RandomTopK(out var dictDir, dir, k: 8);
        File.WriteAllText(Path.Combine(dictDir, SaeLens.ConfigFile), """
            {"d_in": 16, "d_sae": 64, "dtype": "float32", "hook_point": "blocks.8.hook_resid_pre", "activation_fn_str": "topk",
             "activation_fn_kwargs": {"k": 8}, "normalize_activations": "none", "sae_lens_training_version": "3.5.0"}
            """);
        Assert.That(Eval(dictDir, EvalData(dir)).GetProperty("l0").GetDouble(), Is.EqualTo(8), "k = 8, not every positive latent");
    }

    [Test]
    public void EvalReadsAGatedSaeAndRefusesATranscoderByName()
    {
        var dir = TestSupport.TempDirectory("eval-gated");
        RandomTopK(out var dictDir, dir);
        var tensors = SafeTensors.Read(Path.Combine(dictDir, SaeLens.WeightsFile)).Tensors.Where(t => t.Name != "b_enc").ToList();
        tensors.AddRange([new Tensor("b_gate", [64], Enumerable.Repeat(0.1f, 64).ToArray()), new Tensor("b_mag", [64], new float[64]),
            new Tensor("r_mag", [64], new float[64])]);
        SafeTensors.Write(Path.Combine(dictDir, SaeLens.WeightsFile), tensors);
        File.WriteAllText(Path.Combine(dictDir, SaeLens.ConfigFile),
            """{"architecture": "gated", "d_in": 16, "d_sae": 64, "dtype": "float32", "metadata": {"sae_lens_version": "6.3.0"}}""");
        Assert.That(Eval(dictDir, EvalData(dir)).GetProperty("l0").GetDouble(), Is.InRange(1, 63));

        File.WriteAllText(Path.Combine(dictDir, SaeLens.ConfigFile),
            """{"architecture": "transcoder", "d_in": 16, "d_sae": 64, "d_out": 16, "dtype": "float32", "apply_b_dec_to_input": false, "metadata": {"sae_lens_version": "6.3.0"}}""");
        var (code, output) = Run("eval", "--dict", dictDir, "--data", EvalData(dir), "--backend", "cpu");
        Assert.That((code, output), Is.EqualTo((2, output)));
        Assert.That(output, Does.Contain("architecture \"transcoder\" is a transcoder"));
    }

    [Test]
    public void SparsifyOutputTrainsTheSameDictionaryAndEvalAndEncodeReadIt()
    {
        var dir = TestSupport.TempDirectory("factorize-sparsify");
        var config = Write(dir, "f.json", Config("\"architecture\": \"topk\", \"k\": 3"));
        var saeLensDir = Path.Combine(dir, "saelens");
        var sparsifyDir = Path.Combine(dir, "sparsify");
        Assert.That(Run("factorize", "--config", config, "--out", saeLensDir, "--backend", "cpu").Code, Is.EqualTo(0));
        var (code, output) = Run("factorize", "--config", config, "--out", sparsifyDir, "--format", "sparsify", "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("sae.safetensors, cfg.json (sparsify)"));
        Assert.That(Directory.GetFiles(Path.Combine(sparsifyDir, "dictionary")).Select(Path.GetFileName).Order(),
            Is.EqualTo(new[] { Sparsify.ConfigFile, Sparsify.WeightsFile, SaeLens.SparsityFile }.Order()));

        var loaded = SparsifyRules.LoadFromDisk(Path.Combine(sparsifyDir, "dictionary"));
        Assert.That((loaded.DIn, loaded.NumLatents, loaded.K), Is.EqualTo((16, 48, 3)));
        var data = EvalData(dir);
        Assert.That(Measured(Eval(sparsifyDir, data)), Is.EqualTo(Measured(Eval(saeLensDir, data))), "the same run in either layout");
        var a = Path.Combine(dir, "codes_saelens");
        var b = Path.Combine(dir, "codes_sparsify");
        Assert.That(Run("encode", "--dict", saeLensDir, "--data", data, "--out", a).Code, Is.EqualTo(0));
        Assert.That(Run("encode", "--dict", sparsifyDir, "--data", data, "--out", b).Code, Is.EqualTo(0));
        Assert.That(File.ReadAllBytes(b + "_indices.npy"), Is.EqualTo(File.ReadAllBytes(a + "_indices.npy")));
        Assert.That(File.ReadAllBytes(b + "_values.npy"), Is.EqualTo(File.ReadAllBytes(a + "_values.npy")));
    }

    [Test]
    public void SparsifyOutputOfAnotherArchitectureIsRefusedBeforeTraining()
    {
        var dir = TestSupport.TempDirectory("factorize-sparsify-relu");
        var outDir = Path.Combine(dir, "run");
        var (code, output) = Run("factorize", "--config", Write(dir, "f.json", Config("\"architecture\": \"relu\"")), "--out", outDir,
            "--format", "sparsify", "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2), output);
        Assert.That(output, Does.Contain("--format is \"sparsify\" and sae.architecture is \"relu\""));
        Assert.That(Directory.Exists(outDir), Is.False, "nothing trained");
        (code, output) = Run("factorize", "--config", Write(dir, "g.json", Config("\"architecture\": \"topk\", \"k\": 2")), "--out", outDir,
            "--format", "onnx");
        Assert.That((code, output), Is.EqualTo((2, output)));
        Assert.That(output, Does.Contain("--format is \"onnx\"; valid: saelens, sparsify"));
    }

    // A random TopK dictionary (d = 16, 64 latents) whose large b_enc keeps every selected code positive.
    private static SaeDictionary RandomTopK(out string dictDir, string dir, int k = 4)
    {
        var rng = new Random(6);
        var dict = new SaeDictionary(16, 64, SaeArchitecture.TopK, k, SaeLensTests.Random(rng, 16 * 64, 0.3),
            SaeLensTests.Random(rng, 64, 0.5, 5), SaeLensTests.Random(rng, 64 * 16), new float[16], null);
        dictDir = Path.Combine(dir, "dict");
        SaeLens.Write(dictDir, dict, DictionaryMetadata.None, []);
        return dict;
    }
}
