// libtorch (the C++ library under PyTorch, here 2.10 through TorchSharp) as a peer of `nativeengine bench`: the
// same workloads as the Python peers in bench/peers, on the newest PyTorch this machine can run. Prints one JSON
// line, as they do.
//   toy  --n --m --instances --batch --model --data FILE --lr --weight-decay --optimizer --seconds --threads
//        the paper notebook's loop (toy_notebook.py)
//   moe  --n --m --experts --top-k --instances --batch --expert-model --renormalize --load-balance --z-loss --data FILE
//        --lr --weight-decay --seconds --threads [--steps N [--out DIR]] [--device cpu]
//        the mixture-of-experts toy loop (moe_toy.py)
//   sae  --d --d-sae --k --batch --variant dense|sparse --seconds --threads
//        the TopK SAE: dense as topk_sae.py, sparse as topk_sae_sparse.py
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace NativeEngine.Bench.TorchSharpPeer;

public static class Program
{
    public static int Main(string[] args)
    {
        try
        {
            if (args.Length == 0) throw new ArgumentException("usage: torchsharp-peer toy|moe|sae [--option value]...");
            var options = Options.Parse(args.Skip(1).ToArray());
            if (options.Int("threads", 0) is > 0 and var threads) torch.set_num_threads(threads);
            torch.manual_seed(0);
            var result = args[0] switch
            {
                "toy" => Toy(options),
                "moe" => Moe(options),
                "sae" => Sae(options),
                "check" => Check(),
                _ => throw new ArgumentException($"workload \"{args[0]}\" is unknown; valid: toy, moe, sae"),
            };
            result["libtorch"] = LibtorchVersion();
            result["torchsharp"] = typeof(torch).Assembly.GetName().Version?.ToString(3);
            result["threads"] = torch.get_num_threads();
            Console.WriteLine(result.ToJsonString());
            return 0;
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine(e.Message);
            return 2;
        }
    }

