using NativeEngine.Interop;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

/// <summary>The sparsify layout both ways, checked against <see cref="SparsifyRules"/> (sparsify's loader and encoder
/// re-expressed), and the detection of a folder's layout.</summary>
public class SparsifyTests
{
    private static string Folder(string cfg, IEnumerable<Tensor> tensors, string dtype = "F32")
    {
        var dir = TestSupport.TempDirectory("sparsify");
        File.WriteAllText(Path.Combine(dir, Sparsify.ConfigFile), cfg);
        SafeTensors.Write(Path.Combine(dir, Sparsify.WeightsFile), tensors.ToList(), dtype: dtype);
        return dir;
    }

    // sparsify's own tensors for a dictionary: the encoder as an nn.Linear [latents, d_in].
    private static List<Tensor> Tensors(SaeDictionary dict)
    {
        int d = dict.DIn, m = dict.DSae;
        var encoder = new float[m * d];
        for (var i = 0; i < d; i++)
            for (var j = 0; j < m; j++) encoder[j * d + i] = dict.WEnc[i * m + j];
        return [new("encoder.weight", [m, d], encoder), new("encoder.bias", [m], dict.BEnc), new("W_dec", [m, d], dict.WDec), new("b_dec", [d], dict.BDec)];
    }

    [Test]
    public void ATopKDictionaryRoundTripsAndLoadsAsSparsifyLoadsIt()
    {
        var dict = SaeLensTests.RandomDictionary(SaeArchitecture.TopK);
        var dir = TestSupport.TempDirectory("sparsify-roundtrip");
        Sparsify.Write(dir, dict);
        Assert.That(DictionaryFolder.Detect(dir), Is.EqualTo(DictionaryFormat.Sparsify));
        var back = DictionaryFolder.Read(dir);
        Assert.That((back.DIn, back.DSae, back.Architecture, back.K), Is.EqualTo((dict.DIn, dict.DSae, SaeArchitecture.TopK, dict.K)));
        Assert.That((back.WEnc, back.BEnc, back.WDec, back.BDec), Is.EqualTo((dict.WEnc, dict.BEnc, dict.WDec, dict.BDec)));

        var loaded = SparsifyRules.LoadFromDisk(dir);
        Assert.That((loaded.DIn, loaded.NumLatents, loaded.K, loaded.Activation), Is.EqualTo((dict.DIn, dict.DSae, dict.K!.Value, "topk")));
        var x = SaeLensTests.Random(new Random(4), 40 * dict.DIn, 2);
        SaeLensTests.AssertSameEncoding(SparsifyRules.Encode(loaded, x), SaeLensTests.Engine(back, x));
    }

    [TestCase("""{"activation": "topk", "expansion_factor": 2, "normalize_decoder": true, "num_latents": 0, "k": 3, "multi_topk": true, "skip_connection": false, "transcode": false, "d_in": 6}""", "F32")]
    [TestCase("""{"expansion_factor": 2, "normalize_decoder": true, "num_latents": 12, "k": 3, "signed": false, "d_in": 6}""", "BF16")]
    [TestCase("""{"activation": "topk", "num_latents": 12, "k": 3, "d_in": 6, "some_future_key": 1}""", "F16")]
    public void EachConfigVersionReadsAsSparsifyEncodes(string cfg, string dtype)
    {
        var rng = new Random(2);
        var dict = new SaeDictionary(6, 12, SaeArchitecture.TopK, 3, SaeLensTests.Random(rng, 72), SaeLensTests.Random(rng, 12, 0.3, 0.2),
            SaeLensTests.Random(rng, 72), SaeLensTests.Random(rng, 6, 0.5), null);
        var dir = Folder(cfg, Tensors(dict), dtype);
        var loaded = SparsifyRules.LoadFromDisk(dir);
        var read = DictionaryFolder.Read(dir);
        Assert.That((read.DSae, read.K), Is.EqualTo((12, (int?)3)));
        var x = SaeLensTests.Random(new Random(8), 30 * 6, 2);
        SaeLensTests.AssertSameEncoding(SparsifyRules.Encode(loaded, x), SaeLensTests.Engine(read, x));
    }

