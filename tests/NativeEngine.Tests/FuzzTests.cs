using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

/// <summary>
/// Fuzzed inputs into every verb and every reader, with fixed seeds: mutated configs (values out of range, of the
/// wrong type, missing, unknown or repeated keys, broken text), mutated .npy, .safetensors, checkpoint, cfg.json and
/// run folder files, sparsify dictionaries (cfg.json, sae.safetensors), Arrow caches (the .arrow streams,
/// state.json, dataset_info.json), ONNX models and harvest --onnx inputs, and mangled command lines. Each input must end in a documented exit code (0 done, 2 usage or
/// input error, 4 stopped on a non-finite value, 130 cut short by the per-input time limit, as a signal would) and
/// never in an unhandled exception or an internal error (exit 3). Each test prints its counts.
/// </summary>
[NonParallelizable]
public class FuzzTests
{
    private static readonly int[] Documented = [0, 2, 4, 130];
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(5);

    private string root = "";
    private string toyRun = "", sweepRun = "", dictionary = "", interrupted = "", npy = "", activations = "", groundTruth = "", evalData = "";
    private string sparsifyRun = "", arrowCache = "", onnxModel = "", onnxTokens = "", onnxTokensSafetensors = "";

    private const string Toy = """
        { "model": "relu_output", "n_features": 5, "n_hidden": 2, "n_instances": 2, "importance": 0.9,
          "feature_probability": [0.5, 0.1], "l1": 0, "batch_size": 32, "steps": 20, "lr": 0.001, "weight_decay": 0.01, "seed": 1 }
        """;

    private const string ToySweep = """
        { "model": "relu_hidden", "n_features": 4, "n_hidden": 2, "importance": 0.8, "batch_size": 32, "steps": 20,
          "feature_sets": [{ "kind": "correlated", "features": [0, 1] }],
          "sweep": { "feature_probability": [0.5, 0.1], "l1": [0, 0.01], "repeats": 1, "keep": "best" } }
        """;

    private const string Moe = """
        { "n_experts": 3, "top_k": 2, "expert_hidden": 2, "expert_model": "relu_output", "n_features": 5, "n_instances": 2,
          "feature_probability": 0.2, "batch_size": 32, "steps": 20,
          "router": { "renormalize": true, "noise": "jitter", "load_balance": 0.01, "z_loss": 0.001, "bias_update": 0, "capacity_factor": 0 } }
        """;

    private const string Factorize = """
        { "data": { "synthetic": { "d": 8, "n_features": 16, "active_mean": 2, "probability_decay": 0.95, "correlated": false, "seed": 2 } },
          "sae": { "architecture": "topk", "d_sae": 16, "k": 2, "auxk_alpha": 0.03, "dead_window": 1000, "normalize_activations": "none" },
          "train": { "tokens": 2048, "batch_size": 256, "lr": 0.003, "warmup_steps": 2, "decay_steps": 2, "checkpoint_every": 4, "seed": 1, "precision": "fp32" } }
        """;

    private const string Hybrid = """
        { "n_features": 4, "n_hidden": 2, "importance": 0.9, "feature_probability": [0.2], "l1": 0.01, "n_experts": 2,
          "top_k": 1, "repeats": 1, "steps": 20, "harvest_tokens": 512, "dictionary_sizes": [4], "sae_tokens": 1024,
          "sae_batch_size": 256, "seed": 0 }
        """;