    // The libtorch package's version, which the project file records in this assembly.
    private static string? LibtorchVersion() =>
        typeof(Program).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
            .OfType<System.Reflection.AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == "libtorch")?.Value;

    // ---- the notebook's toy loop --------------------------------------------------------------------------------

    private static JsonObject Toy(Options o)
    {
        int n = o.Int("n", 100), m = o.Int("m", 20), instances = o.Int("instances", 20), batch = o.Int("batch", 1024);
        var model = o.Text("model", "relu_output");
        if (model is not ("linear" or "relu_output" or "relu_hidden"))
            throw new ArgumentException($"--model {model}; valid: linear, relu_output, relu_hidden");
        var W = new Parameter(torch.empty(instances, n, m));
        torch.nn.init.xavier_normal_(W);
        var b = new Parameter(torch.zeros(instances, n));
        Tensor importance, probability;
        if (o.Text("data", "") is { Length: > 0 } path)
        {
            var data = JsonNode.Parse(File.ReadAllText(path))!;
            float[] Read(string key) => data[key]!.AsArray().Select(v => v!.GetValue<float>()).ToArray();
            importance = torch.tensor(Read("importance")).reshape(instances, n);
            probability = torch.tensor(Read("feature_probability")).reshape(instances, n);
        }
        else
        {
            importance = torch.pow(0.9f, torch.arange(n, dtype: ScalarType.Float32)).unsqueeze(0);
            probability = torch.pow(0.01f, torch.linspace(0, 1, instances)).unsqueeze(1);
        }
        double lr = o.Double("lr", 1e-3), decay = o.Double("weight-decay", 0.01);
        optim.Optimizer opt = o.Text("optimizer", "adamw") == "adam"
            ? torch.optim.Adam([W, b], lr, weight_decay: decay)
            : torch.optim.AdamW([W, b], lr, weight_decay: decay);
        void Step()
        {
            using var scope = torch.NewDisposeScope();
            var features = torch.rand(batch, instances, n);
            var x = torch.where(torch.rand(batch, instances, n) <= probability, features, torch.zeros(1));
            var hidden = torch.einsum("...if,ifh->...ih", x, W);
            if (model == "relu_hidden") hidden = hidden.relu();
            var output = torch.einsum("...ih,ifh->...if", hidden, W) + b;
            if (model != "linear") output = output.relu();
            var loss = (importance * (x.abs() - output).pow(2)).mean([0, 2]).sum();
            opt.zero_grad();
            loss.backward();
            opt.step();
        }
        var (steps, seconds) = TimeSteps(Step, o.Double("seconds", 5), warmup: 5, chunk: 5);
        return new JsonObject
        {
            ["peer"] = "libtorch notebook loop (TorchSharp)",
            ["model"] = model,
            ["steps"] = steps,
            ["seconds"] = Math.Round(seconds, 4),
            ["steps_per_second"] = Math.Round(steps / seconds, 2),
        };
    }

    // ---- the mixture-of-experts toy loop ------------------------------------------------------------------------

    // moe_toy.py in libtorch: per instance E tied toy experts of width m, a softmax router choosing the top_k, the
    // output the gated sum of the chosen experts; loss the importance-weighted MSE + load balance + z-loss; AdamW.
    // Every expert runs on every token and the gates mask the outputs, as there.
    private static JsonObject Moe(Options o)
    {
        int n = o.Int("n", 20), m = o.Int("m", 5), experts = o.Int("experts", 4), topK = o.Int("top-k", 1);
        int instances = o.Int("instances", 10), batch = o.Int("batch", 1024);
        var expertModel = o.Text("expert-model", "relu_output");
        if (expertModel is not ("relu_output" or "relu_hidden"))
            throw new ArgumentException($"--expert-model {expertModel}; valid: relu_output, relu_hidden");
        if (topK < 1 || topK > experts) throw new ArgumentException($"--top-k {topK}; valid: 1 to --experts ({experts})");
        if (o.Text("device", "cpu") is var device and not "cpu")
            throw new ArgumentException($"--device {device}; valid: cpu (the TorchSharp peer is CPU-only)");
        var renormalize = o.Int("renormalize", 0) != 0;
        double loadBalance = o.Double("load-balance", 0.01), zLoss = o.Double("z-loss", 0.001);

        var w = torch.empty(instances, experts, n, m);
        for (var e = 0; e < experts; e++) torch.nn.init.xavier_normal_(w.select(1, e));
        var W = new Parameter(w);
        var b = new Parameter(torch.zeros(instances, experts, n));
        var gate = torch.empty(instances, n, experts);
        torch.nn.init.xavier_normal_(gate);
        var W_gate = new Parameter(gate);
        Tensor importance, probability;
        if (o.Text("data", "") is { Length: > 0 } path) (importance, probability) = ReadData(path, instances, n);
        else
        {
            importance = torch.pow(0.7f, torch.arange(n, dtype: ScalarType.Float32)).unsqueeze(0).expand(instances, n);
            probability = torch.pow(0.01f, torch.linspace(0, 1, instances)).unsqueeze(1).expand(instances, n);
        }
        var opt = torch.optim.AdamW([W, b, W_gate], o.Double("lr", 1e-3), weight_decay: o.Double("weight-decay", 0.01));

        Tensor BatchLoss()
        {
            var features = torch.rand(batch, instances, n);
            var x = torch.where(torch.rand(batch, instances, n) <= probability, features, torch.zeros(1));
            var logits = torch.einsum("bin,ine->bie", x, W_gate);
            var prob = logits.softmax(-1);
            var chosen = logits.topk(topK, dim: -1).indexes;                         // (B, I, K)
            var gates = prob.gather(-1, chosen);
            if (renormalize) gates = gates / gates.sum(-1, keepdim: true);
            var weights = torch.zeros_like(prob).scatter(-1, chosen, gates);        // (B, I, E), zero off the chosen
            var h = torch.einsum("bin,ienm->biem", x, W);
            if (expertModel == "relu_hidden") h = h.relu();
            var output = (torch.einsum("biem,ienm->bien", h, W) + b).relu();
            var y = torch.einsum("bie,bien->bin", weights, output);
            var task = (importance * (y - x).pow(2)).mean([0, 2]).sum();
            var routed = torch.zeros_like(prob).scatter(-1, chosen, torch.ones_like(gates)).mean([0]) / topK;  // f_e (I, E)
            var balance = loadBalance * experts * (routed.detach() * prob.mean([0])).sum();
            var z = zLoss * logits.logsumexp(-1).pow(2).mean([0]).sum();
            return task + balance + z;
        }
        void Step()
        {
            using var scope = torch.NewDisposeScope();
            var loss = BatchLoss();
            opt.zero_grad();
            loss.backward();
            opt.step();
        }

        var result = new JsonObject
        {
            ["peer"] = "libtorch moe toy loop (TorchSharp)",
            ["device"] = "cpu",
            ["experts_computed"] = "all E per token, masked by the gates",
        };
        var wholeScript = o.Int("steps", 0);
        if (wholeScript <= 0)
        {
            var (steps, seconds) = TimeSteps(Step, o.Double("seconds", 5), warmup: 5, chunk: 5);
            result["steps"] = steps;
            result["seconds"] = Math.Round(seconds, 4);
            result["steps_per_second"] = Math.Round(steps / seconds, 2);
            return result;
        }
        // Whole-script mode, as moe_toy.py's --steps: exactly that many steps, no warm-up, then the mean loss over 16
        // fresh batches and, with --out, the results and weights saved.
        var clock = Stopwatch.StartNew();
        for (var s = 0; s < wholeScript; s++) Step();
        var elapsed = clock.Elapsed.TotalSeconds;
        const int batches = 16;
        double total = 0;
        using (torch.no_grad())
            for (var s = 0; s < batches; s++)
            {
                using var scope = torch.NewDisposeScope();
                total += BatchLoss().item<float>();
            }
        result["steps"] = wholeScript;
        result["seconds"] = Math.Round(elapsed, 4);
        result["steps_per_second"] = Math.Round(wholeScript / elapsed, 2);
        var finished = new JsonObject { ["mode"] = "whole script", ["steps"] = wholeScript, ["final_loss"] = Math.Round(total / batches, 6) };
        if (o.Text("out", "") is { Length: > 0 } outDir)
        {
            Directory.CreateDirectory(outDir);
            // TorchSharp's own tensor format (torch.save's pickle is Python's): W, b, W_gate in that order.
            using (var writer = new BinaryWriter(File.Create(Path.Combine(outDir, "weights.dat"))))
                foreach (var t in new[] { W, b, W_gate }) t.detach().Save(writer);
            File.WriteAllText(Path.Combine(outDir, "results.json"), finished.ToJsonString());
        }
        foreach (var (key, value) in finished) result[key] = value?.DeepClone();
        return result;
    }

    // {"importance": [I*n], "feature_probability": [I*n]} (row-major, instance first), as the Python peers read it.
    private static (Tensor Importance, Tensor Probability) ReadData(string path, int instances, int n)
    {
        var data = JsonNode.Parse(File.ReadAllText(path))!;
        Tensor Read(string key)
        {
            var values = data[key]!.AsArray().Select(v => v!.GetValue<float>()).ToArray();
            if (values.Length != instances * n)
                throw new ArgumentException($"{path}: \"{key}\" has {values.Length} values; expected instances * n = {instances * n}");
            return torch.tensor(values).reshape(instances, n);
        }
        return (Read("importance"), Read("feature_probability"));
    }

    // ---- the TopK SAE ---------------------------------------------------------------------------------------------

    private static JsonObject Sae(Options o)
    {
        int d = o.Int("d", 256), m = o.Int("d-sae", 4096), k = o.Int("k", 32), batch = o.Int("batch", 4096);
        var variant = o.Text("variant", "dense");
        if (variant is not ("dense" or "sparse")) throw new ArgumentException($"--variant {variant}; valid: dense, sparse");
        var sparse = variant == "sparse";
        // dense: W_enc [d][d_sae] as topk_sae.py; sparse: [d_sae][d] as nn.Linear, and W_dec the weight of an
        // EmbeddingBag (whose backward is sparse), as topk_sae_sparse.py.
        var decoder = nn.EmbeddingBag_from_pretrained(F.normalize(torch.randn(m, d), dim: 1), freeze: false,
            mode: EmbeddingBagMode.Sum);
        var W_dec = decoder.weight!;
        var W_enc = new Parameter(sparse ? W_dec.detach().clone() : W_dec.detach().t().contiguous());
        var b_enc = new Parameter(torch.zeros(m));
        var b_dec = new Parameter(torch.zeros(d));
        var opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], 2e-4 / Math.Sqrt(m / 16384.0));
        var x = torch.randn(batch, d);
        void Step()
        {
            using var scope = torch.NewDisposeScope();
            Tensor x_hat;
            if (sparse)
            {
                var codes = SparseTopKEncoder.apply(x - b_dec, W_enc, b_enc, k);
                x_hat = decoder.call(codes[1], null!, codes[0]) + b_dec;
            }
            else
            {
                var pre = torch.matmul(x - b_dec, W_enc) + b_enc;
                var (values, indices) = pre.topk(k, dim: -1);
                var z = torch.zeros_like(pre).scatter_(-1, indices, values.relu());
                x_hat = torch.matmul(z, W_dec) + b_dec;
            }
            var loss = (x_hat - x).pow(2).sum(-1).mean();
            opt.zero_grad();
            loss.backward();
            using (torch.no_grad())
            {
                var unit = W_dec / W_dec.norm(1, keepdim: true);
                W_dec.grad!.sub_((W_dec.grad! * unit).sum(1, keepdim: true) * unit);
            }
            opt.step();
            using (torch.no_grad()) W_dec.div_(W_dec.norm(1, keepdim: true));
        }
        var (steps, seconds) = TimeSteps(Step, o.Double("seconds", 5), warmup: 2, chunk: 1);
        return new JsonObject
        {
            ["peer"] = variant == "dense" ? "libtorch topk sae (TorchSharp)"
                : "libtorch topk sae, sparse decoder and backward (TorchSharp)",
            ["d"] = d, ["d_sae"] = m, ["k"] = k, ["batch"] = batch,
            ["steps"] = steps,
            ["seconds"] = Math.Round(seconds, 4),
            ["tokens_per_second"] = Math.Round(steps * batch / seconds, 1),
        };
    }

    // The sparse encoder of topk_sae_sparse.py: (values, indices) of the k largest of relu(x W_enc^T + b_enc) per
    // row, W_enc [d_sae][d]; the backward runs over the chosen latents only, as sparse x dense products with the
    // [tokens x d_sae] matrix of code gradients S: the input's gradient S W_enc, W_enc's S^T x, b_enc's the column
    // sums of S.
    private sealed class SparseTopKEncoder : autograd.MultiTensorFunction<SparseTopKEncoder>
    {
        public override string Name => "SparseTopKEncoder";

        public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (x, W_enc, b_enc, k) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (int)vars[3]);
            var (values, indices) = F.linear(x, W_enc, b_enc).relu().topk(k, dim: -1, sorted: false);
            ctx.save_for_backward([x, W_enc, values, indices]);
            ctx.mark_non_differentiable([indices]);
            return [values, indices];
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grad_outputs)
        {
            var saved = ctx.get_saved_variables();
            var (x, W_enc, values, indices) = (saved[0], saved[1], saved[2], saved[3]);
            var grad = grad_outputs[0] * (values > 0);  // through the relu
            long tokens = indices.shape[0], k = indices.shape[1], latents = W_enc.shape[0];
            var where = torch.stack([torch.arange(tokens, dtype: ScalarType.Int64).repeat_interleave(k), indices.reshape(-1)]);
            var codes = torch.sparse_coo_tensor(where, grad.reshape(-1), [tokens, latents]);
            var grad_x = torch.mm(codes, W_enc);
            var grad_W = torch.mm(codes.t(), x);
            var grad_b = torch.zeros(latents, dtype: grad.dtype).index_add_(0, indices.reshape(-1), grad.reshape(-1), 1);
            return [grad_x, grad_W, grad_b, null!];
        }
    }

    // Checks the two SAE variants' gradients against each other on a small problem (double): the sparse one must
    // be the dense one computed over fewer entries.
    private static JsonObject Check()
    {
        const int d = 16, m = 64, k = 5, batch = 32;
        var W_dec0 = F.normalize(torch.randn(m, d, dtype: ScalarType.Float64), dim: 1);
        var W_enc0 = torch.randn(m, d, dtype: ScalarType.Float64) * 0.3;
        var b_enc0 = torch.randn(m, dtype: ScalarType.Float64) * 0.1;
        var b_dec0 = torch.randn(d, dtype: ScalarType.Float64) * 0.1;
        var x = torch.randn(batch, d, dtype: ScalarType.Float64);
        Tensor[] Grads(bool sparse)
        {
            var p = new[] { W_enc0, b_enc0, W_dec0, b_dec0 }.Select(t => t.clone().requires_grad_(true)).ToArray();
            Tensor x_hat;
            if (sparse)
            {
                var outputs = SparseTopKEncoder.apply(x - p[3], p[0], p[1], k);
                var bag = nn.EmbeddingBag_from_pretrained(p[2], freeze: false, mode: EmbeddingBagMode.Sum);
                x_hat = bag.call(outputs[1], null!, outputs[0]) + p[3];
                var loss = (x_hat - x).pow(2).sum(-1).mean();
                loss.backward();
                return [p[0].grad!, p[1].grad!, bag.weight!.grad!, p[3].grad!];
            }
            var pre = torch.matmul(x - p[3], p[0].t()) + p[1];
            var (values, indices) = pre.relu().topk(k, dim: -1);
            var z = torch.zeros_like(pre).scatter_(-1, indices, values);
            x_hat = torch.matmul(z, p[2]) + p[3];
            (x_hat - x).pow(2).sum(-1).mean().backward();
            return p.Select(t => t.grad!).ToArray();
        }
        var dense = Grads(false);
        var sparseGrads = Grads(true);
        var worst = dense.Zip(sparseGrads, (a, b) => (a - b).abs().max().item<double>()).Max();
        return new JsonObject { ["check"] = "sparse SAE gradients against dense", ["max_abs_difference"] = worst };
    }

    private static (long Steps, double Seconds) TimeSteps(Action step, double seconds, int warmup, int chunk)
    {
        for (var s = 0; s < warmup; s++) step();
        var clock = Stopwatch.StartNew();
        long steps = 0;
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            for (var s = 0; s < chunk; s++) step();
            steps += chunk;
        }
        return (steps, clock.Elapsed.TotalSeconds);
    }

    private sealed class Options(Dictionary<string, string> values)
    {
        public static Options Parse(string[] args)
        {
            var values = new Dictionary<string, string>();
            for (var i = 0; i < args.Length; i += 2)
            {
                if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
                    throw new ArgumentException($"expected --option value, got \"{string.Join(' ', args.Skip(i))}\"");
                values[args[i][2..]] = args[i + 1];
            }
            return new Options(values);
        }

        public string Text(string key, string fallback) => values.GetValueOrDefault(key, fallback);
        public int Int(string key, int fallback) => values.TryGetValue(key, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
        public double Double(string key, double fallback) =>
            values.TryGetValue(key, out var v) ? double.Parse(v, CultureInfo.InvariantCulture) : fallback;
    }
}
