using System.Security.Cryptography;
using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>Where a factorization stood at a checkpoint: steps, tokens and seconds done, the input scale, the
/// SHA-256 of the config it ran, and the training curve so far (with the recovery measured at some of its points).</summary>
/// <param name="Tuning">The sparsity coefficient's controller (<see cref="SparsityTuning.Write"/>), as JSON; null when the
/// run has none.</param>
public sealed record CheckpointProgress(long Step, long Tokens, double Seconds, float Scale, string ConfigSha256,
    IReadOnlyList<FactorizeCurvePoint> Curve, string? Tuning = null);

/// <summary>
/// The checkpoint of an unfinished factorization, run state beside the run's dictionary: checkpoint/ holds
/// params.safetensors, state.bin (optimizer and firing state), source.json (data position), progress.json and
/// SHA256SUMS (`sha256sum -c` format) over the four, written last. A new checkpoint is written whole beside the old
/// one, which is moved to checkpoint.old/ while the new one is renamed in and then removed; a resume checks every
/// checksum, the config's hash and the values, and falls back to checkpoint.old/ when checkpoint/ is missing or
/// damaged. The checkpoint is removed when the run completes. A run across processes writes the same folders with its
/// shards' and data groups' files inside (<see cref="ShardedCheckpoint"/>), through the helpers here.
/// </summary>
public static class FactorizeCheckpoint
{
    public const string Folder = "checkpoint";
    public const string PreviousFolder = "checkpoint.old";
    public const string SumsFile = "SHA256SUMS";
    internal const string ParamsFile = "params.safetensors", StateFile = "state.bin", SourceFile = "source.json", ProgressFile = "progress.json";
    private static readonly string[] Files = [ParamsFile, StateFile, SourceFile, ProgressFile];

    public static bool Exists(string runDirectory) =>
        Directory.Exists(Path.Combine(runDirectory, Folder)) || Directory.Exists(Path.Combine(runDirectory, PreviousFolder));

    /// <summary>Writes a checkpoint of <paramref name="parameters"/> (finite: the caller checked) and swaps it in.</summary>
    public static void Write(string runDirectory, SparseAutoencoder sae, SaeParameters parameters, IActivationBatches source,
        CheckpointProgress progress)
    {
        var temporary = Temporary(runDirectory);
        if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
        Directory.CreateDirectory(temporary);
        WriteModel(temporary, sae, parameters, sae.Spec.DSae);
        AtomicFile.WriteText(Path.Combine(temporary, SourceFile), source.State.ToJson());
        AtomicFile.WriteText(Path.Combine(temporary, ProgressFile), ProgressJson(progress));
        WriteSums(temporary, Files.Select(f => (f, Sha256Of(Path.Combine(temporary, f)))));
        SwapIn(runDirectory);
    }

    /// <summary>Where a checkpoint is written before <see cref="SwapIn"/>.</summary>
    internal static string Temporary(string runDirectory) => Path.Combine(runDirectory, Folder + ".tmp");

    /// <summary>params.safetensors ([d_in][latents] W_enc, ...) and state.bin of the model's latents into
    /// <paramref name="folder"/>.</summary>
    internal static void WriteModel(string folder, SparseAutoencoder sae, SaeParameters parameters, long latents)
    {
        var d = sae.Spec.DIn;
        SafeTensors.Write(Path.Combine(folder, ParamsFile),
        [
            new Tensor("W_enc", [d, latents], parameters.WEnc), new Tensor("b_enc", [latents], parameters.BEnc),
            new Tensor("W_dec", [latents, d], parameters.WDec), new Tensor("b_dec", [d], parameters.BDec),
            new Tensor("threshold", [latents], parameters.Threshold),
        ]);
        AtomicFile.Write(Path.Combine(folder, StateFile), stream => stream.Write(sae.GetState()));
    }

    /// <summary>SHA256SUMS (`sha256sum -c` format) of (file relative to <paramref name="folder"/>, checksum), written
    /// last: a checkpoint without it was not written whole.</summary>
    internal static void WriteSums(string folder, IEnumerable<(string File, string Sha256)> sums) =>
        AtomicFile.WriteText(Path.Combine(folder, SumsFile), string.Concat(sums.Select(s => $"{s.Sha256}  {s.File}\n")));

