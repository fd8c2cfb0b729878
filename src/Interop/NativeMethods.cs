using System.Runtime.InteropServices;

namespace NativeEngine.Interop;

/// <summary>Source-generated bindings of cuda/include/nativeengine.h, one to one.</summary>
internal static partial class NativeMethods
{
    internal const string Library = "nativeengine";

    static NativeMethods() => NativeLibraryResolver.Register();

    [LibraryImport(Library, EntryPoint = "ne_last_error")]
    internal static partial IntPtr LastError();

    [LibraryImport(Library, EntryPoint = "ne_status_name")]
    internal static partial IntPtr StatusName(int status);

    [LibraryImport(Library, EntryPoint = "ne_version")]
    internal static partial IntPtr Version();

    [LibraryImport(Library, EntryPoint = "ne_abi_version")]
    internal static partial int AbiVersion();

    [LibraryImport(Library, EntryPoint = "ne_runtime_info_size")]
    internal static partial nuint RuntimeInfoSize();

    [LibraryImport(Library, EntryPoint = "ne_runtime_query")]
    internal static partial Status RuntimeQuery(out RuntimeInfoNative info);

    [LibraryImport(Library, EntryPoint = "ne_cuda_unavailable_reason")]
    internal static partial IntPtr CudaUnavailableReason();

    [LibraryImport(Library, EntryPoint = "ne_device_info_size")]
    internal static partial nuint DeviceInfoSize();

    [LibraryImport(Library, EntryPoint = "ne_context_create")]
    internal static partial Status ContextCreate(int backend, int device, out ContextHandle context);

    [LibraryImport(Library, EntryPoint = "ne_context_destroy")]
    internal static partial Status ContextDestroy(IntPtr context);

    [LibraryImport(Library, EntryPoint = "ne_context_device_info")]
    internal static partial Status ContextDeviceInfo(ContextHandle context, out DeviceInfoNative info);

    [LibraryImport(Library, EntryPoint = "ne_capabilities_size")]
    internal static partial nuint CapabilitiesSize();

    [LibraryImport(Library, EntryPoint = "ne_context_capabilities")]
    internal static partial Status ContextCapabilities(ContextHandle context, out CapabilitiesNative capabilities);

    [LibraryImport(Library, EntryPoint = "ne_context_supports_toy")]
    internal static partial Status ContextSupportsToy(ContextHandle context, in ToyConfigNative config);

    [LibraryImport(Library, EntryPoint = "ne_context_supports_moe")]
    internal static partial Status ContextSupportsMoe(ContextHandle context, in MoeConfigNative config);

    [LibraryImport(Library, EntryPoint = "ne_context_supports_sae")]
    internal static partial Status ContextSupportsSae(ContextHandle context, in SaeConfigNative config);

    [LibraryImport(Library, EntryPoint = "ne_toy_config_size")]
    internal static partial nuint ToyConfigSize();

    [LibraryImport(Library, EntryPoint = "ne_toy_create")]
    internal static partial Status ToyCreate(ContextHandle context, in ToyConfigNative config,
        ReadOnlySpan<float> importance, long importanceCount,
        ReadOnlySpan<float> featureProbability, long probabilityCount, out ToyHandle toy);

    [LibraryImport(Library, EntryPoint = "ne_toy_create_part")]
    internal static partial Status ToyCreatePart(ContextHandle context, in ToyConfigNative config, long firstInstance,
        long totalInstances, ReadOnlySpan<float> importance, long importanceCount,
        ReadOnlySpan<float> featureProbability, long probabilityCount, out ToyHandle toy);

    [LibraryImport(Library, EntryPoint = "ne_toy_destroy")]
    internal static partial Status ToyDestroy(IntPtr toy);

    [LibraryImport(Library, EntryPoint = "ne_toy_train")]
    internal static partial Status ToyTrain(ToyHandle toy, long steps);

    [LibraryImport(Library, EntryPoint = "ne_toy_steps_done")]
    internal static partial Status ToyStepsDone(ToyHandle toy, out long steps);

    [LibraryImport(Library, EntryPoint = "ne_non_finite_size")]
    internal static partial nuint NonFiniteSize();

