namespace NativeEngine.Runner.Analysis;

/// <summary>
/// How well a learned dictionary recovers known features (SCIENCE §3): cosines between every true feature and
/// every learned atom; MMCS, the mean over true features of the best cosine to any atom; and the one-to-one
/// matched cosine, the mean cosine of the best assignment of true features to distinct atoms (Hungarian).
/// </summary>
public static class DictionaryMetrics
{
    /// <summary>c [m][n] = a [m][k] b [k][n], row-major float32: a matrix product the caller supplies (the engine's
    /// GEMM), so that the cosines of large dictionaries need not be a dot product per pair.</summary>
    public delegate void MatrixProduct(long m, long n, long k, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c);

    /// <summary>cos[i][j] between true feature i ([nTrue][d] rows) and atom j ([nAtoms][d] rows); zero rows give 0.
    /// With a <paramref name="product"/>, one product of the normalised rows (float32 sums, as the dot products).</summary>
    public static double[,] Cosines(ReadOnlySpan<float> truth, int nTrue, ReadOnlySpan<float> atoms, int nAtoms, int d,
        MatrixProduct? product = null)
    {
        if (truth.Length != (long)nTrue * d) throw new ArgumentException($"truth has {truth.Length} values, expected {nTrue} x {d}");
        if (atoms.Length != (long)nAtoms * d) throw new ArgumentException($"atoms have {atoms.Length} values, expected {nAtoms} x {d}");
        var truthNorm = Norms(truth, nTrue, d);
        var atomNorm = Norms(atoms, nAtoms, d);
        var result = new double[nTrue, nAtoms];
        if (product is not null && nTrue > 0 && nAtoms > 0)
        {
            var c = new float[(long)nTrue * nAtoms];
            product(nTrue, nAtoms, d, UnitRows(truth, nTrue, d, truthNorm), UnitColumns(atoms, nAtoms, d, atomNorm), c);
            for (var i = 0; i < nTrue; i++)
                for (var j = 0; j < nAtoms; j++) result[i, j] = c[(long)i * nAtoms + j];
            return result;
        }
        var truthArray = truth.ToArray();
        var atomArray = atoms.ToArray();
        Parallel.For(0, nTrue, i =>
        {
            var t = truthArray.AsSpan(i * d, d);
            for (var j = 0; j < nAtoms; j++)
            {
                var dot = System.Numerics.Tensors.TensorPrimitives.Dot(t, atomArray.AsSpan(j * d, d));
                var scale = truthNorm[i] * atomNorm[j];
                result[i, j] = scale > 0 ? dot / scale : 0;
            }
        });
        return result;
    }

    /// <summary>Each true feature's largest cosine to any atom (what <see cref="Mmcs"/> averages), by the matrix product
    /// a block of features at a time, without the whole cosine matrix (0 when there is no atom).</summary>
    public static double[] BestCosines(ReadOnlySpan<float> truth, int nTrue, ReadOnlySpan<float> atoms, int nAtoms, int d,
        MatrixProduct product)
    {
        if (truth.Length != (long)nTrue * d) throw new ArgumentException($"truth has {truth.Length} values, expected {nTrue} x {d}");
        if (atoms.Length != (long)nAtoms * d) throw new ArgumentException($"atoms have {atoms.Length} values, expected {nAtoms} x {d}");
        var best = new double[nTrue];
        if (nTrue == 0 || nAtoms == 0) return best;
        var unitTruth = UnitRows(truth, nTrue, d, Norms(truth, nTrue, d));
        var unitAtomsT = UnitColumns(atoms, nAtoms, d, Norms(atoms, nAtoms, d));
        var block = Math.Max(1, Math.Min(nTrue, (1 << 22) / nAtoms));  // ~16 MB of cosines at a time
        var c = new float[(long)block * nAtoms];
        for (var i0 = 0; i0 < nTrue; i0 += block)
        {
            var rows = Math.Min(block, nTrue - i0);
            product(rows, nAtoms, d, unitTruth.AsSpan(i0 * d, rows * d), unitAtomsT, c.AsSpan(0, rows * nAtoms));
            for (var r = 0; r < rows; r++) best[i0 + r] = System.Numerics.Tensors.TensorPrimitives.Max(c.AsSpan(r * nAtoms, nAtoms));
        }
        return best;
    }

    // [count][d] rows over their norms (zero rows stay zero).
    private static float[] UnitRows(ReadOnlySpan<float> rows, int count, int d, double[] norm)
    {
        var unit = new float[(long)count * d];
        for (var i = 0; i < count; i++)
            for (var q = 0; q < d; q++) unit[(long)i * d + q] = norm[i] > 0 ? (float)(rows[i * d + q] / norm[i]) : 0f;
        return unit;
    }

