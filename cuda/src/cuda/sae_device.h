// What the SAE's CUDA files (sae_cuda.cu, sae_pursuit_cuda.cu) share: the block size their kernels launch with, the
// grid of a grid-stride loop, cuBLAS's status as an engine error, and the deterministic block and warp sums.
#pragma once
#include <cublas_v2.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "core/error.h"

namespace ne::cuda {

constexpr int kThreads = 256;  // threads per block of every SAE kernel

inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS)
        fail(status == CUBLAS_STATUS_ALLOC_FAILED ? NE_ERR_OUT_OF_MEMORY : NE_ERR_CUDA,
             std::string(call) + " failed: " + cublasGetStatusName(status) + ": " + cublasGetStatusString(status) +
                 " (" + file + ":" + std::to_string(line) + ")");
}
#define NE_CUBLAS_CHECK(call) ::ne::cuda::check_cublas((call), #call, __FILE__, __LINE__)

// Blocks for a grid-stride loop over n items, kThreads per block.
inline unsigned grid_for(int64_t n) {
    const int64_t blocks = (n + kThreads - 1) / kThreads;
    return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t(1) << 20)));
}

// Sum over the block's threads in a fixed tree (deterministic). shared: [kThreads]. Leaves the block synchronised.
template <typename V>
__device__ V block_sum(V value, V* shared) {
    shared[threadIdx.x] = value;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    const V total = shared[0];
    __syncthreads();
    return total;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

}  // namespace ne::cuda
