using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

/// <summary>The SAELens layout both ways, checked against <see cref="SaeLensRules"/> (SAELens's loader re-expressed):
/// what the engine writes loads through SAELens 6's current path for every architecture, and what the engine reads
/// of every cfg generation encodes as SAELens would, or is refused by name.</summary>
public class SaeLensTests
{
    private const int D = 6, M = 10;

    internal static float[] Random(Random rng, int count, double scale = 1, double shift = 0) =>
        Enumerable.Range(0, count).Select(_ => (float)(shift + scale * (rng.NextDouble() * 2 - 1))).ToArray();

    /// <summary>A dictionary of the architecture with random weights; b_enc leans positive so codes are non-zero.</summary>
    internal static SaeDictionary RandomDictionary(SaeArchitecture architecture, int seed = 1)
    {
        var rng = new Random(seed);
        float[]? threshold = architecture switch
        {
            SaeArchitecture.JumpRelu => Random(rng, M, 0.2, 0.3),
            SaeArchitecture.BatchTopK or SaeArchitecture.MatryoshkaBatchTopK => Enumerable.Repeat(0.25f, M).ToArray(),
            _ => null,
        };
        var dict = new SaeDictionary(D, M, architecture,
            architecture is SaeArchitecture.TopK || SaeModelSpec.SelectsOverBatch(architecture) ? 3 : null,
            Random(rng, D * M), Random(rng, M, 0.3, 0.2), Random(rng, M * D), Random(rng, D, 0.5), threshold);
        if (architecture != SaeArchitecture.MatchingPursuit) return dict;
        // Unit decoder rows, as training keeps them; the tied encoder; a few steps at most.
        var wDec = dict.WDec.ToArray();
        for (var j = 0; j < M; j++)
        {
            var norm = (float)Math.Sqrt(Enumerable.Range(0, D).Sum(i => (double)wDec[j * D + i] * wDec[j * D + i]));
            for (var i = 0; i < D; i++) wDec[j * D + i] /= norm;
        }
        var wEnc = new float[D * M];
        for (var j = 0; j < M; j++)
            for (var i = 0; i < D; i++) wEnc[i * M + j] = wDec[j * D + i];
        return dict with { WDec = wDec, WEnc = wEnc, BEnc = new float[M], Pursuit = new MatchingPursuitSettings(0.05, 4, true) };
    }

    private static readonly DictionaryMetadata Origin = new("gpt2", "blocks.3.hook_resid_post", null, 128, true, "Skylion007/openwebtext");

    internal static (double[] Codes, double[] Reconstruction) Engine(SaeDictionary dict, float[] x)
    {
        var encoder = new DictionaryEncoder(dict);
        var tokens = x.Length / dict.DIn;
        var codes = new double[tokens * dict.DSae];
        var reconstruction = new double[tokens * dict.DIn];
        var code = new float[dict.DSae];
        for (var t = 0; t < tokens; t++)
        {
            encoder.Encode(x.AsSpan(t * dict.DIn, dict.DIn), code);
            for (var j = 0; j < dict.DSae; j++) codes[t * dict.DSae + j] = code[j];
            for (var i = 0; i < dict.DIn; i++)
            {
                double sum = dict.BDec[i];
                for (var j = 0; j < dict.DSae; j++) sum += (double)code[j] * dict.WDec[j * dict.DIn + i];
                reconstruction[t * dict.DIn + i] = sum;
            }
        }
        return (codes, reconstruction);
    }

    internal static void AssertSameEncoding((double[] Codes, double[] Reconstruction) expected, (double[] Codes, double[] Reconstruction) actual)
    {
        Assert.That(actual.Codes, Is.EqualTo(expected.Codes).Within(1e-4), "codes");
        Assert.That(actual.Reconstruction, Is.EqualTo(expected.Reconstruction).Within(1e-4), "reconstruction");
        Assert.That(expected.Codes.Count(c => c != 0), Is.GreaterThan(0), "the inputs make some latents fire");
    }

