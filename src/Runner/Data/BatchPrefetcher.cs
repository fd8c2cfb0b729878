using System.Runtime.ExceptionServices;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Data;

/// <summary>
/// Double buffering of batches: two batch arrays, one held by the caller and one being filled by a background
/// task. Next() waits for the batch being prepared, hands it out, and sets the task to fill the other array (the
/// one the caller just gave back by calling again) with the batch after it. Nothing is allocated per batch.
/// Batches are filled strictly in order by one fill function, so the sequence is the same with prefetch on or off.
/// </summary>
internal sealed class BatchPrefetcher(int length, Action<Span<float>> fill, bool prefetch) : IDisposable
{
    private readonly float[][] buffers = [new float[length], prefetch ? new float[length] : []];
    private SemaphoreSlim fillRequested = new(0);
    private SemaphoreSlim filled = new(0);
    private Task? worker;
    private volatile bool stopping;
    private int target;
    private Exception? failure;
    private bool disposed;

    public ReadOnlyMemory<float> Next()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (!prefetch)
        {
            fill(buffers[0]);
            return buffers[0];
        }
        if (failure is not null) Throw(failure);
        if (worker is null)
        {
            target = 0;
            worker = Task.Factory.StartNew(Work, TaskCreationOptions.LongRunning);
            fillRequested.Release();
        }
        filled.Wait();
        if (failure is not null) Throw(failure);
        var ready = target;
        target = 1 - ready;
        fillRequested.Release();
        return buffers[ready];
    }

    private void Work()
    {
        while (true)
        {
            fillRequested.Wait();
            if (stopping) return;
            try
            {
                fill(buffers[target]);
            }
            catch (Exception e)
            {
                failure = e;
                filled.Release();
                return;
            }
            filled.Release();
        }
    }

    /// <summary>Waits for the background task to finish its batch and end; the batch prepared ahead is dropped.</summary>
    public void Stop()
    {
        if (worker is null) return;
        stopping = true;
        fillRequested.Release();
        worker.Wait();
        worker = null;
        stopping = false;
        failure = null;
        fillRequested.Dispose();
        filled.Dispose();
        fillRequested = new SemaphoreSlim(0);
        filled = new SemaphoreSlim(0);
    }

    private static void Throw(Exception e)
    {
        if (e is DataFormatException) ExceptionDispatchInfo.Throw(e);
        throw new DataFormatException($"preparing the next batch failed: {e.Message}", e);
    }

    public void Dispose()
    {
        if (disposed) return;
        Stop();
        fillRequested.Dispose();
        filled.Dispose();
        disposed = true;
    }
}
