using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Bench;

namespace NativeEngine.Tests;

/// <summary>The benchmark suite: the engine's GEMM entry is a correct product, and `bench` writes the fields the
/// results and the README table are made of. Correctness and schema only: no timing is asserted.</summary>
public class BenchTests
{
    private static (int Code, string Output) Run(params string[] args) => TestSupport.RunCli(args);

    [TestCase(1, 1, 1)]
    [TestCase(3, 50, 7)]
    [TestCase(37, 53, 29)]
    [TestCase(130, 1, 65)]
    [TestCase(9, 97, 1)]
    [TestCase(201, 161, 300)]
    public void SgemmMatchesANaiveProduct(int m, int n, int k)
    {
        var rng = new Random(m * 10007 + n * 101 + k);
        var a = Enumerable.Range(0, m * k).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var b = Enumerable.Range(0, k * n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var c = new float[m * n];
        Array.Fill(c, float.NaN);  // every element must be written
        using var context = new EngineContext(Backend.Cpu);
        Gemm.Sgemm(context, m, n, k, a, b, c);
        for (var r = 0; r < m; r++)
            for (var j = 0; j < n; j++)
            {
                double expected = 0, magnitude = 0;
                for (var i = 0; i < k; i++)
                {
                    expected += (double)a[r * k + i] * b[i * n + j];
                    magnitude += Math.Abs((double)a[r * k + i] * b[i * n + j]);
                }
                Assert.That(c[r * n + j], Is.EqualTo(expected).Within(1e-5 + 1e-5 * magnitude), $"C[{r}][{j}] of {m}x{n}x{k}");
            }
    }

    [Test]
    public void SgemmNamesAWrongBufferSize()
    {
        using var context = new EngineContext(Backend.Cpu);
        var e = Assert.Throws<NativeEngineException>(() => Gemm.Sgemm(context, 2, 3, 4, new float[8], new float[12], new float[5]))!;
        Assert.That(e.Status, Is.EqualTo(Status.InvalidArgument));
        Assert.That(e.NativeMessage, Does.Contain("C has room for 5 floats; expected 6"));
    }

    [Test]
    public void OpenBlasWhenPresentAgreesWithTheEngine()
    {
        var blas = OpenBlas.TryLoad(out var why);
        if (blas is null) Assert.Ignore($"no OpenBLAS: {why}");
        const int m = 45, n = 70, k = 33;
        var rng = new Random(3);
        var a = Enumerable.Range(0, m * k).Select(_ => (float)rng.NextDouble()).ToArray();
        var b = Enumerable.Range(0, k * n).Select(_ => (float)rng.NextDouble()).ToArray();
        var ours = new float[m * n];
        var theirs = new float[m * n];
        using var context = new EngineContext(Backend.Cpu);
        Gemm.Sgemm(context, m, n, k, a, b, ours);
        blas!.Sgemm(m, n, k, a, b, theirs);
        Assert.That(ours, Is.EqualTo(theirs).Within(1e-4));
    }

    private static readonly string[] RowFields =
        ["benchmark", "name", "command", "workload", "unit", "flops", "nativeengine", "peer", "peers"];

    private static void AssertRowSchema(JsonElement row)
    {
        foreach (var field in RowFields) Assert.That(row.TryGetProperty(field, out _), Is.True, $"row field {field}");
        Assert.That(row.GetProperty("command").GetString(), Does.StartWith("nativeengine bench "));
        var flops = row.GetProperty("flops");
        Assert.That(flops.GetProperty("per_unit").GetDouble(), Is.GreaterThan(0));
        Assert.That(flops.GetProperty("formula").GetString(), Is.Not.Empty);
        var ours = row.GetProperty("nativeengine");
        foreach (var field in new[] { "backend", "device", "units", "seconds", "throughput", "gflops", "share_of_peak" })
            Assert.That(ours.TryGetProperty(field, out _), Is.True, $"nativeengine.{field}");
        Assert.That(ours.GetProperty("throughput").GetDouble(), Is.GreaterThan(0));
        Assert.That(ours.GetProperty("gflops").GetDouble(), Is.GreaterThan(0));
        Assert.That(ours.GetProperty("share_of_peak").GetDouble(), Is.GreaterThan(0));
        Assert.That(row.GetProperty("peer").GetProperty("status").GetString(), Is.Not.Empty);
        Assert.That(row.GetProperty("peers").GetArrayLength(), Is.GreaterThan(0));
        foreach (var peer in row.GetProperty("peers").EnumerateArray())
            Assert.That(peer.GetProperty("status").GetString(), Is.Not.Empty);
    }

    private static void AssertPeakSchema(JsonElement root)
    {
        var peak = root.GetProperty("peak");
        Assert.That(peak.GetProperty("size").GetInt32(), Is.EqualTo(64));
        Assert.That(peak.GetProperty("nativeengine").GetProperty("gflops").GetDouble(), Is.GreaterThan(0));
        Assert.That(peak.GetProperty("openblas").GetProperty("status").GetString(), Is.Not.Empty);
        Assert.That(peak.GetProperty("peak_gflops").GetDouble(), Is.GreaterThan(0));
        Assert.That(peak.GetProperty("peak_from").GetString(), Is.AnyOf("nativeengine", "openblas"));
        var machine = root.GetProperty("machine");
        Assert.That(machine.GetProperty("name").GetString(), Does.StartWith("cpu-"));
        Assert.That(machine.GetProperty("cpu").GetString(), Is.Not.Empty);
    }

    [Test]
    public void BenchToyTakesAPaperConfigAndCountsItsFlops()
    {
        var config = Path.Combine(TestSupport.RepositoryRoot(), "configs", "paper", "n20_m5_relu.json");
        var (code, output) = Run("bench", "toy", "--config", config, "--backend", "cpu", "--seconds", "0.05", "--peer", "none",
            "--gemm-size", "64");
        Assert.That(code, Is.EqualTo(0), output);
        var root = JsonDocument.Parse(output).RootElement;
        AssertPeakSchema(root);
        var row = root.GetProperty("results").EnumerateArray().Single();
        AssertRowSchema(row);
        var workload = row.GetProperty("workload");
        Assert.That(workload.GetProperty("n_features").GetInt32(), Is.EqualTo(20));
        Assert.That(workload.GetProperty("n_hidden").GetInt32(), Is.EqualTo(5));
        var instances = workload.GetProperty("n_instances").GetInt32();
        var batch = workload.GetProperty("batch_size").GetInt32();
        Assert.That(row.GetProperty("flops").GetProperty("per_unit").GetDouble(), Is.EqualTo(10.0 * batch * 20 * 5 * instances));
        Assert.That(row.GetProperty("name").GetString(), Is.EqualTo("toy n20_m5_relu"));
        Assert.That(row.GetProperty("command").GetString(), Does.Contain($"--config {config}"));
    }

    [Test]
    public void BenchMoeCountsTheRouterAndTheActiveExperts()
    {
        var (code, output) = Run("bench", "moe", "--backend", "cpu", "--seconds", "0.05", "--peer", "none", "--gemm-size", "64");
        Assert.That(code, Is.EqualTo(0), output);
        var row = JsonDocument.Parse(output).RootElement.GetProperty("results").EnumerateArray().Single();
        AssertRowSchema(row);
        var w = row.GetProperty("workload");
        Assert.That((w.GetProperty("n_experts").GetInt32(), w.GetProperty("top_k").GetInt32(), w.GetProperty("n_instances").GetInt32()),
            Is.EqualTo((4, 1, 10)));
        Assert.That(row.GetProperty("flops").GetProperty("per_unit").GetDouble(),
            Is.EqualTo(1024.0 * 10 * (4.0 * 20 * 4 + 1 * 10.0 * 20 * 5)));
    }

    [Test]
    public void BenchAllWritesEveryWorkloadAndPrintsTheReadmeRows()
    {
        var dir = TestSupport.TempDirectory("bench-all");
        var file = Path.Combine(dir, "all.json");
        var (code, output) = Run("bench", "--all", "--backend", "cpu", "--seconds", "0.02", "--peer", "none", "--gemm-size", "64",
            "--batch", "32", "--out", file);
        Assert.That(code, Is.EqualTo(0), output);
        var root = JsonDocument.Parse(File.ReadAllText(file)).RootElement;
        Assert.That(root.GetProperty("benchmark").GetString(), Is.EqualTo("all"));
        AssertPeakSchema(root);
        var rows = root.GetProperty("results").EnumerateArray().ToList();
        foreach (var row in rows) AssertRowSchema(row);
        var kinds = rows.Select(r => r.GetProperty("benchmark").GetString()).ToList();
        Assert.That(kinds.Distinct(), Is.EquivalentTo(new[] { "toy", "moe", "factorize", "dictionary" }));
        Assert.That(kinds.Count(k => k == "toy"), Is.EqualTo(1 + Workloads.SuiteToyConfigs.Length), "the paper configs are found");
        Assert.That(kinds.Count(k => k == "factorize"), Is.EqualTo(Workloads.SuiteSaeSizes.Length));
        Assert.That(rows.Single(r => r.GetProperty("benchmark").GetString() == "dictionary").GetProperty("compared").GetString(),
            Does.Contain("MiniBatchDictionaryLearning"));

        // The README rows: a header, the peak, one per workload; `bench table` prints the same from the file.
        var table = output.Split('\n').Where(l => l.StartsWith('|')).ToList();
        Assert.That(table, Has.Count.EqualTo(2 + 1 + rows.Count));
        Assert.That(table[2], Does.StartWith("| SGEMM 64³ float32"));
        var (tableCode, again) = Run("bench", "table", file);
        Assert.That(tableCode, Is.EqualTo(0), again);
        Assert.That(again.Split('\n').Where(l => l.StartsWith('|')), Is.EqualTo(table));
    }

    [Test]
    public void BenchE2eTimesTheWholeCommandAndSaysWhatIsNotTraining()
    {
        var file = Path.Combine(TestSupport.TempDirectory("bench-e2e"), "e2e.json");
        var (code, output) = Run("bench", "e2e", "--cases", "toy", "--steps", "3,5", "--config", "configs/paper/n20_m5_relu.json",
            "--peer", "none", "--out", file);
        Assert.That(code, Is.EqualTo(0), output);
        var root = JsonDocument.Parse(File.ReadAllText(file)).RootElement;
        Assert.That(root.GetProperty("benchmark").GetString(), Is.EqualTo("e2e"));
        Assert.That(root.GetProperty("what").GetString(), Does.Contain("process start to exit"));
        var rows = root.GetProperty("results").EnumerateArray().ToList();
        Assert.That(rows.Select(r => r.GetProperty("name").GetString()),
            Is.EqualTo(new[] { "toy n20_m5_relu, 3 steps", "toy n20_m5_relu, 5 steps" }));
        foreach (var row in rows)
        {
            var ours = row.GetProperty("nativeengine");
            Assert.That(ours.GetProperty("exit_code").GetInt32(), Is.EqualTo(0), row.ToString());
            var wall = ours.GetProperty("wall_seconds").GetDouble();
            var training = ours.GetProperty("training_seconds").GetDouble();
            Assert.That(training, Is.GreaterThan(0).And.LessThan(wall), "training is part of the whole command");
            Assert.That(ours.GetProperty("fixed_seconds").GetDouble(), Is.EqualTo(wall - training).Within(0.002));
            Assert.That(row.GetProperty("peer").GetProperty("status").GetString(), Does.StartWith("not run"));
            Assert.That(row.TryGetProperty("speedup", out _), Is.False, "no ratio without a peer");
        }
    }

    [Test]
    public void BenchE2eNamesBadCasesAndSteps()
    {
        var (code, output) = Run("bench", "e2e", "--cases", "toy,gpt", "--peer", "none");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--cases has \"gpt\"; valid: toy, factorize, moe, demo"));
        (code, output) = Run("bench", "e2e", "--steps", "0", "--peer", "none");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--steps has 0; valid: step counts >= 1"));
        (code, output) = Run("bench", "toy", "--steps", "5");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--steps and --cases apply to bench e2e only"));
    }

    [Test]
    public void BenchNamesAnUnknownWorkloadAndMisplacedOptions()
    {
        var (code, output) = Run("bench", "gpt");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("bench workload \"gpt\" is unknown; valid: toy, moe, factorize, dictionary, peak, read, all, e2e, synthsaebench, table"));
        (code, output) = Run("bench", "factorize", "--config", "x.json");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--config applies to bench toy, moe and e2e only"));
        (code, output) = Run("bench", "table");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("bench table needs result files"));
    }

    [Test]
    public void ReadMeasuresEachFormatOnTheSameTokens()
    {
        var (code, output) = Run("bench", "read", "--d-in", "8", "--batch", "512", "--seconds", "0.05");
        Assert.That(code, Is.EqualTo(0), output);
        using var json = JsonDocument.Parse(output);
        var rows = json.RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.That(rows.Select(r => r.GetProperty("format").GetString()), Is.EqualTo(new[]
        {
            "npy float32", "arrow float32 (SAELens cache)", "npy float16", "arrow float16 (SAELens cache)",
        }));
        Assert.That(rows.Select(r => r.GetProperty("tokens").GetInt64()).Distinct().Single(), Is.EqualTo(1L << 18));
        Assert.That(rows.Select(r => r.GetProperty("file_bytes_per_token").GetInt32()), Is.EqualTo(new[] { 32, 32, 16, 16 }));
        Assert.That(rows.All(r => r.GetProperty("sequential_tokens_per_second").GetDouble() > 0 &&
                                  r.GetProperty("shuffled_tokens_per_second").GetDouble() > 0));
        Assert.That(Run("bench", "read", "--top-k", "3").Output, Does.Contain("bench read takes --d-in, --batch, --seconds and --out"));
        // Sizes past what one array holds, and times past an hour, are usage errors, not crashes.
        (code, output) = Run("bench", "read", "--d-in", "2000000000");
        Assert.That((code, output.Contains("--d-in 2000000000, --batch 4096: valid: --d-in 1..1048576, --batch 1..1048576")), Is.EqualTo((2, true)), output);
        Assert.That(Run("bench", "read", "--seconds", "1e9").Output, Does.Contain("--seconds is 1000000000; valid: > 0 and at most 3600"));
    }
}