    [TestCase("""{"activation": "groupmax", "num_latents": 12, "k": 3, "d_in": 6}""", "\"activation\" is \"groupmax\"")]
    [TestCase("""{"num_latents": 12, "k": 3, "signed": true, "d_in": 6}""", "\"signed\" is true")]
    [TestCase("""{"num_latents": 12, "k": 3, "transcode": true, "d_in": 6}""", "\"transcode\" is true")]
    [TestCase("""{"num_latents": 12, "d_in": 6}""", "\"k\" is missing")]
    [TestCase("""{"num_latents": 12, "k": 3}""", "\"d_in\" is missing")]
    [TestCase("""{"num_latents": 12, "k": "3", "d_in": 6}""", "\"k\" is \"3\"")]
    public void WhatIsNotATopKAutoencoderIsRefusedByName(string cfg, string message)
    {
        var dict = new SaeDictionary(6, 12, SaeArchitecture.TopK, 3, new float[72], new float[12], new float[72], new float[6], null);
        var dir = Folder(cfg, Tensors(dict));
        Assert.That(Assert.Throws<DataFormatException>(() => DictionaryFolder.Read(dir))!.Message,
            Does.Contain(message).And.Contain(Sparsify.ConfigFile));
    }

    [Test]
    public void ASkipConnectionIsRefusedAndUnexpectedTensorsAreNamed()
    {
        var dict = new SaeDictionary(6, 12, SaeArchitecture.TopK, 3, new float[72], new float[12], new float[72], new float[6], null);
        var tensors = Tensors(dict).Append(new Tensor("W_skip", [6, 6], new float[36])).ToList();
        var skip = Folder("""{"num_latents": 12, "k": 3, "skip_connection": true, "d_in": 6}""", tensors);
        Assert.That(SparsifyRules.LoadFromDisk(skip).NumLatents, Is.EqualTo(12), "sparsify loads it");
        Assert.That(Assert.Throws<DataFormatException>(() => DictionaryFolder.Read(skip))!.Message, Does.Contain("\"skip_connection\" is true"));
        var stray = Folder("""{"num_latents": 12, "k": 3, "d_in": 6}""", tensors);
        Assert.Throws<SparsifyRules.LoadFailure>(() => SparsifyRules.LoadFromDisk(stray));
        Assert.That(Assert.Throws<DataFormatException>(() => DictionaryFolder.Read(stray))!.Message, Does.Contain("\"W_skip\""));
    }

    [Test]
    public void OnlyTopKHasASparsifyForm()
    {
        foreach (var architecture in new[] { SaeArchitecture.Relu, SaeArchitecture.JumpRelu, SaeArchitecture.BatchTopK })
            Assert.That(Sparsify.WhyNotWritable(architecture), Does.Contain("TopK dictionaries only"));
        Assert.That(Sparsify.WhyNotWritable(SaeArchitecture.TopK), Is.Null);
    }

    [Test]
    public void DetectionNamesWhatAFolderHolds()
    {
        var dir = TestSupport.TempDirectory("layout");
        Assert.That(Assert.Throws<DataFormatException>(() => DictionaryFolder.Detect(dir))!.Message,
            Does.Contain("holds no dictionary").And.Contain(SaeLens.WeightsFile).And.Contain(Sparsify.WeightsFile));
        var dict = SaeLensTests.RandomDictionary(SaeArchitecture.TopK);
        Sparsify.Write(Path.Combine(dir, "layers.3"), dict);
        Sparsify.Write(Path.Combine(dir, "layers.1"), dict);
        Assert.That(Assert.Throws<DataFormatException>(() => DictionaryFolder.Detect(dir))!.Message,
            Does.Contain("its subfolders layers.1, layers.3 do, give one of them"));
        var both = Path.Combine(dir, "layers.1");
        SaeLens.Write(both, dict, DictionaryMetadata.None, []);
        Assert.That(Assert.Throws<DataFormatException>(() => DictionaryFolder.Detect(both))!.Message, Does.Contain("holds both"));
        Assert.That(Assert.Throws<DataFormatException>(() => DictionaryFolder.Detect(Path.Combine(dir, "nope")))!.Message, Does.Contain("does not exist"));
    }
}
