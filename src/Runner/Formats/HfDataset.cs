using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Apache.Arrow.Types;

namespace NativeEngine.Runner.Formats;

/// <summary>
/// A feature of a Hugging Face dataset as dataset_info.json describes it: "Value" (a dtype), "Array2D".."Array5D"
/// (a shape and a dtype), "Sequence" or "List"/"LargeList" (an inner feature, and a length when fixed).
/// </summary>
public sealed record HfFeature(string Type, string? DType, long[]? Shape, HfFeature? Inner, long Length)
{
    /// <summary>The element dtype of an array of numbers, or null for anything else (strings, dicts, images).</summary>
    public string? ElementDType => Type switch
    {
        "Value" => DType,
        "Array2D" or "Array3D" or "Array4D" or "Array5D" => DType,
        "Sequence" or "List" or "LargeList" => Inner?.ElementDType,
        _ => null,
    };

    /// <summary>A list of floats at any depth (or of 16-bit integers holding bfloat16 bits): the shape an activation column has.</summary>
    public bool IsActivationArray(bool bfloat16Bits) =>
        Type != "Value" && (bfloat16Bits ? ElementDType is "uint16" or "int16" : ElementDType is "float32" or "float16");

    /// <summary>The length of the innermost list (d for an activation column), when the feature fixes it.</summary>
    public long? InnermostLength => Type switch
    {
        "Array2D" or "Array3D" or "Array4D" or "Array5D" => Shape is { Length: > 0 } s && s[^1] > 0 ? s[^1] : null,
        "Sequence" or "List" or "LargeList" => Inner is { Type: "Value" } ? (Length > 0 ? Length : null) : Inner?.InnermostLength,
        _ => null,
    };

    public override string ToString() => Type switch
    {
        "Value" => $"Value({DType})",
        "Sequence" or "List" or "LargeList" => $"{Type}({Inner}{(Length > 0 ? $", length={Length}" : "")})",
        _ when Shape is not null => $"{Type}(shape=({string.Join(", ", Shape.Select(s => s < 0 ? "None" : s.ToString(CultureInfo.InvariantCulture)))}), dtype={DType})",
        _ => Type,
    };

    public static HfFeature Parse(JsonElement e)
    {
        if (e.ValueKind == JsonValueKind.Array && e.GetArrayLength() == 1) return new HfFeature("List", null, null, Parse(e[0]), -1);
        if (e.ValueKind != JsonValueKind.Object) return new HfFeature(e.ValueKind.ToString(), null, null, null, -1);
        var type = e.TryGetProperty("_type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "dict";
        string? dtype = e.TryGetProperty("dtype", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString() : null;
        long[]? shape = e.TryGetProperty("shape", out var s) && s.ValueKind == JsonValueKind.Array
            ? s.EnumerateArray().Select(v => v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var n) ? n : -1).ToArray()
            : null;
        var inner = e.TryGetProperty("feature", out var f) ? Parse(f) : null;
        // A dimension or length that is not an integer is unknown (-1), as datasets writes None.
        var length = e.TryGetProperty("length", out var l) && l.ValueKind == JsonValueKind.Number && l.TryGetInt64(out var n) ? n : -1;
        return new HfFeature(type, dtype, shape, inner, length);
    }
}

/// <summary>
/// A dataset folder as Hugging Face datasets' <c>Dataset.save_to_disk</c> writes it (and SAELens's activation cache
/// runner leaves it): state.json, whose "_data_files" lists the Arrow files in order (data-00000-of-00003.arrow,
/// ...), dataset_info.json, whose "features" names each column's type, and the .arrow files, each an Arrow IPC
/// stream (see <see cref="ArrowIpcStream"/>) whose schema metadata "huggingface" repeats the features. A SAELens
/// cache has one column named by the hook (Array2D of shape (context_size, d_in) and the cache's dtype) and
/// "token_ids" (a Sequence of context_size int32).
/// </summary>
public sealed record HfDatasetFolder(string Folder, IReadOnlyList<string> DataFiles, IReadOnlyDictionary<string, HfFeature>? Features)
{
    public const string StateFile = "state.json";
    public const string InfoFile = "dataset_info.json";
    public const string DictFile = "dataset_dict.json";

