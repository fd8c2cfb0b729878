using NativeEngine.Interop;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// A sweep's instances split across the ranks of a run (mpirun, srun): rank r trains instances [r·c, min(I, (r+1)·c)),
/// c = ⌈I / ranks⌉, as a part of the whole batch (the same initial values and data streams, so every instance trains
/// exactly as in one process), and every rank then holds the gathered results. A rank with no instances still takes
/// part in the collectives.
/// </summary>
public sealed class InstanceSplit(Communicator ranks, int total)
{
    public Communicator Ranks { get; } = ranks;
    public int Total { get; } = total;
    public int PerRank => (Total + Ranks.Size - 1) / Ranks.Size;
    public int First => Math.Min(Total, Ranks.Rank * PerRank);
    public int Count => Math.Min(Total, First + PerRank) - First;

    /// <summary>This rank's rows of a per-instance array [Total][width].</summary>
    public float[] Mine(float[] whole, int width) => whole.AsSpan(First * width, Count * width).ToArray();

    /// <summary>Every rank's rows [Count][width] gathered into [Total][width], on every rank.</summary>
    public float[] Gather(ReadOnlySpan<float> mine, int width)
    {
        var padded = new float[PerRank * width];
        mine.CopyTo(padded);
        var all = Ranks.AllGather<float>(padded);
        return all.AsSpan(0, Total * width).ToArray();
    }

    /// <summary>Runs train(count) until total steps are done or any rank is stopped or <paramref name="diverged"/> (a
    /// step of one of its instances was not finite), in chunks every rank takes together (the slowest rank's quarter
    /// second); returns the steps done and the seconds they took.</summary>
    public (long Done, double Seconds) TrainInChunks(Action<long> train, long total, Action<long, long>? progress,
        CancellationToken stop, Func<bool>? diverged = null)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long done = 0, chunk = 8;
        while (done < total)
        {
            // [stop, -chunk] reduced by max: stop if any rank was interrupted or diverged; the smallest proposed chunk.
            Span<long> agreed = [stop.IsCancellationRequested || diverged?.Invoke() == true ? 1 : 0, -chunk];
            Ranks.AllReduce(agreed, CommOp.Max);
            if (agreed[0] != 0) break;
            var count = Math.Min(-agreed[1], total - done);
            var start = clock.Elapsed.TotalSeconds;
            if (Count > 0) train(count);
            done += count;
            progress?.Invoke(done, total);
            var elapsed = Math.Max(clock.Elapsed.TotalSeconds - start, 1e-6);
            chunk = Math.Clamp((long)(count * 0.25 / elapsed), 1, 4096);
        }
        return (done, clock.Elapsed.TotalSeconds);
    }

    /// <summary>The earliest first non-finite step over every rank's part (the lowest instance on a tie), its instance
    /// numbered in the whole batch, on every rank; null when every step was finite.</summary>
    public NonFinite? Earliest(NonFinite? mine)
    {
        var all = Ranks.AllGather<long>(mine is { } m ? [m.Step, First + m.Instance, (long)m.Quantity] : [0, 0, 0]);
        NonFinite? earliest = null;
        for (var r = 0; r < Ranks.Size; r++)
        {
            var (step, instance) = (all[3 * r], all[3 * r + 1]);
            if (step > 0 && (earliest is null || step < earliest.Step || (step == earliest.Step && instance < earliest.Instance)))
                earliest = new NonFinite(step, instance, (NonFiniteQuantity)all[3 * r + 2]);
        }
        return earliest;
    }
}

/// <summary>Values of any size gathered from every rank (as JSON, so records cross as they are).</summary>
public static class RankGather
{
    /// <summary>Every rank's <paramref name="value"/>, in rank order, on every rank.</summary>
    public static T[] All<T>(Communicator ranks, T value)
    {
        var bytes = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(value);
        var lengths = ranks.AllGather<long>([bytes.Length]);
        var padded = new byte[lengths.Max()];
        bytes.CopyTo(padded, 0);
        var all = ranks.AllGather<byte>(padded);
        return lengths.Select((length, r) =>
            System.Text.Json.JsonSerializer.Deserialize<T>(all.AsSpan((int)(r * padded.Length), (int)length))!).ToArray();
    }
}
