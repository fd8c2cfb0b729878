// The emulator's own checks, each shown to fire on a deliberately broken kernel or call, so the emulated tier cannot
// pass by checking nothing. Faults end the process, so each such case runs in a child process (this program with
// the case's name) and must fail with its message; the cases that return an error or a result run here.
// Compiled like the engine's .cu files (rewritten by cu_to_cpp, under the sanitizers) and linked with the emulator.
// Last, the engine's own arena guards (NE_ARENA_GUARD, core/arena.h) catch what the emulator cannot: an overrun from
// one slice of an arena into the next, inside a single allocation.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cub/block/block_scan.cuh>
#include <string>

#include "cuda/device_arena.h"

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
    std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
    if (!ok) ++failures;
}

__global__ void write_past(float* p, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) p[i] = 1.0f;  // one element too many
}

__global__ void read_one(const float* p, float* out) { *out = p[0]; }

__global__ void return_before_barrier(float* out) {
    __shared__ float s[64];
    if (threadIdx.x >= 32) return;  // half the block never reaches the barrier
    s[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = s[63 - threadIdx.x];
}

__global__ void masks_disagree(float* out) {
    const unsigned mask = threadIdx.x % 2 == 0 ? 0xffffffffu : 0x0000ffffu;
    out[threadIdx.x] = __shfl_xor_sync(mask, 1.0f, 1);
}

// Thread 0 sums what every thread stored, without the barrier in between.
__global__ void sum_without_barrier(const float* x, float* out) {
    __shared__ float s[256];
    s[threadIdx.x] = x[threadIdx.x];
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int j = 0; j < 256; ++j) total += s[j];
        *out = total;
    }
}

// Two scans on one TempStorage without the barrier CUB requires between them.
__global__ void scans_without_barrier(int* out) {
    typedef cub::BlockScan<int, 128> Scan;
    __shared__ typename Scan::TempStorage storage;
    int first = 0, second = 0;
    Scan(storage).ExclusiveSum(1, first);
    Scan(storage).ExclusiveSum(2, second);
    out[threadIdx.x] = first + second;
}

__global__ void warp_sum(const float* x, float* out) {
    float v = x[threadIdx.x];
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    out[threadIdx.x] = v;
}

__global__ void large_shared(float* out) {
    extern __shared__ float dynamic[];
    dynamic[threadIdx.x] = 1.0f;
    out[threadIdx.x] = dynamic[threadIdx.x];
}

template <typename T>
T* device(size_t n) {
    T* p = nullptr;
    if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) std::abort();
    return p;
}

// A result computed under one schedule.
float sum_under(const char* schedule) {
    setenv("NE_EMU_SCHEDULE", schedule, 1);
    float host[256], result = 0.0f;
    for (int i = 0; i < 256; ++i) host[i] = static_cast<float>(i);
    float* x = device<float>(256);
    float* out = device<float>(1);
    cudaMemcpy(x, host, sizeof host, cudaMemcpyHostToDevice);
    sum_without_barrier<<<1, 256>>>(x, out);
    cudaMemcpy(&result, out, sizeof result, cudaMemcpyDeviceToHost);
    cudaFree(x);
    cudaFree(out);
    return result;
}

int scans_under(const char* schedule) {
    setenv("NE_EMU_SCHEDULE", schedule, 1);
    int host[128];
    int* out = device<int>(128);
    scans_without_barrier<<<1, 128>>>(out);
    cudaMemcpy(host, out, sizeof host, cudaMemcpyDeviceToHost);
    cudaFree(out);
    int wrong = 0;
    for (int t = 0; t < 128; ++t) wrong += host[t] != t + 2 * t;
    return wrong;
}

// Two slices of 128 floats in one arena, and a kernel writing one element past the first: inside the one
// allocation, so none of the emulator's checks fires. Returns what the arena's guards say ("" when they hold or are
// off) and, through first_of_next, the value the next slice's first element holds afterwards.
std::string arena_overrun(bool guarded, float& first_of_next) {
    if (guarded) setenv("NE_ARENA_GUARD", "1", 1);
    else unsetenv("NE_ARENA_GUARD");
    ne::cuda::DeviceArena arena;
    float *a = nullptr, *b = nullptr;
    arena.allocate([&](ne::ArenaCarver& c) {
        a = c.take<float>(128);
        b = c.take<float>(128);
    });
    cudaMemset(arena.data(), 0, arena.bytes());
    arena.write_guards();
    write_past<<<1, 256>>>(a, 128);
    cudaDeviceSynchronize();
    cudaMemcpy(&first_of_next, b, sizeof(float), cudaMemcpyDeviceToHost);
    std::string message;
    try {
        ne::cuda::verify_guards(nullptr, arena);
    } catch (const ne::Error& e) {
        message = e.what();
        arena.write_guards();  // repaired, so that releasing the arena passes
    }
    unsetenv("NE_ARENA_GUARD");
    return message;
}

