using System.Text.Json;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

/// <summary>
/// What EleutherAI sparsify does when SparseCoder.load_from_disk reads a folder (read from its source: cfg.json
/// minus d_in into SparseCoderConfig with extra fields dropped, num_latents or d_in × expansion_factor, then a strict
/// load of sae.safetensors), and its encode (TopK of ReLU((x − b_dec) Eᵀ + e)) and decode, re-expressed as an oracle.
/// </summary>
internal static class SparsifyRules
{
    public sealed class LoadFailure(string message) : Exception(message);

    public sealed record Loaded(int DIn, int NumLatents, int K, string Activation, bool Transcode,
        IReadOnlyDictionary<string, Tensor> Tensors);

    public static Loaded LoadFromDisk(string directory)
    {
        var cfg = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "cfg.json"))).RootElement;
        if (!cfg.TryGetProperty("d_in", out var dIn)) throw new LoadFailure("KeyError: 'd_in'");
        JsonElement? Field(string name) => cfg.TryGetProperty(name, out var v) ? v : null;
        int Integer(string name, int fallback) => Field(name) is { } v ? v.GetInt32() : fallback;
        bool Flag(string name, bool fallback) => Field(name) is { } v ? v.GetBoolean() : fallback;
        var d = dIn.GetInt32();
        var expansion = Integer("expansion_factor", 32);
        var numLatents = Integer("num_latents", 0);
        var latents = numLatents != 0 ? numLatents : d * expansion;
        var activation = Field("activation")?.GetString() ?? "topk";
        var transcode = Flag("transcode", false);
        var expected = new Dictionary<string, long[]>
        {
            ["encoder.weight"] = [latents, d], ["encoder.bias"] = [latents], ["W_dec"] = [latents, d], ["b_dec"] = [d],
        };
        if (Flag("skip_connection", false)) expected["W_skip"] = [d, d];
        var tensors = SafeTensors.Read(Path.Combine(directory, "sae.safetensors")).Tensors.ToDictionary(t => t.Name);
        var missing = expected.Keys.Where(k => !tensors.ContainsKey(k)).ToList();
        var unexpected = tensors.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new LoadFailure($"RuntimeError: missing [{string.Join(", ", missing)}], unexpected [{string.Join(", ", unexpected)}]");
        foreach (var (name, shape) in expected)
            if (!tensors[name].Shape.SequenceEqual(shape)) throw new LoadFailure($"RuntimeError: size mismatch for {name}");
        return new Loaded(d, latents, Integer("k", 32), activation, transcode, tensors);
    }

    /// <summary>Codes [tokens][latents] (zero outside the selected) and the reconstruction [tokens][d_in].</summary>
    public static (double[] Codes, double[] Reconstruction) Encode(Loaded sae, float[] x)
    {
        if (sae.Activation != "topk" || sae.Transcode) throw new NotSupportedException("only the TopK autoencoder is ported");
        int d = sae.DIn, m = sae.NumLatents, tokens = x.Length / d;
        float[] T(string name) => sae.Tensors[name].Data;
        var codes = new double[tokens * m];
        var reconstruction = new double[tokens * d];
        for (var t = 0; t < tokens; t++)
        {
            var pre = new double[m];
            for (var j = 0; j < m; j++)
            {
                double sum = T("encoder.bias")[j];
                for (var i = 0; i < d; i++) sum += (x[t * d + i] - (double)T("b_dec")[i]) * T("encoder.weight")[j * d + i];
                pre[j] = Math.Max(0, sum);
            }
            foreach (var j in Enumerable.Range(0, m).OrderByDescending(j => pre[j]).Take(sae.K)) codes[t * m + j] = pre[j];
            for (var i = 0; i < d; i++)
            {
                double sum = T("b_dec")[i];
                for (var j = 0; j < m; j++) sum += codes[t * m + j] * T("W_dec")[j * d + i];
                reconstruction[t * d + i] = sum;
            }
        }
        return (codes, reconstruction);
    }
}
