// Emulated cub::DeviceScan::ExclusiveSum for .cu files compiled by the emulated tier: CUB's two-phase protocol and
// an exclusive prefix sum in stream order (in place allowed, as in CUB). The scratch is overwritten by each scan,
// and every pointer must lie in device memory.
#pragma once
#include <stddef.h>

#include <cuda_runtime.h>
#include <iterator>
#include <vector>

#include "ne_emu/host.h"

namespace cub {

struct DeviceScan {
    template <typename InputT, typename OutputT, typename NumItemsT>
    static cudaError_t ExclusiveSum(void* d_temp_storage, size_t& temp_storage_bytes, const InputT* d_in,
                                    OutputT* d_out, NumItemsT num_items, cudaStream_t stream = 0,
                                    bool debug_synchronous = false) {
        (void)debug_synchronous;
        const char* call = "cub::DeviceScan::ExclusiveSum";
        const size_t n = num_items > 0 ? static_cast<size_t>(num_items) : 0;
        const size_t needed = (n / 128 + 1) * 16 + 256;
        if (d_temp_storage == nullptr) {
            temp_storage_bytes = needed;
            return cudaSuccess;
        }
        ::ne_emu::DeviceLock lock;
        if (temp_storage_bytes < needed) {
            ::ne_emu::report("%s: temp_storage_bytes %zu is less than the %zu the size query returned", call,
                             temp_storage_bytes, needed);
            return cudaErrorInvalidValue;
        }
        if (!::ne_emu::check_stream(call, stream) ||
            !::ne_emu::check_device_range(call, "d_temp_storage", d_temp_storage, temp_storage_bytes))
            return cudaErrorInvalidValue;
        if (n == 0) return cudaSuccess;
        if (!::ne_emu::check_device_range(call, "d_in", d_in, n * sizeof(InputT)) ||
            !::ne_emu::check_device_range(call, "d_out", d_out, n * sizeof(OutputT)))
            return cudaErrorInvalidValue;
        ::ne_emu::DeviceAccess access(call);
        std::vector<OutputT> out(n);
        InputT running = InputT();
        for (size_t i = 0; i < n; ++i) {
            out[i] = static_cast<OutputT>(running);
            running = running + d_in[i];
        }
        ::ne_emu::poison(d_temp_storage, temp_storage_bytes);
        for (size_t i = 0; i < n; ++i) d_out[i] = out[i];
        return cudaSuccess;
    }
};

}  // namespace cub
