// The CUDA devices, as the CUDA plugin (libnativeengine_cuda) reports them. The core needs only this much of the
// plugin: whether it loads and how many devices it sees, to resolve a context's backend. The models' entries live
// in models/cuda_table.h.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "nativeengine.h"

// Both tables of the plugin carry this version; a plugin built from other sources is refused.
#define NE_CUDA_PLUGIN_ABI 6
#define NE_CUDA_PLUGIN_FILE "libnativeengine_cuda.so"
#define NE_CUDA_DEVICES_ENTRY "ne_cuda_devices"

extern "C" {

// Plain C across the plugin boundary: every entry returns an ne_status and writes its message to err on failure.
typedef struct ne_cuda_device_table {
    int32_t abi;  // NE_CUDA_PLUGIN_ABI
    int32_t (*device_count)(int32_t* count, char* err, size_t err_size);
    int32_t (*device_info)(int32_t device, ne_device_info* info, char* err, size_t err_size);
} ne_cuda_device_table;

typedef const ne_cuda_device_table* (*ne_cuda_devices_fn)(void);
}

namespace ne {

struct CudaDevices {
    static bool found();     // the plugin file exists next to libnativeengine
    static bool loaded();    // it loaded and its tables match this library (tried only when the driver has a device)
    static int32_t count();  // devices the CUDA runtime reports (0 when not loaded)
    static const char* unavailable_reason();  // "" when loaded() and count() > 0
    static ne_device_info info(int32_t device);  // throws ne::Error
};

// Throws ne::Error with the plugin's message when status != NE_OK.
void check_plugin(int32_t status, const char* err);

}  // namespace ne
