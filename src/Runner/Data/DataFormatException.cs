namespace NativeEngine.Runner.Data;

/// <summary>
/// An activation file the data path cannot use. The message always names the file; for corrupt or truncated
/// content it also names the byte offset and what was expected there.
/// </summary>
public sealed class DataFormatException(string message, Exception? inner = null) : Exception(message, inner);