    [TestCase(SaeArchitecture.TopK, "topk", "TopKSAE")]
    [TestCase(SaeArchitecture.BatchTopK, "jumprelu", "JumpReLUSAE")]
    [TestCase(SaeArchitecture.MatryoshkaBatchTopK, "jumprelu", "JumpReLUSAE")]
    [TestCase(SaeArchitecture.MatchingPursuit, "matching_pursuit", "MatchingPursuitSAE")]
    [TestCase(SaeArchitecture.Relu, "standard", "StandardSAE")]
    [TestCase(SaeArchitecture.JumpRelu, "jumprelu", "JumpReLUSAE")]
    public void EveryArchitectureWrittenLoadsThroughSaeLensCurrentPathAndEncodesTheSame(SaeArchitecture architecture, string name, string saeClass)
    {
        var dir = TestSupport.TempDirectory("saelens-" + name);
        var dict = RandomDictionary(architecture);
        SaeLens.Write(dir, dict, Origin, [("trained_with", "nativeengine"), ("tokens", 204800L), ("scale", 1.5)]);

        var loaded = SaeLensRules.LoadFromDisk(dir);
        Assert.That((loaded.Architecture, loaded.ClassName), Is.EqualTo((name, saeClass)));
        Assert.That((loaded.DIn, loaded.DSae), Is.EqualTo((D, M)));
        if (architecture == SaeArchitecture.TopK) Assert.That(loaded.Fields["k"], Is.EqualTo(3L));
        if (architecture == SaeArchitecture.MatchingPursuit)
            Assert.That((loaded.Fields["residual_threshold"], loaded.Fields["max_iterations"], loaded.Fields["stop_on_duplicate_support"]),
                Is.EqualTo((0.05, 4L, true)), "the stopping rules under SAELens's keys");
        var metadata = loaded.Metadata;
        Assert.That(metadata["model_name"].GetString(), Is.EqualTo("gpt2"));
        Assert.That(metadata["hook_name"].GetString(), Is.EqualTo("blocks.3.hook_resid_post"));
        Assert.That(metadata["context_size"].GetInt32(), Is.EqualTo(128));
        Assert.That(metadata["prepend_bos"].GetBoolean(), Is.True);
        Assert.That(metadata["dataset_path"].GetString(), Is.EqualTo("Skylion007/openwebtext"));
        Assert.That(metadata["tokens"].ValueKind, Is.EqualTo(JsonValueKind.Number), "numbers stay numbers");
        Assert.That(metadata["tokens"].GetInt64(), Is.EqualTo(204800));
        Assert.That(metadata["trained_with"].GetString(), Is.EqualTo("nativeengine"), "our keys survive the load");
        Assert.That(metadata.ContainsKey("hook_head_index"), Is.False, "keys not given are not written");

        var x = Random(new Random(9), 40 * D, 2);
        AssertSameEncoding(SaeLensRules.Encode(loaded, x), Engine(dict, x));
        var back = SaeLens.Read(dir);
        AssertSameEncoding(SaeLensRules.Encode(loaded, x), Engine(back, x));
        Assert.That(back.Architecture, Is.EqualTo(SaeModelSpec.SelectsOverBatch(architecture) ? SaeArchitecture.JumpRelu : architecture));
        Assert.That(back.Pursuit, Is.EqualTo(dict.Pursuit));
    }

    [Test]
    public void TheFormerLayoutFailsTheRulesWhichIsWhatTheyCatch()
    {
        // Without a 6.x version SAELens converts the cfg as pre-6: batchtopk has no inference class, and a nested
        // metadata object is replaced by the top-level keys.
        var dir = TestSupport.TempDirectory("saelens-former");
        SaeLens.Write(dir, RandomDictionary(SaeArchitecture.BatchTopK), Origin, []);
        var cfgPath = Path.Combine(dir, SaeLens.ConfigFile);
        var cfg = File.ReadAllText(cfgPath);
        File.WriteAllText(cfgPath, cfg.Replace("\"jumprelu\"", "\"batchtopk\"").Replace("\"sae_lens_version\": \"6.0.0\",", ""));
        Assert.That(Assert.Throws<SaeLensRules.LoadFailure>(() => SaeLensRules.LoadFromDisk(dir))!.Message, Does.Contain("'batchtopk'"));
        File.WriteAllText(cfgPath, cfg.Replace("\"sae_lens_version\": \"6.0.0\",", ""));
        Assert.That(SaeLensRules.LoadFromDisk(dir).Metadata.ContainsKey("model_name"), Is.False, "pre-6 conversion drops nested metadata");
    }

