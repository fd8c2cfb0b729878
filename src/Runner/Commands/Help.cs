using CommandLine;
using CommandLine.Text;

namespace NativeEngine.Runner.Commands;

/// <summary>The --help text: usage and options from the verbs' attributes, and one example per verb.</summary>
public static class Help
{
    public const string Program = "nativeengine";

    /// <summary>One command line per verb, as a user would type it.</summary>
    public static readonly IReadOnlyList<(string Verb, string Example)> Examples =
    [
        ("info", "info --backend cpu"),
        ("toy", "toy --config configs/paper/intro_n5_m2.json --out runs/intro"),
        ("moe", "moe --config configs/moe/compare_n20.json --out runs/moe --compare"),
        ("factorize", "factorize --config configs/factorize/synthetic_d256.json --out runs/sae"),
        ("factorize", "factorize --config configs/factorize/synthetic_d256.json --out runs/sae-sparsify --format sparsify"),
        ("eval", "eval --dict runs/sae --data configs/factorize/synthetic_d256.json --out runs/sae/eval.json"),
        ("encode", "encode --dict runs/sae --data configs/factorize/synthetic_d256.json --out runs/codes --encoder omp"),
        ("harvest", "harvest --model runs/intro --out runs/intro_h --tokens 1000000"),
        ("harvest", "harvest --onnx model.onnx --node mlp.act --inputs tokens.npy --out runs/acts"),
        ("synthesize", "synthesize --config configs/factorize/synthetic_d256.json --out runs/shards --tokens 10000000"),
        ("synthesize", "synthesize --config configs/factorize/synthetic_d256.json --out runs/cache --tokens 262144 --format arrow"),
        ("hybrid", "hybrid --config configs/hybrid/n20_m6.json --out runs/hybrid"),
        ("analyze", "analyze superposition-test --model runs/intro"),
        ("demo", "demo --out runs/demo"),
        ("bench", "bench toy --seconds 10 --out bench.json"),
        ("bench", "bench read --seconds 3"),
    ];

    /// <summary>Usage, options and an example for a verb; the verb list with an example each otherwise.</summary>
    public static string Text<T>(ParserResult<T> parsed, bool withErrors)
    {
        var verb = parsed.TypeInfo.Current.GetCustomAttributes(typeof(VerbAttribute), false).OfType<VerbAttribute>().FirstOrDefault();
        var help = HelpText.AutoBuild(parsed, h =>
        {
            h.Heading = $"{Program} {Interop.Engine.Version}";
            h.Copyright = "";
            h.AddDashesToOption = true;
            h.AdditionalNewLineAfterOption = false;
            h.MaximumDisplayWidth = 120;
            if (verb is not null)
            {
                h.AddPreOptionsLine($"Usage: {Program} {verb.Name} [options]   (required options are marked \"Required.\")");
                foreach (var (_, example) in Examples.Where(e => e.Verb == verb.Name))
                    h.AddPreOptionsLine($"Example: {Program} {example}");
            }
            else
            {
                h.AddPreOptionsLine($"Usage: {Program} VERB [options]; {Program} VERB --help for the verb's options.");
                h.AddPostOptionsLine("Examples:");
                foreach (var (_, example) in Examples) h.AddPostOptionsLine($"  {Program} {example}");
                h.AddPostOptionsLine("Exit codes: 0 done, 2 usage or input error, 3 internal error, 4 stopped on a non-finite value, " +
                                     "130 Ctrl-C, 143 SIGTERM.");
            }
            return withErrors ? HelpText.DefaultParsingErrorsHandler(parsed, h) : h;
        }, e => e, verbsIndex: verb is null);
        return help.ToString();
    }
}
