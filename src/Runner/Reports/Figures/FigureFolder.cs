using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Reports.Figures;

/// <summary>DIR/figures: saves an SVG atomically and returns its path relative to DIR.</summary>
public sealed class FigureFolder
{
    private readonly string _directory;
    private readonly List<string> _written = [];

    /// <summary>Every figure saved so far, relative to the folder.</summary>
    public IReadOnlyList<string> Written => _written;

    public FigureFolder(string directory)
    {
        _directory = directory;
        Directory.CreateDirectory(Path.Combine(directory, "figures"));
    }

    public string Save(string name, string svg)
    {
        var relative = $"figures/{name}.svg";
        AtomicFile.WriteText(Path.Combine(_directory, relative), svg, durable: false);
        _written.Add(relative);
        return relative;
    }
}
