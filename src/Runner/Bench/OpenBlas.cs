using System.Runtime.InteropServices;

namespace NativeEngine.Runner.Bench;

/// <summary>
/// OpenBLAS's cblas_sgemm, called directly (no Python in between), as the reference GEMM of the machine's peak.
/// Loaded at run time: the library is optional (libopenblas0-pthread on Debian, bench/setup-peers.sh) and
/// NE_OPENBLAS may name another build of it.
/// </summary>
public sealed unsafe class OpenBlas
{
    private const int RowMajor = 101, NoTrans = 111;  // CBLAS_ORDER, CBLAS_TRANSPOSE

    // cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); blasint is 32-bit in
    // the LP64 builds distributions ship.
    private readonly delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> sgemm;

    public string Library { get; }

    /// <summary>openblas_get_config(): version, build options and the core it chose, e.g.
    /// "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=64".</summary>
    public string? Config { get; }

    /// <summary>Threads OpenBLAS runs a GEMM on (openblas_get_num_threads; OPENBLAS_NUM_THREADS sets it).</summary>
    public int? Threads { get; }

    private OpenBlas(string library, IntPtr handle)
    {
        Library = library;
        sgemm = (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)
            NativeLibrary.GetExport(handle, "cblas_sgemm");
        if (NativeLibrary.TryGetExport(handle, "openblas_get_config", out var config))
            Config = Marshal.PtrToStringUTF8(((delegate* unmanaged<IntPtr>)config)())?.Trim();
        if (NativeLibrary.TryGetExport(handle, "openblas_get_num_threads", out var threads))
            Threads = ((delegate* unmanaged<int>)threads)();
    }

    /// <summary>The libraries tried, in order.</summary>
    public static IEnumerable<string> Candidates()
    {
        if (Environment.GetEnvironmentVariable("NE_OPENBLAS") is { Length: > 0 } chosen) yield return chosen;
        yield return "libopenblas.so.0";
        yield return "libopenblas.so";
        yield return "libopenblas.dylib";
        yield return "libopenblas.dll";
    }

    /// <summary>The first candidate that loads and exports cblas_sgemm, or null with the reason in <paramref name="why"/>.</summary>
    public static OpenBlas? TryLoad(out string why)
    {
        var tried = new List<string>();
        foreach (var name in Candidates())
        {
            if (!NativeLibrary.TryLoad(name, out var handle))
            {
                tried.Add($"{name}: not found");
                continue;
            }
            if (!NativeLibrary.TryGetExport(handle, "cblas_sgemm", out _))
            {
                tried.Add($"{name}: no cblas_sgemm");
                continue;
            }
            why = "";
            return new OpenBlas(name, handle);
        }
        why = string.Join("; ", tried);
        return null;
    }

    /// <summary>C [m][n] = A [m][k] B [k][n], row-major.</summary>
    public void Sgemm(int m, int n, int k, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c)
    {
        if (a.Length != (long)m * k || b.Length != (long)k * n || c.Length != (long)m * n)
            throw new ArgumentException($"sgemm {m}x{n}x{k}: A has {a.Length}, B {b.Length}, C {c.Length} floats");
        fixed (float* pa = a, pb = b, pc = c)
            sgemm(RowMajor, NoTrans, NoTrans, m, n, k, 1f, pa, k, pb, n, 0f, pc, n);
    }
}
