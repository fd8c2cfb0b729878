namespace NativeEngine.Runner.Formats;

/// <summary>What a ground_truth.safetensors holds. Features [n][d] (feature i's direction in row i) always; the rest
/// when the writer knew it (null otherwise): Probabilities [n] (each feature's target firing probability), Bias [d],
/// FireProbabilities [n] (after compensation for the forest), Parents [n] (-1: a root or in no tree), Flags [n]
/// (1: the feature's children exclude each other, 2: it scales its children), MagnitudeMean and MagnitudeStd [n].</summary>
public sealed record GroundTruthFileContents(float[] Features, int N, int D, float[]? Probabilities, IReadOnlyDictionary<string, string> Metadata,
    float[]? Bias = null, float[]? FireProbabilities = null, int[]? Parents = null, int[]? Flags = null,
    float[]? MagnitudeMean = null, float[]? MagnitudeStd = null);

/// <summary>
/// ground_truth.safetensors, beside activation shards whose generating features are known (synthetic data,
/// harvested models): "features" [n][d] and "probabilities" [n], with the writer's metadata; a synthetic generator's
/// file adds "bias" [d], "fire_probabilities", "parents", "flags", "magnitude_mean", "magnitude_std" [n] (integers
/// stored exactly as float32) and, in its metadata, "generator" (its kind) and "synthetic" (its data.synthetic
/// section as JSON, every value), from which the same generator is built again. factorize, eval and analyze score
/// against it.
/// </summary>
public static class GroundTruthFile
{
    public const string Name = "ground_truth.safetensors";

    /// <summary>Metadata keys of a synthetic generator's file: its kind, and its data.synthetic section as JSON.</summary>
    public const string GeneratorKey = "generator", SyntheticKey = "synthetic";

    public static void Write(string directory, float[] features, long n, long d, float[] probabilities,
        IReadOnlyDictionary<string, string> metadata) =>
        SafeTensors.Write(Path.Combine(directory, Name),
        [
            new Tensor("features", [n, d], features),
            new Tensor("probabilities", [n], probabilities),
        ], metadata);

    public static void Write(string directory, GroundTruthFileContents truth)
    {
        long n = truth.N, d = truth.D;
        var tensors = new List<Tensor> { new("features", [n, d], truth.Features) };
        if (truth.Probabilities is { } p) tensors.Add(new Tensor("probabilities", [n], p));
        if (truth.Bias is { } b) tensors.Add(new Tensor("bias", [d], b));
        if (truth.FireProbabilities is { } fire) tensors.Add(new Tensor("fire_probabilities", [n], fire));
        if (truth.Parents is { } parents) tensors.Add(new Tensor("parents", [n], parents.Select(v => (float)v).ToArray()));
        if (truth.Flags is { } flags) tensors.Add(new Tensor("flags", [n], flags.Select(v => (float)v).ToArray()));
        if (truth.MagnitudeMean is { } mean) tensors.Add(new Tensor("magnitude_mean", [n], mean));
        if (truth.MagnitudeStd is { } std) tensors.Add(new Tensor("magnitude_std", [n], std));
        SafeTensors.Write(Path.Combine(directory, Name), tensors, truth.Metadata);
    }

    /// <summary>Reads a ground-truth file; errors name the file and the tensor.</summary>
    public static GroundTruthFileContents Read(string path)
    {
        var (tensors, metadata) = SafeTensors.Read(path);
        var features = tensors.FirstOrDefault(t => t.Name == "features");
        if (features is not { Shape.Length: 2 })
            throw new DataFormatException($"{path}: no \"features\" tensor of shape [n, d]");
        int n = checked((int)features.Shape[0]), d = checked((int)features.Shape[1]);
        float[]? Vector(string name, long length)
        {
            var tensor = tensors.FirstOrDefault(t => t.Name == name);
            if (tensor is null) return null;
            if (tensor.Shape is not [var size] || size != length)
                throw new DataFormatException($"{path}: tensor \"{name}\" has shape [{string.Join(", ", tensor.Shape)}], expected [{length}]");
            return tensor.Data;
        }
        int[]? Integers(string name, int min) => Vector(name, n) is { } values
            ? values.Select(v => v == Math.Round(v) && v >= min && v < int.MaxValue ? (int)v
                : throw new DataFormatException($"{path}: tensor \"{name}\" holds {v}, not an integer >= {min}")).ToArray()
            : null;
        return new GroundTruthFileContents(features.Data, n, d, Vector("probabilities", n), metadata, Vector("bias", d),
            Vector("fire_probabilities", n), Integers("parents", -1), Integers("flags", 0), Vector("magnitude_mean", n),
            Vector("magnitude_std", n));
    }

    /// <summary>The ground-truth file beside activation files: in the folder a path or glob names, or in the folder
    /// itself (a dataset folder); null when there is none.</summary>
    public static string? Beside(string pathOrFolder)
    {
        var folder = (Directory.Exists(pathOrFolder) ? pathOrFolder : Path.GetDirectoryName(pathOrFolder)) ?? ".";
        var path = Path.Combine(folder, Name);
        return File.Exists(path) ? path : null;
    }
}
