// Error handling inside the CUDA plugin: every runtime call and launch is checked; failures become an ne_status
// plus a message naming the call (never an abort). NE_DEBUG_SYNC=1 synchronises after each launch so an
// asynchronous fault is pinned to the kernel that caused it.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "core/error.h"

namespace ne::cuda {

inline void check(cudaError_t status, const char* call, const char* file, int line) {
    if (status != cudaSuccess)
        fail(status == cudaErrorMemoryAllocation ? NE_ERR_OUT_OF_MEMORY : NE_ERR_CUDA,
             std::string(call) + " failed: " + cudaGetErrorName(status) + ": " + cudaGetErrorString(status) + " (" +
                 file + ":" + std::to_string(line) + ")");
}

inline bool debug_sync() {
    static const bool enabled = [] {
        const char* v = std::getenv("NE_DEBUG_SYNC");
        return v != nullptr && v[0] == '1';
    }();
    return enabled;
}

// Runs body, converting any exception to a status and copying its message into err.
template <class Body>
int32_t plugin_call(char* err, size_t err_size, Body&& body) noexcept {
    auto report = [&](const char* message) {
        if (err != nullptr && err_size > 0) std::snprintf(err, err_size, "%s", message);
    };
    try {
        body();
        return NE_OK;
    } catch (const Error& e) {
        report(e.what());
        return e.status();
    } catch (const std::bad_alloc&) {
        report("out of host memory");
        return NE_ERR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        report(e.what());
        return NE_ERR_INTERNAL;
    } catch (...) {
        report("unknown exception in the CUDA backend");
        return NE_ERR_INTERNAL;
    }
}

// Lets `kernel` take all the dynamic shared memory the current device offers (the opt-in maximum less its static
// shared memory). The attribute belongs to the kernel and the device, not to a model: set per model, two models of
// different sizes launching from two host threads could lower it between the other's set and launch. Setting it to
// the one maximum is idempotent, so concurrent calls agree.
template <typename Kernel>
void allow_max_dynamic_shared(Kernel kernel, int device) {
    int optin = 0;
    check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
          "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)", __FILE__, __LINE__);
    cudaFuncAttributes attributes{};
    check(cudaFuncGetAttributes(&attributes, kernel), "cudaFuncGetAttributes", __FILE__, __LINE__);
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               optin - static_cast<int>(attributes.sharedSizeBytes)),
          "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)", __FILE__, __LINE__);
}

}  // namespace ne::cuda

#define NE_CUDA_CHECK(call) ::ne::cuda::check((call), #call, __FILE__, __LINE__)
#define NE_CUDA_CHECK_LAUNCH(name)                                                                   \
    do {                                                                                             \
        ::ne::cuda::check(cudaGetLastError(), "launch of " name, __FILE__, __LINE__);                \
        if (::ne::cuda::debug_sync())                                                                \
            ::ne::cuda::check(cudaDeviceSynchronize(), "kernel " name " (NE_DEBUG_SYNC)", __FILE__, __LINE__); \
    } while (0)
