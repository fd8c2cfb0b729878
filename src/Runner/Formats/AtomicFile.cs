namespace NativeEngine.Runner.Formats;

/// <summary>Writes a file completely under a temporary name, then renames it: a reader never sees half a file.
/// Durable writes also reach the disk before the rename (fsync), so a crash cannot leave an empty file where a
/// result was: for results, weights and checkpoints. Figures and reports, which a run can write again from its
/// results, skip that wait (a few milliseconds a file on a busy disk, and a report has dozens).</summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write, bool durable = true)
    {
        var temporary = path + ".tmp";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            write(stream);
            stream.Flush(flushToDisk: durable);
        }
        File.Move(temporary, path, overwrite: true);
    }

    public static void WriteText(string path, string text, bool durable = true) =>
        Write(path, stream => stream.Write(System.Text.Encoding.UTF8.GetBytes(text)), durable);
}
