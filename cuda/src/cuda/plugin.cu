// The tables libnativeengine_cuda exports: its devices to the core (core/cuda_devices.h) and its models to the
// adapters in models/backends.cpp (models/cuda_table.h).
#include <cstring>

#include "core/cuda_devices.h"
#include "cuda/cuda_check.h"
#include "cuda/moe_cuda.h"
#include "cuda/nccl_comm.h"
#include "cuda/sae_cuda.h"
#include "cuda/synth_cuda.h"
#include "cuda/toy_cuda.h"
#include "models/cuda_table.h"

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

int32_t capabilities(int32_t device, ne_capabilities* out, char* err, size_t err_size) {
    return ne::cuda::plugin_call(err, err_size, [&] {
        int optin = 0;
        NE_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
        *out = ne_capabilities{};
        out->backend = NE_BACKEND_CUDA;
        out->toy_models = (1 << NE_TOY_LINEAR) | (1 << NE_TOY_RELU_OUTPUT) | (1 << NE_TOY_RELU_HIDDEN) |
                          (1 << NE_TOY_ABS_VALUE);
        out->moe_noise = (1 << NE_MOE_NOISE_NONE) | (1 << NE_MOE_NOISE_NOISY_TOPK) | (1 << NE_MOE_NOISE_JITTER);
        out->sae_architectures =
            (1 << NE_SAE_TOPK) | (1 << NE_SAE_BATCHTOPK) | (1 << NE_SAE_RELU) | (1 << NE_SAE_JUMPRELU) |
            (1 << NE_SAE_MATRYOSHKA_BATCHTOPK) | (1 << NE_SAE_MATCHING_PURSUIT);
        out->sae_precisions = (1 << NE_SAE_FP32) | (1 << NE_SAE_TF32) | (1 << NE_SAE_BF16);
        out->sgemm = 0;  // ne_sgemm is the CPU encoder's GEMM
        out->max_shared_bytes = optin;
        out->max_sae_slots = ne::cuda::kSaeMaxSlots;
    });
}

const ne_cuda_device_table kDevices = {
    NE_CUDA_PLUGIN_ABI,
    device_count,
    device_info,
    ne::cuda::nccl_version,
    ne::cuda::nccl_unique_id,
    ne::cuda::nccl_create,
    ne::cuda::nccl_destroy,
    ne::cuda::nccl_allreduce,
    ne::cuda::nccl_allgather,
    ne::cuda::nccl_broadcast,
    ne::cuda::nccl_allreduce_best,
};

const ne_cuda_model_table kModels = {
    NE_CUDA_PLUGIN_ABI,
    capabilities,
    ne::cuda::toy_supports,
    ne::cuda::toy_create,
    ne::cuda::toy_destroy,
    ne::cuda::toy_set_data,
    ne::cuda::toy_train,
    ne::cuda::toy_evaluate,
    ne::cuda::toy_get_params,
    ne::cuda::toy_set_params,
    ne::cuda::toy_non_finite,
    ne::cuda::moe_supports,
    ne::cuda::moe_create,
    ne::cuda::moe_destroy,
    ne::cuda::moe_set_data,
    ne::cuda::moe_train,
    ne::cuda::moe_evaluate,
    ne::cuda::moe_get_params,
    ne::cuda::moe_set_params,
    ne::cuda::moe_non_finite,
    ne::cuda::sae_supports,
    ne::cuda::sae_create,
    ne::cuda::sae_destroy,
    ne::cuda::sae_set_params,
    ne::cuda::sae_get_params,
    ne::cuda::sae_set_state,
    ne::cuda::sae_get_state,
    ne::cuda::sae_train_step,
    ne::cuda::sae_evaluate,
    ne::cuda::synth_create,
    ne::cuda::synth_destroy,
    ne::cuda::synth_draw,
    ne::cuda::synth_read,
    ne::cuda::sae_train_step_synth,
    ne::cuda::sae_set_sparsity_coefficients,
};

}  // namespace

extern "C" NE_API const ne_cuda_device_table* ne_cuda_devices(void) { return &kDevices; }
extern "C" NE_API const ne_cuda_model_table* ne_cuda_models(void) { return &kModels; }
