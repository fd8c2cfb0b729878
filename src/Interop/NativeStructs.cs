using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace NativeEngine.Interop;

// Blittable mirrors of the C structs. Field order and widths must match nativeengine.h; a test compares each
// Unsafe.SizeOf with the native size query.

[StructLayout(LayoutKind.Sequential)]
public struct RuntimeInfoNative
{
    public int CudaCompiled;
    public int CudaLoaded;
    public int CudaDeviceCount;
    public int CpuThreads;
    public int Nvtx;
    public int Reserved;
}

/// <summary>A fixed-size char array of the C ABI as a string: UTF-8 up to its first NUL.</summary>
internal static class FixedText
{
    public static string Decode(ReadOnlySpan<byte> bytes)
    {
        var end = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]);
    }
}

[InlineArray(256)]
public struct MpiText
{
    private byte _first;

    public override readonly string ToString() => FixedText.Decode(this);
}

[StructLayout(LayoutKind.Sequential)]
public struct MpiInfoNative
{
    public int PluginFound;
    public int PluginLoaded;
    public int Launched;
    public int Initialized;
    public int WorldRank;
    public int WorldSize;
    public MpiText Library;
    public MpiText Reason;
    public int NcclLoaded;
    public int Reserved;
    public MpiText Nccl;
}

[StructLayout(LayoutKind.Sequential)]
public struct CommCountersNative
{
    public long Calls;
    public long AllreduceBytes;
    public long AllgatherBytes;
    public long BroadcastBytes;
    public long BestBytes;
}

[InlineArray(128)]
public struct DeviceName
{
    private byte _first;

    public override readonly string ToString() => FixedText.Decode(this);
}

[StructLayout(LayoutKind.Sequential)]
public struct DeviceInfoNative
{
    public int Backend;
    public int DeviceIndex;
    public long TotalMemory;
    public long FreeMemory;
    public int ComputeMajor;
    public int ComputeMinor;
    public int Multiprocessors;
    public int Reserved;
    public DeviceName Name;
}

[StructLayout(LayoutKind.Sequential)]
public struct CapabilitiesNative
{
    public int Backend;
    public int ToyModels;
    public int MoeNoise;
    public int SaeArchitectures;
    public int SaePrecisions;
    public int Sgemm;
    public long MaxSharedBytes;
    public long MaxSaeSlots;
}

[StructLayout(LayoutKind.Sequential)]
public struct ToyConfigNative
{
    public int Model;
    public int Optimizer;
    public long NFeatures;
    public long NHidden;
    public long NInstances;
    public long BatchSize;
    public float Lr;
    public float WeightDecay;
    public float Beta1;
    public float Beta2;
    public float Eps;
    public int Reserved;
    public ulong Seed;
}

[StructLayout(LayoutKind.Sequential)]
public struct MoeConfigNative
{
    public int ExpertModel;
    public int Optimizer;
    public long NFeatures;
    public long ExpertHidden;
    public long NExperts;
    public long TopK;
    public long NInstances;
    public long BatchSize;
    public float Lr;
    public float WeightDecay;
    public float Beta1;
    public float Beta2;
    public float Eps;
    public int Renormalize;
    public int Noise;
    public float LoadBalance;
    public float ZLoss;
    public float BiasUpdate;
    public float CapacityFactor;
    public int Reserved;
    public ulong Seed;
}

[StructLayout(LayoutKind.Sequential)]
public struct SaeConfigNative
{
    public int Architecture;
    public int SparseUpdates;
    public long DIn;
    public long DSae;
    public long K;
    public long KAux;
    public long BatchSize;
    public long DeadWindow;
    public float L1Coefficient;
    public float L0Coefficient;
    public float AuxkAlpha;
    public float JumpBandwidth;
    public float Beta1;
    public float Beta2;
    public float Eps;
    public int Reserved;
    public ulong Seed;
    public int Precision;
    public int Reserved2;
    public MatryoshkaWidths MatryoshkaWidths;
    public int MatryoshkaLevels;
    public int MatryoshkaAuxLoss;
    public float ResidualThreshold;
    public int MaxIterations;
    public int StopOnDuplicateSupport;
    public int Reserved4;
}

/// <summary>Mirror of <c>ne_sae_config.matryoshka_widths</c> (<c>NE_SAE_MAX_MATRYOSHKA_LEVELS</c> widths).</summary>
[InlineArray(MaxLevels)]
public struct MatryoshkaWidths
{
    public const int MaxLevels = 8;

    private long _first;
}

/// <summary>Mirror of <c>ne_sae_stats</c>: what one step or evaluation measured.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct SaeStats
{
    public double Mse;
    public double Sparsity;
    public double Auxk;
    public double Fvu;
    public double L0;
    public long Dead;
    public long Steps;
}

/// <summary>Mirror of <c>ne_non_finite</c>: where training first met a value that is not finite.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct NonFiniteNative
{
    public long Step;
    public long Instance;
    public int Quantity;
    public int Reserved;

    /// <summary>Null while every step was finite.</summary>
    public readonly NonFinite? ToRecord() => Step == 0 ? null : new NonFinite(Step, Instance, (NonFiniteQuantity)Quantity);
}

/// <summary>The first training step whose loss (then not applied) or updated parameters were not finite (NaN or
/// infinity). Step is 1-based: the number of steps including it.</summary>
public sealed record NonFinite(long Step, long Instance, NonFiniteQuantity Quantity);

/// <summary>Mirror of <c>ne_synth_config</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct SynthConfigNative
{
    public int Kind;
    public int CorrelationRank;
    public long NFeatures;
    public long D;
    public ulong Seed;
    public double ZipfExponent;
    public double PMin;
    public double PMax;
    public double Decay;
    public double ActiveMean;
    public long RootNodes;
    public int BranchingMin;
    public int BranchingMax;
    public int MaxDepth;
    public int MeMinDepth;
    public int MeMaxDepth;
    public int Compensate;
    public int ScaleChildren;
    public int Reserved;
    public double MePortion;
    public double CorrelationScale;
    public double MeanStart;
    public double MeanEnd;
    public double StdMean;
    public double StdStd;
    public double BiasNorm;
    public double OrthoLr;
    public int OrthoSteps;
    public int OrthoChunk;
}
