using System.Diagnostics;
using System.Text.Json.Nodes;

namespace NativeEngine.Runner.Bench;

/// <summary>Runs a peer script of bench/peers with the first Python that can run it (torch, scikit-learn: what
/// bench/setup-peers.sh installs); the script's last stdout line is its JSON.</summary>
public static class PythonPeer
{
    public static JsonObject Run(string scriptName, string arguments)
    {
        var script = FindScript(scriptName);
        if (script is null) return NotRun($"bench/peers/{scriptName} not found from the working folder");
        var errors = new List<string>();
        foreach (var python in PythonCandidates())
        {
            var (code, stdout, stderr) = Exec(python, $"\"{script}\" {arguments}");
            if (code == 0)
            {
                var node = JsonNode.Parse(stdout.Trim().Split('\n')[^1])!.AsObject();
                node["python"] = python;
                node["status"] = "ok";
                return node;
            }
            errors.Add($"{python}: {(code < 0 ? stderr : $"exit {code}: {stderr.Trim().Split('\n')[^1]}")}");
        }
        var result = NotRun($"no Python could run bench/peers/{scriptName} (install the peers with bench/setup-peers.sh)");
        result["tried"] = new JsonArray(errors.Select(e => (JsonNode)JsonValue.Create(e)!).ToArray());
        return result;
    }

    /// <summary>A peer entry that says why the peer did not run; its status starts with "not run".</summary>
    public static JsonObject NotRun(string why) => new() { ["status"] = $"not run: {why}" };

    private static IEnumerable<string> PythonCandidates()
    {
        if (Environment.GetEnvironmentVariable("NE_PYTHON") is { Length: > 0 } chosen) yield return chosen;
        // Debian's python3-torch lives under the system interpreter, which a user's PATH may shadow.
        if (File.Exists("/usr/bin/python3")) yield return "/usr/bin/python3";
        yield return "python3";
    }

    private static string? FindScript(string scriptName) => RepositoryFiles.Find(Path.Combine("bench", "peers", scriptName));

    internal static (int Code, string Stdout, string Stderr) Exec(string file, string arguments,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        try
        {
            var start = new ProcessStartInfo(file, arguments)
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            process.WaitForExit();
            return (process.ExitCode, stdout.Result, stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, "", e.Message);
        }
    }
}

/// <summary>
/// libtorch through TorchSharp (bench/TorchSharpPeer), the newest PyTorch this machine runs, as a peer process: the
/// project is bench-only (outside NativeEngine.sln, so `dotnet test` and `demo` never restore its packages) and
/// bench/setup-peers.sh builds it. Its last stdout line is its JSON, as the Python peers'.
/// </summary>
public static class TorchSharpPeer
{
    public const string Project = "bench/TorchSharpPeer";
    public const string Output = "bench/TorchSharpPeer/bin/Release/net10.0/linux-x64";
    private const string Assembly = "torchsharp-peer.dll";
    // Built by bench/TorchSharpPeer/glibcxx_compat.py where the system's libstdc++ predates TorchSharp's glue.
    private const string Shim = "libne_glibcxx_shim.so";

    public static JsonObject Run(string arguments)
    {
        if (RepositoryFiles.Find(Path.Combine(Output, Assembly)) is not { } assembly)
            return PythonPeer.NotRun($"{Project} is not built ({Output}/{Assembly} not found from the working folder): " +
                                     "bench/setup-peers.sh builds it");
        var environment = new Dictionary<string, string>();
        var shim = Path.Combine(Path.GetDirectoryName(assembly)!, Shim);
        if (File.Exists(shim)) environment["LD_PRELOAD"] = shim;
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } path ? path : "dotnet";
        var (code, stdout, stderr) = PythonPeer.Exec(host, $"\"{assembly}\" {arguments}", environment);
        if (code != 0)
        {
            var why = code < 0 ? stderr : $"exit {code}: {stderr.Trim().Split('\n').FirstOrDefault(l => l.Length > 0) ?? ""}";
            return PythonPeer.NotRun($"{Project} failed ({why})");
        }
        var node = JsonNode.Parse(stdout.Trim().Split('\n')[^1])!.AsObject();
        node["status"] = "ok";
        return node;
    }
}

/// <summary>Files of the repository (peer scripts, paper configs, bench/results), found from the working folder or
/// the executable's folder upwards, so the runner finds them from anywhere inside a checkout.</summary>
public static class RepositoryFiles
{
    public static string? Find(string relativePath)
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, relativePath);
                if (File.Exists(candidate) || Directory.Exists(candidate)) return candidate;
            }
        return null;
    }
}
