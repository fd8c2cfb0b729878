using NativeEngine.Runner.Analysis;

namespace NativeEngine.Tests;

/// <summary>FISTA and OMP recover a known sparse code from an incoherent overcomplete dictionary.</summary>
public class SparseCodingTests
{
    private const int D = 64, M = 256;

    private static float[] UnitAtoms(int seed)
    {
        var rng = new Random(seed);
        var atoms = new float[M * D];
        for (var j = 0; j < M; j++)
        {
            double norm = 0;
            for (var i = 0; i < D; i++)
            {
                var g = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
                atoms[j * D + i] = (float)g;
                norm += g * g;
            }
            for (var i = 0; i < D; i++) atoms[j * D + i] /= (float)Math.Sqrt(norm);
        }
        return atoms;
    }

    private static (float[] X, Dictionary<int, float> Code) Signal(float[] atoms, int seed)
    {
        var rng = new Random(seed);
        var code = new Dictionary<int, float>();
        while (code.Count < 4) code[rng.Next(M)] = 0.5f + (float)rng.NextDouble();
        var x = new float[D];
        foreach (var (j, c) in code)
            for (var i = 0; i < D; i++) x[i] += c * atoms[j * D + i];
        return (x, code);
    }

    [Test]
    public void OmpFindsTheAtomsAndTheirCoefficients()
    {
        var atoms = UnitAtoms(1);
        for (var trial = 0; trial < 10; trial++)
        {
            var (x, code) = Signal(atoms, 100 + trial);
            var z = SparseCoding.Omp(atoms, M, D, x, 4);
            foreach (var (j, c) in code) Assert.That(z[j], Is.EqualTo(c).Within(1e-3), $"trial {trial}, atom {j}");
            Assert.That(z.Count(v => v != 0), Is.EqualTo(4));
        }
    }

    [Test]
    public void FistaFindsTheSupportWithASmallPenalty()
    {
        var atoms = UnitAtoms(2);
        var lipschitz = SparseCoding.LipschitzConstant(atoms, M, D);
        Assert.That(lipschitz, Is.GreaterThan(M / (double)D), "‖D Dᵀ‖ is at least its mean eigenvalue m/d");
        for (var trial = 0; trial < 5; trial++)
        {
            var (x, code) = Signal(atoms, 200 + trial);
            var z = SparseCoding.Fista(atoms, M, D, x, lambda: 0.01, lipschitz, iterations: 500);
            foreach (var (j, c) in code) Assert.That(z[j], Is.EqualTo(c).Within(0.05), $"trial {trial}, atom {j}");
            var offSupport = z.Where((v, j) => !code.ContainsKey(j)).Max(Math.Abs);
            Assert.That(offSupport, Is.LessThan(0.05), "little weight outside the true support");
        }
    }
}
