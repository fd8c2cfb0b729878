using NativeEngine.Interop;
using NativeEngine.Runner.Analysis;
using NativeEngine.Runner.Configs;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// The paper's open questions (SCIENCE.md §4) asked of models the engine trained: the statistics live in
/// Analysis/; here they meet the run folders, the fresh data they are measured on, and the ground truth.
/// </summary>
public static class ModelAnalyses
{
    /// <summary>The superposition test (<see cref="Analysis.SuperpositionTest"/>) on fresh samples of one instance's
    /// data.</summary>
    public static SuperpositionTestResult SuperpositionTest(EngineContext context, TrainedToyModel model, int instance, int samples,
        double rho0, double alpha, ulong? seed, CorrelationMethod method = CorrelationMethod.Robust)
    {
        var c = model.Config;
        model.CheckInstance(instance);
        int n = c.NFeatures, m = c.NHidden;
        var x = model.SampleInputs(context, instance, samples, seed);
        var output = model.Reconstruct(instance, x);
        var norms = ToyMetrics.Compute(model.InstanceW(instance), n, m).FeatureNorm;
        var target = new double[samples];
        var reconstruction = new double[samples];
        var features = new FeatureCorrelation[n];
        for (var i = 0; i < n; i++)
        {
            for (var t = 0; t < samples; t++)
            {
                target[t] = model.Target(x[t * n + i]);
                reconstruction[t] = output[t * n + i];
            }
            var test = Analysis.SuperpositionTest.TestCorrelation(target, reconstruction, rho0, method);
            features[i] = new FeatureCorrelation(i, norms[i], test.R, test.Statistic, test.P, test.Absent);
        }
        var p = features.Select(f => f.P).ToArray();
        var global = Analysis.SuperpositionTest.PartialConjunction(p, m + 1);
        var probability = c.InstanceProbability(instance).ToArray().Average(v => (double)v);
        return new SuperpositionTestResult(instance, probability, n, m, samples, rho0, alpha, method, features, global,
            global <= alpha, p.Count(v => v <= alpha), Analysis.SuperpositionTest.HolmCount(p, alpha), norms.Count(v => v > ToyMetrics.RepresentedNorm));
    }

    public static CapacityResult Capacity(TrainedToyModel model, double constant = CompressedSensing.L1Constant)
    {
        var c = model.Config;
        int n = c.NFeatures, m = c.NHidden;
        var points = new List<CapacityPoint>();
        for (var s = 0; s < c.Settings.Length; s++)
        {
            var setting = c.Settings[s];
            var best = model.BestOfSetting[s];
            // A setting's p (NaN when its features differ): the mean over the best instance's features.
            var p = double.IsFinite(setting.FeatureProbability)
                ? setting.FeatureProbability
                : c.InstanceProbability(best).ToArray().Average(v => (double)v);
            var metrics = ToyMetrics.Compute(model.InstanceW(best), n, m);
            var represented = Enumerable.Range(0, n).Where(i => metrics.FeatureNorm[i] > ToyMetrics.RepresentedNorm).ToArray();
            points.Add(new CapacityPoint(s, p, setting.ImportanceRatio, setting.L1, best, represented.Length,
                represented.Count(i => metrics.Dimensionality[i] < SuperpositionSummary.DedicatedDimensionality),
                metrics.DimensionalitySum, metrics.DimensionsPerFeature,
                CompressedSensing.L1MaxFeatures(n, m, p, constant), CompressedSensing.L0MaxFeatures(n, m, p),
                setting.Instances.Select(k => ToyMetrics.Compute(model.InstanceW(k), n, m).RepresentedCount).ToArray()));
        }
        var sorted = points.OrderByDescending(p => p.FeatureProbability).ToArray();
        var all = sorted.Where(p => p.Represented == n).Select(p => p.FeatureProbability).ToArray();
        return new CapacityResult(ToyConfig.ModelName(c.Model), n, m, constant, sorted,
            CompressedSensing.L1DensityForAll(n, m, constant), all.Length > 0 ? all.Max() : null,
            Statistics.Spearman(sorted.Select(p => 1 / p.FeatureProbability).ToArray(), sorted.Select(p => (double)p.Represented).ToArray()));
    }

