// CUDA backend of the toy models: entry points of the plugin's model table (models/cuda_table.h).
#pragma once
#include "models/cuda_table.h"

namespace ne::cuda {

int32_t toy_supports(int32_t device, const ToyShape* shape, char* err, size_t err_size);
int32_t toy_create(int32_t device, const ToyShape* shape, ne_cuda_toy** out, char* err, size_t err_size);
void toy_destroy(ne_cuda_toy* toy);
int32_t toy_set_data(ne_cuda_toy* toy, const float* importance, const float* probability, const float* l1,
                     const FeatureRule* rules, char* err, size_t err_size);
int32_t toy_train(ne_cuda_toy* toy, int64_t first_step, const AdamStep* adam, int64_t steps, char* err,
                  size_t err_size);
int32_t toy_evaluate(ne_cuda_toy* toy, int64_t batches, float* loss, float* penalty, char* err, size_t err_size);
int32_t toy_get_params(ne_cuda_toy* toy, float* W, float* W_out, float* b, char* err, size_t err_size);
int32_t toy_set_params(ne_cuda_toy* toy, const float* W, const float* W_out, const float* b, char* err,
                       size_t err_size);
int32_t toy_non_finite(ne_cuda_toy* toy, ne_non_finite* per_instance, char* err, size_t err_size);

}  // namespace ne::cuda
