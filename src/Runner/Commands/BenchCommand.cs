using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Bench;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("bench", HelpText = "Benchmark workloads beside their peers and the machine's GEMM peak, measured in the same run; JSON out.")]
public sealed class BenchOptions : BackendOptions
{
    [Value(0, MetaName = "workload", HelpText = "toy | moe | factorize | dictionary | peak | read | all | e2e | synthsaebench | table FILE...")]
    public string Workload { get; set; } = "";

    [Value(1, MetaName = "files", HelpText = "table: result files to print as README rows.")]
    public IEnumerable<string> Files { get; set; } = [];

    [Option("all", HelpText = "Every workload (as `bench all`): writes bench/results/<machine>-<date>.json and prints the README rows.")]
    public bool All { get; set; }

    [Option("config", HelpText = "toy, moe, e2e: a config (e.g. configs/paper/n100_m20.json); default: n100_m20 (toy, e2e), compare_n20 (moe). synthsaebench: a factorize config whose data.synthetic is the generator (e.g. configs/factorize/synthsaebench_small.json); default: the 16k preset.")]
    public string? Config { get; set; }

    [Option("d-in", HelpText = "factorize, dictionary: input dimension d (one size instead of the standard ones); read: d of the data (default 512).")]
    public int? D { get; set; }

    [Option("d-sae", HelpText = "factorize, dictionary: dictionary size; synthsaebench: the width (default 4096).")]
    public int? DSae { get; set; }

    [Option("top-k", HelpText = "factorize, dictionary: k of the TopK SAE.")]
    public int? K { get; set; }

    [Option("batch", HelpText = "factorize, dictionary, read: tokens per step (default 4096 and 256; read: 4096; synthsaebench: 1024).")]
    public int? Batch { get; set; }

    [Option("seconds", Default = 5.0, HelpText = "Minimum measured time per side of each workload, and of each GEMM.")]
    public double Seconds { get; set; } = 5.0;

    [Option("peer", HelpText = "auto (run the peer when it is installed; the default) | none. synthsaebench: the peer trains too, so it runs only with --peer auto.")]
    public string? Peer { get; set; }

    [Option("gemm-size", Default = 2048, HelpText = "n of the n x n x n SGEMM that measures the machine's peak.")]
    public int GemmSize { get; set; } = 2048;

    [Option("steps", Separator = ',', HelpText = "e2e: the toy command's step counts (default 500,2000,10000).")]
    public IEnumerable<long> Steps { get; set; } = [];

    [Option("cases", Separator = ',', HelpText = "e2e: which commands: toy, factorize, moe, demo (default all).")]
    public IEnumerable<string> Cases { get; set; } = [];

    [Option("out", HelpText = "Also write the JSON to this file (all, e2e, synthsaebench: instead of bench/results/<machine>-<date>[-e2e|-synthsaebench].json).")]
    public string? Out { get; set; }

    [Option("samples", HelpText = "synthsaebench: training samples per architecture (the budget; the paper's is 200000000).")]
    public long? Samples { get; set; }

    [Option("data-samples", HelpText = "synthsaebench: distinct samples written to the shards (default --samples; fewer are cycled through in epochs; more: a smaller budget trains on part of a larger set of files).")]
    public long? DataSamples { get; set; }

    [Option("l0", HelpText = "synthsaebench: the target L0 (k of batchtopk; default 25).")]
    public int? L0 { get; set; }

    [Option("lr", HelpText = "synthsaebench: the constant learning rate (default 3e-4).")]
    public double? Lr { get; set; }

    [Option("architectures", Separator = ',', HelpText = "synthsaebench: which (default batchtopk,matryoshka_batchtopk,matching_pursuit,relu,jumprelu).")]
    public IEnumerable<string> Architectures { get; set; } = [];

    [Option("eval-samples", HelpText = "synthsaebench: fresh samples the metrics use (default 1000000).")]
    public long? EvalSamples { get; set; }

