using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace NativeEngine.Tests;

/// <summary>
/// Debian's chromium, headless, driven over the Chrome DevTools Protocol (JSON over one WebSocket): enough to open
/// a page at a given viewport, wait for it to load, evaluate script, take a screenshot and collect what the page
/// reports as errors (uncaught exceptions, console errors, failed loads). No package and no browser download.
/// </summary>
internal sealed class HeadlessBrowser : IDisposable
{
    public const string Executable = "/usr/bin/chromium";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private readonly Process process;
    private readonly string profile;
    private readonly ClientWebSocket socket = new();
    private readonly ConcurrentDictionary<int, TaskCompletionSource<JsonElement>> calls = new();
    private readonly ConcurrentDictionary<string, ConcurrentQueue<JsonElement>> events = new();
    private readonly CancellationTokenSource stop = new();
    private readonly SemaphoreSlim sending = new(1, 1);
    private readonly Task receiving;
    private int nextId;

    /// <summary>Why no browser can be started here, or null.</summary>
    public static string? WhyUnavailable() =>
        File.Exists(Executable) ? null : $"{Executable} is not installed (Debian package chromium; .ci/run installs it)";

    private HeadlessBrowser(Process process, string profile, Uri endpoint)
    {
        this.process = process;
        this.profile = profile;
        socket.Options.KeepAliveInterval = TimeSpan.Zero;
        socket.ConnectAsync(endpoint, CancellationToken.None).WaitAsync(Timeout).GetAwaiter().GetResult();
        receiving = Task.Run(Receive);
    }