    [LibraryImport(Library, EntryPoint = "ne_toy_non_finite")]
    internal static partial Status ToyNonFinite(ToyHandle toy, out NonFiniteNative result);

    [LibraryImport(Library, EntryPoint = "ne_moe_non_finite")]
    internal static partial Status MoeNonFinite(MoeHandle moe, out NonFiniteNative result);

    [LibraryImport(Library, EntryPoint = "ne_sae_non_finite")]
    internal static partial Status SaeNonFinite(SaeHandle sae, out NonFiniteNative result);

    [LibraryImport(Library, EntryPoint = "ne_toy_set_l1")]
    internal static partial Status ToySetL1(ToyHandle toy, ReadOnlySpan<float> l1, long l1Count);

    [LibraryImport(Library, EntryPoint = "ne_toy_set_feature_sets")]
    internal static partial Status ToySetFeatureSets(ToyHandle toy, ReadOnlySpan<int> setOfFeature, long featureCount,
        ReadOnlySpan<int> setKind, long setCount);

    [LibraryImport(Library, EntryPoint = "ne_toy_evaluate")]
    internal static partial Status ToyEvaluate(ToyHandle toy, long batches, Span<float> loss, long lossCount,
        Span<float> penalty, long penaltyCount);

    [LibraryImport(Library, EntryPoint = "ne_toy_get_params")]
    internal static partial Status ToyGetParams(ToyHandle toy, Span<float> w, long wCount, Span<float> wOut,
        long wOutCount, Span<float> b, long bCount);

    [LibraryImport(Library, EntryPoint = "ne_toy_set_params")]
    internal static partial Status ToySetParams(ToyHandle toy, ReadOnlySpan<float> w, long wCount,
        ReadOnlySpan<float> wOut, long wOutCount, ReadOnlySpan<float> b, long bCount);

    [LibraryImport(Library, EntryPoint = "ne_toy_sample_batch")]
    internal static partial Status ToySampleBatch(ToyHandle toy, long step, long instance, Span<float> x, long xCount);

    [LibraryImport(Library, EntryPoint = "ne_moe_config_size")]
    internal static partial nuint MoeConfigSize();

    [LibraryImport(Library, EntryPoint = "ne_moe_create")]
    internal static partial Status MoeCreate(ContextHandle context, in MoeConfigNative config,
        ReadOnlySpan<float> importance, long importanceCount,
        ReadOnlySpan<float> featureProbability, long probabilityCount, out MoeHandle moe);

    [LibraryImport(Library, EntryPoint = "ne_moe_create_part")]
    internal static partial Status MoeCreatePart(ContextHandle context, in MoeConfigNative config, long firstInstance,
        long totalInstances, ReadOnlySpan<float> importance, long importanceCount,
        ReadOnlySpan<float> featureProbability, long probabilityCount, out MoeHandle moe);

    [LibraryImport(Library, EntryPoint = "ne_moe_destroy")]
    internal static partial Status MoeDestroy(IntPtr moe);

    [LibraryImport(Library, EntryPoint = "ne_moe_set_l1")]
    internal static partial Status MoeSetL1(MoeHandle moe, ReadOnlySpan<float> l1, long l1Count);

    [LibraryImport(Library, EntryPoint = "ne_moe_set_feature_sets")]
    internal static partial Status MoeSetFeatureSets(MoeHandle moe, ReadOnlySpan<int> setOfFeature, long featureCount,
        ReadOnlySpan<int> setKind, long setCount);

    [LibraryImport(Library, EntryPoint = "ne_moe_train")]
    internal static partial Status MoeTrain(MoeHandle moe, long steps);

    [LibraryImport(Library, EntryPoint = "ne_moe_evaluate")]
    internal static partial Status MoeEvaluate(MoeHandle moe, long batches, Span<float> output, long outputCount);

    [LibraryImport(Library, EntryPoint = "ne_moe_get_params")]
    internal static partial Status MoeGetParams(MoeHandle moe, Span<float> w, long wCount, Span<float> b, long bCount,
        Span<float> wGate, long gateCount, Span<float> wNoise, long noiseCount, Span<float> routeBias, long biasCount);

    [LibraryImport(Library, EntryPoint = "ne_sae_config_size")]
    internal static partial nuint SaeConfigSize();

