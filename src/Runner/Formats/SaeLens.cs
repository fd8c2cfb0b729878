using System.Globalization;
using System.Text.Json;
using NativeEngine.Interop;

namespace NativeEngine.Runner.Formats;

/// <summary>
/// A sparse autoencoder's dictionary as the engine evaluates it (SCIENCE §3): u = (x − b_dec) W_enc + b_enc, then
/// the architecture's activation, and x̂ = z W_dec + b_dec. Encoder W_enc [d_in][d_sae] (column j is latent j's
/// encoder direction), b_enc [d_sae], decoder W_dec [d_sae][d_in] (row j is latent j's atom), b_dec [d_in].
/// Threshold [d_sae] is the one threshold semantic of every architecture that has one: latent j fires when
/// u_j &gt; θ_j &gt; 0 and then passes u_j unchanged. jumprelu learns θ per latent; batchtopk's inference threshold is one
/// value, repeated. Input normalisation is folded into the weights, so a dictionary applies to raw activations.
/// Read from a folder, a dictionary is topk, relu, jumprelu or matching pursuit (batchtopk and matryoshka_batchtopk
/// are training architectures, saved as the jumprelu they are at inference). Matching pursuit has no encoder: its
/// codes come from <see cref="Pursuit"/> on the decoder rows, and WEnc (W_dec transposed) and BEnc (zero) stand in
/// for the encoder SAELens does not store.
/// </summary>
public sealed record SaeDictionary(int DIn, int DSae, SaeArchitecture Architecture, int? K, float[] WEnc, float[] BEnc,
    float[] WDec, float[] BDec, float[]? Threshold, MatchingPursuitSettings? Pursuit = null);

/// <summary>Matching pursuit's stopping rules, under SAELens's cfg.json names: a residual norm below
/// <paramref name="ResidualThreshold"/> (&lt;= 0: never), <paramref name="MaxIterations"/> steps (null: d_in), a step
/// that adds no latent to the support (<paramref name="StopOnDuplicateSupport"/>).</summary>
public sealed record MatchingPursuitSettings(double ResidualThreshold = 1e-2, int? MaxIterations = null,
    bool StopOnDuplicateSupport = true);

/// <summary>Where a dictionary's activations come from, as SAELens records it in cfg.json's "metadata" (every key
/// optional): the model, its hook point, the attention head, tokens per context, whether a BOS token was prepended,
/// and the dataset.</summary>
public sealed record DictionaryMetadata(string? ModelName = null, string? HookName = null, int? HookHeadIndex = null,
    int? ContextSize = null, bool? PrependBos = null, string? DatasetPath = null)
{
    public static readonly DictionaryMetadata None = new();

    /// <summary>The SAELens metadata keys, in the order they are written.</summary>
    public IEnumerable<(string Key, object Value)> Entries()
    {
        if (ModelName is not null) yield return ("model_name", ModelName);
        if (HookName is not null) yield return ("hook_name", HookName);
        if (HookHeadIndex is { } head) yield return ("hook_head_index", head);
        if (ContextSize is { } context) yield return ("context_size", context);
        if (PrependBos is { } bos) yield return ("prepend_bos", bos);
        if (DatasetPath is not null) yield return ("dataset_path", DatasetPath);
    }
}

/// <summary>
/// A dictionary folder in the SAELens layout: sae_weights.safetensors, cfg.json and, when known, sparsity.safetensors
/// (log10 feature density per latent, as SAELens stores it). Written as SAELens 6 loads it through its current path
/// (SAE.load_from_disk); read from every generation of that layout, with anything the engine cannot evaluate exactly
/// refused by name.
/// </summary>
public static class SaeLens
{
    public const string WeightsFile = "sae_weights.safetensors";
    public const string ConfigFile = "cfg.json";
    public const string SparsityFile = "sparsity.safetensors";

    /// <summary>
    /// The cfg.json generation written: SAELens converts a cfg without a version of at least 6.0 as a pre-6 config,
    /// which keeps only the metadata keys it finds at the top level, so the version is what selects its current
    /// path. It names the format, not a SAELens install ("sae_lens_training_version" stays null).
    /// </summary>
    public const string FormatVersion = "6.0.0";

