using System.Numerics.Tensors;

namespace NativeEngine.Runner.Analysis;

/// <summary>
/// Classical sparse coding with a fixed dictionary (the compressed-sensing view of SCIENCE §3), as alternatives to
/// an autoencoder's encoder: for one input x [d] and atoms D [m][d] (rows), find codes z [m] with x ≈ zD.
/// FISTA solves the lasso min ½‖x − zD‖² + λ‖z‖₁ (optionally z ≥ 0); OMP picks k atoms greedily and fits
/// them by least squares.
/// </summary>
public static class SparseCoding
{
    /// <summary>The largest eigenvalue of D Dᵀ (the gradient's Lipschitz constant), by power iteration.</summary>
    public static double LipschitzConstant(ReadOnlySpan<float> atoms, int m, int d, int iterations = 50)
    {
        var v = new float[m];
        var t = new float[d];
        Array.Fill(v, 1f / MathF.Sqrt(m));
        double eigen = 0;
        for (var it = 0; it < iterations; it++)
        {
            Decode(atoms, v, m, d, t);        // t = v D
            Encode(atoms, t, m, d, v);        // v = D tᵀ
            eigen = TensorPrimitives.Norm(v);
            if (eigen == 0) return 0;
            TensorPrimitives.Divide(v, (float)eigen, v);
        }
        return eigen;
    }

    /// <summary>FISTA (Beck and Teboulle 2009) on the lasso; step 1/L with L from <see cref="LipschitzConstant"/>.</summary>
    public static float[] Fista(ReadOnlySpan<float> atoms, int m, int d, ReadOnlySpan<float> x, double lambda,
        double lipschitz, int iterations = 200, bool nonNegative = true)
    {
        var z = new float[m];
        var y = new float[m];
        var previous = new float[m];
        var residual = new float[d];
        var gradient = new float[m];
        double t = 1;
        var step = (float)(1 / lipschitz);
        var threshold = (float)(lambda / lipschitz);
        for (var it = 0; it < iterations; it++)
        {
            Decode(atoms, y, m, d, residual);
            TensorPrimitives.Subtract(residual, x, residual);   // yD − x
            Encode(atoms, residual, m, d, gradient);            // gradient of ½‖x − yD‖² in y
            z.CopyTo(previous, 0);
            for (var j = 0; j < m; j++)
            {
                var u = y[j] - step * gradient[j];
                z[j] = nonNegative ? MathF.Max(u - threshold, 0) : MathF.Sign(u) * MathF.Max(MathF.Abs(u) - threshold, 0);
            }
            var tNext = (1 + Math.Sqrt(1 + 4 * t * t)) / 2;
            var momentum = (float)((t - 1) / tNext);
            for (var j = 0; j < m; j++) y[j] = z[j] + momentum * (z[j] - previous[j]);
            t = tNext;
        }
        return z;
    }

    /// <summary>Orthogonal matching pursuit: k atoms chosen by largest |correlation| with the residual, their
    /// coefficients refit by least squares after each choice (normal equations, Cholesky).</summary>
    public static float[] Omp(ReadOnlySpan<float> atoms, int m, int d, ReadOnlySpan<float> x, int k)
    {
        var z = new float[m];
        var residual = x.ToArray();
        var correlation = new float[m];
        var chosen = new List<int>();
        double[] coefficients = [];
        for (var step = 0; step < Math.Min(k, Math.Min(m, d)); step++)
        {
            Encode(atoms, residual, m, d, correlation);
            int best = -1;
            for (var j = 0; j < m; j++)
                if (!chosen.Contains(j) && (best < 0 || MathF.Abs(correlation[j]) > MathF.Abs(correlation[best]))) best = j;
            if (best < 0 || correlation[best] == 0) break;
            chosen.Add(best);
            coefficients = LeastSquares(atoms, d, chosen, x);
            x.CopyTo(residual);
            for (var c = 0; c < chosen.Count; c++)
                TensorPrimitives.MultiplyAdd(atoms.Slice(chosen[c] * d, d), (float)-coefficients[c], residual, residual);
        }
        for (var c = 0; c < chosen.Count; c++) z[chosen[c]] = (float)coefficients[c];
        return z;
    }

    // Coefficients of the chosen atoms minimising ‖x − Σ c_a D_a‖² (Gram matrix, Cholesky).
    private static double[] LeastSquares(ReadOnlySpan<float> atoms, int d, List<int> chosen, ReadOnlySpan<float> x)
    {
        var s = chosen.Count;
        var gram = new double[s, s];
        var rhs = new double[s];
        for (var a = 0; a < s; a++)
        {
            rhs[a] = TensorPrimitives.Dot(atoms.Slice(chosen[a] * d, d), x);
            for (var b = 0; b <= a; b++)
                gram[a, b] = gram[b, a] = TensorPrimitives.Dot(atoms.Slice(chosen[a] * d, d), atoms.Slice(chosen[b] * d, d));
        }
        // Cholesky G = L Lᵀ (a tiny ridge keeps near-parallel atoms solvable), then two triangular solves.
        var lower = new double[s, s];
        for (var i = 0; i < s; i++)
            for (var j = 0; j <= i; j++)
            {
                var sum = gram[i, j] + (i == j ? 1e-10 : 0);
                for (var p = 0; p < j; p++) sum -= lower[i, p] * lower[j, p];
                lower[i, j] = i == j ? Math.Sqrt(Math.Max(sum, 1e-20)) : sum / lower[j, j];
            }
        var y = new double[s];
        for (var i = 0; i < s; i++)
        {
            var sum = rhs[i];
            for (var p = 0; p < i; p++) sum -= lower[i, p] * y[p];
            y[i] = sum / lower[i, i];
        }
        var c = new double[s];
        for (var i = s - 1; i >= 0; i--)
        {
            var sum = y[i];
            for (var p = i + 1; p < s; p++) sum -= lower[p, i] * c[p];
            c[i] = sum / lower[i, i];
        }
        return c;
    }

    // out [d] = z D
    private static void Decode(ReadOnlySpan<float> atoms, ReadOnlySpan<float> z, int m, int d, Span<float> output)
    {
        output.Clear();
        for (var j = 0; j < m; j++)
            if (z[j] != 0) TensorPrimitives.MultiplyAdd(atoms.Slice(j * d, d), z[j], output, output);
    }

    // out [m] = D v
    private static void Encode(ReadOnlySpan<float> atoms, ReadOnlySpan<float> v, int m, int d, Span<float> output)
    {
        for (var j = 0; j < m; j++) output[j] = TensorPrimitives.Dot(atoms.Slice(j * d, d), v);
    }
}