    /// <summary>Whether <paramref name="folder"/> looks like a saved dataset (state.json, dataset_info.json or .arrow files).</summary>
    public static bool IsDatasetFolder(string folder) =>
        Directory.Exists(folder) && (File.Exists(Path.Combine(folder, StateFile)) || File.Exists(Path.Combine(folder, InfoFile)) ||
                                     File.Exists(Path.Combine(folder, DictFile)) || Directory.EnumerateFiles(folder, "*.arrow").Any());

    public static HfDatasetFolder Read(string folder)
    {
        var dictPath = Path.Combine(folder, DictFile);
        if (File.Exists(dictPath))
        {
            var splits = ReadJson(dictPath).RootElement is { ValueKind: JsonValueKind.Object } root && root.TryGetProperty("splits", out var s) &&
                         s.ValueKind == JsonValueKind.Array
                ? s.EnumerateArray().Select(v => v.ToString()).ToList()
                : [];
            throw new DataFormatException($"{folder}: a DatasetDict ({DictFile}) with the splits {string.Join(", ", splits)}; give one split's folder, " +
                                          $"e.g. {Path.Combine(folder, splits.FirstOrDefault() ?? "train")}");
        }
        var files = new List<string>();
        var statePath = Path.Combine(folder, StateFile);
        if (File.Exists(statePath))
        {
            using var state = ReadJson(statePath);
            if (state.RootElement.ValueKind != JsonValueKind.Object || !state.RootElement.TryGetProperty("_data_files", out var dataFiles) ||
                dataFiles.ValueKind != JsonValueKind.Array)
                throw new DataFormatException($"{statePath}: no \"_data_files\" list; save_to_disk writes [{{\"filename\": \"data-00000-of-00001.arrow\"}}, ...]");
            foreach (var entry in dataFiles.EnumerateArray())
            {
                if (entry.ValueKind != JsonValueKind.Object || !entry.TryGetProperty("filename", out var name) || name.ValueKind != JsonValueKind.String ||
                    string.IsNullOrEmpty(name.GetString()))
                    throw new DataFormatException($"{statePath}: an entry of \"_data_files\" is {entry.GetRawText()}, not {{\"filename\": \"...\"}}");
                var path = Path.Combine(folder, name.GetString()!);
                if (!File.Exists(path)) throw new DataFormatException($"{statePath}: lists {name.GetString()}, which is not in {folder}");
                files.Add(path);
            }
            if (state.RootElement.TryGetProperty("_indices_data_files", out var indices) && indices.ValueKind == JsonValueKind.Array && indices.GetArrayLength() > 0)
                throw new DataFormatException($"{statePath}: the dataset has an indices mapping (a shuffle or select not flattened); save it with " +
                                              "dataset.flatten_indices().save_to_disk(...)");
        }
        else
        {
            files.AddRange(Directory.EnumerateFiles(folder, "*.arrow").Order(StringComparer.Ordinal));
        }
        if (files.Count == 0) throw new DataFormatException($"{folder}: no .arrow files (and no {StateFile} listing them)");

        Dictionary<string, HfFeature>? features = null;
        var infoPath = Path.Combine(folder, InfoFile);
        if (File.Exists(infoPath))
        {
            using var info = ReadJson(infoPath);
            if (info.RootElement.ValueKind == JsonValueKind.Object && info.RootElement.TryGetProperty("features", out var f) && f.ValueKind == JsonValueKind.Object)
            {
                features = [];
                foreach (var p in f.EnumerateObject())
                    if (!features.TryAdd(p.Name, HfFeature.Parse(p.Value)))
                        throw new DataFormatException($"{infoPath}: \"features\" names the column \"{p.Name}\" twice");
            }
        }
        return new HfDatasetFolder(folder, files, features);
    }