    [LibraryImport(Library, EntryPoint = "ne_sae_stats_size")]
    internal static partial nuint SaeStatsSize();

    [LibraryImport(Library, EntryPoint = "ne_sae_create")]
    internal static partial Status SaeCreate(ContextHandle context, in SaeConfigNative config, out SaeHandle sae);

    [LibraryImport(Library, EntryPoint = "ne_sae_destroy")]
    internal static partial Status SaeDestroy(IntPtr sae);

    [LibraryImport(Library, EntryPoint = "ne_sae_init_decoder_bias")]
    internal static partial Status SaeInitDecoderBias(SaeHandle sae, ReadOnlySpan<float> x, long xCount, int method);

    [LibraryImport(Library, EntryPoint = "ne_sae_train_step")]
    internal static partial Status SaeTrainStep(SaeHandle sae, ReadOnlySpan<float> x, long xCount, float lr, out SaeStats stats);

    [LibraryImport(Library, EntryPoint = "ne_sae_evaluate")]
    internal static partial Status SaeEvaluate(SaeHandle sae, ReadOnlySpan<float> x, long xCount, Span<float> xHat,
        long xHatCount, Span<long> fireCount, long fireCountCount, out SaeStats stats);

    [LibraryImport(Library, EntryPoint = "ne_sae_get_params")]
    internal static partial Status SaeGetParams(SaeHandle sae, Span<float> wEnc, long encCount, Span<float> bEnc,
        long bEncCount, Span<float> wDec, long decCount, Span<float> bDec, long bDecCount, Span<float> threshold,
        long thresholdCount);

    [LibraryImport(Library, EntryPoint = "ne_sae_set_params")]
    internal static partial Status SaeSetParams(SaeHandle sae, ReadOnlySpan<float> wEnc, long encCount,
        ReadOnlySpan<float> bEnc, long bEncCount, ReadOnlySpan<float> wDec, long decCount, ReadOnlySpan<float> bDec,
        long bDecCount, ReadOnlySpan<float> threshold, long thresholdCount);

    [LibraryImport(Library, EntryPoint = "ne_sae_set_sparsity_coefficient")]
    internal static partial Status SaeSetSparsityCoefficient(SaeHandle sae, float coefficient);

    [LibraryImport(Library, EntryPoint = "ne_sae_state_size")]
    internal static partial Status SaeStateSize(SaeHandle sae, out long bytes);

    [LibraryImport(Library, EntryPoint = "ne_sae_get_state")]
    internal static partial Status SaeGetState(SaeHandle sae, Span<byte> state, long bytes);

    [LibraryImport(Library, EntryPoint = "ne_sae_restore")]
    internal static partial Status SaeRestore(SaeHandle sae, ReadOnlySpan<float> wEnc, long encCount,
        ReadOnlySpan<float> bEnc, long bEncCount, ReadOnlySpan<float> wDec, long decCount, ReadOnlySpan<float> bDec,
        long bDecCount, ReadOnlySpan<float> threshold, long thresholdCount, ReadOnlySpan<byte> state, long bytes);

    // ---- synthetic activations with a known ground truth (ABI 5) ----

    [LibraryImport(Library, EntryPoint = "ne_synth_config_size")]
    internal static partial nuint SynthConfigSize();

    [LibraryImport(Library, EntryPoint = "ne_synth_preset_config")]
    internal static partial Status SynthPreset(int preset, out SynthConfigNative config);

    [LibraryImport(Library, EntryPoint = "ne_synth_check")]
    internal static partial Status SynthCheck(in SynthConfigNative config);

    [LibraryImport(Library, EntryPoint = "ne_synth_create")]
    internal static partial Status SynthCreate(ContextHandle context, in SynthConfigNative config, ReadOnlySpan<float> w,
        long wCount, ReadOnlySpan<float> b, long bCount, out SynthHandle synth);

    [LibraryImport(Library, EntryPoint = "ne_synth_destroy")]
    internal static partial Status SynthDestroy(IntPtr synth);

    [LibraryImport(Library, EntryPoint = "ne_synth_sample")]
    internal static partial Status SynthSample(SynthHandle synth, int stream, long firstSample, long count, Span<float> x,
        long xCount, Span<float> codes, long codesCount);

