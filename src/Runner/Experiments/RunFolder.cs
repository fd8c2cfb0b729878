using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// What every run folder shares. A run folder is claimed by its run: run.json names the kind of run, the SHA-256
/// of its resolved config (and the config itself) and how the run stands, so a verb refuses to write into a folder
/// of another kind or another config (unless forced) and an unfinished run is not overwritten by a new one.
/// </summary>
public static class RunFolder
{
    public const string MarkerFile = "run.json";

    /// <summary>Files of run folders written before claims (or of a run of any kind): a folder holding one of them
    /// and no run.json is not written into unless forced.</summary>
    private static readonly string[] RunFiles =
    [
        "config.json", "results.json", "weights.safetensors", "metrics.json", "cfg.json", "sae_weights.safetensors",
        "hybrid.json", "compare.json", "report.html", "ground_truth.safetensors", "checkpoint", "dictionary", "sae.safetensors",
        "harvest.json", "state.json",
    ];

    /// <summary>How a run stands, as run.json records it.</summary>
    public static class Status
    {
        public const string Running = "running";
        public const string Completed = "completed";
        public const string Interrupted = "interrupted";
        public const string NonFinite = "stopped_non_finite";
    }

    /// <summary>The claim of a folder as run.json holds it.</summary>
    public sealed record Marker(string Kind, string ConfigSha256, string Status, JsonElement? Config);

    /// <summary>
    /// Makes <paramref name="directory"/> this run's folder: creates it (an unwritable destination fails before any
    /// work) and writes run.json with status "running". Refuses, naming what is there, a folder holding a run of
    /// another kind, of another config, an unfinished run (continue it with --resume), or run files without
    /// run.json; <paramref name="force"/> writes over any of them. <paramref name="resume"/> continues the run
    /// there: it must be of this kind (the config is checked against the checkpoint by the caller).
    /// </summary>
    /// <param name="configJson">The resolved config as JSON; its SHA-256 identifies the run.</param>
    public static Marker Claim(string directory, string kind, string configJson, bool force = false, bool resume = false)
    {
        Prepare(directory);
        var hash = Sha256(configJson);
        var previous = Read(directory);
        if (!force)
        {
            if (previous is null)
            {
                if (resume)
                    throw new ConfigException($"--resume {directory}: no {MarkerFile} there, so it is not a run folder this " +
                                              "version wrote; give the folder a factorize run wrote");
                var found = RunFiles.Where(f => File.Exists(Path.Combine(directory, f)) || Directory.Exists(Path.Combine(directory, f))).ToArray();
                if (found.Length > 0)
                    throw new ConfigException($"--out {directory} already holds {string.Join(", ", found)} but no {MarkerFile}, so " +
                                              "it may be another run's folder (or one written before run folders were claimed); " +
                                              "choose an empty folder, or --force to write over it");
            }
            else if (previous.Kind != kind)
            {
                throw new ConfigException($"--out {directory} holds a {previous.Kind} run ({MarkerFile}); a {kind} run would " +
                                          "write over its files: choose another folder, or --force to replace it");
            }
            else if (!resume && previous.ConfigSha256 != hash)
            {
                throw new ConfigException($"--out {directory} holds a {kind} run of another config ({ConfigDifference(previous.Config, configJson)}): " +
                                          "choose another folder, or --force to replace it");
            }
            else if (!resume && previous.Status is Status.Interrupted or Status.Running or Status.NonFinite &&
                     Directory.Exists(Path.Combine(directory, "checkpoint")))
            {
                throw new ConfigException($"--out {directory} holds an unfinished {kind} run with a checkpoint (status " +
                                          $"{previous.Status}): continue it with --resume {directory}, or --force to start over");
            }
        }
        var marker = new Marker(kind, hash, Status.Running, Parse(configJson));
        Write(directory, marker);
        return marker;
    }

    /// <summary>Runs a composite run's parts (<paramref name="body"/>, null when cancelled) and records how it ended,
    /// a part stopped by a non-finite value included.</summary>
    public static T? Track<T>(string directory, Func<T?> body) where T : class
    {
        try
        {
            var result = body();
            Finish(directory, result is null ? Status.Interrupted : Status.Completed);
            return result;
        }
        catch (NonFiniteException)
        {
            Finish(directory, Status.NonFinite);
            throw;
        }
    }

    /// <summary>Records how the run in <paramref name="directory"/> ended (one of <see cref="Status"/>).</summary>
    public static void Finish(string directory, string status)
    {
        if (Read(directory) is { } marker) Write(directory, marker with { Status = status });
    }

