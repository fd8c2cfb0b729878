using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace NativeEngine.Runner.Formats;

/// <summary>The header of a 2-D .npy file: where the data starts, its shape and element type.</summary>
public sealed record NpyHeader(int Major, int Minor, string Descr, long Tokens, int D, ActivationDType DType, long DataOffset);

/// <summary>The header of a .npy array of any rank: its descr, shape, where the data starts and the file's length.</summary>
public sealed record NpyArrayHeader(string Descr, long[] Shape, long DataOffset, long FileLength);

/// <summary>
/// NumPy's .npy format (versions 1.0, 2.0 and 3.0): the magic "\x93NUMPY", a major and a minor version byte, the
/// header length (uint16 for 1.0, uint32 for 2.0 and 3.0), then a Python dict literal such as
/// <c>{'descr': '&lt;f4', 'fortran_order': False, 'shape': (1024, 768), }</c> and the raw data.
/// Activations are a C-ordered (tokens, d) array of '&lt;f4', '&lt;f2' or bfloat16. NumPy has no bfloat16 of its
/// own: an array of ml_dtypes' bfloat16 is saved by np.save with descr '&lt;V2' (a 2-byte opaque type), which is
/// therefore read as bfloat16, as is the descr 'bfloat16' some writers use. Any other descr is refused.
/// </summary>
public static class Npy
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];
    public const string SupportedDescrs = "'<f4' (float32), '<f2' (float16), '<V2', '|V2' or 'bfloat16' (bfloat16)";

    /// <summary>Reads and checks the header, and that the file holds all the data the header promises.</summary>
    public static NpyHeader ReadHeader(string path)
    {
        var (header, major, minor, dataOffset, fileLength) = ReadDict(path);
        return Check(path, header, major, minor, dataOffset, fileLength);
    }

    /// <summary>The header of an array of any rank and simple dtype (its descr as written, e.g. '&lt;i8'), checked to
    /// be C-ordered and to fit in the file: model inputs, where activations are 2-D floats.</summary>
    public static NpyArrayHeader ReadArrayHeader(string path)
    {
        var (header, _, _, dataOffset, fileLength) = ReadDict(path);
        if (!header.TryGetValue("descr", out var d) || d is not string descr)
            throw new DataFormatException($"{path}: 'descr' is missing or not a string (structured dtypes are not read)");
        if (header.GetValueOrDefault("fortran_order") is true)
            throw new DataFormatException($"{path}: fortran_order is True; save np.ascontiguousarray(x)");
        if (header.GetValueOrDefault("shape") is not long[] shape)
            throw new DataFormatException($"{path}: 'shape' is missing or not a tuple of integers");
        return new NpyArrayHeader(descr, shape, dataOffset, fileLength);
    }

    private static (Dictionary<string, object> Header, int Major, int Minor, long DataOffset, long FileLength) ReadDict(string path)
    {
        long fileLength;
        byte[] prefix;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            fileLength = stream.Length;
            prefix = new byte[(int)Math.Min(fileLength, 12)];
            stream.ReadExactly(prefix);
            if (prefix.Length < 8 || !prefix.AsSpan(0, 6).SequenceEqual(Magic))
                throw new DataFormatException($"{path}: not a .npy file: expected the magic \\x93NUMPY at offset 0" +
                                              $" and a version at offset 6, found {Describe(prefix)}");
            int major = prefix[6], minor = prefix[7];
            if (major is not (1 or 2 or 3))
                throw new DataFormatException($"{path}: .npy version {major}.{minor} at offset 6; versions 1.0, 2.0 and 3.0 are read");
            var lengthSize = major == 1 ? 2 : 4;
            if (prefix.Length < 8 + lengthSize)
                throw new DataFormatException($"{path}: truncated header: expected a {lengthSize}-byte header length at offset 8, the file has {fileLength} bytes");
            long headerLength = major == 1
                ? BinaryPrimitives.ReadUInt16LittleEndian(prefix.AsSpan(8))
                : BinaryPrimitives.ReadUInt32LittleEndian(prefix.AsSpan(8));
            long headerStart = 8 + lengthSize;
            if (headerStart + headerLength > fileLength)
                throw new DataFormatException($"{path}: truncated header: expected {headerLength} header bytes at offset {headerStart}, the file has {fileLength} bytes");
            var text = new byte[headerLength];
            stream.Position = headerStart;
            stream.ReadExactly(text);
            var encoding = major == 3 ? Encoding.UTF8 : Encoding.Latin1;
            return (ParseDict(path, encoding.GetString(text), headerStart), major, minor, headerStart + headerLength, fileLength);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException($"{path}: cannot be read: {e.Message}", e);
        }
    }

    private static NpyHeader Check(string path, Dictionary<string, object> header, int major, int minor, long dataOffset, long fileLength)
    {
        object Get(string key) => header.TryGetValue(key, out var v) ? v
            : throw new DataFormatException($"{path}: header at offset {(major == 1 ? 10 : 12)} has no '{key}'");
        if (Get("descr") is not string descr)
            throw new DataFormatException($"{path}: 'descr' is not a string; structured dtypes are not activations. Supported: {SupportedDescrs}");
        ActivationDType dtype = descr switch
        {
            "<f4" => ActivationDType.F32,
            "<f2" => ActivationDType.F16,
            "<V2" or "|V2" or "bfloat16" or "<bfloat16" => ActivationDType.BF16,
            _ => throw new DataFormatException($"{path}: dtype '{descr}' is not supported; supported: {SupportedDescrs}"),
        };
        if (Get("fortran_order") is not bool fortran)
            throw new DataFormatException($"{path}: 'fortran_order' is not True or False");
        if (fortran)
            throw new DataFormatException($"{path}: fortran_order is True; activations must be C-ordered (tokens, d): save np.ascontiguousarray(x)");
        if (Get("shape") is not long[] shape)
            throw new DataFormatException($"{path}: 'shape' is not a tuple of integers");
        if (shape.Length != 2)
            throw new DataFormatException($"{path}: shape ({string.Join(", ", shape)}) has rank {shape.Length}; activations are 2-D (tokens, d)");
        if (shape[1] is < 1 or > int.MaxValue)
            throw new DataFormatException($"{path}: shape ({shape[0]}, {shape[1]}): d must be between 1 and {int.MaxValue}");
        if (shape[0] > long.MaxValue / 4 / shape[1])
            throw new DataFormatException($"{path}: shape ({shape[0]}, {shape[1]}) is too large to be a file");
        var expected = shape[0] * shape[1] * dtype.Size();
        if (dataOffset + expected > fileLength)
            throw new DataFormatException($"{path}: truncated data: the header promises {expected} bytes ({shape[0]} × {shape[1]} × {descr}) from offset {dataOffset}, " +
                                          $"the file has {fileLength - dataOffset} bytes there (ends at offset {fileLength})");
        return new NpyHeader(major, minor, descr, shape[0], (int)shape[1], dtype, dataOffset);
    }

    /// <summary>The header written for a C-ordered float32 array (tokens, d), padded to a multiple of 64 bytes.</summary>
    public static byte[] HeaderBytes(long tokens, int d, string descr = "<f4")
    {
        var dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({tokens.ToString(CultureInfo.InvariantCulture)}, {d.ToString(CultureInfo.InvariantCulture)}), }}";
        // Version 1.0 while the header length fits in 16 bits, which it always does for a 2-D shape.
        var unpadded = 10 + dict.Length + 1;
        var padding = (64 - unpadded % 64) % 64;
        var text = dict + new string(' ', padding) + "\n";
        var bytes = new byte[10 + text.Length];
        Magic.CopyTo(bytes, 0);
        bytes[6] = 1;
        bytes[7] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)text.Length);
        Encoding.Latin1.GetBytes(text, bytes.AsSpan(10));
        return bytes;
    }

    /// <summary>A 2-D float32 array [rows][columns] as .npy ('&lt;f4'), written atomically.</summary>
    public static void WriteF32(string path, ReadOnlySpan<float> data, int columns) =>
        Write(path, System.Runtime.InteropServices.MemoryMarshal.AsBytes(data), data.Length / columns, columns, "<f4");

    /// <summary>A 2-D int32 array [rows][columns] as .npy ('&lt;i4'), written atomically.</summary>
    public static void WriteI32(string path, ReadOnlySpan<int> data, int columns) =>
        Write(path, System.Runtime.InteropServices.MemoryMarshal.AsBytes(data), data.Length / columns, columns, "<i4");

    // Little-endian values only: the descrs say so.
    private static void Write(string path, ReadOnlySpan<byte> values, long rows, int columns, string descr)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException(".npy is written little-endian only");
        var header = HeaderBytes(rows, columns, descr);
        var bytes = new byte[header.Length + values.Length];
        header.CopyTo(bytes, 0);
        values.CopyTo(bytes.AsSpan(header.Length));
        AtomicFile.Write(path, stream => stream.Write(bytes));
    }

    private static string Describe(byte[] bytes) =>
        bytes.Length == 0 ? "an empty file" : string.Join(" ", bytes.Take(8).Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));

    /// <summary>Parses the Python dict literal of the header: string keys; string, bool and int-tuple values.</summary>
    private static Dictionary<string, object> ParseDict(string path, string text, long offset)
    {
        var p = 0;
        DataFormatException Error(string expected) =>
            new($"{path}: header not parseable: expected {expected} at offset {offset + p} (header: {text.TrimEnd()})");
        void Skip() { while (p < text.Length && char.IsWhiteSpace(text[p])) p++; }
        bool Accept(char c) { Skip(); if (p < text.Length && text[p] == c) { p++; return true; } return false; }
        string ReadString()
        {
            Skip();
            if (p >= text.Length || text[p] is not ('\'' or '"')) throw Error("a quoted string");
            var quote = text[p++];
            var end = text.IndexOf(quote, p);
            if (end < 0) throw Error($"a closing {quote}");
            var s = text[p..end];
            p = end + 1;
            return s;
        }
        long ReadInteger()
        {
            Skip();
            var start = p;
            while (p < text.Length && char.IsAsciiDigit(text[p])) p++;
            if (p < text.Length && text[p] == 'L') p++;
            if (!long.TryParse(text.AsSpan(start, p - start).TrimEnd('L'), NumberStyles.None, CultureInfo.InvariantCulture, out var value))
            {
                p = start;
                throw Error("a non-negative integer");
            }
            return value;
        }
        object ReadValue()
        {
            Skip();
            if (p >= text.Length) throw Error("a value");
            if (text[p] is '\'' or '"') return ReadString();
            if (text.AsSpan(p).StartsWith("True")) { p += 4; return true; }
            if (text.AsSpan(p).StartsWith("False")) { p += 5; return false; }
            if (text[p] == '(')
            {
                p++;
                var items = new List<long>();
                while (!Accept(')'))
                {
                    items.Add(ReadInteger());
                    if (!Accept(',') && !(Skip2() && p < text.Length && text[p] == ')')) throw Error("',' or ')' in the shape");
                }
                return items.ToArray();
            }
            if (text[p] == '[') throw Error("a simple dtype string (structured dtypes are not activations)");
            throw Error("a string, True, False or a tuple");
        }
        bool Skip2() { Skip(); return true; }

        var result = new Dictionary<string, object>();
        if (!Accept('{')) throw Error("'{'");
        while (!Accept('}'))
        {
            var key = ReadString();
            if (!Accept(':')) throw Error("':'");
            result[key] = ReadValue();
            if (!Accept(',') && !(Skip2() && p < text.Length && text[p] == '}')) throw Error("',' or '}'");
        }
        return result;
    }
}
