namespace NativeEngine.Runner.Formats;

/// <summary>
/// A file the engine cannot use: an activation shard, a weights or dictionary file. The message always names the file; for corrupt or truncated
/// content it also names the byte offset and what was expected there.
/// </summary>
public sealed class DataFormatException(string message, Exception? inner = null) : Exception(message, inner);
