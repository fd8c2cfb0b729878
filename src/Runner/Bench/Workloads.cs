using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Experiments;

namespace NativeEngine.Runner.Bench;

/// <summary>What every workload of one bench invocation shares: the context it trains on, the peak measured in the
/// same run, the time per side, and whether peers run.</summary>
public sealed record BenchRun(EngineContext Context, MachinePeak Peak, double Seconds, bool RunPeers)
{
    public bool OnCpu => Context.Device.Backend == Backend.Cpu;
    public string BackendName => OnCpu ? "cpu" : "cuda";
    public static int PeerThreads => Environment.ProcessorCount;

    private string SecondsOption => string.Create(CultureInfo.InvariantCulture, $"--seconds {Seconds}");

    /// <summary>The command line that reproduces a row: the bench verb with the workload's own options.</summary>
    public string Command(string arguments) => $"nativeengine bench {arguments} {SecondsOption}";
}

/// <summary>
/// The workloads of `bench`. Each returns one result row: throughput, the achieved FLOP rate by a stated nominal
/// count (the arithmetic the model defines, the same for the engine and its peer; what an implementation really
/// executes may differ, e.g. a dense decoder), that rate's share of the peak, and the peer measured in the same run.
/// </summary>
public static class Workloads
{
    public const string ToyFlopFormula =
        "10 * batch * n * m * instances per step: forward h = W^T x and W h (2 * 2nm), backward the gradients of W " +
        "through both uses and of h (3 * 2nm), no input gradient; data generation, elementwise work and the " +
        "optimizer not counted";

    public const string MoeFlopFormula =
        "batch * instances * (4 * n * E + top_k * 10 * n * m) per step: the router's logits and their weight gradient " +
        "(2 * 2nE), and each chosen expert as a tied toy model (10nm, see toy); softmax, losses and the optimizer not " +
        "counted (noisy_topk doubles the router term)";

    public const string SaeFlopFormula =
        "(2 * d * d_sae + 8 * k * d) per token: the dense encoder GEMM (2 d d_sae), the sparse decoder (2kd) and the " +
        "sparse backward over the k active latents (d loss/dz, W_dec and W_enc gradients: 3 * 2kd); top-k, AuxK " +
        "and the optimizer not counted";

    /// <summary>The paper notebook's setting and `bench toy`'s default: configs/paper/n100_m20.json without steps.</summary>
    public static readonly ToyConfig DefaultToy = ToyConfigLoader.Parse("""
        {
          "title": "n100_m20", "model": "relu_output", "n_features": 100, "n_hidden": 20, "importance": 0.9,
          "sweep": { "feature_probability": { "geomspace": [1.0, 0.01, 20] } }, "batch_size": 1024, "seed": 0
        }
        """, "bench toy default config");

    /// <summary>`bench moe`'s default: configs/moe/compare_n20.json without steps.</summary>
    public static readonly MoeConfig DefaultMoe = MoeConfigLoader.Parse("""
        {
          "title": "compare_n20", "n_experts": 4, "top_k": 1, "expert_hidden": 5, "expert_model": "relu_output",
          "router": { "renormalize": false, "noise": "none", "load_balance": 0.01, "z_loss": 0.001 },
          "n_features": 20, "importance": 0.7,
          "sweep": { "feature_probability": [1.0, 0.3, 0.1, 0.03, 0.01], "repeats": 2 }, "seed": 0
        }
        """, "bench moe default config");

    /// <summary>Paper configs `bench all` measures beside the default, when the checkout has them.</summary>
    public static readonly string[] SuiteToyConfigs = ["configs/paper/uniform_n200_m20.json", "configs/paper/n20_m5_relu.json"];

    /// <summary>SAE sizes of `bench factorize` and `bench all`: (d, d_sae, k, batch).</summary>
    public static readonly (int D, int DSae, int K, int Batch)[] SuiteSaeSizes =
        [(256, 4096, 32, 4096), (512, 8192, 64, 4096), (768, 24576, 32, 4096)];

    /// <summary>The dictionary-learning comparison's size: (d, d_sae, k, batch), and the lasso penalty of the peer
    /// (about k codes per sample on this data).</summary>
    public static readonly (int D, int DSae, int K, int Batch) DictionarySize = (256, 1024, 8, 256);
    public const double DictionaryAlpha = 0.15;

