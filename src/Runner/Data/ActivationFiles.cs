using System.IO.Enumeration;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Data;

/// <summary>How activation files are stored. Auto picks by extension: .npy, .safetensors, .arrow (and dataset
/// folders), otherwise raw float32.</summary>
public enum ActivationFileFormat
{
    Auto,
    Npy,
    SafeTensors,
    RawF32,
    RawF16,
    RawBF16,
    /// <summary>A column of Arrow IPC stream files (Hugging Face datasets, SAELens caches), float32 or float16.</summary>
    Arrow,
    /// <summary>Arrow files whose 16-bit integer column holds bfloat16 bits (Arrow has no bfloat16 type).</summary>
    ArrowBF16,
}

/// <summary>
/// A set of activation shards: paths or glob patterns ('*' and '?' in the file-name part only), the format, d for
/// raw shards (for the other formats, a check), the tensor name inside .safetensors files, and the column of Arrow
/// files. For Arrow, a path may also be a dataset folder (save_to_disk, a SAELens cache): its state.json lists
/// the files in order and its dataset_info.json names the columns.
/// </summary>
public sealed record ActivationFiles(IReadOnlyList<string> Patterns, ActivationFileFormat Format = ActivationFileFormat.Auto, int? D = null,
    string? Tensor = null, string? Column = null)
{
    private bool IsArrow => Format is ActivationFileFormat.Arrow or ActivationFileFormat.ArrowBF16;

    /// <summary>
    /// Expands each pattern in order into its matches sorted by ordinal file name; a plain path must exist and a
    /// pattern must match at least one file. An Arrow dataset folder expands to the files its state.json lists.
    /// </summary>
    public IReadOnlyList<string> Expand() => ExpandSources().Select(s => s.Path).ToList();

    // Each file with the dataset folder it was listed by (null for files named directly).
    private List<(string Path, HfDatasetFolder? Folder)> ExpandSources()
    {
        var paths = new List<(string, HfDatasetFolder?)>();
        foreach (var pattern in Patterns)
        {
            if ((IsArrow || Format == ActivationFileFormat.Auto) && Directory.Exists(pattern))
            {
                if (!HfDatasetFolder.IsDatasetFolder(pattern))
                    throw new DataFormatException($"{pattern}: a folder, but not a saved dataset (no {HfDatasetFolder.StateFile}, " +
                                                  $"{HfDatasetFolder.InfoFile} or .arrow files)");
                var folder = HfDatasetFolder.Read(pattern);
                paths.AddRange(folder.DataFiles.Select(f => (f, (HfDatasetFolder?)folder)));
                continue;
            }
            var directory = Path.GetDirectoryName(pattern);
            var name = Path.GetFileName(pattern);
            if (string.IsNullOrEmpty(directory)) directory = ".";
            if (directory.IndexOfAny(['*', '?']) >= 0)
                throw new DataFormatException($"{pattern}: wildcards are expanded in the file name only, not in the folder '{directory}'");
            if (name.IndexOfAny(['*', '?']) < 0)
            {
                if (!File.Exists(pattern)) throw new DataFormatException($"{pattern}: no such activation file");
                paths.Add((pattern, null));
                continue;
            }
            if (!Directory.Exists(directory))
                throw new DataFormatException($"{pattern}: no files match: the folder '{directory}' does not exist");
            var matches = Directory.EnumerateFiles(directory)
                .Where(f => FileSystemName.MatchesSimpleExpression(name, Path.GetFileName(f), ignoreCase: false))
                .Order(StringComparer.Ordinal)
                .ToList();
            if (matches.Count == 0) throw new DataFormatException($"{pattern}: no files match");
            paths.AddRange(matches.Select(m => (m, (HfDatasetFolder?)null)));
        }
        return paths;
    }

    /// <summary>Opens every shard; all must share one d (and equal <see cref="D"/> when it is given).</summary>
    public List<IActivationShard> Open()
    {
        var shards = new List<IActivationShard>();
        try
        {
            foreach (var (path, folder) in ExpandSources())
            {
                var shard = OpenOne(path, folder);
                shards.Add(shard);
                if (D is { } d && shard.D != d)
                    throw new DataFormatException($"{path}: d = {shard.D}, but d = {d} was asked for");
                if (shard.D != shards[0].D)
                    throw new DataFormatException($"{path}: d = {shard.D}, but {shards[0].Path} has d = {shards[0].D}; all shards must share one d");
            }
            return shards;
        }
        catch
        {
            foreach (var shard in shards) shard.Dispose();
            throw;
        }
    }

    private IActivationShard OpenOne(string path, HfDatasetFolder? folder)
    {
        var format = Format;
        if (format == ActivationFileFormat.Auto)
            format = Path.GetExtension(path).ToLowerInvariant() switch
            {
                ".npy" => ActivationFileFormat.Npy,
                ".safetensors" => ActivationFileFormat.SafeTensors,
                ".arrow" => ActivationFileFormat.Arrow,
                _ => ActivationFileFormat.RawF32,
            };
        if (format is ActivationFileFormat.Arrow or ActivationFileFormat.ArrowBF16)
        {
            var column = folder?.ChooseColumn(Column, format == ActivationFileFormat.ArrowBF16) ?? Column;
            var expectedD = column is not null && folder?.Features?.GetValueOrDefault(column) is { } feature ? feature.InnermostLength : null;
            return ArrowShard.Open(path, column, format == ActivationFileFormat.ArrowBF16, expectedD);
        }
        int RawD() => D ?? throw new DataFormatException($"{path}: a raw shard needs d to be given");
        return format switch
        {
            ActivationFileFormat.Npy => NpyShard.Open(path),
            ActivationFileFormat.SafeTensors => SafeTensorsShard.Open(path, Tensor),
            ActivationFileFormat.RawF32 => RawShard.Open(path, RawD(), ActivationDType.F32),
            ActivationFileFormat.RawF16 => RawShard.Open(path, RawD(), ActivationDType.F16),
            ActivationFileFormat.RawBF16 => RawShard.Open(path, RawD(), ActivationDType.BF16),
            _ => throw new ArgumentOutOfRangeException(nameof(Format), Format, null),
        };
    }
}
