using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Microsoft.Win32.SafeHandles;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Data;

/// <summary>A matrix of activations [Tokens][D] in one file, read a run of tokens at a time as float32.</summary>
public interface IActivationShard : IDisposable
{
    string Path { get; }
    long Tokens { get; }
    int D { get; }
    ActivationDType DType { get; }

    /// <summary>
    /// Reads tokens [firstToken, firstToken + count) into destination [count][D], where count is
    /// destination.Length / D. Safe to call from several threads at once.
    /// </summary>
    void Read(long firstToken, Span<float> destination);
}

/// <summary>
/// One shard memory-mapped read-only, whatever its container: the container's header gives the offset of a
/// C-ordered [tokens][d] block. Only the pages a read touches are brought in, so files larger than RAM work.
/// </summary>
public sealed class MappedActivationShard : IActivationShard
{
    private readonly MemoryMappedFile map;
    private readonly MemoryMappedViewAccessor view;
    private readonly long dataOffset;
    private readonly int elementSize;

    public string Path { get; }
    public long Tokens { get; }
    public int D { get; }
    public ActivationDType DType { get; }

    /// <summary>Maps <paramref name="path"/>; the caller has checked that the data block lies inside the file.</summary>
    internal MappedActivationShard(string path, long dataOffset, long tokens, int d, ActivationDType dtype)
    {
        Path = path;
        Tokens = tokens;
        D = d;
        DType = dtype;
        this.dataOffset = dataOffset;
        elementSize = SizeOf(dtype);
        try
        {
            map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new DataFormatException($"{path}: cannot be memory-mapped: {e.Message}", e);
        }
    }

    public static int SizeOf(ActivationDType dtype) => dtype.Size();

    public void Read(long firstToken, Span<float> destination)
    {
        if (destination.Length % D != 0)
            throw new ArgumentException($"{Path}: destination holds {destination.Length} values, not a multiple of d = {D}");
        long count = destination.Length / D;
        if (firstToken < 0 || firstToken + count > Tokens)
            throw new ArgumentOutOfRangeException(nameof(firstToken), $"{Path}: tokens [{firstToken}, {firstToken + count}) outside [0, {Tokens})");
        ReadValues(view.SafeMemoryMappedViewHandle, (ulong)(dataOffset + firstToken * D * elementSize), DType, destination);
    }

    /// <summary>Reads destination.Length little-endian values of <paramref name="dtype"/> at byte
    /// <paramref name="offset"/> of a mapped view, widened to float32.</summary>
    internal static void ReadValues(SafeMemoryMappedViewHandle handle, ulong offset, ActivationDType dtype, Span<float> destination)
    {
        switch (dtype)
        {
            case ActivationDType.F32:
                handle.ReadSpan(offset, destination);
                if (!BitConverter.IsLittleEndian)
                {
                    var bits = MemoryMarshal.Cast<float, uint>(destination);
                    BinaryPrimitives.ReverseEndianness(bits, bits);
                }
                break;
            default:
                // The 16-bit values land in the upper half of the destination and widen in place, front to back:
                // value i is read (half index n + i) before float i overwrites halves 2i and 2i + 1 ≤ n + i.
                var n = destination.Length;
                var halves = MemoryMarshal.Cast<float, ushort>(destination).Slice(n, n);
                handle.ReadSpan(offset, halves);
                if (!BitConverter.IsLittleEndian) BinaryPrimitives.ReverseEndianness(halves, halves);
                if (dtype == ActivationDType.F16) HalfConversion.WidenF16InPlace(destination);
                else HalfConversion.WidenBF16InPlace(destination);
                break;
        }
    }

    public void Dispose()
    {
        view.Dispose();
        map.Dispose();
    }
}

/// <summary>
/// Widening of 16-bit floats stored in the upper half of a float span into the whole span, front to back: block
/// [i, i + w) reads halves [n + i, n + i + w) before writing halves [2i, 2i + 2w), which lie below the halves not
/// yet read as long as the block fits (i + w ≤ n). Vectorised with the portable Vector128/256 API.
/// </summary>
internal static class HalfConversion
{
    private static readonly float TwoTo112 = BitConverter.UInt32BitsToSingle((127 + 112) << 23);