    // ---- toy ------------------------------------------------------------------------------------------------

    public static JsonObject Toy(BenchRun run, ToyConfig config, string name, string? configPath)
    {
        using var model = ToyExperiment.CreateModel(run.Context, config);
        var timing = Timing.Measure(model.Train, run.Seconds, warmup: 5);
        var workload = new JsonObject
        {
            ["config"] = configPath ?? "built in (configs/paper/n100_m20.json)",
            ["model"] = ToyConfig.ModelName(config.Model), ["n_features"] = config.NFeatures, ["n_hidden"] = config.NHidden,
            ["n_instances"] = config.NInstances, ["batch_size"] = config.BatchSize,
            ["optimizer"] = config.Optimizer == OptimizerKind.AdamW ? "adamw" : "adam",
        };
        var flops = 10.0 * config.BatchSize * config.NFeatures * config.NHidden * config.NInstances;
        var peers = run.RunPeers ? ToyPeers(run, config) : [PythonPeer.NotRun("--peer none")];
        return Row(run, "toy", $"toy {name}", run.Command(configPath is null ? "toy" : $"toy --config {configPath}"),
            workload, "steps/s", flops, ToyFlopFormula, timing, peers, "steps_per_second");
    }

    // The notebook's loop in PyTorch (Python) and in libtorch 2.10 (TorchSharp), on the same data.
    private static JsonObject[] ToyPeers(BenchRun run, ToyConfig config)
    {
        string? unsupported = config.Model == ToyModelKind.AbsValue ? "the notebook loop has no abs_value model"
            : config.L1.Any(v => v != 0) ? "the notebook loop has no L1 penalty"
            : config.FeatureSets.Length > 0 ? "the notebook loop has no feature sets"
            : null;
        if (unsupported is not null) return [PythonPeer.NotRun(unsupported)];
        using var data = PeerData.Json(config.ImportancePerInstance(), config.FeatureProbability);
        var arguments = string.Create(CultureInfo.InvariantCulture,
            $"--n {config.NFeatures} --m {config.NHidden} --instances {config.NInstances} --batch {config.BatchSize} " +
            $"--model {ToyConfig.ModelName(config.Model)} --data \"{data.Path}\" --lr {config.Lr} " +
            $"--weight-decay {config.WeightDecay} --optimizer {(config.Optimizer == OptimizerKind.AdamW ? "adamw" : "adam")} " +
            $"--seconds {run.Seconds} --threads {BenchRun.PeerThreads}");
        return
        [
            PythonPeer.Run("toy_notebook.py", $"{arguments} --device {(run.OnCpu ? "cpu" : "cuda")}"),
            run.OnCpu ? TorchSharpPeer.Run($"toy {arguments}") : PythonPeer.NotRun("the TorchSharp peer is CPU-only"),
        ];
    }

    // ---- mixture of experts -----------------------------------------------------------------------------------

    public static JsonObject Moe(BenchRun run, MoeConfig config, string name, string? configPath)
    {
        var c = config.Run;
        using var model = new MoeModel(run.Context, config.ToSpec(), c.ImportancePerInstance(), c.FeatureProbability);
        if (c.L1.Any(v => v != 0)) model.SetL1(c.L1);
        if (c.FeatureSets.Length > 0) model.SetFeatureSets(c.SetOfFeature(), c.FeatureSets.Select(s => s.Kind).ToArray());
        var timing = Timing.Measure(model.Train, run.Seconds, warmup: 5);
        var workload = new JsonObject
        {
            ["config"] = configPath ?? "built in (configs/moe/compare_n20.json)",
            ["expert_model"] = ToyConfig.ModelName(config.ExpertModel), ["n_features"] = c.NFeatures,
            ["expert_hidden"] = config.ExpertHidden, ["n_experts"] = config.NExperts, ["top_k"] = config.TopK,
            ["n_instances"] = c.NInstances, ["batch_size"] = c.BatchSize,
            ["router"] = new JsonObject
            {
                ["renormalize"] = config.Router.Renormalize,
                ["noise"] = MoeConfigLoader.Noises.First(p => p.Value == config.Router.Noise).Key,
                ["load_balance"] = config.Router.LoadBalance, ["z_loss"] = config.Router.ZLoss,
                ["capacity_factor"] = config.Router.CapacityFactor, ["bias_update"] = config.Router.BiasUpdate,
            },
        };
        var routerTerm = config.Router.Noise == RouterNoise.NoisyTopK ? 8.0 : 4.0;
        var flops = (double)c.BatchSize * c.NInstances *
                    (routerTerm * c.NFeatures * config.NExperts + config.TopK * 10.0 * c.NFeatures * config.ExpertHidden);
        var peers = run.RunPeers ? MoePeers(run, config) : [PythonPeer.NotRun("--peer none")];
        return Row(run, "moe", $"moe {name}", run.Command(configPath is null ? "moe" : $"moe --config {configPath}"),
            workload, "steps/s", flops, MoeFlopFormula, timing, peers, "steps_per_second");
    }

