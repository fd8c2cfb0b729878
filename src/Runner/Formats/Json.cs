using System.Text.Json;

namespace NativeEngine.Runner.Formats;

/// <summary>The one JSON writing helper of the run's files: numbers rounded to 7 significant digits, and, since JSON has
/// no NaN or infinity, a diverged value written as null.</summary>
public static class Json
{
    /// <summary>The document <paramref name="write"/> writes, as text: indented unless other options are given.</summary>
    public static string Document(Action<Utf8JsonWriter> write, JsonWriterOptions? options = null)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, options ?? new JsonWriterOptions { Indented = true }))
            write(w);
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    public static void Number(Utf8JsonWriter w, string name, double value)
    {
        w.WritePropertyName(name);
        Value(w, value);
    }

    public static void Value(Utf8JsonWriter w, double value)
    {
        if (double.IsFinite(value)) w.WriteNumberValue(Math.Round(value, 7));
        else w.WriteNullValue();
    }

    public static void Array(Utf8JsonWriter w, string name, IEnumerable<double> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values) Value(w, v);
        w.WriteEndArray();
    }

    /// <summary>values [rows][columns] row-major, as nested arrays of exact floats.</summary>
    public static void Matrix(Utf8JsonWriter w, string name, ReadOnlySpan<float> values, int rows, int columns)
    {
        w.WriteStartArray(name);
        for (var r = 0; r < rows; r++)
        {
            w.WriteStartArray();
            for (var c = 0; c < columns; c++)
            {
                var v = values[r * columns + c];
                if (float.IsFinite(v)) w.WriteNumberValue(v);
                else w.WriteNullValue();
            }
            w.WriteEndArray();
        }
        w.WriteEndArray();
    }
}
