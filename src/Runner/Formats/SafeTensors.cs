using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace NativeEngine.Runner.Formats;

/// <summary>A named float32 tensor.</summary>
public sealed record Tensor(string Name, long[] Shape, float[] Data);

/// <summary>A tensor of a .safetensors file located but not read: its dtype name (F32, I64, ...), shape, and the
/// absolute byte range of its data.</summary>
public sealed record SafeTensorsEntry(string Name, string DType, long[] Shape, long DataOffset, long DataLength);

/// <summary>
/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping each name to
/// {dtype, shape, data_offsets} (plus optional "__metadata__" of strings), then the raw little-endian data.
/// </summary>
public static class SafeTensors
{
    /// <param name="dtype">"F32", or "F16" / "BF16" (rounded to nearest even) for files as other tools save them.</param>
    public static void Write(string path, IReadOnlyList<Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        string dtype = "F32")
    {
        var size = dtype switch
        {
            "F32" => 4,
            "F16" or "BF16" => 2,
            _ => throw new ArgumentException($"dtype {dtype}; writable: F32, F16, BF16"),
        };
        using var header = new MemoryStream();
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata) w.WriteString(key, value);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in tensors)
            {
                var expected = t.Shape.Aggregate(1L, (a, b) => a * b);
                if (expected != t.Data.Length)
                    throw new ArgumentException($"tensor {t.Name}: shape [{string.Join(", ", t.Shape)}] holds {expected} values, data has {t.Data.Length}");
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", dtype);
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                offset += (long)size * t.Data.Length;
                w.WriteNumberValue(offset);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        // Pad the header with spaces to a multiple of 8 so the data is aligned.
        var headerBytes = header.ToArray().ToList();
        while (headerBytes.Count % 8 != 0) headerBytes.Add((byte)' ');

        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)headerBytes.Count);
            stream.Write(length);
            stream.Write(headerBytes.ToArray());
            foreach (var t in tensors)
            {
                var bytes = new byte[(long)size * t.Data.Length];
                for (var k = 0; k < t.Data.Length; k++)
                {
                    var value = t.Data[k];
                    if (dtype == "F32") BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * k), value);
                    else if (dtype == "F16") BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(2 * k), (Half)value);
                    else BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * k), ToBFloat16(value));
                }
                stream.Write(bytes);
            }
        });
    }

    // Round to nearest even on the 16 dropped bits; NaN stays a (quiet) NaN.
    private static ushort ToBFloat16(float value)
    {
        var bits = (uint)BitConverter.SingleToInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    /// <summary>The tensor <paramref name="name"/> of a file read by <see cref="Read"/>, checked against the shape its
    /// config gives; errors name the file, the tensor and both shapes.</summary>
    public static float[] Require(IReadOnlyList<Tensor> tensors, string path, string name, long[] shape, string holds)
    {
        var t = tensors.FirstOrDefault(t => t.Name == name)
                ?? throw new DataFormatException($"{path}: no tensor \"{name}\"; {holds}");
        if (!t.Shape.SequenceEqual(shape))
            throw new DataFormatException($"{path}: {name} has shape [{string.Join(", ", t.Shape)}]; config.json says " +
                                              $"[{string.Join(", ", shape)}]");
        return t.Data;
    }

    /// <summary>Every tensor's header entry, of any dtype, checked to lie inside the file.</summary>
    public static List<SafeTensorsEntry> ReadEntries(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            Span<byte> prefix = stackalloc byte[8];
            if (stream.Length < 8) throw new DataFormatException($"{path}: {stream.Length} bytes, too short for a safetensors header");
            stream.ReadExactly(prefix);
            var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (headerLength > (ulong)(stream.Length - 8) || headerLength > 100_000_000)
                throw new DataFormatException($"{path}: header length {headerLength} at offset 0 does not fit the file ({stream.Length} bytes); not a safetensors file?");
            var bytes = new byte[headerLength];
            stream.ReadExactly(bytes);
            using var header = JsonDocument.Parse(bytes);
            var dataStart = 8 + (long)headerLength;
            var entries = new List<SafeTensorsEntry>();
            foreach (var entry in header.RootElement.EnumerateObject())
            {
                if (entry.Name == "__metadata__") continue;
                var dtype = entry.Value.GetProperty("dtype").GetString() ?? "";
                var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                var offsets = entry.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0] || dataStart + offsets[1] > stream.Length)
                    throw new DataFormatException($"{path}: tensor {entry.Name} data_offsets [{string.Join(", ", offsets)}] do not lie inside the file");
                entries.Add(new SafeTensorsEntry(entry.Name, dtype, shape, dataStart + offsets[0], offsets[1] - offsets[0]));
            }
            return entries;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new DataFormatException($"{path}: header not parseable: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException($"{path}: cannot be read: {e.Message}", e);
        }
    }

    /// <summary>Element types <see cref="Read"/> accepts, widened (or, for F64, rounded) to float32.</summary>
    public const string ReadableDTypes = "F32, F16, BF16, F64";

    /// <summary>Reads every tensor (F32, F16, BF16 or F64, as float32) and the metadata; errors name the file and
    /// what is malformed.</summary>
    public static (List<Tensor> Tensors, Dictionary<string, string> Metadata) Read(string path)
    {
        try
        {
            return ReadHeaderAndData(path);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException
                                      or ArgumentOutOfRangeException or OverflowException or FormatException)
        {
            // A header that is not the JSON the format defines (missing keys, wrong types, offsets outside the data).
            throw new InvalidDataException($"{path}: not a valid safetensors file ({e.Message})", e);
        }
    }

    private static (List<Tensor> Tensors, Dictionary<string, string> Metadata) ReadHeaderAndData(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 8) throw new InvalidDataException($"{path}: {bytes.Length} bytes, too short for a safetensors header");
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > (ulong)(bytes.Length - 8))
            throw new InvalidDataException($"{path}: header length {headerLength} at offset 0 exceeds the file size {bytes.Length}");
        using var header = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
        var dataStart = 8 + (long)headerLength;
        var tensors = new List<Tensor>();
        var metadata = new Dictionary<string, string>();
        foreach (var entry in header.RootElement.EnumerateObject())
        {
            if (entry.Name == "__metadata__")
            {
                foreach (var kv in entry.Value.EnumerateObject()) metadata[kv.Name] = kv.Value.GetString() ?? "";
                continue;
            }
            var dtype = entry.Value.GetProperty("dtype").GetString();
            var size = dtype switch
            {
                "F32" => 4,
                "F16" or "BF16" => 2,
                "F64" => 8,
                _ => throw new InvalidDataException($"{path}: tensor {entry.Name} has dtype {dtype}; readable: {ReadableDTypes}"),
            };
            var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var offsets = entry.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var count = shape.Aggregate(1L, (a, b) => a * b);
            if (offsets[1] - offsets[0] != size * count || dataStart + offsets[1] > bytes.Length)
                throw new InvalidDataException($"{path}: tensor {entry.Name} data_offsets [{offsets[0]}, {offsets[1]}] do not fit its {dtype} shape or the file");
            var data = new float[count];
            var raw = bytes.AsSpan((int)(dataStart + offsets[0]), (int)(size * count));
            switch (dtype)
            {
                case "F32":
                    for (var k = 0; k < count; k++) data[k] = BinaryPrimitives.ReadSingleLittleEndian(raw[(4 * k)..]);
                    break;
                case "F16":
                    for (var k = 0; k < count; k++) data[k] = (float)BinaryPrimitives.ReadHalfLittleEndian(raw[(2 * k)..]);
                    break;
                case "BF16":  // the upper half of a float32
                    for (var k = 0; k < count; k++)
                        data[k] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(raw[(2 * k)..]) << 16);
                    break;
                default:
                    for (var k = 0; k < count; k++) data[k] = (float)BinaryPrimitives.ReadDoubleLittleEndian(raw[(8 * k)..]);
                    break;
            }
            tensors.Add(new Tensor(entry.Name, shape, data));
        }
        return (tensors, metadata);
    }
}
