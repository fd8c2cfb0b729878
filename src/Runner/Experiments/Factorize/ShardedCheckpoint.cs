using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Data;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// The checkpoint of a distributed factorization, in the folders of a one-process run's (<see cref="FactorizeCheckpoint"/>):
/// checkpoint/ holds layout.json (the grid that wrote it), progress.json (as one process writes it), shard_S/
/// (params.safetensors with the shard's W_enc [d_in][d_sae/L] columns, b_enc, W_dec rows, b_dec and threshold, and
/// state.bin, written by shard S's rank of group 0: the groups hold the same parameters), data_G/source.json (group G's
/// position in its data, written by its shard-0 rank) and SHA256SUMS over all of them.
/// <para>Atomic across ranks: every rank writes its files into checkpoint.tmp/ and hashes them; when all have (rank 0
/// gathers the checksums), rank 0 writes SHA256SUMS last and swaps the folder in as one process does, keeping
/// checkpoint.old/ until the new one is in place. A rank that dies while writing stops the others at the gather
/// (mpirun then ends them), leaving the previous checkpoint whole.</para>
/// <para>Resuming: each rank checks the files it reads against SHA256SUMS, and the ranks agree on the folder to use:
/// checkpoint/, or checkpoint.old/ when any rank finds checkpoint/ missing or damaged.</para>
/// </summary>
public static class ShardedCheckpoint
{
    private const string LayoutFile = "layout.json";

