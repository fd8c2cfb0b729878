using System.Runtime.InteropServices;
using System.Text.Json;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Apache.Arrow.Types;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Tests;

/// <summary>
/// Hugging Face datasets / SAELens activation caches (Arrow IPC streams in save_to_disk folders) as activation
/// shards. The caches are written with Apache.Arrow in the layout datasets' save_to_disk and SAELens's
/// CacheActivationsRunner produce (files, state.json, dataset_info.json, schema metadata, the Array2D extension);
/// the reader locates record batches with its own header parser, so writer and reader are independent.
/// </summary>
public class ArrowCacheTests
{
    private const string Hook = "blocks.0.hook_resid_pre";

    /// <summary>Values [rows][context][d] that name their place: row, position and component are recoverable.</summary>
    private static float[] Numbered(int rows, int context, int d) =>
        Enumerable.Range(0, rows * context * d).Select(i => i / d * 0.5f + i % d * 0.001f - 3f).ToArray();

    private static float[] ReadAll(IActivationShard shard)
    {
        var values = new float[shard.Tokens * shard.D];
        shard.Read(0, values);
        return values;
    }

    [Test]
    public void ASaeLensCacheIsReadValueForValueInTheOrderOfItsFiles()
    {
        var dir = TestSupport.TempDirectory("arrow-cache");
        const int rows = 7, context = 5, d = 6;
        var values = Numbered(rows, context, d);
        var tokenIds = Enumerable.Range(0, rows * context).Select(i => 1000 + i).ToArray();
        SaeLensActivationCache.Write(dir, Hook, values, context, d, tokenIds: tokenIds, rowsPerFile: 3, rowsPerBatch: 2);

        // The folder is what save_to_disk leaves: numbered data files, listed in order by state.json.
        Assert.That(Directory.GetFiles(dir).Select(Path.GetFileName).Order(), Is.EqualTo(new[]
        {
            "data-00000-of-00003.arrow", "data-00001-of-00003.arrow", "data-00002-of-00003.arrow", "dataset_info.json", "state.json",
        }));
        using (var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "state.json"))))
            Assert.That(state.RootElement.GetProperty("_data_files").EnumerateArray().Select(e => e.GetProperty("filename").GetString()),
                Is.EqualTo(new[] { "data-00000-of-00003.arrow", "data-00001-of-00003.arrow", "data-00002-of-00003.arrow" }));
        var folder = HfDatasetFolder.Read(dir);
        Assert.That(folder.Features![Hook].ToString(), Is.EqualTo("Array2D(shape=(5, 6), dtype=float32)"));
        Assert.That(folder.Features["token_ids"].ToString(), Is.EqualTo("List(Value(int32), length=5)"));
        Assert.That(folder.ChooseColumn(null), Is.EqualTo(Hook), "token_ids is not a float array");

        // Each file is an Arrow IPC stream whose schema carries datasets' metadata and the Array2D extension.
        using (var reader = new ArrowStreamReader(File.OpenRead(Path.Combine(dir, "data-00000-of-00003.arrow"))))
        {
            var field = reader.Schema.GetFieldByName(Hook);
            Assert.That(field.Metadata["ARROW:extension:name"], Is.EqualTo("datasets.features.features.Array2DExtensionType"));
            Assert.That(field.Metadata["ARROW:extension:metadata"], Is.EqualTo("[[5, 6], \"float32\"]"));
            using var hf = JsonDocument.Parse(reader.Schema.Metadata["huggingface"]);
            Assert.That(hf.RootElement.GetProperty("info").GetProperty("features").GetProperty(Hook).GetProperty("_type").GetString(), Is.EqualTo("Array2D"));
            Assert.That(reader.ReadNextRecordBatch().Length, Is.EqualTo(2), "record batches of rowsPerBatch rows");
        }

        var shards = new ActivationFiles([dir], ActivationFileFormat.Arrow).Open();
        try
        {
            Assert.That(shards.Select(s => (s.Tokens, s.D, s.DType)), Is.EqualTo(new[]
            {
                (15L, d, ActivationDType.F32), (15L, d, ActivationDType.F32), (5L, d, ActivationDType.F32),
            }), "rows of (context, d) flatten to context tokens each");
            Assert.That(shards.SelectMany(ReadAll).ToArray(), Is.EqualTo(values), "every value, in order");
            // A read across record batches (tokens 8..13 of the first file straddle batches of 10 tokens).
            var part = new float[6 * d];
            shards[0].Read(8, part);
            Assert.That(part, Is.EqualTo(values.AsSpan(8 * d, 6 * d).ToArray()));
        }
        finally
        {
            foreach (var shard in shards) shard.Dispose();
        }
    }

    [Test]
    public void AStreamWrittenByArrowsJavaScriptImplementationIsReadValueForValue()
    {
        // tests/data/arrow-js: written by apache-arrow 21.2.0 for Node (write.js beside it), not by Apache.Arrow for
        // .NET: the reader follows the format, not one writer's habits. Two record batches of 3 and 2 rows of
        // (context 3, d 4), value(row, pos, k) = 8 row + 2 pos + k / 4 - 5, and token_ids 100 row + pos.
        var path = Path.Combine(AppContext.BaseDirectory, "data", "arrow-js", "data-00000-of-00001.arrow");
        using var shard = ArrowShard.Open(path, column: null);
        Assert.That((shard.Column, shard.Tokens, shard.D, shard.DType), Is.EqualTo((Hook, 15L, 4, ActivationDType.F32)));
        var expected = new List<float>();
        for (var row = 0; row < 5; row++)
            for (var pos = 0; pos < 3; pos++)
                for (var k = 0; k < 4; k++) expected.Add(row * 8 + pos * 2 + k * 0.25f - 5);
        Assert.That(ReadAll(shard), Is.EqualTo(expected.ToArray()));
        var layout = ArrowIpcStream.ReadLayout(path);
        Assert.That(layout.Batches.Select(b => b.Rows), Is.EqualTo(new long[] { 3, 2 }));
        Assert.That(layout.Schema.GetFieldByName("token_ids").DataType, Is.TypeOf<FixedSizeListType>());
    }

    [Test]
    public void Float16CachesWidenExactly()
    {
        var dir = TestSupport.TempDirectory("arrow-f16");
        var values = Numbered(4, 3, 5).Select((v, i) => i % 7 == 0 ? -v * 1e-5f : v * 37f).ToArray();
        SaeLensActivationCache.Write(dir, Hook, values, 3, 5, "float16", rowsPerBatch: 3);
        using var shard = new ActivationFiles([dir], ActivationFileFormat.Arrow, Column: Hook).Open().Single();
        Assert.That((shard.Tokens, shard.D, shard.DType), Is.EqualTo((12L, 5, ActivationDType.F16)));
        Assert.That(ReadAll(shard), Is.EqualTo(values.Select(v => (float)(Half)v).ToArray()));
    }

    /// <summary>A file of datasets' other list layouts, written field by field: a string column and a struct
    /// before the activations (whose buffers the reader must count past), fixed-size lists of fixed-size lists
    /// (Sequence(Sequence(Value, d), context)), and a bfloat16 column stored as uint16 bits, one token per row;
    /// three record batches, the middle one empty.</summary>
    private static string WriteMixedFile(string dir, int rows, int context, int d, float[] values, ushort[] bfloat16Bits)
    {
        var nested = new FixedSizeListType(new Field("item", new FixedSizeListType(new Field("item", FloatType.Default, true), d), true), context);
        var bits = new FixedSizeListType(new Field("item", UInt16Type.Default, true), d);
        var meta = new StructType([new Field("id", Int64Type.Default, true), new Field("label", StringType.Default, true)]);
        var schema = new Schema([
            new Field("text", StringType.Default, true), new Field("meta", meta, true), new Field("acts", nested, true),
            new Field("acts_bf16", bits, true),
        ], null);
        var path = Path.Combine(dir, "mixed.arrow");
        using var stream = File.Create(path);
        using var writer = new ArrowStreamWriter(stream, schema);
        foreach (var (first, count) in new[] { (0, 2), (2, 0), (2, rows - 2) })
        {
            var text = new StringArray.Builder();
            var ids = new Int64Array.Builder();
            var labels = new StringArray.Builder();
            for (var r = first; r < first + count; r++)
            {
                text.Append(new string('x', r + 1));
                ids.Append(r);
                labels.Append($"row {r}");
            }
            var leaf = new FloatArray(new ArrowBuffer(MemoryMarshal.AsBytes(values.AsSpan(first * context * d, count * context * d)).ToArray()),
                ArrowBuffer.Empty, count * context * d, 0, 0);
            var inner = new FixedSizeListArray((FixedSizeListType)nested.ValueDataType, count * context, leaf, ArrowBuffer.Empty);
            // acts_bf16 holds one token per row: row r is bfloat16Bits[r * d, (r + 1) * d).
            var bf16 = new UInt16Array(new ArrowBuffer(MemoryMarshal.AsBytes(bfloat16Bits.AsSpan(first * d, count * d)).ToArray()),
                ArrowBuffer.Empty, count * d, 0, 0);
            writer.WriteRecordBatch(new RecordBatch(schema, [
                text.Build(), new StructArray(meta, count, [ids.Build(), labels.Build()], ArrowBuffer.Empty),
                new FixedSizeListArray(nested, count, inner, ArrowBuffer.Empty),
                new FixedSizeListArray(bits, count, bf16, ArrowBuffer.Empty),
            ], count));
        }
        writer.WriteEnd();
        return path;
    }

    [Test]
    public void NestedFixedSizeListsAfterOtherColumnsFlattenToTokens()
    {
        var dir = TestSupport.TempDirectory("arrow-mixed");
        const int rows = 5, context = 3, d = 4;
        var values = Numbered(rows, context, d);
        var bits = Enumerable.Range(0, rows * context * d).Select(i => (ushort)(0x3F80 + i * 3)).ToArray(); // bfloat16 near 1
        var path = WriteMixedFile(dir, rows, context, d, values, bits);

        using (var shard = new ActivationFiles([path], ActivationFileFormat.Arrow, Column: "acts").Open().Single())
        {
            Assert.That((shard.Tokens, shard.D), Is.EqualTo(((long)rows * context, d)));
            Assert.That(ReadAll(shard), Is.EqualTo(values), "an empty record batch in the middle is skipped");
        }
        using (var shard = new ActivationFiles([path], ActivationFileFormat.ArrowBF16, Column: "acts_bf16").Open().Single())
        {
            Assert.That((shard.Tokens, shard.D, shard.DType), Is.EqualTo(((long)rows, d, ActivationDType.BF16)));
            Assert.That(ReadAll(shard), Is.EqualTo(bits.Take(rows * d).Select(b => BitConverter.UInt32BitsToSingle((uint)b << 16)).ToArray()));
        }
        // Without a column name the only float-list column is found; with bfloat16 the only 16-bit one.
        using (var shard = new ActivationFiles([path], ActivationFileFormat.Arrow).Open().Single())
            Assert.That(((ArrowShard)shard).Column, Is.EqualTo("acts"));
        using (var shard = new ActivationFiles([path], ActivationFileFormat.ArrowBF16).Open().Single())
            Assert.That(((ArrowShard)shard).Column, Is.EqualTo("acts_bf16"));
    }

    [Test]
    public void ShuffledBatchesFromArrowEqualThoseFromTheSameDataInNpyShards()
    {
        var dir = TestSupport.TempDirectory("arrow-source");
        const int rows = 11, context = 4, d = 3;
        var values = Numbered(rows, context, d);
        SaeLensActivationCache.Write(Path.Combine(dir, "cache"), Hook, values, context, d, rowsPerFile: 4, rowsPerBatch: 3);
        // The same tokens split the same way (16, 16, 12) as .npy shards.
        int[] fileRows = [4, 4, 3];
        for (int f = 0, row = 0; f < fileRows.Length; row += fileRows[f], f++)
            Npy.WriteF32(Path.Combine(dir, $"part{f}.npy"), values.AsSpan(row * context * d, fileRows[f] * context * d), d);

        var options = new ActivationSourceOptions(BatchTokens: 5, BufferTokens: 13, ChunkTokens: 3, Seed: 4);
        using var arrow = ActivationSource.Open(new ActivationFiles([Path.Combine(dir, "cache")], ActivationFileFormat.Arrow), options);
        using var npy = ActivationSource.Open(new ActivationFiles([Path.Combine(dir, "part*.npy")], ActivationFileFormat.Npy), options);
        Assert.That((arrow.TotalTokens, arrow.D), Is.EqualTo((44L, d)));
        for (var b = 0; b < 30; b++) // over three epochs
            Assert.That(arrow.Next().ToArray(), Is.EqualTo(npy.Next().ToArray()), $"batch {b}");
    }

    [Test]
    public void ErrorsNameTheFileTheColumnAndWhatWasExpected()
    {
        var dir = TestSupport.TempDirectory("arrow-errors");
        var cache = Path.Combine(dir, "cache");
        SaeLensActivationCache.Write(cache, Hook, Numbered(2, 3, 4), 3, 4, tokenIds: Enumerable.Range(0, 6).ToArray());
        string ErrorOf(ActivationFiles files) => Assert.Throws<DataFormatException>(() => files.Open().ForEach(s => s.Dispose()))!.Message;

        var missing = ErrorOf(new ActivationFiles([cache], ActivationFileFormat.Arrow, Column: "blocks.1.hook_resid_pre"));
        Assert.That(missing, Does.Contain("dataset_info.json").And.Contain("no column \"blocks.1.hook_resid_pre\"").And.Contain(Hook));
        var wrongType = ErrorOf(new ActivationFiles([cache], ActivationFileFormat.Arrow, Column: "token_ids"));
        Assert.That(wrongType, Does.Contain("column \"token_ids\" is List(Value(int32), length=5)".Replace("5", "3")).And.Contain("float32 or float16"));
        var file = Path.Combine(cache, "data-00000-of-00001.arrow");
        var direct = ErrorOf(new ActivationFiles([file], ActivationFileFormat.Arrow, Column: "token_ids"));
        Assert.That(direct, Does.Contain(file).And.Contain("column \"token_ids\" is fixed_size_list<int32>[3]").And.Contain(ArrowShard.SupportedTypes));
        var bf16 = ErrorOf(new ActivationFiles([file], ActivationFileFormat.ArrowBF16, Column: Hook));
        Assert.That(bf16, Does.Contain("list<list<float32>>").And.Contain("bfloat16"));

        // A DatasetDict folder names its splits; a state.json naming a missing file names both.
        var dict = Path.Combine(dir, "dict");
        Directory.CreateDirectory(dict);
        File.WriteAllText(Path.Combine(dict, "dataset_dict.json"), "{\"splits\": [\"train\", \"test\"]}");
        Assert.That(ErrorOf(new ActivationFiles([dict], ActivationFileFormat.Arrow)), Does.Contain("train, test").And.Contain(Path.Combine(dict, "train")));
        File.Delete(file);
        Assert.That(ErrorOf(new ActivationFiles([cache], ActivationFileFormat.Arrow)), Does.Contain("state.json").And.Contain("data-00000-of-00001.arrow"));

        // Not an Arrow stream at all, and a stream cut short.
        var junk = Path.Combine(dir, "junk.arrow");
        File.WriteAllBytes(junk, "PAR1 not arrow at all"u8.ToArray());
        Assert.That(ErrorOf(new ActivationFiles([junk], ActivationFileFormat.Arrow)), Does.Contain(junk).And.Contain("offset 0"));
        SaeLensActivationCache.Write(Path.Combine(dir, "whole"), Hook, Numbered(2, 3, 4), 3, 4);
        var whole = File.ReadAllBytes(Path.Combine(dir, "whole", "data-00000-of-00001.arrow"));
        var cut = Path.Combine(dir, "cut.arrow");
        File.WriteAllBytes(cut, whole[..(whole.Length - 40)]);
        Assert.That(ErrorOf(new ActivationFiles([cut], ActivationFileFormat.Arrow)), Does.Contain(cut).And.Contain("truncated"));
    }

    [Test]
    public void ListOffsetsThatDoNotStartAtZeroAreFollowed()
    {
        // Writers rebase offsets to zero, but Arrow allows any start. One row over inner lists [0, 3, 7, 11) is
        // written, then the row's offsets are patched from [0, 3] to [1, 3]: the row now covers the two inner
        // lists [3, 7) and [7, 11), tokens of d = 4 starting at value 3 (and skips the 3-value list).
        var dir = TestSupport.TempDirectory("arrow-offsets");
        var innerType = new ListType(new Field("item", FloatType.Default, true));
        var outerType = new ListType(new Field("item", innerType, true));
        var schema = new Schema([new Field("acts", outerType, true)], null);
        var path = Path.Combine(dir, "offsets.arrow");
        using (var stream = File.Create(path))
        using (var writer = new ArrowStreamWriter(stream, schema))
        {
            var leaf = new FloatArray.Builder().AppendRange(Enumerable.Range(0, 11).Select(i => i * 1.5f)).Build();
            var inner = new ListArray(innerType, 3, new ArrowBuffer.Builder<int>().AppendRange([0, 3, 7, 11]).Build(), leaf, ArrowBuffer.Empty);
            var outer = new ListArray(outerType, 1, new ArrowBuffer.Builder<int>().AppendRange([0, 3]).Build(), inner, ArrowBuffer.Empty);
            writer.WriteRecordBatch(new RecordBatch(schema, [outer], 1));
            writer.WriteEnd();
        }
        var outerOffsets = ArrowIpcStream.ReadLayout(path).Batches[0].Buffers[1];
        using (var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
        {
            file.Position = outerOffsets.Offset;
            file.Write(BitConverter.GetBytes(1));
        }
        using var shard = ArrowShard.Open(path, "acts");
        Assert.That((shard.Tokens, shard.D), Is.EqualTo((2L, 4)));
        Assert.That(ReadAll(shard), Is.EqualTo(Enumerable.Range(3, 8).Select(i => i * 1.5f).ToArray()));
    }

    [Test]
    public void RaggedTokensAndNullsAreRefusedWithTheirPlace()
    {
        var dir = TestSupport.TempDirectory("arrow-ragged");
        var list = new ListType(new Field("item", FloatType.Default, true));
        var schema = new Schema([new Field("acts", list, true)], null);
        var path = Path.Combine(dir, "ragged.arrow");
        using (var stream = File.Create(path))
        using (var writer = new ArrowStreamWriter(stream, schema))
        {
            var leaf = new FloatArray.Builder().AppendRange(Enumerable.Range(0, 11).Select(i => (float)i)).Build();
            var offsets = new ArrowBuffer.Builder<int>().Append(0).Append(4).Append(8).Append(11).Build();
            writer.WriteRecordBatch(new RecordBatch(schema, [new ListArray(list, 3, offsets, leaf, ArrowBuffer.Empty)], 3));
            writer.WriteEnd();
        }
        var error = Assert.Throws<DataFormatException>(() => ArrowShard.Open(path, "acts").Dispose())!.Message;
        Assert.That(error, Does.Contain(path).And.Contain("column \"acts\", record batch 0").And.Contain("token 2 has 3 values, not d = 4"));

        var nulls = Path.Combine(dir, "nulls.arrow");
        using (var stream = File.Create(nulls))
        using (var writer = new ArrowStreamWriter(stream, schema))
        {
            var leaf = new FloatArray.Builder().AppendRange([1f, 2f]).AppendNull().AppendRange([4f]).Build();
            var offsets = new ArrowBuffer.Builder<int>().Append(0).Append(2).Append(4).Build();
            writer.WriteRecordBatch(new RecordBatch(schema, [new ListArray(list, 2, offsets, leaf, ArrowBuffer.Empty)], 2));
            writer.WriteEnd();
        }
        error = Assert.Throws<DataFormatException>(() => ArrowShard.Open(nulls, "acts").Dispose())!.Message;
        Assert.That(error, Does.Contain(nulls).And.Contain("1 null values at depth 1"));
    }

    [Test]
    public void TheConfigNamesTheColumnAndRoundTrips()
    {
        var c = FactorizeConfigLoader.Parse("""
            { "data": { "files": ["cache"], "format": "arrow", "column": "blocks.3.hook_mlp_out" },
              "sae": { "architecture": "topk", "d_sae": 64, "k": 4 } }
            """, "f.json", "/base");
        var files = (FilesSpec)c.Data;
        Assert.That((files.Format, files.Column, files.Files[0]), Is.EqualTo((ActivationFileFormat.Arrow, "blocks.3.hook_mlp_out", "/base/cache")));
        var back = FactorizeConfigLoader.Parse(FactorizeConfigWriter.ToJson(c), "config.json", "/elsewhere");
        Assert.That(((FilesSpec)back.Data) with { Files = [] }, Is.EqualTo(files with { Files = [] }));
        Assert.That(((FilesSpec)back.Data).Files, Is.EqualTo(files.Files));

        var bf16 = FactorizeConfigLoader.Parse("""{ "data": { "files": ["c"], "format": "arrow", "dtype": "bfloat16" }, "sae": { "architecture": "topk", "d_sae": 8, "k": 2 } }""", "f.json", "/b");
        Assert.That(((FilesSpec)bf16.Data).Format, Is.EqualTo(ActivationFileFormat.ArrowBF16));
        Assert.That(((FilesSpec)FactorizeConfigLoader.Parse(FactorizeConfigWriter.ToJson(bf16), "c.json", "/b").Data).Format, Is.EqualTo(ActivationFileFormat.ArrowBF16));

        string ErrorOf(string data) => Assert.Throws<ConfigException>(() => FactorizeConfigLoader.Parse(
            $$"""{ "data": {{data}}, "sae": { "architecture": "topk", "d_sae": 8, "k": 2 } }""", "f.json", "/b"))!.Message;
        Assert.That(ErrorOf("""{ "files": ["a.npy"], "format": "npy", "column": "x" }"""), Does.Contain("\"column\" is for format \"arrow\""));
        Assert.That(ErrorOf("""{ "files": ["c"], "format": "arrow", "dtype": "float16" }"""), Does.Contain("\"dtype\" with format \"arrow\" is read from the files"));
        Assert.That(ErrorOf("""{ "files": ["c"], "format": "arrow", "column": 3 }"""), Does.Contain("\"column\" must be a column name"));
    }

    [Test]
    public void FactorizeEvalAndEncodeReadASaeLensCache()
    {
        var dir = TestSupport.TempDirectory("arrow-factorize");
        const int rows = 64, context = 16, d = 8;
        // Sparse activations: each token one of 12 fixed directions, scaled.
        var rng = new Random(3);
        var directions = Enumerable.Range(0, 12 * d).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var values = new float[rows * context * d];
        for (var t = 0; t < rows * context; t++)
        {
            var f = rng.Next(12);
            var scale = (float)(0.5 + rng.NextDouble());
            for (var k = 0; k < d; k++) values[t * d + k] = scale * directions[f * d + k];
        }
        SaeLensActivationCache.Write(Path.Combine(dir, "cache"), Hook, values, context, d, "float16",
            tokenIds: Enumerable.Range(0, rows * context).ToArray(), rowsPerFile: 20, rowsPerBatch: 7);
        var config = Path.Combine(dir, "factorize.json");
        File.WriteAllText(config, $$"""
            { "data": { "files": ["cache"], "format": "arrow", "column": "{{Hook}}" },
              "sae": { "architecture": "topk", "d_sae": 24, "k": 1 },
              "train": { "tokens": 60000, "batch_size": 256, "lr": 0.01, "seed": 1 } }
            """);
        var run = Path.Combine(dir, "run");
        var (code, output) = TestSupport.RunCli("factorize", "--config", config, "--out", run, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        using (var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))))
            Assert.That(metrics.RootElement.GetProperty("fvu").GetDouble(), Is.LessThan(0.2), "one latent per token explains data made of 12 directions");
        Assert.That(File.ReadAllText(Path.Combine(run, "config.json")), Does.Contain("\"format\": \"arrow\"").And.Contain(Hook));

        (code, output) = TestSupport.RunCli("eval", "--dict", run, "--data", config, "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("\"fvu\""));
        (code, output) = TestSupport.RunCli("encode", "--dict", run, "--data", config, "--out", Path.Combine(dir, "codes"), "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(File.Exists(Path.Combine(dir, "codes_indices.npy")), output);
    }

    [Test]
    public void SynthesizeWritesACacheFactorizeScoresAgainstItsGroundTruth()
    {
        var dir = TestSupport.TempDirectory("arrow-synthesize");
        var config = Path.Combine(dir, "synthetic.json");
        File.WriteAllText(config, """
            { "data": { "synthetic": { "d": 16, "n_features": 24, "active_mean": 2, "seed": 5 } },
              "sae": { "architecture": "topk", "d_sae": 48, "k": 3 } }
            """);
        var cache = Path.Combine(dir, "cache");
        var (code, output) = TestSupport.RunCli("synthesize", "--config", config, "--format", "arrow", "--context", "32", "--tokens", "6400",
            "--shard-tokens", "2048", "--out", cache);
        Assert.That(code, Is.EqualTo(0), output);
        var folder = HfDatasetFolder.Read(cache);
        Assert.That(folder.DataFiles.Select(Path.GetFileName), Is.EqualTo(new[]
        {
            "data-00000-of-00004.arrow", "data-00001-of-00004.arrow", "data-00002-of-00004.arrow", "data-00003-of-00004.arrow",
        }), "200 rows of 32 tokens, 64 rows a file");
        Assert.That(folder.Features!["activations"].ToString(), Is.EqualTo("Array2D(shape=(32, 16), dtype=float32)"));

        // The cache holds exactly the synthetic stream, token for token.
        var expected = new float[6400 * 16];
        using (var synthetic = NativeEngine.Runner.Experiments.Factorization.Synthetic(
                   (SyntheticSpec)FactorizeConfigLoader.LoadFile(config).Data))
            synthetic.Generate(0, expected);
        var shards = new ActivationFiles([cache], ActivationFileFormat.Arrow).Open();
        try
        {
            Assert.That(shards.SelectMany(ReadAll).ToArray(), Is.EqualTo(expected));
        }
        finally
        {
            foreach (var shard in shards) shard.Dispose();
        }

        var factorize = Path.Combine(dir, "factorize.json");
        File.WriteAllText(factorize, """
            { "data": { "files": ["cache"], "format": "arrow" }, "sae": { "architecture": "topk", "d_sae": 48, "k": 3 },
              "train": { "tokens": 40000, "batch_size": 256, "lr": 0.01 } }
            """);
        (code, output) = TestSupport.RunCli("factorize", "--config", factorize, "--out", Path.Combine(dir, "run"), "--backend", "cpu");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("MMCS"), "ground_truth.safetensors inside the cache folder is found and scored");
        Assert.That(TestSupport.RunCli("synthesize", "--config", config, "--format", "arrow", "--context", "30", "--tokens", "6400", "--out", cache).Output,
            Does.Contain("--context is 30, --tokens 6400"));
    }

    [Test]
    public void SynthesizeArrowClaimsItsFolderAndChecksTheFreeSpace()
    {
        var dir = TestSupport.TempDirectory("arrow-claim");
        var config = Path.Combine(dir, "synthetic.json");
        File.WriteAllText(config, """{ "data": { "synthetic": { "d": 8, "n_features": 16, "seed": 1 } }, "sae": { "architecture": "topk", "d_sae": 16, "k": 2 } }""");
        string[] Synthesize(string tokens, params string[] more) =>
            ["synthesize", "--config", config, "--format", "arrow", "--context", "16", "--tokens", tokens, "--out", Path.Combine(dir, "cache"), .. more];
        var (code, _, errors) = TestSupport.RunCliStreams(Synthesize("256"));
        Assert.That(code, Is.EqualTo(0), errors);
        using (var run = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "cache", "run.json"))))
        {
            Assert.That(run.RootElement.GetProperty("kind").GetString(), Is.EqualTo("synthesize"));
            Assert.That(run.RootElement.GetProperty("config").GetProperty("format").GetString(), Is.EqualTo("arrow"));
        }
        Assert.That(HfDatasetFolder.Read(Path.Combine(dir, "cache")).DataFiles, Has.Count.EqualTo(1), "run.json beside the dataset's files");

        (code, _, errors) = TestSupport.RunCliStreams(Synthesize("512"));
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("holds a synthesize run of another config (tokens 256 → 512)"));
        Assert.That(TestSupport.RunCliStreams(Synthesize("512", "--force")).Code, Is.EqualTo(0));

        (code, _, errors) = TestSupport.RunCliStreams(["synthesize", "--config", config, "--format", "arrow", "--context", "16",
            "--tokens", "1000000000000000", "--out", Path.Combine(dir, "huge")]);
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("synthesizing 1000000000000000 tokens of d = 8 needs").And.Contain("free"));
        Assert.That(Directory.Exists(Path.Combine(dir, "huge")), Is.False, "nothing written");
    }

    [Test]
    public void NonFiniteValuesInACacheAreNamedOrSkipped()
    {
        var dir = TestSupport.TempDirectory("arrow-non-finite");
        var values = Enumerable.Range(0, 8 * 16 * 4).Select(i => (float)Math.Cos(i * 0.3)).ToArray();
        values[(2 * 16 + 5) * 4 + 1] = float.PositiveInfinity;  // row 2, token 5 of the row: token 37, column 1
        SaeLensActivationCache.Write(Path.Combine(dir, "cache"), "blocks.0.hook_resid_pre", values, 16, 4);
        var config = Path.Combine(dir, "f.json");
        const string factorize = """
            { "data": { "files": ["cache"], "format": "arrow"NON_FINITE }, "sae": { "architecture": "topk", "d_sae": 8, "k": 2 },
              "train": { "tokens": 256, "batch_size": 16 } }
            """;
        File.WriteAllText(config, factorize.Replace("NON_FINITE", ""));
        var (code, _, errors) = TestSupport.RunCliStreams(["factorize", "--config", config, "--out", Path.Combine(dir, "a"), "--backend", "cpu"]);
        Assert.That(code, Is.EqualTo(2), errors);
        Assert.That(errors, Does.Contain("data-00000-of-00001.arrow: token 37 holds").And.Contain("at column 1 (NaN or infinity)"));
        File.WriteAllText(config, factorize.Replace("NON_FINITE", ", \"non_finite\": \"skip\""));
        (code, _, errors) = TestSupport.RunCliStreams(["factorize", "--config", config, "--out", Path.Combine(dir, "b"), "--backend", "cpu"]);
        Assert.That(code, Is.EqualTo(0), errors);
        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "b", "metrics.json")));
        Assert.That(metrics.RootElement.GetProperty("skipped_non_finite_tokens").GetInt64(), Is.GreaterThan(0));
    }
}
