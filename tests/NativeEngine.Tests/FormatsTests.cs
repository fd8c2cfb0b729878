using System.Buffers.Binary;
using System.Text;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

public class FormatsTests
{
    [Test]
    public void SafetensorsHasTheExactBytesOfTheFormat()
    {
        var path = Path.Combine(TestSupport.TempDirectory("st"), "x.safetensors");
        SafeTensors.Write(path, [new Tensor("a", [2], [1.0f, -2.5f])]);
        var bytes = File.ReadAllBytes(path);
        const string header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        var padded = header.PadRight((header.Length + 7) / 8 * 8);
        Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(bytes), Is.EqualTo((ulong)padded.Length));
        Assert.That(Encoding.UTF8.GetString(bytes, 8, padded.Length), Is.EqualTo(padded));
        var data = bytes.AsSpan(8 + padded.Length);
        Assert.That(data.ToArray(), Is.EqualTo(new byte[] { 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0 }));
        Assert.That(File.Exists(path + ".tmp"), Is.False, "the temporary file is renamed away");
    }

    [Test]
    public void SafetensorsRoundTripsTensorsAndMetadata()
    {
        var path = Path.Combine(TestSupport.TempDirectory("st"), "y.safetensors");
        var w = Enumerable.Range(0, 24).Select(i => i * 0.25f - 3).ToArray();
        SafeTensors.Write(path, [new Tensor("W", [2, 3, 4], w), new Tensor("b", [3], [1, 2, 3])],
            new Dictionary<string, string> { ["model"] = "relu_output" });
        var (tensors, metadata) = SafeTensors.Read(path);
        Assert.That(tensors.Select(t => t.Name), Is.EqualTo(new[] { "W", "b" }));
        Assert.That(tensors[0].Shape, Is.EqualTo(new long[] { 2, 3, 4 }));
        Assert.That(tensors[0].Data, Is.EqualTo(w));
        Assert.That(tensors[1].Data, Is.EqualTo(new float[] { 1, 2, 3 }));
        Assert.That(metadata["model"], Is.EqualTo("relu_output"));
    }

    [Test]
    public void TruncatedSafetensorsNamesFileAndOffset()
    {
        var path = Path.Combine(TestSupport.TempDirectory("st"), "t.safetensors");
        SafeTensors.Write(path, [new Tensor("a", [4], [1, 2, 3, 4])]);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^4]);
        var error = Assert.Throws<InvalidDataException>(() => SafeTensors.Read(path))!;
        Assert.That(error.Message, Does.Contain(path).And.Contain("data_offsets [0, 16]"));
        File.WriteAllBytes(path, bytes[..20]);
        error = Assert.Throws<InvalidDataException>(() => SafeTensors.Read(path))!;
        Assert.That(error.Message, Does.Contain("at offset 0 exceeds the file size 20"));
    }

    [Test]
    public void ShapeMismatchIsRefusedBeforeWriting()
    {
        var path = Path.Combine(TestSupport.TempDirectory("st"), "bad.safetensors");
        Assert.Throws<ArgumentException>(() => SafeTensors.Write(path, [new Tensor("a", [3], [1, 2])]));
        Assert.That(File.Exists(path), Is.False);
    }
}
