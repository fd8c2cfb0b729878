using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>What every run folder shares: it is made writable before any work, and sweeps list their settings.</summary>
public static class RunFolder
{
    /// <summary>Creates the folder up front, so an unwritable destination fails before any training.</summary>
    public static void Prepare(string directory)
    {
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
