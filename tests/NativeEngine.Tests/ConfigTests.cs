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
        Assert.That(c.FeatureProbability, Is.EqualTo(new[] { 0.1f, 0.1f, 0.1f }));
    }

    [Test]
    public void ImportanceRatioAndGeomspaceExpand()
    {
        var c = ToyConfigLoader.Parse(With("\"importance\": 0.9").Replace("\"feature_probability\": 0.1", "\"feature_probability\": {\"geomspace\": [1, 0.01]}"), "t");
        Assert.That(c.Importance, Is.EqualTo(new[] { 1f, 0.9f, 0.81f, 0.729f, 0.6561f }).Within(1e-6));
        Assert.That(c.FeatureProbability, Is.EqualTo(new[] { 1f, 0.1f, 0.01f }).Within(1e-6));
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
    [TestCase("[0.1, 0.2]", "\"feature_probability\" has 2 values; n_instances is 3")]
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

    [Test]
    public void ResolvedConfigReadsBackToTheSameRun()
    {
        var original = ToyConfigLoader.Parse(With("\"importance\": 0.7, \"optimizer\": \"adam\", \"seed\": 12, \"steps\": 77"), "t");
        var again = ToyConfigLoader.Parse(ToyConfigWriter.ToJson(original), "resolved");
        Assert.That(again.Importance, Is.EqualTo(original.Importance));
        Assert.That(again.FeatureProbability, Is.EqualTo(original.FeatureProbability));
        Assert.That(again with { Importance = original.Importance, FeatureProbability = original.FeatureProbability },
            Is.EqualTo(original));
    }
}
