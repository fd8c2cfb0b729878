using System.IO.MemoryMappedFiles;
using System.Text.Json;
using Apache.Arrow;
using Apache.Arrow.Types;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Data;

/// <summary>
/// One column of an Arrow IPC stream file (a Hugging Face datasets / SAELens cache file) as a memory-mapped shard.
/// The column is a list of floats at any depth: datasets' Array2D (list&lt;list&lt;float&gt;&gt; under an extension type),
/// Sequence/List (list or fixed_size_list), nested or not. Its innermost lists are the tokens, d values each; every
/// outer level is flattened, so a row of shape (context_size, d_in) is context_size tokens. In each record batch
/// the innermost lists are consecutive, so their values form one contiguous block of the file, read in place like
/// an .npy shard's. Leaves: float32, float16, or 16-bit integers holding bfloat16 bits when asked (Arrow has no
/// bfloat16 type; datasets widens torch bfloat16 to float32).
/// </summary>
public sealed class ArrowShard : IActivationShard
{
    public const string SupportedTypes = "lists (at any depth: Array2D, Sequence, list, fixed_size_list) of float32 or float16, " +
                                         "or of uint16/int16 holding bfloat16 bits with \"dtype\": \"bfloat16\"";

    private readonly MemoryMappedFile map;
    private readonly MemoryMappedViewAccessor view;
    private readonly long[] batchStart;     // [batches + 1] first token of each batch
    private readonly long[] valuesOffset;   // [batches] file offset of each batch's first token
    private readonly int elementSize;

    public string Path { get; }
    public string Column { get; }
    public long Tokens { get; }
    public int D { get; }
    public ActivationDType DType { get; }

    private ArrowShard(string path, string column, MemoryMappedFile map, MemoryMappedViewAccessor view, long[] batchStart, long[] valuesOffset,
        int d, ActivationDType dtype)
    {
        Path = path;
        Column = column;
        this.map = map;
        this.view = view;
        this.batchStart = batchStart;
        this.valuesOffset = valuesOffset;
        Tokens = batchStart[^1];
        D = d;
        DType = dtype;
        elementSize = dtype.Size();
    }

    private enum LevelKind { List, LargeList, FixedSizeList }

    private readonly record struct Level(LevelKind Kind, int Size);

    /// <summary>Opens column <paramref name="column"/> (null: the file's only float-list column).</summary>
    /// <param name="bfloat16Bits">Read 16-bit integer leaves as bfloat16 bits.</param>
    /// <param name="expectedD">d from dataset_info.json, checked against the file (and used when the file does not fix it).</param>
    public static ArrowShard Open(string path, string? column, bool bfloat16Bits = false, long? expectedD = null)
    {
        var layout = ArrowIpcStream.ReadLayout(path);
        var fields = layout.Schema.FieldsList;
        var described = string.Join(", ", fields.Select(f => $"\"{f.Name}\" ({Describe(f.DataType)})"));
        int index;
        if (column is null)
        {
            var candidates = Enumerable.Range(0, fields.Count).Where(i => LeafOf(fields[i].DataType, out _) is { } leaf && IsActivationLeaf(leaf, bfloat16Bits)).ToList();
            if (candidates.Count != 1)
                throw new DataFormatException(candidates.Count == 0
                    ? $"{path}: no column holds {SupportedTypes}; the columns are {described}"
                    : $"{path}: several columns could be activations ({string.Join(", ", candidates.Select(i => fields[i].Name))}); name one with \"column\"");
            index = candidates[0];
        }
        else
        {
            index = fields.Select(f => f.Name).ToList().IndexOf(column);
            if (index < 0) throw new DataFormatException($"{path}: no column \"{column}\"; the columns are {described}");
        }
        var field = fields[index];
        var name = field.Name;

        var levels = new List<Level>();
        var type = field.DataType;
        while (true)
        {
            if (type is FixedSizeListType f) { levels.Add(new Level(LevelKind.FixedSizeList, f.ListSize)); type = f.ValueDataType; }
            else if (type is LargeListType l) { levels.Add(new Level(LevelKind.LargeList, 0)); type = l.ValueDataType; }
            else if (type is ListType t) { levels.Add(new Level(LevelKind.List, 0)); type = t.ValueDataType; }
            else break;
        }
        ActivationDType dtype;
        if (levels.Count == 0 || !IsActivationLeaf(type, bfloat16Bits))
            throw new DataFormatException($"{path}: column \"{name}\" is {Describe(field.DataType)}; expected {SupportedTypes}");
        if (type is FloatType) dtype = ActivationDType.F32;
        else if (type is HalfFloatType) dtype = ActivationDType.F16;
        else dtype = ActivationDType.BF16;

        // d: fixed by an innermost fixed_size_list, by the Array2D extension's shape, or by dataset_info.json.
        long? d = levels[^1].Kind == LevelKind.FixedSizeList ? levels[^1].Size : null;
        if (ExtensionShape(field) is { Length: > 0 } shape && shape[^1] > 0)
        {
            if (d is { } fixedD && fixedD != shape[^1])
                throw new DataFormatException($"{path}: column \"{name}\" has lists of {fixedD} values, but its extension metadata says shape ({string.Join(", ", shape)})");
            d = shape[^1];
        }
        if (expectedD is { } wanted)
        {
            if (d is { } known && known != wanted)
                throw new DataFormatException($"{path}: column \"{name}\" has d = {known}, but {HfDatasetFolder.InfoFile} says {wanted}");
            d ??= wanted;
        }

        var (nodeIndex, bufferIndex) = (0, 0);
        for (var i = 0; i < index; i++)
        {
            var (nodes, buffers) = Size(fields[i].DataType, path, fields[i].Name);
            nodeIndex += nodes;
            bufferIndex += buffers;
        }

        MemoryMappedFile map;
        MemoryMappedViewAccessor view;
        try
        {
            map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new DataFormatException($"{path}: cannot be memory-mapped: {e.Message}", e);
        }
        try
        {
            var starts = new long[layout.Batches.Count + 1];
            var offsets = new long[layout.Batches.Count];
            for (var b = 0; b < layout.Batches.Count; b++)
            {
                var (first, tokens, width) = Locate(view, layout.Batches[b], levels, nodeIndex, bufferIndex, d, dtype, path, name, b);
                if (tokens > 0) d ??= width;
                offsets[b] = first;
                starts[b + 1] = starts[b] + tokens;
            }
            if (d is null)
                throw new DataFormatException($"{path}: column \"{name}\" holds no tokens, so its d is unknown");
            if (d > int.MaxValue) throw new DataFormatException($"{path}: column \"{name}\" has d = {d}; at most {int.MaxValue}");
            return new ArrowShard(path, name, map, view, starts, offsets, (int)d.Value, dtype);
        }
        catch
        {
            view.Dispose();
            map.Dispose();
            throw;
        }
    }