    /// <summary>The inference architecture names the engine evaluates as they are (gated is read as the jumprelu it
    /// is equal to; see <see cref="Read"/>).</summary>
    public static readonly IReadOnlyDictionary<string, SaeArchitecture> Architectures = new Dictionary<string, SaeArchitecture>
    {
        ["topk"] = SaeArchitecture.TopK,
        ["standard"] = SaeArchitecture.Relu,
        ["jumprelu"] = SaeArchitecture.JumpRelu,
        ["matching_pursuit"] = SaeArchitecture.MatchingPursuit,
    };

    /// <summary>The cfg.json name of a dictionary's architecture: batchtopk and matryoshka_batchtopk are written as
    /// jumprelu, the inference form SAELens saves them in (the global threshold repeated per latent).</summary>
    public static string Name(SaeArchitecture architecture) => architecture switch
    {
        SaeArchitecture.TopK => "topk",
        SaeArchitecture.Relu => "standard",
        SaeArchitecture.MatchingPursuit => "matching_pursuit",
        _ => "jumprelu",
    };

    /// <summary>dtype strings SAELens maps to a torch dtype (its DTYPE_MAP).</summary>
    private static readonly string[] DTypes =
        ["float32", "float64", "float16", "bfloat16", "torch.float32", "torch.float64", "torch.float16", "torch.bfloat16"];

    private static readonly string[] Normalizations = ["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"];

