using System.Globalization;

namespace NativeEngine.Runner.Reports.Figures;

/// <summary>An sRGB colour, written as #rrggbb.</summary>
public readonly record struct Rgb(byte R, byte G, byte B)
{
    public static Rgb Parse(string hex)
    {
        var s = hex.TrimStart('#');
        if (s.Length != 6) throw new FormatException($"colour '{hex}' is not #rrggbb");
        return new Rgb(Channel(s, 0), Channel(s, 2), Channel(s, 4));
    }

    public static Rgb Lerp(Rgb a, Rgb b, double t) =>
        new(Mix(a.R, b.R, t), Mix(a.G, b.G, t), Mix(a.B, b.B, t));

    public override string ToString() => $"#{R:x2}{G:x2}{B:x2}";

    private static byte Channel(string s, int at) => byte.Parse(s.AsSpan(at, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    private static byte Mix(byte a, byte b, double t) => (byte)Math.Round(a + (b - a) * t);
}

/// <summary>A piecewise-linear colour map over [Min, Max]; values outside are clamped, non-finite ones get NoData.</summary>
public sealed record ColorMap(double Min, double Max, IReadOnlyList<(double At, Rgb Color)> Stops)
{
    public string this[double value] => At(value);

    public string At(double value) => double.IsFinite(value) ? RgbAt(value).ToString() : Palette.NoData;

    /// <summary>The colour of a finite value (a non-finite one gets <see cref="Palette.NoData"/>'s).</summary>
    public Rgb RgbAt(double value)
    {
        if (!double.IsFinite(value)) return Rgb.Parse(Palette.NoData);
        var t = Math.Clamp((value - Min) / (Max - Min), 0, 1);
        for (var k = 1; k < Stops.Count; k++)
        {
            if (t > Stops[k].At) continue;
            var (a, b) = (Stops[k - 1], Stops[k]);
            return Rgb.Lerp(a.Color, b.Color, (t - a.At) / (b.At - a.At));
        }
        return Stops[^1].Color;
    }

    /// <summary>The stops as gradient offsets in [0, 1], for a colour bar that matches the cells exactly.</summary>
    public IEnumerable<(double Offset, string Color)> GradientStops() => Stops.Select(s => (s.At, s.Color.ToString()));
}

/// <summary>Every colour the figures use, in one place, so the report reads as one document.</summary>
public static class Palette
{
    public const string Ink = "#222222";
    public const string Muted = "#666666";
    public const string Axis = "#444444";
    public const string Grid = "#e6e6e6";
    public const string NoData = "#d9d9d9";
    public const string Point = "#1f4e79";
    public const string Highlight = "#d95f02";

    // Tableau 10 then its light companions: distinct for the first ten, still separable up to twenty.
    private static readonly string[] categorical =
    [
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
        "#1f3b73", "#a65c00", "#8c1d2f", "#2f7f7a", "#2d6a27", "#b08d00", "#6d4a7a", "#c2566b", "#5e4536", "#6f6a66",
    ];

    public static int CategoricalCount => categorical.Length;

    /// <summary>Colour of category i; wraps around beyond the palette's size.</summary>
    public static string Categorical(int i) => categorical[((i % categorical.Length) + categorical.Length) % categorical.Length];

    /// <summary>Blue for negative, white at 0, red for positive, over [-scale, scale] (as the paper's WᵀW).</summary>
    public static ColorMap Diverging(double scale) => new(-scale, scale,
    [
        (0.0, Rgb.Parse("#2166ac")), (0.25, Rgb.Parse("#92c5de")), (0.5, Rgb.Parse("#ffffff")),
        (0.75, Rgb.Parse("#f4a582")), (1.0, Rgb.Parse("#b2182b")),
    ]);

    /// <summary>Superposition of a feature: black where it has a dedicated dimension (0), through orange, to
    /// yellow where it shares its dimension fully (1), as the paper's feature-norm bars.</summary>
    public static readonly ColorMap Superposition = new(0, 1,
    [
        (0.0, Rgb.Parse("#000000")), (0.35, Rgb.Parse("#7f2704")), (0.7, Rgb.Parse("#f16913")), (1.0, Rgb.Parse("#fdd835")),
    ]);
}
