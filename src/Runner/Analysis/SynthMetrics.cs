namespace NativeEngine.Runner.Analysis;

/// <summary>
/// What SynthSAEBench reports for a dictionary evaluated on samples with known codes (SAELens
/// <c>sae_lens/synthetic/evals.py</c>; docs/synthsaebench.md), in one record.
/// </summary>
/// <param name="TrueL0">Mean count of true features with a code &gt; 0 per sample.</param>
/// <param name="L0">Mean count of latents with a code &gt; 0 per sample.</param>
/// <param name="DeadLatents">Latents with no code &gt; 0 in any evaluated sample.</param>
/// <param name="Shrinkage">Mean ‖x̂‖/‖x‖ over samples with ‖x‖ &gt; 1e-6 (0 when there are none).</param>
/// <param name="ExplainedVariance">1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²).</param>
/// <param name="Mcc">Mean |cosine| of the one-to-one matching of latents and true features that maximises it.</param>
/// <param name="Uniqueness">Distinct best-matching true features over the number of latents.</param>
/// <param name="Precision">Mean over all latents of TP/(TP+FP) against its best-matching feature (0 if it never fires).</param>
/// <param name="Recall">Mean over all latents of TP/(TP+FN) (0 if its feature never fires).</param>
/// <param name="F1">Mean over all latents of 2PR/(P+R) (0 when P + R = 0).</param>
/// <param name="Accuracy">Mean over all latents of (TP+TN)/samples.</param>
public sealed record SynthEvalResult(double TrueL0, double L0, int DeadLatents, double Shrinkage,
    double ExplainedVariance, double Mcc, double Uniqueness, double Precision, double Recall, double F1, double Accuracy);

/// <summary>
/// SynthSAEBench's metrics of a learned dictionary against known features (SAELens <c>evals.py</c>).
/// <para>From the geometry alone, with |cos| between each true feature and each decoder row (cosines as
/// <see cref="DictionaryMetrics.Cosines"/> gives them, [features, latents], zero rows giving 0):
/// MCC, the mean |cos| over the min(features, latents) pairs of the one-to-one matching that maximises the total
/// (SciPy's linear_sum_assignment on 1 − |cos| there, the Hungarian algorithm of
/// <see cref="DictionaryMetrics.MatchedCosine"/> here); each latent's best feature, argmax |cos| (the lowest index on
/// ties, as torch's argmax); uniqueness, the distinct best features over the number of latents, dead ones included.</para>
/// <para>From samples, accumulated batch by batch with <see cref="Accumulator"/>: L0, true L0, dead latents,
/// shrinkage, explained variance, and each latent as a classifier of its best feature's firing (a code &gt; 0 on
/// both sides), averaged over all latents.</para>
/// </summary>
public static class SynthMetrics
{
    /// <summary>Below this input norm a sample is left out of the shrinkage (SAELens' default).</summary>
    public const double MinShrinkageNorm = 1e-6;

    /// <summary>|cos| of every pair: cosines [features, latents] → absolute values.</summary>
    public static double[,] Absolute(double[,] cosines)
    {
        int rows = cosines.GetLength(0), columns = cosines.GetLength(1);
        var result = new double[rows, columns];
        for (var i = 0; i < rows; i++)
            for (var j = 0; j < columns; j++) result[i, j] = Math.Abs(cosines[i, j]);
        return result;
    }

    /// <summary>MCC from cosines [features, latents] (signed or not: the absolute value is taken).</summary>
    public static double Mcc(double[,] cosines) => DictionaryMetrics.MatchedCosine(Absolute(cosines)).Mean;

    /// <summary>Each latent's best-matching true feature: argmax over features of |cos| (first on ties).</summary>
    public static int[] BestFeatures(double[,] cosines)
    {
        int features = cosines.GetLength(0), latents = cosines.GetLength(1);
        var best = new int[latents];
        for (var j = 0; j < latents; j++)
        {
            var value = double.NegativeInfinity;
            for (var i = 0; i < features; i++)
            {
                var a = Math.Abs(cosines[i, j]);
                if (a > value)
                {
                    value = a;
                    best[j] = i;
                }
            }
        }
        return best;
    }

    /// <summary>Distinct best-matching features over the number of latents (0 without latents).</summary>
    public static double Uniqueness(int[] bestFeatures) =>
        bestFeatures.Length == 0 ? 0 : (double)bestFeatures.Distinct().Count() / bestFeatures.Length;

