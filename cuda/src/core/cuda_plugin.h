// The table libnativeengine_cuda exports. The CUDA backend is a separate shared library (it links the CUDA
// runtime) that the core loads at run time when present, so one build runs on machines without CUDA.
// Plain C across this boundary: every entry returns an ne_status and writes its message to err on failure.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "models/moe.h"
#include "models/sae.h"
#include "models/toy_common.h"
#include "nativeengine.h"

#define NE_CUDA_PLUGIN_ABI 4

extern "C" {

typedef struct ne_cuda_toy ne_cuda_toy;
typedef struct ne_cuda_moe ne_cuda_moe;
typedef struct ne_cuda_sae ne_cuda_sae;

typedef struct ne_cuda_plugin {
    int32_t abi;  // NE_CUDA_PLUGIN_ABI
    int32_t (*device_count)(int32_t* count, char* err, size_t err_size);
    int32_t (*device_info)(int32_t device, ne_device_info* info, char* err, size_t err_size);

    // Shape as in ne_toy_config. The model has no data until toy_set_data.
    int32_t (*toy_create)(int32_t device, int32_t model, int64_t n, int64_t m, int64_t instances, int64_t batch,
                          uint64_t seed, ne_cuda_toy** out, char* err, size_t err_size);
    void (*toy_destroy)(ne_cuda_toy* toy);
    // Host arrays, copied: importance, probability [instances][n], l1 [instances], rules [n] or null.
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

    // Mixture of experts, as the toy entries; spec as ne::MoeSpec, out as ne_moe_evaluate's.
    int32_t (*moe_create)(int32_t device, const ne::MoeSpec* spec, int64_t instances, uint64_t seed, ne_cuda_moe** out,
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

    // Sparse autoencoders (models/sae.h). The device holds the parameters, gradients, Adam moments and firing
    // history; the caller (SaeModel) keeps the step count and batchtopk's threshold and computes Adam's constants.
    // Tensors cross as views in SaeTensors order (W_enc [d][m], b_enc [m], W_dec [m][d], b_dec [d],
    // log_threshold [m] for jumprelu, else null), host memory, copied. precision: ne_sae_precision of the
    // encoder GEMM. Parameters and state start at zero.
    int32_t (*sae_create)(int32_t device, const ne::SaeSpec* spec, int32_t precision, ne_cuda_sae** out, char* err,
                          size_t err_size);
    void (*sae_destroy)(ne_cuda_sae* sae);
    // A null tensor is left as it is.
    int32_t (*sae_set_params)(ne_cuda_sae* sae, const ne::SaeParams<float>* params, char* err, size_t err_size);
    int32_t (*sae_get_params)(ne_cuda_sae* sae, const ne::SaeGrads<float>* params, char* err, size_t err_size);
    // Adam's two moments and tokens_since_fired [m]; null moment views or since_fired set zeros.
    int32_t (*sae_set_state)(ne_cuda_sae* sae, const ne::SaeParams<float>* moment1, const ne::SaeParams<float>* moment2,
                             const int64_t* since_fired, char* err, size_t err_size);
    int32_t (*sae_get_state)(ne_cuda_sae* sae, const ne::SaeGrads<float>* moment1, const ne::SaeGrads<float>* moment2,
                             int64_t* since_fired, char* err, size_t err_size);
    // One step on x [batch][d] as SaeModel::train_step on the CPU: forward and backward, decoder-gradient
    // projection, Adam (touched rows only when sparse_updates), decoder renormalisation, firing history.
    int32_t (*sae_train_step)(ne_cuda_sae* sae, const float* x, const ne::AdamStep* adam, int32_t sparse_updates,
                              ne::SaeLoss* loss, char* err, size_t err_size);
    // Forward only on x [spec->batch][d] with this spec (its shape fields must match the model's; batch, inference
    // and threshold may differ; no AuxK). x_hat [batch][d] and fire_count [m] (= the tokens each latent fired on)
    // may be null.
    int32_t (*sae_evaluate)(ne_cuda_sae* sae, const ne::SaeSpec* spec, const float* x, float* x_hat,
                            int64_t* fire_count, ne::SaeLoss* loss, char* err, size_t err_size);
} ne_cuda_plugin;

// The one symbol the plugin exports.
typedef const ne_cuda_plugin* (*ne_cuda_plugin_get_fn)(void);
#define NE_CUDA_PLUGIN_ENTRY "ne_cuda_plugin_get"
}

namespace ne {

// The loaded plugin, or nullptr with reason() saying why (not built, failed to load, no device).
struct CudaPlugin {
    static const ne_cuda_plugin* get();  // loads once, thread-safe
    static bool found();                 // the plugin file exists next to libnativeengine
    static int32_t device_count();
    static const char* unavailable_reason();  // "" when get() != nullptr and device_count() > 0
};

// Throws ne::Error with the plugin's message when status != NE_OK.
void check_plugin(int32_t status, const char* err);

}  // namespace ne