    /// <summary>The activation column: the one asked for (which must exist when the features are known), else the
    /// only float-array feature; null when dataset_info.json is absent (the Arrow schema then decides).</summary>
    public string? ChooseColumn(string? column, bool bfloat16Bits = false)
    {
        if (Features is null) return column;
        var infoPath = Path.Combine(Folder, InfoFile);
        var described = string.Join(", ", Features.Select(p => $"\"{p.Key}\": {p.Value}"));
        if (column is not null)
        {
            if (!Features.TryGetValue(column, out var feature))
                throw new DataFormatException($"{infoPath}: no column \"{column}\"; the features are {described}");
            if (!feature.IsActivationArray(bfloat16Bits))
                throw new DataFormatException($"{infoPath}: column \"{column}\" is {feature}; expected " +
                                              (bfloat16Bits ? "an array of uint16 or int16 holding bfloat16 bits" : "an array of float32 or float16") +
                                              " (SAELens: Array2D of shape (context_size, d_in))");
            return column;
        }
        var candidates = Features.Where(p => p.Value.IsActivationArray(bfloat16Bits)).Select(p => p.Key).ToList();
        return candidates.Count switch
        {
            1 => candidates[0],
            0 => throw new DataFormatException($"{infoPath}: no column holds float arrays; the features are {described}"),
            _ => throw new DataFormatException($"{infoPath}: several columns hold float arrays ({string.Join(", ", candidates)}); name one with \"column\""),
        };
    }

    private static JsonDocument ReadJson(string path)
    {
        try
        {
            return JsonDocument.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new DataFormatException($"{path}: not valid JSON: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException($"{path}: cannot be read: {e.Message}", e);
        }
    }
}

/// <summary>
/// Writes activations as SAELens's cache runner leaves them: a <c>save_to_disk</c> folder whose Arrow files hold a
/// column named by the hook, of datasets' Array2D extension type (storage list&lt;list&lt;dtype&gt;&gt;, field metadata
/// ARROW:extension:name "datasets.features.features.Array2DExtensionType" and ARROW:extension:metadata
/// "[[context_size, d_in], dtype]"), and optionally "token_ids" (fixed_size_list&lt;int32&gt;[context_size]); files
/// data-00000-of-0000N.arrow of <c>rowsPerFile</c> rows, record batches of at most <c>rowsPerBatch</c> rows (datasets
/// writes 1000), then state.json and dataset_info.json. Rows are appended as they come, so a cache can exceed memory.
/// </summary>
public sealed class SaeLensCacheWriter : IDisposable
{
    public const string Array2DExtension = "datasets.features.features.Array2DExtensionType";

    private readonly string folder;
    private readonly string hookName;
    private readonly int context;
    private readonly int d;
    private readonly string dtype;
    private readonly long rows;
    private readonly int rowsPerFile;
    private readonly int rowsPerBatch;
    private readonly bool withTokenIds;
    private readonly Schema schema;
    private readonly ListType inner;
    private readonly ListType outer;
    private readonly FixedSizeListType tokenType;
    private readonly Dictionary<string, object> features;
    private readonly List<string> names = [];
    private readonly int fileCount;
    private readonly List<float> pendingValues = [];
    private readonly List<int> pendingIds = [];
    private FileStream? stream;
    private ArrowStreamWriter? writer;
    private long rowsWritten;
    private long rowsInFile;

