using System.Buffers.Binary;
using System.Text.Json;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Data;

/// <summary>
/// A 2-D tensor [tokens][d] of dtype F32, F16 or BF16 inside a .safetensors file (8-byte little-endian header
/// length, JSON header, data), memory-mapped in place.
/// </summary>
public static class SafeTensorsShard
{
    public const string SupportedDTypes = "F32, F16, BF16";

    /// <summary>Opens tensor <paramref name="tensor"/>; without a name the file must hold exactly one tensor.</summary>
    public static IActivationShard Open(string path, string? tensor)
    {
        long fileLength;
        byte[] headerBytes;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            fileLength = stream.Length;
            if (fileLength < 8)
                throw new DataFormatException($"{path}: truncated header: expected an 8-byte header length at offset 0, the file has {fileLength} bytes");
            Span<byte> length = stackalloc byte[8];
            stream.ReadExactly(length);
            var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(length);
            if (headerLength > (ulong)(fileLength - 8))
                throw new DataFormatException($"{path}: truncated header: expected {headerLength} header bytes at offset 8, the file has {fileLength} bytes");
            if (headerLength > 100_000_000)
                throw new DataFormatException($"{path}: header length {headerLength} at offset 0 is not plausible (over 100 MB); not a safetensors file?");
            headerBytes = new byte[headerLength];
            stream.ReadExactly(headerBytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException($"{path}: cannot be read: {e.Message}", e);
        }

        JsonDocument header;
        try { header = JsonDocument.Parse(headerBytes); }
        catch (JsonException e)
        {
            throw new DataFormatException($"{path}: header not parseable: the JSON at offset 8 fails at byte {8 + (e.BytePositionInLine ?? 0)} of line {(e.LineNumber ?? 0) + 1}: {e.Message}", e);
        }
        using (header)
        {
            if (header.RootElement.ValueKind != JsonValueKind.Object)
                throw new DataFormatException($"{path}: header at offset 8 is not a JSON object");
            var names = header.RootElement.EnumerateObject().Select(e => e.Name).Where(n => n != "__metadata__").ToList();
            if (tensor is null)
            {
                if (names.Count != 1)
                    throw new DataFormatException($"{path}: holds {names.Count} tensors ({string.Join(", ", names)}); name the one to read");
                tensor = names[0];
            }
            if (!header.RootElement.TryGetProperty(tensor, out var entry) || tensor == "__metadata__")
                throw new DataFormatException($"{path}: no tensor '{tensor}'; it holds {string.Join(", ", names)}");
            try
            {
                var dtypeName = entry.GetProperty("dtype").GetString();
                ActivationDType dtype = dtypeName switch
                {
                    "F32" => ActivationDType.F32,
                    "F16" => ActivationDType.F16,
                    "BF16" => ActivationDType.BF16,
                    _ => throw new DataFormatException($"{path}: tensor '{tensor}' has dtype {dtypeName}; supported: {SupportedDTypes}"),
                };
                var shape = entry.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                if (shape.Length != 2)
                    throw new DataFormatException($"{path}: tensor '{tensor}' has shape [{string.Join(", ", shape)}], rank {shape.Length}; activations are 2-D [tokens, d]");
                if (shape[1] is < 1 or > int.MaxValue || shape[0] < 0)
                    throw new DataFormatException($"{path}: tensor '{tensor}' has shape [{shape[0]}, {shape[1]}]: d must be between 1 and {int.MaxValue}");
                if (shape[0] > long.MaxValue / 4 / shape[1])
                    throw new DataFormatException($"{path}: tensor '{tensor}' has shape [{shape[0]}, {shape[1]}], too large to be a file");
                var offsets = entry.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                if (offsets.Length != 2 || offsets[0] < 0)
                    throw new DataFormatException($"{path}: tensor '{tensor}' data_offsets [{string.Join(", ", offsets)}] are not [begin, end]");
                var dataStart = 8 + headerBytes.LongLength;
                var expected = shape[0] * shape[1] * MappedActivationShard.SizeOf(dtype);
                if (offsets[1] - offsets[0] != expected)
                    throw new DataFormatException($"{path}: tensor '{tensor}' data_offsets [{offsets[0]}, {offsets[1]}] span {offsets[1] - offsets[0]} bytes, its shape and dtype need {expected}");
                if (dataStart + offsets[1] > fileLength)
                    throw new DataFormatException($"{path}: truncated data: tensor '{tensor}' expects {expected} bytes from offset {dataStart + offsets[0]}, " +
                                                  $"the file has {Math.Max(0, fileLength - dataStart - offsets[0])} bytes there (ends at offset {fileLength})");
                return new MappedActivationShard(path, dataStart + offsets[0], shape[0], (int)shape[1], dtype);
            }
            catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new DataFormatException($"{path}: header not parseable: tensor '{tensor}' needs dtype, shape and data_offsets: {e.Message}", e);
            }
        }
    }
}
