using NativeEngine.Runner.Configs;

namespace NativeEngine.Tests;

public class FactorizeConfigTests
{
    private const string Synthetic = """
        { "data": { "synthetic": { "d": 256, "n_features": 512 } },
          "sae": { "architecture": "topk", "expansion": 16, "k": 32 },
          "train": { "tokens": 100000, "batch_size": 4096 } }
        """;

    private static string ErrorOf(string json) =>
        Assert.Throws<ConfigException>(() => FactorizeConfigLoader.Parse(json, "f.json", "/base"))!.Message;

    [Test]
    public void DefaultsFollowTheLiterature()
    {
        var c = FactorizeConfigLoader.Parse(Synthetic, "f.json", "/base");
        var data = (SyntheticSpec)c.Data;
        Assert.That((data.D, data.NFeatures, data.ActiveMean, data.ProbabilityDecay, data.Correlated), Is.EqualTo((256, 512, 5.0, 0.99, false)));
        Assert.That((c.Sae.DSae, c.Sae.K, c.Sae.AuxkAlpha), Is.EqualTo((4096, 32, 1.0 / 32)));
        Assert.That(c.Train.Lr, Is.EqualTo(2e-4 / Math.Sqrt(4096 / 16384.0)).Within(1e-12), "lr ∝ 1/√(d_sae / 2^14)");
        Assert.That(c.Train.Precision, Is.EqualTo(NativeEngine.Interop.SaePrecision.Fp32));
        Assert.That(c.Sae.Normalization, Is.EqualTo(ActivationNormalization.None));
    }

    [Test]
    public void FilePathsResolveAgainstTheConfigsFolder()
    {
        var c = FactorizeConfigLoader.Parse("""
            { "data": { "files": ["shards/*.npy", "/abs/x.npy"], "format": "npy" },
              "sae": { "architecture": "relu", "d_sae": 1024 } }
            """, "f.json", "/base");
        var files = (FilesSpec)c.Data;
        Assert.That(files.Files, Is.EqualTo(new[] { Path.Combine("/base", "shards/*.npy"), "/abs/x.npy" }));
        Assert.That(files.Format, Is.EqualTo(Runner.Data.ActivationFileFormat.Npy));
        Assert.That(c.Sae.L1Coefficient, Is.EqualTo(5.0));
    }

    [TestCase("\"data\": { \"synthetic\": { \"d\": 256, \"n_features\": 512 } }", "\"data\": { \"synthetic\": {}, \"files\": [\"a.npy\"] }", "needs exactly one of \"synthetic\"")]
    [TestCase("\"k\": 32", "\"l1_coefficient\": 1", "missing required key \"k\"")]
    [TestCase("\"k\": 32", "\"k\": 5000", "\"k\" is 5000; valid: an integer in [1, 4096]")]
    [TestCase("\"expansion\": 16", "\"expansion\": 16, \"d_sae\": 100", "give exactly one of \"d_sae\"")]
    [TestCase("\"architecture\": \"topk\"", "\"architecture\": \"gated\"", "\"architecture\" is the string \"gated\"; valid: \"topk\" | \"batchtopk\" | \"relu\" | \"jumprelu\"")]
    [TestCase("\"batch_size\": 4096", "\"batch_size\": 4096, \"precision\": \"fp8\"", "\"precision\" is the string \"fp8\"")]
    [TestCase("\"n_features\": 512", "\"n_features\": 512, \"active_mean\": 600", "\"active_mean\" is 600; at most n_features (512)")]
    [TestCase("\"tokens\": 100000", "\"tokens\": 100000, \"epochs\": 3", "unknown key \"epochs\"")]
    public void BadValueIsNamed(string from, string to, string expected)
    {
        Assert.That(ErrorOf(Synthetic.Replace(from, to)), Does.Contain(expected).And.Contain("f.json"));
    }

    [TestCase("{ \"files\": [\"a.bin\"], \"format\": \"raw\" }", "\"d\" is required with format \"raw\"")]
    [TestCase("{ \"files\": [\"a.safetensors\"], \"format\": \"safetensors\" }", "\"tensor\" is required with format \"safetensors\"")]
    [TestCase("{ \"files\": [], \"format\": \"npy\" }", "\"files\" must be a non-empty array")]
    [TestCase("{ \"files\": [\"a.npy\"], \"format\": \"npy\", \"dtype\": \"int8\" }", "\"dtype\" is the string \"int8\"")]
    public void BadFilesSpecIsNamed(string data, string expected)
    {
        var json = Synthetic.Replace("{ \"synthetic\": { \"d\": 256, \"n_features\": 512 } }", data).Replace("\"expansion\": 16", "\"d_sae\": 4096");
        Assert.That(ErrorOf(json), Does.Contain(expected));
    }

