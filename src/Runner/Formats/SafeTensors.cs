using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace NativeEngine.Runner.Formats;

/// <summary>A named float32 tensor.</summary>
public sealed record Tensor(string Name, long[] Shape, float[] Data);

/// <summary>
/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping each name to
/// {dtype, shape, data_offsets} (plus optional "__metadata__" of strings), then the raw little-endian data.
/// </summary>
public static class SafeTensors
{
    public static void Write(string path, IReadOnlyList<Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
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
                w.WriteString("dtype", "F32");
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                offset += 4L * t.Data.Length;
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
                var bytes = new byte[4L * t.Data.Length];
                for (var k = 0; k < t.Data.Length; k++)
                    BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * k), t.Data[k]);
                stream.Write(bytes);
            }
        });
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

    /// <summary>Reads every F32 tensor and the metadata; errors name the file and what is malformed.</summary>
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
            if (dtype != "F32") throw new InvalidDataException($"{path}: tensor {entry.Name} has dtype {dtype}; only F32 is read here");
            var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var offsets = entry.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var count = shape.Aggregate(1L, (a, b) => a * b);
            if (offsets[1] - offsets[0] != 4 * count || dataStart + offsets[1] > bytes.Length)
                throw new InvalidDataException($"{path}: tensor {entry.Name} data_offsets [{offsets[0]}, {offsets[1]}] do not fit shape or file");
            var data = new float[count];
            for (var k = 0; k < count; k++)
                data[k] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)(dataStart + offsets[0] + 4 * k)));
            tensors.Add(new Tensor(entry.Name, shape, data));
        }
        return (tensors, metadata);
    }
}
