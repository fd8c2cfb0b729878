using NativeEngine.Interop;

namespace NativeEngine.Tests;

/// <summary>The sparse autoencoder's CUDA backend against the CPU through the C# API (cuda/tests/test_sae_parity.cpp
/// covers it in depth), and the precisions only CUDA offers.</summary>
public class SaeCudaTests
{
    private const int D = 32, M = 24, Dead = 8, K = 3, Batch = 128;

    /// <summary>A dictionary with orthonormal rows and data made of it whose codes stay far from every selection
    /// boundary (see test_sae_parity.cpp): both backends then choose the same codes and differ only by rounding.</summary>
    private sealed class Problem
    {
        public readonly float[] WEnc = new float[D * M], BEnc = new float[M], WDec = new float[M * D], BDec = new float[D];
        public readonly float[] Theta = Enumerable.Repeat(0.6f, M).ToArray();
        private readonly Random _random = new(5);

        public Problem()
        {
            var rows = new double[M, D];
            for (var j = 0; j < M; j++)
            {
                for (var i = 0; i < D; i++) rows[j, i] = Normal();
                for (var pass = 0; pass < 2; pass++)
                    for (var q = 0; q < j; q++)
                    {
                        double dot = 0;
                        for (var i = 0; i < D; i++) dot += rows[j, i] * rows[q, i];
                        for (var i = 0; i < D; i++) rows[j, i] -= dot * rows[q, i];
                    }
                double norm = 0;
                for (var i = 0; i < D; i++) norm += rows[j, i] * rows[j, i];
                for (var i = 0; i < D; i++) rows[j, i] /= Math.Sqrt(norm);
                for (var i = 0; i < D; i++) WDec[j * D + i] = (float)rows[j, i];
            }
            for (var i = 0; i < D; i++)
                for (var j = 0; j < M; j++) WEnc[i * M + j] = WDec[j * D + i];
            for (var j = 0; j < M; j++) BEnc[j] = j < M - Dead ? -0.3f : 0.38f + 0.01f * (j - (M - Dead));
            for (var i = 0; i < D; i++) BDec[i] = (float)(0.1 * Normal());
        }

        private double Normal() => Math.Sqrt(-2 * Math.Log(1 - _random.NextDouble())) * Math.Cos(2 * Math.PI * _random.NextDouble());

        /// <summary>Each token: K distinct live atoms with coefficients in [1.5, 2.5], plus a little noise.</summary>
        public float[] Batch(int tokens)
        {
            var x = new float[tokens * D];
            for (var t = 0; t < tokens; t++)
            {
                for (var i = 0; i < D; i++) x[t * D + i] = BDec[i] + (float)(0.002 * Normal());
                foreach (var j in Enumerable.Range(0, M - Dead).OrderBy(_ => _random.Next()).Take(K))
                {
                    var a = (float)(1.5 + _random.NextDouble());
                    for (var i = 0; i < D; i++) x[t * D + i] += a * WDec[j * D + i];
                }
            }
            return x;
        }
    }

    private static SaeModelSpec Spec(SaeArchitecture architecture, SaePrecision precision = SaePrecision.Fp32) =>
        new(architecture, D, M, K, Batch, Seed: 3, DeadWindow: Batch, KAux: M, L1Coefficient: 0.05f, L0Coefficient: 0.05f,
            JumpBandwidth: 0.6f, Eps: 1e-3f, Precision: precision,
            MatryoshkaWidths: architecture == SaeArchitecture.MatryoshkaBatchTopK ? [M / 6, M / 2, M] : null);

