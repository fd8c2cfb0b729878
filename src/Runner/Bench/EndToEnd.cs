using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using NativeEngine.Runner.Configs;

namespace NativeEngine.Runner.Bench;

/// <summary>
/// `bench e2e`: whole commands as a user runs them, each in its own process timed from start to exit (start-up,
/// config, training, evaluation, figures, report), beside the peer's whole script on the same work (PyTorch from
/// interpreter start: import, training, the final loss on fresh batches, saving the weights). Training seconds come
/// from each side's own report, so every row also says what the run cost besides training: its fixed cost.
/// </summary>
public static class EndToEnd
{
    public static readonly string[] CaseNames = ["toy", "factorize", "moe", "demo"];
    public static readonly long[] DefaultToySteps = [500, 2000, 10000];
    public const string DefaultToyConfig = "configs/paper/n100_m20.json";
    public const string FactorizeConfigPath = "configs/factorize/synthetic_d256.json";
    public const string MoeConfigPath = "configs/moe/compare_n20.json";

    public const string What =
        "wall seconds from process start to exit of each command as a user runs it (the runner's executable, not " +
        "`dotnet run`, whose build check is not the engine's), and of the peer's whole script on the same work " +
        "(Python start, torch import, training, the final loss on 16 fresh batches, weights saved); training_seconds " +
        "as each side reports its training loop, fixed_seconds = wall - training";

    /// <summary>The rows of the chosen cases; <paramref name="toyConfig"/> is a paper config's path.</summary>
    public static JsonArray Run(IReadOnlyCollection<string> cases, string toyConfig, IReadOnlyList<long> toySteps,
        bool runPeers, Action<string> log)
    {
        var rows = new JsonArray();
        var scratch = Path.Combine(Path.GetTempPath(), $"ne-e2e-{Guid.NewGuid():N}");
        Directory.CreateDirectory(scratch);
        try
        {
            var runFolder = 0;
            string Folder() => Path.Combine(scratch, $"run{runFolder++}");
            if (cases.Contains("toy"))
            {
                var config = ToyConfigLoader.LoadFile(Find(toyConfig));
                var name = Path.GetFileNameWithoutExtension(toyConfig);
                foreach (var steps in toySteps)
                {
                    log($"toy {name}, {steps} steps");
                    var ours = Ours(["toy", "--config", Find(toyConfig), "--steps", Invariant(steps)],
                        Folder());
                    var peer = runPeers ? ToyPeer(config, steps, Folder()) : PythonPeer.NotRun("--peer none");
                    rows.Add(Row($"toy {name}, {steps} steps",
                        $"nativeengine toy --config {toyConfig} --steps {steps} --out DIR", ours, [peer]));
                }
            }
            if (cases.Contains("factorize"))
            {
                log("factorize synthetic_d256");
                var config = FactorizeConfigLoader.LoadFile(Find(FactorizeConfigPath));
                var ours = Ours(["factorize", "--config", Find(FactorizeConfigPath)], Folder());
                var peer = runPeers ? FactorizePeer(config, Folder()) : PythonPeer.NotRun("--peer none");
                rows.Add(Row("factorize synthetic_d256", $"nativeengine factorize --config {FactorizeConfigPath} --out DIR",
                    ours, [peer]));
            }
            if (cases.Contains("moe"))
            {
                log("moe --compare compare_n20");
                var config = MoeConfigLoader.LoadFile(Find(MoeConfigPath));
                var ours = Ours(["moe", "--config", Find(MoeConfigPath), "--compare"], Folder());
                var peers = runPeers ? MoeComparePeers(config, Folder) : [PythonPeer.NotRun("--peer none")];
                rows.Add(Row("moe --compare compare_n20", $"nativeengine moe --config {MoeConfigPath} --compare --out DIR",
                    ours, peers, sumPeers: true));
            }
            if (cases.Contains("demo"))
            {
                log("demo");
                var ours = Ours(["demo"], Folder());
                rows.Add(Row("demo", "nativeengine demo --out DIR", ours,
                    [PythonPeer.NotRun("no peer runs the demo's tour (toy figures, MoE, dictionaries and their report)")]));
            }
        }
        finally
        {
            try { Directory.Delete(scratch, recursive: true); }
            catch (IOException) { }
        }
        return rows;
    }

    // ---- our side -------------------------------------------------------------------------------------------------

    private sealed record Measured(int ExitCode, double WallSeconds, double? TrainingSeconds, string Error);