    /// <summary>A dictionary's estimate of the feature sparsity and importance curves against the true ones
    /// (<see cref="FeatureCurves"/>). The truth comes from <paramref name="groundTruth"/>, else the model, else the
    /// dictionary's own synthetic config; the latents are measured on <paramref name="data"/>, else fresh hidden
    /// activations of the model, else the dictionary's config, else its sparsity.safetensors.</summary>
    /// <returns>The result, the truth it was scored against, and where the latents' densities come from.</returns>
    public static (FeatureCurvesResult Result, GroundTruth Truth, string Source) FeatureCurves(EngineContext context,
        string dictDir, SaeDictionary dict, TrainedToyModel? model, int instance, string? groundTruth, string? data,
        long? tokens, ulong? seed, double cosine)
    {
        var dictConfig = DictionaryConfig(dictDir);
        var configPath = Path.Combine(FactorizeExperiment.RunFolderOf(dictDir) ?? dictDir, FactorizeExperiment.ConfigFile);
        var truth = groundTruth is not null ? GroundTruth.Read(groundTruth)
            : model is not null ? ModelTruth(model, instance)
            : dictConfig is not null ? ConfigTruth(dictConfig, configPath)
            : throw new ConfigException($"feature-curves needs the true features: --ground-truth FILE, --model DIR, or a dictionary " +
                                        $"whose config.json has synthetic data (none in {dictDir})");
        var count = tokens ?? DefaultTokens;
        string source;
        IEnumerable<ReadOnlyMemory<float>>? batches = null;
        if (data is not null)
        {
            var eval = EvalDataLoader.LoadFile(data);
            count = tokens ?? eval.Tokens;
            batches = Batches(eval.Data, eval.BatchSize, firstToken: 0);
            source = $"measured on {count} tokens of {data}";
        }
        else if (model is not null)
        {
            batches = ModelBatches(context, model, instance, count, seed);
            source = $"measured on {count} fresh hidden activations of {model.Directory} instance {instance}";
        }
        else if (dictConfig is not null)
        {
            // Synthetic data continues past the tokens the dictionary trained on; files are read from the start.
            batches = Batches(dictConfig.Data, dictConfig.Train.BatchSize, firstToken: dictConfig.Train.Tokens);
            source = $"measured on {count} tokens of the data in {configPath}" +
                     (dictConfig.Data is SyntheticSpec ? " (fresh tokens past training)" : "");
        }
        else
        {
            source = $"{SaeLens.SparsityFile} (factorize's evaluation batches)";
        }

        if (batches is not null)
        {
            var statistics = Analysis.FeatureCurves.Measure(dict, batches, count);
            return (Analysis.FeatureCurves.Compare(dict, truth, statistics.Density, statistics.MeanWhenFiring, statistics.Tokens,
                source, cosine), truth, source);
        }
        var sparsityPath = Path.Combine(DictionaryFolder.Resolve(dictDir), SaeLens.SparsityFile);
        if (!File.Exists(sparsityPath))
            throw new ConfigException($"{sparsityPath} does not exist and no activations were given: feature-curves needs the latents' " +
                                      "densities, from --data, --model or that file (factorize writes it)");
        var sparsity = SafeTensors.Read(sparsityPath).Tensors.FirstOrDefault(t => t.Name == "sparsity" && t.Shape.SequenceEqual(new long[] { dict.DSae }))
                       ?? throw new ConfigException($"{sparsityPath}: needs a tensor \"sparsity\" of shape [{dict.DSae}] (log10 density per latent)");
        return (Analysis.FeatureCurves.Compare(dict, truth, Analysis.FeatureCurves.DensityFromLog10(sparsity.Data), null, 0, source,
            cosine), truth, source);
    }

    /// <summary>Activations feature-curves measures the latents on when none is said.</summary>
    public const long DefaultTokens = 65536;

    // The factorize config of the run a dictionary comes from, when it is known.
    private static FactorizeConfig? DictionaryConfig(string dictDir) =>
        FactorizeExperiment.RunFolderOf(dictDir) is { } run ? FactorizeConfigLoader.LoadFile(Path.Combine(run, FactorizeExperiment.ConfigFile)) : null;

    private static GroundTruth ModelTruth(TrainedToyModel model, int instance) =>
        new($"{model.Directory} instance {instance}", model.InstanceW(instance).ToArray(), model.Config.NFeatures,
            model.Config.NHidden, model.Config.InstanceProbability(instance).ToArray().Select(v => (double)v).ToArray(),
            ToyMetrics.RepresentedNorm);

    private static GroundTruth ConfigTruth(FactorizeConfig config, string configPath)
    {
        switch (config.Data)
        {
            case SyntheticSpec s:
                using (var synthetic = Factorization.Synthetic(s))
                    return new GroundTruth($"the synthetic data of {configPath}", synthetic.Features.ToArray(),
                        synthetic.FeatureCount, s.D, synthetic.Probabilities.ToArray());
            case FilesSpec f:
                var beside = Path.Combine((Directory.Exists(f.Files[0]) ? f.Files[0] : Path.GetDirectoryName(f.Files[0])) ?? ".", GroundTruthFile.Name);
                if (File.Exists(beside)) return GroundTruth.Read(beside);
                throw new ConfigException($"{configPath} reads files with no {GroundTruthFile.Name} beside " +
                                          $"them ({beside}); give --ground-truth FILE or --model DIR");
            default:
                throw new InvalidOperationException("unknown data spec");
        }
    }

    // Batches of a data spec; synthetic tokens from firstToken on (each token is a pure function of its index).
    private static IEnumerable<ReadOnlyMemory<float>> Batches(DataSpec data, int batchSize, long firstToken)
    {
        if (data is SyntheticSpec s)
        {
            using var synthetic = Factorization.Synthetic(s);
            var buffer = new float[(long)batchSize * s.D];
            for (var token = firstToken; ; token += batchSize)
            {
                synthetic.Generate(token, buffer);
                yield return buffer;
            }
        }
        var (source, _, _) = Factorization.OpenData(data, batchSize, 0, prefetch: false);
        using (source)
            while (true) yield return source.Next();
    }

    // The toy model's hidden activations h on fresh inputs, as harvest writes them.
    private static IEnumerable<ReadOnlyMemory<float>> ModelBatches(EngineContext context, TrainedToyModel model, int instance,
        long tokens, ulong? seed)
    {
        const int chunk = 8192;
        var n = model.Config.NFeatures;
        var x = model.SampleInputs(context, instance, checked((int)tokens), seed);
        for (long first = 0; first < tokens; first += chunk)
        {
            var rows = (int)Math.Min(chunk, tokens - first);
            yield return Harvest.Hidden(model.Config, model.InstanceW(instance), x.AsSpan((int)first * n, rows * n));
        }
    }
}
