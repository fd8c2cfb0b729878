namespace NativeEngine.Runner.Formats;

/// <summary>
/// ground_truth.safetensors, beside activation shards whose generating features are known (synthetic data,
/// harvested models): "features" [n][d] (feature i's direction in row i) and "probabilities" [n] (each feature's
/// firing probability), with the generator's metadata. factorize, eval and analyze score against it.
/// </summary>
public static class GroundTruthFile
{
    public const string Name = "ground_truth.safetensors";

    public static void Write(string directory, float[] features, long n, long d, float[] probabilities,
        IReadOnlyDictionary<string, string> metadata) =>
        SafeTensors.Write(Path.Combine(directory, Name),
        [
            new Tensor("features", [n, d], features),
            new Tensor("probabilities", [n], probabilities),
        ], metadata);
}
