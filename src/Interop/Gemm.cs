namespace NativeEngine.Interop;

/// <summary>The engine's own GEMM (ne_sgemm): the blocked kernel of the CPU SAE encoder, exposed so it can be
/// checked against a plain product and timed against a BLAS.</summary>
public static class Gemm
{
    /// <summary>C [m][n] = A [m][k] B [k][n], row-major, on a CPU context (a CUDA context is refused).</summary>
    public static void Sgemm(EngineContext context, long m, long n, long k, ReadOnlySpan<float> a, ReadOnlySpan<float> b,
        Span<float> c) =>
        NativeEngineException.ThrowIfFailed(NativeMethods.Sgemm(context.Handle, m, n, k, a, a.Length, b, b.Length, c, c.Length));
}