    [Test]
    public void HookZDictionariesAreMarkedForReshaping()
    {
        var dir = TestSupport.TempDirectory("saelens-hookz");
        SaeLens.Write(dir, RandomDictionary(SaeArchitecture.Relu), Origin with { HookName = "blocks.2.attn.hook_z", HookHeadIndex = 3 }, []);
        var loaded = SaeLensRules.LoadFromDisk(dir);
        Assert.That(loaded.Fields["reshape_activations"], Is.EqualTo("hook_z"));
        Assert.That(loaded.Metadata["hook_head_index"].GetInt32(), Is.EqualTo(3));
    }

    // A folder as SAELens or its predecessors wrote it: cfg.json verbatim and tensors in the given dtype.
    private static string Folder(string name, string cfg, IEnumerable<Tensor> tensors, string dtype = "F32")
    {
        var dir = TestSupport.TempDirectory("saelens-" + name);
        File.WriteAllText(Path.Combine(dir, SaeLens.ConfigFile), cfg);
        SafeTensors.Write(Path.Combine(dir, SaeLens.WeightsFile), tensors.ToList(), dtype: dtype);
        return dir;
    }

    private static List<Tensor> Weights(SaeDictionary dict, bool withBEnc = true)
    {
        var list = new List<Tensor>
        {
            new("W_enc", [D, M], dict.WEnc), new("W_dec", [M, D], dict.WDec), new("b_dec", [D], dict.BDec),
        };
        if (withBEnc) list.Add(new Tensor("b_enc", [M], dict.BEnc));
        return list;
    }