    /// <summary>
    /// Writes <paramref name="sae"/> into <paramref name="directory"/> (created if needed). cfg.json carries every
    /// number as a JSON number; "metadata" holds <paramref name="metadata"/> under SAELens's keys, then
    /// <paramref name="extra"/> (string, integer, floating-point, boolean or null values) as given.
    /// </summary>
    public static void Write(string directory, SaeDictionary sae, DictionaryMetadata metadata,
        IEnumerable<(string Key, object? Value)> extra, float[]? log10Density = null)
    {
        if ((sae.Architecture == SaeArchitecture.JumpRelu || SaeModelSpec.SelectsOverBatch(sae.Architecture)) &&
            sae.Threshold is null)
            throw new ArgumentException($"a {sae.Architecture} dictionary needs its threshold to be written as jumprelu");
        Directory.CreateDirectory(directory);
        var name = Name(sae.Architecture);
        // SAELens's MatchingPursuitSAE is tied (its encoder is W_dec transposed): it holds W_dec and b_dec only, and
        // its strict load refuses any other tensor.
        var tensors = name == "matching_pursuit"
            ? new List<Tensor> { new("W_dec", [sae.DSae, sae.DIn], sae.WDec), new("b_dec", [sae.DIn], sae.BDec) }
            : new List<Tensor>
            {
                new("W_enc", [sae.DIn, sae.DSae], sae.WEnc),
                new("b_enc", [sae.DSae], sae.BEnc),
                new("W_dec", [sae.DSae, sae.DIn], sae.WDec),
                new("b_dec", [sae.DIn], sae.BDec),
            };
        if (name == "jumprelu") tensors.Add(new Tensor("threshold", [sae.DSae], sae.Threshold!));
        SafeTensors.Write(Path.Combine(directory, WeightsFile), tensors);
        if (log10Density is not null)
            SafeTensors.Write(Path.Combine(directory, SparsityFile), [new Tensor("sparsity", [sae.DSae], log10Density)]);

        AtomicFile.WriteText(Path.Combine(directory, ConfigFile), Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteString("architecture", name);
            w.WriteNumber("d_in", sae.DIn);
            w.WriteNumber("d_sae", sae.DSae);
            w.WriteString("dtype", "float32");
            w.WriteString("device", "cpu");
            w.WriteBoolean("apply_b_dec_to_input", true);
            w.WriteString("normalize_activations", "none");  // folded into the weights
            // SAELens's rule for hook_z hooks: activations [.., n_heads, d_head] are flattened on the way in.
            w.WriteString("reshape_activations", metadata.HookName?.EndsWith("hook_z", StringComparison.Ordinal) == true ? "hook_z" : "none");
            if (name == "topk")
            {
                w.WriteNumber("k", sae.K ?? throw new ArgumentException("a topk dictionary needs k"));
                w.WriteBoolean("rescale_acts_by_decoder_norm", false);
            }
            if (name == "matching_pursuit")
            {
                var pursuit = sae.Pursuit ?? new MatchingPursuitSettings();
                w.WritePropertyName("residual_threshold");
                Json.Value(w, pursuit.ResidualThreshold);
                if (pursuit.MaxIterations is { } limit) w.WriteNumber("max_iterations", limit);
                else w.WriteNull("max_iterations");
                w.WriteBoolean("stop_on_duplicate_support", pursuit.StopOnDuplicateSupport);
            }
            w.WriteStartObject("metadata");
            w.WriteString("sae_lens_version", FormatVersion);
            w.WriteNull("sae_lens_training_version");
            foreach (var (key, value) in metadata.Entries().Select(e => (e.Key, (object?)e.Value)).Concat(extra))
            {
                w.WritePropertyName(key);
                WriteValue(w, value);
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }));
    }

    private static void WriteValue(Utf8JsonWriter w, object? value)
    {
        switch (value)
        {
            case null: w.WriteNullValue(); break;
            case string s: w.WriteStringValue(s); break;
            case bool b: w.WriteBooleanValue(b); break;
            case int i: w.WriteNumberValue(i); break;
            case long l: w.WriteNumberValue(l); break;
            case float f: Json.Value(w, f); break;
            case double d: Json.Value(w, d); break;
            default: throw new ArgumentException($"metadata value of type {value.GetType().Name}; write a string, number, boolean or null");
        }
    }

    /// <summary>
    /// Reads a SAELens-layout folder, ours or SAELens's own, of any cfg.json generation, deciding as SAELens's loader
    /// does: a cfg whose sae_lens_version (top level or in "metadata") is missing or below 6.0 is converted first
    /// (activation_fn_str is activation_fn; "activation_fn": "topk" with activation_fn_kwargs.k means architecture
    /// topk; "normalize_activations": false or null means "none"; the architecture defaults to "standard"). Then:
    /// <list type="bullet">
    /// <item>standard, topk and jumprelu are read as they are; topk's rescale_acts_by_decoder_norm is folded into the
    /// weights (encoder columns and b_enc times the decoder row norms, decoder rows unit), which gives the same codes
    /// and reconstruction;</item>
    /// <item>gated is read as the jumprelu it equals: its gate fires where x̃·w_j + b_gate_j &gt; 0 and its magnitude is
    /// ReLU(x̃·e^{r_j}w_j + b_mag_j), i.e. encoder e^{r_j}w_j, b_enc = b_mag and θ_j = b_mag_j − e^{r_j} b_gate_j;</item>
    /// <item>batchtopk and matryoshka_batchtopk (training forms SAELens does not load, our earlier files) are read as
    /// jumprelu when they carry their threshold ("threshold" per latent or SAELens's scalar "topk_threshold");</item>
    /// <item>matching_pursuit (W_dec and b_dec; its encoder is W_dec transposed) with its residual_threshold,
    /// max_iterations and stop_on_duplicate_support, when apply_b_dec_to_input is true;</item>
    /// <item>apply_b_dec_to_input false folds b_dec into b_enc (b_enc + b_dec W_enc); a finetuning scaling_factor
    /// that is not all ones is folded into the decoder rows; a jumprelu threshold at or below 0 (SAELens computes
    /// ReLU(u)·[u &gt; θ], which is then a ReLU) becomes the smallest positive float;</item>
    /// <item>weights may be F32, F16, BF16 or F64 and are evaluated in float32.</item>
    /// </list>
    /// Refused, naming the key: transcoders (they map one activation to another), normalize_activations other than
    /// "none" (the factor or per-token normalisation is not in the weights), an old activation_fn other than relu or
    /// topk-with-k, topk without k (SAELens would assume 100), unknown architectures, dtypes and tensors. Errors
    /// name the file and what is wrong.
    /// </summary>
    public static SaeDictionary Read(string directory)
    {
        var configPath = Path.Combine(directory, ConfigFile);
        var weightsPath = Path.Combine(directory, WeightsFile);
        foreach (var path in new[] { configPath, weightsPath })
            if (!File.Exists(path)) throw new DataFormatException($"{path} does not exist; a SAELens dictionary folder holds {ConfigFile} and {WeightsFile}");
        var cfg = new CfgReader(configPath);
        var pre6 = cfg.IsPre6();

        var architecture = cfg.String("architecture") ?? "standard";
        int? k = null;
        if (pre6)
        {
            // SAELens 5 and older: the activation function named the TopK SAE.
            var activation = cfg.String("activation_fn") ?? cfg.String("activation_fn_str");
            var activationKey = cfg.Has("activation_fn") ? "activation_fn" : "activation_fn_str";
            var oldK = cfg.NestedInteger("activation_fn_kwargs", "k");
            if (activation == "topk")
            {
                if (oldK is null)
                    throw cfg.Error($"{activationKey} is \"topk\" without activation_fn_kwargs.k; SAELens would read it as a " +
                                    "standard ReLU SAE, so it is not read here");
                architecture = "topk";
                k = oldK;
            }
            else if (activation is not null and not "relu")
                throw cfg.Error($"{activationKey} is \"{activation}\"; read here: \"relu\", or \"topk\" with activation_fn_kwargs.k " +
                                "(SAELens 6 drops other activation functions and evaluates ReLU)");
        }

        switch (architecture)
        {
            case "standard" or "topk" or "jumprelu" or "gated" or "batchtopk" or "matryoshka_batchtopk" or "matching_pursuit":
                break;
            case "transcoder" or "skip_transcoder" or "jumprelu_transcoder":
                throw cfg.Error($"architecture \"{architecture}\" is a transcoder: it maps one activation (hook_name) to another " +
                                "(hook_name_out, d_out), and eval and encode measure dictionaries that reconstruct their input; " +
                                "transcoders are not read");
            default:
                throw cfg.Error($"architecture \"{architecture}\" is not one of standard, topk, jumprelu, gated (read as " +
                                "jumprelu), batchtopk or matryoshka_batchtopk with its threshold (read as jumprelu), matching_pursuit");
        }

        var dIn = cfg.PositiveInteger("d_in");
        var dSae = cfg.PositiveInteger("d_sae");
        if (architecture == "topk")
        {
            k ??= cfg.Has("k") ? cfg.PositiveInteger("k") : throw cfg.Error("architecture topk needs \"k\" (SAELens would assume 100)");
            if (k > dSae) throw cfg.Error($"\"k\" is {k}; at most d_sae ({dSae}) latents can be active");
        }
        // Whatever the dtype, the engine evaluates in float32; an absent one is not guessed at, only unknown ones refused.
        if (cfg.String("dtype") is { } dtype && !DTypes.Contains(dtype))
            throw cfg.Error($"\"dtype\" is \"{dtype}\"; SAELens knows {string.Join(", ", DTypes)}");

        var normalize = cfg.Normalization(pre6);
        if (normalize != "none")
            throw cfg.Error(normalize switch
            {
                "expected_average_only_in" => "normalize_activations is \"expected_average_only_in\" (true in older cfgs): the weights " +
                                              "expect activations scaled by a factor cfg.json does not record; fold it into the " +
                                              "weights (W_enc·s, W_dec/s, b_dec/s) and set \"none\"",
                _ => $"normalize_activations is \"{normalize}\": a per-token normalisation the engine does not apply; read here: \"none\"",
            });
        var applyBDec = cfg.Boolean("apply_b_dec_to_input", true);
        var reshape = cfg.String("reshape_activations") ?? "none";
        if (reshape is not ("none" or "hook_z"))
            throw cfg.Error($"reshape_activations is \"{reshape}\"; valid: \"none\", \"hook_z\" (activations flattened per head)");
        var rescale = architecture == "topk" && cfg.Boolean("rescale_acts_by_decoder_norm", false);

        // The weights, by the tensors each architecture's SAE holds.
        var (tensors, _) = SafeTensors.Read(weightsPath);
        var byName = tensors.ToDictionary(t => t.Name);
        var used = new HashSet<string>();
        float[] Tensor(string name, params long[] shape)
        {
            if (!byName.TryGetValue(name, out var t))
                throw new DataFormatException($"{weightsPath}: tensor \"{name}\" is missing (a {architecture} SAE holds it)");
            if (!t.Shape.SequenceEqual(shape))
                throw new DataFormatException($"{weightsPath}: tensor \"{name}\" has shape [{string.Join(", ", t.Shape)}]; " +
                                              $"cfg.json says [{string.Join(", ", shape)}]");
            used.Add(name);
            return t.Data;
        }
        var pursuitSae = architecture == "matching_pursuit";
        var wEncRead = pursuitSae ? null : Tensor("W_enc", dIn, dSae);
        var wDec = Tensor("W_dec", dSae, dIn);
        var wEnc = wEncRead ?? Transpose(wDec, dSae, dIn);
        var bDec = Tensor("b_dec", dIn);
        float[] bEnc;
        float[]? threshold = null;
        MatchingPursuitSettings? pursuit = null;
        SaeArchitecture kind;
        switch (architecture)
        {
            case "matching_pursuit":
                // Its input is x - b_dec and its decode adds b_dec only when apply_b_dec_to_input: the engine's
                // pursuit always does both.
                if (!applyBDec)
                    throw cfg.Error("architecture matching_pursuit with apply_b_dec_to_input false: its pursuit would start " +
                                    "from x and its decoder omit b_dec, which the engine does not evaluate; read here: true");
                bEnc = new float[dSae];
                pursuit = new MatchingPursuitSettings(cfg.Number("residual_threshold", 1e-2),
                    cfg.Has("max_iterations") && !cfg.IsNull("max_iterations") ? cfg.PositiveInteger("max_iterations") : null,
                    cfg.Boolean("stop_on_duplicate_support", true));
                kind = SaeArchitecture.MatchingPursuit;
                break;
            case "gated":
                (wEnc, bEnc, threshold) = GatedAsJumpRelu(wEnc, Tensor("b_gate", dSae), Tensor("b_mag", dSae), Tensor("r_mag", dSae), dIn, dSae);
                kind = SaeArchitecture.JumpRelu;
                break;
            case "batchtopk" or "matryoshka_batchtopk":
                bEnc = Tensor("b_enc", dSae);
                if (byName.ContainsKey("threshold")) threshold = Tensor("threshold", dSae);
                else if (byName.TryGetValue("topk_threshold", out var global) && global.Data.Length == 1)
                {
                    used.Add("topk_threshold");
                    threshold = Enumerable.Repeat(global.Data[0], dSae).ToArray();
                }
                else
                    throw cfg.Error($"architecture \"{architecture}\" is SAELens's training form (registered for training only; " +
                                    "it saves BatchTopK SAEs for inference as \"jumprelu\" with their threshold), and " +
                                    $"{WeightsFile} holds neither \"threshold\" nor \"topk_threshold\"");
                kind = SaeArchitecture.JumpRelu;
                break;
            default:
                bEnc = Tensor("b_enc", dSae);
                kind = Architectures[architecture];
                if (kind == SaeArchitecture.JumpRelu) threshold = Tensor("threshold", dSae);
                break;
        }
        if (byName.TryGetValue("scaling_factor", out var scaling))
        {
            used.Add("scaling_factor");
            wDec = FoldScalingFactor(cfg, scaling, wDec, dSae, dIn);
        }
        var unknown = tensors.Select(t => t.Name).Where(n => !used.Contains(n)).ToList();
        if (unknown.Count > 0)
            throw new DataFormatException($"{weightsPath}: tensor{(unknown.Count > 1 ? "s" : "")} {string.Join(", ", unknown.Select(n => $"\"{n}\""))} " +
                                          $"not part of a {architecture} SAE (SAELens refuses unexpected tensors too)");

        if (!applyBDec) bEnc = FoldDecoderBias(wEnc, bEnc, bDec, dIn, dSae);
        if (rescale) (wEnc, bEnc, wDec) = FoldDecoderNorms(cfg, wEnc, bEnc, wDec, dIn, dSae);
        if (threshold is not null) threshold = threshold.Select(t => t > 0 ? t : float.Epsilon).ToArray();
        return new SaeDictionary(dIn, dSae, kind, kind == SaeArchitecture.TopK ? k : null, wEnc, bEnc, wDec, bDec, threshold,
            pursuit);
    }

    private static float[] Transpose(float[] rows, int rowCount, int columns)
    {
        var result = new float[rows.Length];
        for (var r = 0; r < rowCount; r++)
            for (var c = 0; c < columns; c++) result[c * rowCount + r] = rows[r * columns + c];
        return result;
    }

    // Gate: x̃·w_j + b_gate_j > 0 ⟺ e^{r_j}(x̃·w_j) + b_mag_j > b_mag_j − e^{r_j} b_gate_j = θ_j (e^{r_j} > 0).
    private static (float[] WEnc, float[] BEnc, float[] Threshold) GatedAsJumpRelu(float[] wEnc, float[] bGate, float[] bMag,
        float[] rMag, int dIn, int dSae)
    {
        var scale = rMag.Select(r => MathF.Exp(r)).ToArray();
        var w = new float[wEnc.Length];
        for (var i = 0; i < dIn; i++)
            for (var j = 0; j < dSae; j++) w[i * dSae + j] = wEnc[i * dSae + j] * scale[j];
        var threshold = new float[dSae];
        for (var j = 0; j < dSae; j++) threshold[j] = bMag[j] - scale[j] * bGate[j];
        return (w, (float[])bMag.Clone(), threshold);
    }

    // x W_enc + b_enc = (x − b_dec) W_enc + (b_enc + b_dec W_enc).
    private static float[] FoldDecoderBias(float[] wEnc, float[] bEnc, float[] bDec, int dIn, int dSae)
    {
        var folded = new double[dSae];
        for (var j = 0; j < dSae; j++) folded[j] = bEnc[j];
        for (var i = 0; i < dIn; i++)
            for (var j = 0; j < dSae; j++) folded[j] += (double)bDec[i] * wEnc[i * dSae + j];
        return folded.Select(v => (float)v).ToArray();
    }

    // topk(n ⊙ u) then ÷ n before decoding equals a topk SAE with encoder columns and b_enc times n, decoder rows ÷ n.
    private static (float[], float[], float[]) FoldDecoderNorms(CfgReader cfg, float[] wEnc, float[] bEnc, float[] wDec, int dIn, int dSae)
    {
        var norm = new float[dSae];
        for (var j = 0; j < dSae; j++)
        {
            norm[j] = System.Numerics.Tensors.TensorPrimitives.Norm(wDec.AsSpan(j * dIn, dIn));
            if (!(norm[j] > 0))
                throw cfg.Error($"rescale_acts_by_decoder_norm is true and latent {j}'s decoder row is zero (SAELens would divide by 0)");
        }
        var w = new float[wEnc.Length];
        for (var i = 0; i < dIn; i++)
            for (var j = 0; j < dSae; j++) w[i * dSae + j] = wEnc[i * dSae + j] * norm[j];
        var d = new float[wDec.Length];
        for (var j = 0; j < dSae; j++)
            for (var i = 0; i < dIn; i++) d[j * dIn + i] = wDec[j * dIn + i] / norm[j];
        return (w, bEnc.Select((b, j) => b * norm[j]).ToArray(), d);
    }

    // Older SAELens multiplied the codes by a fine-tuned scaling_factor before decoding; all ones is no scaling.
    private static float[] FoldScalingFactor(CfgReader cfg, Tensor scaling, float[] wDec, int dSae, int dIn)
    {
        if (!scaling.Shape.SequenceEqual(new long[] { dSae }))
            throw cfg.Error($"tensor \"scaling_factor\" has shape [{string.Join(", ", scaling.Shape)}]; expected [{dSae}]");
        if (scaling.Data.All(s => s == 1)) return wDec;
        if (!cfg.Boolean("finetuning_scaling_factor", false))
            throw cfg.Error("tensor \"scaling_factor\" is not all ones but finetuning_scaling_factor is not true (SAELens refuses this too)");
        var d = (float[])wDec.Clone();
        for (var j = 0; j < dSae; j++)
            for (var i = 0; i < dIn; i++) d[j * dIn + i] *= scaling.Data[j];
        return d;
    }

    /// <summary>cfg.json's keys, with errors naming the file and the key.</summary>
    private sealed class CfgReader
    {
        private readonly string path;
        private readonly JsonElement root;

        public CfgReader(string path)
        {
            this.path = path;
            try
            {
                using var document = JsonDocument.Parse(File.ReadAllText(path));
                root = document.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new DataFormatException($"{path}: not valid JSON: {e.Message}", e);
            }
            if (root.ValueKind != JsonValueKind.Object) throw Error($"must be a JSON object, found {root.ValueKind}");
        }

        public DataFormatException Error(string message) => new($"{path}: {message}");

        public bool Has(string key) => root.TryGetProperty(key, out _);

        /// <summary>SAELens's test: the version at the top level, else in "metadata"; absent or below 6.0 is pre-6.</summary>
        public bool IsPre6()
        {
            // An absent, null or empty version does not count (SAELens tests it for truth), at either place.
            static bool Given(JsonElement o, out JsonElement v) =>
                o.TryGetProperty("sae_lens_version", out v) && v.ValueKind != JsonValueKind.Null &&
                !(v.ValueKind == JsonValueKind.String && v.GetString() == "");
            JsonElement version;
            string key;
            if (Given(root, out version)) key = "sae_lens_version";
            else if (root.TryGetProperty("metadata", out var m) && m.ValueKind == JsonValueKind.Object && Given(m, out version))
                key = "metadata.sae_lens_version";
            else return true;
            var major = version.ValueKind == JsonValueKind.String ? version.GetString()!.Split('.', '-', '+')[0] : null;
            if (!int.TryParse(major, NumberStyles.None, CultureInfo.InvariantCulture, out var number))
                throw Error($"{key} is {version.GetRawText()}; expected a version string such as \"6.5.1\"");
            return number < 6;
        }

        public string? String(string key)
        {
            if (!root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            return v.ValueKind == JsonValueKind.String ? v.GetString() : throw Error($"\"{key}\" must be a string, found {v.GetRawText()}");
        }

        public int PositiveInteger(string key)
        {
            if (!root.TryGetProperty(key, out var v)) throw Error($"\"{key}\" is missing; it must be a positive integer");
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) && i > 0) return i;
            throw Error($"\"{key}\" is {v.GetRawText()}; it must be a positive integer" +
                        (v.ValueKind == JsonValueKind.String ? " (a JSON number, not a string)" : ""));
        }

        public int? NestedInteger(string objectKey, string key)
        {
            if (!root.TryGetProperty(objectKey, out var o) || o.ValueKind != JsonValueKind.Object || !o.TryGetProperty(key, out var v) ||
                v.ValueKind == JsonValueKind.Null) return null;
            return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) && i > 0
                ? i
                : throw Error($"{objectKey}.{key} is {v.GetRawText()}; it must be a positive integer");
        }

        public bool IsNull(string key) => root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Null;

        public double Number(string key, double fallback)
        {
            if (!root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
            return v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out var d) && double.IsFinite(d)
                ? d
                : throw Error($"\"{key}\" is {v.GetRawText()}; it must be a finite number");
        }

        public bool Boolean(string key, bool fallback)
        {
            if (!root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Error($"\"{key}\" is {v.GetRawText()}; it must be true or false"),
            };
        }

        /// <summary>normalize_activations as SAELens reads it: null means "none"; before 6.0 a boolean meant false →
        /// "none", true → "expected_average_only_in"; from 6.0 only the four strings.</summary>
        public string Normalization(bool pre6)
        {
            if (!root.TryGetProperty("normalize_activations", out var v) || v.ValueKind == JsonValueKind.Null) return "none";
            if (v.ValueKind is JsonValueKind.True or JsonValueKind.False)
            {
                if (pre6) return v.ValueKind == JsonValueKind.True ? "expected_average_only_in" : "none";
                throw Error($"normalize_activations is {v.GetRawText()}: a boolean is the pre-6.0 form, and this cfg says it is " +
                            $"SAELens 6 (sae_lens_version); valid: {string.Join(", ", Normalizations.Select(n => $"\"{n}\""))}");
            }
            var mode = v.ValueKind == JsonValueKind.String ? v.GetString()! : null;
            if (mode is null || !Normalizations.Contains(mode))
                throw Error($"normalize_activations is {v.GetRawText()}; valid: {string.Join(", ", Normalizations.Select(n => $"\"{n}\""))}" +
                            (pre6 ? ", true, false" : ""));
            return mode;
        }
    }
}
