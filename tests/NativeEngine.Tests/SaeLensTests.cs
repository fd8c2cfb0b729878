using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

public class SaeLensTests
{
    private static SaeDictionary Small(string architecture = "topk")
    {
        const int d = 3, m = 5;
        float[] Range(int count, float start) => Enumerable.Range(0, count).Select(i => start + 0.5f * i).ToArray();
        return new SaeDictionary(d, m, SaeLens.Architectures[architecture], architecture is "topk" or "batchtopk" ? 2 : null,
            Range(d * m, -1), Range(m, 0.25f), Range(m * d, 2), Range(d, -3), architecture == "jumprelu" ? Range(m, 0.1f) : null);
    }

    [TestCase("topk")]
    [TestCase("jumprelu")]
    public void DictionaryRoundTripsWithTheSaeLensNamesAndShapes(string architecture)
    {
        var dir = TestSupport.TempDirectory("saelens");
        var sae = Small(architecture);
        SaeLens.Write(dir, sae, new Dictionary<string, string> { ["trained_with"] = "nativeengine" }, [-1f, -2f, -3f, -4f, -5f]);
        var back = SaeLens.Read(dir);
        Assert.That((back.DIn, back.DSae, back.Architecture, back.K), Is.EqualTo((sae.DIn, sae.DSae, sae.Architecture, sae.K)));
        Assert.That(back.WEnc, Is.EqualTo(sae.WEnc));
        Assert.That(back.WDec, Is.EqualTo(sae.WDec));
        Assert.That(back.BEnc, Is.EqualTo(sae.BEnc));
        Assert.That(back.BDec, Is.EqualTo(sae.BDec));
        Assert.That(back.Threshold, Is.EqualTo(sae.Threshold));
        var (tensors, _) = SafeTensors.Read(Path.Combine(dir, SaeLens.WeightsFile));
        Assert.That(tensors.Single(t => t.Name == "W_enc").Shape, Is.EqualTo(new long[] { 3, 5 }), "W_enc is [d_in, d_sae]");
        Assert.That(tensors.Single(t => t.Name == "W_dec").Shape, Is.EqualTo(new long[] { 5, 3 }), "W_dec is [d_sae, d_in]");
        var cfg = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, SaeLens.ConfigFile))).RootElement;
        Assert.That(cfg.GetProperty("apply_b_dec_to_input").GetBoolean(), Is.True);
        Assert.That(cfg.GetProperty("metadata").GetProperty("trained_with").GetString(), Is.EqualTo("nativeengine"));
        var (sparsity, _) = SafeTensors.Read(Path.Combine(dir, SaeLens.SparsityFile));
        Assert.That(sparsity.Single().Data, Is.EqualTo(new[] { -1f, -2f, -3f, -4f, -5f }));
    }

    [Test]
    public void ReadingNamesTheFileAndWhatIsWrong()
    {
        var dir = TestSupport.TempDirectory("saelens-bad");
        Assert.That(Assert.Throws<InvalidDataException>(() => SaeLens.Read(dir))!.Message,
            Does.Contain("cfg.json does not exist"));
        SaeLens.Write(dir, Small(), new Dictionary<string, string>());
        var cfgPath = Path.Combine(dir, SaeLens.ConfigFile);
        File.WriteAllText(cfgPath, File.ReadAllText(cfgPath).Replace("\"d_sae\": 5", "\"d_sae\": 6"));
        Assert.That(Assert.Throws<InvalidDataException>(() => SaeLens.Read(dir))!.Message,
            Does.Contain("tensor \"W_enc\" has shape [3, 5]; cfg.json says [3, 6]").And.Contain(SaeLens.WeightsFile));
        File.WriteAllText(cfgPath, File.ReadAllText(cfgPath).Replace("\"topk\"", "\"gated\""));
        Assert.That(Assert.Throws<InvalidDataException>(() => SaeLens.Read(dir))!.Message,
            Does.Contain("architecture \"gated\" is not one of"));
    }
}
