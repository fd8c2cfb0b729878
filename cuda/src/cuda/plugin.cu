// The table libnativeengine_cuda exports to the core (see core/cuda_plugin.h).
#include <cstring>

#include "core/cuda_plugin.h"
#include "cuda/cuda_check.h"
#include "cuda/moe_cuda.h"
#include "cuda/sae_cuda.h"
#include "cuda/toy_cuda.h"

namespace {

int32_t device_count(int32_t* count, char* err, size_t err_size) {
    return ne::cuda::plugin_call(err, err_size, [&] {
        int n = 0;
        const cudaError_t status = cudaGetDeviceCount(&n);
        if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver) {
            cudaGetLastError();  // clear the sticky-free error so later calls start clean
            *count = 0;
            ne::fail(NE_ERR_BACKEND_UNAVAILABLE, std::string(cudaGetErrorName(status)) + ": " +
                                                     cudaGetErrorString(status));
        }
        NE_CUDA_CHECK(status);
        *count = n;
    });
}

int32_t device_info(int32_t device, ne_device_info* info, char* err, size_t err_size) {
    return ne::cuda::plugin_call(err, err_size, [&] {
        cudaDeviceProp prop{};
        NE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
        NE_CUDA_CHECK(cudaSetDevice(device));
        size_t free_bytes = 0, total_bytes = 0;
        NE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        *info = ne_device_info{};
        info->backend = NE_BACKEND_CUDA;
        info->device_index = device;
        info->total_memory = static_cast<int64_t>(total_bytes);
        info->free_memory = static_cast<int64_t>(free_bytes);
        info->compute_major = prop.major;
        info->compute_minor = prop.minor;
        info->multiprocessors = prop.multiProcessorCount;
        std::strncpy(info->name, prop.name, sizeof info->name - 1);
    });
}

const ne_cuda_plugin kPlugin = {
    NE_CUDA_PLUGIN_ABI,
    device_count,
    device_info,
    ne::cuda::toy_create,
    ne::cuda::toy_destroy,
    ne::cuda::toy_set_data,
    ne::cuda::toy_train,
    ne::cuda::toy_evaluate,
    ne::cuda::toy_get_params,
    ne::cuda::toy_set_params,
    ne::cuda::moe_create,
    ne::cuda::moe_destroy,
    ne::cuda::moe_set_data,
    ne::cuda::moe_train,
    ne::cuda::moe_evaluate,
    ne::cuda::moe_get_params,
    ne::cuda::moe_set_params,
    ne::cuda::sae_create,
    ne::cuda::sae_destroy,
    ne::cuda::sae_set_params,
    ne::cuda::sae_get_params,
    ne::cuda::sae_set_state,
    ne::cuda::sae_get_state,
    ne::cuda::sae_train_step,
    ne::cuda::sae_evaluate,
};

}  // namespace

extern "C" NE_API const ne_cuda_plugin* ne_cuda_plugin_get(void) { return &kPlugin; }
