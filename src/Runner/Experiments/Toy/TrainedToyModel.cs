using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// A toy run folder read back for analysis: the resolved config.json, the parameters of weights.safetensors and,
/// for sweeps, each setting's best instance from results.json; with the forward pass of one instance
/// (SCIENCE §1): h = W x (ReLU for relu_hidden and abs_value), x' = W_out h + b (W_out = W when tied), then ReLU
/// except for the linear model. The target is x, or |x| for abs_value.
/// </summary>
public sealed record TrainedToyModel(string Directory, ToyConfig Config, float[] W, float[]? WOut, float[] B,
    int[] BestOfSetting)
{
    private int MatrixSize => Config.NFeatures * Config.NHidden;

    public ReadOnlySpan<float> InstanceW(int k) => W.AsSpan(k * MatrixSize, MatrixSize);

    /// <summary>Output i's weights over the hidden units, [n][m]: W_out for untied models, else W.</summary>
    public ReadOnlySpan<float> InstanceDecoder(int k) => (WOut ?? W).AsSpan(k * MatrixSize, MatrixSize);

    public ReadOnlySpan<float> InstanceB(int k) => B.AsSpan(k * Config.NFeatures, Config.NFeatures);

    /// <summary>Reads config.json, weights.safetensors and (when present) results.json; errors name the file and
    /// what it should hold.</summary>
    public static TrainedToyModel Load(string directory)
    {
        var configPath = Path.Combine(directory, "config.json");
        var weightsPath = Path.Combine(directory, "weights.safetensors");
        if (!System.IO.Directory.Exists(directory))
            throw new ConfigException($"--model {directory} does not exist; give a toy run folder (written by `toy --out`)");
        foreach (var path in new[] { configPath, weightsPath })
            if (!File.Exists(path))
                throw new ConfigException($"--model {directory}: {Path.GetFileName(path)} is missing; a toy run folder holds " +
                                          "config.json, results.json and weights.safetensors (written by `toy --out`)");
        var config = ToyConfigLoader.LoadFile(configPath);
        var (tensors, _) = SafeTensors.Read(weightsPath);
        long[] shape = [config.NInstances, config.NFeatures, config.NHidden];
        const string holds = "a toy run's weights hold W, b (and W_out when untied)";
        float[] Read(string name, long[] expected) => SafeTensors.Require(tensors, weightsPath, name, expected, holds);
        var w = Read("W", shape);
        var wOut = config.Model == ToyModelKind.AbsValue ? Read("W_out", shape) : null;
        var b = Read("b", [config.NInstances, config.NFeatures]);
        return new TrainedToyModel(directory, config, w, wOut, b, BestInstances(directory, config));
    }

    // results.json's settings[s].best_instance (the lowest training objective of the setting's repeats); the
    // setting's first instance when the run has no results.json or no sweep (then every setting is one instance).
    public static int[] BestInstances(string directory, ToyConfig config)
    {
        var fallback = config.Settings.Select(s => s.Instances[0]).ToArray();
        var path = Path.Combine(directory, "results.json");
        if (config.Sweep is null || !File.Exists(path)) return fallback;
        using var document = JsonObjectReader.Parse(File.ReadAllText(path), path);
        if (document.RootElement.ValueKind != JsonValueKind.Object ||
            !document.RootElement.TryGetProperty("settings", out var settings) || settings.ValueKind != JsonValueKind.Array)
            return fallback;
        if (settings.GetArrayLength() != config.Settings.Length)
            throw new ConfigException($"{path}: \"settings\" has {settings.GetArrayLength()} entries; config.json's sweep has " +
                                      $"{config.Settings.Length} settings");
        var best = new int[config.Settings.Length];
        for (var s = 0; s < best.Length; s++)
        {
            if (settings[s].ValueKind != JsonValueKind.Object || !settings[s].TryGetProperty("best_instance", out var value) ||
                value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out best[s]) ||
                !config.Settings[s].Instances.Contains(best[s]))
                throw new ConfigException($"{path}: settings[{s}].best_instance must be one of the setting's instances " +
                                          $"({string.Join(", ", config.Settings[s].Instances)})");
        }
        return best;
    }

    /// <summary>Checks an instance index against the model.</summary>
    public int CheckInstance(int instance) =>
        instance >= 0 && instance < Config.NInstances
            ? instance
            : throw new ConfigException($"--instance is {instance}; the model in {Directory} has instances 0..{Config.NInstances - 1}");

    /// <summary>The model's output x' [batch][n] for inputs x [batch][n] of one instance.</summary>
    public float[] Reconstruct(int instance, ReadOnlySpan<float> x)
    {
        int n = Config.NFeatures, m = Config.NHidden, batch = x.Length / n;
        var h = Harvest.Hidden(Config, InstanceW(instance), x);
        var decoder = InstanceDecoder(instance);
        var b = InstanceB(instance);
        var output = new float[batch * n];
        var relu = Config.Model != ToyModelKind.Linear;
        for (var t = 0; t < batch; t++)
        {
            var row = h.AsSpan(t * m, m);
            for (var i = 0; i < n; i++)
            {
                var value = b[i] + System.Numerics.Tensors.TensorPrimitives.Dot(decoder.Slice(i * m, m), row);
                output[t * n + i] = relu ? Math.Max(value, 0f) : value;
            }
        }
        return output;
    }

    /// <summary>What the model is trained to output for input x_i: |x_i| for abs_value, else x_i.</summary>
    public float Target(float x) => Config.Model == ToyModelKind.AbsValue ? Math.Abs(x) : x;

    /// <summary>Fresh inputs from the model's own data distribution: the training stream of the config (with its
    /// feature probabilities and feature sets) at steps past the trained ones, so no sample was trained on.
    /// A seed other than the run's draws a different stream of the same distribution. Returns x [samples][n].</summary>
    public float[] SampleInputs(EngineContext context, int instance, int samples, ulong? seed)
    {
        var config = seed is { } s ? Config with { Seed = s } : Config;
        using var model = ToyExperiment.CreateModel(context, config);
        int n = Config.NFeatures;
        var x = new float[(long)samples * n];
        var step = Config.Steps + 1;
        for (var done = 0; done < samples;)
        {
            var batch = model.SampleBatch(step++, instance);
            var rows = Math.Min(Config.BatchSize, samples - done);
            batch.AsSpan(0, rows * n).CopyTo(x.AsSpan(done * n));
            done += rows;
        }
        return x;
    }
}
