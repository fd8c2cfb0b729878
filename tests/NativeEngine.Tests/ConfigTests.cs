using NativeEngine.Interop;
using NativeEngine.Runner.Configs;

namespace NativeEngine.Tests;

public class ConfigTests
{
    private const string Minimal = """
        // comments are allowed
        { "model": "relu_output", "n_features": 5, "n_hidden": 2, "n_instances": 3, "feature_probability": 0.1, }
        """;

    private static string With(string extra) =>
        $$"""{ "model": "relu_output", "n_features": 5, "n_hidden": 2, "n_instances": 3, "feature_probability": 0.1, {{extra}} }""";

    private static string ErrorOf(string json) =>
        Assert.Throws<ConfigException>(() => ToyConfigLoader.Parse(json, "test.json"))!.Message;

    [Test]
    public void DefaultsAreTheNotebooks()
    {
        var c = ToyConfigLoader.Parse(Minimal, "test.json");
        Assert.That(c.BatchSize, Is.EqualTo(1024));
        Assert.That(c.Steps, Is.EqualTo(10_000));
        Assert.That(c.Lr, Is.EqualTo(1e-3f));
        Assert.That(c.WeightDecay, Is.EqualTo(0.01f));
        Assert.That(c.Optimizer, Is.EqualTo(OptimizerKind.AdamW));
        Assert.That(c.Seed, Is.EqualTo(0UL));
        Assert.That(c.Importance, Is.All.EqualTo(1f));
        Assert.That(c.FeatureProbability, Has.Length.EqualTo(3 * 5).And.All.EqualTo(0.1f));
        Assert.That(c.L1, Is.EqualTo(new[] { 0f, 0f, 0f }));
        Assert.That(c.Settings.Select(s => s.Instances.Single()), Is.EqualTo(new[] { 0, 1, 2 }));
        Assert.That(c.PolysemanticityThreshold, Is.EqualTo(0.3));
    }

    [Test]
    public void ImportanceRatioAndGeomspaceExpand()
    {
        var c = ToyConfigLoader.Parse(With("\"importance\": 0.9").Replace("\"feature_probability\": 0.1", "\"feature_probability\": {\"geomspace\": [1, 0.01]}"), "t");
        Assert.That(c.Importance, Is.EqualTo(new[] { 1f, 0.9f, 0.81f, 0.729f, 0.6561f }).Within(1e-6));
        Assert.That(c.Settings.Select(s => s.FeatureProbability), Is.EqualTo(new[] { 1.0, 0.1, 0.01 }).Within(1e-6));
        Assert.That(c.InstanceProbability(2).ToArray(), Is.All.EqualTo(0.01f).Within(1e-8));
    }

    [Test]
    public void UnknownKeyIsNamedWithTheValidOnes()
    {
        var message = ErrorOf(With("\"learning_rate\": 0.1"));
        Assert.That(message, Does.Contain("unknown key \"learning_rate\"").And.Contain("lr").And.Contain("test.json"));
    }

    [TestCase("\"n_features\": \"five\"", "\"n_features\" must be an integer", TestName = "wrong type")]
    [TestCase("\"lr\": -1", "\"lr\" is -1; valid: a number > 0", TestName = "negative lr")]
    [TestCase("\"optimizer\": \"sgd\"", "\"optimizer\" is the string \"sgd\"; valid: \"adamw\" | \"adam\"", TestName = "unknown optimizer")]
    [TestCase("\"batch_size\": 0", "\"batch_size\" is 0; valid: an integer in [1,", TestName = "zero batch")]
    [TestCase("\"importance\": [1, 2]", "\"importance\" has 2 values; n_features is 5", TestName = "short importance")]
    [TestCase("\"seed\": -3", "\"seed\" must be an integer in [0,", TestName = "negative seed")]
    public void BadValueIsNamed(string entry, string expected)
    {
        var json = With(entry).Replace("\"n_features\": 5, ", entry.StartsWith("\"n_features\"") ? "" : "\"n_features\": 5, ");
        Assert.That(ErrorOf(json), Does.Contain(expected));
    }