    /// <summary>The folder's run.json, or null when there is none; a damaged one is an error naming the file.</summary>
    public static Marker? Read(string directory)
    {
        var path = Path.Combine(directory, MarkerFile);
        if (!File.Exists(path)) return null;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            var root = document.RootElement;
            return new Marker(root.GetProperty("kind").GetString()!, root.GetProperty("config_sha256").GetString()!,
                root.GetProperty("status").GetString()!, root.TryGetProperty("config", out var config) ? config.Clone() : null);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new DataFormatException($"{path} is damaged ({e.Message}): it should hold kind, config_sha256 and status; " +
                                          "delete it, or --force to claim the folder again");
        }
    }

    private static void Write(string directory, Marker marker) =>
        AtomicFile.WriteText(Path.Combine(directory, MarkerFile), Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteString("kind", marker.Kind);
            w.WriteString("config_sha256", marker.ConfigSha256);
            w.WriteString("status", marker.Status);
            w.WriteString("engine_version", Engine.Version);
            if (marker.Config is { } config)
            {
                w.WritePropertyName("config");
                config.WriteTo(w);
            }
            w.WriteEndObject();
        }));

    public static string Sha256(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    private static JsonElement? Parse(string json)
    {
        using var document = JsonDocument.Parse(json, JsonObjectReader.DocumentOptions);
        return document.RootElement.Clone();
    }

    /// <summary>"sae.d_sae 128 → 256, train.lr 0.002 → 0.001": the keys whose values differ (at most five).</summary>
    public static string ConfigDifference(JsonElement? before, string afterJson)
    {
        if (before is not { } old) return "its config differs";
        var after = Parse(afterJson)!.Value;
        var a = Flatten(old);
        var b = Flatten(after);
        var keys = a.Keys.Union(b.Keys).Where(k => a.GetValueOrDefault(k) != b.GetValueOrDefault(k)).Order(StringComparer.Ordinal).ToList();
        if (keys.Count == 0) return "its config differs";
        var listed = keys.Take(5).Select(k => $"{k} {a.GetValueOrDefault(k) ?? "(none)"} → {b.GetValueOrDefault(k) ?? "(none)"}");
        return string.Join(", ", listed) + (keys.Count > 5 ? $" and {keys.Count - 5} more" : "");
    }

    private static Dictionary<string, string> Flatten(JsonElement element)
    {
        var result = new Dictionary<string, string>();
        void Walk(JsonElement e, string path)
        {
            if (e.ValueKind == JsonValueKind.Object)
                foreach (var p in e.EnumerateObject()) Walk(p.Value, path.Length == 0 ? p.Name : $"{path}.{p.Name}");
            else
            {
                var text = JsonSerializer.Serialize(e);  // compact, whatever the file's layout
                result[path] = text.Length > 40 ? text[..37] + "..." : text;
            }
        }
        Walk(element, "");
        return result;
    }

    /// <summary>Creates the folder up front, so an unwritable destination fails before any training.</summary>
    public static void Prepare(string directory)
    {
        if (File.Exists(directory))
            throw new ConfigException($"--out {directory} is a file; give a folder (it is created when missing)");
        try
        {
            Directory.CreateDirectory(directory);
            var probe = Path.Combine(directory, ".write-test");
            File.WriteAllText(probe, "");
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"--out {directory}: cannot write there ({e.Message}); choose a writable folder");
        }
    }

    /// <summary>Refuses, before anything is written, output of <paramref name="bytes"/> that the file system of
    /// <paramref name="directory"/> has no room for; <paramref name="remedy"/> says what makes it smaller.</summary>
    public static void CheckFreeSpace(string directory, double bytes, string what, string remedy = "lower --tokens")
    {
        long free;
        try
        {
            // The folder may not exist yet: its nearest existing ancestor is on the same file system.
            var existing = new DirectoryInfo(Path.GetFullPath(directory));
            while (!existing.Exists && existing.Parent is not null) existing = existing.Parent;
            free = new DriveInfo(existing.FullName).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
        {
            return;  // no answer from the file system: the writes themselves will say
        }
        if (bytes > free)
            throw new ConfigException($"{what} needs {Bytes(bytes)}, but {directory} has {Bytes(free)} free; " +
                                      $"{remedy} or choose another folder");
    }

    public static string Bytes(double bytes) =>
        bytes >= 1e15 ? $"{bytes / 1e15:G3} PB" : bytes >= 1e12 ? $"{bytes / 1e12:G3} TB" : bytes >= 1e9 ? $"{bytes / 1e9:G3} GB"
        : bytes >= 1e6 ? $"{bytes / 1e6:G3} MB" : $"{bytes:G3} bytes";

    /// <summary>Where and how long a run trained, as results.json states it.</summary>
    public static void WriteTraining(Utf8JsonWriter w, DeviceInfo device, long steps, double seconds)
    {
        w.WriteString("backend", device.Backend == Backend.Cuda ? "cuda" : "cpu");
        w.WriteString("device", device.Name);
        w.WriteNumber("steps", steps);
        w.WriteNumber("seconds", Math.Round(seconds, 4));
    }

    /// <summary>The "settings" array of a sweep's results.json: per setting its values, instances, the best
    /// instance (chosen by the caller's training objective) and the best and median loss.</summary>
    public static void WriteSettings(Utf8JsonWriter w, IEnumerable<ToySetting> settings, Func<IEnumerable<int>, int> bestOf,
        Func<int, double> loss)
    {
        w.WriteStartArray("settings");
        foreach (var setting in settings)
        {
            var best = bestOf(setting.Instances);
            w.WriteStartObject();
            Json.Number(w, "feature_probability", setting.FeatureProbability);
            Json.Number(w, "importance_ratio", setting.ImportanceRatio);
            Json.Number(w, "l1", setting.L1);
            w.WriteStartArray("instances");
            foreach (var k in setting.Instances) w.WriteNumberValue(k);
            w.WriteEndArray();
            w.WriteNumber("best_instance", best);
            Json.Number(w, "loss_best", loss(best));
            Json.Number(w, "loss_median", Statistics.Median(setting.Instances.Select(loss)));
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }
}
