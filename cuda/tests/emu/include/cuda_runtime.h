// Emulated CUDA runtime: the part of the CUDA runtime API and of CUDA C++'s device language that the engine's .cu
// files use, implemented on the CPU (cuda/tests/emu/README.md). It stands in for the toolkit's cuda_runtime.h when
// a .cu file is compiled as C++ by the emulated tier; nothing here runs on, or speaks for, a GPU.
//
// Host API: device 0 is "emulated CUDA device (CPU)"; device memory is host memory in guarded mappings with
// bounds, kind and lifetime checks; streams run their work in order at the time it is issued.
// Device language: every thread of a block is a fiber, so __syncthreads is a real barrier; warp collectives
// synchronise the lanes named in their mask; __shared__ memory is allocated per block. The order in which
// threads run between barriers is NE_EMU_SCHEDULE (forward, reverse, random:SEED).
#pragma once
#ifndef NE_CUDA_EMULATION
#define NE_CUDA_EMULATION 1
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

// ---- function and variable qualifiers ------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

// ---- types ---------------------------------------------------------------------------------------------------
struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorUnknown = 999,
} cudaError_t;

typedef struct CUstream_st* cudaStream_t;
#define cudaStreamDefault 0x00u
#define cudaStreamNonBlocking 0x01u
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

// What cudaFuncGetAttributes reports. sharedSizeBytes is the static __shared__ memory the kernel's blocks have declared
// so far (the emulator learns it when a block runs; 0 before the first launch).
struct cudaFuncAttributes {
    size_t sharedSizeBytes;
    size_t constSizeBytes;
    size_t localSizeBytes;
    int maxThreadsPerBlock;
    int numRegs;
    int ptxVersion;
    int binaryVersion;
    int cacheModeCA;
    int maxDynamicSharedSizeBytes;
    int preferredShmemCarveout;
};

// The fields the engine reads; a .cu file that needs another one fails to compile here, which is the signal to
// emulate it.
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    size_t sharedMemPerMultiprocessor;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int maxThreadsPerMultiProcessor;
    int major;
    int minor;
    int multiProcessorCount;
    int l2CacheSize;
};

// library_types.h
typedef enum cudaDataType_t {
    CUDA_R_16F = 2,
    CUDA_R_32F = 0,
    CUDA_R_64F = 1,
    CUDA_R_16BF = 14,
} cudaDataType;

// ---- runtime API -----------------------------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMalloc(void** pointer, size_t bytes);
cudaError_t cudaFree(void* pointer);
cudaError_t cudaMallocAsync(void** pointer, size_t bytes, cudaStream_t stream);
cudaError_t cudaFreeAsync(void* pointer, cudaStream_t stream);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = 0);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = 0);
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaFuncSetAttribute(const void* function, cudaFuncAttribute attr, int value);
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attributes, const void* function);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char* cudaGetErrorName(cudaError_t error);
const char* cudaGetErrorString(cudaError_t error);

template <class T>
inline cudaError_t cudaMalloc(T** pointer, size_t bytes) {
    return cudaMalloc(reinterpret_cast<void**>(pointer), bytes);
}

template <class T>
inline cudaError_t cudaFuncSetAttribute(T* function, cudaFuncAttribute attr, int value) {
    return cudaFuncSetAttribute(reinterpret_cast<const void*>(function), attr, value);
}

template <class T>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attributes, T* function) {
    return cudaFuncGetAttributes(attributes, reinterpret_cast<const void*>(function));
}