    /// <param name="dtype">float32 or float16 (pyarrow has no bfloat16).</param>
    /// <param name="rows">Rows (contexts) the cache will hold: it fixes the file names' "-of-N".</param>
    public SaeLensCacheWriter(string folder, string hookName, int context, int d, long rows, string dtype = "float32", bool tokenIds = false,
        int rowsPerFile = 1 << 20, int rowsPerBatch = 1000)
    {
        if (dtype is not ("float32" or "float16")) throw new ArgumentException($"dtype {dtype}: float32 or float16 (pyarrow has no bfloat16)", nameof(dtype));
        if (context < 1 || d < 1 || rows < 1 || rowsPerFile < 1 || rowsPerBatch < 1)
            throw new ArgumentException($"context {context}, d {d}, rows {rows}, rows per file {rowsPerFile}, rows per batch {rowsPerBatch}: all must be >= 1");
        (this.folder, this.hookName, this.context, this.d, this.dtype, this.rows, this.rowsPerFile, this.rowsPerBatch, withTokenIds) =
            (folder, hookName, context, d, dtype, rows, rowsPerFile, rowsPerBatch, tokenIds);
        Directory.CreateDirectory(folder);
        fileCount = (int)((rows + rowsPerFile - 1) / rowsPerFile);

        features = new Dictionary<string, object>
        {
            [hookName] = new Dictionary<string, object> { ["shape"] = new[] { context, d }, ["dtype"] = dtype, ["_type"] = "Array2D" },
        };
        if (tokenIds)
            features["token_ids"] = new Dictionary<string, object>
            {
                ["feature"] = new Dictionary<string, object> { ["dtype"] = "int32", ["_type"] = "Value" }, ["length"] = context, ["_type"] = "List",
            };
        IArrowType leaf = dtype == "float16" ? HalfFloatType.Default : FloatType.Default;
        inner = new ListType(new Field("item", leaf, true));
        outer = new ListType(new Field("item", inner, true));
        tokenType = new FixedSizeListType(new Field("item", Int32Type.Default, true), context);
        var fields = new List<Field>
        {
            new(hookName, outer, true, new Dictionary<string, string>
            {
                ["ARROW:extension:name"] = Array2DExtension,
                ["ARROW:extension:metadata"] = $"[[{context}, {d}], \"{dtype}\"]",
            }),
        };
        if (tokenIds) fields.Add(new Field("token_ids", tokenType, true));
        schema = new Schema(fields, new Dictionary<string, string>
        {
            ["huggingface"] = JsonSerializer.Serialize(new Dictionary<string, object> { ["info"] = new Dictionary<string, object> { ["features"] = features } }),
        });
    }

    /// <summary>Appends whole rows: values [rows][context][d] and, when the cache has them, token ids [rows][context].</summary>
    public void Append(ReadOnlySpan<float> values, ReadOnlySpan<int> tokenIds = default)
    {
        var rowValues = context * d;
        if (values.Length % rowValues != 0) throw new ArgumentException($"{values.Length} values are not whole rows of {context} x {d}");
        var count = values.Length / rowValues;
        if (withTokenIds != !tokenIds.IsEmpty || (withTokenIds && tokenIds.Length != count * context))
            throw new ArgumentException(withTokenIds ? "token ids [rows][context] go with every row" : "this cache has no token_ids column");
        if (rowsWritten + pendingValues.Count / rowValues + count > rows)
            throw new InvalidOperationException($"{folder}: more than the {rows} rows the cache was created for");
        for (var r = 0; r < count; r++)
        {
            foreach (var v in values.Slice(r * rowValues, rowValues)) pendingValues.Add(v);
            if (withTokenIds) foreach (var id in tokenIds.Slice(r * context, context)) pendingIds.Add(id);
            if (pendingValues.Count / rowValues == rowsPerBatch || rowsInFile + pendingValues.Count / rowValues == rowsPerFile) Flush();
        }
    }

    /// <summary>Writes the last batch, ends the last file, and writes state.json and dataset_info.json.</summary>
    public void Complete()
    {
        Flush();
        EndFile();
        if (rowsWritten != rows) throw new InvalidOperationException($"{folder}: {rowsWritten} of the {rows} rows written");
        WriteJson(Path.Combine(folder, HfDatasetFolder.StateFile), new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["_data_files"] = names.Select(n => new Dictionary<string, string> { ["filename"] = n }).ToArray(),
            ["_fingerprint"] = Fingerprint(),
            ["_format_columns"] = null,
            ["_format_kwargs"] = new Dictionary<string, object>(),
            ["_format_type"] = null,
            ["_output_all_columns"] = false,
            ["_split"] = null,
        });
        WriteJson(Path.Combine(folder, HfDatasetFolder.InfoFile), new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["citation"] = "", ["description"] = "", ["features"] = features, ["homepage"] = "", ["license"] = "",
        });
    }

