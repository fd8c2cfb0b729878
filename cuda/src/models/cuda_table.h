// The models' table of the CUDA plugin (libnativeengine_cuda): what cuda/plugin.cu exports and the adapters in
// models/backends.cpp call to implement ToyBackend, MoeBackend and SaeBackend on the device. Plain C across this
// boundary (the plugin is built by another compiler): every entry returns an ne_status and writes its message to
// err on failure; host arrays are copied, never kept.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/cuda_devices.h"
#include "models/moe.h"
#include "models/sae.h"
#include "models/synth.h"
#include "models/toy.h"
#include "nativeengine.h"

#define NE_CUDA_MODELS_ENTRY "ne_cuda_models"

extern "C" {

typedef struct ne_cuda_toy ne_cuda_toy;
typedef struct ne_cuda_moe ne_cuda_moe;
typedef struct ne_cuda_sae ne_cuda_sae;
typedef struct ne_cuda_synth ne_cuda_synth;

typedef struct ne_cuda_model_table {
    int32_t abi;  // NE_CUDA_PLUGIN_ABI
    // What this device offers (the fields of ne_capabilities the CUDA backend decides).
    int32_t (*capabilities)(int32_t device, ne_capabilities* out, char* err, size_t err_size);

    // Toy models. *_supports checks without allocating what *_create would refuse (NE_ERR_UNSUPPORTED: too large
    // for the fused kernel). The model has no data until toy_set_data.
    int32_t (*toy_supports)(int32_t device, const ne::ToyShape* shape, char* err, size_t err_size);
    int32_t (*toy_create)(int32_t device, const ne::ToyShape* shape, ne_cuda_toy** out, char* err, size_t err_size);
    void (*toy_destroy)(ne_cuda_toy* toy);
    // importance, probability [instances][n], l1 [instances], rules [n] or null.
    int32_t (*toy_set_data)(ne_cuda_toy* toy, const float* importance, const float* probability, const float* l1,
                            const ne::FeatureRule* rules, char* err, size_t err_size);
    int32_t (*toy_train)(ne_cuda_toy* toy, int64_t first_step, const ne::AdamStep* adam, int64_t steps, char* err,
                         size_t err_size);
    // loss, penalty: [instances].
    int32_t (*toy_evaluate)(ne_cuda_toy* toy, int64_t batches, float* loss, float* penalty, char* err,
                            size_t err_size);
    // W, W_out [instances][n][m] (W_out null for tied models), b [instances][n].
    int32_t (*toy_get_params)(ne_cuda_toy* toy, float* W, float* W_out, float* b, char* err, size_t err_size);
    int32_t (*toy_set_params)(ne_cuda_toy* toy, const float* W, const float* W_out, const float* b, char* err,
                              size_t err_size);
    // per_instance [instances]: see ToyBackend::non_finite.
    int32_t (*toy_non_finite)(ne_cuda_toy* toy, ne_non_finite* per_instance, char* err, size_t err_size);

    // Mixture of experts, as the toy entries; out as ne_moe_evaluate's.
    int32_t (*moe_supports)(int32_t device, const ne::MoeSpec* spec, int64_t instances, char* err, size_t err_size);
    // first_instance: the random streams' index of instance 0 (ne::ToyShape::first_instance).
    int32_t (*moe_create)(int32_t device, const ne::MoeSpec* spec, int64_t instances, uint64_t seed,
                          int64_t first_instance, ne_cuda_moe** out,
                          char* err, size_t err_size);
    void (*moe_destroy)(ne_cuda_moe* moe);
    int32_t (*moe_set_data)(ne_cuda_moe* moe, const float* importance, const float* probability, const float* l1,
                            const ne::FeatureRule* rules, char* err, size_t err_size);
    int32_t (*moe_train)(ne_cuda_moe* moe, int64_t first_step, const ne::AdamStep* adam, int64_t steps,
                         float bias_update, char* err, size_t err_size);
    int32_t (*moe_evaluate)(ne_cuda_moe* moe, int64_t batches, float* out, char* err, size_t err_size);
    int32_t (*moe_get_params)(ne_cuda_moe* moe, float* W, float* b, float* W_gate, float* W_noise, float* route_bias,
                              char* err, size_t err_size);
    int32_t (*moe_set_params)(ne_cuda_moe* moe, const float* W, const float* b, const float* W_gate,
                              const float* W_noise, const float* route_bias, char* err, size_t err_size);
    int32_t (*moe_non_finite)(ne_cuda_moe* moe, ne_non_finite* per_instance, char* err, size_t err_size);

    // Sparse autoencoders: the entries of SaeBackend (models/sae.h), whose comments define them. precision: the
    // ne_sae_precision of the encoder GEMM. Parameters and state start at zero.
    int32_t (*sae_supports)(int32_t device, const ne::SaeSpec* spec, int32_t precision, char* err, size_t err_size);
    int32_t (*sae_create)(int32_t device, const ne::SaeSpec* spec, int32_t precision, ne_cuda_sae** out, char* err,
                          size_t err_size);
    void (*sae_destroy)(ne_cuda_sae* sae);
    int32_t (*sae_set_params)(ne_cuda_sae* sae, const ne::SaeParams<float>* params, char* err, size_t err_size);
    int32_t (*sae_get_params)(ne_cuda_sae* sae, const ne::SaeGrads<float>* params, char* err, size_t err_size);
    int32_t (*sae_set_state)(ne_cuda_sae* sae, const ne::SaeParams<float>* moment1, const ne::SaeParams<float>* moment2,
                             const int64_t* since_fired, char* err, size_t err_size);
    int32_t (*sae_get_state)(ne_cuda_sae* sae, const ne::SaeGrads<float>* moment1, const ne::SaeGrads<float>* moment2,
                             int64_t* since_fired, char* err, size_t err_size);
    int32_t (*sae_train_step)(ne_cuda_sae* sae, const float* x, const ne::AdamStep* adam, int32_t sparse_updates,
                              ne::SaeLoss* loss, char* err, size_t err_size);
    int32_t (*sae_evaluate)(ne_cuda_sae* sae, const ne::SaeSpec* spec, const float* x, float* x_hat,
                            int64_t* fire_count, ne::SaeLoss* loss, char* err, size_t err_size);

    // Synthetic generator (models/synth.h): a device copy of a ground truth (every array of the view, host memory;
    // top: the features without a parent, ascending), whose samples are drawn on the device bit for bit as the CPU
    // sampler draws them. synth_draw draws samples first .. first+count-1 of (stream, step) (first + count <= 2^32)
    // into the synth's device buffers and sets *slots to the codes kept per sample; synth_read copies the last draw
    // to host memory, each output null to skip: x [count][d], active [count] (active features per sample), index and
    // value [count][slots] (sample t's first active[t] are its features, ascending, and their values).
    int32_t (*synth_create)(int32_t device, const ne::SynthView* truth, const int32_t* top, int64_t top_count,
                            ne_cuda_synth** out, char* err, size_t err_size);
    void (*synth_destroy)(ne_cuda_synth* synth);
    int32_t (*synth_draw)(ne_cuda_synth* synth, uint32_t stream, uint32_t step, uint32_t first, int64_t count,
                          int32_t* slots, char* err, size_t err_size);
    int32_t (*synth_read)(ne_cuda_synth* synth, float* x, int32_t* active, int32_t* index, float* value, char* err,
                          size_t err_size);
    // One SAE step (sae_train_step) on samples first .. first+batch-1 of the synth's (stream, step), times scale,
    // drawn on the device: no batch crosses from the host.
    int32_t (*sae_train_step_synth)(ne_cuda_sae* sae, ne_cuda_synth* synth, uint32_t stream, uint32_t step,
                                    uint32_t first, float scale, const ne::AdamStep* adam, int32_t sparse_updates,
                                    ne::SaeLoss* loss, char* err, size_t err_size);
    // SaeBackend::set_sparsity_coefficients (plugin ABI 9).
    int32_t (*sae_set_sparsity_coefficients)(ne_cuda_sae* sae, float l1_coefficient, float l0_coefficient, char* err,
                                             size_t err_size);
} ne_cuda_model_table;

typedef const ne_cuda_model_table* (*ne_cuda_models_fn)(void);
}
