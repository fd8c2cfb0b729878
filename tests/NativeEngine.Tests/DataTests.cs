using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Experiments;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

public class DataTests
{
    // ---- readers against files of known bytes ----

    /// <summary>A .npy file written byte by byte: magic, version, header length, dict, data.</summary>
    private static byte[] NpyBytes(int major, string dict, byte[] data)
    {
        var lengthSize = major == 1 ? 2 : 4;
        var text = dict + "\n";
        var bytes = new List<byte> { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)major, 0 };
        var length = new byte[lengthSize];
        if (major == 1) BinaryPrimitives.WriteUInt16LittleEndian(length, (ushort)text.Length);
        else BinaryPrimitives.WriteUInt32LittleEndian(length, (uint)text.Length);
        bytes.AddRange(length);
        bytes.AddRange(Encoding.ASCII.GetBytes(text));
        bytes.AddRange(data);
        return bytes.ToArray();
    }

    private static float[] ReadAll(IActivationShard shard)
    {
        var values = new float[shard.Tokens * shard.D];
        shard.Read(0, values);
        return values;
    }

    [Test]
    public void NpyFloat32WrittenByHandReadsExactly()
    {
        var path = Path.Combine(TestSupport.TempDirectory("data"), "f4.npy");
        // 1.0, -2.5, 0.5, 3.0 as little-endian float32
        byte[] data = [0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x40, 0x40];
        File.WriteAllBytes(path, NpyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", data));
        using var shard = NpyShard.Open(path);
        Assert.That((shard.Tokens, shard.D, shard.DType), Is.EqualTo((2L, 2, ActivationDType.F32)));
        Assert.That(ReadAll(shard), Is.EqualTo(new[] { 1.0f, -2.5f, 0.5f, 3.0f }));
        var second = new float[2];
        shard.Read(1, second);
        Assert.That(second, Is.EqualTo(new[] { 0.5f, 3.0f }));
        Assert.Throws<ArgumentOutOfRangeException>(() => shard.Read(2, second));
    }

    [Test]
    public void NpyFloat16VersionTwoWrittenByHandReadsExactly()
    {
        var path = Path.Combine(TestSupport.TempDirectory("data"), "f2.npy");
        // 1.0, -2.0, 0.5, 65504 (largest half), 2^-24 (smallest subnormal), 0.333251953125 as little-endian float16
        byte[] data = [0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0xff, 0x7b, 0x01, 0x00, 0x55, 0x35];
        File.WriteAllBytes(path, NpyBytes(2, "{\"descr\": \"<f2\", \"fortran_order\": False, \"shape\": (3, 2)}", data));
        using var shard = NpyShard.Open(path);
        Assert.That((shard.Tokens, shard.D, shard.DType), Is.EqualTo((3L, 2, ActivationDType.F16)));
        Assert.That(ReadAll(shard), Is.EqualTo(new[] { 1.0f, -2.0f, 0.5f, 65504f, MathF.Pow(2, -24), 0.333251953125f }));
        var last = new float[2];
        shard.Read(2, last);
        Assert.That(last, Is.EqualTo(new[] { MathF.Pow(2, -24), 0.333251953125f }));
    }

    [Test]
    public void NpyBfloat16AsVoidTwoReadsExactly()
    {
        var dir = TestSupport.TempDirectory("data");
        // 1.0, -2.0, 3.140625, -0.0078125 as little-endian bfloat16 (the high halves of float32)
        byte[] data = [0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40, 0x00, 0xbc];
        foreach (var (descr, major) in new[] { ("<V2", 1), ("bfloat16", 3) })
        {
            var path = Path.Combine(dir, descr.Trim('<') + ".npy");
            File.WriteAllBytes(path, NpyBytes(major, $"{{'descr': '{descr}', 'fortran_order': False, 'shape': (4, 1), }}", data));
            using var shard = NpyShard.Open(path);
            Assert.That(shard.DType, Is.EqualTo(ActivationDType.BF16));
            Assert.That(ReadAll(shard), Is.EqualTo(new[] { 1.0f, -2.0f, 3.140625f, -0.0078125f }));
        }
    }

    [Test]
    public void NpyWriterRoundTripsAndIsAligned()
    {
        var path = Path.Combine(TestSupport.TempDirectory("data"), "w.npy");
        var values = Enumerable.Range(0, 15).Select(i => i * 0.5f - 3).ToArray();
        Npy.WriteF32(path, values, 5);
        var header = Npy.ReadHeader(path);
        Assert.That((header.Major, header.Descr, header.Tokens, header.D, header.DataOffset % 64), Is.EqualTo((1, "<f4", 3L, 5, 0L)));
        using var shard = NpyShard.Open(path);
        Assert.That(ReadAll(shard), Is.EqualTo(values));
        Assert.That(File.Exists(path + ".tmp"), Is.False);
    }

    /// <summary>A safetensors file written byte by byte with an F16 tensor "h" [2, 2] and a BF16 tensor "b" [1, 3].</summary>
    private static string HalfSafeTensors(string dir)
    {
        var path = Path.Combine(dir, "halves.safetensors");
        const string json = "{\"__metadata__\":{\"k\":\"v\"},\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}," +
                            "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,3],\"data_offsets\":[8,14]}}";
        var bytes = new List<byte>();
        var length = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)json.Length);
        bytes.AddRange(length);
        bytes.AddRange(Encoding.ASCII.GetBytes(json));
        bytes.AddRange(new byte[] { 0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0xff, 0x7b }); // F16 1, -2, 0.5, 65504
        bytes.AddRange(new byte[] { 0x80, 0x3f, 0x49, 0x40, 0x80, 0xbf });             // BF16 1, 3.140625, -1
        File.WriteAllBytes(path, bytes.ToArray());
        return path;
    }

    [Test]
    public void SafetensorsF16AndBF16ReadExactly()
    {
        var path = HalfSafeTensors(TestSupport.TempDirectory("data"));
        using (var h = SafeTensorsShard.Open(path, "h"))
        {
            Assert.That((h.Tokens, h.D, h.DType), Is.EqualTo((2L, 2, ActivationDType.F16)));
            Assert.That(ReadAll(h), Is.EqualTo(new[] { 1.0f, -2.0f, 0.5f, 65504f }));
        }
        using (var b = SafeTensorsShard.Open(path, "b"))
        {
            Assert.That((b.Tokens, b.D, b.DType), Is.EqualTo((1L, 3, ActivationDType.BF16)));
            Assert.That(ReadAll(b), Is.EqualTo(new[] { 1.0f, 3.140625f, -1.0f }));
        }
        var error = Assert.Throws<DataFormatException>(() => SafeTensorsShard.Open(path, null))!;
        Assert.That(error.Message, Does.Contain(path).And.Contain("h, b"));
        error = Assert.Throws<DataFormatException>(() => SafeTensorsShard.Open(path, "x"))!;
        Assert.That(error.Message, Does.Contain("no tensor 'x'"));
    }

    [Test]
    public void SafetensorsF32FromTheWriterAndItsErrors()
    {
        var dir = TestSupport.TempDirectory("data");
        var path = Path.Combine(dir, "f32.safetensors");
        SafeTensors.Write(path, [new Tensor("acts", [3, 2], [1, 2, 3, 4, 5, 6]), new Tensor("bias", [2], [0, 0])]);
        using (var shard = SafeTensorsShard.Open(path, "acts"))
            Assert.That(ReadAll(shard), Is.EqualTo(new float[] { 1, 2, 3, 4, 5, 6 }));
        var error = Assert.Throws<DataFormatException>(() => SafeTensorsShard.Open(path, "bias"))!;
        Assert.That(error.Message, Does.Contain(path).And.Contain("rank 1"));

        var bytes = File.ReadAllBytes(path);
        var truncated = Path.Combine(dir, "short.safetensors");
        File.WriteAllBytes(truncated, bytes[..^12]);
        error = Assert.Throws<DataFormatException>(() => SafeTensorsShard.Open(truncated, "acts"))!;
        var dataStart = 8 + (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.That(error.Message, Does.Contain(truncated).And.Contain($"offset {dataStart}").And.Contain("24 bytes"));

        var garbled = Path.Combine(dir, "garbled.safetensors");
        var copy = (byte[])bytes.Clone();
        copy[8] = (byte)'[';
        copy[9] = (byte)'}';
        File.WriteAllBytes(garbled, copy);
        error = Assert.Throws<DataFormatException>(() => SafeTensorsShard.Open(garbled, "acts"))!;
        Assert.That(error.Message, Does.Contain(garbled).And.Contain("not parseable"));

        var f64 = Path.Combine(dir, "f64.safetensors");
        File.WriteAllBytes(f64, Encoding.Latin1.GetBytes(Encoding.Latin1.GetString(bytes).Replace("\"F32\"", "\"F64\"")));
        error = Assert.Throws<DataFormatException>(() => SafeTensorsShard.Open(f64, "acts"))!;
        Assert.That(error.Message, Does.Contain(f64).And.Contain("F64").And.Contain("F32, F16, BF16"));
    }

    [Test]
    public void ShardsWrittenAsBfloat16AreRoundedToNearestEvenAndReadBack()
    {
        var dir = TestSupport.TempDirectory("data");
        var path = Path.Combine(dir, "shard.bf16");
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even 1; 1 + 3·2^-8 goes up to 1 + 2^-6 (even);
        // 1 + 2^-8 + 2^-20 is above halfway: up. Infinities, zero and NaN keep their class.
        float[] values = [1f + 1f / 256, 1f + 3f / 256, 1f + 1f / 256 + 1f / (1 << 20), -2.5f, float.PositiveInfinity, 0f, float.NaN,
            3.4e38f, 1e-40f];
        using (var writer = ActivationShardWriter.Create(path, ActivationFileFormat.RawBF16, 3, 3))
        {
            writer.Append(values);
            writer.Complete();
        }
        Assert.That(new FileInfo(path).Length, Is.EqualTo(2 * values.Length));
        using var shard = new ActivationFiles([path], ActivationFileFormat.RawBF16, D: 3).Open().Single();
        var read = ReadAll(shard);
        Assert.That(read[..6], Is.EqualTo(new[] { 1f, 1f + 4f / 256, 1f + 2f / 256, -2.5f, float.PositiveInfinity, 0f }));
        Assert.That(float.IsNaN(read[6]), Is.True);
        Assert.That(read[7], Is.EqualTo(float.PositiveInfinity), "above bfloat16's largest finite value, rounded up");
        Assert.That(read[8], Is.EqualTo(BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(1e-40f) + 0x8000 & ~0xFFFF)));
    }

    [Test]
    public void RawBfloat16WrittenByHandReadsExactly()
    {
        var dir = TestSupport.TempDirectory("data");
        var path = Path.Combine(dir, "acts.bf16");
        File.WriteAllBytes(path, [0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40, 0x00, 0x00, 0x80, 0xff, 0x80, 0x7f]); // 1, -2, 3.140625, 0, -inf, +inf
        using var shard = new ActivationFiles([path], ActivationFileFormat.RawBF16, D: 3).Open().Single();
        Assert.That((shard.Tokens, shard.D), Is.EqualTo((2L, 3)));
        Assert.That(ReadAll(shard), Is.EqualTo(new[] { 1.0f, -2.0f, 3.140625f, 0f, float.NegativeInfinity, float.PositiveInfinity }));

        var f32 = Path.Combine(dir, "acts.f32");
        RawShard.WriteF32(f32, [1, 2, 3, 4, 5, 6], 2);
        using var raw = RawShard.Open(f32, 2, ActivationDType.F32);
        Assert.That(ReadAll(raw), Is.EqualTo(new float[] { 1, 2, 3, 4, 5, 6 }));
        using var asF16 = RawShard.Open(f32, 3, ActivationDType.F16);
        Assert.That(asF16.Tokens, Is.EqualTo(4));
    }

    [Test]
    public void EverySixteenBitPatternWidensAsTheScalarConversion()
    {
        var dir = TestSupport.TempDirectory("data");
        var bytes = new byte[2 * 65536];
        for (var i = 0; i < 65536; i++) BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), (ushort)i);
        var path = Path.Combine(dir, "all.bin");
        File.WriteAllBytes(path, bytes);
        foreach (var dtype in new[] { ActivationDType.F16, ActivationDType.BF16 })
        {
            using var shard = RawShard.Open(path, 256, dtype);
            var values = ReadAll(shard);
            // An odd-length read from an odd position takes the vector loop and the scalar tail together.
            using var column = RawShard.Open(path, 1, dtype);
            var tail = new float[37];
            column.Read(25_701, tail);
            for (var i = 0; i < 65536; i++)
            {
                var expected = dtype == ActivationDType.F16
                    ? (float)BitConverter.UInt16BitsToHalf((ushort)i)
                    : BitConverter.UInt32BitsToSingle((uint)i << 16);
                if (float.IsNaN(expected)) Assert.That(float.IsNaN(values[i]), $"{dtype} 0x{i:x4}");
                else Assert.That(BitConverter.SingleToUInt32Bits(values[i]), Is.EqualTo(BitConverter.SingleToUInt32Bits(expected)), $"{dtype} 0x{i:x4}");
            }
            Assert.That(tail, Is.EqualTo(values.AsSpan(25_701, 37).ToArray()).Using<float>((a, b) => BitConverter.SingleToUInt32Bits(a) == BitConverter.SingleToUInt32Bits(b)));
        }
    }

    [Test]
    public void RawSizeNotAMultipleOfTheRowNamesFileSizeAndD()
    {
        var path = Path.Combine(TestSupport.TempDirectory("data"), "odd.f32");
        File.WriteAllBytes(path, new byte[40]);
        var error = Assert.Throws<DataFormatException>(() => RawShard.Open(path, 3, ActivationDType.F32))!;
        Assert.That(error.Message, Does.Contain(path).And.Contain("40 bytes").And.Contain("d = 3"));
        error = Assert.Throws<DataFormatException>(() => new ActivationFiles([path]).Open())!;
        Assert.That(error.Message, Does.Contain(path).And.Contain("needs d"));
    }

    [Test]
    public void TruncatedNpyNamesFileOffsetAndExpectedLength()
    {
        var dir = TestSupport.TempDirectory("data");
        var path = Path.Combine(dir, "whole.npy");
        Npy.WriteF32(path, new float[12], 4);
        var bytes = File.ReadAllBytes(path);
        Assert.That(bytes.Length, Is.EqualTo(128 + 48));

        var shortData = Path.Combine(dir, "short-data.npy");
        File.WriteAllBytes(shortData, bytes[..^5]);
        var error = Assert.Throws<DataFormatException>(() => NpyShard.Open(shortData))!;
        Assert.That(error.Message, Does.Contain(shortData).And.Contain("offset 128").And.Contain("48 bytes").And.Contain("43 bytes"));

        var shortHeader = Path.Combine(dir, "short-header.npy");
        File.WriteAllBytes(shortHeader, bytes[..40]);
        error = Assert.Throws<DataFormatException>(() => NpyShard.Open(shortHeader))!;
        Assert.That(error.Message, Does.Contain(shortHeader).And.Contain("truncated header").And.Contain("at offset 10"));

        var tiny = Path.Combine(dir, "tiny.npy");
        File.WriteAllBytes(tiny, bytes[..9]);
        error = Assert.Throws<DataFormatException>(() => NpyShard.Open(tiny))!;
        Assert.That(error.Message, Does.Contain(tiny).And.Contain("offset 8"));
    }

    [Test]
    public void CorruptOrUnsupportedNpyNamesTheFile()
    {
        var dir = TestSupport.TempDirectory("data");
        var bad = Path.Combine(dir, "bad-magic.npy");
        File.WriteAllBytes(bad, Encoding.ASCII.GetBytes("PK\u0003\u0004 this is a zip, not an array"));
        var error = Assert.Throws<DataFormatException>(() => NpyShard.Open(bad))!;
        Assert.That(error.Message, Does.Contain(bad).And.Contain("magic").And.Contain("offset 0"));

        var empty = Path.Combine(dir, "empty.npy");
        File.WriteAllBytes(empty, []);
        Assert.That(Assert.Throws<DataFormatException>(() => NpyShard.Open(empty))!.Message, Does.Contain(empty).And.Contain("empty file"));

        void Refused(string name, string dict, params string[] expected)
        {
            var path = Path.Combine(dir, name);
            File.WriteAllBytes(path, NpyBytes(1, dict, new byte[64]));
            var e = Assert.Throws<DataFormatException>(() => NpyShard.Open(path))!;
            Assert.That(e.Message, Does.Contain(path), name);
            foreach (var text in expected) Assert.That(e.Message, Does.Contain(text), name);
        }
        Refused("f8.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", "'<f8'", "'<f4' (float32), '<f2' (float16)");
        Refused("fortran.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", "fortran_order is True");
        Refused("rank3.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", "rank 3");
        Refused("rank1.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", "rank 1");
        Refused("garbled.npy", "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 2), }", "not parseable", "offset 44");
        Refused("structured.npy", "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 2), }", "structured");
        Refused("noshape.npy", "{'descr': '<f4', 'fortran_order': False}", "no 'shape'");
    }

    [Test]
    public void DMismatchBetweenShardsNamesBothFiles()
    {
        var dir = TestSupport.TempDirectory("data");
        var a = Path.Combine(dir, "a.npy");
        var b = Path.Combine(dir, "b.npy");
        Npy.WriteF32(a, new float[8], 4);
        Npy.WriteF32(b, new float[10], 5);
        var error = Assert.Throws<DataFormatException>(() => new ActivationFiles([Path.Combine(dir, "*.npy")]).Open())!;
        Assert.That(error.Message, Does.Contain(b).And.Contain("d = 5").And.Contain(a).And.Contain("d = 4"));
        error = Assert.Throws<DataFormatException>(() => new ActivationFiles([a], D: 5).Open())!;
        Assert.That(error.Message, Does.Contain(a).And.Contain("d = 5 was asked for"));
    }

    [Test]
    public void GlobsExpandInTheFileNameSortedAndNameAPatternWithoutMatches()
    {
        var dir = TestSupport.TempDirectory("data");
        foreach (var name in new[] { "x_2.npy", "x_10.npy", "x_1.npy", "y.npy", "x_3.npy.tmp" })
            Npy.WriteF32(Path.Combine(dir, name), new float[2], 2);
        string[] Names(params string[] patterns) =>
            new ActivationFiles(patterns.Select(p => Path.Combine(dir, p)).ToList()).Expand().Select(p => Path.GetFileName(p)).ToArray();
        Assert.That(Names("x_*.npy"), Is.EqualTo(new[] { "x_1.npy", "x_10.npy", "x_2.npy" }));
        Assert.That(Names("x_?.npy"), Is.EqualTo(new[] { "x_1.npy", "x_2.npy" }));
        Assert.That(Names("y.npy", "x_1*"), Is.EqualTo(new[] { "y.npy", "x_1.npy", "x_10.npy" }));
        var pattern = Path.Combine(dir, "z*.npy");
        var error = Assert.Throws<DataFormatException>(() => new ActivationFiles([pattern]).Expand())!;
        Assert.That(error.Message, Does.Contain(pattern).And.Contain("no files match"));
        var missing = Path.Combine(dir, "missing.npy");
        Assert.That(Assert.Throws<DataFormatException>(() => new ActivationFiles([missing]).Expand())!.Message, Does.Contain(missing));
    }

    // ---- the shuffled source ----

    /// <summary>Three shards of 37, 50 and 13 tokens, d = 3; token g holds [g, shard, local index].</summary>
    private static List<string> NumberedShards(string dir)
    {
        var paths = new List<string>();
        long global = 0;
        int[] sizes = [37, 50, 13];
        for (var s = 0; s < sizes.Length; s++)
        {
            var values = new float[sizes[s] * 3];
            for (var i = 0; i < sizes[s]; i++, global++) (values[3 * i], values[3 * i + 1], values[3 * i + 2]) = (global, s, i);
            var path = Path.Combine(dir, $"part{s}.npy");
            Npy.WriteF32(path, values, 3);
            paths.Add(path);
        }
        return paths;
    }

    private static ActivationSource NumberedSource(string dir, int batch = 7, int buffer = 16, int chunk = 5, ulong seed = 1, bool prefetch = true)
    {
        NumberedShards(dir);
        return ActivationSource.Open(new ActivationFiles([Path.Combine(dir, "part*.npy")]),
            new ActivationSourceOptions(batch, buffer, chunk, seed, prefetch));
    }

    /// <summary>The token ids of the next <paramref name="batches"/> batches, checking each row against its id.</summary>
    private static List<long> Ids(IActivationBatches source, int batches)
    {
        var ids = new List<long>();
        int[] starts = [0, 37, 87];
        for (var b = 0; b < batches; b++)
        {
            var batch = source.Next().Span;
            for (var k = 0; k < source.BatchTokens; k++)
            {
                var id = (long)batch[3 * k];
                var shard = (int)batch[3 * k + 1];
                Assert.That(starts[shard] + batch[3 * k + 2], Is.EqualTo(id), "a row is read whole from its own place");
                ids.Add(id);
            }
        }
        return ids;
    }

    [Test]
    public void EveryTokenExactlyOncePerEpochWithABufferSmallerThanTheData()
    {
        using var source = NumberedSource(TestSupport.TempDirectory("data"));
        Assert.That((source.TotalTokens, source.D, source.BufferTokens, source.ChunkTokens), Is.EqualTo((100L, 3, 16, 5)));
        var ids = Ids(source, 43); // 301 tokens: three epochs and one token, batches straddling epoch ends
        for (var epoch = 0; epoch < 3; epoch++)
        {
            var slice = ids.Skip(100 * epoch).Take(100).ToList();
            Assert.That(slice.Order(), Is.EqualTo(Enumerable.Range(0, 100).Select(i => (long)i)), $"epoch {epoch}");
            Assert.That(slice.Sum(), Is.EqualTo(4950));
        }
        Assert.That(ids.Take(100), Is.Not.EqualTo(ids.Skip(100).Take(100)), "each epoch has its own order");
        Assert.That(ids.Take(100), Is.Not.EqualTo(Enumerable.Range(0, 100).Select(i => (long)i)), "shuffled");
        Assert.That(source.State.Epoch, Is.EqualTo(3));
        Assert.That(source.State.TokenInEpoch, Is.EqualTo(1));
    }

    [Test]
    public void TheOrderIsFixedByTheSeed()
    {
        var dir = TestSupport.TempDirectory("data");
        using var a = NumberedSource(dir, seed: 7);
        using var b = ActivationSource.Open(new ActivationFiles([Path.Combine(dir, "part*.npy")]), new ActivationSourceOptions(7, 16, 5, 7));
        using var c = ActivationSource.Open(new ActivationFiles([Path.Combine(dir, "part*.npy")]), new ActivationSourceOptions(7, 16, 5, 8));
        var first = Ids(a, 30);
        Assert.That(Ids(b, 30), Is.EqualTo(first));
        Assert.That(Ids(c, 30), Is.Not.EqualTo(first));
    }

    [Test]
    public void PrefetchGivesTheSameSequenceAsSingleBuffering()
    {
        var dir = TestSupport.TempDirectory("data");
        using var single = NumberedSource(dir, prefetch: false, seed: 3);
        using var doubled = ActivationSource.Open(new ActivationFiles([Path.Combine(dir, "part*.npy")]), new ActivationSourceOptions(7, 16, 5, 3, Prefetch: true));
        for (var b = 0; b < 40; b++)
        {
            var x = single.Next().ToArray();
            var y = doubled.Next();
            Assert.That(y.ToArray(), Is.EqualTo(x), $"batch {b}");
        }
    }

    [Test]
    public void ASavedStateResumesBitIdentically()
    {
        var dir = TestSupport.TempDirectory("data");
        using var original = NumberedSource(dir, seed: 5);
        var before = Ids(original, 12);
        var json = original.State.ToJson();
        var after = Ids(original, 20); // crosses the epoch ends at 100 and 200 tokens

        var state = SourceState.FromJson(json);
        Assert.That(state, Is.EqualTo(original.State with { TokensServed = 84, Epoch = 0, TokenInEpoch = 84 }));
        using var resumed = ActivationSource.Open(new ActivationFiles([Path.Combine(dir, "part*.npy")]), new ActivationSourceOptions(7, 16, 5, 5));
        resumed.Restore(state);
        Assert.That(Ids(resumed, 20), Is.EqualTo(after));

        // Restoring a source that has already served (and prefetched) batches rewinds it.
        resumed.Restore(state with { TokensServed = 0, TokenInEpoch = 0 });
        Assert.That(Ids(resumed, 12), Is.EqualTo(before));
        // At an epoch boundary exactly.
        original.Restore(SourceState.FromJson(json) with { TokensServed = 200, Epoch = 2, TokenInEpoch = 0 });
        Assert.That(Ids(original, 2), Is.EqualTo(after.Skip(200 - 84).Take(14)));

        var other = Assert.Throws<DataFormatException>(() => resumed.Restore(state with { BufferTokens = 32 }))!;
        Assert.That(other.Message, Does.Contain("does not match"));
        Assert.Throws<DataFormatException>(() => resumed.Restore(state with { Seed = 6 }));
    }

    [Test]
    public void AFailingReadSurfacesOnNextWithTheFileNamed()
    {
        var good = new MemoryShard("good.bin", 40, 2);
        var failing = new MemoryShard("failing.bin", 40, 2) { FailAfter = 3 };
        using var source = new ActivationSource([good, failing], new ActivationSourceOptions(8, 8, 2, 0));
        var error = Assert.Throws<DataFormatException>(() => { for (var i = 0; i < 100; i++) source.Next(); })!;
        Assert.That(error.Message, Does.Contain("failing.bin").And.Contain("disk went away"));
        Assert.That(Assert.Throws<DataFormatException>(() => source.Next())!.Message, Does.Contain("failing.bin"), "and again on every later call");
    }

    private sealed class MemoryShard(string path, long tokens, int d) : IActivationShard
    {
        public int FailAfter { get; init; } = int.MaxValue;
        private int reads;
        public string Path => path;
        public long Tokens => tokens;
        public int D => d;
        public ActivationDType DType => ActivationDType.F32;

        public void Read(long firstToken, Span<float> destination)
        {
            if (++reads > FailAfter) throw new IOException("disk went away");
            for (var i = 0; i < destination.Length; i++) destination[i] = firstToken * d + i;
        }

        public void Dispose() { }
    }

    // ---- synthetic activations (the native generator; the Sharkey set) ----

    private static SynthGenerator Sharkey(EngineContext context, int d = 256, int n = 512, double activeMean = 5,
        bool correlated = false, ulong seed = 3) =>
        new(context, new SharkeySpec(d, n, activeMean, 0.99, correlated, seed).Generator);

    [Test]
    public void SyntheticFeaturesAreUnitNormAndAboutActiveMeanFirePerToken()
    {
        using var context = new EngineContext(Backend.Cpu);
        foreach (var correlated in new[] { false, true })
        {
            using var synthetic = Sharkey(context, correlated: correlated);
            var truth = synthetic.Truth;
            for (var i = 0; i < synthetic.NFeatures; i++)
            {
                var norm = MathF.Sqrt(truth.Features.AsSpan(i * 256, 256).ToArray().Sum(v => v * v));
                Assert.That(norm, Is.EqualTo(1).Within(1e-5), $"feature {i}");
            }
            Assert.That(truth.Probability.Sum(p => (double)p), Is.EqualTo(5).Within(1e-5));
            Assert.That(truth.Probability[1] / truth.Probability[0], Is.EqualTo(0.99).Within(1e-6));
            Assert.That(truth.Bias, Is.All.EqualTo(0f));

            const int tokens = 20000;
            var codes = new float[tokens * 512L];
            synthetic.Sample(SynthStream.Train, 0, default, codes);
            var counts = new double[tokens];
            var firstFires = 0;
            for (var t = 0; t < tokens; t++)
            {
                var row = codes.AsSpan(t * 512, 512);
                counts[t] = row.ToArray().Count(c => c != 0);
                if (row[0] != 0) firstFires++;
            }
            Assert.That(codes.All(c => c is >= 0 and <= 1));
            var mean = counts.Average();
            var variance = counts.Select(c => (c - mean) * (c - mean)).Sum() / (tokens - 1);
            TestContext.Out.WriteLine($"correlated {correlated}: mean active {mean:F3}, variance {variance:F2}");
            // Standard error ≈ √(variance / tokens) ≈ 0.02 independent, more when correlated.
            Assert.That(mean, Is.EqualTo(5).Within(6 * Math.Sqrt(variance / tokens)));
            Assert.That(firstFires / (double)tokens, Is.EqualTo(truth.Probability[0]).Within(0.01));
            if (correlated) Assert.That(variance, Is.GreaterThan(7), "correlated firing spreads the count (≈5 when independent)");
            else Assert.That(variance, Is.LessThan(6));
        }
    }

    /// <summary>The native Sharkey generator equals the managed one it replaced in law (not in draws): per-feature
    /// firing rates, the count of active features (mean and variance, which the copula's correlations set), the
    /// coefficients' moments, and for the correlated set the size of pairwise firing correlations. 40,000 tokens of each
    /// for each of four seeds; correlated statistics are averaged over the seeds, since each seed draws its own factor.</summary>
    [TestCase(false)]
    [TestCase(true)]
    public void TheNativeSharkeyGeneratorMatchesTheManagedReferenceInLaw(bool correlated)
    {
        const int d = 16, n = 64, tokens = 40_000;
        ulong[] seeds = [21, 22, 23, 24];
        using var context = new EngineContext(Backend.Cpu);
        var native = new List<CodeSummary>();
        var managed = new List<CodeSummary>();
        foreach (var seed in seeds)
        {
            using var generator = Sharkey(context, d, n, 5, correlated, seed);
            var reference = new SharkeyReference(d, n, 0.99, 5, correlated ? SharkeySpec.CorrelationRank : 0, seed);
            Assert.That(generator.Truth.Probability, Is.EqualTo(reference.Probabilities.Select(p => (float)p)).Within(1e-6));
            var nativeCodes = new float[(long)tokens * n];
            generator.Sample(SynthStream.Train, 0, default, nativeCodes);
            var referenceCodes = new float[(long)tokens * n];
            for (var t = 0; t < tokens; t++) reference.Codes(t, referenceCodes.AsSpan(t * n, n));
            var a = Summary(nativeCodes, n, tokens);
            var b = Summary(referenceCodes, n, tokens);
            native.Add(a);
            managed.Add(b);
            TestContext.Out.WriteLine($"seed {seed}: native count {a.CountMean:F3} (var {a.CountVariance:F2}), |phi| {a.MeanAbsPhi:F4}; " +
                                      $"managed count {b.CountMean:F3} (var {b.CountVariance:F2}), |phi| {b.MeanAbsPhi:F4}");
            // Firing rates: each feature's rate against p_i (binomial standard error), both generators alike.
            var p = reference.Probabilities;
            for (var i = 0; i < n; i++)
            {
                var se = Math.Sqrt(p[i] * (1 - p[i]) / tokens);
                Assert.That(a.Rates[i], Is.EqualTo(p[i]).Within(5 * se + 1e-9), $"native feature {i}, seed {seed}");
                Assert.That(b.Rates[i], Is.EqualTo(p[i]).Within(5 * se + 1e-9), $"managed feature {i}, seed {seed}");
            }
            var countSe = Math.Sqrt((a.CountVariance + b.CountVariance) / tokens);
            Assert.That(a.CountMean, Is.EqualTo(b.CountMean).Within(6 * countSe));
            Assert.That(a.CoefficientMean, Is.EqualTo(0.5).Within(0.005));
            Assert.That(b.CoefficientMean, Is.EqualTo(0.5).Within(0.005));
            Assert.That(a.CoefficientVariance, Is.EqualTo(1.0 / 12).Within(0.003));
            if (correlated) continue;
            // Independent firing: the count's variance is Σ p(1 − p) for both, and no pair is correlated.
            var expected = p.Sum(q => q * (1 - q));
            Assert.That(a.CountVariance, Is.EqualTo(expected).Within(0.05 * expected));
            Assert.That(b.CountVariance, Is.EqualTo(expected).Within(0.05 * expected));
            Assert.That(a.MeanAbsPhi, Is.LessThan(0.01));
        }
        if (!correlated) return;
        // Other draws of the same factor law: the count's variance and the pairs' correlations agree in size on
        // average over the seeds (one seed's factor moves them by 10-30%), not pair by pair.
        double Mean(List<CodeSummary> list, Func<CodeSummary, double> f) => list.Average(f);
        Assert.That(Mean(native, c => c.CountVariance), Is.EqualTo(Mean(managed, c => c.CountVariance)).Within(0.15 * Mean(managed, c => c.CountVariance)));
        Assert.That(Mean(native, c => c.MeanAbsPhi), Is.EqualTo(Mean(managed, c => c.MeanAbsPhi)).Within(0.2 * Mean(managed, c => c.MeanAbsPhi)));
        Assert.That(Mean(native, c => c.MeanAbsPhi), Is.GreaterThan(0.05), "correlated firing");
    }

    private sealed record CodeSummary(double[] Rates, double CountMean, double CountVariance, double CoefficientMean,
        double CoefficientVariance, double MeanAbsPhi);

    // Firing rates, the active count's mean and variance, the coefficients' moments, and the mean |phi| (the firing
    // correlation) over pairs of the 16 most frequent features.
    private static CodeSummary Summary(float[] codes, int n, int tokens)
    {
        var rates = new double[n];
        double countSum = 0, countSquares = 0, coefficientSum = 0, coefficientSquares = 0;
        long coefficients = 0;
        const int top = 16;
        var together = new long[top, top];
        for (var t = 0; t < tokens; t++)
        {
            var count = 0;
            for (var i = 0; i < n; i++)
            {
                var c = codes[(long)t * n + i];
                if (c == 0) continue;
                rates[i]++;
                count++;
                coefficientSum += c;
                coefficientSquares += (double)c * c;
                coefficients++;
            }
            countSum += count;
            countSquares += (double)count * count;
            for (var i = 0; i < top; i++)
                if (codes[(long)t * n + i] != 0)
                    for (var j = i + 1; j < top; j++)
                        if (codes[(long)t * n + j] != 0) together[i, j]++;
        }
        for (var i = 0; i < n; i++) rates[i] /= tokens;
        var countMean = countSum / tokens;
        var coefficientMean = coefficientSum / coefficients;
        double phi = 0;
        var pairs = 0;
        for (var i = 0; i < top; i++)
            for (var j = i + 1; j < top; j++)
            {
                double pij = together[i, j] / (double)tokens, pi = rates[i], pj = rates[j];
                phi += Math.Abs(pij - pi * pj) / Math.Sqrt(pi * (1 - pi) * pj * (1 - pj));
                pairs++;
            }
        return new CodeSummary(rates, countMean, countSquares / tokens - countMean * countMean, coefficientMean,
            coefficientSquares / coefficients - coefficientMean * coefficientMean, phi / pairs);
    }

    [Test]
    public void SyntheticBatchesAreTheSumOfActiveFeaturesAndRegenerable()
    {
        using var context = new EngineContext(Backend.Cpu);
        using var synthetic = new SyntheticSource(Sharkey(context, 16, 32, 3, seed: 9), batchTokens: 10);
        var generator = synthetic.Generator;
        var features = generator.Truth.Features;
        var first = synthetic.Next().ToArray();
        var second = synthetic.Next().ToArray();
        var codes = new float[32];
        generator.Sample(SynthStream.Train, 13, default, codes);
        var expected = new float[16];
        for (var i = 0; i < 32; i++)
            for (var j = 0; j < 16; j++) expected[j] += codes[i] * features[i * 16 + j];
        Assert.That(second.AsSpan(3 * 16, 16).ToArray(), Is.EqualTo(expected).Within(1e-6));

        var again = new float[20 * 16];
        generator.Sample(SynthStream.Train, 0, again);
        Assert.That(again, Is.EqualTo(first.Concat(second)));
        Assert.That(synthetic.Take(), Is.EqualTo(20), "Take serves the next batch by its first sample");
        var state = synthetic.State;
        using var resumed = new SyntheticSource(Sharkey(context, 16, 32, 3, seed: 9), batchTokens: 10);
        resumed.Restore(SourceState.FromJson(state.ToJson()));
        Assert.That(resumed.Next().ToArray(), Is.EqualTo(synthetic.Next().ToArray()));
        using var other = new SyntheticSource(Sharkey(context, 16, 32, 3, seed: 10), batchTokens: 10);
        Assert.That(other.Next().ToArray(), Is.Not.EqualTo(first));
        Assert.Throws<DataFormatException>(() => other.Restore(state));
    }

    [Test]
    public void WrittenShardsAndGroundTruthReadBackAsGenerated()
    {
        var dir = TestSupport.TempDirectory("data");
        using var context = new EngineContext(Backend.Cpu);
        var spec = new SharkeySpec(32, 64, 5, 0.99, true, 4);
        using var synthetic = new SyntheticSource(new SynthGenerator(context, spec.Generator), batchTokens: 100);
        var paths = Synthesis.WriteShards(synthetic.Generator, dir, 1000, 300, ActivationFileFormat.Npy);
        Synthesis.WriteGroundTruth(dir, spec, synthetic.Generator, 1000);
        Assert.That(paths.Select(p => Path.GetFileName(p)), Is.EqualTo(new[] { "shard_00000.npy", "shard_00001.npy", "shard_00002.npy", "shard_00003.npy" }));
        var shards = new ActivationFiles([Path.Combine(dir, "shard_*.npy")]).Open();
        try
        {
            Assert.That(shards.Select(s => s.Tokens), Is.EqualTo(new long[] { 300, 300, 300, 100 }));
            var read = shards.SelectMany(ReadAll).ToArray();
            var generated = Enumerable.Range(0, 10).SelectMany(_ => synthetic.Next().ToArray()).ToArray();
            Assert.That(read, Is.EqualTo(generated));
        }
        finally
        {
            foreach (var shard in shards) shard.Dispose();
        }
        var truth = synthetic.Generator.Truth;
        var file = GroundTruthFile.Read(Path.Combine(dir, "ground_truth.safetensors"));
        Assert.That((file.N, file.D), Is.EqualTo((64, 32)));
        Assert.That(file.Features, Is.EqualTo(truth.Features));
        Assert.That(file.Probabilities, Is.EqualTo(truth.Probability));
        Assert.That(file.Bias, Is.EqualTo(truth.Bias));
        Assert.That(file.Metadata[GroundTruthFile.GeneratorKey], Is.EqualTo("sharkey"));
        Assert.That(FactorizeConfigLoader.ParseSynthetic(file.Metadata[GroundTruthFile.SyntheticKey], "metadata"), Is.EqualTo(spec));

        var raw = Synthesis.WriteShards(synthetic.Generator, Path.Combine(dir, "raw"), 50, 50, ActivationFileFormat.RawF32);
        using var rawShard = RawShard.Open(raw[0], 32, ActivationDType.F32);
        var firstFifty = new float[50 * 32];
        synthetic.Generator.Sample(SynthStream.Train, 0, firstFifty);
        Assert.That(ReadAll(rawShard), Is.EqualTo(firstFifty));
    }
}
