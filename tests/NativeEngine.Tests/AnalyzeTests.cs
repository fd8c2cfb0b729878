using System.Text.Json;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

/// <summary>`analyze`: the superposition test, the feature curves of a dictionary and the capacity of a sweep.</summary>
public class AnalyzeTests
{
    // ---- superposition-test ----------------------------------------------------------------------------------

    // A sparse, heavy-tailed pair with corr exactly rho0 = 0.5: b = a + √3·c, a and c independent copies of a
    // feature that is U[0,1] with probability p, else 0 (interference from a second feature, as in superposition).
    private static double[] NullRejectionRates(double p, int samples, CorrelationMethod method, int repeats, out double aboveHalf)
    {
        var random = new Random(11);
        double Draw() => random.NextDouble() < p ? random.NextDouble() : 0;
        var a = new double[samples];
        var b = new double[samples];
        var pValues = new List<double>();
        for (var rep = 0; rep < repeats; rep++)
        {
            for (var t = 0; t < samples; t++)
            {
                a[t] = Draw();
                b[t] = a[t] + Math.Sqrt(3) * Draw();
            }
            pValues.Add(SuperpositionTest.TestCorrelation(a, b, 0.5, method).P);
        }
        aboveHalf = pValues.Count(v => v > 0.5) / (double)repeats;
        return [pValues.Count(v => v <= 0.05) / (double)repeats, pValues.Count(v => v <= 0.01) / (double)repeats];
    }

    [TestCase(0.05, 2000)]
    [TestCase(0.01, 10000)]
    public void ThePerFeatureTestIsCalibratedOnSparseHeavyTailedData(double p, int samples)
    {
        // At the boundary of H0_i (corr = rho0) the p-values are close to uniform: 400 repeats put the rejection
        // rate at alpha = 0.05 within ±3 standard errors (±0.033) of 0.05.
        var robust = NullRejectionRates(p, samples, CorrelationMethod.Robust, 400, out var aboveHalf);
        var fisher = NullRejectionRates(p, samples, CorrelationMethod.Fisher, 400, out _);
        TestContext.Out.WriteLine($"p={p}, N={samples}: robust rejects {robust[0]:F3} at 0.05, {robust[1]:F3} at 0.01; " +
                                  $"classical Fisher z {fisher[0]:F3}, {fisher[1]:F3}");
        Assert.That(robust[0], Is.InRange(0.017, 0.083), "robust test at alpha 0.05");
        Assert.That(robust[1], Is.LessThanOrEqualTo(0.03), "robust test at alpha 0.01");
        Assert.That(aboveHalf, Is.InRange(0.4, 0.6), "null p-values spread over [0, 1], not all tiny");
        // Why the default is not the classical Fisher z: its 1/(N-3) variance assumes normal data and is far too
        // small for sparse features, so it rejects true nulls several times too often.
        Assert.That(fisher[0], Is.GreaterThan(0.15), "classical Fisher z is anti-conservative on sparse data");
    }

    [Test]
    public void ThePerFeatureTestHasPowerAndIsConservativeInsideTheNull()
    {
        var random = new Random(5);
        double Draw() => random.NextDouble() < 0.05 ? random.NextDouble() : 0;
        (double Rate, double MeanR) Rate(double scale)
        {
            var a = new double[2000];
            var b = new double[2000];
            int rejections = 0;
            double sum = 0;
            for (var rep = 0; rep < 200; rep++)
            {
                for (var t = 0; t < a.Length; t++)
                {
                    a[t] = Draw();
                    b[t] = a[t] + scale * Draw();
                }
                var test = SuperpositionTest.TestCorrelation(a, b, 0.5, CorrelationMethod.Robust);
                sum += test.R;
                if (test.P <= 0.05) rejections++;
            }
            return (rejections / 200.0, sum / 200);
        }
        // corr = 1/sqrt(1 + s^2): s = 3 gives 0.32 (inside H0), s = 0.75 gives 0.8 (far outside it).
        var inside = Rate(3);
        var outside = Rate(0.75);
        TestContext.Out.WriteLine($"corr 0.32: rejects {inside.Rate:F3} (mean r {inside.MeanR:F3}); corr 0.8: rejects {outside.Rate:F3} (mean r {outside.MeanR:F3})");
        Assert.That(inside.MeanR, Is.EqualTo(1 / Math.Sqrt(10)).Within(0.02));
        Assert.That(inside.Rate, Is.LessThan(0.02));
        Assert.That(outside.Rate, Is.GreaterThan(0.95));
    }

