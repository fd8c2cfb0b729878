using System.Text.Json;

namespace NativeEngine.Runner.Configs;

/// <summary>
/// Reads one JSON object of a config, key by key, with errors that name the source, the key, the value found
/// and what would be valid. Keys it was never asked for are reported as unknown by <see cref="RejectUnknownKeys"/>.
/// </summary>
public sealed class JsonObjectReader
{
    private readonly JsonElement _object;
    private readonly string _source;
    private readonly HashSet<string> _known = [];

    public static readonly JsonDocumentOptions DocumentOptions = new()
    {
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    public JsonObjectReader(JsonElement element, string source)
    {
        if (element.ValueKind != JsonValueKind.Object)
            throw new ConfigException($"{source}: the config must be a JSON object {{...}}, found {Describe(element)}");
        // JSON allows a key twice and a reader would take one silently; a config means one value per key.
        var seen = new HashSet<string>();
        foreach (var property in element.EnumerateObject())
            if (!seen.Add(property.Name))
                throw new ConfigException($"{source}: key \"{property.Name}\" is given twice; keep one");
        _object = element;
        _source = source;
    }

    /// <summary>The text of a config file; a missing path, a folder or an unreadable file is an error naming it.</summary>
    public static string ReadFile(string path)
    {
        if (Directory.Exists(path)) throw new ConfigException($"config file {path} is a folder; give the JSON file");
        if (!File.Exists(path)) throw new ConfigException($"config file {path} does not exist");
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"config file {path} cannot be read: {e.Message}");
        }
    }

    public static JsonDocument Parse(string json, string source)
    {
        try
        {
            return JsonDocument.Parse(json, DocumentOptions);
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{source}: not valid JSON: {e.Message}");
        }
    }

    /// <summary>The file (and enclosing keys) errors name.</summary>
    public string Source => _source;

    /// <summary>A reader for the object under <paramref name="key"/>; its errors name the file and the key.</summary>
    public JsonObjectReader Nested(JsonElement value, string key) => new(value, $"{_source}: \"{key}\"");

    public ConfigException Error(string key, string message) => new($"{_source}: \"{key}\" {message}");

    public bool TryGet(string key, out JsonElement value)
    {
        _known.Add(key);
        return _object.TryGetProperty(key, out value);
    }

    public JsonElement Require(string key, string valid)
    {
        if (!TryGet(key, out var value)) throw new ConfigException($"{_source}: missing required key \"{key}\" ({valid})");
        return value;
    }

    public long Integer(string key, long min, long max, long? fallback = null)
    {
        var valid = $"an integer in [{min}, {max}]";
        if (!TryGet(key, out var value))
            return fallback ?? throw new ConfigException($"{_source}: missing required key \"{key}\" ({valid})");
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var result))
            throw Error(key, $"must be {valid}, found {Describe(value)}");
        if (result < min || result > max) throw Error(key, $"is {result}; valid: {valid}");
        return result;
    }

    public ulong UnsignedInteger(string key, ulong fallback)
    {
        if (!TryGet(key, out var value)) return fallback;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetUInt64(out var result))
            throw Error(key, $"must be an integer in [0, {ulong.MaxValue}], found {Describe(value)}");
        return result;
    }

    /// <summary>A number satisfying <paramref name="isValid"/>, described by <paramref name="valid"/>.</summary>
    public double Number(string key, double fallback, Func<double, bool> isValid, string valid)
    {
        if (!TryGet(key, out var value)) return fallback;
        return ToNumber(value, key, isValid, valid);
    }

    public double ToNumber(JsonElement value, string key, Func<double, bool> isValid, string valid)
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out var result))
            throw Error(key, $"must be {valid}, found {Describe(value)}");
        if (!double.IsFinite(result) || !isValid(result)) throw Error(key, $"is {Format(result)}; valid: {valid}");
        // Values are kept as float32 (the engine's type): beyond its range they would become infinities.
        if (Math.Abs(result) > float.MaxValue)
            throw Error(key, $"is {Format(result)}; valid: {valid}, within float32's range (±{float.MaxValue:G3})");
        return result;
    }

    public T Choice<T>(string key, IReadOnlyDictionary<string, T> choices, T? fallback = null) where T : struct
    {
        var valid = string.Join(" | ", choices.Keys.Select(k => $"\"{k}\""));
        if (!TryGet(key, out var value))
            return fallback ?? throw new ConfigException($"{_source}: missing required key \"{key}\" ({valid})");
        if (value.ValueKind != JsonValueKind.String || !choices.TryGetValue(value.GetString()!, out var result))
            throw Error(key, $"is {Describe(value)}; valid: {valid}");
        return result;
    }

    public void RejectUnknownKeys()
    {
        foreach (var property in _object.EnumerateObject())
        {
            if (_known.Contains(property.Name)) continue;
            throw new ConfigException(
                $"{_source}: unknown key \"{property.Name}\"; valid keys: {string.Join(", ", _known.Order())}");
        }
    }

    public static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => $"the string \"{value.GetString()}\"",
        JsonValueKind.Number => $"the number {value.GetRawText()}",
        JsonValueKind.True or JsonValueKind.False => $"the boolean {value.GetRawText()}",
        JsonValueKind.Null => "null",
        JsonValueKind.Array => $"an array of {value.GetArrayLength()}",
        JsonValueKind.Object => "an object",
        _ => value.ValueKind.ToString(),
    };

    public static string Format(double value) => value.ToString("G6", System.Globalization.CultureInfo.InvariantCulture);
}
