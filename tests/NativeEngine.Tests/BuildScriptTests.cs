using System.ComponentModel;
using System.Diagnostics;

namespace NativeEngine.Tests;

/// <summary>
/// build.ps1 as a user runs it, through the PowerShell pinned in .config/dotnet-tools.json
/// (`dotnet tool restore`, then `dotnet pwsh build.ps1 TASK`): its argument handling and the profile task's refusal.
/// None of these tests builds anything.
/// </summary>
public class BuildScriptTests
{
    private string _root = "";
    private string _dotnet = "dotnet";

    [OneTimeSetUp]
    public void RestorePowerShell()
    {
        _root = TestSupport.RepositoryRoot();
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host)) _dotnet = host;
        (int Code, string Output) restore;
        try
        {
            restore = Run(_dotnet, ["tool", "restore"], null, TimeSpan.FromMinutes(5));
        }
        catch (Win32Exception e)
        {
            // The published test app on a machine without the .NET SDK: there is no dotnet to run build.ps1 with.
            Assert.Ignore($"ignored: `dotnet pwsh` is not restorable here: dotnet could not be started ({e.Message})");
            return;
        }
        if (restore.Code != 0)
            Assert.Ignore($"ignored: `dotnet pwsh` is not restorable here: `dotnet tool restore` exited with {restore.Code}:\n{restore.Output}");
    }

    [Test]
    public void AnUnknownTaskFailsAndListsTheTasks()
    {
        var (code, output) = Script(["no-such-task"]);
        Assert.That(code, Is.EqualTo(2), output);
        Assert.That(output, Does.Contain("unknown task 'no-such-task'"));
        foreach (var task in new[] { "build", "test", "demo", "run", "bench", "native-test", "publish", "profile", "clean" })
            Assert.That(output, Does.Match($@"(?m)^\s+{task}\s"), $"the list names {task}");
    }

    [Test]
    public void HelpListsTheTasksAndSucceeds()
    {
        var (code, output) = Script(["help"]);
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("usage: dotnet pwsh build.ps1 TASK"));
        Assert.That(output, Does.Contain("native-test"));
    }

    [Test]
    public void RunWithoutAVerbAndBenchWithoutAWorkloadAreUsageErrors()
    {
        var (code, output) = Script(["run", "--"]);
        Assert.That(code, Is.EqualTo(2), output);
        Assert.That(output, Does.Contain("run needs a runner verb"));
        (code, output) = Script(["bench"]);
        Assert.That(code, Is.EqualTo(2), output);
        Assert.That(output, Does.Contain("bench needs a workload"));
    }

    [Test]
    public void ATaskWithoutArgumentsRejectsThem()
    {
        var (code, output) = Script(["profile", "--now"]);
        Assert.That(code, Is.EqualTo(2), output);
        Assert.That(output, Does.Contain("task 'profile' takes no arguments (got: --now)"));
    }

    /// <summary>profile on this machine as it is: it must refuse, naming each thing that is missing.</summary>
    [Test]
    public void ProfileWithoutAGpuOrNsightSaysWhatIsMissingAndFails()
    {
        var hasSmi = OnPath("nvidia-smi");
        var hasNsys = OnPath("nsys");
        var hasNcu = OnPath("ncu");
        if (hasSmi && hasNsys && hasNcu)
            Assert.Ignore("ignored: nvidia-smi, nsys and ncu are all here: profile would run for real, which is no unit test");
        var (code, output) = Script(["profile"]);
        Assert.That(code, Is.EqualTo(1), output);
        Assert.That(output, Does.Contain("build.ps1 profile: cannot profile on this machine:"));
        Assert.That(output.Contains("no NVIDIA GPU: nvidia-smi is not on PATH"), Is.EqualTo(!hasSmi), output);
        Assert.That(output.Contains("no Nsight Systems: nsys is not on PATH"), Is.EqualTo(!hasNsys), output);
        Assert.That(output.Contains("no Nsight Compute: ncu is not on PATH"), Is.EqualTo(!hasNcu), output);
    }

    /// <summary>A driver without a GPU (nvidia-smi fails) is told apart from tools that are present.</summary>
    [Test]
    public void ProfileWithNsightButNoGpuNamesOnlyTheGpu()
    {
        var bin = TestSupport.TempDirectory("fake-tools");
        WriteExecutable(Path.Combine(bin, "nvidia-smi"),
            "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\nexit 9");
        WriteExecutable(Path.Combine(bin, "nsys"), "exit 0");
        WriteExecutable(Path.Combine(bin, "ncu"), "exit 0");
        var (code, output) = Script(["profile"], bin);
        Assert.That(code, Is.EqualTo(1), output);
        Assert.That(output, Does.Contain("no NVIDIA GPU: 'nvidia-smi -L' lists none (NVIDIA-SMI has failed"));
        Assert.That(output, Does.Not.Contain("nsys is not on PATH"));
        Assert.That(output, Does.Not.Contain("ncu is not on PATH"));
    }

    private (int Code, string Output) Script(string[] arguments, string? prependPath = null) =>
        Run(_dotnet, ["pwsh", "-NoLogo", "-NoProfile", "-File", "build.ps1", .. arguments], prependPath, TimeSpan.FromMinutes(2));

    private (int Code, string Output) Run(string command, string[] arguments, string? prependPath, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(command)
        {
            WorkingDirectory = _root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["POWERSHELL_TELEMETRY_OPTOUT"] = "1";
        info.Environment["POWERSHELL_UPDATECHECK"] = "Off";
        if (prependPath is not null)
            info.Environment["PATH"] = prependPath + Path.PathSeparator + Environment.GetEnvironmentVariable("PATH");
        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{command} {string.Join(' ', arguments)} did not finish within {timeout}");
        }
        var output = stdout.Result + stderr.Result;
        TestContext.Out.WriteLine(output);
        return (process.ExitCode, output);
    }

    private static bool OnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Any(dir => File.Exists(Path.Combine(dir, name)));

    private static void WriteExecutable(string path, string body)
    {
        if (OperatingSystem.IsWindows()) Assert.Ignore("ignored: the fake tools are shell scripts");
        File.WriteAllText(path, "#!/bin/sh\n" + body + "\n");
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
                UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
    }
}
