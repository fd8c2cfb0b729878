using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace NativeEngine.Tests;

/// <summary>The command line's conventions: usage errors exit 2 on stderr, help on stdout with an example per verb,
/// no colour or boxes in logs, progress lines with rate and time left, snake_case JSON everywhere.</summary>
public class CliConventionsTests
{
    private const string Toy = """
        { "model": "relu_output", "n_features": 6, "n_hidden": 3, "n_instances": 2, "feature_probability": 0.1,
          "batch_size": 64, "steps": 400 }
        """;

    [Test]
    public void UnknownVerbsAndOptionsExit2WithTheErrorOnStderr()
    {
        foreach (var args in new[] { new[] { "frobnicate" }, ["toy", "--bogus"], ["toy"], ["eval", "--dict"] })
        {
            var (code, output, errors) = TestSupport.RunCliStreams(args);
            Assert.That(code, Is.EqualTo(2), string.Join(" ", args));
            Assert.That(output, Is.Empty, "nothing on stdout");
            Assert.That(errors, Does.Contain("ERROR(S):").And.Contain("Usage: nativeengine"));
        }
        var (_, _, unknown) = TestSupport.RunCliStreams(["frobnicate"]);
        Assert.That(unknown, Does.Contain("Verb 'frobnicate' is not recognized"));
        var (configCode, configOutput, configErrors) = TestSupport.RunCliStreams(["toy", "--config", "/nonexistent.json", "--out", "/tmp/x"]);
        Assert.That((configCode, configOutput), Is.EqualTo((2, "")));
        Assert.That(configErrors, Does.StartWith("config error: config file /nonexistent.json does not exist"));
    }

    [Test]
    public void HelpShowsUsageAnExamplePerVerbAndMarksRequiredOptions()
    {
        var (code, output, errors) = TestSupport.RunCliStreams(["--help"]);
        Assert.That((code, errors), Is.EqualTo((0, "")));
        foreach (var verb in new[] { "info", "toy", "moe", "factorize", "eval", "encode", "harvest", "synthesize", "hybrid", "analyze", "demo", "bench" })
            Assert.That(output, Does.Contain($"  nativeengine {verb} "), verb);
        Assert.That(output, Does.Contain("Exit codes: 0 done, 2 usage or input error, 3 internal error, 4 stopped"));

        (code, output, _) = TestSupport.RunCliStreams(["toy", "--help"]);
        Assert.That(code, Is.EqualTo(0));
        Assert.That(output, Does.Contain("Usage: nativeengine toy [options]").And.Contain("Example: nativeengine toy --config"));
        Assert.That(output, Does.Match(@"--out\s+Required\."), "--out is marked required");
        (_, output, _) = TestSupport.RunCliStreams(["factorize", "--help"]);
        Assert.That(output, Does.Match(@"--out\s+Required \(or --resume DIR\)"));
        (_, output, _) = TestSupport.RunCliStreams(["help", "harvest"]);
        Assert.That(output, Does.Contain("Example: nativeengine harvest --model"));
    }

    /// <summary>The runner executable with output redirected, as in a log or CI.</summary>
    private static (int Code, string Output, string Errors) Redirected(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var runner = Path.Combine(AppContext.BaseDirectory, "nativeengine");
        Assert.That(File.Exists(runner), Is.True, $"the runner executable beside the tests: {runner}");
        var info = new ProcessStartInfo(runner, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (key, value) in environment) info.Environment[key] = value;
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        Assert.That(process.WaitForExit(TimeSpan.FromMinutes(2)), Is.True);
        return (process.ExitCode, output.Result, errors.Result);
    }

