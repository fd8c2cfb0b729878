using System.Globalization;
using System.Text.Json;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

/// <summary>
/// What SAELens 6 (sae_lens 6.18, read from its source: SAE.load_from_disk, sae_lens_disk_loader,
/// read_sae_components_from_disk, handle_config_defaulting and its pre-6.0 conversion, the class registry, the config
/// dataclasses and each inference SAE's parameters and encode) decides when it loads a folder, re-expressed in C# as an
/// independent oracle for what the engine writes and how it reads. A decision SAELens would fail on throws
/// <see cref="LoadFailure"/> naming the Python error it would raise; success returns the class and config it would
/// build. <see cref="Encode"/> is its inference encode and decode for the classes the engine reads.
/// </summary>
internal static class SaeLensRules
{
    /// <summary>SAELens's load would raise here (the Python exception type and why).</summary>
    public sealed class LoadFailure(string message) : Exception(message);

    /// <param name="ClassName">The inference class SAELens instantiates.</param>
    /// <param name="Fields">The config dataclass's fields after defaulting (metadata excluded).</param>
    /// <param name="Metadata">SAEMetadata's explicitly set keys.</param>
    /// <param name="Tensors">The state dict after loading, in float32.</param>
    public sealed record Loaded(string Architecture, string ClassName, IReadOnlyDictionary<string, object?> Fields,
        IReadOnlyDictionary<string, JsonElement> Metadata, IReadOnlyDictionary<string, Tensor> Tensors)
    {
        public int DIn => (int)(long)Fields["d_in"]!;
        public int DSae => (int)(long)Fields["d_sae"]!;
    }

    private static readonly string[] DTypeMap =
        ["float32", "float64", "float16", "bfloat16", "torch.float32", "torch.float64", "torch.float16", "torch.bfloat16"];

    private static readonly string[] NormalizeModes = ["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"];

    // The keys handle_pre_6_0_config moves into metadata from the top level.
    private static readonly string[] LlmMetadataKeys =
    [
        "model_name", "hook_name", "model_class_name", "hook_head_index", "model_from_pretrained_kwargs", "prepend_bos",
        "exclude_special_tokens", "neuronpedia_id", "context_size", "seqpos_slice", "dataset_path", "sae_lens_version",
        "sae_lens_training_version", "hook_name_out", "hook_head_index_out",
    ];

    private sealed record InferenceClass(string ClassName, (string Name, object? Default)[] Fields);

    private static readonly (string, object?)[] BaseFields =
    [
        ("d_in", Required), ("d_sae", Required), ("dtype", "float32"), ("device", "cpu"), ("apply_b_dec_to_input", true),
        ("normalize_activations", "none"), ("reshape_activations", "none"), ("metadata", null),
    ];

    private static readonly object Required = new();

    // register_sae_class in sae_lens/__init__.py: inference classes only (batchtopk and matryoshka_batchtopk are
    // registered for training alone).
    private static readonly Dictionary<string, InferenceClass> Registry = new()
    {
        ["standard"] = new("StandardSAE", BaseFields),
        ["gated"] = new("GatedSAE", BaseFields),
        ["topk"] = new("TopKSAE", [.. BaseFields, ("k", 100L), ("rescale_acts_by_decoder_norm", false)]),
        ["jumprelu"] = new("JumpReLUSAE", BaseFields),
        ["transcoder"] = new("Transcoder", [.. BaseFields, ("d_out", 768L)]),
        ["jumprelu_transcoder"] = new("JumpReLUTranscoder", [.. BaseFields, ("d_out", 768L)]),
        ["matching_pursuit"] = new("MatchingPursuitSAE",
            [.. BaseFields, ("residual_threshold", 1e-2), ("max_iterations", null), ("stop_on_duplicate_support", true)]),
    };