// ---- the emulator's interface to the device language -----------------------------------------------------------
namespace ne_emu {

// A kernel as written at its launch: for diagnostics and for per-function attributes.
struct KernelSite {
    const void* function;
    const char* name;
    const char* file;
    int line;
};

using ThreadEntry = void (*)(void* context);

// Validates a launch and runs it to completion (every block, every thread), or records the launch error that
// cudaGetLastError then returns.
void run_launch(const KernelSite& site, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                ThreadEntry entry, void* context);

void syncthreads();
void syncwarp(unsigned int mask);

enum class WarpOp : int { kShuffleIndex, kShuffleUp, kShuffleDown, kShuffleXor, kBallot, kAny, kAll, kSync };
// One warp collective: waits until every lane of mask has arrived at it, then returns this lane's result.
uint64_t warp_collective(unsigned int mask, WarpOp op, uint64_t value, int argument, int width);

// The block's dynamic shared memory, and the block's instance of one __shared__ variable (site: its address tag).
void* dynamic_shared();
void* static_shared(const void* site, size_t bytes, size_t alignment);

// The current thread's coordinates; the scheduler writes them before it resumes a thread.
extern uint3 thread_index, block_index;
extern dim3 block_dim, grid_dim;

// Reports a fault in kernel code (with the kernel, block and thread) and aborts.
[[noreturn]] void kernel_fault(const char* format, ...) __attribute__((format(printf, 1, 2)));

template <class... Params>
struct Launch {
    void (*kernel)(Params...);
    KernelSite site;
    dim3 grid, block;
    size_t shared_bytes;
    cudaStream_t stream;

    // Arguments are converted to the kernel's parameter types once, at the launch, as CUDA copies them; each
    // thread then receives its own copy.
    template <class... Args>
    void operator()(Args&&... args) const {
        static_assert(sizeof...(Args) == sizeof...(Params), "kernel launched with the wrong number of arguments");
        struct Bound {
            void (*kernel)(Params...);
            std::tuple<std::decay_t<Params>...> params;
        } bound{kernel, std::tuple<std::decay_t<Params>...>(std::forward<Args>(args)...)};
        run_launch(site, grid, block, shared_bytes, stream,
                   [](void* context) {
                       Bound& b = *static_cast<Bound*>(context);
                       std::apply(b.kernel, b.params);
                   },
                   &bound);
    }
};

// `kernel<<<grid, block, shared, stream>>>(args)` is rewritten to `::ne_emu::launch(kernel, ...)(args)`.
template <class... Params>
Launch<Params...> launch(void (*kernel)(Params...), const char* name, const char* file, int line, dim3 grid,
                         dim3 block, size_t shared_bytes = 0, cudaStream_t stream = 0) {
    return Launch<Params...>{kernel, KernelSite{reinterpret_cast<const void*>(kernel), name, file, line}, grid, block,
                             shared_bytes, stream};
}

// `extern __shared__ T name[];` is rewritten to `T* name = ::ne_emu::dynamic_shared_as<T>();`
template <class T>
T* dynamic_shared_as() {
    return static_cast<T*>(dynamic_shared());
}

// `__shared__ T name;` is rewritten to `T& name = ::ne_emu::static_shared_as<T>(&tag);` (tag: a static per site).
template <class T>
T& static_shared_as(const void* site) {
    return *static_cast<T*>(static_shared(site, sizeof(T), alignof(T)));
}

template <class T>
uint64_t to_bits(T value) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp collectives move up to 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &value, sizeof(T));
    return bits;
}

template <class T>
T from_bits(uint64_t bits) {
    T value;
    memcpy(&value, &bits, sizeof(T));
    return value;
}

}  // namespace ne_emu

#define threadIdx (::ne_emu::thread_index)
#define blockIdx (::ne_emu::block_index)
#define blockDim (::ne_emu::block_dim)
#define gridDim (::ne_emu::grid_dim)
constexpr int warpSize = 32;

// ---- device functions ----------------------------------------------------------------------------------------
inline void __syncthreads() { ::ne_emu::syncthreads(); }
inline void __syncwarp(unsigned int mask = 0xffffffffu) { ::ne_emu::syncwarp(mask); }

