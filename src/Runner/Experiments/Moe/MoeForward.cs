using NativeEngine.Interop;
using NativeEngine.Runner.Configs;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// One trained mixture-of-experts instance run forward at inference (no router noise, no token dropping), as the
/// native model defines it: H = x W_g, experts chosen by the top_k of H + route_bias (ties to the lower index),
/// g = softmax(H) (renormalised over the chosen experts when the config says so), expert e's hidden
/// h_e = W_e x (ReLU'd for relu_hidden experts), y = Σ_chosen g_e ReLU(W_eᵀ h_e + b_e). Counts, per feature, how
/// often each expert handles it while it is active.
/// </summary>
public sealed class MoeForward
{
    private readonly MoeConfig config;
    private readonly float[] w, b, gate, routeBias;  // [E][n][m], [E][n], [n][E], [E]
    private readonly long[] handled;                 // [n][E]
    private readonly int n, m, experts;

    public MoeForward(MoeConfig config, MoeParameters p, int instance)
    {
        this.config = config;
        (n, m, experts) = (config.Run.NFeatures, config.ExpertHidden, config.NExperts);
        w = p.W.AsSpan(instance * experts * n * m, experts * n * m).ToArray();
        b = p.B.AsSpan(instance * experts * n, experts * n).ToArray();
        gate = p.WGate.AsSpan(instance * n * experts, n * experts).ToArray();
        routeBias = p.RouteBias.AsSpan(instance * experts, experts).ToArray();
        handled = new long[n * experts];
    }

    /// <summary>Width of h: the experts' hidden layers side by side.</summary>
    public int HiddenSize => experts * m;

    /// <summary>h [rows][E·m] for x [rows][n]; zero in the blocks of experts not chosen.</summary>
    public float[] Hidden(float[] x) => Forward(x, null);

    /// <summary>h as <see cref="Hidden"/>, and the model's output y [rows][n] written to <paramref name="y"/>.</summary>
    public float[] Forward(float[] x, float[]? y)
    {
        var rows = x.Length / n;
        var h = new float[rows * HiddenSize];
        var logits = new double[experts];
        var order = new int[experts];
        for (var t = 0; t < rows; t++)
        {
            var xt = x.AsSpan(t * n, n);
            for (var e = 0; e < experts; e++)
            {
                double sum = 0;
                for (var i = 0; i < n; i++) sum += xt[i] * gate[i * experts + e];
                logits[e] = sum;
            }
            for (var e = 0; e < experts; e++) order[e] = e;
            // Stable: equal scores keep the lower index first, as the native router does.
            var chosen = order.OrderByDescending(e => logits[e] + routeBias[e]).Take(config.TopK).ToArray();
            var top = logits.Max();
            var total = logits.Sum(v => Math.Exp(v - top));
            var chosenTotal = chosen.Sum(e => Math.Exp(logits[e] - top));
            foreach (var e in chosen)
            {
                var he = h.AsSpan(t * HiddenSize + e * m, m);
                var we = w.AsSpan(e * n * m, n * m);
                for (var i = 0; i < n; i++)
                {
                    if (xt[i] == 0) continue;
                    handled[i * experts + e]++;
                    System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(we.Slice(i * m, m), xt[i], he, he);
                }
                if (config.Run.HasPrivilegedBasis) System.Numerics.Tensors.TensorPrimitives.Max(he, 0f, he);
                if (y is null) continue;
                var g = Math.Exp(logits[e] - top) / (config.Router.Renormalize ? chosenTotal : total);
                for (var i = 0; i < n; i++)
                {
                    double pre = b[e * n + i];
                    for (var k = 0; k < m; k++) pre += we[i * m + k] * he[k];
                    y[t * n + i] += (float)(g * Math.Max(pre, 0));
                }
            }
        }
        return h;
    }

    /// <summary>Per feature, the expert that handled it most often while it was active (ties to the lower index).</summary>
    public int[] HomeExperts() => Enumerable.Range(0, n)
        .Select(i => Enumerable.Range(0, experts).MaxBy(e => (handled[i * experts + e], -e)))
        .ToArray();

    /// <summary>[n][E·m]: feature i's row of W in its home expert, in that expert's block of h.</summary>
    public float[] HomeDirections()
    {
        var home = HomeExperts();
        var directions = new float[n * HiddenSize];
        for (var i = 0; i < n; i++)
            w.AsSpan((home[i] * n + i) * m, m).CopyTo(directions.AsSpan(i * HiddenSize + home[i] * m, m));
        return directions;
    }
}