    [TestCase("1.5", "\"feature_probability\" is 1.5; valid: a number in (0, 1]")]
    [TestCase("[0.1, 0.2]", "\"feature_probability\" has 2 entries; n_instances is 3")]
    [TestCase("[0.1, [0.2, 0.2], 0.3]", "\"feature_probability[1]\" has 2 values; n_features is 5")]
    [TestCase("[0.1, 0.2, [0.2, 0.2, 0.2, 0.2, 0]]", "\"feature_probability[2][4]\" is 0; valid: a number in (0, 1]")]
    [TestCase("{\"geomspace\": [1]}", "geomspace must be [start, stop]")]
    [TestCase("{\"linspace\": [1, 0.1]}", "test.json: \"feature_probability\": missing required key \"geomspace\"")]
    [TestCase("{\"geomspace\": [1, 0.1], \"count\": 3}", "test.json: \"feature_probability\": unknown key \"count\"; valid keys: geomspace")]
    [TestCase("\"often\"", "\"feature_probability\" must be a number in (0, 1]")]
    public void BadFeatureProbabilityIsNamed(string value, string expected)
    {
        var json = Minimal.Replace("\"feature_probability\": 0.1", $"\"feature_probability\": {value}");
        Assert.That(ErrorOf(json), Does.Contain(expected));
    }

    [Test]
    public void MissingRequiredKeyIsNamed()
    {
        Assert.That(ErrorOf("{\"model\": \"linear\"}"), Does.Contain("missing required key \"n_features\""));
        Assert.That(ErrorOf("{}"), Does.Contain("missing required key \"model\"").And.Contain("\"linear\" | \"relu_output\""));
    }

    [Test]
    public void InvalidJsonIsReportedWithTheSource()
    {
        Assert.That(ErrorOf("{ \"model\": "), Does.StartWith("test.json: not valid JSON"));
    }

    [TestCase("\"importance\": 0.7, \"optimizer\": \"adam\", \"seed\": 12, \"steps\": 77, \"l1\": [0, 0.1, 0.2]")]
    [TestCase("\"feature_sets\": [{\"kind\": \"anticorrelated\", \"features\": [3, 1]}], \"polysemanticity_threshold\": 0.2")]
    public void ResolvedConfigReadsBackToTheSameRun(string extra)
    {
        AssertRoundTrip(ToyConfigLoader.Parse(With(extra), "t"));
    }

    [Test]
    public void ResolvedSweepReadsBackToTheSameRun()
    {
        AssertRoundTrip(ToyConfigLoader.Parse(Sweep("\"feature_probability\": {\"geomspace\": [1, 0.01, 4]}, \"importance_ratio\": [0.5, 2], \"repeats\": 2, \"keep\": \"all\""), "t"));
        AssertRoundTrip(ToyConfigLoader.Parse(Sweep("\"l1\": [0, 0.01]").Replace("\"sweep\"", "\"feature_probability\": 0.2, \"sweep\""), "t"));
    }

    private static void AssertRoundTrip(ToyConfig original)
    {
        var again = ToyConfigLoader.Parse(ToyConfigWriter.ToJson(original), "resolved");
        Assert.That(ToyConfigWriter.ToJson(again), Is.EqualTo(ToyConfigWriter.ToJson(original)));
        Assert.That(again.ImportancePerInstance(), Is.EqualTo(original.ImportancePerInstance()));
        Assert.That(again.FeatureProbability, Is.EqualTo(original.FeatureProbability));
        Assert.That(again.L1, Is.EqualTo(original.L1));
        Assert.That(again.Settings.Select(s => (s.FeatureProbability, s.ImportanceRatio, s.L1, string.Join(",", s.Instances))),
            Is.EqualTo(original.Settings.Select(s => (s.FeatureProbability, s.ImportanceRatio, s.L1, string.Join(",", s.Instances)))));
    }

    private static string Sweep(string body) =>
        $$"""{ "model": "relu_output", "n_features": 2, "n_hidden": 1, "importance": [1, 1], "sweep": { {{body}} } }""";

    [Test]
    public void SweepExpandsEveryCombinationIntoConsecutiveRepeats()
    {
        var c = ToyConfigLoader.Parse(Sweep("\"feature_probability\": [1, 0.1], \"importance_ratio\": {\"geomspace\": [0.1, 10, 3]}, \"l1\": [0, 0.5], \"repeats\": 2"), "t");
        Assert.That(c.NInstances, Is.EqualTo(2 * 3 * 2 * 2));
        Assert.That(c.Settings, Has.Length.EqualTo(12));
        // Order: feature_probability, then importance_ratio, then l1; repeats are consecutive instances.
        Assert.That(c.Settings[0].Instances, Is.EqualTo(new[] { 0, 1 }));
        Assert.That((c.Settings[1].FeatureProbability, c.Settings[1].ImportanceRatio, c.Settings[1].L1), Is.EqualTo((1.0, 0.1f, 0.5f)));
        Assert.That(c.Settings[2].ImportanceRatio, Is.EqualTo(1.0).Within(1e-6));
        Assert.That(c.Settings[11].Instances, Is.EqualTo(new[] { 22, 23 }));
        Assert.That(c.L1[3], Is.EqualTo(0.5f));
        Assert.That(c.InstanceProbability(23).ToArray(), Is.EqualTo(new[] { 0.1f, 0.1f }));
        var importance = c.ImportancePerInstance();
        Assert.That(importance[2 * 11], Is.EqualTo(1f), "the first feature keeps its importance");
        Assert.That(importance[2 * 11 + 1], Is.EqualTo(10f).Within(1e-5), "the ratio multiplies the last feature's");
        Assert.That(c.Sweep!.KeepAll, Is.False, "keep defaults to best");
    }

