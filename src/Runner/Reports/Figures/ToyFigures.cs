namespace NativeEngine.Runner.Reports.Figures;

/// <summary>One feature of one model in the dimensionality scatter: X = 1/(1−S) = 1/p of the model's training
/// data, D its dimensionality D_i, Norm its ‖W_i‖ (unrepresented features fade out).</summary>
public sealed record DimensionalityPoint(double X, double D, double Norm, int Feature);

/// <summary>
/// The figures of Toy Models of Superposition (Elhage et al. 2022), each as a standalone SVG document.
/// W is row-major [n][m]: row i is feature i's direction in the m-dimensional hidden space. Every figure is
/// about 480 px wide, and none throws on NaN, infinite or all-zero input: such values are left out or shown
/// as "no data".
/// </summary>
public static partial class ToyFigures
{
    private const double Top = 42;

    /// <summary>Whether W can be read as [n][m]; where it cannot, the figure says "no data" rather than throw.</summary>
    private static bool Shaped(ReadOnlySpan<float> w, int n, int m) => n > 0 && m > 0 && (long)n * m <= w.Length;

    private static double Dot(ReadOnlySpan<float> w, int i, int j, int m)
    {
        double sum = 0;
        for (var k = 0; k < m; k++) sum += (double)w[i * m + k] * w[j * m + k];
        return sum;
    }

    private static IEnumerable<(double, string)> IndexTicks(int count, double first, double pixelsPerIndex, double minSpacing)
    {
        var stride = Chart.IndexStride(pixelsPerIndex, minSpacing);
        for (var i = 0; i < count; i += stride)
            yield return (first + (i + 0.5) * pixelsPerIndex, FigureFormat.Integer(i));
    }

    /// <summary>Index labels along an axis need room for the widest of them.</summary>
    private static double IndexLabelWidth(int count) => Chart.TextWidth(FigureFormat.Integer(Math.Max(0, count - 1)), Chart.TickFont);
}
