// CUDA backend of the mixture-of-experts toy models: entry points of the plugin's model table
// (models/cuda_table.h).
#pragma once
#include "models/cuda_table.h"

namespace ne::cuda {

int32_t moe_supports(int32_t device, const MoeSpec* spec, int64_t instances, char* err, size_t err_size);
int32_t moe_create(int32_t device, const MoeSpec* spec, int64_t instances, uint64_t seed, int64_t first_instance,
                   ne_cuda_moe** out, char* err, size_t err_size);
void moe_destroy(ne_cuda_moe* moe);
int32_t moe_set_data(ne_cuda_moe* moe, const float* importance, const float* probability, const float* l1,
                     const FeatureRule* rules, char* err, size_t err_size);
int32_t moe_train(ne_cuda_moe* moe, int64_t first_step, const AdamStep* adam, int64_t steps, float bias_update,
                  char* err, size_t err_size);
int32_t moe_evaluate(ne_cuda_moe* moe, int64_t batches, float* out, char* err, size_t err_size);
int32_t moe_get_params(ne_cuda_moe* moe, float* W, float* b, float* W_gate, float* W_noise, float* route_bias,
                       char* err, size_t err_size);
int32_t moe_set_params(ne_cuda_moe* moe, const float* W, const float* b, const float* W_gate, const float* W_noise,
                       const float* route_bias, char* err, size_t err_size);
int32_t moe_non_finite(ne_cuda_moe* moe, ne_non_finite* per_instance, char* err, size_t err_size);

}  // namespace ne::cuda
