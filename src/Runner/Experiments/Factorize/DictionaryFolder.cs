using System.Text.Json;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// Where a dictionary lives: a factorize run folder keeps it in dictionary/ (the SAELens files only, so the folder
/// loads in SAELens as it is); any folder holding cfg.json and the weights (SAELens's own, or dictionary/ itself)
/// is a dictionary too. Verbs that take --dict accept either.
/// </summary>
public static class DictionaryFolder
{
    public const string Name = "dictionary";

    /// <summary>The folder holding cfg.json: <paramref name="directory"/> itself, or its dictionary/ subfolder.</summary>
    public static string Resolve(string directory)
    {
        if (File.Exists(directory))
            throw new Configs.ConfigException($"--dict {directory} is a file; give the dictionary's folder (cfg.json and " +
                                              $"{SaeLens.WeightsFile}) or a factorize run folder");
        if (!Directory.Exists(directory))
            throw new Configs.ConfigException($"--dict {directory} does not exist; give a dictionary folder or a factorize run folder");
        var inner = Path.Combine(directory, Name);
        return !File.Exists(Path.Combine(directory, SaeLens.ConfigFile)) && Directory.Exists(inner) ? inner : directory;
    }

    /// <summary>The factorize run folder a dictionary belongs to (for its config.json), or null.</summary>
    public static string? RunFolderOf(string directory)
    {
        var dictionary = Path.GetFullPath(Resolve(directory));
        var parent = Path.GetFileName(dictionary) == Name ? Path.GetDirectoryName(dictionary) : null;
        if (parent is not null && File.Exists(Path.Combine(parent, FactorizeExperiment.ConfigFile))) return parent;
        return File.Exists(Path.Combine(directory, FactorizeExperiment.ConfigFile)) ? directory : null;
    }

    /// <summary>Reads the dictionary of <paramref name="directory"/>; a cfg.json that is not JSON is a data error naming it.</summary>
    public static SaeDictionary Read(string directory)
    {
        var folder = Resolve(directory);
        try
        {
            return SaeLens.Read(folder);
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
