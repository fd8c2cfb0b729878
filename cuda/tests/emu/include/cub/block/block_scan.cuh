// Emulated cub::BlockScan (sums): the collective the engine's kernels use, for .cu files compiled by the emulated
// tier. Like CUB's, it synchronises the block inside and leaves reusing TempStorage to the caller: a later scan on
// the same storage needs a __syncthreads() first. Each thread reads its result from the slot its successor writes
// at the next scan, so a missing barrier corrupts results under the reverse and random schedules.
#pragma once
#include <cuda_runtime.h>

namespace cub {

enum BlockScanAlgorithm { BLOCK_SCAN_RAKING, BLOCK_SCAN_RAKING_MEMOIZE, BLOCK_SCAN_WARP_SCANS };

template <typename T, int BLOCK_DIM_X, BlockScanAlgorithm ALGORITHM = BLOCK_SCAN_RAKING, int BLOCK_DIM_Y = 1,
          int BLOCK_DIM_Z = 1, int LEGACY_PTX_ARCH = 0>
class BlockScan {
public:
    static constexpr int BLOCK_THREADS = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;

    struct TempStorage {
        T slot[BLOCK_THREADS];
        T total;
    };

    __device__ explicit BlockScan(TempStorage& storage) : storage_(storage) {
        if (blockDim.x != BLOCK_DIM_X || blockDim.y != BLOCK_DIM_Y || blockDim.z != BLOCK_DIM_Z)
            ::ne_emu::kernel_fault("cub::BlockScan for %d x %d x %d threads used in a block of %u x %u x %u",
                                   BLOCK_DIM_X, BLOCK_DIM_Y, BLOCK_DIM_Z, blockDim.x, blockDim.y, blockDim.z);
    }

    __device__ void ExclusiveSum(T input, T& output) {
        T aggregate;
        ExclusiveSum(input, output, aggregate);
    }

    __device__ void ExclusiveSum(T input, T& output, T& block_aggregate) {
        const int t = linear_thread();
        storage_.slot[t] = input;
        __syncthreads();
        if (t == 0) {
            T inputs[BLOCK_THREADS];
            for (int i = 0; i < BLOCK_THREADS; ++i) inputs[i] = storage_.slot[i];
            T running = T();
            for (int i = 0; i < BLOCK_THREADS; ++i) {
                storage_.slot[(i + 1) % BLOCK_THREADS] = running;
                running = running + inputs[i];
            }
            storage_.total = running;
        }
        __syncthreads();
        output = storage_.slot[(t + 1) % BLOCK_THREADS];
        block_aggregate = storage_.total;
    }

    __device__ void InclusiveSum(T input, T& output) {
        T aggregate;
        InclusiveSum(input, output, aggregate);
    }

    __device__ void InclusiveSum(T input, T& output, T& block_aggregate) {
        T exclusive;
        ExclusiveSum(input, exclusive, block_aggregate);
        output = exclusive + input;
    }

private:
    static int linear_thread() {
        return static_cast<int>(threadIdx.x + BLOCK_DIM_X * (threadIdx.y + BLOCK_DIM_Y * threadIdx.z));
    }

    TempStorage& storage_;
};

}  // namespace cub
