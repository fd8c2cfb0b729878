// The CUDA devices, as the CUDA plugin (libnativeengine_cuda) reports them. The core needs only this much of the
// plugin: whether it loads and how many devices it sees, to resolve a context's backend. The models' entries live
// in models/cuda_table.h.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "nativeengine.h"

// Both tables of the plugin carry this version; a plugin built from other sources is refused.
#define NE_CUDA_PLUGIN_ABI 10
#define NE_NCCL_UNIQUE_ID_BYTES 128
#define NE_CUDA_PLUGIN_FILE "libnativeengine_cuda.so"
#define NE_CUDA_DEVICES_ENTRY "ne_cuda_devices"

extern "C" {

typedef struct ne_cuda_comm ne_cuda_comm;

// Plain C across the plugin boundary: every entry returns an ne_status and writes its message to err on failure.
typedef struct ne_cuda_device_table {
    int32_t abi;  // NE_CUDA_PLUGIN_ABI
    int32_t (*device_count)(int32_t* count, char* err, size_t err_size);
    int32_t (*device_info)(int32_t device, ne_device_info* info, char* err, size_t err_size);

    // NCCL (cuda/nccl_comm.cu), loaded on first use: its version (NCCL_VERSION_CODE), or why it is unavailable.
    int32_t (*nccl_version)(int32_t* version, char* err, size_t err_size);
    // id: NE_NCCL_UNIQUE_ID_BYTES bytes, made on one rank and given to every rank's nccl_create.
    int32_t (*nccl_unique_id)(void* id, char* err, size_t err_size);
    int32_t (*nccl_create)(int32_t device, int32_t rank, int32_t size, const void* id, ne_cuda_comm** out, char* err,
                           size_t err_size);
    void (*nccl_destroy)(ne_cuda_comm* comm);
    // Collectives of core/comm.h on device buffers; they return when the result is in place.
    int32_t (*nccl_allreduce)(ne_cuda_comm* comm, void* buffer, int64_t count, int32_t type, int32_t op, char* err,
                              size_t err_size);
    int32_t (*nccl_allgather)(ne_cuda_comm* comm, const void* send, int64_t bytes, void* receive, char* err,
                              size_t err_size);
    int32_t (*nccl_broadcast)(ne_cuda_comm* comm, void* buffer, int64_t bytes, int32_t root, char* err,
                              size_t err_size);
    int32_t (*nccl_allreduce_best)(ne_cuda_comm* comm, void* entries, int64_t rows, int64_t k, int32_t entry_bytes,
                                   char* err, size_t err_size);
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
    static const ne_cuda_device_table& table();  // throws ne::Error unless loaded()
};

// Throws ne::Error with the plugin's message when status != NE_OK.
void check_plugin(int32_t status, const char* err);

}  // namespace ne
