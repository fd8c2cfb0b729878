using System.Text.Json;
using CommandLine;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;
using Spectre.Console;

namespace NativeEngine.Runner.Commands;

[Verb("eval", HelpText = "Measure a dictionary (ours or any SAELens-layout folder) on activations: mse, fvu, L0, dead and dense latents, and recovery when the true features are known.")]
public sealed class EvalOptions : BackendOptions
{
    [Option("dict", Required = true, HelpText = "Dictionary folder: sae_weights.safetensors and cfg.json (SAELens layout).")]
    public string Dict { get; set; } = "";

    [Option("data", Required = true, HelpText = "A factorize config, or {\"data\": {...}, \"batch_size\": B, \"tokens\": N}.")]
    public string Data { get; set; } = "";

    [Option("out", HelpText = "Also write the metrics JSON to this file.")]
    public string? Out { get; set; }
}

[Verb("encode", HelpText = "Write the sparse codes of activations under a dictionary: the SAE's encoder, FISTA (lasso) or OMP.")]
public sealed class EncodeOptions : BackendOptions
{
    [Option("dict", Required = true, HelpText = "Dictionary folder (SAELens layout).")]
    public string Dict { get; set; } = "";

    [Option("data", Required = true, HelpText = "A factorize config, or {\"data\": {...}, \"batch_size\": B, \"tokens\": N}.")]
    public string Data { get; set; } = "";

    [Option("out", Required = true, HelpText = "Output prefix: PREFIX_indices.npy (int32 [tokens][slots], -1 = empty) and PREFIX_values.npy.")]
    public string Out { get; set; } = "";

    [Option("encoder", Default = "sae", HelpText = "sae | fista | omp.")]
    public string Encoder { get; set; } = "sae";

    [Option("slots", HelpText = "Codes kept per token (largest |value| first); default k, or 32.")]
    public int? Slots { get; set; }

    [Option("lambda", Default = 0.05, HelpText = "fista: the L1 weight.")]
    public double Lambda { get; set; } = 0.05;
}

/// <summary>What eval and encode read: activations and how many.</summary>
public sealed record EvalData(DataSpec Data, int BatchSize, long Tokens);

public static class EvalCommand
{
    public static EvalData LoadData(string path)
    {
        if (!File.Exists(path)) throw new ConfigException($"config file {path} does not exist");
        var json = File.ReadAllText(path);
        using (var probe = JsonObjectReader.Parse(json, path))
            if (probe.RootElement.ValueKind == JsonValueKind.Object && probe.RootElement.TryGetProperty("sae", out _))
            {
                var config = FactorizeConfigLoader.LoadFile(path);
                return new EvalData(config.Data, config.Train.BatchSize, 8L * config.Train.BatchSize);
            }
        // {"data": ..., "batch_size", "tokens"}: a factorize config's data section alone.
        var wrapped = $$"""{ "data": {{Extract(json, path, "data")}}, "sae": { "architecture": "relu", "d_sae": 1 } }""";
        var data = FactorizeConfigLoader.Parse(wrapped, path, Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".").Data;
        using var document = JsonObjectReader.Parse(json, path);
        var r = new JsonObjectReader(document.RootElement, path);
        r.Require("data", "the activations, as in a factorize config");
        var batch = (int)r.Integer("batch_size", 1, 1 << 20, 4096);
        var tokens = r.Integer("tokens", 1, long.MaxValue, 8L * batch);
        r.RejectUnknownKeys();
        return new EvalData(data, batch, tokens);
    }

    private static string Extract(string json, string path, string key)
    {
        using var document = JsonObjectReader.Parse(json, path);
        return document.RootElement.TryGetProperty(key, out var value)
            ? value.GetRawText()
            : throw new ConfigException($"{path}: missing required key \"{key}\" (the activations, as in a factorize config)");
    }

    public static SaeArchitecture Architecture(string saeLensName) => saeLensName switch
    {
        "topk" => SaeArchitecture.TopK,
        "batchtopk" => SaeArchitecture.BatchTopK,
        "standard" => SaeArchitecture.Relu,
        "jumprelu" => SaeArchitecture.JumpRelu,
        _ => throw new ConfigException($"architecture \"{saeLensName}\" is not supported; valid: topk, batchtopk, standard, jumprelu"),
    };