    public static Loaded LoadFromDisk(string directory)
    {
        // get_sae_lens_config_from_disk: cfg.json, device overridden.
        var cfg = ToDictionary(JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "cfg.json"))).RootElement);
        cfg["device"] = "cpu";

        // read_sae_components_from_disk: the dtype must be in DTYPE_MAP before anything is defaulted.
        if (!cfg.TryGetValue("dtype", out var dtype)) throw new LoadFailure("KeyError: 'dtype' (read before defaulting)");
        if (dtype is not string dtypeName || !DTypeMap.Contains(dtypeName)) throw new LoadFailure($"KeyError: dtype {Show(dtype)} not in DTYPE_MAP");
        var tensors = SafeTensors.Read(Path.Combine(directory, "sae_weights.safetensors")).Tensors.ToDictionary(t => t.Name);
        if (tensors.Remove("scaling_factor", out var scaling))
        {
            if (scaling.Data.All(v => v == 1)) cfg["finetuning_scaling_factor"] = false;
            else
            {
                if (!cfg.TryGetValue("finetuning_scaling_factor", out var flag)) throw new LoadFailure("KeyError: 'finetuning_scaling_factor'");
                if (!Truthy(flag)) throw new LoadFailure("ValueError: Scaling factor is present but finetuning_scaling_factor is False.");
                tensors["finetuning_scaling_factor"] = scaling with { Name = "finetuning_scaling_factor" };
            }
        }
        else cfg["finetuning_scaling_factor"] = false;

        // handle_config_defaulting: a missing or pre-6.0 version is converted.
        object? version = cfg.GetValueOrDefault("sae_lens_version");
        if (!Truthy(version) && cfg.TryGetValue("metadata", out var m) && m is Dictionary<string, object?> md)
            version = md.GetValueOrDefault("sae_lens_version");
        if (!Truthy(version) || Pre6(version)) cfg = Pre6Conversion(cfg);

        // from_dict of the registered inference class.
        if (!cfg.TryGetValue("architecture", out var architectureValue)) throw new LoadFailure("KeyError: 'architecture'");
        var architecture = architectureValue as string ?? throw new LoadFailure($"KeyError: architecture {Show(architectureValue)}");
        if (!Registry.TryGetValue(architecture, out var cls))
            throw new LoadFailure($"KeyError: '{architecture}' (no inference SAE class registered for it)");
        var fields = new Dictionary<string, object?>();
        foreach (var (name, fallback) in cls.Fields)
        {
            if (cfg.TryGetValue(name, out var value)) fields[name] = value;
            else if (ReferenceEquals(fallback, Required)) throw new LoadFailure($"TypeError: missing required argument '{name}'");
            else fields[name] = fallback;
        }
        var metadata = new Dictionary<string, JsonElement>();
        if (fields["metadata"] is { } raw)
        {
            if (raw is not Dictionary<string, object?> dict) throw new LoadFailure("TypeError: SAEMetadata(**metadata) needs a mapping");
            foreach (var (key, value) in dict) metadata[key] = JsonSerializer.SerializeToElement(value);
        }
        fields.Remove("metadata");
        if (fields["normalize_activations"] is not string mode || !NormalizeModes.Contains(mode))
            throw new LoadFailure($"ValueError: normalize_activations must be none, expected_average_only_in, layer_norm, or constant_norm_rescale. Got {Show(fields["normalize_activations"])}");
        if (architecture.EndsWith("transcoder", StringComparison.Ordinal) && Truthy(fields["apply_b_dec_to_input"]))
            throw new LoadFailure("ValueError: apply_b_dec_to_input is not supported for transcoders");

        // SAE.__init__: dtype, sizes and k as torch needs them; hook_z reshaping only for *_z hooks.
        if (fields["dtype"] is not string dt || !DTypeMap.Contains(dt)) throw new LoadFailure($"KeyError: dtype {Show(fields["dtype"])}");
        foreach (var size in new[] { "d_in", "d_sae", "k", "d_out" }.Where(fields.ContainsKey))
            if (fields[size] is not long n || n < 0) throw new LoadFailure($"TypeError: {size} is {Show(fields[size])}, not an integer size");
        if (Equals(fields["reshape_activations"], "hook_z") && metadata.TryGetValue("hook_name", out var hook) &&
            hook.ValueKind == JsonValueKind.String && !hook.GetString()!.EndsWith("_z", StringComparison.Ordinal))
            throw new LoadFailure("ValueError: This method should only be called for hook_z SAEs.");

        // load_state_dict(strict): exactly the class's parameters, with their shapes.
        long dIn = (long)fields["d_in"]!, dSae = (long)fields["d_sae"]!;
        var dOut = fields.TryGetValue("d_out", out var o) ? (long)o! : dIn;
        var expected = new Dictionary<string, long[]>
        {
            ["W_enc"] = [dIn, dSae], ["W_dec"] = [dSae, dOut], ["b_dec"] = [dOut],
        };
        // MatchingPursuitSAE is tied: its W_enc is a property (W_dec transposed), not a parameter, and it has no b_enc.
        if (architecture == "matching_pursuit") expected.Remove("W_enc");
        else if (architecture == "gated")
        {
            expected["b_gate"] = [dSae];
            expected["b_mag"] = [dSae];
            expected["r_mag"] = [dSae];
        }
        else expected["b_enc"] = [dSae];
        if (architecture.StartsWith("jumprelu", StringComparison.Ordinal)) expected["threshold"] = [dSae];
        var missing = expected.Keys.Where(k => !tensors.ContainsKey(k)).ToList();
        var unexpected = tensors.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new LoadFailure($"RuntimeError: Error(s) in loading state_dict: missing [{string.Join(", ", missing)}], unexpected [{string.Join(", ", unexpected)}]");
        foreach (var (name, shape) in expected)
            if (!tensors[name].Shape.SequenceEqual(shape))
                throw new LoadFailure($"RuntimeError: size mismatch for {name}: [{string.Join(", ", tensors[name].Shape)}] vs [{string.Join(", ", shape)}]");
        return new Loaded(architecture, cls.ClassName, fields, metadata, tensors);
    }

    /// <summary>handle_pre_6_0_config, re-expressed.</summary>
    private static Dictionary<string, object?> Pre6Conversion(Dictionary<string, object?> cfg)
    {
        var renamed = new Dictionary<string, object?>();
        foreach (var (key, value) in cfg)
            renamed[key switch { "hook_point" => "hook_name", "hook_point_head_index" => "hook_head_index", "activation_fn_str" => "activation_fn", _ => key }] = value;
        renamed.TryAdd("prepend_bos", true);
        renamed.TryAdd("apply_b_dec_to_input", true);
        renamed.TryAdd("finetuning_scaling_factor", false);
        renamed.TryAdd("activation_fn", "relu");
        renamed.TryAdd("architecture", "standard");
        renamed.TryAdd("reshape_activations", renamed.GetValueOrDefault("hook_name") is string h && h.Contains("hook_z") ? "hook_z" : "none");
        var kwargs = renamed.GetValueOrDefault("activation_fn_kwargs") as Dictionary<string, object?>;
        if (Equals(renamed["activation_fn"], "topk") && kwargs?.GetValueOrDefault("k") is not null)
        {
            renamed["architecture"] = "topk";
            renamed["k"] = kwargs["k"];
        }
        if (renamed.GetValueOrDefault("normalize_activations") is bool b) renamed["normalize_activations"] = b ? "expected_average_only_in" : "none";
        if (renamed.GetValueOrDefault("normalize_activations") is null) renamed["normalize_activations"] = "none";
        renamed.TryAdd("device", "cpu");
        var architecture = renamed["architecture"] as string ?? "standard";
        if (!Registry.TryGetValue(architecture, out var cls)) throw new LoadFailure($"KeyError: '{architecture}' (get_sae_class in the pre-6.0 conversion)");
        var result = new Dictionary<string, object?>();
        foreach (var (name, _) in cls.Fields)
            if (renamed.TryGetValue(name, out var v)) result[name] = v;
        if (architecture == "topk" && kwargs is not null) result["k"] = kwargs.GetValueOrDefault("k");
        result["metadata"] = renamed.Where(p => LlmMetadataKeys.Contains(p.Key)).ToDictionary(p => p.Key, p => p.Value);
        result["architecture"] = architecture;
        return result;
    }

    /// <summary>The loaded SAE's encode (codes [tokens][d_sae]) and decode (reconstruction [tokens][d_in]) of x
    /// [tokens][d_in], for the classes the engine reads, in double precision.</summary>
    public static (double[] Codes, double[] Reconstruction) Encode(Loaded sae, float[] x)
    {
        if (!Equals(sae.Fields["normalize_activations"], "none")) throw new NotSupportedException("normalisation is not ported");
        int d = sae.DIn, m = sae.DSae, tokens = x.Length / d;
        float[] T(string name) => sae.Tensors[name].Data;
        var apply = Truthy(sae.Fields["apply_b_dec_to_input"]) ? 1.0 : 0.0;
        var rescale = sae.Architecture == "topk" && Truthy(sae.Fields["rescale_acts_by_decoder_norm"]);
        if (sae.Architecture == "matching_pursuit") return Pursue(sae, x);
        var norms = Enumerable.Range(0, m).Select(j => Math.Sqrt(Enumerable.Range(0, d).Sum(i => (double)T("W_dec")[j * d + i] * T("W_dec")[j * d + i]))).ToArray();
        var codes = new double[tokens * m];
        var reconstruction = new double[tokens * d];
        for (var t = 0; t < tokens; t++)
        {
            var input = Enumerable.Range(0, d).Select(i => x[t * d + i] - apply * T("b_dec")[i]).ToArray();
            double Pre(int j, float[] bias, Func<int, double> scale) =>
                Enumerable.Range(0, d).Sum(i => input[i] * T("W_enc")[i * m + j] * scale(j)) + bias[j];
            var z = new double[m];
            switch (sae.Architecture)
            {
                case "standard":
                    for (var j = 0; j < m; j++) z[j] = Math.Max(0, Pre(j, T("b_enc"), _ => 1));
                    break;
                case "jumprelu":
                    for (var j = 0; j < m; j++)
                    {
                        var u = Pre(j, T("b_enc"), _ => 1);
                        z[j] = u > T("threshold")[j] ? Math.Max(0, u) : 0;
                    }
                    break;
                case "gated":
                    for (var j = 0; j < m; j++)
                    {
                        var open = Pre(j, T("b_gate"), _ => 1) > 0;
                        z[j] = open ? Math.Max(0, Pre(j, T("b_mag"), q => Math.Exp(T("r_mag")[q]))) : 0;
                    }
                    break;
                case "topk":
                    var k = (int)(long)sae.Fields["k"]!;
                    var pre = Enumerable.Range(0, m).Select(j => Pre(j, T("b_enc"), _ => 1) * (rescale ? norms[j] : 1)).ToArray();
                    foreach (var j in Enumerable.Range(0, m).OrderByDescending(j => pre[j]).Take(k)) z[j] = Math.Max(0, pre[j]);
                    break;
                default:
                    throw new NotSupportedException($"{sae.Architecture} is not ported");
            }
            for (var j = 0; j < m; j++) codes[t * m + j] = z[j];
            for (var i = 0; i < d; i++)
            {
                double sum = T("b_dec")[i];
                for (var j = 0; j < m; j++) sum += (rescale ? z[j] / norms[j] : z[j]) * T("W_dec")[j * d + i];
                reconstruction[t * d + i] = sum;
            }
        }
        return (codes, reconstruction);
    }

    // _encode_matching_pursuit and MatchingPursuitSAE.decode, in double: from r = x − b_dec, take the decoder row of
    // largest ReLU(r·w_j) (torch's max: the first on a tie), add that value to its code and subtract the row times it;
    // stop after max_iterations (None: d_in), when a step leaves the support as it was (stop_on_duplicate_support), or
    // when ‖r‖ < residual_threshold (when > 0). Decode adds b_dec when apply_b_dec_to_input.
    private static (double[] Codes, double[] Reconstruction) Pursue(Loaded sae, float[] x)
    {
        int d = sae.DIn, m = sae.DSae, tokens = x.Length / d;
        var wDec = sae.Tensors["W_dec"].Data;
        var bDec = sae.Tensors["b_dec"].Data;
        var apply = Truthy(sae.Fields["apply_b_dec_to_input"]) ? 1.0 : 0.0;
        var threshold = Convert.ToDouble(sae.Fields["residual_threshold"], CultureInfo.InvariantCulture);
        var limit = sae.Fields["max_iterations"] is long l ? (int)l : d;
        var duplicate = Truthy(sae.Fields["stop_on_duplicate_support"]);
        var codes = new double[tokens * m];
        var reconstruction = new double[tokens * d];
        for (var t = 0; t < tokens; t++)
        {
            var r = Enumerable.Range(0, d).Select(i => x[t * d + i] - apply * bDec[i]).ToArray();
            var z = new double[m];
            for (var step = 0; step < limit; step++)
            {
                var values = Enumerable.Range(0, m).Select(j => Math.Max(0, Enumerable.Range(0, d).Sum(i => r[i] * wDec[j * d + i]))).ToArray();
                var best = Array.IndexOf(values, values.Max());
                var before = z.Select(v => v != 0).ToArray();
                z[best] += values[best];
                for (var i = 0; i < d; i++) r[i] -= values[best] * wDec[best * d + i];
                var same = z.Select(v => v != 0).SequenceEqual(before);
                if ((duplicate && same) || (threshold > 0 && Math.Sqrt(r.Sum(v => v * v)) < threshold)) break;
            }
            for (var j = 0; j < m; j++) codes[t * m + j] = z[j];
            for (var i = 0; i < d; i++)
            {
                var sum = apply * bDec[i];
                for (var j = 0; j < m; j++) sum += z[j] * wDec[j * d + i];
                reconstruction[t * d + i] = sum;
            }
        }
        return (codes, reconstruction);
    }

    // PEP 440 ordering as far as cfg files use it: 6.0.0rc0 and later are 6.x; "6.0.0-rc.0" normalises to 6.0.0rc0.
    private static bool Pre6(object? version)
    {
        if (version is not string text) throw new LoadFailure($"TypeError: Version({Show(version)})");
        var match = System.Text.RegularExpressions.Regex.Match(text.Trim().ToLowerInvariant(),
            @"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-_.]?(a|b|rc|alpha|beta|c)[-_.]?(\d*))?(?:\.?dev\d*)?(?:\+.*)?$");
        if (!match.Success) throw new LoadFailure($"InvalidVersion: '{text}'");
        var major = int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        if (major != 6) return major < 6;
        var rest = (match.Groups[2].Success ? match.Groups[2].Value : "0") + (match.Groups[3].Success ? match.Groups[3].Value : "0");
        var preRelease = match.Groups[4].Value;
        return rest == "00" && preRelease is "a" or "b" or "alpha" or "beta";
    }

    private static bool Truthy(object? value) => value switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        double v => v != 0,
        string s => s.Length > 0,
        Dictionary<string, object?> d => d.Count > 0,
        List<object?> l => l.Count > 0,
        _ => true,
    };

    private static string Show(object? value) => value switch
    {
        null => "None",
        string s => $"'{s}'",
        bool b => b ? "True" : "False",
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "?",
    };

    // JSON as Python's json.load gives it: integers stay integers, other numbers are floats.
    private static Dictionary<string, object?> ToDictionary(JsonElement element) =>
        element.EnumerateObject().ToDictionary(p => p.Name, p => ToValue(p.Value));

    private static object? ToValue(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => ToDictionary(e),
        JsonValueKind.Array => e.EnumerateArray().Select(ToValue).ToList(),
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetInt64(out var l) ? (object)l : e.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };
}