    /// <summary>
    /// Streams evaluation batches: x and x̂ [batch][d], latent codes [batch][latents], true codes dense
    /// [batch][features] or sparse (per sample the indices of its true features with a code &gt; 0).
    /// </summary>
    public sealed class Accumulator
    {
        private readonly int d, latents, features;
        private readonly int[] best;
        private readonly long[] tp, fp, fn;
        private readonly bool[] fired;
        private readonly double[] sumX;
        private readonly bool[] active;  // scratch: true features active in the current sample
        private double sumSquaredNorm, sumSquaredResidual, shrinkageSum, trueL0Sum, l0Sum;
        private long samples, shrinkageSamples;

        /// <param name="d">Dimensions of x.</param>
        /// <param name="features">True features.</param>
        /// <param name="bestFeatures">Each latent's best feature (<see cref="BestFeatures"/>); its length is the
        /// number of latents.</param>
        public Accumulator(int d, int features, int[] bestFeatures)
        {
            if (d < 1) throw new ArgumentOutOfRangeException(nameof(d), $"d = {d}; must be ≥ 1");
            if (features < 1) throw new ArgumentOutOfRangeException(nameof(features), $"features = {features}; must be ≥ 1");
            if (bestFeatures.Any(f => f < 0 || f >= features))
                throw new ArgumentException($"a best feature lies outside 0..{features - 1}", nameof(bestFeatures));
            this.d = d;
            this.features = features;
            latents = bestFeatures.Length;
            best = (int[])bestFeatures.Clone();
            tp = new long[latents];
            fp = new long[latents];
            fn = new long[latents];
            fired = new bool[latents];
            sumX = new double[d];
            active = new bool[features];
        }

        public long Samples => samples;

        /// <summary>A batch with dense true codes [batch][features].</summary>
        public void Add(ReadOnlySpan<float> x, ReadOnlySpan<float> xHat, ReadOnlySpan<float> codes, ReadOnlySpan<float> trueCodes)
        {
            var batch = Check(x, xHat, codes);
            if (trueCodes.Length != (long)batch * features)
                throw new ArgumentException($"true codes hold {trueCodes.Length} values, expected {batch} x {features}", nameof(trueCodes));
            for (var t = 0; t < batch; t++)
            {
                var row = trueCodes.Slice(t * features, features);
                var count = 0;
                for (var i = 0; i < features; i++)
                {
                    active[i] = row[i] > 0;
                    if (active[i]) count++;
                }
                Sample(x.Slice(t * d, d), xHat.Slice(t * d, d), codes.Slice(t * latents, latents), count);
            }
        }

        /// <summary>A batch with sparse true codes: sample t's active features are
        /// index[rowBegin[t] .. rowBegin[t+1]) (each with a code &gt; 0).</summary>
        public void AddSparse(ReadOnlySpan<float> x, ReadOnlySpan<float> xHat, ReadOnlySpan<float> codes,
            ReadOnlySpan<long> rowBegin, ReadOnlySpan<int> index)
        {
            var batch = Check(x, xHat, codes);
            if (rowBegin.Length != batch + 1)
                throw new ArgumentException($"rowBegin holds {rowBegin.Length} offsets, expected batch + 1 = {batch + 1}", nameof(rowBegin));
            for (var t = 0; t < batch; t++)
            {
                var row = index[(int)rowBegin[t]..(int)rowBegin[t + 1]];
                foreach (var i in row)
                {
                    if (i < 0 || i >= features) throw new ArgumentException($"true feature {i} outside 0..{features - 1}", nameof(index));
                    active[i] = true;
                }
                Sample(x.Slice(t * d, d), xHat.Slice(t * d, d), codes.Slice(t * latents, latents), row.Length);
                foreach (var i in row) active[i] = false;
            }
        }

        private int Check(ReadOnlySpan<float> x, ReadOnlySpan<float> xHat, ReadOnlySpan<float> codes)
        {
            if (x.Length % d != 0) throw new ArgumentException($"x holds {x.Length} values, not a multiple of d = {d}", nameof(x));
            var batch = x.Length / d;
            if (xHat.Length != x.Length) throw new ArgumentException($"x̂ holds {xHat.Length} values, x {x.Length}", nameof(xHat));
            if (codes.Length != (long)batch * latents)
                throw new ArgumentException($"codes hold {codes.Length} values, expected {batch} x {latents}", nameof(codes));
            return batch;
        }