    [OneTimeSetUp]
    public void Prepare()
    {
        root = TestSupport.TempDirectory("fuzz");
        toyRun = Path.Combine(root, "toy");
        Expect(0, "toy", "--config", Save("toy.json", Toy), "--out", toyRun, "--backend", "cpu");
        sweepRun = Path.Combine(root, "sweep");
        Expect(0, "toy", "--config", Save("sweep.json", ToySweep), "--out", sweepRun, "--backend", "cpu");
        dictionary = Path.Combine(root, "dict");
        Expect(0, "factorize", "--config", Save("factorize.json", Factorize), "--out", dictionary, "--backend", "cpu");
        interrupted = Path.Combine(root, "interrupted");
        FactorizeCliTests.InterruptAt50(Save("resumable.json", FactorizeCliTests.ResumableConfig), interrupted);
        npy = ReliabilityTests.WriteNpy(Path.Combine(root, "acts.npy"), 512, 8, (t, c) => (float)Math.Sin(t * 0.31 + c));
        activations = Path.Combine(root, "acts.safetensors");
        SafeTensors.Write(activations, [new Tensor("acts", [512, 8], Enumerable.Range(0, 4096).Select(i => (float)Math.Cos(i)).ToArray())]);
        groundTruth = Path.Combine(root, "ground_truth.safetensors");
        SafeTensors.Write(groundTruth, [new Tensor("features", [16, 8], Enumerable.Range(0, 128).Select(i => (float)Math.Sin(i)).ToArray()),
            new Tensor("probabilities", [16], Enumerable.Repeat(0.1f, 16).ToArray())]);
        evalData = Save("eval.json", """{ "data": { "synthetic": { "d": 8, "n_features": 16, "seed": 2 } }, "batch_size": 64, "tokens": 256 }""");
        sparsifyRun = Path.Combine(root, "sparsify");
        Expect(0, "factorize", "--config", Path.Combine(root, "factorize.json"), "--out", sparsifyRun, "--format", "sparsify", "--backend", "cpu");
        // A SAELens activation cache: 32 rows of 16 tokens (d = 8) with token ids, in two files of several record batches.
        arrowCache = Path.Combine(root, "cache");
        SaeLensActivationCache.Write(arrowCache, "blocks.0.hook_resid_pre", Enumerable.Range(0, 32 * 16 * 8).Select(i => (float)Math.Sin(i * 0.37)).ToArray(),
            16, 8, tokenIds: Enumerable.Range(0, 32 * 16).ToArray(), rowsPerFile: 16, rowsPerBatch: 5);
        onnxModel = Path.Combine(AppContext.BaseDirectory, "models", "tiny_lm.onnx");
        Assert.That(File.Exists(onnxModel), Is.True, onnxModel);
        // tiny_lm's input: int64 token ids (vocabulary 13) [rows, seq].
        var ids = Enumerable.Range(0, 8 * 4).Select(i => (long)(i * 5 % 13)).ToArray();
        var idBytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(ids.AsSpan()).ToArray();
        onnxTokens = Path.Combine(root, "tokens.npy");
        File.WriteAllBytes(onnxTokens, [.. Npy.HeaderBytes(8, 4, "<i8"), .. idBytes]);
        onnxTokensSafetensors = Path.Combine(root, "tokens.safetensors");
        var header = "{\"tokens\":{\"dtype\":\"I64\",\"shape\":[8,4],\"data_offsets\":[0,256]}}";
        File.WriteAllBytes(onnxTokensSafetensors, [.. BitConverter.GetBytes((ulong)header.Length), .. Encoding.ASCII.GetBytes(header), .. idBytes]);
        Expect(0, "harvest", "--onnx", onnxModel, "--node", "mlp.act", "--inputs", onnxTokensSafetensors, "--out", Path.Combine(root, "onnx-check"));
    }

    private string Save(string name, string text) => Save(root, name, text);

    private static string Save(string dir, string name, string text)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static void Expect(int code, params string[] args)
    {
        var (got, output, errors) = TestSupport.RunCliStreams(args);
        Assert.That(got, Is.EqualTo(code), output + errors);
    }

    /// <summary>Inputs run, exit codes seen, and the inputs that crashed.</summary>
    private sealed class Tally(string name)
    {
        private readonly SortedDictionary<int, int> codes = [];
        private readonly List<string> crashes = [];
        public int Inputs { get; private set; }

        public void Run(string what, string[] args)
        {
            Inputs++;
            using var limit = new CancellationTokenSource(Limit);
            int code;
            string errors;
            try
            {
                (code, _, errors) = TestSupport.RunCliStreams([.. args, "--verbose"], limit.Token);
            }
            catch (Exception e)
            {
                crashes.Add($"{what}: unhandled {e.GetType().Name}: {e.Message}");
                return;
            }
            codes[code] = codes.GetValueOrDefault(code) + 1;
            if (!Documented.Contains(code) || errors.Contains("internal error: "))
                crashes.Add($"{what}: exit {code}: {errors.Trim()}");
        }