    [Test]
    public void ExpansionNeedsAKnownInputSize()
    {
        var json = Synthetic.Replace("{ \"synthetic\": { \"d\": 256, \"n_features\": 512 } }", "{ \"files\": [\"a.npy\"], \"format\": \"npy\" }");
        Assert.That(ErrorOf(json), Does.Contain("\"expansion\" needs d known up front"));
    }

    [TestCase("relu", "\"l1_coefficient\": 2", 2.0, 0.0)]
    [TestCase("jumprelu", "\"l0_coefficient\": 3", 0.0, 3.0)]
    [TestCase("jumprelu", "\"auxk_alpha\": 0", 0.0, 5.0)]
    public void EachSparsityCoefficientHasItsOwnKey(string architecture, string coefficient, double l1, double l0)
    {
        var c = FactorizeConfigLoader.Parse(SaeOf(architecture, coefficient), "f.json", "/base");
        Assert.That((c.Sae.L1Coefficient, c.Sae.L0Coefficient), Is.EqualTo((l1, l0)));
    }

    [TestCase("jumprelu", "\"l1_coefficient\": 2", "\"l1_coefficient\" is the relu architecture's; \"jumprelu\" does not use it; for jumprelu give \"l0_coefficient\"")]
    [TestCase("relu", "\"l0_coefficient\": 2", "\"l0_coefficient\" is the jumprelu architecture's; \"relu\" does not use it; for relu give \"l1_coefficient\"")]
    [TestCase("topk\", \"k\": 4, \"x\": \"", "\"l1_coefficient\": 2", "\"l1_coefficient\" is the relu architecture's; \"topk\" does not use it")]
    public void ACoefficientOfAnotherArchitectureNamesTheRightKey(string architecture, string coefficient, string expected)
    {
        Assert.That(ErrorOf(SaeOf(architecture, coefficient)), Does.Contain(expected));
    }

    private static string SaeOf(string architecture, string extra) =>
        $$"""{ "data": { "synthetic": { "d": 16 } }, "sae": { "architecture": "{{architecture}}", "d_sae": 64, {{extra}} } }""";

    [TestCase("""{ "data": { "synthetic": { "d": 24, "n_features": 40, "correlated": true, "seed": 3 } }, "sae": { "architecture": "batchtopk", "expansion": 4, "k": 3, "normalize_activations": "expected_average" }, "train": { "tokens": 5000, "batch_size": 100, "warmup_steps": 2, "decay_steps": 7, "precision": "bf16" } }""")]
    [TestCase("""{ "data": { "files": ["a/*.bin"], "format": "raw", "dtype": "bfloat16", "d": 12 }, "sae": { "architecture": "jumprelu", "d_sae": 48, "l0_coefficient": 0.25, "dead_window": 1000 } }""")]
    [TestCase("""{ "data": { "files": ["x.safetensors"], "format": "safetensors", "tensor": "acts" }, "sae": { "architecture": "relu", "d_sae": 48, "l1_coefficient": 1.5 }, "train": { "lr": 0.001, "seed": 9 } }""")]
    [TestCase("""{ "data": { "synthetic": { "d": 8 } }, "sae": { "architecture": "topk", "d_sae": 16, "k": 2 }, "format": "sparsify", "metadata": { "model_name": "gpt2", "hook_name": "blocks.3.hook_resid_post", "hook_head_index": 2, "context_size": 128, "prepend_bos": false, "dataset_path": "Skylion007/openwebtext" } }""")]
    [TestCase("""{ "data": { "synthetic": { "d": 8 } }, "sae": { "architecture": "relu", "d_sae": 16 }, "metadata": { "hook_name": "blocks.0.hook_resid_pre", "hook_head_index": null } }""")]
    public void TheWrittenConfigReadsBackToTheSameRun(string json)
    {
        var c = FactorizeConfigLoader.Parse(json, "f.json", "/base");
        var back = FactorizeConfigLoader.Parse(FactorizeConfigWriter.ToJson(c), "config.json", "/elsewhere");
        Assert.That(back.Data is FilesSpec f ? f with { Files = [] } : back.Data,
            Is.EqualTo(c.Data is FilesSpec g ? g with { Files = [] } : c.Data));
        if (c.Data is FilesSpec files) Assert.That(((FilesSpec)back.Data).Files, Is.EqualTo(files.Files), "paths are written absolute");
        Assert.That(back.Sae, Is.EqualTo(c.Sae));
        Assert.That(back.Train, Is.EqualTo(c.Train));
        Assert.That((back.Metadata, back.Format), Is.EqualTo((c.Metadata, c.Format)));
    }