    /// <summary>Follows the column down its list levels in one record batch: the file offset of its first token's
    /// values, how many tokens, and their width (checked against <paramref name="d"/> when known).</summary>
    private static (long Offset, long Tokens, long Width) Locate(MemoryMappedViewAccessor view, ArrowBatchLayout batch, List<Level> levels,
        int nodeIndex, int bufferIndex, long? d, ActivationDType dtype, string path, string column, int batchNumber)
    {
        string Where() => $"{path}: column \"{column}\", record batch {batchNumber}";
        if (nodeIndex + levels.Count >= batch.Nodes.Length)
            throw new DataFormatException($"{Where()}: {batch.Nodes.Length} field nodes, fewer than the schema needs");
        for (var j = 0; j <= levels.Count; j++)
            if (batch.Nodes[nodeIndex + j].NullCount != 0)
                throw new DataFormatException($"{Where()}: {batch.Nodes[nodeIndex + j].NullCount} null values at depth {j}; activations must be complete");
        ArrowBodyBuffer BufferAt(int i) => i < batch.Buffers.Length ? batch.Buffers[i]
            : throw new DataFormatException($"{Where()}: {batch.Buffers.Length} buffers, fewer than the schema needs");

        // [start, end): the lists of the current level this batch's rows cover.
        long start = 0, end = batch.Rows;
        var buffer = bufferIndex;
        for (var j = 0; ; j++)
        {
            var level = levels[j];
            var childLength = batch.Nodes[nodeIndex + j + 1].Length;
            Func<long, long> offset;
            if (level.Kind == LevelKind.FixedSizeList)
            {
                offset = i => i * level.Size;
                buffer += 1;
            }
            else
            {
                var offsets = BufferAt(buffer + 1);
                var size = level.Kind == LevelKind.LargeList ? 8 : 4;
                if (end > start && (end + 1) * size > offsets.Length)
                    throw new DataFormatException($"{Where()}: the list offsets at depth {j} hold {offsets.Length} bytes, too few for {end} lists");
                offset = size == 8 ? i => view.ReadInt64(offsets.Offset + 8 * i) : i => view.ReadInt32(offsets.Offset + 4 * i);
                buffer += 2;
            }
            if (end == start) return (0, 0, d ?? -1);
            long childStart = offset(start), childEnd = offset(end);
            if (childStart < 0 || childEnd < childStart || childEnd > childLength)
                throw new DataFormatException($"{Where()}: list offsets at depth {j} point to [{childStart}, {childEnd}), outside the {childLength} values below");
            if (j < levels.Count - 1)
            {
                (start, end) = (childStart, childEnd);
                continue;
            }

            // The innermost lists are the tokens: each must hold d values.
            var width = d ?? offset(start + 1) - childStart;
            if (width < 1) throw new DataFormatException($"{Where()}: tokens of {width} values; activations need d >= 1");
            if (level.Kind == LevelKind.FixedSizeList)
            {
                if (level.Size != width) throw new DataFormatException($"{Where()}: tokens of {level.Size} values, not d = {width}");
            }
            else
            {
                var previous = childStart;
                for (var i = start + 1; i <= end; i++)
                {
                    var next = offset(i);
                    if (next - previous != width)
                        throw new DataFormatException($"{Where()}: token {i - 1 - start} has {next - previous} values, not d = {width}");
                    previous = next;
                }
            }
            var values = BufferAt(buffer + 1);
            if (childEnd * dtype.Size() > values.Length)
                throw new DataFormatException($"{Where()}: the values buffer holds {values.Length} bytes, too few for values [{childStart}, {childEnd})");
            return (values.Offset + childStart * dtype.Size(), end - start, width);
        }
    }