        public void Finish()
        {
            TestContext.Out.WriteLine($"fuzz {name}: {Inputs} inputs, exit codes {string.Join(", ", codes.Select(p => $"{p.Key}: {p.Value}"))}, " +
                                      $"crashes {crashes.Count}");
            Assert.That(crashes, Is.Empty, string.Join("\n", crashes));
        }
    }

    // ---- mutators ---------------------------------------------------------------------------------------------------

    private static readonly string[] Pool =
    [
        "0", "-1", "1", "2", "3", "0.5", "1e300", "-1e300", "1e30", "1e-30", "2147483648", "9223372036854775807",
        "18446744073709551616", "\"x\"", "\"\"", "\"NaN\"", "true", "false", "null", "[]", "{}", "[1, 2]", "{\"a\": 1}",
    ];

    /// <summary>One to three changes to a JSON document: a value replaced from the pool, a key removed, an unknown key
    /// added, an array emptied; or the text itself broken (cut, a character dropped or inserted, a key repeated).</summary>
    private static string MutateJson(string json, Random rng)
    {
        if (rng.Next(6) == 0) return MutateText(json, rng);
        var node = JsonNode.Parse(json)!;
        for (var m = rng.Next(1, 4); m > 0; m--)
        {
            var slots = new List<(JsonNode Parent, string? Key, int Index)>();
            Collect(node, slots);
            if (slots.Count == 0) break;
            var (parent, key, index) = slots[rng.Next(slots.Count)];
            var action = rng.Next(5);
            if (parent is JsonObject obj && key is not null)
            {
                if (action == 0) obj.Remove(key);
                else if (action == 1) obj["unknown_" + rng.Next(100)] = JsonNode.Parse(Pool[rng.Next(Pool.Length)]);
                else obj[key] = JsonNode.Parse(Pool[rng.Next(Pool.Length)]);
            }
            else if (parent is JsonArray array)
            {
                if (action == 0) array.RemoveAt(index);
                else if (action == 1) array.Add(JsonNode.Parse(Pool[rng.Next(Pool.Length)]));
                else array[index] = JsonNode.Parse(Pool[rng.Next(Pool.Length)]);
            }
        }
        return node.ToJsonString();
    }

