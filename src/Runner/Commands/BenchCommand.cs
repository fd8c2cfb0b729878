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
    [Value(0, MetaName = "workload", Required = true, HelpText = "toy")]
    public string Workload { get; set; } = "";

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
        if (options.Workload != "toy") throw new ConfigException($"bench workload \"{options.Workload}\" is unknown; valid: toy");
        if (options.Peer is not ("auto" or "none")) throw new ConfigException($"--peer is \"{options.Peer}\"; valid: auto, none");
        if (!(options.Seconds > 0)) throw new ConfigException($"--seconds is {options.Seconds}; valid: > 0");

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
        var json = result.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        console.Profile.Out.Writer.WriteLine(json);
        if (options.Out is { } path)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
            AtomicFile.WriteText(path, json + "\n");
        }
        return 0;
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
    public static JsonObject Run(ToyConfig config, double seconds, Backend backend)
    {
        var script = FindScript();
        if (script is null) return new JsonObject { ["status"] = "not run: bench/peers/toy_notebook.py not found from the working folder" };
        var device = backend == Backend.Cuda ? "cuda" : "cpu";
        var arguments = string.Create(CultureInfo.InvariantCulture,
            $"\"{script}\" --n {config.NFeatures} --m {config.NHidden} --instances {config.NInstances} " +
            $"--batch {config.BatchSize} --seconds {seconds} --device {device} --threads {Environment.ProcessorCount}");
        var errors = new List<string>();
        foreach (var python in PythonCandidates())
        {
            var (code, stdout, stderr) = Exec(python, arguments);
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

    private static string? FindScript()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "bench", "peers", "toy_notebook.py");
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