    public void Read(long firstToken, Span<float> destination)
    {
        if (destination.Length % D != 0)
            throw new ArgumentException($"{Path}: destination holds {destination.Length} values, not a multiple of d = {D}");
        long count = destination.Length / D;
        if (firstToken < 0 || firstToken + count > Tokens)
            throw new ArgumentOutOfRangeException(nameof(firstToken), $"{Path}: tokens [{firstToken}, {firstToken + count}) outside [0, {Tokens})");
        var batch = System.Array.BinarySearch(batchStart, firstToken);
        if (batch < 0) batch = ~batch - 1;
        var token = firstToken;
        var done = 0;
        while (done < count)
        {
            while (batchStart[batch + 1] <= token) batch++; // skip empty batches
            var run = (int)Math.Min(count - done, batchStart[batch + 1] - token);
            var offset = valuesOffset[batch] + (token - batchStart[batch]) * D * elementSize;
            MappedActivationShard.ReadValues(view.SafeMemoryMappedViewHandle, (ulong)offset, DType, destination.Slice(done * D, run * D));
            done += run;
            token += run;
        }
    }

    public void Dispose()
    {
        view.Dispose();
        map.Dispose();
    }

    private static bool IsActivationLeaf(IArrowType leaf, bool bfloat16Bits) =>
        bfloat16Bits ? leaf is UInt16Type or Int16Type : leaf is FloatType or HalfFloatType;

    // The leaf under any list levels, and how many levels (0: not a list).
    private static IArrowType? LeafOf(IArrowType type, out int depth)
    {
        depth = 0;
        while (type is ListType or LargeListType or FixedSizeListType)
        {
            type = type switch
            {
                ListType l => l.ValueDataType,
                LargeListType l => l.ValueDataType,
                FixedSizeListType f => f.ValueDataType,
                _ => type,
            };
            depth++;
        }
        return depth == 0 ? null : type;
    }

    // The shape in datasets' ArrayXD extension metadata: "[[context, d], \"float32\"]" (null dims: -1).
    private static long[]? ExtensionShape(Field field)
    {
        if (field.Metadata is null || !field.Metadata.TryGetValue("ARROW:extension:metadata", out var text)) return null;
        try
        {
            using var json = JsonDocument.Parse(text);
            if (json.RootElement.ValueKind != JsonValueKind.Array || json.RootElement.GetArrayLength() < 1 ||
                json.RootElement[0].ValueKind != JsonValueKind.Array)
                return null;
            return json.RootElement[0].EnumerateArray().Select(v => v.ValueKind == JsonValueKind.Number ? v.GetInt64() : -1).ToArray();
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Field nodes and buffers a field of this type takes in a record batch (the Arrow columnar format's layouts).</summary>
    private static (int Nodes, int Buffers) Size(IArrowType type, string path, string name)
    {
        switch (type.TypeId)
        {
            case ArrowTypeId.Null:
                return (1, 0);
            case ArrowTypeId.String or ArrowTypeId.Binary or ArrowTypeId.LargeString or ArrowTypeId.LargeBinary:
                return (1, 3);
            case ArrowTypeId.Struct or ArrowTypeId.List or ArrowTypeId.LargeList or ArrowTypeId.Map or ArrowTypeId.FixedSizeList:
                var own = type.TypeId switch { ArrowTypeId.Struct or ArrowTypeId.FixedSizeList => 1, _ => 2 };
                var (nodes, buffers) = (1, own);
                foreach (var child in ((NestedType)type).Fields)
                {
                    var (n, b) = Size(child.DataType, path, name);
                    nodes += n;
                    buffers += b;
                }
                return (nodes, buffers);
            case ArrowTypeId.Union or ArrowTypeId.ListView or ArrowTypeId.LargeListView or ArrowTypeId.StringView or ArrowTypeId.BinaryView
                or ArrowTypeId.RunEndEncoded:
                throw new DataFormatException($"{path}: column \"{name}\" ({Describe(type)}) comes before the activations and has a layout not read here; " +
                                              "put the activation column first or drop that column (dataset.select_columns)");
            default:
                return (1, 2); // validity and values (dictionary-encoded columns: their indices)
        }
    }

    private static string Describe(IArrowType type) => type switch
    {
        FixedSizeListType f => $"fixed_size_list<{Describe(f.ValueDataType)}>[{f.ListSize}]",
        LargeListType l => $"large_list<{Describe(l.ValueDataType)}>",
        ListType l => $"list<{Describe(l.ValueDataType)}>",
        StructType s => $"struct<{string.Join(", ", s.Fields.Select(f => $"{f.Name}: {Describe(f.DataType)}"))}>",
        FloatType => "float32",
        HalfFloatType => "float16",
        DoubleType => "float64",
        _ => type.Name,
    };
}
