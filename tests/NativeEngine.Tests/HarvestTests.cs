using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

/// <summary>`harvest`: a trained toy model's hidden activations, with its ground truth, as factorize reads them.</summary>
public class HarvestTests
{
    [TestCase("relu_output")]
    [TestCase("relu_hidden")]
    public void HarvestedActivationsEqualTheModelsForwardPass(string model)
    {
        var dir = TestSupport.TempDirectory("harvest");
        var config = Path.Combine(dir, "toy.json");
        File.WriteAllText(config, $$"""
            { "model": "{{model}}", "n_features": 12, "n_hidden": 4, "n_instances": 2, "importance": 0.9,
              "feature_probability": [0.5, 0.1], "batch_size": 64, "steps": 50 }
            """);
        var run = Path.Combine(dir, "run");
        Assert.That(TestSupport.RunCli("toy", "--config", config, "--out", run, "--backend", "cpu").Code, Is.EqualTo(0));
        var harvested = Path.Combine(dir, "harvest");
        var (code, output) = TestSupport.RunCli("harvest", "--model", run, "--out", harvested, "--tokens", "300",
            "--instance", "1", "--shard-tokens", "128", "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);

        var shards = Directory.GetFiles(harvested, "hidden_*.npy").Order().ToArray();
        var codeShards = Directory.GetFiles(harvested, "codes_*.npy").Order().ToArray();
        Assert.That(shards, Has.Length.EqualTo(3), "300 tokens in shards of 128");
        var w = SafeTensors.Read(Path.Combine(run, "weights.safetensors")).Tensors.Single(t => t.Name == "W").Data
            .AsSpan(1 * 12 * 4, 12 * 4).ToArray();
        long tokens = 0, active = 0;
        for (var s = 0; s < shards.Length; s++)
        {
            using var hidden = Npy.Open(shards[s]);
            using var codes = Npy.Open(codeShards[s]);
            Assert.That((hidden.D, codes.D, hidden.Tokens), Is.EqualTo((4, 12, codes.Tokens)));
            var h = new float[hidden.Tokens * 4];
            var x = new float[codes.Tokens * 12];
            hidden.Read(0, h);
            codes.Read(0, x);
            for (var t = 0; t < hidden.Tokens; t++)
                for (var k = 0; k < 4; k++)
                {
                    // The forward pass written out independently: h_k = sum_i x_i W[i][k], then ReLU for relu_hidden.
                    double expected = 0;
                    for (var i = 0; i < 12; i++) expected += x[t * 12 + i] * w[i * 4 + k];
                    if (model == "relu_hidden") expected = Math.Max(expected, 0);
                    Assert.That(h[t * 4 + k], Is.EqualTo(expected).Within(1e-5), $"shard {s} token {t} neuron {k}");
                }
            tokens += hidden.Tokens;
            active += x.Count(v => v != 0);
        }
        Assert.That(tokens, Is.EqualTo(300));
        Assert.That(active / (300.0 * 12), Is.EqualTo(0.1).Within(0.03), "instance 1's feature probability");
        var truth = SafeTensors.Read(Path.Combine(harvested, "ground_truth.safetensors")).Tensors;
        Assert.That(truth.Single(t => t.Name == "features").Data, Is.EqualTo(w), "the ground truth is the model's W");
        Assert.That(truth.Single(t => t.Name == "probabilities").Data, Is.All.EqualTo(0.1f));
    }

    [Test]
    public void AMissingModelFolderIsNamed()
    {
        var (code, output) = TestSupport.RunCli("harvest", "--model", "/nonexistent/run", "--out", TestSupport.TempDirectory("h"),
            "--tokens", "10", "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--model /nonexistent/run: a toy run folder holds config.json and weights.safetensors"));
    }
}