    /// <summary>Swaps the written <see cref="Temporary"/> folder in: the current checkpoint is moved to
    /// checkpoint.old/ while the new one is renamed in, then removed.</summary>
    internal static void SwapIn(string runDirectory)
    {
        var final = Path.Combine(runDirectory, Folder);
        var old = Path.Combine(runDirectory, PreviousFolder);
        if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
        if (Directory.Exists(final)) Directory.Move(final, old);
        Directory.Move(Temporary(runDirectory), final);
        if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
    }

    /// <summary>Removes the checkpoint of a run that completed.</summary>
    public static void Remove(string runDirectory)
    {
        foreach (var folder in new[] { Folder, PreviousFolder, Folder + ".tmp" })
        {
            var path = Path.Combine(runDirectory, folder);
            if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
        }
    }

    /// <summary>Refuses, before anything changes, to resume with a config other than the checkpoint's unless forced:
    /// the message lists the keys that differ from the folder's config.json.</summary>
    public static void CheckConfig(string runDirectory, string configJson, bool force)
    {
        if (force) return;
        var hash = RunFolder.Sha256(configJson);
        foreach (var folder in new[] { Folder, PreviousFolder })
        {
            var path = Path.Combine(runDirectory, folder, ProgressFile);
            if (!File.Exists(path)) continue;
            string? recorded;
            try
            {
                using var document = JsonDocument.Parse(File.ReadAllText(path));
                recorded = document.RootElement.TryGetProperty("config_sha256", out var value) ? value.GetString() : null;
            }
            catch (JsonException)
            {
                continue;  // damaged: the resume itself says so, or falls back to the other folder
            }
            if (recorded is null || recorded == hash) return;
            var configPath = Path.Combine(runDirectory, FactorizeExperiment.ConfigFile);
            JsonElement? before = null;
            if (File.Exists(configPath))
            {
                try
                {
                    using var document = JsonDocument.Parse(File.ReadAllText(configPath), JsonObjectReader.DocumentOptions);
                    before = document.RootElement.Clone();
                }
                catch (JsonException) { }
            }
            throw new ConfigException($"--resume {runDirectory}: the checkpoint was written with another config " +
                                      $"({RunFolder.ConfigDifference(before, configJson)}); resume with the run's own config " +
                                      $"(omit --config), or --force to continue it with this one");
        }
    }

    /// <summary>
    /// Restores the model and the data position from checkpoint/ (or checkpoint.old/ when checkpoint/ is missing or
    /// damaged) and returns the progress recorded and the folder used. Every file is checked against SHA256SUMS and
    /// the progress against the config before anything is restored; errors name the file and what is wrong.
    /// </summary>
    public static (CheckpointProgress Progress, string Folder) Read(string runDirectory, FactorizeConfig config, string configSha256,
        bool force, SparseAutoencoder sae, IActivationBatches source)
    {
        var candidates = new[] { Folder, PreviousFolder }.Select(f => Path.Combine(runDirectory, f)).Where(Directory.Exists).ToList();
        if (candidates.Count == 0)
            throw new ConfigException($"--resume {runDirectory}: no {Folder}/ there; a run writes one every train.checkpoint_every " +
                                      "steps and when interrupted, and removes it when it completes");
        var problems = new List<string>();
        foreach (var folder in candidates)
        {
            try
            {
                var progress = Verify(folder, config, configSha256, force, sae);
                source.Restore(SourceState.FromJson(File.ReadAllText(Path.Combine(folder, SourceFile))));
                RestoreModel(folder, sae);
                return (progress, folder);
            }
            catch (DataFormatException e)
            {
                problems.Add(e.Message);
            }
        }
        throw new DataFormatException($"--resume {runDirectory}: no usable checkpoint: {string.Join("; ", problems)}");
    }

    private static CheckpointProgress Verify(string folder, FactorizeConfig config, string configSha256, bool force, SparseAutoencoder sae)
    {
        var sums = ReadSums(folder);
        foreach (var file in Files) CheckSum(folder, sums, file);
        var progress = CheckProgress(folder, config, configSha256, force);
        CheckModel(folder, sae, sae.Spec.DSae, $"d_in {sae.Spec.DIn}, d_sae {sae.Spec.DSae}");
        return progress;
    }