    [TestCase(SaeArchitecture.TopK)]
    [TestCase(SaeArchitecture.BatchTopK)]
    [TestCase(SaeArchitecture.Relu)]
    [TestCase(SaeArchitecture.JumpRelu)]
    [TestCase(SaeArchitecture.MatryoshkaBatchTopK)]
    public void CudaTrainingMatchesCpu(SaeArchitecture architecture)
    {
        TestSupport.RequireCuda();
        var problem = new Problem();
        var batches = Enumerable.Range(0, 6).Select(_ => problem.Batch(Batch)).ToArray();
        var evaluation = problem.Batch(100);
        (SaeParameters Parameters, SaeStats Last, SaeStats Evaluation, float[] XHat) Run(Backend backend)
        {
            using var context = new EngineContext(backend);
            using var sae = new SparseAutoencoder(context, Spec(architecture));
            sae.SetParameters(problem.WEnc, problem.BEnc, problem.WDec, problem.BDec,
                architecture == SaeArchitecture.JumpRelu ? problem.Theta : []);
            SaeStats last = default;
            foreach (var batch in batches) last = sae.TrainStep(batch, 1e-3f);
            var xHat = new float[evaluation.Length];
            var stats = sae.Evaluate(evaluation, xHat, default);
            return (sae.GetParameters(), last, stats, xHat);
        }
        var cpu = Run(Backend.Cpu);
        var cuda = Run(Backend.Cuda);
        void Close(string name, float[] expected, float[] actual, double atol, double rtol)
        {
            for (var q = 0; q < expected.Length; q++)
                Assert.That(actual[q], Is.EqualTo(expected[q]).Within(atol + rtol * Math.Abs(expected[q])), $"{name}[{q}]");
        }
        Close("W_enc", cpu.Parameters.WEnc, cuda.Parameters.WEnc, 1e-5, 1e-4);
        Close("b_enc", cpu.Parameters.BEnc, cuda.Parameters.BEnc, 1e-5, 1e-4);
        Close("W_dec", cpu.Parameters.WDec, cuda.Parameters.WDec, 1e-5, 1e-4);
        Close("b_dec", cpu.Parameters.BDec, cuda.Parameters.BDec, 1e-5, 1e-4);
        Close("threshold", cpu.Parameters.Threshold, cuda.Parameters.Threshold, 1e-5, 1e-4);
        Close("x_hat", cpu.XHat, cuda.XHat, 1e-4, 1e-4);
        foreach (var (name, a, b) in new[] { ("training", cpu.Last, cuda.Last), ("evaluation", cpu.Evaluation, cuda.Evaluation) })
        {
            Assert.That(b.Mse, Is.EqualTo(a.Mse).Within(1e-7 + 1e-3 * a.Mse), $"{name} mse");
            Assert.That(b.Fvu, Is.EqualTo(a.Fvu).Within(1e-7 + 1e-3 * a.Fvu), $"{name} fvu");
            Assert.That(b.Sparsity, Is.EqualTo(a.Sparsity).Within(1e-7 + 1e-3 * a.Sparsity), $"{name} sparsity");
            Assert.That(b.Auxk, Is.EqualTo(a.Auxk).Within(1e-7 + 1e-3 * a.Auxk), $"{name} auxk");
            Assert.That(b.L0, Is.EqualTo(a.L0), $"{name} l0");
            Assert.That(b.Dead, Is.EqualTo(a.Dead), $"{name} dead");
        }
        if (architecture is SaeArchitecture.TopK || SaeModelSpec.SelectsOverBatch(architecture))
            Assert.That(cpu.Last.Auxk, Is.GreaterThan(0), "the dead latents trained through AuxK");
    }

    [TestCase(SaePrecision.Tf32)]
    [TestCase(SaePrecision.Bf16)]
    public void ReducedPrecisionNeedsCuda(SaePrecision precision)
    {
        using var context = new EngineContext(Backend.Cpu);
        var error = Assert.Throws<NativeEngineException>(() => new SparseAutoencoder(context, Spec(SaeArchitecture.TopK, precision)).Dispose())!;
        Assert.That(error.Status, Is.EqualTo(Status.Unsupported));
        Assert.That(error.NativeMessage, Does.Contain("config.precision is").And.Contain("needs the CUDA backend"));
    }

    [TestCase(SaePrecision.Tf32)]
    [TestCase(SaePrecision.Bf16)]
    public void ReducedPrecisionTrainsOnCuda(SaePrecision precision)
    {
        TestSupport.RequireCuda();
        var problem = new Problem();
        using var context = new EngineContext(Backend.Cuda);
        using var sae = new SparseAutoencoder(context, Spec(SaeArchitecture.TopK, precision));
        sae.SetParameters(problem.WEnc, problem.BEnc, problem.WDec, problem.BDec, []);
        SaeStats first = default, last = default;
        for (var step = 0; step < 30; step++)
        {
            last = sae.TrainStep(problem.Batch(Batch), 1e-3f);
            if (step == 0) first = last;
        }
        Assert.That(last.L0, Is.EqualTo(K), "the encoder still finds each token's atoms");
        Assert.That(last.Mse, Is.LessThan(first.Mse), "training lowers the error");
    }
}