    public static HeadlessBrowser Launch()
    {
        var profile = TestSupport.TempDirectory("chromium-profile");
        var start = new ProcessStartInfo(Executable)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[]
                 {
                     "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-extensions",
                     "--disable-sync", "--no-first-run", "--no-default-browser-check", "--mute-audio", "--hide-scrollbars",
                     "--allow-file-access-from-files", "--remote-debugging-port=0", $"--user-data-dir={profile}", "about:blank",
                 })
            start.ArgumentList.Add(argument);
        var process = Process.Start(start) ?? throw new InvalidOperationException($"{Executable} did not start");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        // Chromium writes the port it chose and the browser's WebSocket path into the profile.
        var portFile = Path.Combine(profile, "DevToolsActivePort");
        var clock = Stopwatch.StartNew();
        while (!File.Exists(portFile) || File.ReadAllLines(portFile).Length < 2)
        {
            if (process.HasExited) throw new InvalidOperationException($"{Executable} exited with code {process.ExitCode} before listening");
            if (clock.Elapsed > Timeout) throw new TimeoutException($"{Executable} did not open its DevTools port in {Timeout.TotalSeconds} s");
            Thread.Sleep(50);
        }
        var lines = File.ReadAllLines(portFile);
        return new HeadlessBrowser(process, profile, new Uri($"ws://127.0.0.1:{lines[0].Trim()}{lines[1].Trim()}"));
    }

    /// <summary>Opens <paramref name="path"/> in a new tab with a viewport of the given size and waits for its load event.</summary>
    public Page Open(string path, int width, int height)
    {
        var target = Call("Target.createTarget", new JsonObject { ["url"] = "about:blank" }).GetProperty("targetId").GetString()!;
        var session = Call("Target.attachToTarget", new JsonObject { ["targetId"] = target, ["flatten"] = true })
            .GetProperty("sessionId").GetString()!;
        events[session] = new ConcurrentQueue<JsonElement>();
        var page = new Page(this, session, target);
        foreach (var domain in new[] { "Runtime.enable", "Log.enable", "Page.enable" }) page.Call(domain);
        page.Call("Emulation.setDeviceMetricsOverride", new JsonObject
        {
            ["width"] = width, ["height"] = height, ["deviceScaleFactor"] = 1, ["mobile"] = false,
        });
        page.Call("Page.navigate", new JsonObject { ["url"] = new Uri(Path.GetFullPath(path)).AbsoluteUri });
        page.WaitFor("Page.loadEventFired");
        return page;
    }

    /// <summary>A tab: its calls go to its session; its events are collected as they arrive.</summary>
    public sealed class Page(HeadlessBrowser browser, string session, string target) : IDisposable
    {
        public JsonElement Call(string method, JsonObject? parameters = null) => browser.Call(method, parameters, session);

        /// <summary>The value of a script expression; a promise is awaited.</summary>
        public JsonElement Evaluate(string expression)
        {
            var result = Call("Runtime.evaluate", new JsonObject
            {
                ["expression"] = expression, ["awaitPromise"] = true, ["returnByValue"] = true,
            });
            if (result.TryGetProperty("exceptionDetails", out var exception))
                throw new InvalidOperationException($"script failed: {exception}");
            return result.GetProperty("result").GetProperty("value");
        }

        /// <summary>A PNG of the page's top-left width × height CSS pixels (below the viewport too), scaled by
        /// <paramref name="scale"/>.</summary>
        public byte[] Screenshot(int width, int height, double scale)
        {
            var result = Call("Page.captureScreenshot", new JsonObject
            {
                ["format"] = "png",
                ["captureBeyondViewport"] = true,
                ["clip"] = new JsonObject { ["x"] = 0, ["y"] = 0, ["width"] = width, ["height"] = height, ["scale"] = scale },
            });
            return Convert.FromBase64String(result.GetProperty("data").GetString()!);
        }

        /// <summary>What the page reported as an error so far: uncaught exceptions, console.error and console.assert,
        /// and log entries of level error (a resource that failed to load, say).</summary>
        public IReadOnlyList<string> Errors()
        {
            var errors = new List<string>();
            foreach (var e in browser.events[session])
            {
                var method = e.GetProperty("method").GetString();
                var p = e.GetProperty("params");
                switch (method)
                {
                    case "Runtime.exceptionThrown":
                        errors.Add($"exception: {p.GetProperty("exceptionDetails")}");
                        break;
                    case "Runtime.consoleAPICalled" when p.GetProperty("type").GetString() is "error" or "assert":
                        errors.Add($"console.{p.GetProperty("type").GetString()}: {p.GetProperty("args")}");
                        break;
                    case "Log.entryAdded" when p.GetProperty("entry").GetProperty("level").GetString() == "error":
                        errors.Add($"log: {p.GetProperty("entry").GetProperty("text").GetString()} " +
                                   $"({(p.GetProperty("entry").TryGetProperty("url", out var url) ? url.GetString() : "")})");
                        break;
                }
            }
            return errors;
        }

        public void WaitFor(string eventName)
        {
            var clock = Stopwatch.StartNew();
            while (!browser.events[session].Any(e => e.GetProperty("method").GetString() == eventName))
            {
                if (clock.Elapsed > Timeout) throw new TimeoutException($"no {eventName} in {Timeout.TotalSeconds} s");
                Thread.Sleep(20);
            }
        }

        public void Dispose() => browser.Call("Target.closeTarget", new JsonObject { ["targetId"] = target });
    }

    private JsonElement Call(string method, JsonObject? parameters = null, string? session = null)
    {
        var id = Interlocked.Increment(ref nextId);
        var message = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters ?? new JsonObject() };
        if (session is not null) message["sessionId"] = session;
        var reply = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        calls[id] = reply;
        sending.Wait();
        try
        {
            socket.SendAsync(Encoding.UTF8.GetBytes(message.ToJsonString()), WebSocketMessageType.Text, true, stop.Token)
                .WaitAsync(Timeout).GetAwaiter().GetResult();
        }
        finally
        {
            sending.Release();
        }
        var response = reply.Task.WaitAsync(Timeout).GetAwaiter().GetResult();
        if (response.TryGetProperty("error", out var error)) throw new InvalidOperationException($"{method}: {error}");
        return response.GetProperty("result");
    }

    private async Task Receive()
    {
        var buffer = new byte[1 << 16];
        var message = new MemoryStream();
        try
        {
            while (!stop.IsCancellationRequested && socket.State == WebSocketState.Open)
            {
                var result = await socket.ReceiveAsync(buffer, stop.Token);
                if (result.MessageType == WebSocketMessageType.Close) break;
                message.Write(buffer, 0, result.Count);
                if (!result.EndOfMessage) continue;
                var element = JsonDocument.Parse(message.ToArray()).RootElement.Clone();
                message.SetLength(0);
                if (element.TryGetProperty("id", out var id) && calls.TryRemove(id.GetInt32(), out var reply)) reply.SetResult(element);
                else if (element.TryGetProperty("sessionId", out var session) && events.TryGetValue(session.GetString()!, out var queue))
                    queue.Enqueue(element);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or WebSocketException)
        {
            // The browser went away or we are closing; pending calls time out with their own message.
        }
    }

    public void Dispose()
    {
        stop.Cancel();
        try
        {
            if (socket.State == WebSocketState.Open)
                socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None).Wait(TimeSpan.FromSeconds(2));
        }
        catch (Exception e) when (e is WebSocketException or AggregateException)
        {
            // Closing a socket the browser already dropped.
        }
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        process.WaitForExit(5000);
        process.Dispose();
        socket.Dispose();
        try
        {
            Directory.Delete(profile, recursive: true);
        }
        catch (IOException)
        {
            // A child still holding a file; the temp folder is cleaned with the rest.
        }
        _ = receiving;
    }
}
