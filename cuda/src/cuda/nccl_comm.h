// NCCL collectives of the CUDA plugin: entries of its device table (core/cuda_devices.h), which define them.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/cuda_devices.h"

namespace ne::cuda {

int32_t nccl_version(int32_t* version, char* err, size_t err_size);
int32_t nccl_unique_id(void* id, char* err, size_t err_size);
int32_t nccl_create(int32_t device, int32_t rank, int32_t size, const void* id, ne_cuda_comm** out, char* err,
                    size_t err_size);
void nccl_destroy(ne_cuda_comm* comm);
int32_t nccl_allreduce(ne_cuda_comm* comm, void* buffer, int64_t count, int32_t type, int32_t op, char* err,
                       size_t err_size);
int32_t nccl_allgather(ne_cuda_comm* comm, const void* send, int64_t bytes, void* receive, char* err, size_t err_size);
int32_t nccl_broadcast(ne_cuda_comm* comm, void* buffer, int64_t bytes, int32_t root, char* err, size_t err_size);
int32_t nccl_allreduce_best(ne_cuda_comm* comm, void* entries, int64_t rows, int64_t k, int32_t entry_bytes, char* err,
                            size_t err_size);

}  // namespace ne::cuda