    // [d][count]: rows over their norms, transposed (the right operand of the product).
    private static float[] UnitColumns(ReadOnlySpan<float> rows, int count, int d, double[] norm)
    {
        var unit = new float[(long)d * count];
        for (var j = 0; j < count; j++)
            for (var q = 0; q < d; q++) unit[(long)q * count + j] = norm[j] > 0 ? (float)(rows[j * d + q] / norm[j]) : 0f;
        return unit;
    }

    /// <summary>Mean over true features of the largest cosine to any atom.</summary>
    public static double Mmcs(double[,] cosines)
    {
        int rows = cosines.GetLength(0), columns = cosines.GetLength(1);
        double sum = 0;
        for (var i = 0; i < rows; i++)
        {
            var best = double.NegativeInfinity;
            for (var j = 0; j < columns; j++) best = Math.Max(best, cosines[i, j]);
            sum += columns > 0 ? best : 0;
        }
        return rows > 0 ? sum / rows : 0;
    }

    /// <summary>Mean cosine of the one-to-one assignment of true features to distinct atoms that maximises the
    /// total cosine (each true feature gets its own atom; needs at least as many atoms as features, else the
    /// roles swap). Also returns the assignment: atom of each true feature.</summary>
    public static (double Mean, int[] Assignment) MatchedCosine(double[,] cosines)
    {
        int rows = cosines.GetLength(0), columns = cosines.GetLength(1);
        if (rows == 0 || columns == 0) return (0, []);
        if (rows > columns)
        {
            // Fewer atoms than features: match every atom to a distinct feature instead.
            var transposed = new double[columns, rows];
            for (var i = 0; i < rows; i++)
                for (var j = 0; j < columns; j++) transposed[j, i] = cosines[i, j];
            var (mean, atomToFeature) = MatchedCosine(transposed);
            var featureToAtom = Enumerable.Repeat(-1, rows).ToArray();
            for (var j = 0; j < columns; j++) featureToAtom[atomToFeature[j]] = j;
            return (mean, featureToAtom);
        }
        var cost = new double[rows, columns];
        for (var i = 0; i < rows; i++)
            for (var j = 0; j < columns; j++) cost[i, j] = -cosines[i, j];
        var assignment = Hungarian(cost);
        double total = 0;
        for (var i = 0; i < rows; i++) total += cosines[i, assignment[i]];
        return (total / rows, assignment);
    }

    /// <summary>Minimum-cost assignment of rows to distinct columns (rows ≤ columns): the shortest augmenting
    /// path form of the Hungarian algorithm with potentials, O(rows² · columns).</summary>
    public static int[] Hungarian(double[,] cost)
    {
        int rows = cost.GetLength(0), columns = cost.GetLength(1);
        // 1-based arrays; column 0 is a virtual start.
        var u = new double[rows + 1];
        var v = new double[columns + 1];
        var rowOfColumn = new int[columns + 1];
        var way = new int[columns + 1];
        var minimum = new double[columns + 1];
        var used = new bool[columns + 1];
        for (var i = 1; i <= rows; i++)
        {
            rowOfColumn[0] = i;
            var column = 0;
            Array.Fill(minimum, double.PositiveInfinity);
            Array.Fill(used, false);
            do
            {
                used[column] = true;
                int row = rowOfColumn[column], next = 0;
                var delta = double.PositiveInfinity;
                for (var j = 1; j <= columns; j++)
                {
                    if (used[j]) continue;
                    var reduced = cost[row - 1, j - 1] - u[row] - v[j];
                    if (reduced < minimum[j])
                    {
                        minimum[j] = reduced;
                        way[j] = column;
                    }
                    if (minimum[j] < delta)
                    {
                        delta = minimum[j];
                        next = j;
                    }
                }
                for (var j = 0; j <= columns; j++)
                {
                    if (used[j])
                    {
                        u[rowOfColumn[j]] += delta;
                        v[j] -= delta;
                    }
                    else
                    {
                        minimum[j] -= delta;
                    }
                }
                column = next;
            } while (rowOfColumn[column] != 0);
            do
            {
                var previous = way[column];
                rowOfColumn[column] = rowOfColumn[previous];
                column = previous;
            } while (column != 0);
        }
        var assignment = new int[rows];
        for (var j = 1; j <= columns; j++)
            if (rowOfColumn[j] != 0) assignment[rowOfColumn[j] - 1] = j - 1;
        return assignment;
    }

    private static double[] Norms(ReadOnlySpan<float> rows, int count, int d)
    {
        var norms = new double[count];
        for (var i = 0; i < count; i++) norms[i] = System.Numerics.Tensors.TensorPrimitives.Norm(rows.Slice(i * d, d));
        return norms;
    }
}