    [LibraryImport(Library, EntryPoint = "ne_synth_sample_sparse")]
    internal static partial Status SynthSampleSparse(SynthHandle synth, int stream, long firstSample, long count,
        Span<float> x, long xCount, Span<long> rowBegin, long rowBeginCount, Span<int> index, Span<float> value,
        long capacity, out long total);

    [LibraryImport(Library, EntryPoint = "ne_synth_get_truth")]
    internal static partial Status SynthGetTruth(SynthHandle synth, Span<float> w, long wCount, Span<float> b, long bCount,
        Span<float> probability, long probabilityCount, Span<float> fireProbability, long fireProbabilityCount,
        Span<int> parent, long parentCount, Span<int> flags, long flagsCount, Span<float> mean, long meanCount,
        Span<float> stddev, long stddevCount);

    [LibraryImport(Library, EntryPoint = "ne_sae_train_step_synth")]
    internal static partial Status SaeTrainStepSynth(SaeHandle sae, SynthHandle synth, long firstSample, float scale,
        float lr, out SaeStats stats);

    [LibraryImport(Library, EntryPoint = "ne_sae_create_sharded")]
    internal static partial Status SaeCreateSharded(ContextHandle context, in SaeConfigNative config, IntPtr latents,
        IntPtr data, out SaeHandle sae);

    [LibraryImport(Library, EntryPoint = "ne_sae_shard")]
    internal static partial Status SaeShard(SaeHandle sae, out long first, out long count);

    [LibraryImport(Library, EntryPoint = "ne_mpi_info_size")]
    internal static partial nuint MpiInfoSize();

    [LibraryImport(Library, EntryPoint = "ne_comm_counters_size")]
    internal static partial nuint CommCountersSize();

    [LibraryImport(Library, EntryPoint = "ne_mpi_query")]
    internal static partial Status MpiQuery(out MpiInfoNative info);

    [LibraryImport(Library, EntryPoint = "ne_comm_world")]
    internal static partial Status CommWorld(out CommHandle comm);

    [LibraryImport(Library, EntryPoint = "ne_comm_split")]
    internal static partial Status CommSplit(CommHandle comm, int color, int key, out CommHandle part);

    [LibraryImport(Library, EntryPoint = "ne_comm_destroy")]
    internal static partial Status CommDestroy(IntPtr comm);

    [LibraryImport(Library, EntryPoint = "ne_comm_rank")]
    internal static partial Status CommRank(CommHandle comm, out int rank, out int size);

    [LibraryImport(Library, EntryPoint = "ne_comm_allreduce")]
    internal static unsafe partial Status CommAllreduce(CommHandle comm, void* buffer, long count, int type, int op);

    [LibraryImport(Library, EntryPoint = "ne_comm_allgather")]
    internal static partial Status CommAllgather(CommHandle comm, ReadOnlySpan<byte> send, long bytes, Span<byte> receive,
        long receiveBytes);

    [LibraryImport(Library, EntryPoint = "ne_comm_gather")]
    internal static partial Status CommGather(CommHandle comm, ReadOnlySpan<byte> send, long bytes, Span<byte> receive,
        long receiveBytes, int root);

    [LibraryImport(Library, EntryPoint = "ne_comm_broadcast")]
    internal static partial Status CommBroadcast(CommHandle comm, Span<byte> buffer, long bytes, int root);

    [LibraryImport(Library, EntryPoint = "ne_comm_barrier")]
    internal static partial Status CommBarrier(CommHandle comm);

    [LibraryImport(Library, EntryPoint = "ne_comm_counters_get")]
    internal static partial Status CommCounters(CommHandle comm, out CommCountersNative counters);

    [LibraryImport(Library, EntryPoint = "ne_comm_abort")]
    internal static partial Status CommAbort(CommHandle comm, int code);

    [LibraryImport(Library, EntryPoint = "ne_mpi_finalize")]
    internal static partial Status MpiFinalize();

    [LibraryImport(Library, EntryPoint = "ne_sgemm")]
    internal static partial Status Sgemm(ContextHandle context, long m, long n, long k, ReadOnlySpan<float> a, long aCount,
        ReadOnlySpan<float> b, long bCount, Span<float> c, long cCount);
}