    [Option("seed", HelpText = "synthsaebench: the training seed (initialisation and shuffle; default 0).")]
    public ulong? Seed { get; set; }

    [Option("work", HelpText = "synthsaebench: folder for the shards (data/), the runs (runs/ARCH), the evaluation set and the peer's output (default synthsaebench-work).")]
    public string? Work { get; set; }

    [Option("data", HelpText = "synthsaebench: the shards' folder instead of WORK/data (reused when it holds the same samples).")]
    public string? Data { get; set; }

    [Option("dtype", HelpText = "synthsaebench: the shards' element type, bfloat16 (default: 2 bytes a value) | float32.")]
    public string? DType { get; set; }
}

/// <summary>
/// `bench`: throughput, FLOP rate and share of the machine's peak of each workload, beside its peer (PyTorch,
/// scikit-learn; bench/peers) and the peak (ne_sgemm and OpenBLAS), all measured in the same invocation. The JSON
/// holds the machine, the peak and one row per workload; `bench all` writes every workload to bench/results/ and
/// prints the README's table rows, which `bench table FILE` prints again from a saved file.
/// </summary>
public static class BenchCommand
{
    public static readonly string[] WorkloadNames = ["toy", "moe", "factorize", "dictionary", "peak", "read", "all", "e2e", "synthsaebench", "table"];

