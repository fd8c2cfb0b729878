// CUDA backend of the sparse autoencoder: entry points of the plugin's model table (models/cuda_table.h).
#pragma once
#include "models/cuda_table.h"

namespace ne::cuda {

// The largest batch * (slots per token + k_aux) the kernels take: their sorts index entries with 32-bit ints.
constexpr int64_t kSaeMaxSlots = 0x7fffffff;

int32_t sae_supports(int32_t device, const SaeSpec* spec, int32_t precision, char* err, size_t err_size);
int32_t sae_create(int32_t device, const SaeSpec* spec, int32_t precision, ne_cuda_sae** out, char* err,
                   size_t err_size);
void sae_destroy(ne_cuda_sae* sae);
int32_t sae_set_params(ne_cuda_sae* sae, const SaeParams<float>* params, char* err, size_t err_size);
int32_t sae_get_params(ne_cuda_sae* sae, const SaeGrads<float>* params, char* err, size_t err_size);
int32_t sae_set_state(ne_cuda_sae* sae, const SaeParams<float>* moment1, const SaeParams<float>* moment2,
                      const int64_t* since_fired, char* err, size_t err_size);
int32_t sae_get_state(ne_cuda_sae* sae, const SaeGrads<float>* moment1, const SaeGrads<float>* moment2,
                      int64_t* since_fired, char* err, size_t err_size);
int32_t sae_train_step(ne_cuda_sae* sae, const float* x, const AdamStep* adam, int32_t sparse_updates, SaeLoss* loss,
                       char* err, size_t err_size);
int32_t sae_evaluate(ne_cuda_sae* sae, const SaeSpec* spec, const float* x, float* x_hat, int64_t* fire_count,
                     SaeLoss* loss, char* err, size_t err_size);
int32_t sae_train_step_synth(ne_cuda_sae* sae, ne_cuda_synth* synth, uint32_t stream, uint32_t step, uint32_t first,
                             float scale, const AdamStep* adam, int32_t sparse_updates, SaeLoss* loss, char* err,
                             size_t err_size);
int32_t sae_set_sparsity_coefficients(ne_cuda_sae* sae, float l1_coefficient, float l0_coefficient, char* err,
                                      size_t err_size);

}  // namespace ne::cuda
