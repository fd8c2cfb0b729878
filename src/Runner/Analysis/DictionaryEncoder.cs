using System.Numerics.Tensors;
using NativeEngine.Interop;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Analysis;

/// <summary>
/// A saved dictionary's encoder on the host, for analyses that need the codes themselves: u = (x − b_dec) W_enc +
/// b_enc, then the architecture's activation (topk: the k largest, ReLU; batchtopk: u above the inference threshold,
/// ReLU; jumprelu: u above the latent's θ; standard: ReLU); matching pursuit has no encoder and runs its pursuit on the
/// decoder rows instead. One instance per thread (it holds scratch space).
/// </summary>
public sealed class DictionaryEncoder(SaeDictionary dict)
{
    private readonly float[] centred = new float[dict.DIn];
    private readonly int[] topIndex = new int[dict.K ?? 0];
    private readonly float[] topValue = new float[dict.K ?? 0];

    public SaeDictionary Dictionary => dict;

    /// <summary>The code of one activation x [d_in] into code [d_sae].</summary>
    public void Encode(ReadOnlySpan<float> x, Span<float> code)
    {
        int d = dict.DIn, m = dict.DSae;
        TensorPrimitives.Subtract(x, dict.BDec, centred);
        if (dict.Architecture == SaeArchitecture.MatchingPursuit)
        {
            Pursue(code);
            return;
        }
        dict.BEnc.CopyTo(code);
        for (var i = 0; i < d; i++)
            if (centred[i] != 0) TensorPrimitives.MultiplyAdd(dict.WEnc.AsSpan(i * m, m), centred[i], code, code);
        Activate(code);
    }

    /// <summary>The architecture's activation, in place, on one token's pre-activations u [d_sae] (u = (x − b_dec)
    /// W_enc + b_enc, however computed).</summary>
    public void Activate(Span<float> code)
    {
        var m = dict.DSae;
        switch (dict.Architecture)
        {
            case SaeArchitecture.TopK:
                KeepLargest(code, dict.K!.Value);
                break;
            case SaeArchitecture.BatchTopK or SaeArchitecture.MatryoshkaBatchTopK:
                var threshold = dict.Threshold?[0] ?? 0;
                for (var j = 0; j < m; j++) code[j] = code[j] > threshold ? Math.Max(code[j], 0) : 0;
                break;
            case SaeArchitecture.JumpRelu:
                // θ > 0 as read; a threshold at or below 0 still lets only positive codes through (ReLU(u)·[u > θ]).
                for (var j = 0; j < m; j++) code[j] = code[j] > Math.Max(dict.Threshold![j], 0) ? code[j] : 0;
                break;
            default:
                TensorPrimitives.Max(code, 0f, code);
                break;
        }
    }

    // Matching pursuit from the residual in `centred` (x − b_dec), as the native SAE runs it (sae.h): each step takes
    // the decoder row of largest ReLU(r·w_j) (the first on a tie), adds that value to its code and subtracts the row
    // times it from r; it stops after max_iterations steps (d_in when unset), after a step that adds no latent to the
    // support (stop_on_duplicate_support), or once ‖r‖ < residual_threshold (when > 0).
    private void Pursue(Span<float> code)
    {
        int d = dict.DIn, m = dict.DSae;
        var settings = dict.Pursuit ?? new MatchingPursuitSettings();
        var limit = settings.MaxIterations ?? d;
        code.Clear();
        for (var step = 0; step < limit; step++)
        {
            var best = 0;
            var bestValue = 0f;
            for (var j = 0; j < m; j++)
            {
                var v = Math.Max(TensorPrimitives.Dot(dict.WDec.AsSpan(j * d, d), centred), 0f);
                if (v > bestValue)
                {
                    best = j;
                    bestValue = v;
                }
            }
            var added = code[best] == 0 && bestValue != 0;
            code[best] += bestValue;
            TensorPrimitives.MultiplyAdd(dict.WDec.AsSpan(best * d, d), -bestValue, centred, centred);
            if (settings.StopOnDuplicateSupport && !added) break;
            if (settings.ResidualThreshold > 0 && TensorPrimitives.Norm(centred) < settings.ResidualThreshold) break;
        }
    }

    // The k largest entries (the first of equal values win), ReLU'd; the rest 0. A sorted list of the best k so
    // far: one pass, and an insertion only when a value beats the current k-th.
    private void KeepLargest(Span<float> code, int k)
    {
        k = Math.Min(k, code.Length);
        var count = 0;
        for (var j = 0; j < code.Length; j++)
        {
            if (count == k && code[j] <= code[topIndex[k - 1]]) continue;
            var position = count < k ? count++ : k - 1;
            while (position > 0 && code[topIndex[position - 1]] < code[j])
            {
                topIndex[position] = topIndex[position - 1];
                position--;
            }
            topIndex[position] = j;
        }
        for (var s = 0; s < k; s++) topValue[s] = Math.Max(code[topIndex[s]], 0);
        code.Clear();
        for (var s = 0; s < k; s++) code[topIndex[s]] = topValue[s];
    }
}
