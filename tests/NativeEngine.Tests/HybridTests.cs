using System.Text.Json;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;

namespace NativeEngine.Tests;

/// <summary>`hybrid`: ordinary, L1 and MoE models of one hidden size, harvested and decoded at several dictionary sizes.</summary>
public class HybridTests
{
    [Test]
    public void RecoveryIsOneToOneAndCountsFeaturesLeftWithoutALatent()
    {
        // Three orthogonal true features in 4 dimensions.
        float[] truth = [1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 3];
        // Two latents, one of them a copy: one-to-one matching cannot give both copies to different features.
        float[] twoCopies = [1, 0, 0, 0, 1, 0, 0, 0];
        var (mmcs, matched) = HybridExperiment.Recovery(truth, twoCopies, 4);
        Assert.That(mmcs, Is.EqualTo(1.0 / 3).Within(1e-12), "feature 0 found, features 1 and 2 not");
        Assert.That(matched, Is.EqualTo(1.0 / 3).Within(1e-12));
        // A permuted, overcomplete dictionary with one spare latent recovers everything.
        float[] permuted = [0, 0, 0, 5, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0];
        Assert.That(HybridExperiment.Recovery(truth, permuted, 4), Is.EqualTo((1.0, 1.0)));
        // Fewer latents than features: the features left over count 0.
        Assert.That(HybridExperiment.Recovery(truth, [0, 1, 0, 0, 0, 0, 0, 1], 4).MatchedCosine, Is.EqualTo(2.0 / 3).Within(1e-12));
    }

    [Test]
    public void ABadExpertCountNamesTheKeyAndWhatIsValid()
    {
        var e = Assert.Throws<ConfigException>(() => HybridConfigLoader.Parse("""
            { "n_features": 10, "n_hidden": 6, "feature_probability": [0.1], "n_experts": 4, "dictionary_sizes": [4] }
            """, "h.json"));
        Assert.That(e!.Message, Does.Contain("\"n_experts\" is 4; n_hidden (6) must divide into experts of equal width"));
    }

    [Test]
    public void TheModelsItBuildsInCodeAreTheConfigsTheLoadersRead()
    {
        var c = HybridConfigLoader.Parse("""
            { "n_features": 12, "n_hidden": 6, "importance": 0.8, "feature_probability": [0.3, 0.05], "l1": 0.02,
              "n_experts": 3, "top_k": 2, "repeats": 2, "steps": 700, "dictionary_sizes": [6, 12], "seed": 4 }
            """, "h.json");
        var dense = ToyConfigLoader.Parse("""
            { "title": "hybrid: ordinary and L1 models", "model": "relu_output", "n_features": 12, "n_hidden": 6,
              "importance": 0.8, "sweep": { "feature_probability": [0.3, 0.05], "l1": [0, 0.02], "repeats": 2 },
              "steps": 700, "seed": 4 }
            """, "dense.json");
        Assert.That(ToyConfigWriter.ToJson(c.DenseConfig()), Is.EqualTo(ToyConfigWriter.ToJson(dense)));
        var moe = MoeConfigLoader.Parse("""
            { "title": "hybrid: mixture of experts", "n_experts": 3, "top_k": 2, "expert_hidden": 2,
              "expert_model": "relu_output", "router": { "renormalize": false, "noise": "none", "load_balance": 0.01, "z_loss": 0.001 },
              "n_features": 12, "importance": 0.8, "sweep": { "feature_probability": [0.3, 0.05], "repeats": 2 },
              "steps": 700, "seed": 4 }
            """, "moe.json");
        Assert.That(MoeConfigWriter.ToJson(c.MoeConfig()), Is.EqualTo(MoeConfigWriter.ToJson(moe)));
        var factorize = c.FactorizeConfig("/data/hidden_*.npy", 12, 0.3);
        var parsed = FactorizeConfigLoader.Parse("""
            { "data": { "files": ["/data/hidden_*.npy"], "format": "npy" },
              "sae": { "architecture": "topk", "d_sae": 12, "k": 4 }, "train": { "tokens": 1048576, "batch_size": 1024,
              "lr": 0.003, "decay_steps": 204, "seed": 4 } }
            """, "f.json", "/");
        Assert.That(FactorizeConfigWriter.ToJson(factorize), Is.EqualTo(FactorizeConfigWriter.ToJson(parsed)));
    }

    [Test]
    public void HybridTrainsHarvestsAndDecodesEveryKindOfModel()
    {
        var dir = TestSupport.TempDirectory("hybrid");
        var config = Path.Combine(dir, "hybrid.json");
        File.WriteAllText(config, """
            { "n_features": 12, "n_hidden": 4, "importance": 0.9, "feature_probability": [0.03], "l1": 0.03,
              "n_experts": 2, "top_k": 1, "steps": 3000, "harvest_tokens": 16384, "dictionary_sizes": [2, 24],
              "sae_tokens": 131072, "sae_batch_size": 512, "seed": 1 }
            """);
        var outDir = Path.Combine(dir, "out");
        var (code, output) = TestSupport.RunCli("hybrid", "--config", config, "--out", outDir, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "hybrid.json")));
        var models = document.RootElement.GetProperty("models").EnumerateArray().ToDictionary(m => m.GetProperty("kind").GetString()!);
        Assert.That(models.Keys, Is.EquivalentTo(new[] { "ordinary", "l1", "moe" }));
        foreach (var (kind, model) in models)
        {
            var represented = model.GetProperty("represented_features").GetInt32();
            var dictionaries = model.GetProperty("dictionaries").EnumerateArray().ToArray();
            Assert.That(dictionaries.Select(d => d.GetProperty("d_sae").GetInt32()), Is.EqualTo(new[] { 2, 24 }), kind);
            Assert.That(represented, Is.GreaterThan(2), $"{kind} represents more features than the small dictionary has latents");
            // Two latents can match at most two features one-to-one.
            Assert.That(dictionaries[0].GetProperty("matched_cosine").GetDouble(), Is.LessThanOrEqualTo(2.0 / represented + 1e-9), kind);
            // With twice as many latents as features, a TopK dictionary finds the model's own directions.
            Assert.That(dictionaries[1].GetProperty("matched_cosine").GetDouble(), Is.GreaterThan(0.9), kind);
            Assert.That(File.Exists(Path.Combine(outDir, "p0.03", kind, "dict_24", "dictionary", "sae_weights.safetensors")), kind);
        }
        // The penalty does its job: fewer features per dimension than the ordinary model, at a higher task loss.
        Assert.That(models["l1"].GetProperty("features_per_dimension").GetDouble(),
            Is.LessThan(models["ordinary"].GetProperty("features_per_dimension").GetDouble()));
        Assert.That(models["l1"].GetProperty("loss").GetDouble(), Is.GreaterThan(models["ordinary"].GetProperty("loss").GetDouble()));
        Assert.That(File.ReadAllText(Path.Combine(outDir, "report.html")), Does.Contain("recovery_p0_03.svg"));
    }
}
