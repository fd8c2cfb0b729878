using System.Buffers.Binary;
using Apache.Arrow;
using Apache.Arrow.Ipc;

namespace NativeEngine.Runner.Formats;

/// <summary>One field node of a record batch: the length of a field's array and its count of nulls.</summary>
public readonly record struct ArrowFieldNode(long Length, long NullCount);

/// <summary>One buffer of a record batch, as an absolute byte range of the file.</summary>
public readonly record struct ArrowBodyBuffer(long Offset, long Length);

/// <summary>Where one record batch lies: its rows, and its field nodes and buffers in the schema's depth-first
/// order (the order the Arrow columnar format lays them out).</summary>
public sealed record ArrowBatchLayout(long Rows, ArrowFieldNode[] Nodes, ArrowBodyBuffer[] Buffers);

/// <summary>An Arrow IPC stream file: its schema (read by Apache.Arrow) and where each record batch's buffers lie.</summary>
public sealed record ArrowStreamLayout(Schema Schema, IReadOnlyList<ArrowBatchLayout> Batches);

/// <summary>
/// The Arrow IPC streaming format, as pyarrow's RecordBatchStreamWriter writes it and Hugging Face datasets stores
/// every .arrow file: a sequence of encapsulated messages, each the continuation marker 0xFFFFFFFF, an int32
/// metadata length, a flatbuffer Message (padded to 8 bytes) and a body of Message.bodyLength bytes; the schema
/// first, then dictionary and record batches, then the end marker 0xFFFFFFFF 0x00000000. Streams written before
/// Arrow 0.15 lack the continuation marker and are read too, and so is the IPC file format (the same stream
/// between a magic and a footer).
/// <para>Apache.Arrow reads the schema message. The record batch messages are indexed here instead, reading only
/// their flatbuffer headers: Apache.Arrow's stream reader copies every body into memory, while activations are
/// read a chunk at a time from a memory-mapped file, so only each batch's buffer offsets are needed. The header
/// fields read (Message.fbs): Message {version: short, header_type: ubyte, header: table, bodyLength: long} and
/// RecordBatch {length: long, nodes: [FieldNode {length, null_count}], buffers: [Buffer {offset, length}],
/// compression: BodyCompression}.</para>
/// </summary>
public static class ArrowIpcStream
{
    private const byte SchemaMessage = 1;
    private const byte DictionaryBatchMessage = 2;
    private const byte RecordBatchMessage = 3;

