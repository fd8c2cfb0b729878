using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("bench", HelpText = "Benchmark a workload (toy) and its peer in the same run; prints JSON.")]
public sealed class BenchOptions : BackendOptions
{
    [Value(0, MetaName = "workload", Required = true, HelpText = "toy | factorize")]
    public string Workload { get; set; } = "";

    [Option("d-in", Default = 256, HelpText = "factorize: input dimension d.")]
    public int D { get; set; } = 256;

    [Option("d-sae", Default = 4096, HelpText = "factorize: dictionary size.")]
    public int DSae { get; set; } = 4096;

    [Option("top-k", Default = 32, HelpText = "factorize: k of the TopK SAE.")]
    public int K { get; set; } = 32;

    [Option("batch", Default = 4096, HelpText = "factorize: tokens per step.")]
    public int Batch { get; set; } = 4096;

    [Option("seconds", Default = 5.0, HelpText = "Minimum measured time per side.")]
    public double Seconds { get; set; } = 5.0;

    [Option("peer", Default = "auto", HelpText = "auto (run the peer when it is installed) | none.")]
    public string Peer { get; set; } = "auto";

    [Option("out", HelpText = "Also write the JSON to this file.")]
    public string? Out { get; set; }
}

/// <summary>
/// `bench toy`: steps per second of the toy trainer at n=100, m=20, 20 instances, batch 1024, beside the paper
/// notebook's PyTorch loop (bench/peers/toy_notebook.py) measured in the same run on the same machine.
/// </summary>
public static class BenchCommand
{
    public static readonly ToyConfig ToyBenchConfig = ToyConfigLoader.Parse("""
        {
          "model": "relu_output", "n_features": 100, "n_hidden": 20, "n_instances": 20,
          "importance": 0.9, "feature_probability": { "geomspace": [1.0, 0.01] },
          "batch_size": 1024, "seed": 0
        }
        """, "bench toy config");

    public static int Run(BenchOptions options, IAnsiConsole console)
    {
        if (options.Workload is not ("toy" or "factorize"))
            throw new ConfigException($"bench workload \"{options.Workload}\" is unknown; valid: toy, factorize");
        if (options.Peer is not ("auto" or "none")) throw new ConfigException($"--peer is \"{options.Peer}\"; valid: auto, none");
        if (!(options.Seconds > 0)) throw new ConfigException($"--seconds is {options.Seconds}; valid: > 0");
        if (options.Workload == "factorize") return Factorize(options, console);

        var config = ToyBenchConfig;
        using var context = new EngineContext(options.ParseBackend());
        var stepsPerSecond = MeasureToy(context, config, options.Seconds, out var steps, out var seconds);
        var ours = new JsonObject
        {
            ["backend"] = context.Device.Backend == Backend.Cuda ? "cuda" : "cpu",
            ["device"] = context.Device.Name,
            ["threads"] = context.Device.Backend == Backend.Cpu ? context.Device.Multiprocessors : null,
            ["steps"] = steps,
            ["seconds"] = Math.Round(seconds, 4),
            ["steps_per_second"] = Math.Round(stepsPerSecond, 2),
        };
        var peer = options.Peer == "none" ? new JsonObject { ["status"] = "not run (--peer none)" }
            : ToyPeer.Run(config, options.Seconds, context.Device.Backend);
        var result = new JsonObject
        {
            ["benchmark"] = "toy",
            ["date"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["machine"] = MachineJson(),
            ["workload"] = new JsonObject
            {
                ["model"] = ToyConfig.ModelName(config.Model), ["n_features"] = config.NFeatures,
                ["n_hidden"] = config.NHidden, ["n_instances"] = config.NInstances, ["batch_size"] = config.BatchSize,
                ["feature_probability"] = "geomspace(1, 0.01) over the instances", ["optimizer"] = "adamw",
            },
            ["nativeengine"] = ours,
            ["peer"] = peer,
        };
        if (peer["steps_per_second"] is JsonValue peerRate && peerRate.GetValue<double>() > 0)
            result["speedup"] = Math.Round(stepsPerSecond / peerRate.GetValue<double>(), 2);
        return Emit(result, options, console);
    }

    // Prints the result and, with --out, writes it.
    private static int Emit(JsonObject result, BenchOptions options, IAnsiConsole console)
    {
        var json = result.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        console.Profile.Out.Writer.WriteLine(json);
        if (options.Out is { } path)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
            AtomicFile.WriteText(path, json + "\n");
        }
        return 0;
    }

