// Shared between the emulator's parts (runtime.cpp, scheduler.cpp, cublas.cpp); not seen by emulated code.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

// NE_EMU_ASAN: the emulated code runs under AddressSanitizer. The build defines it for the emulator's own sources,
// which are not instrumented themselves (the scheduler's hot paths would pay for it) but talk to its runtime.
#ifndef NE_EMU_ASAN
#  if defined(__SANITIZE_ADDRESS__)
#    define NE_EMU_ASAN 1
#  elif defined(__has_feature)
#    if __has_feature(address_sanitizer)
#      define NE_EMU_ASAN 1
#    endif
#  endif
#endif
#ifndef NE_EMU_ASAN
#  define NE_EMU_ASAN 0
#endif

struct cublasContext;

namespace ne_emu {

// The device's limits: those of compute capability 9.0 (H100), so kernels choose the tiles they would there.
constexpr int kSharedPerBlock = 48 * 1024;    // default limit of dynamic shared memory, and of static
constexpr int kSharedOptin = 227 * 1024;      // cudaDevAttrMaxSharedMemoryPerBlockOptin
constexpr int kMaxThreadsPerBlock = 1024;

// The order in which the threads of a block (and the blocks of a grid) run between barriers: NE_EMU_SCHEDULE =
// forward (the default) | reverse | random[:SEED]. Read at every launch, so one process may compare schedules.
struct Schedule {
    enum class Order { kForward, kReverse, kRandom } order = Order::kForward;
    uint64_t seed = 0;
};
Schedule current_schedule();
const char* schedule_name(const Schedule& schedule, char* buffer, size_t size);

inline uint64_t mix64(uint64_t x) {  // splitmix64's finaliser
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Records error as the calling thread's last error (unless success) and returns it.
cudaError_t record(cudaError_t error);

// The dynamic shared memory limit of a kernel (cudaFuncAttributeMaxDynamicSharedMemorySize), and the static shared
// memory its blocks have declared (the most any block has).
int dynamic_shared_limit(const void* function);
size_t static_shared_bytes(const void* function);
void note_static_shared_bytes(const void* function, size_t bytes);

// For fault reports: the kernel, block and thread running now (empty when none), and whether an address lies in
// a thread's stack guard.
void describe_running_kernel(char* buffer, size_t size);
bool describe_stack_guard(const void* address, char* buffer, size_t size);

// cuBLAS handles are registered with the runtime, so that stale handles and leaks are found as streams' are.
bool register_blas(cublasContext* handle, bool add);
bool live_blas(cublasContext* handle);

// Prints the current call stack (ASan's symbolised one when built with it).
void print_stack();

}  // namespace ne_emu