    public static void Write(string runDirectory, FactorizeGrid grid, SparseAutoencoder sae, SaeParameters parameters,
        IActivationBatches source, CheckpointProgress progress)
    {
        var temporary = FactorizeCheckpoint.Temporary(runDirectory);
        if (grid.IsRoot)
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
            Directory.CreateDirectory(temporary);
        }
        grid.World.Barrier();
        var mine = new List<string>();  // files this rank wrote, relative to the checkpoint
        if (grid.Group == 0)
        {
            var folder = ShardFolder(grid.Shard);
            Directory.CreateDirectory(Path.Combine(temporary, folder));
            FactorizeCheckpoint.WriteModel(Path.Combine(temporary, folder), sae, parameters, sae.Shard.Count);
            mine.Add($"{folder}/{FactorizeCheckpoint.ParamsFile}");
            mine.Add($"{folder}/{FactorizeCheckpoint.StateFile}");
        }
        if (grid.Shard == 0)
        {
            var file = $"{DataFolder(grid.Group)}/{FactorizeCheckpoint.SourceFile}";
            Directory.CreateDirectory(Path.Combine(temporary, DataFolder(grid.Group)));
            AtomicFile.WriteText(Path.Combine(temporary, file), source.State.ToJson());
            mine.Add(file);
        }
        var sums = RankGather.All(grid.World, mine.Select(f => new[] { f, FactorizeCheckpoint.Sha256Of(Path.Combine(temporary, f)) }).ToArray());
        if (grid.IsRoot)
        {
            AtomicFile.WriteText(Path.Combine(temporary, FactorizeCheckpoint.ProgressFile), FactorizeCheckpoint.ProgressJson(progress));
            AtomicFile.WriteText(Path.Combine(temporary, LayoutFile), Json.Document(w =>
            {
                w.WriteStartObject();
                w.WriteNumber("processes", grid.World.Size);
                w.WriteNumber("latent_shards", grid.LatentShards);
                w.WriteNumber("data_groups", grid.Groups);
                w.WriteEndObject();
            }));
            var files = sums.SelectMany(rank => rank.Select(s => (s[0], s[1])))
                .Concat(new[] { LayoutFile, FactorizeCheckpoint.ProgressFile }.Select(f => (f, FactorizeCheckpoint.Sha256Of(Path.Combine(temporary, f)))))
                .OrderBy(s => s.Item1, StringComparer.Ordinal);
            FactorizeCheckpoint.WriteSums(temporary, files);
            FactorizeCheckpoint.SwapIn(runDirectory);
        }
        grid.World.Barrier();
    }

    /// <summary>Restores this rank's shard and its group's data position from the first of checkpoint/ and
    /// checkpoint.old/ that every rank can use, and returns the progress recorded and the folder used. The run must have
    /// the grid that wrote the checkpoint; errors name the file and what is wrong.</summary>
    public static (CheckpointProgress Progress, string Folder) Read(string runDirectory, FactorizeGrid grid, FactorizeConfig config,
        string configSha256, bool force, SparseAutoencoder sae, IActivationBatches source)
    {
        var candidates = new[] { FactorizeCheckpoint.Folder, FactorizeCheckpoint.PreviousFolder }
            .Select(f => Path.Combine(runDirectory, f)).Where(Directory.Exists).ToList();
        if (candidates.Count == 0)
            throw new ConfigException($"--resume {runDirectory}: no {FactorizeCheckpoint.Folder}/ there; a run writes one every " +
                                      "train.checkpoint_every steps and when interrupted, and removes it when it completes");
        var problems = new List<string>();
        foreach (var folder in candidates)
        {
            CheckpointProgress? progress = null;
            var problem = "";
            try
            {
                progress = Verify(folder, grid, config, configSha256, force, sae);
            }
            catch (DataFormatException e)
            {
                problem = e.Message;
            }
            // Every rank continues from the same folder: the first that none of them found damaged.
            var found = RankGather.All(grid.World, problem).Where(p => p.Length > 0).Distinct().ToList();
            if (found.Count == 0)
            {
                FactorizeCheckpoint.RestoreModel(Path.Combine(folder, ShardFolder(grid.Shard)), sae);
                source.Restore(SourceState.FromJson(File.ReadAllText(Path.Combine(folder, DataFolder(grid.Group), FactorizeCheckpoint.SourceFile))));
                return (progress!, folder);
            }
            problems.AddRange(found);
        }
        throw new DataFormatException($"--resume {runDirectory}: no usable checkpoint: {string.Join("; ", problems)}");
    }

    // The files this rank reads, against SHA256SUMS; the layout against the grid; progress.json against the config; the
    // shard's tensors against the model.
    private static CheckpointProgress Verify(string folder, FactorizeGrid grid, FactorizeConfig config, string configSha256, bool force,
        SparseAutoencoder sae)
    {
        var layoutPath = Path.Combine(folder, LayoutFile);
        if (!File.Exists(layoutPath) && File.Exists(Path.Combine(folder, FactorizeCheckpoint.ParamsFile)))
            throw new ConfigException($"--resume {Path.GetDirectoryName(folder)}: {Path.GetFileName(folder)}/ was written by one process; " +
                                      "resume it with one process");
        var sums = FactorizeCheckpoint.ReadSums(folder);
        FactorizeCheckpoint.CheckSum(folder, sums, LayoutFile);
        var (processes, shards) = ReadLayout(layoutPath);
        if (processes != grid.World.Size || shards != grid.LatentShards)
            throw new ConfigException($"--resume {Path.GetDirectoryName(folder)}: the checkpoint was written by {processes} processes with " +
                                      $"{shards} latent shard(s); this run has {grid.World.Size} with {grid.LatentShards}: " +
                                      $"resume with mpirun -np {processes}");
        var shard = ShardFolder(grid.Shard);
        foreach (var file in new[]
                 {
                     FactorizeCheckpoint.ProgressFile, $"{shard}/{FactorizeCheckpoint.ParamsFile}", $"{shard}/{FactorizeCheckpoint.StateFile}",
                     $"{DataFolder(grid.Group)}/{FactorizeCheckpoint.SourceFile}",
                 })
            FactorizeCheckpoint.CheckSum(folder, sums, file);
        var progress = FactorizeCheckpoint.CheckProgress(folder, config, configSha256, force);
        var local = sae.Shard.Count;
        FactorizeCheckpoint.CheckModel(Path.Combine(folder, shard), sae, local,
            $"d_in {sae.Spec.DIn}, latents {sae.Shard.First}..{sae.Shard.First + local} of d_sae {sae.Spec.DSae}");
        return progress;
    }

    private static (int Processes, int LatentShards) ReadLayout(string path)
    {
        try
        {
            using var layout = JsonDocument.Parse(File.ReadAllText(path));
            var root = layout.RootElement;
            return (root.GetProperty("processes").GetInt32(), root.GetProperty("latent_shards").GetInt32());
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new DataFormatException($"{path}: not a checkpoint's layout ({e.Message}); it holds processes, latent_shards and data_groups");
        }
    }

    /// <summary>Throws, saying how to resume it, when the run's checkpoint was written by several processes.</summary>
    public static void RefuseInOneProcess(string runDirectory)
    {
        foreach (var folder in new[] { FactorizeCheckpoint.Folder, FactorizeCheckpoint.PreviousFolder })
        {
            var layout = Path.Combine(runDirectory, folder, LayoutFile);
            if (!File.Exists(layout)) continue;
            var (processes, _) = ReadLayout(layout);
            throw new ConfigException($"--resume {runDirectory}: the checkpoint was written by {processes} processes; resume it " +
                                      $"with mpirun -np {processes}");
        }
    }

    private static string ShardFolder(int shard) => $"shard_{shard:D4}";
    private static string DataFolder(int group) => $"data_{group:D4}";
}
