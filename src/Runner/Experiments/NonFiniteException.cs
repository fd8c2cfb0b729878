using System.Globalization;
using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Experiments;

/// <summary>
/// Training met a value that is not finite (NaN or infinity) and stopped at that step. Thrown after the run folder
/// holds what could be written (the last good checkpoint, results with nulls and a "non_finite" record); the
/// message names the step, the quantity and a likely cause.
/// </summary>
public sealed class NonFiniteException(string message, NonFinite where) : Exception(message)
{
    public NonFinite Where { get; } = where;

    /// <summary>Every rank of a run split across processes throws this at the same point (they agreed on the step),
    /// so the error handler lets each end on its own instead of ending them all at once.</summary>
    public bool EveryRank { get; init; }

    /// <summary>"step 12 of 400: the loss of instance 3 is not finite (NaN or infinity); likely cause: ..."</summary>
    public static string Describe(NonFinite where, long totalSteps, double lr, bool instances)
    {
        var whose = instances ? $" of instance {where.Instance}" : "";
        var what = where.Quantity == NonFiniteQuantity.Parameters
            ? $"the parameters{whose} are not finite (NaN or infinity) after the update"
            : $"the loss{whose} is not finite (NaN or infinity), so the step was not applied";
        var lrText = lr.ToString("G3", CultureInfo.InvariantCulture).Replace("E+", "e+").Replace("E-", "e-");
        return $"step {where.Step} of {totalSteps}: {what}; likely cause: the learning rate (lr {lrText}) is too large " +
               "for this model, or the inputs hold very large or non-finite values";
    }

    /// <summary>The "non_finite" object of a results file: step, instance, quantity.</summary>
    public static void Write(Utf8JsonWriter w, NonFinite where)
    {
        w.WriteStartObject("non_finite");
        w.WriteNumber("step", where.Step);
        w.WriteNumber("instance", where.Instance);
        w.WriteString("quantity", where.Quantity == NonFiniteQuantity.Parameters ? "parameters" : "loss");
        w.WriteEndObject();
    }
}
