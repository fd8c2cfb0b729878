using System.Text.Json;

namespace NativeEngine.Runner.Formats;

/// <summary>The two dictionary layouts, told apart by their weights file.</summary>
public enum DictionaryFormat
{
    SaeLens,
    Sparsify,
}

/// <summary>
/// The one place a dictionary folder is found and read: a folder holding cfg.json and the weights of either layout
/// (SAELens: sae_weights.safetensors; sparsify: sae.safetensors), or a factorize run folder, which keeps its
/// dictionary, and only it, in <see cref="Subfolder"/> so that folder loads in SAELens or sparsify as it is. Writes
/// one in the layout asked for.
/// </summary>
public static class DictionaryFolder
{
    /// <summary>The subfolder of a factorize run folder that holds its dictionary.</summary>
    public const string Subfolder = "dictionary";

    public static readonly IReadOnlyDictionary<string, DictionaryFormat> Names = new Dictionary<string, DictionaryFormat>
    {
        ["saelens"] = DictionaryFormat.SaeLens,
        ["sparsify"] = DictionaryFormat.Sparsify,
    };

    public static string Name(DictionaryFormat format) => Names.First(p => p.Value == format).Key;

    /// <summary>The folder holding cfg.json: <paramref name="directory"/> itself, or its dictionary/ subfolder when it
    /// has none of its own.</summary>
    public static string Resolve(string directory)
    {
        if (File.Exists(directory))
            throw new DataFormatException($"dictionary folder {directory} is a file; give the dictionary's folder (cfg.json and " +
                                          $"{SaeLens.WeightsFile} or {Sparsify.WeightsFile}) or a factorize run folder");
        if (!Directory.Exists(directory))
            throw new DataFormatException($"dictionary folder {directory} does not exist; give a dictionary folder or a factorize run folder");
        var inner = Path.Combine(directory, Subfolder);
        return !File.Exists(Path.Combine(directory, SaeLens.ConfigFile)) && Directory.Exists(inner) ? inner : directory;
    }

    /// <summary>The layout of a dictionary folder (or of a run folder's dictionary/): SAELens (sae_weights.safetensors)
    /// or sparsify (sae.safetensors), both beside cfg.json. Errors name the folder and what it holds instead.</summary>
    public static DictionaryFormat Detect(string directory)
    {
        directory = Resolve(directory);
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
                                      $"a sparsify folder {Sparsify.ConfigFile} and {Sparsify.WeightsFile}, a factorize run folder " +
                                      $"{Subfolder}/" +
                                      (inside.Count > 0 ? $"; its subfolders {string.Join(", ", inside.Take(8))}{(inside.Count > 8 ? ", ..." : "")} do, give one of them" : ""));
    }

    /// <summary>Reads the dictionary of <paramref name="directory"/> (a dictionary folder of either layout, or a run
    /// folder's dictionary/); a cfg.json that is not JSON, or holds a key of the wrong type, is a data error naming it.</summary>
    public static SaeDictionary Read(string directory)
    {
        var folder = Resolve(directory);
        var format = Detect(folder);
        try
        {
            return format == DictionaryFormat.Sparsify ? Sparsify.Read(folder) : SaeLens.Read(folder);
        }
        catch (JsonException e)
        {
            throw new DataFormatException($"{Path.Combine(folder, SaeLens.ConfigFile)}: not valid JSON ({e.Message})", e);
        }
        catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException or FormatException)
        {
            // A key of the wrong type (a number given as a string, an array, an object).
            throw new DataFormatException($"{Path.Combine(folder, SaeLens.ConfigFile)}: a key holds a value of the wrong type ({e.Message})", e);
        }
    }
}
