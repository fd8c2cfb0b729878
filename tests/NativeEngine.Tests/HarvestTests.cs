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
            using var hidden = NpyShard.Open(shards[s]);
            using var codes = NpyShard.Open(codeShards[s]);
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
    public void MoeHarvestIsTheRoutedForwardPassAndReproducesTheModelsLoss()
    {
        var dir = TestSupport.TempDirectory("harvest-moe");
        var config = Path.Combine(dir, "moe.json");
        File.WriteAllText(config, """
            { "n_experts": 3, "top_k": 1, "expert_hidden": 2, "expert_model": "relu_output",
              "router": { "renormalize": false, "noise": "none" }, "n_features": 9, "importance": 0.9,
              "feature_probability": 0.2, "n_instances": 1, "batch_size": 256, "steps": 400, "seed": 3 }
            """);
        var run = Path.Combine(dir, "run");
        var (trainCode, trainOutput) = TestSupport.RunCli("moe", "--config", config, "--out", run, "--backend", "cpu");
        Assert.That(trainCode, Is.EqualTo(0), trainOutput);
        var harvested = Path.Combine(dir, "harvest");
        var (code, output) = TestSupport.RunCli("harvest", "--model", run, "--out", harvested, "--tokens", "8192",
            "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);

        var weights = SafeTensors.Read(Path.Combine(run, "weights.safetensors")).Tensors.ToDictionary(t => t.Name, t => t.Data);
        using var hidden = NpyShard.Open(Path.Combine(harvested, "hidden_00000.npy"));
        using var codes = NpyShard.Open(Path.Combine(harvested, "codes_00000.npy"));
        Assert.That((hidden.D, codes.D, hidden.Tokens), Is.EqualTo((6, 9, 8192L)), "h is the 3 experts' 2 neurons side by side");
        var h = new float[8192 * 6];
        var x = new float[8192 * 9];
        hidden.Read(0, h);
        codes.Read(0, x);
        var (w, gate, b) = (weights["W"], weights["W_gate"], weights["b"]);
        double squaredError = 0;
        var importance = Enumerable.Range(0, 9).Select(i => Math.Pow(0.9, i)).ToArray();
        for (var t = 0; t < 8192; t++)
        {
            // The router written out independently: top-1 of x W_g (no noise, route_bias 0 for this config).
            var logits = Enumerable.Range(0, 3).Select(e => Enumerable.Range(0, 9).Sum(i => (double)x[t * 9 + i] * gate[i * 3 + e])).ToArray();
            var chosen = Array.IndexOf(logits, logits.Max());
            for (var e = 0; e < 3; e++)
                for (var k = 0; k < 2; k++)
                {
                    var expected = e != chosen ? 0 : Enumerable.Range(0, 9).Sum(i => (double)x[t * 9 + i] * w[(e * 9 + i) * 2 + k]);
                    Assert.That(h[t * 6 + e * 2 + k], Is.EqualTo(expected).Within(1e-5), $"token {t} expert {e} neuron {k}");
                }
            // The model's output from h: y_i = g ReLU(W_e,i . h_e + b_e,i) with g the softmax probability of the expert.
            var g = Math.Exp(logits[chosen]) / logits.Sum(Math.Exp);
            for (var i = 0; i < 9; i++)
            {
                var pre = b[chosen * 9 + i] + Enumerable.Range(0, 2).Sum(k => (double)w[(chosen * 9 + i) * 2 + k] * h[t * 6 + chosen * 2 + k]);
                var y = g * Math.Max(pre, 0);
                squaredError += importance[i] * (x[t * 9 + i] - y) * (x[t * 9 + i] - y);
            }
        }
        // The native evaluation's task loss (results.json) on its own fresh batches: the same quantity, so within
        // sampling error of this 8192-token estimate.
        using var results = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "results.json")));
        var nativeLoss = results.RootElement.GetProperty("instances")[0].GetProperty("loss").GetDouble();
        var harvestLoss = squaredError / (8192.0 * 9);
        Assert.That(harvestLoss, Is.EqualTo(nativeLoss).Within(0.1 * nativeLoss), "loss from the harvested h against the native evaluation");

        var truth = SafeTensors.Read(Path.Combine(harvested, "ground_truth.safetensors"));
        var features = truth.Tensors.Single(t => t.Name == "features");
        Assert.That(features.Shape, Is.EqualTo(new long[] { 9, 6 }));
        var home = truth.Metadata["home_expert"].Split(',').Select(int.Parse).ToArray();
        for (var i = 0; i < 9; i++)
            for (var c = 0; c < 6; c++)
                Assert.That(features.Data[i * 6 + c], Is.EqualTo(c / 2 == home[i] ? w[(home[i] * 9 + i) * 2 + c % 2] : 0f),
                    $"feature {i}'s direction lies in its home expert {home[i]}'s block");
    }

    [Test]
    public void AMissingModelFolderIsNamed()
    {
        var (code, output) = TestSupport.RunCli("harvest", "--model", "/nonexistent/run", "--out", TestSupport.TempDirectory("h"),
            "--tokens", "10", "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--model /nonexistent/run: a run folder holds config.json and weights.safetensors"));
    }
}
