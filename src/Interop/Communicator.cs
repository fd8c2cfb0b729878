using System.Runtime.InteropServices;

namespace NativeEngine.Interop;

/// <summary>
/// A group of the processes of one run (<c>ne_comm</c>): the world, or a part made by <see cref="Split"/>. Under
/// mpirun or srun the world is MPI's; otherwise it is this one process and every collective is the identity.
/// Collectives block and must be called by every rank of the group in the same order.
/// </summary>
public sealed class Communicator : IDisposable
{
    private static readonly Lazy<Communicator> LazyWorld = new(() =>
    {
        NativeEngineException.ThrowIfFailed(NativeMethods.CommWorld(out var handle));
        return new Communicator(handle);
    });

    internal CommHandle Handle { get; }

    public int Rank { get; }
    public int Size { get; }

    private Communicator(CommHandle handle)
    {
        Handle = handle;
        NativeEngineException.ThrowIfFailed(NativeMethods.CommRank(handle, out var rank, out var size));
        Rank = rank;
        Size = size;
    }

    /// <summary>Every process of the run (starts MPI on first use when launched under it).</summary>
    public static Communicator World => LazyWorld.Value;

    /// <summary>Whether the world was created, without creating it.</summary>
    public static bool WorldStarted => LazyWorld.IsValueCreated;

    /// <summary>The ranks passing the same color (≥ 0) form one communicator, ordered by key.</summary>
    public Communicator Split(int color, int key)
    {
        NativeEngineException.ThrowIfFailed(NativeMethods.CommSplit(Handle, color, key, out var part));
        return new Communicator(part);
    }

    public unsafe void AllReduce(Span<double> values, CommOp op = CommOp.Sum)
    {
        fixed (double* p = values)
            NativeEngineException.ThrowIfFailed(NativeMethods.CommAllreduce(Handle, p, values.Length, (int)CommType.Double, (int)op));
    }

    public unsafe void AllReduce(Span<long> values, CommOp op = CommOp.Sum)
    {
        fixed (long* p = values)
            NativeEngineException.ThrowIfFailed(NativeMethods.CommAllreduce(Handle, p, values.Length, (int)CommType.Int64, (int)op));
    }

    public unsafe void AllReduce(Span<float> values, CommOp op = CommOp.Sum)
    {
        fixed (float* p = values)
            NativeEngineException.ThrowIfFailed(NativeMethods.CommAllreduce(Handle, p, values.Length, (int)CommType.Float, (int)op));
    }

    /// <summary>One value reduced over the ranks.</summary>
    public long AllReduce(long value, CommOp op)
    {
        Span<long> one = [value];
        AllReduce(one, op);
        return one[0];
    }

    /// <summary>Every rank's <paramref name="send"/> (all of one length), in rank order.</summary>
    public T[] AllGather<T>(ReadOnlySpan<T> send) where T : unmanaged
    {
        var receive = new T[send.Length * Size];
        var bytes = MemoryMarshal.AsBytes(send);
        NativeEngineException.ThrowIfFailed(NativeMethods.CommAllgather(Handle, bytes, bytes.Length,
            MemoryMarshal.AsBytes(receive.AsSpan()), (long)bytes.Length * Size));
        return receive;
    }

    /// <summary>Every rank's <paramref name="send"/> (all of one length) in rank order on <paramref name="root"/>;
    /// null elsewhere.</summary>
    public T[]? Gather<T>(ReadOnlySpan<T> send, int root = 0) where T : unmanaged
    {
        var receive = Rank == root ? new T[(long)send.Length * Size] : null;
        var bytes = MemoryMarshal.AsBytes(send);
        NativeEngineException.ThrowIfFailed(NativeMethods.CommGather(Handle, bytes, bytes.Length,
            receive is null ? default : MemoryMarshal.AsBytes(receive.AsSpan()), receive is null ? 0 : (long)bytes.Length * Size,
            root));
        return receive;
    }

    /// <summary><paramref name="root"/>'s bytes into every rank's buffer (all of one length).</summary>
    public void Broadcast(Span<byte> buffer, int root = 0) =>
        NativeEngineException.ThrowIfFailed(NativeMethods.CommBroadcast(Handle, buffer, buffer.Length, root));

    /// <summary>Root's byte array to every rank (any length; the others pass anything, even null).</summary>
    public byte[] Broadcast(byte[]? value, int root = 0)
    {
        Span<long> length = [Rank == root ? value!.Length : 0];
        Broadcast(MemoryMarshal.AsBytes(length), root);
        var buffer = Rank == root ? value! : new byte[length[0]];
        Broadcast(buffer.AsSpan(), root);
        return buffer;
    }

    public void Barrier() => NativeEngineException.ThrowIfFailed(NativeMethods.CommBarrier(Handle));

    /// <summary>The payload this rank contributed so far, by kind of collective.</summary>
    public CommCounters Counters
    {
        get
        {
            NativeEngineException.ThrowIfFailed(NativeMethods.CommCounters(Handle, out var c));
            return new CommCounters(c.Calls, c.AllreduceBytes, c.AllgatherBytes, c.BroadcastBytes, c.BestBytes);
        }
    }

    /// <summary>Ends every process of the run with <paramref name="code"/> (MPI_Abort), so no rank waits for one that
    /// failed; does nothing in a single process.</summary>
    public void Abort(int code) => NativeMethods.CommAbort(Handle, code);

    /// <summary>Finalises MPI if it was started (after the last collective; it also runs at exit).</summary>
    public static void FinalizeMpi() => NativeEngineException.ThrowIfFailed(NativeMethods.MpiFinalize());

    public void Dispose()
    {
        if (!ReferenceEquals(this, WorldStarted ? LazyWorld.Value : null)) Handle.Dispose();
    }
}

/// <summary>What one rank contributed to a communicator's collectives (payload bytes, before the MPI algorithm's copies).</summary>
public sealed record CommCounters(long Calls, long AllreduceBytes, long AllgatherBytes, long BroadcastBytes, long BestBytes)
{
    public long Bytes => AllreduceBytes + AllgatherBytes + BroadcastBytes + BestBytes;

    public CommCounters Minus(CommCounters earlier) => new(Calls - earlier.Calls, AllreduceBytes - earlier.AllreduceBytes,
        AllgatherBytes - earlier.AllgatherBytes, BroadcastBytes - earlier.BroadcastBytes, BestBytes - earlier.BestBytes);

    public CommCounters Plus(CommCounters other) => new(Calls + other.Calls, AllreduceBytes + other.AllreduceBytes,
        AllgatherBytes + other.AllgatherBytes, BroadcastBytes + other.BroadcastBytes, BestBytes + other.BestBytes);
}
