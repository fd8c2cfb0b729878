using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Bench;

/// <summary>One architecture of SynthSAEBench's protocol: its name in configs (sae.architecture), its label in the
/// paper's table, the paper's F1 and MCC at L0 = 25 (width 4096, 200M samples, mean over 5 seeds), and its "sae"
/// section for a width, a target L0 and the run's steps.</summary>
public sealed record SynthSaeBenchArchitecture(string Name, string Label, double PaperF1, double PaperMcc,
    Func<int, int, long, JsonObject> Sae);

/// <summary>What `bench synthsaebench` runs: the generator (data.synthetic of a factorize config), the sample budget
/// (training samples per architecture, and how many distinct samples are written: fewer are cycled through in epochs),
/// the protocol's settings, where the files go, and whether the PyTorch peer runs beside the engine.</summary>
public sealed record SynthSaeBenchSettings(SyntheticSpec Data, string DataSource, long Samples, long DataSamples, int Width,
    int L0, int Batch, double Lr, long EvalSamples, ulong Seed, string[] Architectures, string WorkDirectory,
    string DataDirectory, ActivationFileFormat ShardFormat, bool Peer);

/// <summary>
/// SynthSAEBench's protocol (docs/synthsaebench.md, "Protocol"): the generator's samples written once to shards
/// (raw bfloat16 by default: 1.5 KB a sample at d = 768), every architecture trained by factorize on those same files
/// (width, batch, constant lr, target L0), each measured with the synthsaebench metrics on the same fresh samples of
/// the generator's evaluation stream; optionally the PyTorch peer (bench/peers/synthsaebench_peer.py) trains on the
/// same files and measures on the same samples, written for it to a file, and measures the engine's saved dictionaries
/// too, so the two implementations of the metrics are compared on one dictionary.
/// </summary>
public static class SynthSaeBench
{
    public const string PeerScript = "synthsaebench_peer.py";
    /// <summary>How a row of an architecture this engine cannot create (or this backend cannot train) begins.</summary>
    public const string NotSupported = "not supported by this engine";
    public const int DefaultWidth = 4096;
    public const int DefaultL0 = 25;
    public const int DefaultBatch = 1024;
    public const double DefaultLr = 3e-4;
    public const long DefaultEvalSamples = 1_000_000;
    /// <summary>The widths of Matryoshka's inner levels (those below the full width are used).</summary>
    public static readonly int[] MatryoshkaWidths = [128, 512, 2048];

    /// <summary>The protocol's architectures, in the paper's order. An architecture this engine does not know is
    /// still run: the config loader refuses it, and its row says so.</summary>
    public static readonly IReadOnlyList<SynthSaeBenchArchitecture> Protocol =
    [
        new("batchtopk", "BatchTopK", 0.732, 0.757, (width, l0, _) => Sae("batchtopk", width, new() { ["k"] = l0 })),
        new("matryoshka_batchtopk", "Matryoshka BatchTopK", 0.879, 0.793, (width, l0, _) => Sae("matryoshka_batchtopk", width,
            new()
            {
                ["k"] = l0, ["matryoshka_widths"] = new JsonArray(MatryoshkaWidths.Where(w => w < width).Select(w => (JsonNode)w).ToArray()),
                ["use_matryoshka_aux_loss"] = true,  // the protocol's "auxiliary loss on": AuxK per level
            })),
        // As many pursuit steps as the target L0, no residual stop, no stop when a step picks a latent again.
        new("matching_pursuit", "Matching Pursuit", 0.446, 0.693, (width, l0, _) => Sae("matching_pursuit", width, new()
        {
            ["max_iterations"] = l0, ["residual_threshold"] = 0.0, ["stop_on_duplicate_support"] = false,
        })),
        // L1 coefficient 2 warmed up over the first third of the steps, then tuned towards the target L0.
        new("relu", "Standard L1", 0.556, 0.604, (width, l0, steps) => Sae("relu", width, new()
        {
            ["l1_coefficient"] = 2.0, ["sparsity_warmup_steps"] = steps / 3, ["target_l0"] = l0,
            ["l0_controller"] = new JsonObject { ["start_step"] = steps / 3 },
        })),
        // The L0 coefficient tuned towards the target from the first step, on inputs scaled to unit mean squared norm,
        // thresholds from 1 with a rectangle of width 1 (the step sparsity loss of docs/synthsaebench.md's protocol).
        new("jumprelu", "JumpReLU", 0.732, 0.753, (width, l0, _) => Sae("jumprelu", width, new()
        {
            ["normalize_activations"] = "expected_average", ["jump_bandwidth"] = 1.0, ["jump_initial_threshold"] = 1.0,
            ["target_l0"] = l0,
        })),
    ];