    // The MoE toy loop in PyTorch (Python) and in libtorch 2.10 (TorchSharp), on the same data.
    private static JsonObject[] MoePeers(BenchRun run, MoeConfig config)
    {
        var c = config.Run;
        var r = config.Router;
        if (r.Noise != RouterNoise.None || r.CapacityFactor > 0 || r.BiasUpdate > 0)
            return [PythonPeer.NotRun("the MoE toy loop has no router noise, capacity limit or bias update")];
        if (c.L1.Any(v => v != 0) || c.FeatureSets.Length > 0)
            return [PythonPeer.NotRun("the MoE toy loop has no L1 penalty or feature sets")];
        if (c.Optimizer != OptimizerKind.AdamW) return [PythonPeer.NotRun("the MoE toy loop trains with AdamW only")];
        using var data = PeerData.Json(c.ImportancePerInstance(), c.FeatureProbability);
        var arguments = string.Create(CultureInfo.InvariantCulture,
            $"--n {c.NFeatures} --m {config.ExpertHidden} --experts {config.NExperts} --top-k {config.TopK} " +
            $"--instances {c.NInstances} --batch {c.BatchSize} --expert-model {ToyConfig.ModelName(config.ExpertModel)} " +
            $"--renormalize {(r.Renormalize ? 1 : 0)} --load-balance {r.LoadBalance} --z-loss {r.ZLoss} " +
            $"--data \"{data.Path}\" --lr {c.Lr} --weight-decay {c.WeightDecay} --seconds {run.Seconds} " +
            $"--threads {BenchRun.PeerThreads}");
        return
        [
            PythonPeer.Run("moe_toy.py", $"{arguments} --device {(run.OnCpu ? "cpu" : "cuda")}"),
            run.OnCpu ? TorchSharpPeer.Run($"moe {arguments}") : PythonPeer.NotRun("the TorchSharp peer is CPU-only"),
        ];
    }

    // ---- factorize: TopK SAE training -------------------------------------------------------------------------