        private void Sample(ReadOnlySpan<float> x, ReadOnlySpan<float> xHat, ReadOnlySpan<float> codes, int trueCount)
        {
            samples++;
            trueL0Sum += trueCount;
            double normX = 0, normXHat = 0;
            for (var k = 0; k < d; k++)
            {
                double xv = x[k], yv = xHat[k], r = xv - yv;
                sumX[k] += xv;
                normX += xv * xv;
                normXHat += yv * yv;
                sumSquaredResidual += r * r;
            }
            sumSquaredNorm += normX;
            if (Math.Sqrt(normX) > MinShrinkageNorm)
            {
                shrinkageSum += Math.Sqrt(normXHat) / Math.Sqrt(normX);
                shrinkageSamples++;
            }
            var l0 = 0;
            for (var j = 0; j < latents; j++)
            {
                var fires = codes[j] > 0;
                var truth = active[best[j]];
                if (fires)
                {
                    l0++;
                    fired[j] = true;
                    if (truth) tp[j]++; else fp[j]++;
                }
                else if (truth)
                {
                    fn[j]++;
                }
            }
            l0Sum += l0;
        }

        /// <summary>The metrics so far, with MCC and uniqueness computed by the caller from the geometry.</summary>
        public SynthEvalResult Result(double mcc, double uniqueness)
        {
            double precision = 0, recall = 0, f1 = 0, accuracy = 0;
            for (var j = 0; j < latents; j++)
            {
                double p = tp[j] + fp[j] > 0 ? (double)tp[j] / (tp[j] + fp[j]) : 0;
                double r = tp[j] + fn[j] > 0 ? (double)tp[j] / (tp[j] + fn[j]) : 0;
                precision += p;
                recall += r;
                f1 += p + r > 0 ? 2 * p * r / (p + r) : 0;
                accuracy += samples > 0 ? (double)(samples - fp[j] - fn[j]) / samples : 0;
            }
            if (latents > 0)
            {
                precision /= latents;
                recall /= latents;
                f1 /= latents;
                accuracy /= latents;
            }
            return new SynthEvalResult(
                TrueL0: samples > 0 ? trueL0Sum / samples : 0,
                L0: samples > 0 ? l0Sum / samples : 0,
                DeadLatents: fired.Count(f => !f),
                Shrinkage: shrinkageSamples > 0 ? shrinkageSum / shrinkageSamples : 0,
                ExplainedVariance: ExplainedVariance(),
                Mcc: mcc,
                Uniqueness: uniqueness,
                Precision: precision,
                Recall: recall,
                F1: f1,
                Accuracy: accuracy);
        }

        // 1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²); with no variance: 1 if nothing is left over, else 0 (as SAELens).
        private double ExplainedVariance()
        {
            if (samples == 0) return 0;
            double meanSquaredNorm = sumSquaredNorm / samples, squaredNormOfMean = 0;
            for (var k = 0; k < d; k++)
            {
                var m = sumX[k] / samples;
                squaredNormOfMean += m * m;
            }
            var variance = meanSquaredNorm - squaredNormOfMean;
            if (variance < 1e-10) return sumSquaredResidual < 1e-10 ? 1 : 0;
            return 1 - sumSquaredResidual / samples / variance;
        }
    }

    /// <summary>
    /// Everything at once for data in memory: truth [features][d], decoder [latents][d], x and x̂ [samples][d],
    /// codes [samples][latents], true codes [samples][features].
    /// </summary>
    public static SynthEvalResult Evaluate(ReadOnlySpan<float> truth, int features, ReadOnlySpan<float> decoder, int latents,
        int d, ReadOnlySpan<float> x, ReadOnlySpan<float> xHat, ReadOnlySpan<float> codes, ReadOnlySpan<float> trueCodes)
    {
        var cosines = DictionaryMetrics.Cosines(truth, features, decoder, latents, d);
        var best = BestFeatures(cosines);
        var accumulator = new Accumulator(d, features, best);
        accumulator.Add(x, xHat, codes, trueCodes);
        return accumulator.Result(Mcc(cosines), Uniqueness(best));
    }
}