    [Test]
    public void RedirectedOutputHasNoAnsiCodesOrBoxesAndProgressLinesCarryRateAndTimeLeft()
    {
        var dir = TestSupport.TempDirectory("redirected");
        var config = Path.Combine(dir, "toy.json");
        File.WriteAllText(config, Toy);
        foreach (var noColor in new[] { false, true })
        {
            var environment = noColor ? new Dictionary<string, string> { ["NO_COLOR"] = "1" } : [];
            var (code, output, errors) = Redirected(environment, "toy", "--config", config, "--out", Path.Combine(dir, $"run{noColor}"), "--backend", "cpu");
            Assert.That(code, Is.EqualTo(0), errors);
            foreach (var text in new[] { output, errors })
            {
                Assert.That(text, Does.Not.Contain("\u001b["), "no ANSI escape codes");
                Assert.That(text.IndexOfAny(['╭', '│', '─', '┌', '━']), Is.EqualTo(-1), "no box-drawing tables");
            }
            Assert.That(output, Does.Contain("relu_output n=6 m=3").And.Match(@"\n-{2,}"), "a plain table");
            Assert.That(errors, Does.Match(@"relu_output on cpu: \d+/400 \(\d+%\), [0-9.]+k?/s, (\d+ s left|done in \d+ s)"),
                "progress lines with the rate and the time left");
        }
        var (failed, failedOutput, failedErrors) = Redirected(new Dictionary<string, string>(), "toy", "--config", Path.Combine(dir, "missing.json"),
            "--out", Path.Combine(dir, "x"));
        Assert.That((failed, failedOutput), Is.EqualTo((2, "")));
        Assert.That(failedErrors.Trim(), Does.StartWith("config error: config file").And.Not.Contain("\u001b["));
    }

    private static readonly Regex SnakeCase = new("^[a-z0-9]+(_[a-z0-9]+)*$");

    // Tensor names keep their paper's capitals (W, W_out), as the weights files name them.
    private static readonly HashSet<string> TensorNames = ["W", "W_out", "W_gate", "W_noise"];

    [Test]
    public void EveryJsonFileARunWritesIsSnakeCase()
    {
        var dir = TestSupport.TempDirectory("snake");
        var toy = Path.Combine(dir, "toy.json");
        File.WriteAllText(toy, Toy);
        Assert.That(TestSupport.RunCli("toy", "--config", toy, "--out", Path.Combine(dir, "toy"), "--backend", "cpu").Code, Is.EqualTo(0));
        var moe = Path.Combine(dir, "moe.json");
        File.WriteAllText(moe, """{ "n_experts": 3, "top_k": 2, "expert_hidden": 2, "n_features": 5, "n_instances": 1, "feature_probability": 0.2, "batch_size": 32, "steps": 30 }""");
        Assert.That(TestSupport.RunCli("moe", "--config", moe, "--out", Path.Combine(dir, "moe"), "--backend", "cpu", "--compare").Code, Is.EqualTo(0));
        // A factorize run stopped with its checkpoint (progress.json, source.json), then one that completed.
        var factorize = Path.Combine(dir, "f.json");
        File.WriteAllText(factorize, FactorizeCliTests.ResumableConfig);
        FactorizeCliTests.InterruptAt50(factorize, Path.Combine(dir, "stopped"));
        Assert.That(TestSupport.RunCli("factorize", "--config", factorize, "--out", Path.Combine(dir, "sae"), "--backend", "cpu").Code, Is.EqualTo(0));
        var eval = Path.Combine(dir, "eval.json");
        Assert.That(TestSupport.RunCli("eval", "--dict", Path.Combine(dir, "sae"), "--data", factorize, "--out", eval, "--backend", "cpu").Code, Is.EqualTo(0));

        var files = Directory.GetFiles(dir, "*.json", SearchOption.AllDirectories)
            .Where(f => !new[] { "toy.json", "moe.json", "f.json" }.Contains(Path.GetFileName(f))).ToList();
        Assert.That(files.Select(Path.GetFileName), Does.Contain("progress.json").And.Contain("source.json").And.Contain("run.json")
            .And.Contain("cfg.json").And.Contain("metrics.json").And.Contain("results.json").And.Contain("compare.json"));
        foreach (var file in files)
        {
            using var document = JsonDocument.Parse(File.ReadAllText(file));
            foreach (var name in Names(document.RootElement))
                Assert.That(SnakeCase.IsMatch(name) || TensorNames.Contains(name), Is.True, $"{file}: key \"{name}\"");
        }
    }

    private static IEnumerable<string> Names(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object => element.EnumerateObject().SelectMany(p => Names(p.Value).Prepend(p.Name)),
        JsonValueKind.Array => element.EnumerateArray().SelectMany(Names),
        _ => [],
    };
}
