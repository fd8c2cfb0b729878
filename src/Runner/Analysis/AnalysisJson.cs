using System.Text.Encodings.Web;
using System.Text.Json;

namespace NativeEngine.Runner.Analysis;

/// <summary>How the analyses write their JSON: indented, with the method texts' quotes and symbols left readable.</summary>
public static class AnalysisJson
{
    public static readonly JsonWriterOptions Options = new()
    {
        Indented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>A number at full precision (p-values: rounding would turn 1e-9 into 0); null when not finite.</summary>
    public static void Exact(Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value)) w.WriteNumber(name, value);
        else w.WriteNull(name);
    }
}
