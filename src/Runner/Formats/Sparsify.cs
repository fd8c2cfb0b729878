using System.Text.Json;
using NativeEngine.Interop;

namespace NativeEngine.Runner.Formats;

/// <summary>
/// A dictionary folder in EleutherAI sparsify's layout: sae.safetensors with encoder.weight [d_sae, d_in] (row j is
/// latent j's encoder direction), encoder.bias [d_sae], W_dec [d_sae, d_in] and b_dec [d_in]; cfg.json with its
/// SparseCoderConfig (activation, expansion_factor, normalize_decoder, num_latents, k, multi_topk, skip_connection,
/// transcode) and d_in. sparsify encodes TopK(ReLU((x − b_dec) Eᵀ + e)) and decodes z W_dec + b_dec: the engine's
/// topk SAE with W_enc = Eᵀ.
/// </summary>
public static class Sparsify
{
    public const string WeightsFile = "sae.safetensors";
    public const string ConfigFile = "cfg.json";

    /// <summary>Only TopK dictionaries have a sparsify form; other architectures are refused by name.</summary>
    public static string? WhyNotWritable(SaeArchitecture architecture) => architecture == SaeArchitecture.TopK
        ? null
        : $"sparsify stores TopK dictionaries only (its activations are \"topk\" and \"groupmax\"); " +
          $"{architecture.ToString().ToLowerInvariant()} has no sparsify form";

    public static void Write(string directory, SaeDictionary sae)
    {
        if (WhyNotWritable(sae.Architecture) is { } why) throw new ArgumentException(why);
        Directory.CreateDirectory(directory);
        int d = sae.DIn, m = sae.DSae;
        var encoder = new float[m * d];
        for (var i = 0; i < d; i++)
            for (var j = 0; j < m; j++) encoder[j * d + i] = sae.WEnc[i * m + j];
        SafeTensors.Write(Path.Combine(directory, WeightsFile),
        [
            new Tensor("encoder.weight", [m, d], encoder),
            new Tensor("encoder.bias", [m], sae.BEnc),
            new Tensor("W_dec", [m, d], sae.WDec),
            new Tensor("b_dec", [d], sae.BDec),
        ]);
        AtomicFile.WriteText(Path.Combine(directory, ConfigFile), Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteString("activation", "topk");
            // num_latents wins when non-zero; expansion_factor is kept consistent for readers that look at it.
            w.WriteNumber("expansion_factor", Math.Max(1, m / d));
            w.WriteBoolean("normalize_decoder", true);
            w.WriteNumber("num_latents", m);
            w.WriteNumber("k", sae.K!.Value);
            w.WriteBoolean("multi_topk", false);
            w.WriteBoolean("skip_connection", false);
            w.WriteBoolean("transcode", false);
            w.WriteNumber("d_in", d);
            w.WriteEndObject();
        }));
    }

    /// <summary>
    /// Reads a sparsify folder of any version: num_latents (0 or absent: expansion_factor × d_in), k (required: its
    /// default changed between versions), activation "topk" (absent in the oldest versions, which had only TopK).
    /// Refused, naming the key: "groupmax", signed codes ("signed": true), a skip connection, transcoders. Training
    /// settings (multi_topk, normalize_decoder) do not change inference and are accepted.
    /// </summary>
    public static SaeDictionary Read(string directory)
    {
        var configPath = Path.Combine(directory, ConfigFile);
        var weightsPath = Path.Combine(directory, WeightsFile);
        foreach (var path in new[] { configPath, weightsPath })
            if (!File.Exists(path)) throw new DataFormatException($"{path} does not exist; a sparsify dictionary folder holds {ConfigFile} and {WeightsFile}");
        JsonElement root;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(configPath));
            root = document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new DataFormatException($"{configPath}: not valid JSON: {e.Message}", e);
        }
        DataFormatException Error(string message) => new($"{configPath}: {message}");
        if (root.ValueKind != JsonValueKind.Object) throw Error("must be a JSON object");
        int? Integer(string key, bool positive)
        {
            if (!root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) && (positive ? i > 0 : i >= 0)
                ? i
                : throw Error($"\"{key}\" is {v.GetRawText()}; it must be a {(positive ? "positive" : "non-negative")} integer");
        }
        bool Flag(string key)
        {
            if (!root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return false;
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Error($"\"{key}\" is {v.GetRawText()}; it must be true or false"),
            };
        }

        var d = Integer("d_in", positive: true) ?? throw Error("\"d_in\" is missing (sparsify writes it beside the SparseCoderConfig)");
        var k = Integer("k", positive: true) ?? throw Error("\"k\" is missing; sparsify's default changed between versions, so it is not assumed");
        var numLatents = Integer("num_latents", positive: false) ?? 0;
        var m = numLatents > 0 ? numLatents
            : Integer("expansion_factor", positive: true) is { } factor ? checked(factor * d)
            : throw Error("neither \"num_latents\" (> 0) nor \"expansion_factor\" gives the number of latents");
        if (k > m) throw Error($"\"k\" is {k}; at most the {m} latents can be active");
        if (root.TryGetProperty("activation", out var activation) && activation.ValueKind != JsonValueKind.Null &&
            !(activation.ValueKind == JsonValueKind.String && activation.GetString() == "topk"))
            throw Error($"\"activation\" is {activation.GetRawText()}; read here: \"topk\" (\"groupmax\" takes the largest code in each " +
                        "of k groups of latents, which the engine does not evaluate)");
        if (Flag("signed")) throw Error("\"signed\" is true: codes chosen by |value| and kept signed, which the engine does not evaluate");
        if (Flag("skip_connection")) throw Error("\"skip_connection\" is true: a linear skip (W_skip) the engine's dictionaries do not have");
        if (Flag("transcode")) throw Error("\"transcode\" is true: a transcoder maps one activation to another; eval and encode measure " +
                                           "dictionaries that reconstruct their input");

        var (tensors, _) = SafeTensors.Read(weightsPath);
        var byName = tensors.ToDictionary(t => t.Name);
        float[] Tensor(string name, params long[] shape)
        {
            if (!byName.Remove(name, out var t))
                throw new DataFormatException($"{weightsPath}: tensor \"{name}\" is missing (a sparsify SAE holds it)");
            if (!t.Shape.SequenceEqual(shape))
                throw new DataFormatException($"{weightsPath}: tensor \"{name}\" has shape [{string.Join(", ", t.Shape)}]; " +
                                              $"cfg.json says [{string.Join(", ", shape)}]");
            return t.Data;
        }
        var encoder = Tensor("encoder.weight", m, d);
        var bEnc = Tensor("encoder.bias", m);
        var wDec = Tensor("W_dec", m, d);
        var bDec = Tensor("b_dec", d);
        if (byName.Count > 0)
            throw new DataFormatException($"{weightsPath}: tensor{(byName.Count > 1 ? "s" : "")} {string.Join(", ", byName.Keys.Select(n => $"\"{n}\""))} " +
                                          "not part of a sparsify TopK SAE (sparsify loads strictly too)");
        var wEnc = new float[d * m];
        for (var j = 0; j < m; j++)
            for (var i = 0; i < d; i++) wEnc[i * m + j] = encoder[j * d + i];
        return new SaeDictionary(d, m, SaeArchitecture.TopK, k, wEnc, bEnc, wDec, bDec, null);
    }
}
