using NativeEngine.Interop;

namespace NativeEngine.Tests;

internal static class TestSupport
{
    /// <summary>Runs the command line as a user would, capturing what it prints on both streams, the results then
    /// the rest (plain text, 200 columns, as when redirected).</summary>
    public static (int Code, string Output) RunCli(params string[] args)
    {
        var (code, output, errors) = RunCliStreams(args);
        return (code, output + errors);
    }

    /// <summary>As <see cref="RunCli"/>, with the output and error streams apart.</summary>
    public static (int Code, string Output, string Errors) RunCliStreams(string[] args, CancellationToken cancel = default)
    {
        var output = new StringWriter();
        var errors = new StringWriter();
        var code = Runner.Program.Run(args, PlainConsole(output), PlainConsole(errors), cancel);
        return (code, output.ToString(), errors.ToString());
    }

    private static Spectre.Console.IAnsiConsole PlainConsole(TextWriter writer)
    {
        var console = Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings
        {
            Out = new Spectre.Console.AnsiConsoleOutput(writer),
            Ansi = Spectre.Console.AnsiSupport.No,
            ColorSystem = Spectre.Console.ColorSystemSupport.NoColors,
            Interactive = Spectre.Console.InteractionSupport.No,
        });
        console.Profile.Width = 200;
        return console;
    }

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