template <class T>
inline T __shfl_sync(unsigned int mask, T var, int src_lane, int width = 32) {
    return ::ne_emu::from_bits<T>(::ne_emu::warp_collective(mask, ::ne_emu::WarpOp::kShuffleIndex,
                                                            ::ne_emu::to_bits(var), src_lane, width));
}
template <class T>
inline T __shfl_up_sync(unsigned int mask, T var, unsigned int delta, int width = 32) {
    return ::ne_emu::from_bits<T>(::ne_emu::warp_collective(mask, ::ne_emu::WarpOp::kShuffleUp, ::ne_emu::to_bits(var),
                                                            static_cast<int>(delta), width));
}
template <class T>
inline T __shfl_down_sync(unsigned int mask, T var, unsigned int delta, int width = 32) {
    return ::ne_emu::from_bits<T>(::ne_emu::warp_collective(mask, ::ne_emu::WarpOp::kShuffleDown,
                                                            ::ne_emu::to_bits(var), static_cast<int>(delta), width));
}
template <class T>
inline T __shfl_xor_sync(unsigned int mask, T var, int lane_mask, int width = 32) {
    return ::ne_emu::from_bits<T>(::ne_emu::warp_collective(mask, ::ne_emu::WarpOp::kShuffleXor,
                                                            ::ne_emu::to_bits(var), lane_mask, width));
}
inline unsigned int __ballot_sync(unsigned int mask, int predicate) {
    return static_cast<unsigned int>(
        ::ne_emu::warp_collective(mask, ::ne_emu::WarpOp::kBallot, predicate != 0 ? 1u : 0u, 0, 32));
}
inline int __any_sync(unsigned int mask, int predicate) {
    return static_cast<int>(::ne_emu::warp_collective(mask, ::ne_emu::WarpOp::kAny, predicate != 0 ? 1u : 0u, 0, 32));
}
inline int __all_sync(unsigned int mask, int predicate) {
    return static_cast<int>(::ne_emu::warp_collective(mask, ::ne_emu::WarpOp::kAll, predicate != 0 ? 1u : 0u, 0, 32));
}

// Atomics: the threads of a launch run one at a time on one host thread, so a read-modify-write is atomic. The
// order in which threads reach an atomic follows the schedule, so an order-dependent result (a float sum built by
// atomics) differs between schedules.
#define NE_EMU_ATOMIC(name, expression)                 \
    template <class T, class U>                         \
    inline T name(T* address, U operand) {              \
        const T old = *address;                         \
        const T value = static_cast<T>(operand);        \
        *address = (expression);                        \
        return old;                                     \
    }
NE_EMU_ATOMIC(atomicAdd, old + value)
NE_EMU_ATOMIC(atomicSub, old - value)
NE_EMU_ATOMIC(atomicExch, value)
NE_EMU_ATOMIC(atomicMin, value < old ? value : old)
NE_EMU_ATOMIC(atomicMax, value > old ? value : old)
NE_EMU_ATOMIC(atomicAnd, old & value)
NE_EMU_ATOMIC(atomicOr, old | value)
NE_EMU_ATOMIC(atomicXor, old ^ value)
#undef NE_EMU_ATOMIC

template <class T>
inline T atomicCAS(T* address, T compare, T value) {
    const T old = *address;
    if (old == compare) *address = value;
    return old;
}

inline unsigned int __float_as_uint(float v) { return ::ne_emu::from_bits<unsigned int>(::ne_emu::to_bits(v)); }
inline int __float_as_int(float v) { return ::ne_emu::from_bits<int>(::ne_emu::to_bits(v)); }
inline float __uint_as_float(unsigned int v) { return ::ne_emu::from_bits<float>(::ne_emu::to_bits(v)); }
inline float __int_as_float(int v) { return ::ne_emu::from_bits<float>(::ne_emu::to_bits(v)); }
inline long long __double_as_longlong(double v) { return ::ne_emu::from_bits<long long>(::ne_emu::to_bits(v)); }
inline double __longlong_as_double(long long v) { return ::ne_emu::from_bits<double>(::ne_emu::to_bits(v)); }
inline int __popc(unsigned int v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned int>(v)); }
inline int __ffs(int v) { return __builtin_ffs(v); }

// CUDA's min and max for arithmetic types, in the global namespace.
#define NE_EMU_MIN_MAX(T)                                  \
    inline T min(T a, T b) { return b < a ? b : a; }       \
    inline T max(T a, T b) { return a < b ? b : a; }
NE_EMU_MIN_MAX(int)
NE_EMU_MIN_MAX(unsigned int)
NE_EMU_MIN_MAX(long)
NE_EMU_MIN_MAX(unsigned long)
NE_EMU_MIN_MAX(long long)
NE_EMU_MIN_MAX(unsigned long long)
#undef NE_EMU_MIN_MAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
