using System.Text.Json;
using NativeEngine.Interop;
using NativeEngine.Runner.Formats;

namespace NativeEngine.Runner.Configs;

/// <summary>The router of a mixture-of-experts model (see the ne_moe_config comment in nativeengine.h).</summary>
public sealed record RouterSettings(
    bool Renormalize = true,
    RouterNoise Noise = RouterNoise.None,
    float LoadBalance = 0.01f,
    float ZLoss = 0.001f,
    float BiasUpdate = 0f,
    float CapacityFactor = 0f);

/// <summary>A mixture-of-experts run: E experts of width expert_hidden behind a top-k router; the rest (features,
/// importance, probabilities, L1, feature sets, sweeps, optimizer) is a toy run's, in <see cref="Run"/>, whose
/// Model and NHidden are the experts'.</summary>
public sealed record MoeConfig(ToyConfig Run, int NExperts, int TopK, RouterSettings Router)
{
    public ToyModelKind ExpertModel => Run.Model;
    public int ExpertHidden => Run.NHidden;

    /// <summary>With one chosen expert renormalised over itself the gate is identically 1: the router learns
    /// only from the auxiliary losses.</summary>
    public bool RouterStarvedOfTaskGradient => TopK == 1 && Router.Renormalize;

    public MoeModelSpec ToSpec() => new(Run.Model, Run.NFeatures, Run.NHidden, NExperts, TopK, Run.NInstances,
        Run.BatchSize, Run.Lr, Run.WeightDecay, Run.Optimizer, Run.Seed, Router.Renormalize, Router.Noise,
        Router.LoadBalance, Router.ZLoss, Router.BiasUpdate, Router.CapacityFactor);

    /// <summary>Forward multiply-adds x 2 per sample: the router (2nE) and k experts (2nm to encode, 2nm to decode).</summary>
    public double ActiveFlopsPerSample => 2.0 * Run.NFeatures * NExperts + TopK * 4.0 * Run.NFeatures * Run.NHidden;
}

public static class MoeConfigLoader
{
    public static readonly IReadOnlyDictionary<string, ToyModelKind> ExpertModels = new Dictionary<string, ToyModelKind>
    {
        ["relu_output"] = ToyModelKind.ReluOutput,
        ["relu_hidden"] = ToyModelKind.ReluHidden,
    };

    public static readonly IReadOnlyDictionary<string, RouterNoise> Noises = new Dictionary<string, RouterNoise>
    {
        ["none"] = RouterNoise.None,
        ["noisy_topk"] = RouterNoise.NoisyTopK,
        ["jitter"] = RouterNoise.Jitter,
    };

    public static MoeConfig LoadFile(string path)
    {
        return Parse(JsonObjectReader.ReadFile(path), path);
    }

    public static MoeConfig Parse(string json, string source)
    {
        using var document = JsonObjectReader.Parse(json, source);
        var r = new JsonObjectReader(document.RootElement, source);
        var experts = (int)r.Integer("n_experts", 1, 4096);
        var topK = (int)r.Integer("top_k", 1, experts);
        var hidden = (int)r.Integer("expert_hidden", 1, 1_000_000);
        var model = r.Choice("expert_model", ExpertModels, ToyModelKind.ReluOutput);
        var router = r.TryGet("router", out var routerValue) ? ReadRouter(r, routerValue) : new RouterSettings();
        var run = ToyConfigLoader.ReadRun(r, model, () => hidden);
        ToyConfigLoader.CheckSize(r, "n_experts", run.NInstances, run.NFeatures, (double)experts * hidden, "n_experts × expert_hidden");
        r.RejectUnknownKeys();
        return new MoeConfig(run, experts, topK, router);
    }

    private static RouterSettings ReadRouter(JsonObjectReader r, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw r.Error("router", $"must be an object, found {JsonObjectReader.Describe(value)}");
        var s = r.Nested(value, "router");
        var defaults = new RouterSettings();
        bool renormalize = defaults.Renormalize;
        if (s.TryGet("renormalize", out var flag))
            renormalize = flag.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw s.Error("renormalize", $"must be true or false, found {JsonObjectReader.Describe(flag)}"),
            };
        var router = new RouterSettings(
            renormalize,
            s.Choice("noise", Noises, defaults.Noise),
            (float)s.Number("load_balance", defaults.LoadBalance, v => v >= 0, "a number >= 0 (alpha)"),
            (float)s.Number("z_loss", defaults.ZLoss, v => v >= 0, "a number >= 0 (c)"),
            (float)s.Number("bias_update", defaults.BiasUpdate, v => v >= 0, "a number >= 0 (u)"),
            (float)s.Number("capacity_factor", defaults.CapacityFactor, v => v >= 0, "a number >= 0 (0 = dropless)"));
        s.RejectUnknownKeys();
        return router;
    }
}

public static class MoeConfigWriter
{
    public static string ToJson(MoeConfig c)
    {
        return Json.Document(w =>
        {
            w.WriteStartObject();
            w.WriteNumber("n_experts", c.NExperts);
            w.WriteNumber("top_k", c.TopK);
            w.WriteNumber("expert_hidden", c.ExpertHidden);
            w.WriteString("expert_model", ToyConfig.ModelName(c.ExpertModel));
            w.WriteStartObject("router");
            w.WriteBoolean("renormalize", c.Router.Renormalize);
            w.WriteString("noise", MoeConfigLoader.Noises.First(p => p.Value == c.Router.Noise).Key);
            w.WriteNumber("load_balance", c.Router.LoadBalance);
            w.WriteNumber("z_loss", c.Router.ZLoss);
            w.WriteNumber("bias_update", c.Router.BiasUpdate);
            w.WriteNumber("capacity_factor", c.Router.CapacityFactor);
            w.WriteEndObject();
            ToyConfigWriter.WriteRun(w, c.Run);
            w.WriteEndObject();
        });
    }
}
