using System.Text.Json;
using System.Text.Json.Nodes;
using NativeEngine.Runner.Configs;

namespace NativeEngine.Runner.Experiments;

/// <summary>Where the coefficient controller stood after a step (recorded at the curve's points).</summary>
public sealed record SparsityTuningPoint(long Step, double Coefficient, double Multiplier, double SmoothedL0);

/// <summary>
/// The sparsity coefficient of a relu or jumprelu run over training: the configured coefficient, times the linear
/// warm-up (sae.sparsity_warmup_steps), times the multiplier of the target-L0 controller (sae.target_l0,
/// <see cref="TargetL0Spec"/>). Step t trains with the multiplier as it stood after step t − 1; step t's L0 then
/// updates it (the order of SynthSAEBench's experiments). The whole state is four numbers, carried by checkpoints so a
/// resumed run continues bit for bit, and the trajectory for metrics.json and the report.
/// </summary>
public sealed class SparsityTuning
{
    private readonly SaeSpec sae;
    private readonly List<SparsityTuningPoint> trajectory = [];
    private bool initialized;
    private double smoothedL0, rate, multiplier = 1;

    public SparsityTuning(SaeSpec sae) => this.sae = sae;

    /// <summary>Whether the config asks for anything beyond a constant coefficient.</summary>
    public static bool Needed(SaeSpec sae) => sae.SparsityWarmupSteps > 0 || sae.TargetL0 is not null;

    public double Multiplier => multiplier;
    public double SmoothedL0 => smoothedL0;
    public IReadOnlyList<SparsityTuningPoint> Trajectory => trajectory;

    /// <summary>The coefficient step <paramref name="step"/> (0-based) trains with.</summary>
    public double CoefficientAt(long step)
    {
        var warmup = sae.SparsityWarmupSteps > 0 ? Math.Min(1.0, (step + 1) / (double)sae.SparsityWarmupSteps) : 1.0;
        return sae.SparsityCoefficient * warmup * multiplier;
    }

    /// <summary>After step <paramref name="step"/> (0-based) with mean L0 <paramref name="batchL0"/>.</summary>
    public void Update(long step, double batchL0)
    {
        if (sae.TargetL0 is not { } c) return;
        if (!initialized)
        {
            smoothedL0 = batchL0;
            rate = 0;
            initialized = true;
        }
        else
        {
            var previous = smoothedL0;
            smoothedL0 = c.Smoothing * smoothedL0 + (1 - c.Smoothing) * batchL0;
            rate = c.RateSmoothing * rate + (1 - c.RateSmoothing) * (smoothedL0 - previous);
        }
        if (step < c.StartStep) return;
        var error = smoothedL0 - c.TargetL0;
        if (Math.Abs(error) <= c.Deadband) return;
        // Moving towards the target (error and rate of opposite signs): damp the gain so it does not overshoot.
        var gain = error * rate < 0 ? c.ConvergenceGain : 1.0;
        var adjustment = c.IntegralGain * gain * Math.Tanh(Math.Abs(error / c.TargetL0) * c.GainScale);
        multiplier = Math.Clamp(multiplier * (error > 0 ? 1 + adjustment : 1 - adjustment), c.MinMultiplier, c.MaxMultiplier);
    }

    /// <summary>Records where the controller stands after <paramref name="step"/> steps (1-based, as the curve).</summary>
    public void Record(long step) =>
        trajectory.Add(new SparsityTuningPoint(step, CoefficientAt(step), multiplier, smoothedL0));

    /// <summary>The checkpoint's form: the state (exact doubles) and the trajectory so far.</summary>
    public void Write(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteBoolean("initialized", initialized);
        w.WriteNumber("smoothed_l0", smoothedL0);
        w.WriteNumber("rate", rate);
        w.WriteNumber("multiplier", multiplier);
        w.WriteStartArray("trajectory");
        foreach (var p in trajectory)
        {
            w.WriteStartObject();
            w.WriteNumber("step", p.Step);
            w.WriteNumber("coefficient", p.Coefficient);
            w.WriteNumber("multiplier", p.Multiplier);
            w.WriteNumber("smoothed_l0", p.SmoothedL0);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>Restores what <see cref="Write"/> wrote (a checkpoint of this config).</summary>
    public void Read(JsonElement e)
    {
        initialized = e.GetProperty("initialized").GetBoolean();
        smoothedL0 = e.GetProperty("smoothed_l0").GetDouble();
        rate = e.GetProperty("rate").GetDouble();
        multiplier = e.GetProperty("multiplier").GetDouble();
        trajectory.Clear();
        trajectory.AddRange(e.GetProperty("trajectory").EnumerateArray().Select(p => new SparsityTuningPoint(
            p.GetProperty("step").GetInt64(), p.GetProperty("coefficient").GetDouble(), p.GetProperty("multiplier").GetDouble(),
            p.GetProperty("smoothed_l0").GetDouble())));
    }

    /// <summary>metrics.json's "sparsity_tuning": the target, the final coefficient and multiplier, the trajectory.</summary>
    public JsonObject Json(long steps) => new()
    {
        ["coefficient_key"] = sae.Architecture == NativeEngine.Interop.SaeArchitecture.Relu ? "l1_coefficient" : "l0_coefficient",
        ["base_coefficient"] = sae.SparsityCoefficient,
        ["warmup_steps"] = sae.SparsityWarmupSteps,
        ["target_l0"] = sae.TargetL0?.TargetL0,
        ["final_coefficient"] = CoefficientAt(steps),
        ["final_multiplier"] = multiplier,
        ["final_smoothed_l0"] = sae.TargetL0 is null ? null : smoothedL0,
        ["trajectory"] = new JsonArray(trajectory.Select(p => (JsonNode)new JsonObject
        {
            ["step"] = p.Step, ["coefficient"] = p.Coefficient, ["multiplier"] = p.Multiplier, ["smoothed_l0"] = p.SmoothedL0,
        }).ToArray()),
    };
}