    [TestCase("\"feature_probability\": [0.1], \"repeats\": 0", "\"repeats\" is 0; valid: an integer in [1,")]
    [TestCase("\"feature_probability\": []", "\"feature_probability\" is empty")]
    [TestCase("\"feature_probability\": [0.1, 2]", "\"feature_probability[1]\" is 2; valid: a number in (0, 1]")]
    [TestCase("\"importance_ratio\": {\"geomspace\": [0.1, 10]}", "geomspace must be [start, stop, count]")]
    [TestCase("\"importance_ratio\": [1], \"keep\": \"first\"", "\"keep\" is the string \"first\"; valid: \"best\" | \"all\"")]
    [TestCase("\"repeats\": 3", "sweeps nothing")]
    [TestCase("\"importance_ratio\": [2]", "\"feature_probability\" is missing: give it at the top level or sweep it")]
    public void BadSweepIsNamed(string body, string expected)
    {
        Assert.That(ErrorOf(Sweep(body)), Does.Contain(expected));
    }

    [Test]
    public void SweepRefusesWhatItAlsoSets()
    {
        Assert.That(ErrorOf(Sweep("\"feature_probability\": [0.5]").Replace("\"sweep\"", "\"feature_probability\": 0.2, \"sweep\"")),
            Does.Contain("\"feature_probability\" is swept under \"sweep\"; remove the top-level"));
        Assert.That(ErrorOf(Sweep("\"feature_probability\": [0.5, 0.1], \"repeats\": 2").Replace("\"sweep\"", "\"n_instances\": 3, \"sweep\"")),
            Does.Contain("\"n_instances\" is 3 but the sweep makes 4 instances"));
    }

    [Test]
    public void FeatureSetsAreRead()
    {
        var c = ToyConfigLoader.Parse(With("\"feature_sets\": [{\"kind\": \"correlated\", \"features\": [0, 1]}, {\"kind\": \"anticorrelated\", \"features\": [4, 2, 3]}]"), "t");
        Assert.That(c.FeatureSets.Select(s => s.Kind), Is.EqualTo(new[] { FeatureSetKind.Correlated, FeatureSetKind.Anticorrelated }));
        Assert.That(c.SetOfFeature(), Is.EqualTo(new[] { 0, 0, 1, 1, 1 }));
    }

    [TestCase("[{\"kind\": \"correlated\", \"features\": [0]}]", "must be an array of at least 2 feature indices")]
    [TestCase("[{\"kind\": \"correlated\", \"features\": [0, 5]}]", "\"features[1]\" is 5; valid: an integer feature index in [0, 4]")]
    [TestCase("[{\"kind\": \"together\", \"features\": [0, 1]}]", "\"kind\" is the string \"together\"; valid: \"correlated\" | \"anticorrelated\"")]
    [TestCase("[{\"kind\": \"correlated\", \"features\": [0, 1]}, {\"kind\": \"correlated\", \"features\": [1, 2]}]", "lists feature 1, which is already in feature_sets[0]")]
    public void BadFeatureSetIsNamed(string sets, string expected)
    {
        Assert.That(ErrorOf(With($"\"feature_sets\": {sets}")), Does.Contain(expected));
    }

    [Test]
    public void FeatureSetMembersMustShareTheirProbability()
    {
        var json = Minimal.Replace("\"feature_probability\": 0.1", "\"feature_probability\": [0.1, [0.1, 0.2, 0.1, 0.1, 0.1], 0.1], \"feature_sets\": [{\"kind\": \"correlated\", \"features\": [0, 1]}]");
        Assert.That(ErrorOf(json), Does.Contain("feature 1 has feature_probability 0.2 in instance 1 but feature 0 has 0.1"));
    }
}
