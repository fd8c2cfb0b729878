namespace NativeEngine.Runner.Formats;

/// <summary>Element types of arrays fed to a model.</summary>
public enum StoredElement { Float32, Float16, BFloat16, Float64, Int64, Int32, Int16, Int8, UInt8, Bool }

/// <summary>
/// An array stored in a .npy or .safetensors file, located but not read: its name (the tensor's, or the file's
/// name without extension for .npy), element type, shape (the first dimension is rows) and where its C-ordered
/// little-endian data starts. Rows are read on demand, so inputs larger than memory work.
/// </summary>
public sealed record StoredArray(string Path, string Name, StoredElement Element, long[] Shape, long DataOffset)
{
    public long Rows => Shape[0];
    public int ElementSize => Element switch
    {
        StoredElement.Float64 or StoredElement.Int64 => 8,
        StoredElement.Float32 or StoredElement.Int32 => 4,
        StoredElement.Float16 or StoredElement.BFloat16 or StoredElement.Int16 => 2,
        _ => 1,
    };

    /// <summary>Bytes of one row (all dimensions after the first).</summary>
    public long RowBytes => Shape.Skip(1).Aggregate((long)ElementSize, (a, b) => a * b);

    /// <summary>Reads rows [first, first + count) into <paramref name="destination"/> (count · RowBytes bytes).</summary>
    public void ReadRows(FileStream stream, long first, long count, Span<byte> destination)
    {
        stream.Position = DataOffset + first * RowBytes;
        stream.ReadExactly(destination[..checked((int)(count * RowBytes))]);
    }

    public static string Describe(StoredElement element) => element.ToString().ToLowerInvariant();
}

public static class StoredArrays
{
    public const string Supported = "float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool";

    /// <summary>The arrays of a .npy file (one) or a .safetensors file (each tensor), each of rank ≥ 1.</summary>
    public static List<StoredArray> Open(string path)
    {
        if (!File.Exists(path)) throw new DataFormatException($"{path}: no such file");
        var extension = System.IO.Path.GetExtension(path).ToLowerInvariant();
        List<StoredArray> arrays;
        if (extension == ".npy")
        {
            var header = Npy.ReadArrayHeader(path);
            var element = header.Descr switch
            {
                "<f4" => StoredElement.Float32,
                "<f2" => StoredElement.Float16,
                "<V2" or "|V2" or "bfloat16" or "<bfloat16" => StoredElement.BFloat16,
                "<f8" => StoredElement.Float64,
                "<i8" => StoredElement.Int64,
                "<i4" => StoredElement.Int32,
                "<i2" => StoredElement.Int16,
                "|i1" => StoredElement.Int8,
                "|u1" => StoredElement.UInt8,
                "|b1" => StoredElement.Bool,
                _ => throw new DataFormatException($"{path}: dtype '{header.Descr}' is not read; supported: {Supported} (little-endian)"),
            };
            arrays = [new StoredArray(path, System.IO.Path.GetFileNameWithoutExtension(path), element, header.Shape, header.DataOffset)];
            Check(arrays[0], header.FileLength - header.DataOffset);
        }
        else if (extension == ".safetensors")
        {
            arrays = [];
            foreach (var entry in SafeTensors.ReadEntries(path))
            {
                var element = entry.DType switch
                {
                    "F32" => StoredElement.Float32,
                    "F16" => StoredElement.Float16,
                    "BF16" => StoredElement.BFloat16,
                    "F64" => StoredElement.Float64,
                    "I64" => StoredElement.Int64,
                    "I32" => StoredElement.Int32,
                    "I16" => StoredElement.Int16,
                    "I8" => StoredElement.Int8,
                    "U8" => StoredElement.UInt8,
                    "BOOL" => StoredElement.Bool,
                    _ => throw new DataFormatException($"{path}: tensor {entry.Name} has dtype {entry.DType}; supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL"),
                };
                var array = new StoredArray(path, entry.Name, element, entry.Shape, entry.DataOffset);
                Check(array, entry.DataLength);
                arrays.Add(array);
            }
        }
        else throw new DataFormatException($"{path}: inputs are read from .npy or .safetensors files");
        return arrays;
    }

    private static void Check(StoredArray array, long bytesAvailable)
    {
        if (array.Shape.Length == 0)
            throw new DataFormatException($"{array.Path}: {array.Name} is a scalar; inputs have rows (their first dimension)");
        if (array.Shape.Any(s => s < 0))
            throw new DataFormatException($"{array.Path}: {array.Name} has shape [{string.Join(", ", array.Shape)}]");
        var needed = array.Rows * array.RowBytes;
        if (needed > bytesAvailable)
            throw new DataFormatException($"{array.Path}: truncated data: {array.Name} of shape [{string.Join(", ", array.Shape)}] needs {needed} bytes, " +
                                          $"the file has {bytesAvailable}");
    }
}
