using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace NativeEngine.Runner.Formats;

/// <summary>PNG (8-bit RGB, no filtering, one zlib stream): enough to put a heatmap into an SVG as one image where
/// one rect per cell would make the file megabytes long.</summary>
public static class Png
{
    private static readonly uint[] CrcTable = MakeCrcTable();

    /// <summary>The PNG file of <paramref name="width"/> x <paramref name="height"/> pixels, rgb row by row, top row
    /// first (3 bytes a pixel).</summary>
    public static byte[] EncodeRgb(int width, int height, ReadOnlySpan<byte> rgb)
    {
        if (width < 1 || height < 1 || rgb.Length != (long)width * height * 3)
            throw new ArgumentException($"{width} x {height} RGB pixels need {(long)width * height * 3} bytes; got {rgb.Length}");
        using var output = new MemoryStream();
        output.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 8;  // bits per channel
        header[9] = 2;  // colour type: RGB
        Chunk(output, "IHDR", header);
        using (var compressed = new MemoryStream())
        {
            using (var zlib = new ZLibStream(compressed, CompressionLevel.Fastest, leaveOpen: true))
                for (var row = 0; row < height; row++)
                {
                    zlib.WriteByte(0);  // filter: none
                    zlib.Write(rgb.Slice(row * width * 3, width * 3));
                }
            Chunk(output, "IDAT", compressed.ToArray());
        }
        Chunk(output, "IEND", []);
        return output.ToArray();
    }

    private static void Chunk(Stream output, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
        output.Write(word);
        var typeBytes = Encoding.ASCII.GetBytes(type);
        output.Write(typeBytes);
        output.Write(data);
        var crc = Update(Update(0xFFFFFFFFu, typeBytes), data) ^ 0xFFFFFFFFu;
        BinaryPrimitives.WriteUInt32BigEndian(word, crc);
        output.Write(word);
    }

    private static uint Update(uint crc, ReadOnlySpan<byte> bytes)
    {
        foreach (var b in bytes) crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    private static uint[] MakeCrcTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            var c = n;
            for (var k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        return table;
    }
}
