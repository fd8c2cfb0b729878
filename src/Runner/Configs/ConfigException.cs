namespace NativeEngine.Runner.Configs;

/// <summary>A config the runner refuses, with a message naming the file, the key and what would be valid.</summary>
public sealed class ConfigException(string message) : Exception(message);
