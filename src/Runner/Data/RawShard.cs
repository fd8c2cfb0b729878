using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Data;

/// <summary>
/// A headerless shard: little-endian values of one dtype, C-ordered [tokens][d], where d is given and
/// tokens = bytes / (d · size of the dtype).
/// </summary>
public static class RawShard
{
    public static IActivationShard Open(string path, int d, ActivationDType dtype)
    {
        if (d < 1) throw new ArgumentOutOfRangeException(nameof(d), $"{path}: d = {d}; a raw shard needs d ≥ 1");
        long length;
        try { length = new FileInfo(path).Length; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException($"{path}: cannot be read: {e.Message}", e);
        }
        var rowBytes = (long)d * MappedActivationShard.SizeOf(dtype);
        if (length % rowBytes != 0)
            throw new DataFormatException($"{path}: {length} bytes is not a whole number of tokens of d = {d} {dtype} values " +
                                          $"({rowBytes} bytes each); the last token would end at offset {(length / rowBytes + 1) * rowBytes}");
        if (length == 0)
            throw new DataFormatException($"{path}: empty file; a raw shard holds at least one token");
        return new MappedActivationShard(path, 0, length / rowBytes, d, dtype);
    }

    /// <summary>Writes float32 values [tokens][d] as a raw shard.</summary>
    public static void WriteF32(string path, ReadOnlySpan<float> data, int d)
    {
        using var writer = ActivationShardWriter.Create(path, ActivationFileFormat.RawF32, data.Length / d, d);
        writer.Append(data);
        writer.Complete();
    }
}