    private static void Collect(JsonNode node, List<(JsonNode, string?, int)> slots)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var (key, value) in obj.ToList())
                {
                    slots.Add((obj, key, 0));
                    if (value is not null) Collect(value, slots);
                }
                break;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    slots.Add((array, null, i));
                    if (array[i] is { } item) Collect(item, slots);
                }
                break;
        }
    }

    private static string MutateText(string text, Random rng)
    {
        var position = rng.Next(text.Length);
        switch (rng.Next(4))
        {
            case 0: return text[..position];
            case 1: return text.Remove(position, 1);
            case 2:
                const string breakers = "{}[],:\"\\\u0000é";
                return text.Insert(position, breakers[rng.Next(breakers.Length)].ToString());
            default:
                // The first key again, with another value: a key given twice.
                var start = text.IndexOf('"');
                var end = start < 0 ? -1 : text.IndexOf('"', start + 1);
                return end < 0 ? text + "}" : text.Insert(text.IndexOf('{') + 1, $"{text[start..(end + 1)]}: 1, ");
        }
    }

    /// <summary>A few bytes flipped, the file cut or grown, a span zeroed, or its 8-byte length field (safetensors'
    /// header length; .npy's magic and version) overwritten with an extreme value.</summary>
    private static byte[] MutateBytes(byte[] bytes, Random rng)
    {
        var b = (byte[])bytes.Clone();
        switch (rng.Next(6))
        {
            case 0:
                for (var i = rng.Next(1, 9); i > 0 && b.Length > 0; i--) b[rng.Next(b.Length)] ^= (byte)(1 << rng.Next(8));
                return b;
            case 1:
                return b[..rng.Next(b.Length)];
            case 2:
                var extra = new byte[rng.Next(1, 64)];
                rng.NextBytes(extra);
                return [.. b, .. extra];
            case 3:
                var at = rng.Next(b.Length);
                Array.Clear(b, at, Math.Min(b.Length - at, rng.Next(1, 256)));
                return b;
            case 4:
                if (b.Length >= 8)
                    BitConverter.GetBytes(new[] { ulong.MaxValue, 1UL << 40, 0UL, 7UL, (ulong)b.Length }[rng.Next(5)]).CopyTo(b, 0);
                return b;
            default:
                // Inside the text header, where shapes and offsets are: digits changed.
                for (var i = 0; i < Math.Min(b.Length, 200); i++)
                    if (b[i] is >= (byte)'0' and <= (byte)'9' && rng.Next(8) == 0) b[i] = (byte)"09187"[rng.Next(5)];
                return b;
        }
    }

    private string Case(string name) => Path.Combine(root, name);

    /// <summary>The fixed seed of a test; NE_FUZZ_SEED=N shifts every seed to explore other inputs locally.</summary>
    private static Random Seeded(int seed) =>
        new(seed + (int.TryParse(Environment.GetEnvironmentVariable("NE_FUZZ_SEED"), out var shift) ? shift : 0));

    // ---- configs into every verb ------------------------------------------------------------------------------------

    [Test]
    public void MutatedConfigsIntoEveryVerb()
    {
        var tally = new Tally("configs");
        var rng = Seeded(20);
        var dir = Path.Combine(root, "configs");
        Directory.CreateDirectory(dir);
        var bases = new (string Verb, string Json, int Count)[]
        {
            ("toy", Toy, 40), ("toy", ToySweep, 25), ("moe", Moe, 35), ("moe --compare", Moe, 8), ("factorize", Factorize, 45),
            ("eval", """{ "data": { "synthetic": { "d": 8, "n_features": 16, "seed": 2 } }, "batch_size": 64, "tokens": 256 }""", 25),
            ("eval files", $$"""{ "data": { "files": [{{System.Text.Json.JsonSerializer.Serialize(npy)}}], "format": "npy", "non_finite": "error" }, "batch_size": 64, "tokens": 256 }""", 25),
            ("synthesize", Factorize, 20), ("hybrid", Hybrid, 8),
            ("synthesize arrow", Factorize, 10),
            ("factorize sparsify", Factorize.Replace("\"train\": {", """
                "format": "sparsify", "metadata": { "model_name": "gpt2", "hook_name": "blocks.0.hook_resid_pre", "hook_head_index": null,
                  "context_size": 16, "prepend_bos": true, "dataset_path": "x" }, "train": {
                """), 20),
            ("factorize arrow", Factorize.Replace(
                """{ "synthetic": { "d": 8, "n_features": 16, "active_mean": 2, "probability_decay": 0.95, "correlated": false, "seed": 2 } }""",
                $$"""{ "files": [{{System.Text.Json.JsonSerializer.Serialize(arrowCache)}}], "format": "arrow", "column": "blocks.0.hook_resid_pre", "non_finite": "skip" }"""), 20),
        };
        var n = 0;
        foreach (var (verb, json, count) in bases)
            for (var i = 0; i < count; i++, n++)
            {
                var config = Save(dir, $"c{n}.json", MutateJson(json, rng));
                var outDir = Path.Combine(dir, $"out{n}");
                string[] args = verb switch
                {
                    "eval" or "eval files" => ["eval", "--dict", dictionary, "--data", config, "--backend", "cpu"],
                    "synthesize" => ["synthesize", "--config", config, "--out", outDir, "--tokens", "1000", "--shard-tokens", "300"],
                    "synthesize arrow" => ["synthesize", "--config", config, "--out", outDir, "--tokens", "512", "--shard-tokens", "256",
                        "--format", "arrow", "--context", "16"],
                    "factorize sparsify" or "factorize arrow" => ["factorize", "--config", config, "--out", outDir, "--backend", "cpu"],
                    "moe --compare" => ["moe", "--config", config, "--out", outDir, "--compare", "--backend", "cpu"],
                    _ => [verb, "--config", config, "--out", outDir, "--backend", "cpu"],
                };
                tally.Run($"{verb} {File.ReadAllText(config)}", args);
            }
        tally.Finish();
    }

    [Test]
    public void MangledCommandLinesForEveryVerb()
    {
        var tally = new Tally("command lines");
        var rng = Seeded(21);
        var verbs = new[] { "info", "toy", "moe", "factorize", "eval", "encode", "harvest", "hybrid", "synthesize", "analyze", "demo", "bench", "nosuchverb" };
        var words = new[]
        {
            "--config", "--out", "--resume", "--dict", "--data", "--model", "--tokens", "--instance", "--shard-tokens", "--slots",
            "--lambda", "--encoder", "--samples", "--alpha", "--rho", "--method", "--seed", "--steps", "--backend", "--format",
            "--constant", "--cosine", "--ground-truth", "--gemm-size", "--seconds", "--force", "--verbose", "--bogus", "--help",
            "-1", "0", "1e39", "NaN", "abc", "", "/nonexistent", "superposition-test", "capacity", "feature-curves", "table",
            "peak", "sae", "fista", "omp", "tpu", "all", "best",
            "--onnx", "--node", "--inputs", "--list-nodes", "--batch-size", "--context", "--d-in", "arrow", "sparsify", "saelens", "read",
        };
        for (var i = 0; i < 60; i++)
        {
            var args = new List<string> { verbs[rng.Next(verbs.Length)] };
            for (var k = rng.Next(0, 6); k > 0; k--) args.Add(words[rng.Next(words.Length)]);
            // Never train the demo or bench for real here: they would only be cut short by the time limit.
            if (args[0] is "demo" or "bench" && !args.Contains("--help")) args.Add("--bogus");
            tally.Run(string.Join(" ", args), [.. args]);
        }
        // Arguments of verbs that read a finished run, fuzzed in value.
        var values = new[] { "-5", "0", "1", "3", "1e300", "NaN", "9999999999", "x", "all", "best", "fisher", "robust", "omp", "fista", "sae" };
        string V() => values[rng.Next(values.Length)];
        for (var i = 0; i < 15; i++)
            tally.Run("analyze superposition-test", ["analyze", "superposition-test", "--model", toyRun, "--instance", V(), "--samples", rng.Next(2) == 0 ? "100" : V(),
                "--alpha", V(), "--rho", V(), "--method", V(), "--backend", "cpu", "--out", Case($"st{i}.json")]);
        for (var i = 0; i < 10; i++)
            tally.Run("analyze capacity", ["analyze", "capacity", "--model", toyRun, "--constant", V(), "--out", Case($"cap{i}.json")]);
        for (var i = 0; i < 15; i++)
            tally.Run("encode", ["encode", "--dict", dictionary, "--data", evalData, "--out", Case($"codes{i}"), "--encoder", V(),
                "--slots", V(), "--lambda", V(), "--backend", "cpu"]);
        string[] nodes = ["mlp.act", "resid", "hook_resid_post", "tokens", "", "/nonexistent", "mlp.act"];
        for (var i = 0; i < 15; i++)
            tally.Run("harvest --onnx", ["harvest", "--onnx", rng.Next(4) == 0 ? V() : onnxModel, "--node", nodes[rng.Next(nodes.Length)],
                "--node", nodes[rng.Next(nodes.Length)], "--inputs", rng.Next(2) == 0 ? onnxTokens : onnxTokensSafetensors,
                "--out", Case($"onnx{i}"), "--batch-size", rng.Next(2) == 0 ? "3" : V(), "--shard-tokens", rng.Next(2) == 0 ? "10" : V()]);
        for (var i = 0; i < 5; i++)
            tally.Run("synthesize --format arrow", ["synthesize", "--config", Path.Combine(root, "factorize.json"), "--out", Case($"arrow{i}"),
                "--tokens", rng.Next(2) == 0 ? "64" : V(), "--context", rng.Next(2) == 0 ? "16" : V(), "--shard-tokens", V(), "--format", "arrow"]);
        for (var i = 0; i < 15; i++)
            tally.Run("harvest", ["harvest", "--model", toyRun, "--out", Case($"harvest{i}"), "--tokens", rng.Next(2) == 0 ? "100" : V(),
                "--instance", rng.Next(2) == 0 ? "0" : V(), "--shard-tokens", rng.Next(2) == 0 ? "64" : V(), "--backend", "cpu"]);
        tally.Finish();
    }

    // ---- files into every reader ------------------------------------------------------------------------------------

    [Test]
    public void MutatedActivationFilesIntoFactorizeAndEval()
    {
        var tally = new Tally("activation files");
        var rng = Seeded(22);
        var dir = Path.Combine(root, "activations");
        Directory.CreateDirectory(dir);
        for (var i = 0; i < 45; i++)
        {
            var isNpy = i % 3 != 2;
            var file = Path.Combine(dir, $"a{i}" + (isNpy ? ".npy" : ".safetensors"));
            File.WriteAllBytes(file, MutateBytes(File.ReadAllBytes(isNpy ? npy : activations), rng));
            var data = isNpy
                ? $$"""{ "files": [{{System.Text.Json.JsonSerializer.Serialize(file)}}], "format": "npy", "non_finite": "{{(i % 2 == 0 ? "skip" : "error")}}" }"""
                : $$"""{ "files": [{{System.Text.Json.JsonSerializer.Serialize(file)}}], "format": "safetensors", "tensor": "acts" }""";
            if (i % 2 == 0)
            {
                var config = Save(dir, $"f{i}.json", Factorize.Replace(
                    """{ "synthetic": { "d": 8, "n_features": 16, "active_mean": 2, "probability_decay": 0.95, "correlated": false, "seed": 2 } }""", data));
                tally.Run($"factorize {file}", ["factorize", "--config", config, "--out", Path.Combine(dir, $"run{i}"), "--backend", "cpu"]);
            }
            else
            {
                var config = Save(dir, $"e{i}.json", $$"""{ "data": {{data}}, "batch_size": 64, "tokens": 256 }""");
                tally.Run($"eval {file}", ["eval", "--dict", dictionary, "--data", config, "--backend", "cpu"]);
            }
        }
        tally.Finish();
    }

    [Test]
    public void MutatedDictionariesIntoEvalEncodeAndAnalyze()
    {
        var tally = new Tally("dictionaries");
        var rng = Seeded(23);
        var source = Path.Combine(dictionary, "dictionary");
        for (var i = 0; i < 45; i++)
        {
            var copy = Path.Combine(root, $"dict{i}");
            Directory.CreateDirectory(copy);
            foreach (var file in Directory.GetFiles(source)) File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
            var which = i % 3;
            if (which == 0)
                File.WriteAllText(Path.Combine(copy, SaeLens.ConfigFile), MutateJson(File.ReadAllText(Path.Combine(source, SaeLens.ConfigFile)), rng));
            else
            {
                var name = which == 1 ? SaeLens.WeightsFile : SaeLens.SparsityFile;
                File.WriteAllBytes(Path.Combine(copy, name), MutateBytes(File.ReadAllBytes(Path.Combine(source, name)), rng));
            }
            string[] args = (i / 3 % 3) switch
            {
                0 => ["eval", "--dict", copy, "--data", evalData, "--backend", "cpu"],
                1 => ["encode", "--dict", copy, "--data", evalData, "--out", Path.Combine(copy, "codes"), "--encoder", "omp", "--backend", "cpu"],
                _ => ["analyze", "feature-curves", "--dict", copy, "--ground-truth", groundTruth, "--out", Path.Combine(copy, "fc.json")],
            };
            tally.Run($"{args[0]} {copy} ({which})", args);
        }
        for (var i = 0; i < 15; i++)
        {
            var truth = Path.Combine(root, $"truth{i}.safetensors");
            File.WriteAllBytes(truth, MutateBytes(File.ReadAllBytes(groundTruth), rng));
            tally.Run($"feature-curves {truth}", ["analyze", "feature-curves", "--dict", dictionary, "--ground-truth", truth, "--out", Case($"fc{i}.json")]);
        }
        tally.Finish();
    }

    [Test]
    public void MutatedCheckpointsIntoResume()
    {
        var tally = new Tally("checkpoints");
        var rng = Seeded(24);
        string[] files = ["params.safetensors", "state.bin", "source.json", "progress.json", "SHA256SUMS", "../run.json", "../config.json"];
        for (var i = 0; i < 50; i++)
        {
            var copy = Path.Combine(root, $"resume{i}");
            CopyDirectory(interrupted, copy);
            var name = files[i % files.Length];
            var path = Path.GetFullPath(Path.Combine(copy, "checkpoint", name));
            if (name.EndsWith(".json")) File.WriteAllText(path, MutateJson(File.ReadAllText(path), rng));
            else File.WriteAllBytes(path, MutateBytes(File.ReadAllBytes(path), rng));
            // Half the time the checksums are rewritten to match, as an attacker would, so the checks behind them run.
            if (i % 2 == 1 && name != "SHA256SUMS") RewriteSums(Path.Combine(copy, "checkpoint"));
            if (i % 5 == 4) Directory.Move(Path.Combine(copy, "checkpoint"), Path.Combine(copy, "checkpoint.old"));
            tally.Run($"factorize --resume ({name}, {i})", ["factorize", "--resume", copy, "--backend", "cpu"]);
        }
        tally.Finish();
    }

    [Test]
    public void MutatedRunFoldersIntoHarvestAnalyzeAndClaims()
    {
        var tally = new Tally("run folders");
        var rng = Seeded(25);
        string[] files = ["weights.safetensors", "config.json", "results.json", "run.json"];
        for (var i = 0; i < 48; i++)
        {
            var copy = Path.Combine(root, $"toy{i}");
            CopyDirectory(i / 12 % 2 == 0 ? toyRun : sweepRun, copy);
            var name = files[i % files.Length];
            var path = Path.Combine(copy, name);
            if (name.EndsWith(".json")) File.WriteAllText(path, MutateJson(File.ReadAllText(path), rng));
            else File.WriteAllBytes(path, MutateBytes(File.ReadAllBytes(path), rng));
            string[] args = (i / 4 % 3) switch
            {
                0 => ["harvest", "--model", copy, "--out", Path.Combine(copy, "h"), "--tokens", "128", "--backend", "cpu"],
                1 => ["analyze", "capacity", "--model", copy, "--out", Path.Combine(copy, "c.json")],
                _ => ["toy", "--config", Path.Combine(root, "toy.json"), "--out", copy, "--backend", "cpu"],
            };
            tally.Run($"{args[0]} {copy} ({name})", args);
        }
        for (var i = 0; i < 10; i++)
        {
            var file = Save($"bench{i}.json", MutateJson("""
                { "benchmark": "toy", "date": "2026-01-01T00:00:00Z", "machine": { "name": "m", "cpu": "c", "logical_cores": 2 },
                  "peak": { "size": 64, "nativeengine": { "gflops": 1.5 }, "openblas": { "gflops": 2.5, "config": "OpenBLAS 0.3" } },
                  "results": [{ "name": "toy", "unit": "steps/s", "command": "x", "nativeengine": { "backend": "cpu", "throughput": 3, "gflops": 1, "share_of_peak": 0.5 },
                                "peer": { "status": "not run" } }] }
                """, rng));
            tally.Run($"bench table {file}", ["bench", "table", file]);
        }
        tally.Finish();
    }

    [Test]
    public void MutatedSparsifyDictionariesIntoEvalEncodeAndAnalyze()
    {
        var tally = new Tally("sparsify dictionaries");
        var rng = Seeded(26);
        var source = Path.Combine(sparsifyRun, "dictionary");
        Assert.That(File.Exists(Path.Combine(source, Sparsify.WeightsFile)), Is.True);
        for (var i = 0; i < 36; i++)
        {
            // Half are given as a run folder (its dictionary/), half as the dictionary folder itself.
            var copy = Path.Combine(root, $"sparsify{i}");
            var folder = i % 4 < 2 ? Path.Combine(copy, "dictionary") : copy;
            CopyDirectory(source, folder);
            if (i % 2 == 0)
                File.WriteAllText(Path.Combine(folder, Sparsify.ConfigFile), MutateJson(File.ReadAllText(Path.Combine(source, Sparsify.ConfigFile)), rng));
            else
                File.WriteAllBytes(Path.Combine(folder, Sparsify.WeightsFile), MutateBytes(File.ReadAllBytes(Path.Combine(source, Sparsify.WeightsFile)), rng));
            string[] args = (i / 4 % 3) switch
            {
                0 => ["eval", "--dict", copy, "--data", evalData, "--backend", "cpu"],
                1 => ["encode", "--dict", copy, "--data", evalData, "--out", Path.Combine(root, $"sparsify-codes{i}"), "--encoder", "sae", "--backend", "cpu"],
                _ => ["analyze", "feature-curves", "--dict", copy, "--ground-truth", groundTruth, "--out", Path.Combine(root, $"sparsify-fc{i}.json")],
            };
            tally.Run($"{args[0]} {copy} ({(i % 2 == 0 ? Sparsify.ConfigFile : Sparsify.WeightsFile)})", args);
        }
        tally.Finish();
    }

    [Test]
    public void MutatedArrowCachesIntoFactorizeAndEval()
    {
        var tally = new Tally("arrow caches");
        var rng = Seeded(27);
        var files = Directory.GetFiles(arrowCache).Select(Path.GetFileName).Where(f => f != "run.json").Order().ToArray();
        Assert.That(files, Does.Contain("state.json").And.Contain("dataset_info.json").And.Some.EndsWith(".arrow"));
        for (var i = 0; i < 45; i++)
        {
            var copy = Path.Combine(root, $"cache{i}");
            CopyDirectory(arrowCache, copy);
            var name = files[i % files.Length]!;
            var path = Path.Combine(copy, name);
            if (name.EndsWith(".json")) File.WriteAllText(path, MutateJson(File.ReadAllText(path), rng));
            else File.WriteAllBytes(path, MutateBytes(File.ReadAllBytes(path), rng));
            // The dataset folder, or its .arrow streams by glob (then "format" is left to their extension, half the time).
            var byGlob = i % 3 == 2;
            var target = System.Text.Json.JsonSerializer.Serialize(byGlob ? Path.Combine(copy, "*.arrow") : copy);
            var format = byGlob && i % 2 == 0 ? "" : "\"format\": \"arrow\", ";
            var column = i % 4 == 0 ? "" : "\"column\": \"blocks.0.hook_resid_pre\", ";
            var data = $$"""{ "files": [{{target}}], {{format}}{{column}}"non_finite": "{{(i % 2 == 0 ? "skip" : "error")}}" }""";
            if (i % 2 == 0)
            {
                var config = Save(copy, "f.json", Factorize.Replace(
                    """{ "synthetic": { "d": 8, "n_features": 16, "active_mean": 2, "probability_decay": 0.95, "correlated": false, "seed": 2 } }""", data));
                tally.Run($"factorize {path}", ["factorize", "--config", config, "--out", Path.Combine(copy, "run"), "--backend", "cpu"]);
            }
            else
            {
                var config = Save(copy, "e.json", $$"""{ "data": {{data}}, "batch_size": 64, "tokens": 256 }""");
                tally.Run($"eval {path}", ["eval", "--dict", dictionary, "--data", config, "--backend", "cpu"]);
            }
        }
        tally.Finish();
    }

    [Test]
    public void MutatedOnnxModelsAndInputsIntoHarvest()
    {
        var tally = new Tally("onnx");
        var rng = Seeded(28);
        for (var i = 0; i < 44; i++)
        {
            var dir = Path.Combine(root, $"onnx-case{i}");
            Directory.CreateDirectory(dir);
            var (model, inputs) = (onnxModel, i % 2 == 0 ? onnxTokens : onnxTokensSafetensors);
            switch (i % 4)
            {
                case 0 or 1:
                    model = Path.Combine(dir, "model.onnx");
                    File.WriteAllBytes(model, MutateBytes(File.ReadAllBytes(onnxModel), rng));
                    break;
                default:
                    inputs = Path.Combine(dir, Path.GetFileName(inputs));
                    File.WriteAllBytes(inputs, MutateBytes(File.ReadAllBytes(i % 2 == 0 ? onnxTokens : onnxTokensSafetensors), rng));
                    break;
            }
            string[] args = i % 8 == 0
                ? ["harvest", "--onnx", model, "--list-nodes"]
                : ["harvest", "--onnx", model, "--node", i % 3 == 0 ? "resid" : "mlp.act", "--inputs", inputs, "--out", Path.Combine(dir, "out"),
                   "--batch-size", (1 + i % 5).ToString(), "--shard-tokens", "20"];
            tally.Run($"harvest --onnx {model} {inputs}", args);
        }
        tally.Finish();
    }

    private static void RewriteSums(string folder)
    {
        var names = new[] { "params.safetensors", "state.bin", "source.json", "progress.json" };
        var text = new StringBuilder();
        foreach (var name in names.Where(n => File.Exists(Path.Combine(folder, n))))
            text.Append($"{Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(folder, name))))}  {name}\n");
        File.WriteAllText(Path.Combine(folder, "SHA256SUMS"), text.ToString());
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (var folder in Directory.GetDirectories(from)) CopyDirectory(folder, Path.Combine(to, Path.GetFileName(folder)));
    }
}