    public static void WidenF16InPlace(Span<float> values)
    {
        var n = values.Length;
        var halves = MemoryMarshal.Cast<float, ushort>(values);
        var bits = MemoryMarshal.Cast<float, uint>(values);
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + Vector256<ushort>.Count <= n; i += Vector256<ushort>.Count)
            {
                var (lower, upper) = Vector256.Widen(Vector256.Create<ushort>(halves.Slice(n + i, Vector256<ushort>.Count)));
                F16Bits(lower).CopyTo(bits.Slice(i));
                F16Bits(upper).CopyTo(bits.Slice(i + Vector256<uint>.Count));
            }
        else if (Vector128.IsHardwareAccelerated)
            for (; i + Vector128<ushort>.Count <= n; i += Vector128<ushort>.Count)
            {
                var (lower, upper) = Vector128.Widen(Vector128.Create<ushort>(halves.Slice(n + i, Vector128<ushort>.Count)));
                F16Bits(lower).CopyTo(bits.Slice(i));
                F16Bits(upper).CopyTo(bits.Slice(i + Vector128<uint>.Count));
            }
        var asHalf = MemoryMarshal.Cast<float, Half>(values);
        for (; i < n; i++) values[i] = (float)asHalf[n + i];
    }

    // IEEE half to single (after F. Giesen's half_to_float_fast): the exponent and mantissa shifted into place and
    // scaled by 2^112 rebias normals and turn subnormals into normals exactly; infinities and NaNs get the
    // all-ones exponent; the sign is put back last.
    private static Vector256<uint> F16Bits(Vector256<uint> h)
    {
        var magnitude = h & Vector256.Create(0x7FFFu);
        var scaled = (Vector256.ShiftLeft(magnitude, 13).AsSingle() * Vector256.Create(TwoTo112)).AsUInt32();
        var special = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u));
        var value = Vector256.ConditionalSelect(special, Vector256.ShiftLeft(magnitude, 13) | Vector256.Create(0x7F800000u), scaled);
        return value | Vector256.ShiftLeft(h & Vector256.Create(0x8000u), 16);
    }

    private static Vector128<uint> F16Bits(Vector128<uint> h)
    {
        var magnitude = h & Vector128.Create(0x7FFFu);
        var scaled = (Vector128.ShiftLeft(magnitude, 13).AsSingle() * Vector128.Create(TwoTo112)).AsUInt32();
        var special = Vector128.GreaterThanOrEqual(magnitude, Vector128.Create(0x7C00u));
        var value = Vector128.ConditionalSelect(special, Vector128.ShiftLeft(magnitude, 13) | Vector128.Create(0x7F800000u), scaled);
        return value | Vector128.ShiftLeft(h & Vector128.Create(0x8000u), 16);
    }

    /// <summary>float32 to bfloat16 bits, rounded to nearest, ties to even (as PyTorch's .to(torch.bfloat16)); a NaN
    /// stays a (quiet) NaN.</summary>
    public static void NarrowToBF16(ReadOnlySpan<float> values, Span<ushort> bf16)
    {
        var bits = MemoryMarshal.Cast<float, uint>(values);
        for (var i = 0; i < bits.Length; i++)
        {
            var b = bits[i];
            bf16[i] = (b & 0x7FFFFFFFu) > 0x7F800000u
                ? (ushort)((b >> 16) | 0x40u)
                : (ushort)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
        }
    }

    public static void WidenBF16InPlace(Span<float> values)
    {
        var n = values.Length;
        var halves = MemoryMarshal.Cast<float, ushort>(values);
        var bits = MemoryMarshal.Cast<float, uint>(values);
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + Vector256<ushort>.Count <= n; i += Vector256<ushort>.Count)
            {
                var (lower, upper) = Vector256.Widen(Vector256.Create<ushort>(halves.Slice(n + i, Vector256<ushort>.Count)));
                Vector256.ShiftLeft(lower, 16).CopyTo(bits.Slice(i));
                Vector256.ShiftLeft(upper, 16).CopyTo(bits.Slice(i + Vector256<uint>.Count));
            }
        else if (Vector128.IsHardwareAccelerated)
            for (; i + Vector128<ushort>.Count <= n; i += Vector128<ushort>.Count)
            {
                var (lower, upper) = Vector128.Widen(Vector128.Create<ushort>(halves.Slice(n + i, Vector128<ushort>.Count)));
                Vector128.ShiftLeft(lower, 16).CopyTo(bits.Slice(i));
                Vector128.ShiftLeft(upper, 16).CopyTo(bits.Slice(i + Vector128<uint>.Count));
            }
        for (; i < n; i++) bits[i] = (uint)halves[n + i] << 16;
    }

}
