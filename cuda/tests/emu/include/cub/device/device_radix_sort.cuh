// Emulated cub::DeviceRadixSort::SortPairs for .cu files compiled by the emulated tier: CUB's two-phase protocol
// (a null d_temp_storage asks for the size; the second call needs at least that much device memory), a stable
// ascending sort on bits [begin_bit, end_bit) of the keys, run in stream order. The scratch is overwritten by each
// sort, as CUB's is, and every pointer must lie in device memory.
#pragma once
#include <stddef.h>

#include <algorithm>
#include <cuda_runtime.h>
#include <numeric>
#include <type_traits>
#include <vector>

#include "ne_emu/host.h"

namespace cub {

struct DeviceRadixSort {
    template <typename KeyT, typename ValueT, typename NumItemsT>
    static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                                 KeyT* d_keys_out, const ValueT* d_values_in, ValueT* d_values_out,
                                 NumItemsT num_items, int begin_bit = 0, int end_bit = sizeof(KeyT) * 8,
                                 cudaStream_t stream = 0, bool debug_synchronous = false) {
        static_assert(std::is_unsigned<KeyT>::value, "the emulated radix sort takes unsigned keys");
        (void)debug_synchronous;
        const char* call = "cub::DeviceRadixSort::SortPairs";
        const size_t n = num_items > 0 ? static_cast<size_t>(num_items) : 0;
        const size_t needed = n * (sizeof(KeyT) + sizeof(ValueT)) + 256;
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
        if (begin_bit < 0 || end_bit > static_cast<int>(sizeof(KeyT) * 8) || begin_bit >= end_bit) {
            ::ne_emu::report("%s: bits [%d, %d) are not a range of the key's bits", call, begin_bit, end_bit);
            return cudaErrorInvalidValue;
        }
        if (!::ne_emu::check_stream(call, stream) ||
            !::ne_emu::check_device_range(call, "d_temp_storage", d_temp_storage, temp_storage_bytes))
            return cudaErrorInvalidValue;
        if (n == 0) return cudaSuccess;
        if (!::ne_emu::check_device_range(call, "d_keys_in", d_keys_in, n * sizeof(KeyT)) ||
            !::ne_emu::check_device_range(call, "d_keys_out", d_keys_out, n * sizeof(KeyT)) ||
            !::ne_emu::check_device_range(call, "d_values_in", d_values_in, n * sizeof(ValueT)) ||
            !::ne_emu::check_device_range(call, "d_values_out", d_values_out, n * sizeof(ValueT)))
            return cudaErrorInvalidValue;
        auto overlap = [n](const void* a, size_t a_size, const void* b, size_t b_size) {
            const char *pa = static_cast<const char*>(a), *pb = static_cast<const char*>(b);
            return n > 0 && pa < pb + n * b_size && pb < pa + n * a_size;
        };
        if (overlap(d_keys_in, sizeof(KeyT), d_keys_out, sizeof(KeyT)) ||
            overlap(d_values_in, sizeof(ValueT), d_values_out, sizeof(ValueT))) {
            ::ne_emu::report("%s: input and output overlap (this overload needs separate buffers)", call);
            return cudaErrorInvalidValue;
        }
        ::ne_emu::DeviceAccess access(call);
        const int bits = end_bit - begin_bit;
        const KeyT mask = bits >= static_cast<int>(sizeof(KeyT) * 8) ? static_cast<KeyT>(~KeyT(0))
                                                                     : static_cast<KeyT>((KeyT(1) << bits) - 1);
        std::vector<size_t> order(n);
        std::iota(order.begin(), order.end(), size_t(0));
        std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
            return ((d_keys_in[a] >> begin_bit) & mask) < ((d_keys_in[b] >> begin_bit) & mask);
        });
        std::vector<KeyT> keys(n);
        std::vector<ValueT> values(n);
        for (size_t i = 0; i < n; ++i) {
            keys[i] = d_keys_in[order[i]];
            values[i] = d_values_in[order[i]];
        }
        ::ne_emu::poison(d_temp_storage, temp_storage_bytes);
        std::copy(keys.begin(), keys.end(), d_keys_out);
        std::copy(values.begin(), values.end(), d_values_out);
        return cudaSuccess;
    }
};

}  // namespace cub