    /// <summary>The checksums of a checkpoint's SHA256SUMS by file.</summary>
    internal static Dictionary<string, string> ReadSums(string folder)
    {
        var sumsPath = Path.Combine(folder, SumsFile);
        if (!File.Exists(sumsPath)) throw new DataFormatException($"{sumsPath} is missing: the checkpoint was not written whole");
        var sums = new Dictionary<string, string>();
        foreach (var line in File.ReadAllLines(sumsPath).Where(l => l.Length > 0))
        {
            var parts = line.Split("  ", 2);
            if (parts.Length != 2 || parts[0].Length != 64) throw new DataFormatException($"{sumsPath}: \"{line}\" is not \"SHA256  FILE\"");
            sums[parts[1]] = parts[0];
        }
        return sums;
    }

    /// <summary>Throws unless <paramref name="file"/> (relative to the folder) is there and matches its checksum.</summary>
    internal static void CheckSum(string folder, Dictionary<string, string> sums, string file)
    {
        var path = Path.Combine(folder, file);
        if (!File.Exists(path)) throw new DataFormatException($"{path} is missing");
        if (!sums.TryGetValue(file, out var expected)) throw new DataFormatException($"{Path.Combine(folder, SumsFile)} has no checksum of {file}");
        if (Sha256Of(path) != expected)
            throw new DataFormatException($"{path} does not match its checksum in {SumsFile} (damaged or edited)");
    }

    /// <summary>The folder's progress.json, checked against the config (its hash unless forced, its steps and batch).</summary>
    internal static CheckpointProgress CheckProgress(string folder, FactorizeConfig config, string configSha256, bool force)
    {
        var progress = ParseProgress(Path.Combine(folder, ProgressFile));
        if (progress.ConfigSha256 != configSha256 && !force)
            throw new ConfigException($"{Path.Combine(folder, ProgressFile)}: the checkpoint was written with another config; " +
                                      "resume with the run's own config.json, or --force");
        var total = config.Train.Steps;
        var where = Path.Combine(folder, ProgressFile);
        if (progress.Step > total)
            throw new ConfigException($"{where}: step {progress.Step} is past this config's {total} steps (train.tokens / train.batch_size)");
        if (progress.Tokens != progress.Step * config.Train.BatchSize)
            throw new DataFormatException($"{where}: tokens {progress.Tokens} is not step {progress.Step} × batch_size {config.Train.BatchSize}");
        return progress;
    }

    /// <summary>Throws unless the folder's params.safetensors and state.bin are of this model, holding
    /// <paramref name="latents"/> latents (<paramref name="dictionary"/> describes them in messages).</summary>
    internal static void CheckModel(string folder, SparseAutoencoder sae, long latents, string dictionary)
    {
        var d = sae.Spec.DIn;
        var (tensors, _) = SafeTensors.Read(Path.Combine(folder, ParamsFile));
        foreach (var (name, shape) in new (string, long[])[]
                 {
                     ("W_enc", [d, latents]), ("b_enc", [latents]), ("W_dec", [latents, d]), ("b_dec", [d]), ("threshold", [latents]),
                 })
        {
            var tensor = tensors.FirstOrDefault(t => t.Name == name)
                         ?? throw new DataFormatException($"{Path.Combine(folder, ParamsFile)}: tensor \"{name}\" is missing");
            if (!tensor.Shape.SequenceEqual(shape))
                throw new ConfigException($"{Path.Combine(folder, ParamsFile)}: \"{name}\" is [{string.Join(", ", tensor.Shape)}], but this " +
                                          $"config's SAE needs [{string.Join(", ", shape)}] ({dictionary}): " +
                                          "the checkpoint is of another dictionary");
        }
        var stateLength = new FileInfo(Path.Combine(folder, StateFile)).Length;
        if (stateLength != sae.StateSize)
            throw new ConfigException($"{Path.Combine(folder, StateFile)} has {stateLength} bytes; this config's SAE keeps {sae.StateSize} " +
                                      "(another architecture or size)");
    }

    /// <summary>Restores the model from the folder's params.safetensors and state.bin (checked by <see cref="CheckModel"/>).</summary>
    internal static void RestoreModel(string folder, SparseAutoencoder sae)
    {
        var tensors = SafeTensors.Read(Path.Combine(folder, ParamsFile)).Tensors.ToDictionary(t => t.Name, t => t.Data);
        try
        {
            sae.Restore(new SaeParameters(tensors["W_enc"], tensors["b_enc"], tensors["W_dec"], tensors["b_dec"], tensors["threshold"]),
                File.ReadAllBytes(Path.Combine(folder, StateFile)));
        }
        catch (NativeEngineException e) when (e.Status == Status.InvalidArgument)
        {
            throw new DataFormatException($"{Path.Combine(folder, StateFile)}: not this model's state ({e.Message})");
        }
    }

