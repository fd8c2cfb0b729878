using System.Numerics.Tensors;
using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>How encode turns activations into codes with a fixed dictionary.</summary>
public enum SparseEncoder
{
    /// <summary>The dictionary's own encoder.</summary>
    Sae,
    /// <summary>FISTA on the lasso with the decoder.</summary>
    Fista,
    /// <summary>Orthogonal matching pursuit with the decoder.</summary>
    Omp,
}

/// <summary>A saved dictionary (ours or any SAELens-layout folder) measured on activations, or used to encode them.</summary>
public static class DictionaryEvaluation
{
    /// <summary>A native SAE holding the dictionary, for its fast forward pass.</summary>
    public static SparseAutoencoder Load(EngineContext context, SaeDictionary dict, int batch)
    {
        var pursuit = dict.Pursuit ?? new MatchingPursuitSettings();
        var sae = new SparseAutoencoder(context, new SaeModelSpec(dict.Architecture, dict.DIn, dict.DSae, dict.K ?? 1,
            batch, Seed: 0, ResidualThreshold: (float)pursuit.ResidualThreshold, MaxIterations: pursuit.MaxIterations ?? 0,
            StopOnDuplicateSupport: pursuit.StopOnDuplicateSupport));
        sae.SetParameters(dict.WEnc, dict.BEnc, dict.WDec, dict.BDec, dict.Threshold ?? []);
        return sae;
    }

    /// <summary>The metrics.json of a factorize run, for <paramref name="dict"/> on the data: seconds and tokens per
    /// second are the measurement's own; also the tokens of non-finite input skipped.</summary>
    /// <param name="dictionaryPath">Where the dictionary was read from, for messages.</param>
    public static (FactorizeMetrics Metrics, long SkippedTokens) Evaluate(EngineContext context, SaeDictionary dict,
        string dictionaryPath, EvalData data, CancellationToken cancel = default)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var (source, truth) = Factorization.OpenData(context, data.Data, data.BatchSize, 0);
        using var dataSource = source;
        using var knownTruth = truth;
        CheckDimension(source.D, dict, dictionaryPath);
        using var sae = Load(context, dict, data.BatchSize);
        var batches = (int)Math.Clamp((data.Tokens + data.BatchSize - 1) / data.BatchSize, 1, int.MaxValue);
        var tokens = (long)batches * data.BatchSize;
        var metrics = Factorization.Measure(sae, source, truth, tokens, 0, out _, batches, cancel);
        var seconds = clock.Elapsed.TotalSeconds;
        metrics = metrics with { Seconds = seconds, TokensPerSecond = tokens / seconds };
        if (truth is { HasSamples: true })
            metrics = metrics with { Truth = TruthEvaluation.Measure(dict, truth, data.Evaluation.Samples, data.BatchSize, cancel) };
        return (metrics, source.State.SkippedTokens);
    }

    /// <summary>
    /// The codes of data.Tokens activations: PREFIX_indices.npy (int32 [tokens][slots], -1 for an empty slot) and
    /// PREFIX_values.npy, the <paramref name="slots"/> largest |values| per token, largest first. False (nothing
    /// written) when cancelled.
    /// </summary>
    public static bool Encode(SaeDictionary dict, string dictionaryPath, EvalData data, SparseEncoder encoder, int slots,
        double lambda, string outPrefix, IRunProgress progress, CancellationToken cancel = default)
    {
        using var context = new EngineContext(Backend.Cpu);  // the data's generator, when synthetic
        var (source, truth) = Factorization.OpenData(context, data.Data, data.BatchSize, 0);
        truth?.Dispose();
        using var dataSource = source;
        CheckDimension(source.D, dict, dictionaryPath);
        int d = dict.DIn, m = dict.DSae;
        var lipschitz = encoder == SparseEncoder.Fista ? SparseCoding.LipschitzConstant(dict.WDec, m, d) : 0;
        var tokens = data.Tokens;
        var indices = new int[tokens * slots];
        var values = new float[tokens * slots];
        Array.Fill(indices, -1);
        var code = new float[m];
        var centred = new float[d];
        var sae = new DictionaryEncoder(dict);
        var report = progress.For($"encode ({encoder.ToString().ToLowerInvariant()})");
        long t = 0;
        while (t < tokens)
        {
            if (cancel.IsCancellationRequested) return false;
            var batch = source.Next();
            for (var row = 0; row < batch.Length / d && t < tokens; row++, t++)
            {
                var x = batch.Span.Slice(row * d, d);
                switch (encoder)
                {
                    case SparseEncoder.Fista:
                        TensorPrimitives.Subtract(x, dict.BDec, centred);
                        SparseCoding.Fista(dict.WDec, m, d, centred, lambda, lipschitz).CopyTo(code, 0);
                        break;
                    case SparseEncoder.Omp:
                        TensorPrimitives.Subtract(x, dict.BDec, centred);
                        SparseCoding.Omp(dict.WDec, m, d, centred, slots).CopyTo(code, 0);
                        break;
                    default:
                        sae.Encode(x, code);
                        break;
                }
                Keep(code, slots, indices.AsSpan((int)(t * slots), slots), values.AsSpan((int)(t * slots), slots));
            }
            report(t, tokens);
        }
        Npy.WriteI32(outPrefix + "_indices.npy", indices, slots);
        Npy.WriteF32(outPrefix + "_values.npy", values, slots);
        return true;
    }

    private static void CheckDimension(int d, SaeDictionary dict, string dictionaryPath)
    {
        if (d != dict.DIn)
            throw new ConfigException($"--data gives activations of d = {d}; the dictionary in {dictionaryPath} has d_in = {dict.DIn}");
    }

    // The `slots` largest |values|, index order by magnitude; unused slots keep index -1.
    private static void Keep(float[] code, int slots, Span<int> indices, Span<float> values)
    {
        var order = Enumerable.Range(0, code.Length).Where(j => code[j] != 0)
            .OrderByDescending(j => Math.Abs(code[j])).ThenBy(j => j).Take(slots).ToArray();
        for (var s = 0; s < order.Length; s++)
        {
            indices[s] = order[s];
            values[s] = code[order[s]];
        }
    }
}