    /// <summary>A native SAE holding the dictionary, for its fast forward pass.</summary>
    public static SparseAutoencoder Load(EngineContext context, SaeDictionary dict, int batch)
    {
        var sae = new SparseAutoencoder(context, new SaeModelSpec(Architecture(dict.Architecture), dict.DIn, dict.DSae,
            dict.K ?? 1, batch, Seed: 0));
        sae.SetParameters(dict.WEnc, dict.BEnc, dict.WDec, dict.BDec, dict.Threshold ?? []);
        return sae;
    }

    public static int Run(EvalOptions options, IAnsiConsole console)
    {
        var dict = SaeLens.Read(options.Dict);
        var data = LoadData(options.Data);
        var (source, truth, truthCount) = Factorization.OpenData(data.Data, data.BatchSize, 0);
        using var dataSource = source;
        if (source.D != dict.DIn)
            throw new ConfigException($"--data gives activations of d = {source.D}; the dictionary in {options.Dict} has d_in = {dict.DIn}");
        using var context = new EngineContext(options.ParseBackend());
        using var sae = Load(context, dict, data.BatchSize);
        var batches = (int)Math.Max(1, (data.Tokens + data.BatchSize - 1) / data.BatchSize);
        var metrics = Factorization.Measure(sae, source, truth, truthCount, (long)batches * data.BatchSize, 0, out _, batches);
        var json = Factorization.MetricsJson(metrics with { Seconds = 0, TokensPerSecond = 0 });
        console.Profile.Out.Writer.WriteLine(json);
        if (options.Out is { } path) AtomicFile.WriteText(path, json);
        return 0;
    }

    public static int Encode(EncodeOptions options, IAnsiConsole console)
    {
        if (options.Encoder is not ("sae" or "fista" or "omp"))
            throw new ConfigException($"--encoder is \"{options.Encoder}\"; valid: sae, fista, omp");
        var dict = SaeLens.Read(options.Dict);
        var slots = options.Slots ?? dict.K ?? 32;
        if (slots < 1 || slots > dict.DSae) throw new ConfigException($"--slots is {slots}; valid: 1..{dict.DSae}");
        var data = LoadData(options.Data);
        var (source, _, _) = Factorization.OpenData(data.Data, data.BatchSize, 0);
        using var dataSource = source;
        if (source.D != dict.DIn)
            throw new ConfigException($"--data gives activations of d = {source.D}; the dictionary has d_in = {dict.DIn}");
        int d = dict.DIn, m = dict.DSae;
        var lipschitz = options.Encoder == "fista" ? SparseCoding.LipschitzConstant(dict.WDec, m, d) : 0;
        var tokens = data.Tokens;
        var indices = new int[tokens * slots];
        var values = new float[tokens * slots];
        Array.Fill(indices, -1);
        var code = new float[m];
        var centred = new float[d];
        var encoder = new DictionaryEncoder(dict);
        long t = 0;
        while (t < tokens)
        {
            var batch = source.Next();
            for (var row = 0; row < batch.Length / d && t < tokens; row++, t++)
            {
                var x = batch.Span.Slice(row * d, d);
                switch (options.Encoder)
                {
                    case "fista":
                        System.Numerics.Tensors.TensorPrimitives.Subtract(x, dict.BDec, centred);
                        SparseCoding.Fista(dict.WDec, m, d, centred, options.Lambda, lipschitz).CopyTo(code, 0);
                        break;
                    case "omp":
                        System.Numerics.Tensors.TensorPrimitives.Subtract(x, dict.BDec, centred);
                        SparseCoding.Omp(dict.WDec, m, d, centred, slots).CopyTo(code, 0);
                        break;
                    default:
                        encoder.Encode(x, code);
                        break;
                }
                Keep(code, slots, indices.AsSpan((int)(t * slots), slots), values.AsSpan((int)(t * slots), slots));
            }
        }
        Npy.WriteI32(options.Out + "_indices.npy", indices, slots);
        Npy.WriteF32(options.Out + "_values.npy", values, slots);
        console.MarkupLine($"wrote {tokens} tokens x {slots} codes ({options.Encoder}): {Markup.Escape(options.Out)}_indices.npy, _values.npy");
        return 0;
    }

    // The `slots` largest |values|, index order by magnitude; unused slots keep index -1.
    private static void Keep(float[] code, int slots, Span<int> indices, Span<float> values)
    {
        var order = Enumerable.Range(0, code.Length).Where(j => code[j] != 0)
            .OrderByDescending(j => Math.Abs(code[j])).ThenBy(j => j).Take(slots).ToArray();
        for (var s = 0; s < order.Length; s++)
        {
            indices[s] = order[s];
            values[s] = code[order[s]];
        }
    }
}