    private static IEnumerable<TestCaseData> Generations()
    {
        var rng = new Random(3);
        var plain = RandomDictionary(SaeArchitecture.Relu, 5);
        yield return new TestCaseData("standard, 6.x, F32",
            """{"architecture": "standard", "d_in": 6, "d_sae": 10, "dtype": "float32", "apply_b_dec_to_input": true, "normalize_activations": "none", "metadata": {"sae_lens_version": "6.5.1", "hook_name": "blocks.0.hook_resid_pre"}}""",
            Weights(plain), "F32", SaeArchitecture.Relu).SetName("Standard6xF32");
        yield return new TestCaseData("topk, 6.x, decoder-norm rescaling, b_dec not subtracted, F16",
            """{"architecture": "topk", "d_in": 6, "d_sae": 10, "k": 3, "dtype": "float16", "apply_b_dec_to_input": false, "rescale_acts_by_decoder_norm": true, "normalize_activations": "none", "metadata": {"sae_lens_version": "6.18.0"}}""",
            Weights(plain), "F16", SaeArchitecture.TopK).SetName("TopKRescaledNoBDecF16");
        yield return new TestCaseData("jumprelu, 6.x, thresholds some at or below 0, BF16",
            """{"architecture": "jumprelu", "d_in": 6, "d_sae": 10, "dtype": "bfloat16", "sae_lens_version": "6.0.0-rc.0"}""",
            Weights(plain).Append(new Tensor("threshold", [M], Random(rng, M, 0.4, 0.1))).ToList(), "BF16", SaeArchitecture.JumpRelu).SetName("JumpReluBF16");
        yield return new TestCaseData("gated, 6.x",
            """{"architecture": "gated", "d_in": 6, "d_sae": 10, "dtype": "float32", "apply_b_dec_to_input": false, "metadata": {"sae_lens_version": "6.2.0"}}""",
            Weights(plain, withBEnc: false).Concat([new Tensor("b_gate", [M], Random(rng, M, 0.5, 0.2)), new Tensor("b_mag", [M], Random(rng, M, 0.5)),
                new Tensor("r_mag", [M], Random(rng, M, 0.7))]).ToList(), "F32", SaeArchitecture.JumpRelu).SetName("GatedAsJumpRelu");
        yield return new TestCaseData("SAELens 3-5: hook_point, activation_fn_str relu, normalize_activations false",
            """{"d_in": 6, "d_sae": 10, "dtype": "float32", "hook_point": "blocks.0.hook_resid_pre", "hook_point_layer": 0, "activation_fn_str": "relu", "normalize_activations": false, "apply_b_dec_to_input": true, "sae_lens_training_version": "3.13.0", "l1_coefficient": 5}""",
            Weights(plain), "F32", SaeArchitecture.Relu).SetName("Pre6NormalizeFalse");
        yield return new TestCaseData("SAELens 3-5: old-style TopK (activation_fn_str topk with k), no architecture",
            """{"d_in": 6, "d_sae": 10, "dtype": "torch.float32", "hook_point": "blocks.0.hook_resid_pre", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 2}, "normalize_activations": "none", "sae_lens_version": "5.9.1"}""",
            Weights(plain), "F32", SaeArchitecture.TopK).SetName("Pre6OldStyleTopK");
        yield return new TestCaseData("SAELens 2: scaling_factor of ones, normalize_activations null",
            """{"d_in": 6, "d_sae": 10, "dtype": "float32", "architecture": "standard", "normalize_activations": null, "finetuning_scaling_factor": false}""",
            Weights(plain).Append(new Tensor("scaling_factor", [M], Enumerable.Repeat(1f, M).ToArray())).ToList(), "F32", SaeArchitecture.Relu).SetName("Pre6ScalingFactorOnes");
    }

    [TestCaseSource(nameof(Generations))]
    public void EveryCfgGenerationReadsAsSaeLensLoadsIt(string what, string cfg, List<Tensor> tensors, string dtype, SaeArchitecture readAs)
    {
        var dir = Folder("generation", cfg, tensors, dtype);
        var loaded = SaeLensRules.LoadFromDisk(dir);
        var dict = SaeLens.Read(dir);
        Assert.That(dict.Architecture, Is.EqualTo(readAs), what);
        if (readAs == SaeArchitecture.TopK) Assert.That(dict.K, Is.EqualTo((int)(long)loaded.Fields["k"]!));
        var x = Random(new Random(11), 40 * D, 2);
        AssertSameEncoding(SaeLensRules.Encode(loaded, x), Engine(dict, x));
    }