    [Test]
    public void ConstantOutputsGetPValueOne()
    {
        var a = Enumerable.Range(0, 100).Select(i => (double)(i % 7)).ToArray();
        var test = SuperpositionTest.TestCorrelation(a, Enumerable.Repeat(0.25, 100).ToArray(), 0.5, CorrelationMethod.Robust);
        Assert.That((test.P, test.Absent), Is.EqualTo((1.0, true)));
    }

    [Test]
    public void PartialConjunctionAndHolmByHand()
    {
        double[] p = [0.001, 0.2, 0.01, 0.5];
        // sorted 0.001, 0.01, 0.2, 0.5: "fewer than 2 false" gets (4 - 2 + 1) * 0.01.
        Assert.That(SuperpositionTest.PartialConjunction(p, 2), Is.EqualTo(0.03).Within(1e-12));
        Assert.That(SuperpositionTest.PartialConjunction(p, 1), Is.EqualTo(0.004).Within(1e-12));
        Assert.That(SuperpositionTest.PartialConjunction(p, 4), Is.EqualTo(0.5).Within(1e-12));
        Assert.That(SuperpositionTest.PartialConjunction(p, 5), Is.EqualTo(1.0), "more than n: nothing to reject");
        // Holm at 0.05: 0.001 <= 0.05/4, 0.01 <= 0.05/3, 0.2 > 0.05/2.
        Assert.That(SuperpositionTest.HolmCount(p, 0.05), Is.EqualTo(2));
    }

    [Test]
    public void TheGlobalPValueHoldsItsLevelWhenExactlyMFeaturesAreRepresented()
    {
        // n = 10, m = 3: three features are represented (tiny p), seven are true nulls at the boundary (uniform p).
        // H0 "at most 3 represented" is true; it must be rejected at most 5 % of the time.
        var random = new Random(3);
        var rejections = 0;
        const int repeats = 4000;
        for (var rep = 0; rep < repeats; rep++)
        {
            var p = new double[10];
            for (var i = 0; i < 3; i++) p[i] = 1e-12;
            for (var i = 3; i < 10; i++) p[i] = random.NextDouble();
            if (SuperpositionTest.PartialConjunction(p, 3 + 1) <= 0.05) rejections++;
        }
        var rate = rejections / (double)repeats;
        TestContext.Out.WriteLine($"rejection rate {rate:F4} (exact: 1 - (1 - 0.05/7)^7 = {1 - Math.Pow(1 - 0.05 / 7, 7):F4})");
        Assert.That(rate, Is.LessThanOrEqualTo(0.05 + 3 * Math.Sqrt(0.05 * 0.95 / repeats)));
        Assert.That(rate, Is.GreaterThan(0.035), "not needlessly conservative for independent features");
    }

    private static readonly Lazy<string> IntroRun = new(() => TrainToy("intro", """
        { "model": "relu_output", "n_features": 5, "n_hidden": 2, "importance": 0.9,
          "sweep": { "feature_probability": [1.0, 0.05], "repeats": 2 }, "steps": 6000, "seed": 1 }
        """));

