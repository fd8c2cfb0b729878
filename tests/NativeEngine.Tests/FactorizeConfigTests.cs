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
        Assert.That(c.Train.Precision, Is.EqualTo("fp32"));
        Assert.That(c.Sae.NormalizeActivations, Is.EqualTo("none"));
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
        Assert.That(files.Dtype, Is.EqualTo("float32"));
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
}
