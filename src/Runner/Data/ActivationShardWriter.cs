using System.Buffers.Binary;
using System.Runtime.InteropServices;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Data;

/// <summary>
/// Streams float32 rows [tokens][d] into a .npy, raw float32 or raw bfloat16 shard (each value rounded to nearest
/// even: half the bytes, 8 mantissa bits) of a size fixed up front, under a temporary name renamed into place by
/// <see cref="Complete"/>, so a reader never sees half a shard.
/// </summary>
public sealed class ActivationShardWriter : IDisposable
{
    private readonly string path;
    private readonly string temporary;
    private readonly FileStream stream;
    private readonly long tokens;
    private readonly int d;
    private readonly bool bf16;
    private long written;
    private byte[] scratch = [];

    private ActivationShardWriter(string path, long tokens, int d, FileStream stream, bool bf16)
    {
        this.bf16 = bf16;
        this.path = path;
        temporary = path + ".tmp";
        this.tokens = tokens;
        this.d = d;
        this.stream = stream;
    }

    /// <summary>Starts a shard of <paramref name="tokens"/> rows of d values (format Npy, RawF32 or RawBF16).</summary>
    public static ActivationShardWriter Create(string path, ActivationFileFormat format, long tokens, int d)
    {
        if (d < 1) throw new ArgumentOutOfRangeException(nameof(d), $"{path}: d = {d}; must be ≥ 1");
        if (tokens < 0) throw new ArgumentOutOfRangeException(nameof(tokens), $"{path}: tokens = {tokens}; must be ≥ 0");
        if (format is not (ActivationFileFormat.Npy or ActivationFileFormat.RawF32 or ActivationFileFormat.RawBF16))
            throw new ArgumentException($"{path}: shards are written as Npy, RawF32 or RawBF16, not {format}", nameof(format));
        var stream = new FileStream(path + ".tmp", FileMode.Create, FileAccess.Write, FileShare.None);
        if (format == ActivationFileFormat.Npy) stream.Write(Npy.HeaderBytes(tokens, d));
        return new ActivationShardWriter(path, tokens, d, stream, format == ActivationFileFormat.RawBF16);
    }

    /// <summary>Appends whole rows [count][d].</summary>
    public void Append(ReadOnlySpan<float> rows)
    {
        if (rows.Length % d != 0)
            throw new ArgumentException($"{path}: {rows.Length} values are not whole rows of d = {d}");
        if (written + rows.Length / d > tokens)
            throw new InvalidOperationException($"{path}: more than the {tokens} tokens the shard was created for");
        if (bf16)
        {
            if (scratch.Length < 2 * rows.Length) scratch = new byte[2 * rows.Length];
            var halves = MemoryMarshal.Cast<byte, ushort>(scratch.AsSpan(0, 2 * rows.Length));
            HalfConversion.NarrowToBF16(rows, halves);
            if (!BitConverter.IsLittleEndian)
                for (var i = 0; i < halves.Length; i++) halves[i] = BinaryPrimitives.ReverseEndianness(halves[i]);
            stream.Write(scratch, 0, 2 * rows.Length);
        }
        else if (BitConverter.IsLittleEndian) stream.Write(MemoryMarshal.AsBytes(rows));
        else
        {
            if (scratch.Length < 4 * rows.Length) scratch = new byte[4 * rows.Length];
            for (var i = 0; i < rows.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(scratch.AsSpan(4 * i), rows[i]);
            stream.Write(scratch, 0, 4 * rows.Length);
        }
        written += rows.Length / d;
    }

    /// <summary>Checks every token was written, flushes and renames the shard into place.</summary>
    public void Complete()
    {
        if (written != tokens)
            throw new InvalidOperationException($"{path}: {written} of the {tokens} tokens written");
        stream.Flush(flushToDisk: false);
        stream.Dispose();
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>Without <see cref="Complete"/>, removes the partial shard.</summary>
    public void Dispose()
    {
        if (!File.Exists(temporary)) return;
        stream.Dispose();
        File.Delete(temporary);
    }
}
