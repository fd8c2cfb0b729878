namespace NativeEngine.Runner.Formats;

/// <summary>The two dictionary layouts, told apart by their weights file.</summary>
public enum DictionaryFormat
{
    SaeLens,
    Sparsify,
}

/// <summary>Reads a dictionary folder in either layout, and writes one in the layout asked for.</summary>
public static class DictionaryFolder
{
    public static readonly IReadOnlyDictionary<string, DictionaryFormat> Names = new Dictionary<string, DictionaryFormat>
    {
        ["saelens"] = DictionaryFormat.SaeLens,
        ["sparsify"] = DictionaryFormat.Sparsify,
    };

    public static string Name(DictionaryFormat format) => Names.First(p => p.Value == format).Key;

    /// <summary>The layout of a folder: SAELens (sae_weights.safetensors) or sparsify (sae.safetensors), both beside
    /// cfg.json. Errors name the folder and what it holds instead.</summary>
    public static DictionaryFormat Detect(string directory)
    {
        if (!Directory.Exists(directory)) throw new DataFormatException($"dictionary folder {directory} does not exist");
        var saeLens = File.Exists(Path.Combine(directory, SaeLens.WeightsFile));
        var sparsify = File.Exists(Path.Combine(directory, Sparsify.WeightsFile));
        if (saeLens && sparsify)
            throw new DataFormatException($"{directory} holds both {SaeLens.WeightsFile} (SAELens) and {Sparsify.WeightsFile} (sparsify); " +
                                          "keep one dictionary per folder");
        if (saeLens) return DictionaryFormat.SaeLens;
        if (sparsify) return DictionaryFormat.Sparsify;
        // sparsify saves one folder per hook point (layers.0, ...) under a run folder.
        var inside = Directory.GetDirectories(directory)
            .Where(sub => File.Exists(Path.Combine(sub, SaeLens.WeightsFile)) || File.Exists(Path.Combine(sub, Sparsify.WeightsFile)))
            .Select(Path.GetFileName).Order().ToList();
        throw new DataFormatException($"{directory} holds no dictionary: a SAELens folder has {SaeLens.ConfigFile} and {SaeLens.WeightsFile}, " +
                                      $"a sparsify folder {Sparsify.ConfigFile} and {Sparsify.WeightsFile}" +
                                      (inside.Count > 0 ? $"; its subfolders {string.Join(", ", inside.Take(8))}{(inside.Count > 8 ? ", ..." : "")} do, give one of them" : ""));
    }

    public static SaeDictionary Read(string directory) => Detect(directory) switch
    {
        DictionaryFormat.Sparsify => Sparsify.Read(directory),
        _ => SaeLens.Read(directory),
    };
}
