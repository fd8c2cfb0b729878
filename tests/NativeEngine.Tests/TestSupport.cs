using NativeEngine.Interop;

namespace NativeEngine.Tests;

internal static class TestSupport
{
    public static string TempDirectory(string name)
    {
        var path = Path.Combine(Path.GetTempPath(), "nativeengine-tests", name + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(path);
        return path;
    }

    /// <summary>Ignores the calling test, with the reason, where no CUDA device is usable.</summary>
    public static void RequireCuda()
    {
        var runtime = Engine.Runtime;
        if (!runtime.CudaUsable) Assert.Ignore($"ignored: no CUDA device ({runtime.CudaUnavailableReason})");
    }

    /// <summary>The repository root, found from the test binary's folder.</summary>
    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "NativeEngine.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no NativeEngine.sln above {AppContext.BaseDirectory}");
    }
}