    private static string TrainToy(string name, string json)
    {
        var dir = TestSupport.TempDirectory("analyze-" + name);
        var config = Path.Combine(dir, "config.in.json");
        File.WriteAllText(config, json);
        var run = Path.Combine(dir, "run");
        var (code, output) = TestSupport.RunCli("toy", "--config", config, "--out", run, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        return run;
    }

    private static JsonElement ReadJson(string path) => JsonDocument.Parse(File.ReadAllText(path)).RootElement;

    [Test]
    public void RejectsOnAPentagonAndNotOnTwoOrthogonalFeatures()
    {
        // n = 5, m = 2 (I_i = 0.9^i): dense features (p = 1) give two orthogonal features, sparse ones (p = 0.05) a
        // pentagon of all five. The default instances are the best of each setting.
        var (code, output) = TestSupport.RunCli("analyze", "superposition-test", "--model", IntroRun.Value, "--backend", "cpu",
            "--samples", "10000", "--seed", "3");
        Assert.That(code, Is.EqualTo(0), output);
        TestContext.Out.WriteLine(output);
        Assert.That(output, Does.Contain("at most m = 2 features are represented"));
        var instances = ReadJson(Path.Combine(IntroRun.Value, "analysis_superposition_test.json")).GetProperty("instances");
        Assert.That(instances.GetArrayLength(), Is.EqualTo(2), "the best instance of each of the two settings");
        var dense = instances.EnumerateArray().Single(i => i.GetProperty("feature_probability").GetDouble() == 1.0);
        var sparse = instances.EnumerateArray().Single(i => i.GetProperty("feature_probability").GetDouble() == 0.05);

        Assert.That(dense.GetProperty("reject").GetBoolean(), Is.False);
        Assert.That(dense.GetProperty("p_value").GetDouble(), Is.GreaterThan(0.5));
        Assert.That(dense.GetProperty("represented_lower_bound").GetInt32(), Is.EqualTo(2), "the two kept features are significant");
        var denseP = dense.GetProperty("features").EnumerateArray().Select(f => f.GetProperty("p").GetDouble()).ToArray();
        Assert.That(denseP[..2], Is.All.LessThan(1e-6));
        Assert.That(denseP[2..], Is.All.GreaterThan(0.5), "the dropped features are not represented");

        Assert.That(sparse.GetProperty("reject").GetBoolean(), Is.True);
        Assert.That(sparse.GetProperty("p_value").GetDouble(), Is.LessThan(1e-6));
        Assert.That(sparse.GetProperty("represented_lower_bound").GetInt32(), Is.EqualTo(5), "all five features of the pentagon");
        Assert.That(sparse.GetProperty("features").EnumerateArray().Select(f => f.GetProperty("r").GetDouble()),
            Is.All.GreaterThan(0.7));
    }

    [Test]
    public void DoesNotRejectOnASparseLinearModel()
    {
        // The linear model keeps its m = 5 most important features even at p = 0.01, without superposition.
        var run = TrainToy("linear", """
            { "model": "linear", "n_features": 20, "n_hidden": 5, "importance": 0.7, "n_instances": 1,
              "feature_probability": 0.01, "steps": 3000, "seed": 1 }
            """);
        var outFile = Path.Combine(TestSupport.TempDirectory("analyze-out"), "test.json");
        var (code, output) = TestSupport.RunCli("analyze", "superposition-test", "--model", run, "--instance", "0",
            "--backend", "cpu", "--out", outFile);
        Assert.That(code, Is.EqualTo(0), output);
        var result = ReadJson(outFile).GetProperty("instances")[0];
        Assert.That(result.GetProperty("reject").GetBoolean(), Is.False);
        Assert.That(result.GetProperty("p_value").GetDouble(), Is.EqualTo(1.0));
        Assert.That(result.GetProperty("represented_at_alpha").GetInt32(), Is.EqualTo(5));
    }

    [TestCase("linear")]
    [TestCase("relu_output")]
    [TestCase("relu_hidden")]
    [TestCase("abs_value")]
    public void TheForwardPassReproducesTheEnginesLoss(string model)
    {
        // The test's x' comes from a C# forward pass of the saved weights; its importance-weighted MSE on fresh
        // samples must match the loss the engine measured (16 evaluation batches: about 1 % of sampling noise).
        var run = TrainToy("forward-" + model, $$"""
            { "model": "{{model}}", "n_features": 12, "n_hidden": 4, "n_instances": 2, "importance": 0.9,
              "feature_probability": [0.3, 0.05], "steps": 300, "seed": 5 }
            """);
        var trained = TrainedToyModel.Load(run);
        var results = ReadJson(Path.Combine(run, "results.json")).GetProperty("instances");
        using var context = new NativeEngine.Interop.EngineContext(NativeEngine.Interop.Backend.Cpu);
        for (var k = 0; k < 2; k++)
        {
            const int samples = 65536, n = 12;
            var x = trained.SampleInputs(context, k, samples, seed: 99);
            var output = trained.Reconstruct(k, x);
            double loss = 0;
            for (var t = 0; t < samples; t++)
                for (var i = 0; i < n; i++)
                {
                    var diff = output[t * n + i] - trained.Target(x[t * n + i]);
                    loss += Math.Pow(0.9, i) * diff * diff;
                }
            loss /= (double)samples * n;
            var engine = results[k].GetProperty("loss").GetDouble();
            TestContext.Out.WriteLine($"{model} instance {k}: forward pass {loss:G5}, engine {engine:G5}");
            Assert.That(loss, Is.EqualTo(engine).Within(3).Percent, $"{model} instance {k}");
        }
    }

    [Test]
    public void SuperpositionTestErrorsNameTheOptionAndWhatIsValid()
    {
        var (code, output) = TestSupport.RunCli("analyze", "superposition-test", "--model", IntroRun.Value, "--instance", "9", "--backend", "cpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--instance is 9; the model in").And.Contain("has instances 0..3"));
        (code, output) = TestSupport.RunCli("analyze", "superposition-test", "--model", IntroRun.Value, "--alpha", "1.5");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--alpha is 1.5; valid: a level in (0, 1)"));
        (code, output) = TestSupport.RunCli("analyze", "superposition-test", "--model", "/nonexistent/run");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--model /nonexistent/run does not exist"));
        (code, output) = TestSupport.RunCli("analyze", "superposition-test", "--model", IntroRun.Value, "--constant", "2");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("analyze superposition-test does not take --constant"));
        (code, output) = TestSupport.RunCli("analyze", "phase-diagram");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("analyze \"phase-diagram\" is unknown; valid: superposition-test, feature-curves, capacity"));
    }

    // ---- capacity ----------------------------------------------------------------------------------------------

    [Test]
    public void CompressedSensingBoundsByHand()
    {
        // n = 20, m = 5, C = 2: n_max = floor(5 / (2 p (1 + ln 1/p))), capped to [5, 20].
        // p = 0.1: 2 * 0.1 * (1 + 2.302585) = 0.660517, 5 / 0.660517 = 7.57 -> 7.
        Assert.That(CompressedSensing.L1MaxFeatures(20, 5, 0.1), Is.EqualTo(7));
        // p = 0.03: 2 * 0.03 * (1 + 3.506558) = 0.270393 -> 18.49 -> 18.
        Assert.That(CompressedSensing.L1MaxFeatures(20, 5, 0.03), Is.EqualTo(18));
        Assert.That(CompressedSensing.L1MaxFeatures(20, 5, 0.01), Is.EqualTo(20), "44.6, capped to n");
        Assert.That(CompressedSensing.L1MaxFeatures(20, 5, 1.0), Is.EqualTo(5), "2.5, raised to m");
        Assert.That(CompressedSensing.L1MaxFeatures(20, 5, 0.1, 1.0), Is.EqualTo(15), "C = 1: 15.1");
        // l0: m >= 2k, n_max = floor(m / 2p).
        Assert.That(CompressedSensing.L0MaxFeatures(20, 5, 0.1), Is.EqualTo(20), "25, capped");
        Assert.That(CompressedSensing.L0MaxFeatures(20, 5, 0.3), Is.EqualTo(8));
        // All 20 fit where 2 * 20 * p * (1 + ln 1/p) = 5.
        var p = CompressedSensing.L1DensityForAll(20, 5);
        Assert.That(2 * 20 * p * (1 + Math.Log(1 / p)), Is.EqualTo(5).Within(1e-9));
        Assert.That(CompressedSensing.L1MaxFeatures(20, 5, p * 0.999), Is.EqualTo(20));
        Assert.That(CompressedSensing.L1MaxFeatures(20, 5, p * 1.05), Is.LessThan(20));
    }

    [Test]
    public void CapacityRisesAsFeaturesGetSparser()
    {
        var run = TrainToy("capacity", """
            { "model": "relu_output", "n_features": 20, "n_hidden": 5, "importance": 0.7,
              "sweep": { "feature_probability": [1.0, 0.1, 0.01] }, "steps": 3000, "seed": 2 }
            """);
        var (code, output) = TestSupport.RunCli("analyze", "capacity", "--model", run);
        Assert.That(code, Is.EqualTo(0), output);
        TestContext.Out.WriteLine(output);
        var json = ReadJson(Path.Combine(run, "analysis_capacity.json"));
        var points = json.GetProperty("points").EnumerateArray().ToArray();
        Assert.That(points.Select(p => p.GetProperty("feature_probability").GetDouble()), Is.EqualTo(new[] { 1.0, 0.1, 0.01 }).Within(1e-6),
            "densest first");
        var represented = points.Select(p => p.GetProperty("represented").GetInt32()).ToArray();
        Assert.That(represented[0], Is.EqualTo(5), "dense: m features");
        Assert.That(represented[1], Is.GreaterThan(represented[0]));
        Assert.That(represented[2], Is.GreaterThan(represented[1]));
        Assert.That(points[0].GetProperty("superposed").GetInt32(), Is.EqualTo(0), "dense features each get a dimension");
        Assert.That(points[2].GetProperty("superposed").GetInt32(), Is.GreaterThan(5));
        Assert.That(points.Select(p => p.GetProperty("bound_l1").GetInt32()), Is.EqualTo(new[] { 5, 7, 20 }), "the hand-checked bounds");
        Assert.That(points.Select(p => p.GetProperty("bound_l0").GetInt32()), Is.EqualTo(new[] { 5, 20, 20 }));
        Assert.That(json.GetProperty("spearman_represented_vs_sparsity").GetDouble(), Is.EqualTo(1.0).Within(1e-9));
        var svg = File.ReadAllText(Path.Combine(run, "analysis_capacity.svg"));
        Assert.That(svg, Does.Contain("<svg").And.Contain("l1 bound (C = 2)").And.Contain("represented"));
    }

    // ---- feature-curves ----------------------------------------------------------------------------------------

    [Test]
    public void AnOracleDictionaryRecoversBothCurves()
    {
        // Six orthogonal features of known scale s_i and probability p_i in d = 6; the dictionary is their exact
        // inverse (unit decoder rows e_i, encoder the identity, ReLU), so latent i equals s_i x_i.
        const int d = 6;
        double[] scales = [3, 2, 1.5, 1, 0.7, 0.4];
        double[] probabilities = [0.3, 0.2, 0.1, 0.05, 0.02, 0.01];
        var features = new float[d * d];
        var identity = new float[d * d];
        for (var i = 0; i < d; i++)
        {
            features[i * d + i] = (float)scales[i];
            identity[i * d + i] = 1;
        }
        var dict = new SaeDictionary(d, d, NativeEngine.Interop.SaeArchitecture.Relu, null, identity, new float[d], identity, new float[d], null);
        var truth = new GroundTruth("test", features, d, d, probabilities);
        var random = new Random(2);
        IEnumerable<ReadOnlyMemory<float>> Batches()
        {
            while (true)
            {
                var batch = new float[4096 * d];
                for (var t = 0; t < 4096; t++)
                    for (var i = 0; i < d; i++)
                        if (random.NextDouble() < probabilities[i]) batch[t * d + i] = (float)(scales[i] * random.NextDouble());
                yield return batch;
            }
        }
        var statistics = FeatureCurves.Measure(dict, Batches(), 200_000);
        var result = FeatureCurves.Compare(dict, truth, statistics.Density, statistics.MeanWhenFiring, statistics.Tokens, "test");
        Assert.That(result.FractionRecovered, Is.EqualTo(1.0));
        Assert.That(result.Pairs.Select(p => p.Latent), Is.EqualTo(Enumerable.Range(0, d)));
        // 200 000 tokens: the rarest feature fires ~2000 times, a relative error of ~2 %, 0.01 in log10.
        Assert.That(result.DensityLog10Error, Is.LessThan(0.02));
        Assert.That(result.DensitySpearman, Is.EqualTo(1.0).Within(1e-9));
        Assert.That(result.ScaleSpearman, Is.EqualTo(1.0).Within(1e-9));
        Assert.That(result.ScaleRatio, Is.EqualTo(1.0).Within(0.03), "mean activation when firing x decoder norm = 0.5 s_i");
    }

    private const string SyntheticFactorize = """
        { "data": { "synthetic": { "d": 32, "n_features": 64, "probability_decay": 0.95, "seed": 4 } },
          "sae": { "architecture": "topk", "d_sae": 128, "k": 5, "dead_window": 20000 },
          "train": { "tokens": 409600, "batch_size": 512, "lr": 0.002, "warmup_steps": 10 } }
        """;

    [Test]
    public void ASmallDictionaryRecoversTheSyntheticDensityCurve()
    {
        // The synthetic generator's p_i = c * 0.95^i (5 active on average) spans 0.26 down to 0.01, 1.4 decades.
        // Tolerance: the recovered latents' densities within 0.1 in log10 (26 %) of their features' probabilities
        // at the median, and in the same order (Spearman > 0.9).
        var dir = TestSupport.TempDirectory("analyze-curves");
        var config = Path.Combine(dir, "f.json");
        File.WriteAllText(config, SyntheticFactorize);
        var dict = Path.Combine(dir, "dict");
        var (code, output) = TestSupport.RunCli("factorize", "--config", config, "--out", dict, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);

        (code, output) = TestSupport.RunCli("analyze", "feature-curves", "--dict", dict, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        TestContext.Out.WriteLine(output);
        var json = ReadJson(Path.Combine(dict, "analysis_feature_curves.json"));
        Assert.That(json.GetProperty("present_features").GetInt32(), Is.EqualTo(64), "unit-norm features are all present");
        Assert.That(json.GetProperty("fraction_recovered").GetDouble(), Is.GreaterThan(0.75));
        var sparsity = json.GetProperty("sparsity");
        Assert.That(sparsity.GetProperty("median_abs_log10_error").GetDouble(), Is.LessThan(0.1));
        Assert.That(sparsity.GetProperty("spearman").GetDouble(), Is.GreaterThan(0.9));
        Assert.That(sparsity.GetProperty("curve_median_abs_log10_error").GetDouble(), Is.LessThan(0.1));
        var trueCurve = json.GetProperty("true_curve").EnumerateArray().Select(v => v.GetDouble()).ToArray();
        Assert.That(trueCurve[0] / trueCurve[^1], Is.EqualTo(Math.Pow(0.95, -63)).Within(1e-3), "the generator's decay");
        Assert.That(json.GetProperty("importance").GetProperty("note").GetString(), Does.Contain("all equal"),
            "unit-norm features have no importance ranking to recover");

        // Without activations the densities come from factorize's sparsity.safetensors: same curve, no scales.
        File.Delete(Path.Combine(dict, "config.json"));
        var truth = Path.Combine(dir, "truth");
        using (var synthetic = new NativeEngine.Runner.Data.SyntheticActivations(new(32, 64, 0.95, 5, Seed: 4, BatchTokens: 16, Prefetch: false)))
            synthetic.WriteShards(truth, 16, 16);
        var outFile = Path.Combine(dir, "from-file.json");
        (code, output) = TestSupport.RunCli("analyze", "feature-curves", "--dict", dict, "--ground-truth",
            Path.Combine(truth, "ground_truth.safetensors"), "--out", outFile);
        Assert.That(code, Is.EqualTo(0), output);
        var fromFile = ReadJson(outFile);
        Assert.That(fromFile.GetProperty("densities_from").GetString(), Does.Contain("sparsity.safetensors"));
        Assert.That(fromFile.GetProperty("sparsity").GetProperty("median_abs_log10_error").GetDouble(), Is.LessThan(0.1));
        Assert.That(fromFile.GetProperty("importance").GetProperty("note").GetString(), Does.StartWith("not estimated"));
    }

    [Test]
    public void ADictionaryOfAToyModelRecoversTheFeaturesTheModelRepresents()
    {
        // The hybrid path: a toy model (20 features in 5 dimensions at p = 0.03) harvested and factorized. Its
        // dropped features (||W_i|| < 0.5) are not in the activations, so only the represented ones are scored.
        var run = TrainToy("curves-toy", """
            { "model": "relu_output", "n_features": 20, "n_hidden": 5, "importance": 0.8, "n_instances": 1,
              "feature_probability": 0.03, "steps": 3000, "seed": 1 }
            """);
        var dir = TestSupport.TempDirectory("analyze-curves-toy");
        var harvested = Path.Combine(dir, "h");
        var (code, output) = TestSupport.RunCli("harvest", "--model", run, "--out", harvested, "--tokens", "200000", "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        var config = Path.Combine(dir, "f.json");
        File.WriteAllText(config, $$"""
            { "data": { "files": ["{{harvested}}/hidden_*.npy"], "format": "npy" },
              "sae": { "architecture": "topk", "d_sae": 40, "k": 2, "dead_window": 20000 },
              "train": { "tokens": 400000, "batch_size": 512, "lr": 0.002, "warmup_steps": 10 } }
            """);
        var dict = Path.Combine(dir, "dict");
        (code, output) = TestSupport.RunCli("factorize", "--config", config, "--out", dict, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);

        var norms = ToyMetrics.Compute(SafeTensors.Read(Path.Combine(run, "weights.safetensors")).Tensors.Single(t => t.Name == "W").Data, 20, 5).FeatureNorm;
        foreach (var truthOption in new[] { new[] { "--model", run }, ["--ground-truth", Path.Combine(harvested, "ground_truth.safetensors")] })
        {
            var outFile = Path.Combine(dir, $"curves{truthOption[0]}.json");
            (code, output) = TestSupport.RunCli(["analyze", "feature-curves", "--dict", dict, .. truthOption, "--backend", "cpu", "--out", outFile]);
            Assert.That(code, Is.EqualTo(0), output);
            TestContext.Out.WriteLine(output);
            var json = ReadJson(outFile);
            var features = json.GetProperty("features").EnumerateArray().ToArray();
            Assert.That(features.Select(f => f.GetProperty("present").GetBoolean()), Is.EqualTo(norms.Select(v => v > 0.5)),
                $"{truthOption[0]}: present = the model's represented features");
            Assert.That(json.GetProperty("present_features").GetInt32(), Is.GreaterThan(5));
            Assert.That(json.GetProperty("fraction_recovered").GetDouble(), Is.GreaterThan(0.85), truthOption[0]);
            Assert.That(json.GetProperty("sparsity").GetProperty("median_abs_log10_error").GetDouble(), Is.LessThan(0.15), truthOption[0]);
        }
    }

    [Test]
    public void FeatureCurvesErrorsNameTheFileAndWhatIsNeeded()
    {
        var (code, output) = TestSupport.RunCli("analyze", "feature-curves", "--dict", "/nonexistent/dict");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--dict /nonexistent/dict does not exist"));
        var (code2, output2) = TestSupport.RunCli("analyze", "feature-curves");
        Assert.That(code2, Is.EqualTo(2));
        Assert.That(output2, Does.Contain("--dict is required"));
    }
}