    public static string[] DefaultArchitectures => Protocol.Select(a => a.Name).ToArray();

    private static JsonObject Sae(string architecture, int width, JsonObject rest)
    {
        var sae = new JsonObject { ["architecture"] = architecture, ["d_sae"] = width };
        foreach (var (key, value) in rest.ToList())
        {
            rest.Remove(key);
            sae[key] = value;
        }
        return sae;
    }

    /// <summary>Runs the protocol; returns the result JSON (machine filled in by the caller).</summary>
    public static JsonObject Run(EngineContext context, SynthSaeBenchSettings s, IRunProgress progress, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        var data = PrepareData(s, progress);
        var rows = new JsonArray();
        var dictionaries = new List<(string Architecture, string Folder)>();
        foreach (var name in s.Architectures)
        {
            if (cancel.IsCancellationRequested)
            {
                rows.Add(new JsonObject { ["architecture"] = name, ["status"] = "not run: interrupted" });
                continue;
            }
            var (row, dictionary) = TrainOne(context, s, name, data, progress, cancel);
            rows.Add(row);
            if (dictionary is not null) dictionaries.Add((name, dictionary));
        }
        JsonObject peer = cancel.IsCancellationRequested ? PythonPeer.NotRun("interrupted")
            : s.Peer ? RunPeer(s, data, dictionaries, progress) : PythonPeer.NotRun("--peer none");
        var g = s.Data.Generator;
        return new JsonObject
        {
            ["benchmark"] = "synthsaebench",
            ["date"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["backend"] = context.Device.Backend.ToString().ToLowerInvariant(),
            ["protocol"] = new JsonObject
            {
                ["data"] = s.DataSource,
                ["n_features"] = g.NFeatures,
                ["d"] = g.D,
                ["width"] = s.Width,
                ["target_l0"] = s.L0,
                ["batch_size"] = s.Batch,
                ["lr"] = s.Lr,
                ["lr_schedule"] = "constant",
                ["samples"] = s.Samples,
                ["data_samples"] = s.DataSamples,
                ["epochs"] = (double)s.Samples / s.DataSamples,
                ["shard_dtype"] = s.ShardFormat == ActivationFileFormat.RawBF16 ? "bfloat16" : "float32",
                ["eval_samples"] = s.EvalSamples,
                ["eval_samples_from"] = "the generator's evaluation stream from sample 0 (never in the training files)",
                ["seed"] = s.Seed,
            },
            ["paper"] = new JsonObject
            {
                ["source"] = "arXiv 2602.14687 at L0 = 25, width 4096, 200M samples, mean over 5 seeds",
                ["samples"] = 200_000_000,
                ["width"] = 4096,
            },
            ["data"] = new JsonObject
            {
                ["directory"] = Path.GetFullPath(s.DataDirectory),
                ["bytes"] = data.Bytes,
                ["seconds"] = data.Seconds,
                ["reused"] = data.Reused,
            },
            ["seconds"] = clock.Elapsed.TotalSeconds,
            ["results"] = rows,
            ["peer"] = peer,
        };
    }

    private sealed record PreparedData(string Directory, long Bytes, double Seconds, bool Reused);

    // Synthesizes the shards once; a folder already holding a completed synthesis of the same settings is reused, one
    // of other settings is written anew (its shards removed first, so none of them is read with the new ones), and a
    // folder holding anything else is refused.
    private static PreparedData PrepareData(SynthSaeBenchSettings s, IRunProgress progress)
    {
        var clock = Stopwatch.StartNew();
        var dir = s.DataDirectory;
        var wanted = SynthesisClaim(s);
        var marker = RunFolder.Read(dir);
        if (marker is { Kind: Synthesis.Kind, Status: RunFolder.Status.Completed } &&
            marker.ConfigSha256 == RunFolder.Sha256(wanted) && ShardFiles(s).Length > 0)
        {
            progress.Note($"reusing the {s.DataSamples} samples in {dir}");
            return new PreparedData(dir, ShardFiles(s).Sum(f => new FileInfo(f).Length), 0, true);
        }
        if (marker is { Kind: not Synthesis.Kind } ||
            (marker is null && Directory.Exists(dir) && Directory.EnumerateFileSystemEntries(dir).Any()))
            throw new ConfigException($"--data {dir} holds {(marker is null ? "files" : $"a {marker.Kind} run")}, not samples written by " +
                                      "synthesize: give an empty or new folder");
        if (Directory.Exists(dir))
            foreach (var old in Directory.GetFiles(dir, "shard_*.*")) File.Delete(old);
        progress.Note($"writing {s.DataSamples} samples to {dir} " +
                      $"({(s.ShardFormat == ActivationFileFormat.RawBF16 ? 2 : 4) * s.DataSamples * s.Data.Generator.D / 1e9:F2} GB)");
        var result = Synthesis.Run(s.Data, dir, s.DataSamples, ShardTokens(s), s.ShardFormat, force: true, progress: progress);
        return new PreparedData(dir, result.Bytes, clock.Elapsed.TotalSeconds, false);
    }

    private static long ShardTokens(SynthSaeBenchSettings s) => Math.Max(1024, (1L << 28) / s.Data.Generator.D);

    // What synthesize records in its run.json config for these settings (compared to decide whether to reuse).
    private static string SynthesisClaim(SynthSaeBenchSettings s) => Json.Document(w =>
    {
        w.WriteStartObject();
        FactorizeConfigWriter.WriteSynthetic(w, s.Data);
        w.WriteNumber("tokens", s.DataSamples);
        w.WriteNumber("shard_tokens", ShardTokens(s));
        w.WriteString("format", "raw");
        if (s.ShardFormat == ActivationFileFormat.RawBF16) w.WriteString("dtype", "bfloat16");
        w.WriteEndObject();
    });

    private static string ShardPattern(SynthSaeBenchSettings s) =>
        s.ShardFormat == ActivationFileFormat.RawBF16 ? "shard_*.bf16" : "shard_*.f32";

    private static string[] ShardFiles(SynthSaeBenchSettings s) =>
        Directory.GetFiles(s.DataDirectory, ShardPattern(s)).Order(StringComparer.Ordinal).ToArray();

    /// <summary>The factorize config of one architecture on the bench's files (JSON, as a user would write it).</summary>
    public static JsonObject FactorizeConfigJson(SynthSaeBenchSettings s, SynthSaeBenchArchitecture architecture) => new()
    {
        ["data"] = new JsonObject
        {
            ["files"] = new JsonArray(Path.Combine(Path.GetFullPath(s.DataDirectory), ShardPattern(s))),
            ["format"] = "raw",
            ["dtype"] = s.ShardFormat == ActivationFileFormat.RawBF16 ? "bfloat16" : "float32",
            ["d"] = s.Data.Generator.D,
        },
        ["sae"] = architecture.Sae(s.Width, s.L0, (s.Samples + s.Batch - 1) / s.Batch),
        ["train"] = new JsonObject
        {
            ["tokens"] = s.Samples,
            ["batch_size"] = s.Batch,
            ["lr"] = s.Lr,
            ["seed"] = s.Seed,
        },
        ["eval"] = new JsonObject { ["samples"] = s.EvalSamples },
    };

    public static SynthSaeBenchArchitecture Architecture(string name) =>
        Protocol.FirstOrDefault(a => a.Name == name)
        ?? throw new ConfigException($"--architectures has \"{name}\"; valid: {string.Join(", ", DefaultArchitectures)}");

    private static (JsonObject Row, string? Dictionary) TrainOne(EngineContext context, SynthSaeBenchSettings s, string name,
        PreparedData data, IRunProgress progress, CancellationToken cancel)
    {
        var architecture = Architecture(name);
        var row = new JsonObject { ["architecture"] = name, ["label"] = architecture.Label };
        var configJson = FactorizeConfigJson(s, architecture);
        row["config"] = configJson.DeepClone();
        FactorizeConfig config;
        try
        {
            config = FactorizeConfigLoader.Parse(configJson.ToJsonString(), $"bench synthsaebench ({name})", data.Directory);
            var d = config.D ?? (int)s.Data.Generator.D;
            FactorizeExperiment.CheckSupported(context, Factorization.ModelSpec(config, d));
        }
        catch (ConfigException e)
        {
            row["status"] = $"{NotSupported}: {e.Message}";
            progress.Warn($"{name}: not supported by this engine ({e.Message})");
            return (row, null);
        }
        var runDir = Path.Combine(s.WorkDirectory, "runs", name);
        progress.Note($"training {name} (width {s.Width}, {s.Samples} samples) into {runDir}");
        var clock = Stopwatch.StartNew();
        var result = FactorizeExperiment.Run(context, config, runDir, progress, cancel, force: true);
        row["seconds"] = clock.Elapsed.TotalSeconds;
        row["run"] = Path.GetFullPath(runDir);
        if (!result.Completed || result.Metrics is not { } metrics)
        {
            row["status"] = $"interrupted at step {result.Steps} of {result.TotalSteps}";
            return (row, null);
        }
        row["status"] = "ok";
        row["train_seconds"] = metrics.Seconds;
        row["samples_per_second"] = metrics.TokensPerSecond;
        row["metrics"] = metrics.Truth is { } truth ? TruthJson(truth) : null;
        if (metrics.Truth is null) row["status"] = "ok, but no synthsaebench metrics (the files' ground truth was not found)";
        if (result.Tuning is { } tuning) row["sparsity_tuning"] = tuning.Json(result.Steps);
        return (row, Path.Combine(runDir, DictionaryFolder.Subfolder));
    }

    private static JsonObject TruthJson(TruthEvaluation.Result truth)
    {
        var r = truth.Metrics;
        return new JsonObject
        {
            ["mcc"] = r.Mcc,
            ["f1"] = r.F1,
            ["precision"] = r.Precision,
            ["recall"] = r.Recall,
            ["accuracy"] = r.Accuracy,
            ["uniqueness"] = r.Uniqueness,
            ["explained_variance"] = r.ExplainedVariance,
            ["shrinkage"] = r.Shrinkage,
            ["l0"] = r.L0,
            ["true_l0"] = r.TrueL0,
            ["dead_latents"] = r.DeadLatents,
            ["samples"] = truth.Samples,
            ["seconds"] = truth.Seconds,
        };
    }

    /// <summary>Writes the first <paramref name="samples"/> samples of the evaluation stream of the generator the files
    /// were written by (the samples the engine's metrics use) for the peer: x.npy (float32 [samples][d]), and the true
    /// active features as active_index.npy (int32 [nnz][1]) with active_begin.npy (int32 [samples + 1][1]; sample t's
    /// are active_index[active_begin[t] .. active_begin[t + 1])).</summary>
    public static void WriteEvaluationSet(string dataDirectory, string outDirectory, long samples)
    {
        using var cpu = new EngineContext(Backend.Cpu);
        var d = GroundTruthFile.Read(GroundTruthFile.Beside(dataDirectory)
                                     ?? throw new InvalidOperationException($"{dataDirectory}: no ground truth")).D;
        using var truth = KnownTruth.Beside(cpu, dataDirectory, d)
                          ?? throw new InvalidOperationException($"{dataDirectory}: no ground truth of d = {d}");
        using var source = truth.OpenSamples();
        if (samples * d > int.MaxValue) throw new ConfigException($"--eval-samples {samples}: at most {int.MaxValue / d} samples of d = {d} can be written for the peer");
        var x = new float[samples * d];
        var begin = new int[samples + 1];
        var index = new List<int>();
        const int chunk = 4096;
        for (long done = 0; done < samples;)
        {
            var count = (int)Math.Min(chunk, samples - done);
            var codes = source.Next(count, x.AsSpan((int)(done * d), count * d));
            for (var t = 0; t < count; t++)
            {
                for (var e = codes.RowBegin[t]; e < codes.RowBegin[t + 1]; e++) index.Add(codes.Index[e]);
                begin[done + t + 1] = checked(index.Count);
            }
            done += count;
        }
        Directory.CreateDirectory(outDirectory);
        Npy.WriteF32(Path.Combine(outDirectory, "x.npy"), x, d);
        Npy.WriteI32(Path.Combine(outDirectory, "active_begin.npy"), begin, 1);
        Npy.WriteI32(Path.Combine(outDirectory, "active_index.npy"), index.Count > 0 ? index.ToArray() : [-1], 1);
    }

    // The peer: trains what it implements on the same files, measures on the same samples, and measures the engine's
    // dictionaries (the metrics' agreement).
    private static JsonObject RunPeer(SynthSaeBenchSettings s, PreparedData data, List<(string Architecture, string Folder)> dictionaries,
        IRunProgress progress)
    {
        var evalDir = Path.Combine(s.WorkDirectory, "eval");
        progress.Note($"writing {s.EvalSamples} evaluation samples for the peer to {evalDir}");
        WriteEvaluationSet(data.Directory, evalDir, s.EvalSamples);
        var peerDir = Path.Combine(s.WorkDirectory, "peer");
        var arguments = string.Join(' ',
            "--data", Quote(Path.GetFullPath(data.Directory)), "--pattern", ShardPattern(s),
            "--dtype", s.ShardFormat == ActivationFileFormat.RawBF16 ? "bfloat16" : "float32",
            "--eval", Quote(Path.GetFullPath(evalDir)), "--out", Quote(Path.GetFullPath(peerDir)),
            "--architectures", string.Join(',', s.Architectures), "--width", s.Width.ToString(CultureInfo.InvariantCulture),
            "--l0", s.L0.ToString(CultureInfo.InvariantCulture), "--batch", s.Batch.ToString(CultureInfo.InvariantCulture),
            "--lr", s.Lr.ToString("R", CultureInfo.InvariantCulture), "--samples", s.Samples.ToString(CultureInfo.InvariantCulture),
            "--seed", s.Seed.ToString(CultureInfo.InvariantCulture));
        foreach (var (architecture, folder) in dictionaries)
            arguments += $" --evaluate {architecture}={Quote(Path.GetFullPath(folder))}";
        progress.Note("running the PyTorch peer (bench/peers/" + PeerScript + ")");
        var peer = PythonPeer.Run(PeerScript, arguments);
        if (peer["status"]?.GetValue<string>() is "ok") peer["peer"] ??= "pytorch";
        return peer;
    }

    private static string Quote(string path) => $"\"{path}\"";

    // ---- the table ---------------------------------------------------------------------------------------------

    /// <summary>The paper's table at L0 = target beside this run: per architecture F1 / MCC of the engine, the peer
    /// (when it ran) and the paper, and the engine's L0 and explained variance.</summary>
    public static IEnumerable<string> MarkdownTable(JsonNode result)
    {
        var protocol = result["protocol"]!;
        var peer = result["peer"];
        var peerRan = peer?["status"]?.GetValue<string>() == "ok";
        var peerRows = peerRan ? peer!["rows"]?.AsArray().Where(r => r is not null).ToDictionary(r => r!["architecture"]!.GetValue<string>(), r => r!) : null;
        var peerName = peerRan ? $"PyTorch {peer!["version"]?.GetValue<string>()}" : "peer";
        yield return $"SynthSAEBench, {protocol["n_features"]} features in d = {protocol["d"]}, width {protocol["width"]}, target L0 " +
                     $"{protocol["target_l0"]}, {protocol["samples"]} training samples ({protocol["data_samples"]} distinct), batch " +
                     $"{protocol["batch_size"]}, lr {protocol["lr"]} constant, metrics on {protocol["eval_samples"]} fresh samples; " +
                     $"{result["backend"]} backend. Paper: 200M samples, width 4096, mean over 5 seeds.";
        yield return "";
        yield return $"| architecture | F1 / MCC (NativeEngine) | L0 | explained variance | F1 / MCC ({peerName}) | F1 / MCC (paper) |";
        yield return "| --- | --- | --- | --- | --- | --- |";
        foreach (var row in result["results"]!.AsArray())
        {
            var name = row!["architecture"]!.GetValue<string>();
            var architecture = Protocol.FirstOrDefault(a => a.Name == name);
            var status = row["status"]!.GetValue<string>();
            var m = row["metrics"];
            // A refused architecture's full reason is in the JSON; the table says it briefly.
            var ours = m is not null ? $"{F(m["f1"])} / {F(m["mcc"])}"
                : status.StartsWith(NotSupported, StringComparison.Ordinal) ? NotSupported : Escape(status);
            var l0 = m is not null ? F(m["l0"], "0.0") : "";
            var ev = m is not null ? F(m["explained_variance"]) : "";
            string theirs;
            if (!peerRan) theirs = peer is null ? "" : Escape(peer["status"]?.GetValue<string>() ?? "not run");
            else if (peerRows!.TryGetValue(name, out var p) && p["metrics"] is { } pm) theirs = $"{F(pm["f1"])} / {F(pm["mcc"])} (L0 {F(pm["l0"], "0.0")})";
            else theirs = Escape(peerRows.TryGetValue(name, out var q) ? q["status"]?.GetValue<string>() ?? "" : "not implemented by the peer");
            var paper = architecture is null ? "" : $"{architecture.PaperF1:0.000} / {architecture.PaperMcc:0.000}";
            yield return $"| {architecture?.Label ?? name} | {ours} | {l0} | {ev} | {theirs} | {paper} |";
        }
        if (peerRan && peer!["agreement"] is JsonArray agreement && agreement.Count > 0)
        {
            yield return "";
            yield return "The peer's metrics of the engine's saved dictionaries (largest difference to the engine's own, over MCC, F1, " +
                         "precision, recall, explained variance, L0):";
            foreach (var a in agreement)
                yield return $"- {a!["architecture"]}: F1 {F(a["metrics"]?["f1"])}, MCC {F(a["metrics"]?["mcc"])}, largest difference " +
                             $"{Difference(result, a)}";
        }
    }

    private static readonly string[] ComparedMetrics = ["mcc", "f1", "precision", "recall", "explained_variance", "l0"];

    /// <summary>The largest |peer - engine| over the compared metrics, for one of the engine's dictionaries.</summary>
    public static double? LargestDifference(JsonNode result, JsonNode agreement)
    {
        var name = agreement["architecture"]!.GetValue<string>();
        var engine = result["results"]!.AsArray().FirstOrDefault(r => r!["architecture"]!.GetValue<string>() == name)?["metrics"];
        var peer = agreement["metrics"];
        if (engine is null || peer is null) return null;
        return ComparedMetrics.Max(k => Math.Abs(engine[k]!.GetValue<double>() - peer[k]!.GetValue<double>()));
    }

    private static string Difference(JsonNode result, JsonNode agreement) =>
        LargestDifference(result, agreement) is { } d ? d.ToString("0.0e+0", CultureInfo.InvariantCulture) : "n/a";

    private static string F(JsonNode? value, string format = "0.000") =>
        value is null ? "" : value.GetValue<double>().ToString(format, CultureInfo.InvariantCulture);

    private static string Escape(string text) => text.Replace("|", "\\|").Replace("\n", " ");
}
