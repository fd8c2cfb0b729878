using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Data;

/// <summary>A .npy activation file (Formats/Npy.cs reads its header) as a memory-mapped shard.</summary>
public static class NpyShard
{
    public static IActivationShard Open(string path)
    {
        var header = Npy.ReadHeader(path);
        return new MappedActivationShard(path, header.DataOffset, header.Tokens, header.D, header.DType);
    }
}