    public static JsonObject Factorize(BenchRun run, int d, int dSae, int k, int batch)
    {
        var rng = new Random(0);
        var x = new float[(long)batch * d];
        for (var j = 0; j < x.Length; j++) x[j] = (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        using var sae = new SparseAutoencoder(run.Context, new SaeModelSpec(SaeArchitecture.TopK, d, dSae, k, batch, Seed: 0));
        var timing = Timing.Measure(steps => { for (var s = 0; s < steps; s++) sae.TrainStep(x, 1e-4f); }, run.Seconds,
            warmup: 1);
        var workload = new JsonObject
        {
            ["architecture"] = "topk", ["d"] = d, ["d_sae"] = dSae, ["k"] = k, ["batch_size"] = batch, ["optimizer"] = "adam",
            ["data"] = "one fixed Gaussian batch (both sides)",
        };
        JsonObject[] peers = [PythonPeer.NotRun("--peer none")];
        if (run.RunPeers)
        {
            // A plain TopK SAE (dense decoder, autograd) and a sparsify-style one (sparse decoder and backward), each in
            // PyTorch (Python) and in libtorch 2.10 (TorchSharp).
            var arguments = string.Create(CultureInfo.InvariantCulture,
                $"--d {d} --d-sae {dSae} --k {k} --batch {batch} --seconds {run.Seconds} --threads {BenchRun.PeerThreads}");
            var device = $"--device {(run.OnCpu ? "cpu" : "cuda")}";
            var cpuOnly = PythonPeer.NotRun("the TorchSharp peer is CPU-only");
            peers =
            [
                PythonPeer.Run("topk_sae.py", $"{arguments} {device}"),
                PythonPeer.Run("topk_sae_sparse.py", $"{arguments} {device}"),
                run.OnCpu ? TorchSharpPeer.Run($"sae {arguments} --variant dense") : cpuOnly,
                run.OnCpu ? TorchSharpPeer.Run($"sae {arguments} --variant sparse") : cpuOnly.DeepClone().AsObject(),
            ];
        }
        var tokens = new Timing(timing.Units * batch, timing.Seconds);
        return Row(run, "factorize", $"TopK SAE d={d} d_sae={dSae} k={k}",
            run.Command($"factorize --d-in {d} --d-sae {dSae} --top-k {k} --batch {batch}"), workload, "tokens/s",
            SaeFlopsPerToken(d, dSae, k), SaeFlopFormula, tokens, peers, "tokens_per_second");
    }

    public static double SaeFlopsPerToken(int d, int dSae, int k) => 2.0 * d * dSae + 8.0 * k * d;

    // ---- dictionary learning: the SAE against classical sparse coding -----------------------------------------

    public const string DictionaryCompared =
        "learning a dictionary of d_sae atoms for d-dimensional activations from minibatches of the same synthetic " +
        "data (sparse non-negative combinations of d_sae random unit directions, about 5 active per token): the " +
        "engine trains a TopK SAE (amortised encoder, k codes per token, Adam on encoder and decoder), scikit-learn's " +
        "MiniBatchDictionaryLearning runs partial_fit per batch (lasso codes by LARS, then block coordinate descent " +
        "on the atoms). The same task and sizes by different algorithms: samples per second compare, FLOP counts " +
        "do not (the peer's gflops are not given); codes_per_sample says how sparse the peer's codes were";

    public static JsonObject Dictionary(BenchRun run, int d, int dSae, int k, int batch)
    {
        const int batches = 16;
        var data = new float[(long)batches * batch * d];
        using (var generator = new SynthGenerator(run.Context, SynthGeneratorSpec.Sharkey(d, dSae, 0.99, 5, 0, seed: 0)))
            generator.Sample(SynthStream.Train, 0, data);
        using var sae = new SparseAutoencoder(run.Context, new SaeModelSpec(SaeArchitecture.TopK, d, dSae, k, batch, Seed: 0));
        long next = 0;
        var timing = Timing.Measure(steps =>
        {
            for (var s = 0; s < steps; s++, next++)
                sae.TrainStep(data.AsSpan((int)(next % batches * batch * d), batch * d), 1e-4f);
        }, run.Seconds, warmup: 1);
        var workload = new JsonObject
        {
            ["d"] = d, ["d_sae"] = dSae, ["k"] = k, ["batch_size"] = batch,
            ["data"] = $"{batches} batches of synthetic activations (the Sharkey generator, {dSae} true features), cycled; " +
                       "the peer reads the same tokens from an .npy file",
            ["peer_alpha"] = DictionaryAlpha,
        };
        JsonObject peer;
        if (!run.RunPeers) peer = PythonPeer.NotRun("--peer none");
        else
        {
            using var file = PeerData.Npy(data, d);
            peer = PythonPeer.Run("sklearn_dictionary.py", string.Create(CultureInfo.InvariantCulture,
                $"--data \"{file.Path}\" --d-sae {dSae} --batch {batch} --alpha {DictionaryAlpha} --seconds {run.Seconds} " +
                $"--threads {BenchRun.PeerThreads}"));
        }
        var samples = new Timing(timing.Units * batch, timing.Seconds);
        var row = Row(run, "dictionary", $"dictionary learning d={d} d_sae={dSae}",
            run.Command($"dictionary --d-in {d} --d-sae {dSae} --top-k {k} --batch {batch}"), workload, "samples/s",
            SaeFlopsPerToken(d, dSae, k), SaeFlopFormula + " (the engine's side only)", samples, [peer], "samples_per_second",
            peerFlopsComparable: false);
        row["compared"] = DictionaryCompared;
        return row;
    }

    // ---- one result row ---------------------------------------------------------------------------------------

    private static JsonObject Row(BenchRun run, string benchmark, string name, string command, JsonObject workload,
        string unit, double flopPerUnit, string formula, Timing timing, JsonObject[] peers, string peerRateKey,
        bool peerFlopsComparable = true)
    {
        var gflops = flopPerUnit * timing.PerSecond / 1e9;
        // The peak is the CPU's: a share of it means nothing for a GPU run.
        JsonNode? Share(double rate) => run.OnCpu ? run.Peak.Share(rate) : null;
        var ours = new JsonObject
        {
            ["backend"] = run.BackendName,
            ["device"] = run.Context.Device.Name,
            ["threads"] = run.OnCpu ? run.Context.Device.Multiprocessors : null,
            ["units"] = timing.Units,
            ["seconds"] = Math.Round(timing.Seconds, 4),
            ["throughput"] = Round(timing.PerSecond),
            ["gflops"] = Math.Round(gflops, 3),
            ["share_of_peak"] = Share(gflops),
        };
        // Every peer that ran gets its rate, FLOP rate and our speedup over it; the row's peer is the strongest.
        JsonObject? strongest = null;
        foreach (var peer in peers)
        {
            if (PeerVersion(peer) is { } version) peer["version"] = version;
            if (peer[peerRateKey] is not JsonValue value || value.GetValue<double>() <= 0) continue;
            var rate = value.GetValue<double>();
            peer["throughput"] = Round(rate);
            if (peerFlopsComparable)
            {
                var peerGflops = flopPerUnit * rate / 1e9;
                peer["gflops"] = Math.Round(peerGflops, 3);
                peer["share_of_peak"] = Share(peerGflops);
            }
            peer["speedup"] = Math.Round(timing.PerSecond / rate, 2);
            if (strongest is null || rate > strongest["throughput"]!.GetValue<double>()) strongest = peer;
        }
        var row = new JsonObject
        {
            ["benchmark"] = benchmark,
            ["name"] = name,
            ["command"] = command,
            ["workload"] = workload,
            ["unit"] = unit,
            ["flops"] = new JsonObject { ["per_unit"] = flopPerUnit, ["formula"] = formula },
            ["nativeengine"] = ours,
            ["peer"] = (strongest ?? peers[0]).DeepClone(),
            ["peers"] = new JsonArray(peers.Select(p => (JsonNode)p).ToArray()),
        };
        if (strongest is not null) row["speedup"] = strongest["speedup"]!.DeepClone();
        return row;
    }

    /// <summary>"torch 1.13.0a0", "libtorch 2.10.0 (TorchSharp 0.107.0)", "scikit-learn 1.2.1", from a peer's own
    /// fields; null when it did not run.</summary>
    public static string? PeerVersion(JsonNode peer)
    {
        if (peer["libtorch"] is { } libtorch)
            return $"libtorch {libtorch.GetValue<string>()}" +
                   (peer["torchsharp"] is { } sharp ? $" (TorchSharp {sharp.GetValue<string>()})" : "");
        if ((peer["torch_version"] ?? peer["torch"]) is { } torch) return $"torch {torch.GetValue<string>()}";
        if (peer["sklearn_version"] is { } sklearn) return $"scikit-learn {sklearn.GetValue<string>()}";
        return null;
    }

    private static double Round(double rate) => Math.Round(rate, rate >= 100 ? 1 : 3);
}

/// <summary>A temporary file handed to a peer (the per-instance data of a config, a batch of activations), deleted
/// on dispose.</summary>
public sealed class PeerData : IDisposable
{
    public string Path { get; }

    private PeerData(string path) => Path = path;

    /// <summary>{"importance": [I*n], "feature_probability": [I*n]}, as toy_notebook.py and moe_toy.py read it.</summary>
    public static PeerData Json(float[] importance, float[] probability)
    {
        var file = new PeerData(System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"ne-bench-{Guid.NewGuid():N}.json"));
        File.WriteAllText(file.Path, $"{{\"importance\": {JsonSerializer.Serialize(importance)}, " +
                                     $"\"feature_probability\": {JsonSerializer.Serialize(probability)}}}");
        return file;
    }

    /// <summary>Activations [tokens][d] as float32 .npy.</summary>
    public static PeerData Npy(ReadOnlySpan<float> data, int d)
    {
        var file = new PeerData(System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"ne-bench-{Guid.NewGuid():N}.npy"));
        Formats.Npy.WriteF32(file.Path, data, d);
        return file;
    }

    public void Dispose() => File.Delete(Path);
}