    public static int Run(BenchOptions options, Cli cli)
    {
        var console = cli.Out;
        var workload = options.All ? "all" : options.Workload;
        if (!WorkloadNames.Contains(workload))
            throw new ConfigException($"bench workload \"{workload}\" is {(workload.Length == 0 ? "missing" : "unknown")}; " +
                                      $"valid: {string.Join(", ", WorkloadNames)} (or --all)");
        if (options.Peer is not (null or "auto" or "none")) throw new ConfigException($"--peer is \"{options.Peer}\"; valid: auto, none");
        if (workload == "synthsaebench") return SynthSaeBenchRun(options, cli);
        if (options.Samples is not null || options.DataSamples is not null || options.L0 is not null || options.Lr is not null ||
            options.Architectures.Any() || options.EvalSamples is not null || options.Seed is not null || options.Work is not null ||
            options.Data is not null || options.DType is not null)
            throw new ConfigException("--samples, --data-samples, --l0, --lr, --architectures, --eval-samples, --seed, --work, --data " +
                                      "and --dtype apply to bench synthsaebench only");
        options.Peer ??= "auto";
        if (workload == "table") return Table(options.Files.ToArray(), cli);
        if (workload == "read") return Read(options, cli);
        if (!(options.Seconds > 0)) throw new ConfigException($"--seconds is {options.Seconds}; valid: > 0");
        if (options.GemmSize < 1 || options.GemmSize > MachinePeak.MaxGemmSize)
            throw new ConfigException($"--gemm-size is {options.GemmSize}; valid: 1..{MachinePeak.MaxGemmSize} (three n × n float " +
                                      "matrices must fit in memory)");
        if (!double.IsFinite(options.Seconds) || options.Seconds > 3600)
            throw new ConfigException($"--seconds is {options.Seconds}; valid: > 0 and at most 3600");
        if (options.Config is not null && workload is not ("toy" or "moe" or "e2e"))
            throw new ConfigException("--config applies to bench toy, moe and e2e only");
        if ((options.Steps.Any() || options.Cases.Any()) && workload != "e2e")
            throw new ConfigException("--steps and --cases apply to bench e2e only");
        if (workload == "e2e") return EndToEndRun(options, cli);
        var saeSizes = SaeSizes(options, workload);

        using var context = new EngineContext(options.ParseBackend());
        var peak = MachinePeak.Measure(options.GemmSize, options.Seconds);
        var run = new BenchRun(context, peak, options.Seconds, options.Peer == "auto");
        var all = workload == "all";
        var rows = new JsonArray();
        void Add(string what, Func<JsonObject> measure)
        {
            if (all) cli.Error.MarkupLine($"[grey]measuring {Markup.Escape(what)}[/]");
            rows.Add(measure());
        }

        if (workload is "toy" or "all")
        {
            if (options.Config is { } path) Add(path, () => Workloads.Toy(run, ToyConfigLoader.LoadFile(path), ConfigName(path), path));
            else Add("toy n100_m20", () => Workloads.Toy(run, Workloads.DefaultToy, "n100_m20", null));
            if (all)
                foreach (var relative in Workloads.SuiteToyConfigs)
                    if (RepositoryFiles.Find(relative) is { } found)
                        Add(relative, () => Workloads.Toy(run, ToyConfigLoader.LoadFile(found), ConfigName(relative), relative));
                    else cli.Warn($"{relative} not found from here: skipped");
        }
        if (workload is "moe" or "all")
        {
            if (options.Config is { } path) Add(path, () => Workloads.Moe(run, MoeConfigLoader.LoadFile(path), ConfigName(path), path));
            else Add("moe compare_n20", () => Workloads.Moe(run, Workloads.DefaultMoe, "compare_n20", null));
        }
        if (workload is "factorize" or "all")
            foreach (var (d, dSae, k, batch) in saeSizes.Factorize)
                Add($"factorize d={d} d_sae={dSae} k={k}", () => Workloads.Factorize(run, d, dSae, k, batch));
        if (workload is "dictionary" or "all")
        {
            var (d, dSae, k, batch) = saeSizes.Dictionary;
            Add($"dictionary d={d} d_sae={dSae}", () => Workloads.Dictionary(run, d, dSae, k, batch));
        }

        var result = new JsonObject
        {
            ["benchmark"] = workload,
            ["date"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["machine"] = MachineJson(context),
            ["seconds_per_side"] = options.Seconds,
            ["peak"] = peak.Json,
            ["results"] = rows,
        };
        var json = result.ToJsonString(new JsonSerializerOptions
        {
            WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        });
        if (!all)
        {
            console.Profile.Out.Writer.WriteLine(json);
            if (options.Out is { } path) Write(path, json);
            return 0;
        }
        var file = options.Out ?? DefaultResultPath(context);
        Write(file, json);
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(file))}");
        foreach (var line in MarkdownRows(result)) console.Profile.Out.Writer.WriteLine(line);
        return 0;
    }

    private static int EndToEndRun(BenchOptions options, Cli cli)
    {
        var console = cli.Out;
        var cases = options.Cases.Any() ? options.Cases.ToArray() : EndToEnd.CaseNames;
        if (cases.FirstOrDefault(c => !EndToEnd.CaseNames.Contains(c)) is { } unknown)
            throw new ConfigException($"--cases has \"{unknown}\"; valid: {string.Join(", ", EndToEnd.CaseNames)}");
        var steps = options.Steps.Any() ? options.Steps.ToArray() : EndToEnd.DefaultToySteps;
        if (steps.Any(s => s < 1))
            throw new ConfigException($"--steps has {steps.First(s => s < 1)}; valid: step counts >= 1");
        if (options.Config is { } config && !File.Exists(config) && RepositoryFiles.Find(config) is null)
            throw new ConfigException($"--config {config} does not exist");
        var rows = EndToEnd.Run(cases, options.Config ?? EndToEnd.DefaultToyConfig, steps, options.Peer == "auto",
            what => cli.Error.MarkupLine($"[grey]running {Markup.Escape(what)}[/]"));
        using var context = new EngineContext(Backend.Cpu);
        var result = new JsonObject
        {
            ["benchmark"] = "e2e",
            ["date"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["machine"] = MachineJson(context),
            ["what"] = EndToEnd.What,
            ["results"] = rows,
        };
        var json = result.ToJsonString(new JsonSerializerOptions
        {
            WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        });
        console.Profile.Out.Writer.WriteLine(json);
        var file = options.Out ?? DefaultResultPath(context).Replace(".json", "-e2e.json", StringComparison.Ordinal);
        Write(file, json);
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(file))}");
        return rows.All(r => r!["nativeengine"]!["exit_code"]!.GetValue<int>() == 0) ? 0 : 3;
    }

    /// <summary>`bench synthsaebench`: SynthSAEBench's protocol at a chosen budget (see <see cref="SynthSaeBench"/>);
    /// writes the JSON and prints the paper's table beside this run.</summary>
    private static int SynthSaeBenchRun(BenchOptions options, Cli cli)
    {
        var console = cli.Out;
        if (options.D is not null || options.K is not null || options.Steps.Any() || options.Cases.Any())
            throw new ConfigException("bench synthsaebench takes --samples, --config, --d-sae, --l0, --batch, --lr, --architectures, " +
                                      "--eval-samples, --data-samples, --seed, --work, --data, --dtype, --peer and --out (not --d-in, --top-k, --steps, --cases)");
        var samples = options.Samples ?? throw new ConfigException(
            "bench synthsaebench needs --samples N: the training samples per architecture (the paper's budget is 200000000; at d = 768 " +
            "every million samples written take 1.5 GB as bfloat16)");
        var width = options.DSae ?? SynthSaeBench.DefaultWidth;
        var l0 = options.L0 ?? SynthSaeBench.DefaultL0;
        var batch = options.Batch ?? SynthSaeBench.DefaultBatch;
        var lr = options.Lr ?? SynthSaeBench.DefaultLr;
        var evalSamples = options.EvalSamples ?? SynthSaeBench.DefaultEvalSamples;
        if (width < 1) throw new ConfigException($"--d-sae is {width}; valid: >= 1");
        if (l0 < 1 || l0 > width) throw new ConfigException($"--l0 is {l0}; valid: 1..{width} (the width, --d-sae)");
        if (batch < 1 || batch > 1 << 20) throw new ConfigException($"--batch is {batch}; valid: 1..{1 << 20}");
        if (samples < batch) throw new ConfigException($"--samples is {samples}; valid: >= --batch ({batch}): at least one step");
        var dataSamples = options.DataSamples ?? samples;
        // More than the budget: a budget below the files' size trains on part of them, so runs of several budgets share
        // one set of files.
        if (dataSamples < 1)
            throw new ConfigException($"--data-samples is {dataSamples}; valid: >= 1 (fewer than --samples are cycled through in epochs)");
        if (!(lr > 0) || !double.IsFinite(lr)) throw new ConfigException($"--lr is {lr}; valid: a number > 0");
        if (evalSamples < 1) throw new ConfigException($"--eval-samples is {evalSamples}; valid: >= 1");
        var architectures = options.Architectures.Any() ? options.Architectures.ToArray() : SynthSaeBench.DefaultArchitectures;
        foreach (var name in architectures) SynthSaeBench.Architecture(name);
        if (architectures.Distinct().Count() != architectures.Length)
            throw new ConfigException($"--architectures names \"{architectures.GroupBy(a => a).First(g => g.Count() > 1).Key}\" twice");
        var format = (options.DType ?? "bfloat16") switch
        {
            "bfloat16" => ActivationFileFormat.RawBF16,
            "float32" => ActivationFileFormat.RawF32,
            var other => throw new ConfigException($"--dtype is \"{other}\"; valid: bfloat16, float32"),
        };
        SyntheticSpec data;
        string dataSource;
        if (options.Config is { } configPath)
        {
            if (!File.Exists(configPath)) throw new ConfigException($"--config {configPath} does not exist");
            data = FactorizeConfigLoader.LoadFile(configPath).Data as SyntheticSpec
                   ?? throw new ConfigException($"--config {configPath}: \"data\" must be {{\"synthetic\": {{...}}}} (the generator the bench writes)");
            dataSource = configPath;
        }
        else
        {
            data = FactorizeConfigLoader.ParseSynthetic("{\"kind\": \"synthsaebench\", \"preset\": \"16k\"}", "the 16k preset");
            dataSource = "SynthSAEBench-16k (preset \"16k\")";
        }
        var work = options.Work ?? "synthsaebench-work";
        var settings = new SynthSaeBenchSettings(data, dataSource, samples, dataSamples, width, l0, batch, lr, evalSamples,
            options.Seed ?? 0, architectures, work, options.Data ?? Path.Combine(work, "data"), format, options.Peer == "auto");
        using var context = new EngineContext(options.ParseBackend());
        using var interrupt = Interrupt.Listen(cli.Cancel);
        var result = ConsoleProgress.Run(cli, progress => SynthSaeBench.Run(context, settings, progress, interrupt.Token));
        result["machine"] = MachineJson(context);
        var json = result.ToJsonString(new JsonSerializerOptions
        {
            WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        });
        var file = options.Out ?? DefaultResultPath(context).Replace(".json", "-synthsaebench.json", StringComparison.Ordinal);
        Write(file, json);
        console.MarkupLine($"wrote {Markup.Escape(Path.GetFullPath(file))}");
        foreach (var line in SynthSaeBench.MarkdownTable(result)) console.Profile.Out.Writer.WriteLine(line);
        return 0;
    }

    private sealed record SaeSizeChoice((int D, int DSae, int K, int Batch)[] Factorize, (int D, int DSae, int K, int Batch) Dictionary);

    /// <summary>`bench read`: tokens/s of each activation file format on the same data (see <see cref="ReadThroughput"/>);
    /// at most 2^18 tokens and 512 MiB of float32 values.</summary>
    private static int Read(BenchOptions options, Cli cli)
    {
        var console = cli.Out;
        if (!(options.Seconds > 0) || !double.IsFinite(options.Seconds) || options.Seconds > 3600)
            throw new ConfigException($"--seconds is {options.Seconds}; valid: > 0 and at most 3600");
        if (options.DSae is not null || options.K is not null || options.Config is not null)
            throw new ConfigException("bench read takes --d-in, --batch, --seconds and --out");
        var d = options.D ?? 512;
        var batch = options.Batch ?? 4096;
        if (d < 1 || d > ReadThroughput.MaxD || batch < 1 || batch > ReadThroughput.MaxBatch)
            throw new ConfigException($"--d-in {d}, --batch {batch}: valid: --d-in 1..{ReadThroughput.MaxD}, --batch 1..{ReadThroughput.MaxBatch}");
        var tokens = Math.Max(ReadThroughput.ContextSize, Math.Min(1L << 18, (1L << 27) / d) / ReadThroughput.ContextSize * ReadThroughput.ContextSize);
        using var context = new EngineContext(Backend.Cpu);
        var result = new JsonObject
        {
            ["benchmark"] = "read",
            ["date"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["machine"] = MachineJson(context),
            ["seconds_per_side"] = options.Seconds,
            ["note"] = "files freshly written, so read from the page cache; sequential: every shard front to back; shuffled: " +
                       "ActivationSource batches as factorize draws them",
            ["results"] = ReadThroughput.Measure(d, tokens, batch, options.Seconds),
        };
        var json = result.ToJsonString(new JsonSerializerOptions
        {
            WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        });
        console.Profile.Out.Writer.WriteLine(json);
        if (options.Out is { } path) Write(path, json);
        return 0;
    }

    // The standard sizes, or the one size the options give (missing ones from the workload's first standard size).
    private static SaeSizeChoice SaeSizes(BenchOptions options, string workload)
    {
        var custom = options.D is not null || options.DSae is not null || options.K is not null;
        if (custom && workload is not ("factorize" or "dictionary"))
            throw new ConfigException("--d-in, --d-sae and --top-k apply to bench factorize and bench dictionary only");
        if (options.Batch is not null && workload is not ("factorize" or "dictionary" or "all"))
            throw new ConfigException("--batch applies to bench factorize, dictionary and all only");
        (int, int, int, int) Resolve((int D, int DSae, int K, int Batch) standard)
        {
            var size = (D: options.D ?? standard.D, DSae: options.DSae ?? standard.DSae, K: options.K ?? standard.K,
                Batch: options.Batch ?? standard.Batch);
            if (size.D < 1 || size.DSae < 1 || size.K < 1 || size.K > size.DSae || size.Batch < 1)
                throw new ConfigException($"--d-in {size.D}, --d-sae {size.DSae}, --top-k {size.K}, --batch {size.Batch}: " +
                                          "valid: all >= 1 and k <= d_sae");
            return size;
        }
        var factorize = custom ? [Resolve(Workloads.SuiteSaeSizes[0])] : Workloads.SuiteSaeSizes.Select(Resolve).ToArray();
        return new SaeSizeChoice(factorize, Resolve(Workloads.DictionarySize));
    }

    private static string ConfigName(string path) => Path.GetFileNameWithoutExtension(path);

    private static void Write(string path, string json)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        AtomicFile.WriteText(path, json + "\n");
    }

    /// <summary>bench/results/&lt;machine&gt;-&lt;date&gt;.json in the checkout (or the working folder outside one).</summary>
    public static string DefaultResultPath(EngineContext context)
    {
        var folder = RepositoryFiles.Find(Path.Combine("bench", "results")) ?? Path.Combine("bench", "results");
        var date = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
        return Path.Combine(folder, $"{MachineSlug(context)}-{date}.json");
    }

    /// <summary>e.g. "cpu-amd-epyc-2core", "cuda-nvidia-h100-80gb-hbm3".</summary>
    public static string MachineSlug(EngineContext context)
    {
        var device = context.Device;
        var name = new string(device.Name.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) ? c : '-').ToArray());
        name = string.Join('-', name.Split('-', StringSplitOptions.RemoveEmptyEntries));
        return device.Backend == Backend.Cuda ? $"cuda-{name}" : $"cpu-{name}-{Environment.ProcessorCount}core";
    }

    public static JsonObject MachineJson(EngineContext context)
    {
        using var cpu = new EngineContext(Backend.Cpu);
        return new JsonObject
        {
            ["name"] = MachineSlug(context),
            ["cpu"] = cpu.Device.Name,
            ["logical_cores"] = Environment.ProcessorCount,
            ["memory_bytes"] = cpu.Device.TotalMemory,
            ["gpu"] = context.Device.Backend == Backend.Cuda ? context.Device.Describe() : null,
            ["os"] = RuntimeInformation.OSDescription,
            ["runtime"] = RuntimeInformation.FrameworkDescription,
            ["engine_version"] = Engine.Version,
        };
    }

    // ---- the README table ---------------------------------------------------------------------------------------

    public const string MarkdownHeader =
        "| workload | machine | NativeEngine | peer | ratio | command |\n| --- | --- | --- | --- | --- | --- |";

    /// <summary>The README's table rows of one result: the peak's, then one per workload.</summary>
    public static IEnumerable<string> MarkdownRows(JsonNode result, bool withHeader = true)
    {
        if (withHeader) yield return MarkdownHeader;
        var machine = result["machine"]!;
        var cores = machine["logical_cores"]!.GetValue<int>();
        var date = result["date"]!.GetValue<string>()[..10];
        var where = $"{cores}-core {machine["cpu"]!.GetValue<string>()} ({date})";
        var peak = result["peak"]!;
        var size = peak["size"]!.GetValue<int>();
        var blas = peak["openblas"]!;
        var blasText = blas["gflops"] is { } g
            ? $"{F(g.GetValue<double>())} GFLOP/s ({BlasName(blas)})"
            : "not run";
        var engineGflops = peak["nativeengine"]!["gflops"]!.GetValue<double>();
        var ratio = blas["gflops"] is { } bg ? $"{engineGflops / bg.GetValue<double>():0.00}×" : "";
        yield return $"| SGEMM {size}³ float32 (the peak) | {where} | {F(engineGflops)} GFLOP/s (ne_sgemm) | " +
                     $"{blasText} | {ratio} | `nativeengine bench peak --gemm-size {size}` |";
        foreach (var row in result["results"]!.AsArray())
        {
            var ours = row!["nativeengine"]!;
            var unit = row["unit"]!.GetValue<string>();
            var engine = $"{F(ours["throughput"]!.GetValue<double>())} {unit}" +
                         (ours["share_of_peak"] is { } share
                             ? $" ({F(ours["gflops"]!.GetValue<double>())} GFLOP/s, {share.GetValue<double>():0.0%} of peak)"
                             : $" ({F(ours["gflops"]!.GetValue<double>())} GFLOP/s)");
            var peer = row["peer"]!;
            var peerText = peer["throughput"] is { } rate
                ? $"{F(rate.GetValue<double>())} {unit} ({PeerName(peer)})"
                : Markdown(peer["status"]?.GetValue<string>() ?? "not run");
            var speedup = row["speedup"] is { } s ? $"{s.GetValue<double>():0.0}×" : "";
            yield return $"| {Markdown(row["name"]!.GetValue<string>())} | {where}, {ours["backend"]!.GetValue<string>()} backend | " +
                         $"{engine} | {peerText} | {speedup} | `{row["command"]!.GetValue<string>()}` |";
        }
    }

    private static int Table(string[] files, Cli cli)
    {
        var console = cli.Out;
        if (files.Length == 0) throw new ConfigException("bench table needs result files, e.g. bench table bench/results/*.json");
        var first = true;
        foreach (var file in files)
        {
            if (!File.Exists(file)) throw new ConfigException($"{file} does not exist");
            JsonNode? node;
            try
            {
                // Through JsonDocument first: it rejects what JsonNode accepts and then throws on (a key twice).
                using (var document = JsonDocument.Parse(File.ReadAllText(file)))
                    if (document.RootElement.ValueKind == JsonValueKind.Object)
                        _ = new JsonObjectReader(document.RootElement, file);
                node = JsonNode.Parse(File.ReadAllText(file));
            }
            catch (JsonException e)
            {
                throw new Formats.DataFormatException($"{file}: not a bench result (not valid JSON: {e.Message})");
            }
            catch (ConfigException e)
            {
                throw new Formats.DataFormatException($"not a bench result: {e.Message}");
            }
            if (node is not JsonObject || node["results"] is null || node["peak"] is null)
            {
                // Results from before the peak and the rows (one workload per file) stay in bench/results as records.
                cli.Warn($"skipped {file}: no \"peak\" and \"results\" (an older format, or not a bench result)");
                continue;
            }
            List<string> rows;
            try
            {
                rows = MarkdownRows(node, withHeader: first).ToList();
            }
            catch (Exception e) when (e is InvalidOperationException or NullReferenceException or FormatException or ArgumentException
                                          or KeyNotFoundException or IndexOutOfRangeException)
            {
                throw new Formats.DataFormatException($"{file}: not a bench result this version reads ({e.Message})");
            }
            foreach (var line in rows) console.Profile.Out.Writer.WriteLine(line);
            first = false;
        }
        return 0;
    }

    private static string BlasName(JsonNode blas) =>
        blas["config"]?.GetValue<string>() is { Length: > 0 } config ? string.Join(' ', config.Split(' ').Take(2)) : "OpenBLAS";

    private static string PeerName(JsonNode peer)
    {
        var name = peer["peer"]?.GetValue<string>() ?? "peer";
        var version = peer["version"]?.GetValue<string>() ?? Workloads.PeerVersion(peer);
        return version is null ? name : $"{name}, {version}";
    }

    // Three significant digits, thousands separated by a thin space as the README writes them.
    private static string F(double value)
    {
        var digits = value >= 100 ? 0 : value >= 10 ? 1 : value >= 1 ? 2 : 3;
        return Math.Round(value, digits).ToString(digits == 0 ? "#,0" : "#,0." + new string('0', digits), CultureInfo.InvariantCulture)
            .Replace(",", " ");
    }

    private static string Markdown(string text) => text.Replace("|", "\\|");
}
