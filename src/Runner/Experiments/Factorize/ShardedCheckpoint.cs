using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// The checkpoint of a distributed factorization: checkpoint/layout.json (the grid that wrote it), progress.json,
/// shard_S/ (params.safetensors with the shard's W_enc [d_in][d_sae/L] columns, b_enc, W_dec rows, b_dec and
/// threshold, and state.bin, written by shard S's rank of group 0: the groups hold the same parameters) and
/// data_G/source.json (group G's position in its data, written by its shard-0 rank).
/// <para>Atomic across ranks: every rank writes into checkpoint.tmp/, and only when all have (a barrier) does rank 0
/// swap it in by rename. A rank that dies while writing stops the others at that barrier (mpirun then ends them),
/// leaving the previous checkpoint whole.</para>
/// </summary>
public static class ShardedCheckpoint
{
    private const string LayoutFile = "layout.json";

    public static void Write(string runDirectory, FactorizeGrid grid, SparseAutoencoder sae, IActivationBatches source, long step,
        long tokens, double seconds, IReadOnlyList<FactorizeCurvePoint> curve)
    {
        var final = Path.Combine(runDirectory, Factorization.CheckpointFolder);
        var temporary = final + ".tmp";
        if (grid.IsRoot)
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
            Directory.CreateDirectory(temporary);
        }
        grid.World.Barrier();
        if (grid.Group == 0)
        {
            var folder = Directory.CreateDirectory(Path.Combine(temporary, ShardFolder(grid.Shard))).FullName;
            var p = sae.GetParameters();
            var (d, m) = (sae.Spec.DIn, sae.Shard.Count);
            SafeTensors.Write(Path.Combine(folder, "params.safetensors"),
            [
                new Tensor("W_enc", [d, m], p.WEnc), new Tensor("b_enc", [m], p.BEnc), new Tensor("W_dec", [m, d], p.WDec),
                new Tensor("b_dec", [d], p.BDec), new Tensor("threshold", [m], p.Threshold),
            ], new Dictionary<string, string> { ["first_latent"] = sae.Shard.First.ToString(), ["d_sae"] = sae.Spec.DSae.ToString() });
            AtomicFile.Write(Path.Combine(folder, "state.bin"), stream => stream.Write(sae.GetState()));
        }
        if (grid.Shard == 0)
        {
            var folder = Directory.CreateDirectory(Path.Combine(temporary, DataFolder(grid.Group))).FullName;
            AtomicFile.WriteText(Path.Combine(folder, "source.json"), source.State.ToJson());
        }
        if (grid.IsRoot)
        {
            AtomicFile.WriteText(Path.Combine(temporary, "progress.json"),
                JsonSerializer.Serialize(new Factorization.CheckpointProgress(step, tokens, seconds, curve.ToArray())));
            AtomicFile.WriteText(Path.Combine(temporary, LayoutFile), Json.Document(w =>
            {
                w.WriteStartObject();
                w.WriteNumber("processes", grid.World.Size);
                w.WriteNumber("latent_shards", grid.LatentShards);
                w.WriteNumber("data_groups", grid.Groups);
                w.WriteEndObject();
            }));
        }
        grid.World.Barrier();
        if (grid.IsRoot)
        {
            var old = final + ".old";
            if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
            if (Directory.Exists(final)) Directory.Move(final, old);
            Directory.Move(temporary, final);
            if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
        }
        grid.World.Barrier();
    }

    /// <summary>Restores this rank's shard and its group's data position; returns the progress recorded. The run must
    /// have the grid that wrote the checkpoint.</summary>
    public static Factorization.CheckpointProgress Read(string runDirectory, FactorizeGrid grid, SparseAutoencoder sae,
        IActivationBatches source)
    {
        var folder = Path.Combine(runDirectory, Factorization.CheckpointFolder);
        var layoutPath = Path.Combine(folder, LayoutFile);
        if (!File.Exists(layoutPath))
            throw new ConfigException(Directory.Exists(folder)
                ? $"--resume {runDirectory}: {Factorization.CheckpointFolder}/ was written by one process; resume it with one process"
                : $"--resume {runDirectory}: no {Factorization.CheckpointFolder}/ there; a run writes one every " +
                  "train.checkpoint_every steps and when interrupted");
        using (var layout = JsonDocument.Parse(File.ReadAllText(layoutPath)))
        {
            var root = layout.RootElement;
            var (processes, shards) = (root.GetProperty("processes").GetInt32(), root.GetProperty("latent_shards").GetInt32());
            if (processes != grid.World.Size || shards != grid.LatentShards)
                throw new ConfigException($"--resume {runDirectory}: the checkpoint was written by {processes} processes with " +
                                          $"{shards} latent shard(s); this run has {grid.World.Size} with {grid.LatentShards}: " +
                                          $"resume with mpirun -np {processes}");
        }
        var tensors = SafeTensors.Read(Path.Combine(folder, ShardFolder(grid.Shard), "params.safetensors")).Tensors
            .ToDictionary(t => t.Name, t => t.Data);
        sae.Restore(new SaeParameters(tensors["W_enc"], tensors["b_enc"], tensors["W_dec"], tensors["b_dec"], tensors["threshold"]),
            File.ReadAllBytes(Path.Combine(folder, ShardFolder(grid.Shard), "state.bin")));
        source.Restore(SourceState.FromJson(File.ReadAllText(Path.Combine(folder, DataFolder(grid.Group), "source.json"))));
        return JsonSerializer.Deserialize<Factorization.CheckpointProgress>(File.ReadAllText(Path.Combine(folder, "progress.json")))
               ?? throw new InvalidDataException($"{folder}/progress.json is empty");
    }

    /// <summary>Throws, saying how to resume it, when the run's checkpoint was written by several processes.</summary>
    public static void RefuseInOneProcess(string runDirectory)
    {
        var layout = Path.Combine(runDirectory, Factorization.CheckpointFolder, LayoutFile);
        if (!File.Exists(layout)) return;
        using var document = JsonDocument.Parse(File.ReadAllText(layout));
        var processes = document.RootElement.GetProperty("processes").GetInt32();
        throw new ConfigException($"--resume {runDirectory}: the checkpoint was written by {processes} processes; resume it " +
                                  $"with mpirun -np {processes}");
    }

    private static string ShardFolder(int shard) => $"shard_{shard:D4}";
    private static string DataFolder(int group) => $"data_{group:D4}";
}
