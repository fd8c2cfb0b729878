using System.Runtime.InteropServices;

namespace NativeEngine.Interop;

/// <summary>A failed native call: its status and the library's message naming what was wrong.</summary>
public sealed class NativeEngineException(Status status, string message)
    : Exception($"{message} [{StatusName(status)}]")
{
    public Status Status { get; } = status;

    /// <summary>The native message alone, without the status suffix.</summary>
    public string NativeMessage { get; } = message;

    /// <summary>The one place a status becomes an exception.</summary>
    internal static void ThrowIfFailed(Status status)
    {
        if (status == Status.Ok) return;
        var message = Marshal.PtrToStringUTF8(NativeMethods.LastError());
        throw new NativeEngineException(status, string.IsNullOrEmpty(message) ? "native call failed" : message);
    }

    private static string StatusName(Status status) =>
        Marshal.PtrToStringUTF8(NativeMethods.StatusName((int)status)) ?? status.ToString();
}
