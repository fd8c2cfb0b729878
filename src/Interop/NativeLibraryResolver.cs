using System.Reflection;
using System.Runtime.InteropServices;

namespace NativeEngine.Interop;

/// <summary>
/// Finds libnativeengine: NE_NATIVE_PATH (a file or a folder) first, then next to this assembly and the app.
/// When nothing loads, the error lists every path tried and why each failed.
/// </summary>
public static class NativeLibraryResolver
{
    private static int _registered;

    internal static void Register()
    {
        if (Interlocked.Exchange(ref _registered, 1) == 0)
            NativeLibrary.SetDllImportResolver(typeof(NativeLibraryResolver).Assembly, Resolve);
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath) =>
        name == NativeMethods.Library ? LoadFirst(CandidatePaths()) : IntPtr.Zero;

    /// <summary>Loads the first candidate that loads; otherwise throws, listing every path and why it failed.</summary>
    public static IntPtr LoadFirst(IEnumerable<string> candidates)
    {
        var tried = new List<string>();
        foreach (var path in candidates)
        {
            if (!File.Exists(path))
            {
                tried.Add($"{path} (not found)");
                continue;
            }
            if (!NativeLibrary.TryLoad(path, out var handle))
            {
                tried.Add($"{path} (exists but failed to load: missing dependency or wrong architecture)");
                continue;
            }
            var abi = AbiVersionOf(handle);
            if (abi == Engine.AbiVersion) return handle;
            NativeLibrary.Free(handle);
            tried.Add($"{path} (C ABI version {(abi < 0 ? "unknown: no ne_abi_version" : abi.ToString())}; these bindings " +
                      $"need {Engine.AbiVersion}: rebuild the library and the bindings together)");
        }
        throw new DllNotFoundException(
            "libnativeengine could not be loaded. Build it with `dotnet build` (which runs CMake) or set " +
            "NE_NATIVE_PATH to the library or its folder. Tried:\n  " + string.Join("\n  ", tried));
    }

    private static unsafe int AbiVersionOf(IntPtr library) =>
        NativeLibrary.TryGetExport(library, "ne_abi_version", out var export)
            ? ((delegate* unmanaged<int>)export)()
            : -1;

    /// <summary>Paths tried, in order.</summary>
    public static IEnumerable<string> CandidatePaths()
    {
        const string file = "libnativeengine.so";
        var overridePath = Environment.GetEnvironmentVariable("NE_NATIVE_PATH");
        if (!string.IsNullOrEmpty(overridePath))
            yield return Directory.Exists(overridePath) ? Path.Combine(overridePath, file) : overridePath;
        var assemblyDir = Path.GetDirectoryName(typeof(NativeLibraryResolver).Assembly.Location);
        if (!string.IsNullOrEmpty(assemblyDir)) yield return Path.Combine(assemblyDir, file);
        yield return Path.Combine(AppContext.BaseDirectory, file);
        yield return Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", file);
    }
}
