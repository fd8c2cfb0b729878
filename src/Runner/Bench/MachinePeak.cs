using System.Text.Json.Nodes;
using NativeEngine.Interop;

namespace NativeEngine.Runner.Bench;

/// <summary>
/// The machine's peak, measured in the same run as the workloads: an n x n x n SGEMM through the engine's own
/// kernel (ne_sgemm, the CPU SAE encoder's) and through OpenBLAS's cblas_sgemm, on the same random inputs; the
/// faster of the two is the peak the workloads' FLOP rates are shares of. The two products are also compared, so
/// a wrong kernel cannot post a fast time.
/// </summary>
public sealed record MachinePeak(int Size, double EngineGflops, double? OpenBlasGflops, JsonObject Json)
{
    public double PeakGflops => Math.Max(EngineGflops, OpenBlasGflops ?? 0);

    /// <summary>The largest n: three n × n float matrices (3 GiB) and one product (2n³ = 8.8 TFLOP) per call.</summary>
    public const int MaxGemmSize = 16384;

    /// <summary>A rate as a share of the peak, rounded for the JSON.</summary>
    public double Share(double gflops) => Math.Round(gflops / PeakGflops, 4);

    public static MachinePeak Measure(int size, double seconds)
    {
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size), size, "the GEMM size must be >= 1");
        var n = (long)size * size;
        var rng = new Random(0);
        var a = new float[n];
        var b = new float[n];
        for (var j = 0L; j < n; j++) a[j] = (float)(rng.NextDouble() * 2 - 1);
        for (var j = 0L; j < n; j++) b[j] = (float)(rng.NextDouble() * 2 - 1);
        var flopsPerCall = 2.0 * size * size * (double)size;

        using var context = new EngineContext(Backend.Cpu);
        var ours = new float[n];
        var engine = Timing.Measure(calls => { for (var c = 0; c < calls; c++) Gemm.Sgemm(context, size, size, size, a, b, ours); },
            seconds, warmup: 1);
        var engineGflops = flopsPerCall * engine.PerSecond / 1e9;
        var json = new JsonObject
        {
            ["what"] = "C = A B, n x n x n float32, row-major; the same random A and B for both",
            ["size"] = size,
            ["flop_per_call"] = flopsPerCall,
            ["nativeengine"] = new JsonObject
            {
                ["kernel"] = "ne_sgemm: the CPU SAE encoder's blocked GEMM (cuda/src/cpu/sae_blocked.cpp)",
                ["threads"] = context.Device.Multiprocessors,
                ["calls"] = engine.Units,
                ["seconds"] = Math.Round(engine.Seconds, 4),
                ["gflops"] = Math.Round(engineGflops, 2),
            },
        };

        double? blasGflops = null;
        var blas = OpenBlas.TryLoad(out var why);
        if (blas is null)
        {
            json["openblas"] = new JsonObject { ["status"] = $"not run: no OpenBLAS ({why}); install libopenblas0-pthread" };
        }
        else
        {
            Thread.Sleep(300);  // let the OpenMP workers of the run above go idle
            var theirs = new float[n];
            var timing = Timing.Measure(calls => { for (var c = 0; c < calls; c++) blas.Sgemm(size, size, size, a, b, theirs); },
                seconds, warmup: 1);
            blasGflops = flopsPerCall * timing.PerSecond / 1e9;
            json["openblas"] = new JsonObject
            {
                ["status"] = "ok",
                ["via"] = "cblas_sgemm called from C# (function pointer into the loaded library), not through numpy",
                ["library"] = blas.Library,
                ["config"] = blas.Config,
                ["threads"] = blas.Threads,
                ["calls"] = timing.Units,
                ["seconds"] = Math.Round(timing.Seconds, 4),
                ["gflops"] = Math.Round(blasGflops.Value, 2),
                ["max_abs_difference"] = MaxAbsDifference(ours, theirs),
            };
        }
        var peak = new MachinePeak(size, engineGflops, blasGflops, json);
        json["peak_gflops"] = Math.Round(peak.PeakGflops, 2);
        json["peak_from"] = blasGflops > engineGflops ? "openblas" : "nativeengine";
        return peak;
    }

    private static double MaxAbsDifference(float[] x, float[] y)
    {
        double max = 0;
        for (var j = 0; j < x.Length; j++) max = Math.Max(max, Math.Abs((double)x[j] - y[j]));
        return max;
    }
}