    internal static string ProgressJson(CheckpointProgress p) => Json.Document(w =>
    {
        w.WriteStartObject();
        w.WriteNumber("step", p.Step);
        w.WriteNumber("tokens", p.Tokens);
        w.WriteNumber("seconds", p.Seconds);
        w.WriteNumber("scale", p.Scale);
        w.WriteString("config_sha256", p.ConfigSha256);
        w.WriteStartArray("curve");
        foreach (var c in p.Curve)
        {
            w.WriteStartObject();
            w.WriteNumber("step", c.Step);
            w.WriteNumber("tokens", c.Tokens);
            ExactNumber(w, "mse", c.Mse);
            ExactNumber(w, "fvu", c.Fvu);
            ExactNumber(w, "l0", c.L0);
            ExactNumber(w, "auxk", c.Auxk);
            w.WriteNumber("dead", c.Dead);
            // Recovery of the true features, at the points where it was measured.
            if (c.Mmcs is { } mmcs) ExactNumber(w, "mmcs", mmcs);
            if (c.MatchedCosine is { } matched) ExactNumber(w, "matched_cosine", matched);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        if (p.Tuning is { } tuning)
        {
            w.WritePropertyName("sparsity_tuning");
            w.WriteRawValue(tuning);
        }
        w.WriteEndObject();
    });

    // Curve values round-trip exactly (a resumed run's report equals the unbroken run's); null when not finite.
    private static void ExactNumber(Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value)) w.WriteNumber(name, value);
        else w.WriteNull(name);
    }

    private static CheckpointProgress ParseProgress(string path)
    {
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            var r = document.RootElement;
            var step = r.GetProperty("step").GetInt64();
            var tokens = r.GetProperty("tokens").GetInt64();
            var seconds = r.GetProperty("seconds").GetDouble();
            var scale = r.GetProperty("scale").GetSingle();
            if (step < 0) throw new DataFormatException($"{path}: step {step} is negative");
            if (!(seconds >= 0) || !double.IsFinite(seconds)) throw new DataFormatException($"{path}: seconds {seconds} must be >= 0");
            if (!(scale > 0) || !float.IsFinite(scale)) throw new DataFormatException($"{path}: scale {scale} must be a positive number");
            var curve = r.GetProperty("curve").EnumerateArray().Select(c => new FactorizeCurvePoint(
                c.GetProperty("step").GetInt64(), c.GetProperty("tokens").GetInt64(), Value(c, "mse"), Value(c, "fvu"),
                Value(c, "l0"), Value(c, "auxk"), c.GetProperty("dead").GetInt64(), Optional(c, "mmcs"),
                Optional(c, "matched_cosine"))).ToArray();
            var tuning = r.TryGetProperty("sparsity_tuning", out var t) ? t.GetRawText() : null;
            return new CheckpointProgress(step, tokens, seconds, scale, r.GetProperty("config_sha256").GetString() ?? "", curve, tuning);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new DataFormatException($"{path}: not a checkpoint's progress ({e.Message}); it holds step, tokens, seconds, " +
                                          "scale, config_sha256 and curve");
        }
    }

    private static double Value(JsonElement point, string name)
    {
        var value = point.GetProperty(name);
        return value.ValueKind == JsonValueKind.Null ? double.NaN : value.GetDouble();
    }

    private static double? Optional(JsonElement point, string name) =>
        point.TryGetProperty(name, out _) ? Value(point, name) : null;

    internal static string Sha256Of(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>Whether every parameter is finite (checked before a checkpoint or the dictionary is written).</summary>
    public static bool AllFinite(SaeParameters p) => new[] { p.WEnc, p.BEnc, p.WDec, p.BDec, p.Threshold }.All(AllFinite);

    // A sum is finite only when every term is (NaN and infinities propagate); a finite set may still overflow it.
    private static bool AllFinite(float[] values) =>
        float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum<float>(values)) || values.All(float.IsFinite);
}