    // What SAELens does with each (loads as a class, or fails), and the engine's refusal naming the key.
    [TestCase("transcoder", """{"architecture": "transcoder", "d_in": 6, "d_sae": 10, "d_out": 6, "dtype": "float32", "apply_b_dec_to_input": false, "metadata": {"sae_lens_version": "6.1.0"}}""",
        "Transcoder", "transcoder")]
    [TestCase("pre-6 normalize true", """{"d_in": 6, "d_sae": 10, "dtype": "float32", "normalize_activations": true}""",
        "StandardSAE", "expected_average_only_in")]
    [TestCase("per-token normalisation", """{"architecture": "standard", "d_in": 6, "d_sae": 10, "dtype": "float32", "normalize_activations": "constant_norm_rescale", "metadata": {"sae_lens_version": "6.1.0"}}""",
        "StandardSAE", "constant_norm_rescale")]
    [TestCase("old topk without k", """{"d_in": 6, "d_sae": 10, "dtype": "float32", "activation_fn_str": "topk"}""",
        "StandardSAE", "activation_fn_kwargs.k")]
    [TestCase("old tanh-relu", """{"d_in": 6, "d_sae": 10, "dtype": "float32", "activation_fn_str": "tanh-relu"}""",
        "StandardSAE", "tanh-relu")]
    [TestCase("topk without k", """{"architecture": "topk", "d_in": 6, "d_sae": 10, "dtype": "float32", "metadata": {"sae_lens_version": "6.1.0"}}""",
        "TopKSAE", "needs \"k\"")]
    [TestCase("batchtopk without threshold", """{"architecture": "batchtopk", "d_in": 6, "d_sae": 10, "k": 3, "dtype": "float32", "metadata": {"sae_lens_version": "6.1.0"}}""",
        "fails", "neither \"threshold\" nor \"topk_threshold\"")]
    [TestCase("boolean normalisation in a 6.x cfg", """{"architecture": "standard", "d_in": 6, "d_sae": 10, "dtype": "float32", "normalize_activations": false, "metadata": {"sae_lens_version": "6.1.0"}}""",
        "fails", "a boolean is the pre-6.0 form")]
    [TestCase("sizes as strings", """{"architecture": "standard", "d_in": "6", "d_sae": 10, "dtype": "float32", "metadata": {"sae_lens_version": "6.1.0"}}""",
        "fails", "\"d_in\" is \"6\"")]
    [TestCase("unknown architecture", """{"architecture": "matryoshka", "d_in": 6, "d_sae": 10, "dtype": "float32", "metadata": {"sae_lens_version": "6.1.0"}}""",
        "fails", "architecture \"matryoshka\"")]
    [TestCase("unknown dtype", """{"architecture": "standard", "d_in": 6, "d_sae": 10, "dtype": "int8", "metadata": {"sae_lens_version": "6.1.0"}}""",
        "fails", "\"dtype\" is \"int8\"")]
    public void WhatCannotBeEvaluatedExactlyIsRefusedByName(string what, string cfg, string saeLens, string message)
    {
        var tensors = Weights(RandomDictionary(SaeArchitecture.Relu));
        var dir = Folder("refused", cfg, tensors);
        if (saeLens == "fails") Assert.Throws<SaeLensRules.LoadFailure>(() => SaeLensRules.LoadFromDisk(dir), what);
        else Assert.That(SaeLensRules.LoadFromDisk(dir).ClassName, Is.EqualTo(saeLens), what);
        var error = Assert.Throws<DataFormatException>(() => SaeLens.Read(dir))!;
        Assert.That(error.Message, Does.Contain(message).And.Contain(SaeLens.ConfigFile), what);
    }

    [Test]
    public void TensorsThatAreNotPartOfTheArchitectureAreNamed()
    {
        var dir = Folder("extra-tensor", """{"architecture": "standard", "d_in": 6, "d_sae": 10, "dtype": "float32", "metadata": {"sae_lens_version": "6.1.0"}}""",
            Weights(RandomDictionary(SaeArchitecture.Relu)).Append(new Tensor("W_skip", [D, D], new float[D * D])));
        Assert.Throws<SaeLensRules.LoadFailure>(() => SaeLensRules.LoadFromDisk(dir));
        Assert.That(Assert.Throws<DataFormatException>(() => SaeLens.Read(dir))!.Message, Does.Contain("\"W_skip\"").And.Contain(SaeLens.WeightsFile));
    }

    [Test]
    public void AFinetunedScalingFactorIsFoldedIntoTheDecoder()
    {
        var dict = RandomDictionary(SaeArchitecture.Relu);
        var scaling = Enumerable.Range(0, M).Select(j => 0.5f + 0.1f * j).ToArray();
        var dir = Folder("scaling", """{"d_in": 6, "d_sae": 10, "dtype": "float32", "finetuning_scaling_factor": true}""",
            Weights(dict).Append(new Tensor("scaling_factor", [M], scaling)));
        var read = SaeLens.Read(dir);
        for (var j = 0; j < M; j++)
            Assert.That(read.WDec.AsSpan(j * D, D).ToArray(), Is.EqualTo(dict.WDec.AsSpan(j * D, D).ToArray().Select(w => w * scaling[j])).Within(1e-6));
    }

