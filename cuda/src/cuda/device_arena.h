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
};

using DeviceArena = Arena<DeviceAllocator>;

}  // namespace ne::cuda