    public static ArrowStreamLayout ReadLayout(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            return ReadLayout(path, stream);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException($"{path}: cannot be read: {e.Message}", e);
        }
    }

    private static ArrowStreamLayout ReadLayout(string path, FileStream stream)
    {
        var fileLength = stream.Length;
        Schema? schema = null;
        var batches = new List<ArrowBatchLayout>();
        Span<byte> prefix = stackalloc byte[8];
        // The IPC file format (pyarrow.ipc.new_file, Feather 2) is the same stream between the magic "ARROW1" padded
        // to 8 bytes and a footer the end marker keeps the loop from reaching.
        long position = fileLength >= 8 && stream.Read(prefix) == 8 && prefix[..6].SequenceEqual("ARROW1"u8) ? 8 : 0;
        while (position < fileLength)
        {
            var messageStart = position;
            if (fileLength - position < 4)
                throw new DataFormatException($"{path}: truncated message at offset {position}: {fileLength - position} bytes where a message length belongs");
            stream.Position = position;
            stream.ReadExactly(prefix[..4]);
            var first = BinaryPrimitives.ReadInt32LittleEndian(prefix);
            int metadataLength;
            if (first == -1)
            {
                if (fileLength - position < 8)
                    throw new DataFormatException($"{path}: truncated message at offset {position}: a continuation marker without a length");
                stream.ReadExactly(prefix.Slice(4, 4));
                metadataLength = BinaryPrimitives.ReadInt32LittleEndian(prefix[4..]);
                position += 8;
            }
            else
            {
                metadataLength = first;
                position += 4;
            }
            if (metadataLength == 0) break;
            if (metadataLength < 0 || metadataLength > fileLength - position)
                throw new DataFormatException($"{path}: message at offset {messageStart} declares {metadataLength} metadata bytes; " +
                                              $"the file has {fileLength - position} bytes after it. Not an Arrow IPC stream (or a truncated one)?");
            var metadata = new byte[metadataLength];
            stream.ReadExactly(metadata);
            var message = new FlatTable(metadata, path, messageStart);
            var headerType = message.Byte(1);
            var bodyLength = message.Long(3);
            var bodyStart = position + metadataLength;
            if (bodyLength < 0 || bodyLength > fileLength - bodyStart)
                throw new DataFormatException($"{path}: truncated data: the message at offset {messageStart} has a body of {bodyLength} bytes " +
                                              $"from offset {bodyStart}; the file ends at offset {fileLength}");
            switch (headerType)
            {
                case SchemaMessage:
                    if (schema is not null) throw new DataFormatException($"{path}: a second schema message at offset {messageStart}");
                    schema = ReadSchema(path, metadata, first == -1);
                    break;
                case RecordBatchMessage:
                    if (schema is null) throw new DataFormatException($"{path}: a record batch at offset {messageStart} before the schema");
                    batches.Add(ReadRecordBatch(message.Table(2), bodyStart, bodyLength, path, messageStart));
                    break;
                case DictionaryBatchMessage:
                    break; // dictionaries belong to dictionary-encoded columns, never to activations
                default:
                    throw new DataFormatException($"{path}: message at offset {messageStart} has header type {headerType}; an Arrow IPC stream holds a schema " +
                                                  "(1), dictionary batches (2) and record batches (3)");
            }
            position = bodyStart + bodyLength;
        }
        if (schema is null) throw new DataFormatException($"{path}: no schema message; not an Arrow IPC stream");
        return new ArrowStreamLayout(schema, batches);
    }

    private static Schema ReadSchema(string path, byte[] metadata, bool continuation)
    {
        // The schema message alone, followed by the end marker, is a stream Apache.Arrow reads.
        using var buffer = new MemoryStream();
        Span<byte> word = stackalloc byte[4];
        if (continuation) buffer.Write([0xFF, 0xFF, 0xFF, 0xFF]);
        BinaryPrimitives.WriteInt32LittleEndian(word, metadata.Length);
        buffer.Write(word);
        buffer.Write(metadata);
        buffer.Write([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
        buffer.Position = 0;
        try
        {
            using var reader = new ArrowStreamReader(buffer);
            return reader.Schema;
        }
        catch (Exception e) when (e is not DataFormatException)
        {
            throw new DataFormatException($"{path}: the schema message is not readable: {e.Message}", e);
        }
    }

    private static ArrowBatchLayout ReadRecordBatch(FlatTable batch, long bodyStart, long bodyLength, string path, long messageStart)
    {
        if (batch.Has(3))
            throw new DataFormatException($"{path}: the record batch at offset {messageStart} is compressed (LZ4 or ZSTD body compression); " +
                                          "activations are read from uncompressed streams, as datasets writes them");
        var rows = batch.Long(0);
        var (nodeStart, nodeCount) = batch.Vector(1, 16);
        var (bufferStart, bufferCount) = batch.Vector(2, 16);
        var nodes = new ArrowFieldNode[nodeCount];
        for (var i = 0; i < nodeCount; i++)
            nodes[i] = new ArrowFieldNode(batch.ReadLong(nodeStart + 16 * i), batch.ReadLong(nodeStart + 16 * i + 8));
        var buffers = new ArrowBodyBuffer[bufferCount];
        for (var i = 0; i < bufferCount; i++)
        {
            long offset = batch.ReadLong(bufferStart + 16 * i), length = batch.ReadLong(bufferStart + 16 * i + 8);
            if (offset < 0 || length < 0 || offset > bodyLength - length)
                throw new DataFormatException($"{path}: buffer {i} of the record batch at offset {messageStart} spans [{offset}, {offset + length}) " +
                                              $"of a {bodyLength}-byte body");
            buffers[i] = new ArrowBodyBuffer(bodyStart + offset, length);
        }
        if (rows < 0) throw new DataFormatException($"{path}: the record batch at offset {messageStart} has {rows} rows");
        return new ArrowBatchLayout(rows, nodes, buffers);
    }

    /// <summary>A flatbuffer table: a signed offset back to its vtable, whose uint16 entries (after the vtable's
    /// own size and the table's size) are the offsets of the fields from the table's start, 0 when absent.
    /// Every read is bounds-checked, so a corrupt header is an error naming the message, not a crash.</summary>
    private readonly struct FlatTable
    {
        private readonly byte[] buffer;
        private readonly int position;
        private readonly string path;
        private readonly long messageStart;

        public FlatTable(byte[] buffer, string path, long messageStart)
            : this(buffer, 0, path, messageStart) =>
            position = Uoffset(0);

        private FlatTable(byte[] buffer, int position, string path, long messageStart)
        {
            this.buffer = buffer;
            this.position = position;
            this.path = path;
            this.messageStart = messageStart;
        }

        private DataFormatException Corrupt(string what) =>
            new($"{path}: the message header at offset {messageStart} is not a valid flatbuffer ({what})");

        private void Check(long at, int size)
        {
            if (at < 0 || at + size > buffer.Length) throw Corrupt($"{size} bytes at {at} lie outside its {buffer.Length} bytes");
        }

        private int Int32At(long at) { Check(at, 4); return BinaryPrimitives.ReadInt32LittleEndian(buffer.AsSpan((int)at)); }

        private int Uoffset(long at) => checked((int)(at + (uint)Int32At(at)));

        private int FieldOffset(int field)
        {
            var vtable = position - (long)Int32At(position);
            Check(vtable, 4);
            var vtableSize = BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan((int)vtable));
            var entry = 4 + 2 * field;
            if (entry + 2 > vtableSize) return 0;
            Check(vtable + entry, 2);
            return BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan((int)vtable + entry));
        }

        public bool Has(int field) => FieldOffset(field) != 0;

        public byte Byte(int field)
        {
            var offset = FieldOffset(field);
            if (offset == 0) return 0;
            Check(position + offset, 1);
            return buffer[position + offset];
        }

        public long Long(int field)
        {
            var offset = FieldOffset(field);
            return offset == 0 ? 0 : ReadLong(position + offset);
        }

        public long ReadLong(long at) { Check(at, 8); return BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan((int)at)); }

        public FlatTable Table(int field)
        {
            var offset = FieldOffset(field);
            if (offset == 0) throw Corrupt($"field {field} is missing");
            return new FlatTable(buffer, Uoffset(position + offset), path, messageStart);
        }

        /// <summary>A vector of structs of <paramref name="elementSize"/> bytes: where its first element lies and how many.</summary>
        public (int Start, int Count) Vector(int field, int elementSize)
        {
            var offset = FieldOffset(field);
            if (offset == 0) return (0, 0);
            var at = Uoffset(position + offset);
            var count = Int32At(at);
            if (count < 0 || (long)count * elementSize > buffer.Length - at - 4) throw Corrupt($"a vector of {count} elements at {at}");
            return (at + 4, count);
        }
    }
}