    [Test]
    public void ReadingNamesTheFileAndWhatIsWrong()
    {
        var dir = TestSupport.TempDirectory("saelens-bad");
        Assert.That(Assert.Throws<DataFormatException>(() => SaeLens.Read(dir))!.Message, Does.Contain("cfg.json does not exist"));
        SaeLens.Write(dir, RandomDictionary(SaeArchitecture.TopK), DictionaryMetadata.None, []);
        var cfgPath = Path.Combine(dir, SaeLens.ConfigFile);
        File.WriteAllText(cfgPath, File.ReadAllText(cfgPath).Replace("\"d_sae\": 10", "\"d_sae\": 11"));
        Assert.That(Assert.Throws<DataFormatException>(() => SaeLens.Read(dir))!.Message,
            Does.Contain("tensor \"W_enc\" has shape [6, 10]; cfg.json says [6, 11]").And.Contain(SaeLens.WeightsFile));
        File.WriteAllText(cfgPath, "{\"d_in\": 6,");
        Assert.That(Assert.Throws<DataFormatException>(() => SaeLens.Read(dir))!.Message, Does.Contain("not valid JSON"));
    }

    [Test]
    public void WrittenWeightsRoundTripWithTheSaeLensNamesAndShapes()
    {
        var dir = TestSupport.TempDirectory("saelens-roundtrip");
        var sae = RandomDictionary(SaeArchitecture.JumpRelu);
        SaeLens.Write(dir, sae, DictionaryMetadata.None, [], [-1f, -2f, -3f, -4f, -5f, -1f, -2f, -3f, -4f, -5f]);
        var back = SaeLens.Read(dir);
        Assert.That((back.DIn, back.DSae, back.Architecture, back.K), Is.EqualTo((sae.DIn, sae.DSae, sae.Architecture, sae.K)));
        Assert.That(back.WEnc, Is.EqualTo(sae.WEnc));
        Assert.That(back.WDec, Is.EqualTo(sae.WDec));
        Assert.That(back.BEnc, Is.EqualTo(sae.BEnc));
        Assert.That(back.BDec, Is.EqualTo(sae.BDec));
        Assert.That(back.Threshold, Is.EqualTo(sae.Threshold));
        var (tensors, _) = SafeTensors.Read(Path.Combine(dir, SaeLens.WeightsFile));
        Assert.That(tensors.Single(t => t.Name == "W_enc").Shape, Is.EqualTo(new long[] { D, M }), "W_enc is [d_in, d_sae]");
        Assert.That(tensors.Single(t => t.Name == "W_dec").Shape, Is.EqualTo(new long[] { M, D }), "W_dec is [d_sae, d_in]");
        var (sparsity, _) = SafeTensors.Read(Path.Combine(dir, SaeLens.SparsityFile));
        Assert.That(sparsity.Single().Data[..5], Is.EqualTo(new[] { -1f, -2f, -3f, -4f, -5f }));
    }

    [Test]
    public void HalfAndBFloat16TensorsWidenExactly()
    {
        var path = Path.Combine(TestSupport.TempDirectory("safetensors-dtypes"), "t.safetensors");
        float[] values = [0f, 1f, -2.5f, 0.333251953125f, 65504f, 1.5e-5f];
        foreach (var dtype in new[] { "F16", "BF16" })
        {
            SafeTensors.Write(path, [new Tensor("t", [values.Length], values)], dtype: dtype);
            var read = SafeTensors.Read(path).Tensors.Single().Data;
            var expected = values.Select(v => dtype == "F16" ? (float)(Half)v
                : BitConverter.Int32BitsToSingle((int)(((uint)BitConverter.SingleToInt32Bits(v) + 0x7FFF + (((uint)BitConverter.SingleToInt32Bits(v) >> 16) & 1)) & 0xFFFF0000))).ToArray();
            Assert.That(read, Is.EqualTo(expected), dtype);
            Assert.That(read[..3], Is.EqualTo(values[..3]), $"{dtype}: small integers and halves are exact");
        }
    }
}
