using System.Text.Json;
using NativeEngine.Interop;

namespace NativeEngine.Runner.Formats;

/// <summary>
/// A sparse autoencoder's dictionary in the SAELens layout (SCIENCE §3): encoder W_enc [d_in][d_sae] (column j is
/// latent j's encoder direction), b_enc [d_sae], decoder W_dec [d_sae][d_in] (row j is latent j's atom), b_dec
/// [d_in], and a threshold [d_sae]: θ for jumprelu, the inference threshold (repeated) for batchtopk. Input normalisation is folded into the weights before saving, so
/// a saved dictionary applies to raw activations.
/// </summary>
public sealed record SaeDictionary(int DIn, int DSae, SaeArchitecture Architecture, int? K, float[] WEnc, float[] BEnc,
    float[] WDec, float[] BDec, float[]? Threshold);

/// <summary>Writes and reads a dictionary folder: sae_weights.safetensors, cfg.json and, when known,
/// sparsity.safetensors (log10 feature density per latent, as SAELens stores it).</summary>
public static class SaeLens
{
    public const string WeightsFile = "sae_weights.safetensors";
    public const string ConfigFile = "cfg.json";
    public const string SparsityFile = "sparsity.safetensors";

    /// <summary>Architectures as SAELens names them in cfg.json (the L1 SAE is "standard").</summary>
    public static readonly IReadOnlyDictionary<string, SaeArchitecture> Architectures = new Dictionary<string, SaeArchitecture>
    {
        ["topk"] = SaeArchitecture.TopK,
        ["batchtopk"] = SaeArchitecture.BatchTopK,
        ["standard"] = SaeArchitecture.Relu,
        ["jumprelu"] = SaeArchitecture.JumpRelu,
    };

    public static string Name(SaeArchitecture architecture) => Architectures.First(p => p.Value == architecture).Key;

    public static void Write(string directory, SaeDictionary sae, IReadOnlyDictionary<string, string> metadata,
        float[]? log10Density = null)
    {
        Directory.CreateDirectory(directory);
        var tensors = new List<Tensor>
        {
            new("W_enc", [sae.DIn, sae.DSae], sae.WEnc),
            new("b_enc", [sae.DSae], sae.BEnc),
            new("W_dec", [sae.DSae, sae.DIn], sae.WDec),
            new("b_dec", [sae.DIn], sae.BDec),
        };
        if (sae.Threshold is not null) tensors.Add(new Tensor("threshold", [sae.DSae], sae.Threshold));
        SafeTensors.Write(Path.Combine(directory, WeightsFile), tensors);
        if (log10Density is not null)
            SafeTensors.Write(Path.Combine(directory, SparsityFile), [new Tensor("sparsity", [sae.DSae], log10Density)]);

        AtomicFile.WriteText(Path.Combine(directory, ConfigFile), Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteString("architecture", Name(sae.Architecture));
            w.WriteNumber("d_in", sae.DIn);
            w.WriteNumber("d_sae", sae.DSae);
            w.WriteString("dtype", "float32");
            w.WriteString("device", "cpu");
            w.WriteBoolean("apply_b_dec_to_input", true);
            w.WriteString("normalize_activations", "none");  // folded into the weights
            if (sae.K is { } k) w.WriteNumber("k", k);
            w.WriteStartObject("metadata");
            foreach (var (key, value) in metadata) w.WriteString(key, value);
            w.WriteEndObject();
            w.WriteEndObject();
        }));
    }

    /// <summary>Reads a SAELens-layout folder (ours or SAELens's own); errors name the file and what is wrong.</summary>
    public static SaeDictionary Read(string directory)
    {
        var configPath = Path.Combine(directory, ConfigFile);
        var weightsPath = Path.Combine(directory, WeightsFile);
        foreach (var path in new[] { configPath, weightsPath })
            if (!File.Exists(path)) throw new InvalidDataException($"{path} does not exist; a dictionary folder holds {ConfigFile} and {WeightsFile}");
        using var config = JsonDocument.Parse(File.ReadAllText(configPath));
        var root = config.RootElement;
        int Integer(string key) => root.TryGetProperty(key, out var v) && v.TryGetInt32(out var i) && i > 0
            ? i
            : throw new InvalidDataException($"{configPath}: \"{key}\" must be a positive integer");
        var dIn = Integer("d_in");
        var dSae = Integer("d_sae");
        var name = root.TryGetProperty("architecture", out var a) ? a.GetString() ?? "standard" : "standard";
        if (!Architectures.TryGetValue(name, out var architecture))
            throw new InvalidDataException($"{configPath}: architecture \"{name}\" is not one of {string.Join(", ", Architectures.Keys)}");
        int? k = root.TryGetProperty("k", out var kv) && kv.TryGetInt32(out var kk) ? kk : null;
        if (architecture is SaeArchitecture.TopK or SaeArchitecture.BatchTopK && k is null)
            throw new InvalidDataException($"{configPath}: architecture {name} needs \"k\"");
        if (root.TryGetProperty("normalize_activations", out var norm) && norm.GetString() is { } mode && mode != "none")
            throw new InvalidDataException($"{configPath}: normalize_activations \"{mode}\" is not supported for reading; " +
                                           "fold the scale into the weights (\"none\")");

        var (tensors, _) = SafeTensors.Read(weightsPath);
        float[] Tensor(string name, params long[] shape)
        {
            var t = tensors.FirstOrDefault(t => t.Name == name)
                    ?? throw new InvalidDataException($"{weightsPath}: tensor \"{name}\" is missing");
            if (!t.Shape.SequenceEqual(shape))
                throw new InvalidDataException($"{weightsPath}: tensor \"{name}\" has shape [{string.Join(", ", t.Shape)}]; " +
                                               $"cfg.json says [{string.Join(", ", shape)}]");
            return t.Data;
        }
        // jumprelu needs its thresholds; batchtopk may carry its inference threshold (one value, repeated).
        var threshold = architecture == SaeArchitecture.JumpRelu || tensors.Any(t => t.Name == "threshold") ? Tensor("threshold", dSae) : null;
        return new SaeDictionary(dIn, dSae, architecture, k, Tensor("W_enc", dIn, dSae), Tensor("b_enc", dSae),
            Tensor("W_dec", dSae, dIn), Tensor("b_dec", dIn), threshold);
    }
}
