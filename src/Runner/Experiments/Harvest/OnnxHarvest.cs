using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>A harvest from an ONNX model: the model, the nodes (node names or tensor names) whose outputs are
/// harvested, the inputs (.npy for a one-input model, or .safetensors with a tensor per model input), rows per run
/// (0: 32, or the model's fixed batch size), tokens per shard.</summary>
public sealed record OnnxHarvestConfig(string Model, IReadOnlyList<string> Nodes, string Inputs, int BatchRows = 0, long ShardTokens = 1L << 20);

/// <summary>A tensor a model computes, as --list-nodes shows it: the node (its name, or "" when unnamed), its
/// operator, the output tensor's name, element type and shape (symbolic dimensions by name, unknown ones as "?").</summary>
public sealed record OnnxTensorInfo(string Node, string OpType, string Tensor, string ElementType, IReadOnlyList<string> Shape);

/// <summary>
/// Approach 2 on any model: run an ONNX model with ONNX Runtime on the user's inputs and keep the intermediate
/// tensors asked for. The named tensors become graph outputs of a copy of the model (held in memory; ONNX Runtime
/// infers their types), the inputs run in batches of rows, and each output [rows, ..., d] is flattened to tokens × d
/// (every dimension but the last is a token axis) and streamed into .npy shards, one folder per node, that
/// factorize, eval and encode read. harvest.json says what was harvested and is rewritten after every finished
/// shard, so an interrupted harvest keeps (and lists) the shards it finished.
/// </summary>
public static class OnnxHarvest
{
    public const string ManifestFile = "harvest.json";
    public const string DataConfigFile = "data.json";
    public const int DefaultBatchRows = 32;

    /// <summary>One harvested node: the tensor, its folder, the shape of its first batch's output, d, tokens per input
    /// row, the tokens in finished shards, those shards (relative to the harvest folder), and the tokens written that
    /// hold NaN or infinity (with the first of them, or -1).</summary>
    public sealed record NodeResult(string Node, string Tensor, string OpType, string Folder, long[] Shape, int D, long TokensPerRow,
        long Tokens, IReadOnlyList<string> Shards, long NonFiniteTokens = 0, long FirstNonFiniteToken = -1);

    public sealed record Result(bool Completed, long Rows, long TotalRows, int BatchRows, IReadOnlyList<NodeResult> Nodes, double Seconds);

    /// <summary>Every tensor a node of the model computes, with the type and shape ONNX Runtime infers for it.</summary>
    public static IReadOnlyList<OnnxTensorInfo> ListNodes(string modelPath)
    {
        var model = OnnxModel.Read(modelPath);
        var tensors = model.Nodes.SelectMany(n => n.Outputs).Where(t => t.Length > 0).Distinct().ToList();
        using var session = CreateSession(model, tensors);
        var metadata = session.OutputMetadata;
        return model.Nodes.SelectMany(n => n.Outputs.Where(t => t.Length > 0).Select(t =>
        {
            var info = metadata.GetValueOrDefault(t);
            return new OnnxTensorInfo(n.Name, n.OpType, t, info is null ? "?" : TypeName(info),
                info is null || !info.IsTensor ? [] : Shape(info));
        })).ToList();
    }

