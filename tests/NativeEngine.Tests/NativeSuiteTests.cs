using System.Diagnostics;
using System.Text.Json;

namespace NativeEngine.Tests;

/// <summary>
/// The native ctest suite (finite-difference gradients, Philox, C ABI, CPU↔CUDA parity), run case by case so one
/// `dotnet test` reports both suites. A native test that exits 77 was skipped: it becomes Ignored with its reason.
/// </summary>
public class NativeSuiteTests
{
    private const int SkipCode = 77;

    public static IEnumerable<TestCaseData> NativeTests()
    {
        string buildDir;
        List<(string Name, string[] Command)> tests;
        try
        {
            buildDir = Path.Combine(TestSupport.RepositoryRoot(), "build", "native");
            tests = ListTests(buildDir);
        }
        catch (Exception e)
        {
            return [new TestCaseData("(native suite)", Array.Empty<string>(), e.Message).SetName("NativeSuite_unavailable")];
        }
        return tests.Select(t => new TestCaseData(t.Name, t.Command, "").SetName($"Native_{t.Name}"));
    }

    [TestCaseSource(nameof(NativeTests))]
    public void Native(string name, string[] command, string setupError)
    {
        Assert.That(setupError, Is.Empty, "the native test suite could not be listed");
        var info = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in command[1..]) info.ArgumentList.Add(argument);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.That(process.WaitForExit(TimeSpan.FromMinutes(10)), Is.True, $"{name} timed out");
        var output = stdout.Result + stderr.Result;
        TestContext.Out.WriteLine(output);
        if (process.ExitCode == SkipCode)
            Assert.Ignore(output.Split('\n').FirstOrDefault(l => l.StartsWith("ignored:")) ?? $"{name} skipped itself");
        Assert.That(process.ExitCode, Is.EqualTo(0), $"{name} failed:\n{output}");
    }

    private static List<(string, string[])> ListTests(string buildDir)
    {
        if (!File.Exists(Path.Combine(buildDir, "CTestTestfile.cmake")))
            throw new FileNotFoundException($"no native build in {buildDir}: `dotnet build` configures it through CMake");
        var info = new ProcessStartInfo("ctest", ["--test-dir", buildDir, "--show-only=json-v1"]) { RedirectStandardOutput = true };
        using var process = Process.Start(info)!;
        var json = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        using var document = JsonDocument.Parse(json);
        var tests = document.RootElement.GetProperty("tests").EnumerateArray()
            .Select(t => (t.GetProperty("name").GetString()!,
                t.GetProperty("command").EnumerateArray().Select(c => c.GetString()!).ToArray()))
            .ToList();
        if (tests.Count == 0) throw new InvalidOperationException($"ctest lists no tests in {buildDir}");
        return tests;
    }
}