    /// <summary>Runs the runner's own executable (the apphost beside this assembly, else `dotnet` on it) with
    /// <paramref name="arguments"/> and --out <paramref name="outDir"/>, timing it from start to exit.</summary>
    private static Measured Ours(string[] arguments, string outDir)
    {
        var (file, prefix) = Self();
        var clock = Stopwatch.StartNew();
        var (code, _, stderr) = PythonPeer.Exec(file,
            prefix + string.Join(' ', arguments.Select(Quote)) + $" --out {Quote(outDir)}",
            new Dictionary<string, string> { ["NO_COLOR"] = "1" });
        var wall = clock.Elapsed.TotalSeconds;
        return new Measured(code, wall, code == 0 ? TrainingSeconds(outDir) : null,
            code == 0 ? "" : stderr.Trim().Split('\n').LastOrDefault() ?? "");
    }

    private static (string File, string Prefix) Self()
    {
        var assembly = typeof(EndToEnd).Assembly.Location;
        var directory = Path.GetDirectoryName(assembly)!;
        var apphost = Path.Combine(directory, OperatingSystem.IsWindows() ? "nativeengine.exe" : "nativeengine");
        if (File.Exists(apphost)) return (apphost, "");
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } path ? path : "dotnet";
        return (host, Quote(assembly) + " ");
    }

    /// <summary>The training seconds a run folder reports: the sum of the "seconds" of every results.json and
    /// metrics.json under it (one per trained model: a toy run has one, `moe --compare` three, a demo several).</summary>
    private static double? TrainingSeconds(string outDir)
    {
        double total = 0;
        var any = false;
        foreach (var file in Directory.EnumerateFiles(outDir, "*.json", SearchOption.AllDirectories)
                     .Where(f => Path.GetFileName(f) is "results.json" or "metrics.json"))
            if (JsonNode.Parse(File.ReadAllText(file)) is JsonObject o && o["seconds"] is JsonValue v &&
                v.TryGetValue<double>(out var seconds))
            {
                total += seconds;
                any = true;
            }
        return any ? total : null;
    }

    // ---- the peers' whole scripts ------------------------------------------------------------------------------------

    private static JsonObject ToyPeer(ToyConfig config, long steps, string outDir)
    {
        if (config.Model == Interop.ToyModelKind.AbsValue || config.L1.Any(v => v != 0) || config.FeatureSets.Length > 0)
            return PythonPeer.NotRun("the notebook loop has no abs_value model, L1 penalty or feature sets");
        using var data = PeerData.Json(config.ImportancePerInstance(), config.FeatureProbability);
        return Timed("toy_notebook.py", string.Create(CultureInfo.InvariantCulture,
            $"--n {config.NFeatures} --m {config.NHidden} --instances {config.NInstances} --batch {config.BatchSize} " +
            $"--model {ToyConfig.ModelName(config.Model)} --data \"{data.Path}\" --lr {config.Lr} " +
            $"--weight-decay {config.WeightDecay} --optimizer {(config.Optimizer == Interop.OptimizerKind.AdamW ? "adamw" : "adam")} " +
            $"--steps {steps} --out \"{outDir}\" --threads {BenchRun.PeerThreads}"));
    }

    private static JsonObject FactorizePeer(FactorizeConfig config, string outDir)
    {
        if (config.Data is not SharkeySpec synthetic || synthetic.Correlated || config.Sae.K is not { } k)
            return PythonPeer.NotRun("the peer generates uncorrelated Sharkey synthetic data for a TopK SAE only");
        return Timed("topk_sae_sparse.py", string.Create(CultureInfo.InvariantCulture,
            $"--d {synthetic.D} --d-sae {config.Sae.DSae} --k {k} --batch {config.Train.BatchSize} " +
            $"--synthetic {synthetic.NFeatures},{synthetic.ActiveMean},{synthetic.ProbabilityDecay} " +
            $"--steps {config.Train.Steps} --out \"{outDir}\" --threads {BenchRun.PeerThreads}"));
    }

    // `moe --compare` trains the MoE and two dense models (width k·m and E·m) on the same data: the peer runs the
    // MoE loop and the notebook's loop at both widths.
    private static JsonObject[] MoeComparePeers(MoeConfig config, Func<string> folder)
    {
        var c = config.Run;
        var r = config.Router;
        if (r.Noise != Interop.RouterNoise.None || r.CapacityFactor > 0 || r.BiasUpdate > 0 || c.L1.Any(v => v != 0) ||
            c.FeatureSets.Length > 0 || c.Optimizer != Interop.OptimizerKind.AdamW)
            return [PythonPeer.NotRun("moe_toy.py has no router noise, capacity limit, bias update, L1 or feature sets")];
        using var data = PeerData.Json(c.ImportancePerInstance(), c.FeatureProbability);
        var common = string.Create(CultureInfo.InvariantCulture, $"--n {c.NFeatures} --instances {c.NInstances} --batch {c.BatchSize} --data \"{data.Path}\" " +
                               $"--lr {c.Lr} --weight-decay {c.WeightDecay} --steps {c.Steps} --threads {BenchRun.PeerThreads}");
        return
        [
            Timed("moe_toy.py", string.Create(CultureInfo.InvariantCulture,
                $"{common} --m {config.ExpertHidden} --experts {config.NExperts} --top-k {config.TopK} " +
                $"--expert-model {ToyConfig.ModelName(config.ExpertModel)} --renormalize {(r.Renormalize ? 1 : 0)} " +
                $"--load-balance {r.LoadBalance} --z-loss {r.ZLoss} --out \"{folder()}\"")),
            Timed("toy_notebook.py", string.Create(CultureInfo.InvariantCulture,
                $"{common} --m {config.TopK * config.ExpertHidden} --model {ToyConfig.ModelName(config.ExpertModel)} --out \"{folder()}\"")),
            Timed("toy_notebook.py", string.Create(CultureInfo.InvariantCulture,
                $"{common} --m {config.NExperts * config.ExpertHidden} --model {ToyConfig.ModelName(config.ExpertModel)} --out \"{folder()}\"")),
        ];
    }

    private static JsonObject Timed(string script, string arguments)
    {
        var clock = Stopwatch.StartNew();
        var result = PythonPeer.Run(script, arguments);
        if (result["status"]?.GetValue<string>() == "ok")
        {
            result["script"] = $"bench/peers/{script} {arguments}";
            result["wall_seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 3);
        }
        return result;
    }

    // ---- one row ------------------------------------------------------------------------------------------------------

    private static JsonObject Row(string name, string command, Measured ours, JsonObject[] peers, bool sumPeers = false)
    {
        var engine = new JsonObject
        {
            ["exit_code"] = ours.ExitCode,
            ["wall_seconds"] = Math.Round(ours.WallSeconds, 3),
            ["training_seconds"] = ours.TrainingSeconds is { } t ? Math.Round(t, 3) : null,
            ["fixed_seconds"] = ours.TrainingSeconds is { } t2 ? Math.Round(ours.WallSeconds - t2, 3) : null,
        };
        if (ours.ExitCode != 0) engine["error"] = ours.Error;
        var row = new JsonObject { ["name"] = name, ["command"] = command, ["nativeengine"] = engine };
        foreach (var peer in peers)
        {
            if (Workloads.PeerVersion(peer) is { } version) peer["version"] = version;
            if (peer["wall_seconds"] is not JsonValue wall || peer["seconds"] is not JsonValue seconds) continue;
            peer["training_seconds"] = seconds.DeepClone();
            peer["fixed_seconds"] = Math.Round(wall.GetValue<double>() - seconds.GetValue<double>(), 3);
        }
        var ran = peers.Where(p => p["wall_seconds"] is not null).ToArray();
        if (sumPeers && peers.Length > 1)
        {
            // One work, several scripts: the peer's time is their sum, and it counts only when all of them ran.
            var all = ran.Length == peers.Length;
            row["peer"] = new JsonObject
            {
                ["status"] = all ? "ok" : "not run: " + string.Join("; ", peers.Select(p => p["status"]!.GetValue<string>()).Where(s => s != "ok")),
                ["scripts"] = peers.Length,
                ["version"] = peers.Select(p => p["version"]?.GetValue<string>()).FirstOrDefault(v => v is not null),
                ["wall_seconds"] = all ? Math.Round(ran.Sum(p => p["wall_seconds"]!.GetValue<double>()), 3) : null,
                ["training_seconds"] = all ? Math.Round(ran.Sum(p => p["seconds"]!.GetValue<double>()), 3) : null,
            };
        }
        else row["peer"] = (ran.FirstOrDefault() ?? peers[0]).DeepClone();
        row["peers"] = new JsonArray(peers.Select(p => (JsonNode)p).ToArray());
        var peerRow = row["peer"]!;
        if (ours.ExitCode == 0 && peerRow["wall_seconds"] is JsonValue peerWall)
        {
            row["speedup"] = Math.Round(peerWall.GetValue<double>() / ours.WallSeconds, 2);
            if (ours.TrainingSeconds is { } training && training > 0 && peerRow["training_seconds"] is JsonValue peerTraining)
                row["training_speedup"] = Math.Round(peerTraining.GetValue<double>() / training, 2);
        }
        return row;
    }

    private static string Find(string relative) =>
        RepositoryFiles.Find(relative) ?? throw new ConfigException($"{relative} not found from the working folder: run bench e2e inside the checkout");

    private static string Quote(string s) => s.Any(char.IsWhiteSpace) || s.Contains('"') ? $"\"{s.Replace("\"", "\\\"")}\"" : s;

    private static string Invariant(long v) => v.ToString(CultureInfo.InvariantCulture);
}