    /// <summary>Harvests into <paramref name="outDir"/>, claimed as a harvest of this model, these nodes and inputs
    /// (<paramref name="force"/>: see <see cref="RunFolder.Claim"/>). The space the shards need is checked once the
    /// first batch gives their size. Tokens holding NaN or infinity are written as computed and counted per node
    /// (harvest.json's non_finite_tokens): the readers refuse or skip them (data.non_finite).</summary>
    public static Result Run(OnnxHarvestConfig config, string outDir, IRunProgress progress, CancellationToken cancel, bool force = false)
    {
        if (config.Nodes.Count == 0) throw new ConfigException("--node is required (one or more; --list-nodes lists them)");
        if (config.ShardTokens < 1) throw new ConfigException($"--shard-tokens is {config.ShardTokens}; valid: >= 1");
        if (config.BatchRows < 0) throw new ConfigException($"--batch-size is {config.BatchRows}; valid: >= 1 (0: automatic)");
        var model = OnnxModel.Read(config.Model);
        var targets = config.Nodes.Select(n => Resolve(model, n)).ToList();
        foreach (var group in targets.GroupBy(t => t.Tensor).Where(g => g.Count() > 1))
            throw new ConfigException($"--node {string.Join(" and --node ", group.Select(t => t.Asked))} name the same tensor {group.Key}");
        var inputs = StoredArrays.Open(config.Inputs);
        RunFolder.Claim(outDir, Harvest.Kind, Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteString("onnx", Path.GetFullPath(config.Model));
            w.WriteStartArray("nodes");
            foreach (var node in config.Nodes) w.WriteStringValue(node);
            w.WriteEndArray();
            w.WriteString("inputs", Path.GetFullPath(config.Inputs));
            w.WriteNumber("batch_size", config.BatchRows);
            w.WriteNumber("shard_tokens", config.ShardTokens);
            w.WriteEndObject();
        }), force);

        using var session = CreateSession(model, targets.Select(t => t.Tensor));
        var feeds = MatchInputs(session, model, inputs, config.Inputs);
        var rows = feeds[0].Array.Rows;
        var batchRows = BatchRows(session, config.BatchRows, config.Model, rows, config.Inputs);
        foreach (var target in targets)
        {
            var meta = session.OutputMetadata[target.Tensor];
            if (!meta.IsTensor || meta.ElementDataType is not (TensorElementType.Float or TensorElementType.Float16 or TensorElementType.BFloat16 or TensorElementType.Double))
                throw new ConfigException($"--node {target.Asked}: tensor {target.Tensor} is {TypeName(meta)}; activations are float tensors");
        }

        var folders = FolderNames(targets.Select(t => t.Asked).ToList());
        var harvests = targets.Select((t, i) => new NodeHarvest(t, folders[i], Path.Combine(outDir, folders[i]), config.ShardTokens)).ToList();
        foreach (var h in harvests)
        {
            if (Directory.Exists(h.FolderPath))
                foreach (var stale in Directory.EnumerateFiles(h.FolderPath, "acts_*.npy")) File.Delete(stale);
            Directory.CreateDirectory(h.FolderPath);
        }

        var clock = Stopwatch.StartNew();
        var phase = $"harvest {Path.GetFileName(config.Model)}";
        var inputNames = feeds.Select(f => f.Name).ToArray();
        var outputNames = targets.Select(t => t.Tensor).ToArray();
        long done = 0;
        void WriteManifest(bool complete) =>
            AtomicFile.WriteText(Path.Combine(outDir, ManifestFile), Manifest(config, feeds, rows, done, batchRows, complete, harvests, clock.Elapsed.TotalSeconds));
        using var runOptions = new RunOptions();
        var streams = feeds.Select(f => new FileStream(f.Array.Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16)).ToList();
        try
        {
            WriteManifest(complete: false);
            progress.Report(phase, 0, rows);
            while (done < rows)
            {
                if (cancel.IsCancellationRequested) break;
                var count = (int)Math.Min(batchRows, rows - done);
                var values = new List<OrtValue>();
                try
                {
                    for (var i = 0; i < feeds.Count; i++) values.Add(feeds[i].Read(streams[i], done, count));
                    using var outputs = RunBatch(session, runOptions, inputNames, values, outputNames, config.Model, done, count);
                    var index = 0;
                    foreach (var output in outputs)
                    {
                        if (harvests[index].Append(output, count, rows, done)) WriteManifest(complete: false);
                        index++;
                    }
                }
                finally
                {
                    foreach (var value in values) value.Dispose();
                }
                if (done == 0)
                    RunFolder.CheckFreeSpace(outDir, harvests.Sum(h => h.Bytes),
                        $"harvesting {rows} input rows ({string.Join(", ", harvests.Select(h => $"{h.Result.TokensPerRow * rows} tokens of d = {h.Result.D}"))})",
                        "use fewer input rows or nodes");
                done += count;
                progress.Report(phase, done, rows);
            }
        }
        finally
        {
            foreach (var stream in streams) stream.Dispose();
            foreach (var h in harvests) h.Dispose(); // an unfinished shard is removed; finished ones stay
        }
        var completed = done == rows;
        WriteManifest(completed);
        if (completed)
            foreach (var h in harvests) h.WriteDataConfig(batchRows);
        RunFolder.Finish(outDir, completed ? RunFolder.Status.Completed : RunFolder.Status.Interrupted);
        return new Result(completed, done, rows, batchRows, harvests.Select(h => h.Result).ToList(), clock.Elapsed.TotalSeconds);
    }

    private static IDisposableReadOnlyCollection<OrtValue> RunBatch(InferenceSession session, RunOptions options, string[] inputNames,
        List<OrtValue> values, string[] outputNames, string model, long first, int count)
    {
        try
        {
            return session.Run(options, inputNames, values, outputNames);
        }
        catch (OnnxRuntimeException e)
        {
            throw new DataFormatException($"{model}: ONNX Runtime failed on input rows [{first}, {first + count}): {e.Message}", e);
        }
    }

    /// <summary>A node name (its only output), or a tensor name some node outputs.</summary>
    private sealed record Target(string Asked, string Node, string OpType, string Tensor);

    private static Target Resolve(OnnxModel model, string asked)
    {
        var byName = model.Nodes.Where(n => n.Name == asked).ToList();
        if (byName.Count == 1)
        {
            var outputs = byName[0].Outputs.Where(o => o.Length > 0).ToList();
            if (outputs.Count != 1)
                throw new ConfigException($"--node {asked}: the node has {outputs.Count} outputs ({string.Join(", ", outputs)}); name the tensor instead");
            return new Target(asked, asked, byName[0].OpType, outputs[0]);
        }
        var producer = model.Nodes.FirstOrDefault(n => n.Outputs.Contains(asked));
        if (producer is not null) return new Target(asked, producer.Name, producer.OpType, asked);
        if (model.Inputs.Contains(asked))
            throw new ConfigException($"--node {asked} is an input of the model; harvest what a node computes from it");
        var near = model.Nodes.SelectMany(n => new[] { n.Name }.Concat(n.Outputs))
            .Where(s => s.Length > 0 && (s.Contains(asked, StringComparison.OrdinalIgnoreCase) || asked.Contains(s, StringComparison.OrdinalIgnoreCase)))
            .Distinct().Take(8).ToList();
        throw new ConfigException($"--node {asked}: no node or tensor of that name in {model.Path}" +
                                  (near.Count > 0 ? $"; similar: {string.Join(", ", near)}" : "") + "; --list-nodes lists them all");
    }

    private static InferenceSession CreateSession(OnnxModel model, IEnumerable<string> outputs)
    {
        var bytes = model.WithOutputs(outputs);
        var options = new SessionOptions();
        try
        {
            // The copy lives in memory: external weight files are found beside the original model.
            options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path",
                Path.GetDirectoryName(Path.GetFullPath(model.Path)) ?? ".");
            return new InferenceSession(bytes, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new DataFormatException($"{model.Path}: ONNX Runtime cannot load the model: {e.Message}", e);
        }
        catch (TypeInitializationException e) when (e.InnerException is DllNotFoundException missing)
        {
            throw new DllNotFoundException($"ONNX Runtime's native library (libonnxruntime) was not found beside the executable: {missing.Message}", e);
        }
        finally
        {
            options.Dispose();
        }
    }

    /// <summary>A model input and the stored array that feeds it.</summary>
    private sealed record Feed(string Name, StoredArray Array, TensorElementType Type, long[] RowShape)
    {
        public OrtValue Read(FileStream stream, long first, int count)
        {
            var shape = new long[RowShape.Length + 1];
            shape[0] = count;
            RowShape.CopyTo(shape, 1);
            var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, Type, shape);
            try
            {
                var destination = value.GetTensorMutableRawData();
                var stored = Element(Array.Element);
                if (stored == Type) Array.ReadRows(stream, first, count, destination);
                else
                {
                    var raw = new byte[count * Array.RowBytes];
                    Array.ReadRows(stream, first, count, raw);
                    Convert(raw, Array.Element, destination, Type);
                }
                return value;
            }
            catch
            {
                value.Dispose();
                throw;
            }
        }
    }

    private static List<Feed> MatchInputs(InferenceSession session, OnnxModel model, List<StoredArray> arrays, string path)
    {
        var wanted = session.InputMetadata;
        var names = string.Join(", ", wanted.Select(p => $"{p.Key} ({TypeName(p.Value)} [{string.Join(", ", Shape(p.Value))}])"));
        var chosen = new List<(string Name, StoredArray Array)>();
        if (Path.GetExtension(path).Equals(".npy", StringComparison.OrdinalIgnoreCase))
        {
            if (wanted.Count != 1)
                throw new ConfigException($"--inputs {path}: the model has {wanted.Count} inputs ({names}); give a .safetensors file with a tensor named after each");
            chosen.Add((wanted.Keys.Single(), arrays[0]));
        }
        else
        {
            foreach (var name in wanted.Keys)
            {
                var array = arrays.FirstOrDefault(a => a.Name == name)
                            ?? throw new ConfigException($"--inputs {path}: no tensor named {name}; the model's inputs are {names}, the file holds " +
                                                         string.Join(", ", arrays.Select(a => a.Name)));
                chosen.Add((name, array));
            }
            var extra = arrays.Where(a => !wanted.ContainsKey(a.Name)).Select(a => a.Name).ToList();
            if (extra.Count > 0)
                throw new ConfigException($"--inputs {path}: holds tensors that are not inputs of the model ({string.Join(", ", extra)}); the inputs are {names}");
        }
        var feeds = new List<Feed>();
        foreach (var (name, array) in chosen)
        {
            var meta = wanted[name];
            var what = $"--inputs {path}: {array.Name} [{string.Join(", ", array.Shape)}] of {StoredArray.Describe(array.Element)}";
            if (!meta.IsTensor) throw new ConfigException($"{what} feeds {name}, which is not a tensor input");
            var type = meta.ElementDataType;
            var stored = Element(array.Element);
            if (stored != type && !Convertible(array.Element, type))
                throw new ConfigException($"{what}: the model's input {name} is {TypeName(meta)}");
            var dims = meta.Dimensions;
            if (dims.Length != array.Shape.Length)
                throw new ConfigException($"{what}: the model's input {name} has rank {dims.Length} ([{string.Join(", ", Shape(meta))}])");
            for (var k = 1; k < dims.Length; k++)
                if (dims[k] > 0 && dims[k] != array.Shape[k])
                    throw new ConfigException($"{what}: the model's input {name} has dimension {k} = {dims[k]} ([{string.Join(", ", Shape(meta))}])");
            feeds.Add(new Feed(name, array, type, array.Shape[1..]));
        }
        var rows = feeds[0].Array.Rows;
        foreach (var feed in feeds.Where(f => f.Array.Rows != rows))
            throw new ConfigException($"--inputs {path}: {feeds[0].Name} has {rows} rows, {feed.Name} has {feed.Array.Rows}; inputs share their first dimension");
        if (rows == 0) throw new ConfigException($"--inputs {path}: no rows to run");
        return feeds;
    }

    private static int BatchRows(InferenceSession session, int asked, string model, long rows, string inputs)
    {
        var fixedBatch = session.InputMetadata.Values.Where(m => m.IsTensor && m.Dimensions.Length > 0 && m.Dimensions[0] > 0)
            .Select(m => m.Dimensions[0]).Distinct().ToList();
        if (fixedBatch.Count == 0) return asked > 0 ? asked : DefaultBatchRows;
        const string dynamic = "export with dynamic_axes={\"input\": {0: \"batch\"}} to choose the batch";
        if (asked > 0 && asked != fixedBatch[0])
            throw new ConfigException($"--batch-size is {asked}, but {model} was exported with a fixed batch of {fixedBatch[0]} ({dynamic})");
        if (rows % fixedBatch[0] != 0)
            throw new ConfigException($"--inputs {inputs}: {rows} rows, not a multiple of the fixed batch of {fixedBatch[0]} {model} was exported with " +
                                      $"(drop the last {rows % fixedBatch[0]} rows, or {dynamic})");
        return fixedBatch[0];
    }

    /// <summary>One harvested tensor streaming into its shards.</summary>
    private sealed class NodeHarvest(Target target, string folder, string folderPath, long shardTokens) : IDisposable
    {
        private readonly List<string> shards = [];
        private ActivationShardWriter? writer;
        private long shardLeft;
        private long written;       // tokens appended, the unfinished shard's included
        private long finished;      // tokens in finished shards
        private long total;
        private float[] scratch = [];
        private long[] shape = [];
        private int d;
        private long tokensPerRow;
        private long nonFinite;
        private long firstNonFinite = -1;

        public string FolderPath => folderPath;
        public Target Target => target;

        /// <summary>The bytes of all its shards (float32 values; a header per shard).</summary>
        public double Bytes => 4.0 * total * d + 128.0 * Math.Ceiling(total / (double)shardTokens);

        public NodeResult Result => new(target.Asked, target.Tensor, target.OpType, folder, shape, d, tokensPerRow, finished, shards.ToList(),
            nonFinite, firstNonFinite);

        /// <summary>Appends one batch's output; true when a shard was finished.</summary>
        public bool Append(OrtValue output, int batchRows, long totalRows, long firstRow)
        {
            var info = output.GetTensorTypeAndShape();
            var dims = info.Shape;
            var what = $"--node {target.Asked} (tensor {target.Tensor})";
            if (dims.Length < 2)
                throw new DataFormatException($"{what}: output of shape [{string.Join(", ", dims)}]; activations need a token axis and a last axis d");
            var values = dims.Aggregate(1L, (a, b) => a * b);
            var tokens = values / dims[^1];
            if (written == 0 && shards.Count == 0 && writer is null)
            {
                if (tokens % batchRows != 0)
                    throw new DataFormatException($"{what}: output of shape [{string.Join(", ", dims)}] for {batchRows} input rows; its tokens do not " +
                                                  "scale with the rows (the batch must be one of its leading dimensions)");
                shape = dims;
                d = checked((int)dims[^1]);
                tokensPerRow = tokens / batchRows;
                total = tokensPerRow * totalRows;
            }
            if (dims[^1] != d || tokens != tokensPerRow * batchRows)
                throw new DataFormatException($"{what}: output of shape [{string.Join(", ", dims)}] for rows [{firstRow}, {firstRow + batchRows}); " +
                                              $"the first batch gave {tokensPerRow} tokens per row of d = {d}");
            var data = ToFloats(output, info.ElementDataType, values);
            CountNonFinite(data, tokens);
            var shardDone = false;
            var offset = 0L;
            while (offset < tokens)
            {
                if (writer is null)
                {
                    var count = Math.Min(shardTokens, total - written);
                    var path = Path.Combine(folderPath, $"acts_{shards.Count:D5}.npy");
                    writer = ActivationShardWriter.Create(path, ActivationFileFormat.Npy, count, d);
                    shardLeft = count;
                }
                var take = Math.Min(shardLeft, tokens - offset);
                writer.Append(data.Slice((int)(offset * d), (int)(take * d)));
                offset += take;
                written += take;
                shardLeft -= take;
                if (shardLeft == 0)
                {
                    writer.Complete();
                    writer.Dispose();
                    writer = null;
                    this.finished = written;
                    shards.Add(Path.Combine(folder, $"acts_{shards.Count:D5}.npy"));
                    shardDone = true;
                }
            }
            return shardDone;
        }

        // A sum is finite only when every term is (NaN and infinities propagate); only then are tokens looked at one by one.
        private void CountNonFinite(ReadOnlySpan<float> data, long tokens)
        {
            if (float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum(data))) return;
            for (var t = 0L; t < tokens; t++)
            {
                var token = data.Slice((int)(t * d), d);
                if (float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum(token)) || AllFinite(token)) continue;
                if (firstNonFinite < 0) firstNonFinite = written + t;
                nonFinite++;
            }
        }

        private static bool AllFinite(ReadOnlySpan<float> values)
        {
            foreach (var v in values)
                if (!float.IsFinite(v)) return false;
            return true;
        }

        private ReadOnlySpan<float> ToFloats(OrtValue output, TensorElementType type, long count)
        {
            if (type == TensorElementType.Float) return output.GetTensorDataAsSpan<float>();
            if (scratch.Length < count) scratch = new float[count];
            var destination = scratch.AsSpan(0, (int)count);
            switch (type)
            {
                case TensorElementType.Float16:
                    var halves = output.GetTensorDataAsSpan<Float16>();
                    for (var i = 0; i < destination.Length; i++) destination[i] = halves[i].ToFloat();
                    break;
                case TensorElementType.BFloat16:
                    var brains = output.GetTensorDataAsSpan<BFloat16>();
                    for (var i = 0; i < destination.Length; i++) destination[i] = brains[i].ToFloat();
                    break;
                default:
                    var doubles = output.GetTensorDataAsSpan<double>();
                    for (var i = 0; i < destination.Length; i++) destination[i] = (float)doubles[i];
                    break;
            }
            return destination;
        }

        /// <summary>data.json beside the shards: the data section eval and encode read (--data), all the tokens.</summary>
        public void WriteDataConfig(int batchRows)
        {
            var batch = (int)Math.Clamp(tokensPerRow * batchRows, 1, 4096);
            AtomicFile.WriteText(Path.Combine(folderPath, DataConfigFile), Json.Document(w =>
            {
                w.WriteStartObject();
                w.WriteStartObject("data");
                w.WriteStartArray("files");
                w.WriteStringValue("acts_*.npy");
                w.WriteEndArray();
                w.WriteString("format", "npy");
                w.WriteEndObject();
                w.WriteNumber("batch_size", batch);
                w.WriteNumber("tokens", finished);
                w.WriteEndObject();
            }));
        }

        public void Dispose()
        {
            writer?.Dispose();
            writer = null;
        }
    }

    private static string Manifest(OnnxHarvestConfig config, List<Feed> feeds, long rows, long done, int batchRows, bool complete,
        List<NodeHarvest> harvests, double seconds) => Json.Document(w =>
    {
        w.WriteStartObject();
        w.WriteString("source", "onnx");
        w.WriteString("model", Path.GetFullPath(config.Model));
        w.WriteString("inputs", Path.GetFullPath(config.Inputs));
        w.WriteStartObject("input_tensors");
        foreach (var feed in feeds)
        {
            w.WriteStartObject(feed.Name);
            w.WriteString("array", feed.Array.Name);
            w.WriteString("dtype", StoredArray.Describe(feed.Array.Element));
            w.WriteStartArray("shape");
            foreach (var s in feed.Array.Shape) w.WriteNumberValue(s);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.WriteNumber("input_rows", rows);
        w.WriteNumber("input_rows_run", done);
        w.WriteNumber("batch_rows", batchRows);
        w.WriteNumber("shard_tokens", config.ShardTokens);
        w.WriteBoolean("complete", complete);
        w.WriteNumber("seconds", Math.Round(seconds, 3));
        w.WriteStartArray("nodes");
        foreach (var r in harvests.Select(h => h.Result))
        {
            w.WriteStartObject();
            w.WriteString("node", r.Node);
            w.WriteString("tensor", r.Tensor);
            w.WriteString("op_type", r.OpType);
            w.WriteString("folder", r.Folder);
            w.WriteStartArray("batch_shape");
            foreach (var s in r.Shape) w.WriteNumberValue(s);
            w.WriteEndArray();
            w.WriteNumber("d", r.D);
            w.WriteNumber("tokens_per_row", r.TokensPerRow);
            w.WriteNumber("tokens", r.Tokens);
            w.WriteNumber("non_finite_tokens", r.NonFiniteTokens);
            w.WriteStartArray("shards");
            foreach (var s in r.Shards) w.WriteStringValue(s);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    });

    /// <summary>Folder names from the names asked for: path separators and other awkward characters become '_', a leading
    /// one is dropped, and repeats get a suffix.</summary>
    private static List<string> FolderNames(List<string> names)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        var result = new List<string>();
        foreach (var name in names)
        {
            var safe = new string(name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' ? c : '_').ToArray()).Trim('_', '.');
            if (safe.Length == 0) safe = "node";
            var unique = safe;
            for (var k = 2; !used.Add(unique); k++) unique = $"{safe}_{k}";
            result.Add(unique);
        }
        return result;
    }

    private static TensorElementType Element(StoredElement e) => e switch
    {
        StoredElement.Float32 => TensorElementType.Float,
        StoredElement.Float16 => TensorElementType.Float16,
        StoredElement.BFloat16 => TensorElementType.BFloat16,
        StoredElement.Float64 => TensorElementType.Double,
        StoredElement.Int64 => TensorElementType.Int64,
        StoredElement.Int32 => TensorElementType.Int32,
        StoredElement.Int16 => TensorElementType.Int16,
        StoredElement.Int8 => TensorElementType.Int8,
        StoredElement.UInt8 => TensorElementType.UInt8,
        _ => TensorElementType.Bool,
    };

    // NumPy's defaults (int64, float64) and torch's (int64, float32) often differ from an export's input types:
    // integers widen or narrow among themselves, float64 narrows to float32.
    private static bool Convertible(StoredElement from, TensorElementType to) =>
        (from is StoredElement.Int32 or StoredElement.Int64 && to is TensorElementType.Int32 or TensorElementType.Int64) ||
        (from == StoredElement.Float64 && to == TensorElementType.Float);

    private static void Convert(ReadOnlySpan<byte> raw, StoredElement from, Span<byte> destination, TensorElementType to)
    {
        switch (from, to)
        {
            case (StoredElement.Int32, TensorElementType.Int64):
            {
                var source = MemoryMarshal.Cast<byte, int>(raw);
                var target = MemoryMarshal.Cast<byte, long>(destination);
                for (var i = 0; i < source.Length; i++) target[i] = source[i];
                break;
            }
            case (StoredElement.Int64, TensorElementType.Int32):
            {
                var source = MemoryMarshal.Cast<byte, long>(raw);
                var target = MemoryMarshal.Cast<byte, int>(destination);
                for (var i = 0; i < source.Length; i++)
                    target[i] = source[i] is >= int.MinValue and <= int.MaxValue ? (int)source[i]
                        : throw new DataFormatException($"input value {source[i]} does not fit the model's int32 input");
                break;
            }
            default:
            {
                var source = MemoryMarshal.Cast<byte, double>(raw);
                var target = MemoryMarshal.Cast<byte, float>(destination);
                for (var i = 0; i < source.Length; i++) target[i] = (float)source[i];
                break;
            }
        }
    }

    private static string TypeName(NodeMetadata meta) => meta.IsTensor ? meta.ElementDataType switch
    {
        TensorElementType.Float => "float32",
        TensorElementType.Float16 => "float16",
        TensorElementType.BFloat16 => "bfloat16",
        TensorElementType.Double => "float64",
        var t => t.ToString().ToLowerInvariant(),
    } : meta.OnnxValueType.ToString();

    private static string[] Shape(NodeMetadata meta) =>
        meta.Dimensions.Select((d, i) => d > 0 ? d.ToString(System.Globalization.CultureInfo.InvariantCulture)
            : i < meta.SymbolicDimensions.Length && meta.SymbolicDimensions[i] is { Length: > 0 } name ? name : "?").ToArray();
}
