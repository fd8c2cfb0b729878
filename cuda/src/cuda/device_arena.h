// The core's arena (core/arena.h) on device memory: one cudaMalloc per arena, sliced into a model's tensors.
#pragma once
#include <cuda_runtime.h>

#include "core/arena.h"
#include "cuda/cuda_check.h"

namespace ne::cuda {

struct DeviceAllocator {
    static void* allocate(size_t bytes) {
        void* p = nullptr;
        NE_CUDA_CHECK(cudaMalloc(&p, bytes));
        return p;
    }
    static void release(void* p) {
        if (p != nullptr) cudaFree(p);
    }
    // The guards' copies (NE_ARENA_GUARD only), on the legacy default stream: a copy from pageable host memory may
    // return before it lands, so wait for it; callers have synchronised their own stream before a read.
    static void write(void* device, const void* host, size_t bytes) {
        NE_CUDA_CHECK(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice));
        NE_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    }
    static void read(void* host, const void* device, size_t bytes) {
        NE_CUDA_CHECK(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost));
    }
};

using DeviceArena = Arena<DeviceAllocator>;

// Synchronises stream, then checks the guards of every arena (core/arena.h; nothing without NE_ARENA_GUARD): after
// each model call that launches kernels.
template <class... Arenas>
void verify_guards(cudaStream_t stream, const Arenas&... arenas) {
    if (!(arenas.guarded() || ...)) return;
    NE_CUDA_CHECK(cudaStreamSynchronize(stream));
    (arenas.verify_guards(), ...);
}

}  // namespace ne::cuda
