using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;

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
        var data = (SharkeySpec)c.Data;
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
    [TestCase("\"architecture\": \"topk\"", "\"architecture\": \"gated\"", "\"architecture\" is the string \"gated\"; valid: \"topk\" | \"batchtopk\" | \"relu\" | \"jumprelu\" | \"matryoshka_batchtopk\"")]
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

    [Test]
    public void MatryoshkaWidthsAreReadAsSaeLensHasThem()
    {
        var sae = FactorizeConfigLoader.Parse(SaeOf("matryoshka_batchtopk", "\"k\": 4, \"matryoshka_widths\": [8, 32, 64]"), "f.json", "/base").Sae;
        Assert.That((sae.Architecture, sae.K, sae.MatryoshkaWidths), Is.EqualTo((SaeArchitecture.MatryoshkaBatchTopK, 4, new long[] { 8, 32, 64 })));
        // As in SAELens, d_sae is appended when the last width is below it.
        var appended = FactorizeConfigLoader.Parse(SaeOf("matryoshka_batchtopk", "\"k\": 4, \"matryoshka_widths\": [8, 32]"), "f.json", "/base").Sae;
        Assert.That(appended.MatryoshkaWidths, Is.EqualTo(new long[] { 8, 32, 64 }));
        var spec = Factorization.ModelSpec(FactorizeConfigLoader.Parse(SaeOf("matryoshka_batchtopk", "\"k\": 4, \"matryoshka_widths\": [8, 32]"), "f.json", "/base"), 16);
        Assert.That(spec.MatryoshkaWidths, Is.EqualTo(new long[] { 8, 32, 64 }));
        Assert.That((sae.MatryoshkaAuxLoss, spec.MatryoshkaAuxLoss), Is.EqualTo((false, false)));
        // SAELens's use_matryoshka_aux_loss: AuxK per level, carried to the native spec.
        var perLevel = FactorizeConfigLoader.Parse(SaeOf("matryoshka_batchtopk", "\"k\": 4, \"matryoshka_widths\": [8, 32], \"use_matryoshka_aux_loss\": true"), "f.json", "/base");
        Assert.That((perLevel.Sae.MatryoshkaAuxLoss, Factorization.ModelSpec(perLevel, 16).MatryoshkaAuxLoss), Is.EqualTo((true, true)));
    }

    [TestCase("matryoshka_batchtopk", "\"k\": 4", "missing required key \"matryoshka_widths\"")]
    [TestCase("matryoshka_batchtopk", "\"k\": 4, \"matryoshka_widths\": [8, 8, 64]", "\"matryoshka_widths\" has 8 at position 1; valid: an array of strictly increasing integers in [1, d_sae = 64]")]
    [TestCase("matryoshka_batchtopk", "\"k\": 4, \"matryoshka_widths\": [8, 128]", "\"matryoshka_widths\" has 128 at position 1")]
    [TestCase("matryoshka_batchtopk", "\"k\": 4, \"matryoshka_widths\": []", "\"matryoshka_widths\" must be an array of strictly increasing integers")]
    [TestCase("matryoshka_batchtopk", "\"k\": 4, \"matryoshka_widths\": [1, 2, 3, 4, 5, 6, 7, 8]", "has 9 levels with d_sae")]
    [TestCase("matryoshka_batchtopk", "\"matryoshka_widths\": [8]", "missing required key \"k\"")]
    [TestCase("batchtopk", "\"k\": 4, \"matryoshka_widths\": [8]", "\"matryoshka_widths\" is for matryoshka_batchtopk; architecture \"batchtopk\" does not use it")]
    [TestCase("batchtopk", "\"k\": 4, \"use_matryoshka_aux_loss\": true", "\"use_matryoshka_aux_loss\" is for matryoshka_batchtopk; architecture \"batchtopk\" has no levels")]
    [TestCase("matryoshka_batchtopk", "\"k\": 4, \"matryoshka_widths\": [8], \"use_matryoshka_aux_loss\": 1", "\"use_matryoshka_aux_loss\" must be true or false, found")]
    public void BadMatryoshkaWidthsAreNamed(string architecture, string extra, string expected)
    {
        Assert.That(ErrorOf(SaeOf(architecture, extra)), Does.Contain(expected));
    }

    private static string SaeOf(string architecture, string extra) =>
        $$"""{ "data": { "synthetic": { "d": 16 } }, "sae": { "architecture": "{{architecture}}", "d_sae": 64, {{extra}} } }""";

    [TestCase("""{ "data": { "synthetic": { "d": 24, "n_features": 40, "correlated": true, "seed": 3 } }, "sae": { "architecture": "batchtopk", "expansion": 4, "k": 3, "normalize_activations": "expected_average" }, "train": { "tokens": 5000, "batch_size": 100, "warmup_steps": 2, "decay_steps": 7, "precision": "bf16" } }""")]
    [TestCase("""{ "data": { "files": ["a/*.bin"], "format": "raw", "dtype": "bfloat16", "d": 12 }, "sae": { "architecture": "jumprelu", "d_sae": 48, "l0_coefficient": 0.25, "dead_window": 1000 } }""")]
    [TestCase("""{ "data": { "files": ["x.safetensors"], "format": "safetensors", "tensor": "acts" }, "sae": { "architecture": "relu", "d_sae": 48, "l1_coefficient": 1.5 }, "train": { "lr": 0.001, "seed": 9 } }""")]
    [TestCase("""{ "data": { "synthetic": { "d": 8 } }, "sae": { "architecture": "topk", "d_sae": 16, "k": 2 }, "format": "sparsify", "metadata": { "model_name": "gpt2", "hook_name": "blocks.3.hook_resid_post", "hook_head_index": 2, "context_size": 128, "prepend_bos": false, "dataset_path": "Skylion007/openwebtext" } }""")]
    [TestCase("""{ "data": { "synthetic": { "d": 8 } }, "sae": { "architecture": "relu", "d_sae": 16 }, "metadata": { "hook_name": "blocks.0.hook_resid_pre", "hook_head_index": null } }""")]
    [TestCase("""{ "data": { "synthetic": { "kind": "synthsaebench", "preset": "16k", "seed": 5, "branching": [3, 4] } }, "sae": { "architecture": "batchtopk", "d_sae": 4096, "k": 25 }, "eval": { "samples": 7000 } }""")]
    [TestCase("""{ "data": { "synthetic": { "kind": "synthsaebench", "n_features": 100, "d": 8, "mutually_exclusive_max_depth": 2 } }, "sae": { "architecture": "topk", "d_sae": 16, "k": 2 } }""")]
    [TestCase("""{ "data": { "synthetic": { "d": 8 } }, "sae": { "architecture": "matryoshka_batchtopk", "d_sae": 64, "k": 4, "matryoshka_widths": [4, 16, 64] } }""")]
    [TestCase("""{ "data": { "synthetic": { "d": 8 } }, "sae": { "architecture": "matryoshka_batchtopk", "d_sae": 64, "k": 4, "matryoshka_widths": [4, 16, 64], "use_matryoshka_aux_loss": true } }""")]
    public void TheWrittenConfigReadsBackToTheSameRun(string json)
    {
        var c = FactorizeConfigLoader.Parse(json, "f.json", "/base");
        var back = FactorizeConfigLoader.Parse(FactorizeConfigWriter.ToJson(c), "config.json", "/elsewhere");
        Assert.That(back.Data is FilesSpec f ? f with { Files = [] } : back.Data,
            Is.EqualTo(c.Data is FilesSpec g ? g with { Files = [] } : c.Data));
        if (c.Data is FilesSpec files) Assert.That(((FilesSpec)back.Data).Files, Is.EqualTo(files.Files), "paths are written absolute");
        Assert.That(back.Sae, Is.EqualTo(c.Sae));
        Assert.That(back.Train, Is.EqualTo(c.Train));
        Assert.That((back.Metadata, back.Format, back.Evaluation), Is.EqualTo((c.Metadata, c.Format, c.Evaluation)));
    }

    // ---- data.synthetic.kind "synthsaebench" ----

    private static string SaeBench(string synthetic) =>
        $$"""{ "data": { "synthetic": { "kind": "synthsaebench", {{synthetic}} } }, "sae": { "architecture": "batchtopk", "d_sae": 64, "k": 5 } }""";

    private static SynthSaeBenchSpec SaeBenchOf(string synthetic) =>
        (SynthSaeBenchSpec)FactorizeConfigLoader.Parse(SaeBench(synthetic), "f.json", "/base").Data;

    [Test]
    public void ThePresetExpandsToEveryValueAndKeysOverrideIt()
    {
        var preset = SynthGeneratorSpec.Preset(SynthPreset.SaeBench16k);
        var plain = SaeBenchOf("\"preset\": \"16k\"");
        Assert.That((plain.Settings, plain.Preset), Is.EqualTo((preset, "16k")));
        var c = FactorizeConfigLoader.Parse(SaeBench("\"preset\": \"16k\""), "f.json", "/base");
        Assert.That(c.D, Is.EqualTo(768));

        var custom = SaeBenchOf("""
            "preset": "16k", "seed": 3, "n_features": 2048, "d": 96, "zipf_exponent": 0.7, "p_min": 0.001, "p_max": 0.3,
            "roots": 16, "branching": [2, 5], "depth": 2, "mutually_exclusive": 0.5, "mutually_exclusive_min_depth": 1,
            "mutually_exclusive_max_depth": 1, "compensation": false, "scale_children_by_parent": false,
            "correlation_rank": 8, "correlation_scale": 0.2, "magnitude_mean_start": 2, "magnitude_mean_end": 1,
            "magnitude_std_mean": 0.1, "magnitude_std_std": 0, "bias_norm": 0, "orthogonalization_steps": 7,
            "orthogonalization_lr": 0.01
            """);
        Assert.That(custom.Settings, Is.EqualTo(preset with
        {
            Seed = 3, NFeatures = 2048, D = 96, ZipfExponent = 0.7, PMin = 0.001, PMax = 0.3, RootNodes = 16, BranchingMin = 2,
            BranchingMax = 5, MaxDepth = 2, MePortion = 0.5, MeMinDepth = 1, MeMaxDepth = 1, Compensate = false,
            ScaleChildren = false, CorrelationRank = 8, CorrelationScale = 0.2, MeanStart = 2, MeanEnd = 1, StdMean = 0.1,
            StdStd = 0, BiasNorm = 0, OrthoSteps = 7, OrthoLr = 0.01,
        }));
        // Without a preset, n_features and d are given and every other value is the 16k preset's.
        var reduced = SaeBenchOf("\"n_features\": 1024, \"d\": 64, \"roots\": 8");
        Assert.That((reduced.Settings, reduced.Preset), Is.EqualTo((preset with { NFeatures = 1024, D = 64, RootNodes = 8 }, (string?)null)));
        Assert.That(SaeBenchOf("\"preset\": \"16k\", \"mutually_exclusive_max_depth\": null").Settings.MeMaxDepth, Is.Null);
        Assert.That(SaeBenchOf("\"preset\": \"16k\", \"branching\": 3").Settings is { BranchingMin: 3, BranchingMax: 3 });
    }

    [TestCase("\"preset\": \"64k\"", "\"preset\" is the string \"64k\"; valid: \"16k\"")]
    [TestCase("\"d\": 64", "missing required key \"n_features\"")]
    [TestCase("\"n_features\": 64", "or give \"preset\": \"16k\"")]
    [TestCase("\"preset\": \"16k\", \"depths\": 3", "unknown key \"depths\"; valid keys: bias_norm, branching, compensation, correlation_rank")]
    [TestCase("\"preset\": \"16k\", \"active_mean\": 3", "unknown key \"active_mean\"")]
    [TestCase("\"preset\": \"16k\", \"p_min\": 0.5", "\"p_min\" is 0.5, not below p_max (0.4); valid: 0 < p_min < p_max <= 1")]
    [TestCase("\"preset\": \"16k\", \"p_max\": 1.5", "\"p_max\" is 1.5; valid: a number in (0, 1]")]
    [TestCase("\"preset\": \"16k\", \"branching\": 1", "\"branching\" is 1; valid: an integer in [2, 65536]")]
    [TestCase("\"preset\": \"16k\", \"branching\": [5, 3]", "\"branching\" is an array of 2; valid: an integer in [2, 65536] or [min, max]")]
    [TestCase("\"preset\": \"16k\", \"mutually_exclusive\": 2", "\"mutually_exclusive\" is 2; valid: a number in [0, 1]")]
    [TestCase("\"preset\": \"16k\", \"mutually_exclusive_min_depth\": 2, \"mutually_exclusive_max_depth\": 1", "\"mutually_exclusive_max_depth\" is 1; valid: an integer in [2, 1048576]")]
    [TestCase("\"preset\": \"16k\", \"compensation\": 1", "\"compensation\" must be true or false")]
    [TestCase("\"preset\": \"16k\", \"orthogonalization_lr\": 0", "\"orthogonalization_lr\" is 0; valid: a number > 0")]
    [TestCase("\"preset\": \"16k\", \"roots\": 20000", "\"roots\" is 20000; valid: an integer in [0, 16384]")]
    [TestCase("\"preset\": \"16k\", \"magnitude_mean_end\": -1", "\"magnitude_mean_end\" is -1; valid: a number > 0")]
    public void BadSynthSaeBenchValueIsNamed(string synthetic, string expected)
    {
        Assert.That(ErrorOf(SaeBench(synthetic)), Does.Contain(expected).And.Contain("f.json: \"data\": \"synthetic\""));
    }

    [TestCase("\"kind\": \"zipf\"", "\"kind\" is the string \"zipf\"; valid: \"sharkey\" | \"synthsaebench\"")]
    [TestCase("\"kind\": \"sharkey\", \"preset\": \"16k\"", "unknown key \"preset\"; valid keys: active_mean, correlated, d, kind, n_features, probability_decay, seed")]
    [TestCase("\"roots\": 4", "unknown key \"roots\"")]
    public void TheKindNamesItsKeys(string synthetic, string expected)
    {
        Assert.That(ErrorOf($$"""{ "data": { "synthetic": { {{synthetic}} } }, "sae": { "architecture": "relu", "d_sae": 64 } }"""),
            Does.Contain(expected));
    }

    [Test]
    public void ExistingSharkeyConfigsReadAsBefore()
    {
        var implicitKind = FactorizeConfigLoader.Parse(Synthetic, "f.json", "/base");
        var explicitKind = FactorizeConfigLoader.Parse(Synthetic.Replace("\"d\": 256", "\"kind\": \"sharkey\", \"d\": 256"), "f.json", "/base");
        Assert.That(explicitKind.Data, Is.EqualTo(implicitKind.Data));
        Assert.That(((SharkeySpec)implicitKind.Data).Generator,
            Is.EqualTo(SynthGeneratorSpec.Sharkey(256, 512, 0.99, 5, 0, 0)));
        var shipped = FactorizeConfigLoader.LoadFile(Path.Combine(TestSupport.RepositoryRoot(), "configs", "factorize", "synthetic_d256.json"));
        Assert.That(shipped.Data, Is.EqualTo(new SharkeySpec(256, 512, 5, 0.99, false, 0)));
    }

    [Test]
    public void EvalSamplesDefaultAndAreRead()
    {
        Assert.That(FactorizeConfigLoader.Parse(Synthetic, "f.json", "/base").Evaluation.Samples, Is.EqualTo(100_000));
        var c = FactorizeConfigLoader.Parse(Synthetic.Replace("\"train\"", "\"eval\": { \"samples\": 5000 }, \"train\""), "f.json", "/base");
        Assert.That(c.Evaluation.Samples, Is.EqualTo(5000));
        Assert.That(ErrorOf(Synthetic.Replace("\"train\"", "\"eval\": { \"tokens\": 5 }, \"train\"")),
            Does.Contain("f.json: \"eval\": unknown key \"tokens\"; valid keys: samples"));
        Assert.That(ErrorOf(Synthetic.Replace("\"train\"", "\"eval\": { \"samples\": 0 }, \"train\"")),
            Does.Contain("\"samples\" is 0; valid: an integer in [1, "));
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

/// <summary>"distributed": {"latent_shards": L}: read, written back, checked against d_sae and the process count.</summary>
public class DistributedConfigTests
{
    private const string Config = """
        { "data": { "synthetic": { "d": 32, "n_features": 64 } },
          "sae": { "architecture": "topk", "d_sae": 96, "k": 4 },
          "train": { "tokens": 4800, "batch_size": 240 },
          "distributed": { "latent_shards": 3 } }
        """;

    [Test]
    public void LatentShardsAreReadAndWrittenBack()
    {
        var c = FactorizeConfigLoader.Parse(Config, "f.json", "/base");
        Assert.That(c.Distributed, Is.EqualTo(new DistributedSpec(3)));
        var again = FactorizeConfigLoader.Parse(FactorizeConfigWriter.ToJson(c), "config.json", "/base");
        Assert.That(again.Distributed, Is.EqualTo(c.Distributed));
        Assert.That(FactorizeConfigWriter.ToJson(c with { Distributed = null }), Does.Not.Contain("distributed"),
            "a one-process config is written as before");
    }

    [TestCase("\"latent_shards\": 3", "\"latent_shards\": 5", "\"distributed\": \"latent_shards\" is 5; it must divide sae.d_sae (96)")]
    [TestCase("\"latent_shards\": 3", "\"latent_shards\": 0", "\"latent_shards\" is 0; valid: an integer in [1, 1048576]")]
    [TestCase("\"latent_shards\": 3", "\"latent_shards\": 3, \"ranks\": 4", "unknown key \"ranks\"")]
    public void BadValueIsNamed(string from, string to, string expected)
    {
        var error = Assert.Throws<ConfigException>(() => FactorizeConfigLoader.Parse(Config.Replace(from, to), "f.json", "/base"))!;
        Assert.That(error.Message, Does.Contain(expected).And.Contain("f.json"));
    }

    [Test]
    public void OneProcessCannotHoldSeveralLatentShards()
    {
        var dir = TestSupport.TempDirectory("one-process-shards");
        var config = Path.Combine(dir, "f.json");
        File.WriteAllText(config, Config);
        var (code, output) = TestSupport.RunCli("factorize", "--config", config, "--out", Path.Combine(dir, "run"), "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("distributed.latent_shards is 3, but this run has 1 process(es)"));
    }
}