    [Test]
    public void MetadataIsOptionalAndDefaultsToSaeLensLayout()
    {
        var c = FactorizeConfigLoader.Parse(Synthetic, "f.json", "/base");
        Assert.That((c.Metadata, c.Format), Is.EqualTo((Runner.Formats.DictionaryMetadata.None, Runner.Formats.DictionaryFormat.SaeLens)));
        var m = FactorizeConfigLoader.Parse(Synthetic.Replace("\"train\"", "\"metadata\": { \"model_name\": \"pythia-70m\", \"context_size\": 512 }, \"train\""),
            "f.json", "/base").Metadata!;
        Assert.That((m.ModelName, m.ContextSize, m.HookName, m.PrependBos), Is.EqualTo(("pythia-70m", (int?)512, (string?)null, (bool?)null)));
    }

    [TestCase("\"metadata\": { \"model\": \"gpt2\" }", "f.json: \"metadata\": unknown key \"model\"; valid keys: context_size, dataset_path, hook_head_index, hook_name, model_name, prepend_bos")]
    [TestCase("\"metadata\": { \"context_size\": \"128\" }", "\"context_size\" must be an integer in [1, 2147483647], found the string \"128\"")]
    [TestCase("\"metadata\": { \"hook_head_index\": -1 }", "\"hook_head_index\" is -1; valid: an integer in [0, 2147483647]")]
    [TestCase("\"metadata\": { \"prepend_bos\": \"yes\" }", "\"prepend_bos\" must be true or false")]
    [TestCase("\"metadata\": { \"hook_name\": 3 }", "\"hook_name\" must be a non-empty string, found the number 3")]
    [TestCase("\"metadata\": [1]", "\"metadata\" must be an object")]
    [TestCase("\"format\": \"hf\"", "\"format\" is the string \"hf\"; valid: \"saelens\" | \"sparsify\"")]
    public void BadMetadataOrFormatIsNamed(string entry, string expected)
    {
        Assert.That(ErrorOf(Synthetic.Replace("\"train\"", entry + ", \"train\"")), Does.Contain(expected));
    }

    [Test]
    public void SparsifyHoldsTopKDictionariesOnly()
    {
        const string json = """{ "data": { "synthetic": { "d": 16 } }, "sae": { "architecture": "relu", "d_sae": 64 }, "format": "sparsify" }""";
        Assert.That(ErrorOf(json), Does.Contain("\"format\" is \"sparsify\" and sae.architecture is \"relu\"").And.Contain("TopK dictionaries only"));
    }

    [TestCase("""{ "files": ["a/*.npy", "b.npy"] }""", "Npy")]
    [TestCase("""{ "files": ["acts.safetensors"], "tensor": "x" }""", "SafeTensors")]
    [TestCase("""{ "files": ["cache/data-00000-of-00001.arrow"] }""", "Arrow")]
    public void WithoutAFormatTheFilesExtensionNamesIt(string data, string format)
    {
        var c = FactorizeConfigLoader.Parse($$"""{ "data": {{data}}, "sae": { "architecture": "relu", "d_sae": 8 } }""", "f.json", "/base");
        Assert.That(((FilesSpec)c.Data).Format.ToString(), Is.EqualTo(format));
    }

    [Test]
    public void WithoutAFormatFilesOfNoKnownExtensionAreAnError()
    {
        var json = """{ "data": { "files": ["a.bin", "b.npy"] }, "sae": { "architecture": "relu", "d_sae": 8 } }""";
        Assert.That(ErrorOf(json), Does.Contain("\"format\" is missing and the files' extensions (.bin, .npy) do not name one"));
    }
}
