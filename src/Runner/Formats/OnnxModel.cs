using System.Text;

namespace NativeEngine.Runner.Formats;

/// <summary>One node of an ONNX graph: its name (may be empty), operator, and input and output tensor names.</summary>
public sealed record OnnxNode(string Name, string OpType, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs);

/// <summary>
/// The parts of an ONNX model (a protobuf ModelProto, onnx.proto) that harvesting needs: the graph's nodes, inputs,
/// outputs and initializers, read straight from the protobuf wire format, and a copy of the model with more graph
/// outputs. Field numbers: ModelProto.graph = 7; GraphProto node = 1, initializer = 5, input = 11, output = 12;
/// NodeProto input = 1, output = 2, name = 3, op_type = 4; ValueInfoProto.name = 1; TensorProto.name = 8.
/// </summary>
public sealed class OnnxModel
{
    private const int ModelGraph = 7;
    private const int GraphNode = 1, GraphInitializer = 5, GraphInput = 11, GraphOutput = 12;

    private readonly byte[] bytes;

    public string Path { get; }
    public IReadOnlyList<OnnxNode> Nodes { get; }
    /// <summary>The graph's inputs a caller feeds (initializers listed as inputs, as older exporters do, left out).</summary>
    public IReadOnlyList<string> Inputs { get; }
    public IReadOnlyList<string> Outputs { get; }

    private OnnxModel(string path, byte[] bytes, List<OnnxNode> nodes, List<string> inputs, List<string> outputs)
    {
        Path = path;
        this.bytes = bytes;
        Nodes = nodes;
        Inputs = inputs;
        Outputs = outputs;
    }

    public static OnnxModel Read(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or OutOfMemoryException)
        {
            throw new DataFormatException($"{path}: cannot be read: {e.Message}", e);
        }
        var graph = Fields(bytes, path, "ModelProto").Where(f => f.Number == ModelGraph).ToList();
        if (graph.Count == 0) throw new DataFormatException($"{path}: no graph (ModelProto field 7); not an ONNX model?");
        var nodes = new List<OnnxNode>();
        var inputs = new List<string>();
        var outputs = new List<string>();
        var initializers = new HashSet<string>();
        foreach (var part in graph)
            foreach (var field in Fields(part.Value(bytes), path, "GraphProto"))
            {
                var value = field.Value(part.Value(bytes));
                switch (field.Number)
                {
                    case GraphNode: nodes.Add(ReadNode(value, path)); break;
                    case GraphInput: inputs.Add(NameOf(value, 1, path, "ValueInfoProto")); break;
                    case GraphOutput: outputs.Add(NameOf(value, 1, path, "ValueInfoProto")); break;
                    case GraphInitializer: initializers.Add(NameOf(value, 8, path, "TensorProto")); break;
                }
            }
        return new OnnxModel(path, bytes, nodes, inputs.Where(i => !initializers.Contains(i)).ToList(), outputs);
    }

    /// <summary>A copy of the model whose graph also outputs <paramref name="tensors"/> (ValueInfoProtos with just a
    /// name: ONNX Runtime infers their type and shape). Protobuf merges repeated fields wherever they appear, so the
    /// new outputs are appended to the graph's bytes and only the graph's length changes.</summary>
    public byte[] WithOutputs(IEnumerable<string> tensors)
    {
        var extra = new MemoryStream();
        foreach (var tensor in tensors.Where(t => !Outputs.Contains(t)))
        {
            var info = new MemoryStream();
            WriteBytesField(info, 1, Encoding.UTF8.GetBytes(tensor));
            WriteBytesField(extra, GraphOutput, info.ToArray());
        }
        var result = new MemoryStream(bytes.Length + (int)extra.Length + 16);
        var appended = false;
        foreach (var field in Fields(bytes, Path, "ModelProto"))
        {
            if (field.Number == ModelGraph && !appended)
            {
                var graph = field.Value(bytes);
                WriteVarint(result, (ModelGraph << 3) | 2);
                WriteVarint(result, (ulong)(graph.Length + extra.Length));
                result.Write(graph);
                result.Write(extra.GetBuffer(), 0, (int)extra.Length);
                appended = true;
            }
            else result.Write(bytes, field.Start, field.End - field.Start);
        }
        return result.ToArray();
    }

    private static OnnxNode ReadNode(ReadOnlySpan<byte> node, string path)
    {
        string name = "", op = "";
        var inputs = new List<string>();
        var outputs = new List<string>();
        foreach (var field in Fields(node, path, "NodeProto"))
        {
            if (field.WireType != 2) continue;
            var text = Encoding.UTF8.GetString(field.Value(node));
            switch (field.Number)
            {
                case 1: inputs.Add(text); break;
                case 2: outputs.Add(text); break;
                case 3: name = text; break;
                case 4: op = text; break;
            }
        }
        return new OnnxNode(name, op, inputs, outputs);
    }

    private static string NameOf(ReadOnlySpan<byte> message, int number, string path, string type)
    {
        foreach (var field in Fields(message, path, type))
            if (field.Number == number && field.WireType == 2) return Encoding.UTF8.GetString(field.Value(message));
        return "";
    }

    /// <summary>A field of a protobuf message: its number, wire type, and where it lies (tag included) and, for
    /// length-delimited fields, where its value lies.</summary>
    private readonly record struct Field(int Number, int WireType, int Start, int End, int ValueStart)
    {
        public ReadOnlySpan<byte> Value(ReadOnlySpan<byte> message) => message[ValueStart..End];
    }

    private static List<Field> Fields(ReadOnlySpan<byte> message, string path, string type)
    {
        var fields = new List<Field>();
        var position = 0;
        while (position < message.Length)
        {
            var start = position;
            var tag = ReadVarint(message, ref position, path, type);
            int number = (int)(tag >> 3), wireType = (int)(tag & 7);
            var valueStart = position;
            switch (wireType)
            {
                case 0: ReadVarint(message, ref position, path, type); break;
                case 1: position += 8; break;
                case 5: position += 4; break;
                case 2:
                    var length = ReadVarint(message, ref position, path, type);
                    if (length > (ulong)(message.Length - position))
                        throw new DataFormatException($"{path}: not an ONNX model, or a truncated one: a {type} field {number} of {length} bytes runs past the end");
                    valueStart = position;
                    position += (int)length;
                    break;
                default:
                    throw new DataFormatException($"{path}: not an ONNX model, or a corrupt one: a {type} field {number} has wire type {wireType}");
            }
            if (position > message.Length)
                throw new DataFormatException($"{path}: not an ONNX model, or a truncated one: a {type} field {number} runs past the end");
            fields.Add(new Field(number, wireType, start, position, valueStart));
        }
        return fields;
    }

    private static ulong ReadVarint(ReadOnlySpan<byte> message, ref int position, string path, string type)
    {
        ulong value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            if (position >= message.Length) throw new DataFormatException($"{path}: not an ONNX model, or a truncated one: a {type} ends inside a number");
            var b = message[position++];
            value |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0) return value;
        }
        throw new DataFormatException($"{path}: not an ONNX model, or a corrupt one: a {type} holds a number longer than 10 bytes");
    }

    private static void WriteVarint(Stream stream, ulong value)
    {
        while (value >= 0x80)
        {
            stream.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        stream.WriteByte((byte)value);
    }

    private static void WriteBytesField(Stream stream, int number, ReadOnlySpan<byte> value)
    {
        WriteVarint(stream, ((ulong)number << 3) | 2);
        WriteVarint(stream, (ulong)value.Length);
        stream.Write(value);
    }
}