    /// <summary>`bench factorize`: TopK SAE training steps on a fixed Gaussian batch, tokens per second, beside
    /// bench/peers/topk_sae.py (plain PyTorch, the same sizes and batch) in the same run.</summary>
    private static int Factorize(BenchOptions options, IAnsiConsole console)
    {
        if (options.D < 1 || options.DSae < 1 || options.K < 1 || options.K > options.DSae || options.Batch < 1)
            throw new ConfigException($"--d-in {options.D}, --d-sae {options.DSae}, --top-k {options.K}, --batch {options.Batch}: " +
                                      "valid: all >= 1 and k <= d_sae");
        using var context = new EngineContext(options.ParseBackend());
        using var sae = new SparseAutoencoder(context, new SaeModelSpec(SaeArchitecture.TopK, options.D, options.DSae,
            options.K, options.Batch, Seed: 0));
        var rng = new Random(0);
        var x = new float[(long)options.Batch * options.D];
        for (var j = 0; j < x.Length; j++) x[j] = (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        sae.TrainStep(x, 1e-4f);  // warm-up: workspace allocation, thread start
        var clock = Stopwatch.StartNew();
        long steps = 0;
        while (clock.Elapsed.TotalSeconds < options.Seconds)
        {
            sae.TrainStep(x, 1e-4f);
            steps++;
        }
        var seconds = clock.Elapsed.TotalSeconds;
        var tokensPerSecond = steps * (double)options.Batch / seconds;
        // Encoder GEMM 2·d·m per token: the floor of the work, and the rate the hardware is judged by.
        var encoderFlops = 2.0 * options.D * options.DSae * tokensPerSecond;
        var ours = new JsonObject
        {
            ["backend"] = context.Device.Backend == Backend.Cuda ? "cuda" : "cpu",
            ["device"] = context.Device.Name,
            ["threads"] = context.Device.Backend == Backend.Cpu ? context.Device.Multiprocessors : null,
            ["steps"] = steps,
            ["seconds"] = Math.Round(seconds, 4),
            ["tokens_per_second"] = Math.Round(tokensPerSecond, 1),
            ["encoder_gflops"] = Math.Round(encoderFlops / 1e9, 2),
        };
        var peer = options.Peer == "none" ? new JsonObject { ["status"] = "not run (--peer none)" }
            : PythonPeer.Run("topk_sae.py", string.Create(CultureInfo.InvariantCulture,
                $"--d {options.D} --d-sae {options.DSae} --k {options.K} --batch {options.Batch} --seconds {options.Seconds} " +
                $"--device {(context.Device.Backend == Backend.Cuda ? "cuda" : "cpu")} --threads {Environment.ProcessorCount}"));
        var result = new JsonObject
        {
            ["benchmark"] = "factorize",
            ["date"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["machine"] = MachineJson(),
            ["workload"] = new JsonObject
            {
                ["architecture"] = "topk", ["d"] = options.D, ["d_sae"] = options.DSae, ["k"] = options.K,
                ["batch_size"] = options.Batch, ["optimizer"] = "adam", ["data"] = "one fixed Gaussian batch (both sides)",
            },
            ["nativeengine"] = ours,
            ["peer"] = peer,
        };
        if (peer["tokens_per_second"] is JsonValue peerRate && peerRate.GetValue<double>() > 0)
            result["speedup"] = Math.Round(tokensPerSecond / peerRate.GetValue<double>(), 2);
        return Emit(result, options, console);
    }

    /// <summary>Steps per second over at least <paramref name="minSeconds"/>, after a warm-up.</summary>
    public static double MeasureToy(EngineContext context, ToyConfig config, double minSeconds, out long steps, out double seconds)
    {
        using var model = ToyTraining.Create(context, config);
        model.Train(5);  // warm-up: first-touch allocation, thread start, kernel load
        var clock = Stopwatch.StartNew();
        steps = 0;
        long chunk = 5;
        while (clock.Elapsed.TotalSeconds < minSeconds)
        {
            model.Train(chunk);
            steps += chunk;
            chunk = Math.Min(chunk * 2, 4096);
        }
        seconds = clock.Elapsed.TotalSeconds;
        return steps / seconds;
    }

    public static JsonObject MachineJson()
    {
        using var cpu = new EngineContext(Backend.Cpu);
        return new JsonObject
        {
            ["cpu"] = cpu.Device.Name,
            ["logical_cores"] = Environment.ProcessorCount,
            ["memory_bytes"] = cpu.Device.TotalMemory,
            ["os"] = RuntimeInformation.OSDescription,
            ["runtime"] = RuntimeInformation.FrameworkDescription,
            ["engine_version"] = Engine.Version,
        };
    }
}

/// <summary>Runs bench/peers/toy_notebook.py (the paper notebook's PyTorch training loop) when Python and torch are there.</summary>
public static class ToyPeer
{
    public static JsonObject Run(ToyConfig config, double seconds, Backend backend) =>
        PythonPeer.Run("toy_notebook.py", string.Create(CultureInfo.InvariantCulture,
            $"--n {config.NFeatures} --m {config.NHidden} --instances {config.NInstances} " +
            $"--batch {config.BatchSize} --seconds {seconds} --device {(backend == Backend.Cuda ? "cuda" : "cpu")} " +
            $"--threads {Environment.ProcessorCount}"));
}

/// <summary>Runs a peer script of bench/peers with the first Python that has torch; its last stdout line is JSON.</summary>
public static class PythonPeer
{
    public static JsonObject Run(string scriptName, string arguments)
    {
        var script = FindScript(scriptName);
        if (script is null) return new JsonObject { ["status"] = $"not run: bench/peers/{scriptName} not found from the working folder" };
        var errors = new List<string>();
        foreach (var python in PythonCandidates())
        {
            var (code, stdout, stderr) = Exec(python, $"\"{script}\" {arguments}");
            if (code == 0)
            {
                var node = JsonNode.Parse(stdout.Trim().Split('\n')[^1])!.AsObject();
                node["python"] = python;
                node["status"] = "ok";
                return node;
            }
            errors.Add($"{python}: {(code < 0 ? stderr : $"exit {code}: {stderr.Trim().Split('\n')[^1]}")}");
        }
        return new JsonObject
        {
            ["status"] = "not run: no Python with torch (install with bench/setup-peers.sh)",
            ["tried"] = new JsonArray(errors.Select(e => (JsonNode)JsonValue.Create(e)!).ToArray()),
        };
    }

    private static IEnumerable<string> PythonCandidates()
    {
        if (Environment.GetEnvironmentVariable("NE_PYTHON") is { Length: > 0 } chosen) yield return chosen;
        // Debian's python3-torch lives under the system interpreter, which a user's PATH may shadow.
        if (File.Exists("/usr/bin/python3")) yield return "/usr/bin/python3";
        yield return "python3";
    }

    private static string? FindScript(string scriptName)
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "bench", "peers", scriptName);
                if (File.Exists(candidate)) return candidate;
            }
        }
        return null;
    }

    private static (int Code, string Stdout, string Stderr) Exec(string file, string arguments)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo(file, arguments)
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            })!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            process.WaitForExit();
            return (process.ExitCode, stdout.Result, stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, "", e.Message);
        }
    }
}