    private void Flush()
    {
        var batchRows = pendingValues.Count / (context * d);
        if (batchRows == 0) return;
        if (writer is null)
        {
            var name = $"data-{names.Count:D5}-of-{fileCount:D5}.arrow";
            names.Add(name);
            stream = File.Create(Path.Combine(folder, name));
            writer = new ArrowStreamWriter(stream, schema);
        }
        var leafCount = pendingValues.Count;
        var leafBytes = dtype == "float16"
            ? MemoryMarshal.AsBytes(pendingValues.Select(v => (Half)v).ToArray().AsSpan()).ToArray()
            : MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(pendingValues)).ToArray();
        IArrowArray leafArray = dtype == "float16"
            ? new HalfFloatArray(new ArrowBuffer(leafBytes), ArrowBuffer.Empty, leafCount, 0, 0)
            : new FloatArray(new ArrowBuffer(leafBytes), ArrowBuffer.Empty, leafCount, 0, 0);
        var innerArray = new ListArray(inner, batchRows * context, Offsets(batchRows * context, d), leafArray, ArrowBuffer.Empty);
        var columns = new List<IArrowArray> { new ListArray(outer, batchRows, Offsets(batchRows, context), innerArray, ArrowBuffer.Empty) };
        if (withTokenIds)
        {
            var ids = MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(pendingIds)).ToArray();
            columns.Add(new FixedSizeListArray(tokenType, batchRows,
                new Int32Array(new ArrowBuffer(ids), ArrowBuffer.Empty, batchRows * context, 0, 0), ArrowBuffer.Empty));
        }
        writer.WriteRecordBatch(new RecordBatch(schema, columns, batchRows));
        pendingValues.Clear();
        pendingIds.Clear();
        rowsWritten += batchRows;
        rowsInFile += batchRows;
        if (rowsInFile == rowsPerFile) EndFile();
    }

    private void EndFile()
    {
        if (writer is null) return;
        writer.WriteEnd();
        writer.Dispose();
        stream!.Dispose();
        writer = null;
        stream = null;
        rowsInFile = 0;
    }

    public void Dispose()
    {
        writer?.Dispose();
        stream?.Dispose();
    }

    private static ArrowBuffer Offsets(int lists, int width)
    {
        var offsets = new int[lists + 1];
        for (var i = 0; i <= lists; i++) offsets[i] = i * width;
        return new ArrowBuffer(MemoryMarshal.AsBytes(offsets.AsSpan()).ToArray());
    }

    // datasets' fingerprints are 16 hex digits (an xxhash of the dataset's history); any stable value of that form does.
    private string Fingerprint() =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(
            System.Text.Encoding.UTF8.GetBytes($"{hookName}/{rows}/{context}/{d}/{dtype}")))[..16];

    private static void WriteJson(string path, object value) =>
        File.WriteAllText(path, JsonSerializer.Serialize(value, new JsonSerializerOptions { WriteIndented = true }));
}

public static class SaeLensActivationCache
{
    /// <summary>Writes a whole cache at once: values [rows][context][d] (see <see cref="SaeLensCacheWriter"/>).</summary>
    public static void Write(string folder, string hookName, ReadOnlySpan<float> values, int context, int d, string dtype = "float32",
        ReadOnlySpan<int> tokenIds = default, int rowsPerFile = 1 << 20, int rowsPerBatch = 1000)
    {
        var rows = values.Length / ((long)context * d);
        using var writer = new SaeLensCacheWriter(folder, hookName, context, d, rows, dtype, !tokenIds.IsEmpty, rowsPerFile, rowsPerBatch);
        writer.Append(values, tokenIds);
        writer.Complete();
    }
}