// The cases that end the process; main runs each in a child.
int run_case(const std::string& name) {
    if (name == "arena-release") {
        // An arena released with a broken guard: its destructor cannot throw, so it aborts with the message.
        setenv("NE_ARENA_GUARD", "1", 1);
        ne::cuda::DeviceArena arena;
        float* a = nullptr;
        arena.allocate([&](ne::ArenaCarver& c) {
            a = c.take<float>(128);
            c.take<float>(128);
        });
        write_past<<<1, 256>>>(a, 128);
        cudaDeviceSynchronize();
        return 0;
    }
    float* p = device<float>(100);
    float* out = device<float>(256);
    if (name == "overrun") {
        write_past<<<1, 128>>>(p, 100);
    } else if (name == "host-dereference") {
        std::printf("%f\n", p[3]);
    } else if (name == "use-after-free") {
        cudaFree(p);
        read_one<<<1, 1>>>(p, out);
    } else if (name == "divergent-barrier") {
        return_before_barrier<<<1, 64>>>(out);
    } else if (name == "warp-masks") {
        masks_disagree<<<1, 32>>>(out);
    } else if (name == "leak") {
        setenv("NE_EMU_LEAKS", "fail", 1);
        return 0;  // p and out stay allocated
    }
    cudaDeviceSynchronize();
    return 0;
}

// Runs this program on one case; true when it failed with a message containing one of the expected texts.
bool child_fails(const char* self, const char* name, const char* expected, const char* alternative = nullptr) {
    const std::string command = std::string("'") + self + "' " + name + " 2>&1";
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) return false;
    std::string output;
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
    const int status = pclose(pipe);
    const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    const bool said = output.find(expected) != std::string::npos ||
                      (alternative != nullptr && output.find(alternative) != std::string::npos);
    if (!failed || !said) std::printf("--- %s (exit %d):\n%s---\n", name, status, output.c_str());
    return failed && said;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1) return run_case(argv[1]);
    const char* self = argv[0];

    expect(child_fails(self, "overrun", "AddressSanitizer", "out-of-bounds write"), "a write one past an allocation");
    expect(child_fails(self, "host-dereference", "host code accessed device memory"),
           "host code reading device memory");
    expect(child_fails(self, "use-after-free", "freed device memory", "AddressSanitizer"),
           "a kernel reading freed device memory");
    expect(child_fails(self, "divergent-barrier", "divergent __syncthreads()"), "a barrier half the block skips");
    expect(child_fails(self, "warp-masks", "disagree at a warp collective"), "lanes with different masks");
    expect(child_fails(self, "leak", "were never released"), "device memory never freed (NE_EMU_LEAKS=fail)");

    // A missing barrier: the result depends on the schedule (and reads poison under forward).
    const float forward = sum_under("forward"), reverse = sum_under("reverse");
    expect(forward != reverse, "a missing __syncthreads gives different results under forward and reverse");
    expect(reverse == 255.0f * 256.0f / 2.0f, "reverse runs thread 0 last, after every store");
    expect(scans_under("reverse") > 0, "reusing BlockScan storage without a barrier corrupts results (reverse)");

    setenv("NE_EMU_SCHEDULE", "random:3", 1);
    {
        float host[32], sums[32];
        for (int i = 0; i < 32; ++i) host[i] = static_cast<float>(i);
        float* x = device<float>(32);
        float* out = device<float>(32);
        cudaMemcpy(x, host, sizeof host, cudaMemcpyHostToDevice);
        warp_sum<<<1, 32>>>(x, out);
        cudaMemcpy(sums, out, sizeof sums, cudaMemcpyDeviceToHost);
        bool all = true;
        for (float s : sums) all = all && s == 496.0f;
        expect(all, "a butterfly of __shfl_xor_sync gives every lane the warp's sum");

        // Copies must match their kind; launches their limits.
        expect(cudaMemcpy(x, out, 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
               "cudaMemcpyHostToDevice from device memory is refused");
        expect(cudaMemcpy(host, x, sizeof host + 4096, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
               "a copy past the end of an allocation is refused");
        cudaGetLastError();
        large_shared<<<1, 32, 64 * 1024>>>(out);
        expect(cudaGetLastError() == cudaErrorInvalidValue, "64 KiB of dynamic shared memory without the attribute fails");
        expect(cudaFuncSetAttribute(large_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) == cudaSuccess,
               "the attribute raises the limit");
        large_shared<<<1, 32, 64 * 1024>>>(out);
        expect(cudaGetLastError() == cudaSuccess, "then the launch runs");
        large_shared<<<1, 2048>>>(out);
        expect(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block fail to launch");
        cudaDeviceProp prop{};
        cudaGetDeviceProperties(&prop, 0);
        expect(std::strstr(prop.name, "emulated") != nullptr, "the device says it is emulated");
        cudaFree(x);
        cudaFree(out);
    }
    // The arena's guards, where the emulator's own checks cannot see.
    {
        float next = 0.0f;
        const std::string unguarded = arena_overrun(false, next);
        expect(unguarded.empty() && next == 1.0f,
               "without NE_ARENA_GUARD, a write one past a slice silently lands in the next slice of the arena");
        const std::string guarded = arena_overrun(true, next);
        expect(guarded.find("slice 0 of 2 (offset 0, 512 bytes") != std::string::npos && next == 0.0f,
               "with NE_ARENA_GUARD=1, it lands in the guard and verify_guards names the slice");
        if (guarded.empty()) std::printf("    (verify_guards said nothing)\n");
        expect(child_fails(self, "arena-release", "arena guard broken (NE_ARENA_GUARD)"),
               "an arena released with a broken guard aborts with the message");
    }
    std::printf("emulator self-test: %s\n", failures == 0 ? "every check fired" : "some checks did not fire");
    return failures == 0 ? 0 : 1;
}
