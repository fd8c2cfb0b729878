// The extern "C" entry points: check arguments, run the call inside ne::guarded (which turns every exception
// into a status and a thread-local message) and nothing else.
#include <cstdint>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "core/context.h"
#include "core/cuda_devices.h"
#include "core/error.h"
#include "core/nvtx.h"
#include "models/backends.h"
#include "models/moe_model.h"
#include "models/sae.h"
#include "models/sae_model.h"
#include "models/toy_model.h"
#include "models/training.h"
#include "nativeengine.h"

#ifndef NE_VERSION_STRING
#  define NE_VERSION_STRING "0.0.0"
#endif

// The ABI structs' sizes are part of the ABI: the C# mirrors are laid out to match (and a test compares them).
static_assert(sizeof(ne_runtime_info) == 24, "ne_runtime_info changed: update NE_ABI_VERSION and the bindings");
static_assert(sizeof(ne_device_info) == 168, "ne_device_info changed: update NE_ABI_VERSION and the bindings");
static_assert(sizeof(ne_capabilities) == 40, "ne_capabilities changed: update NE_ABI_VERSION and the bindings");
static_assert(sizeof(ne_toy_config) == 72, "ne_toy_config changed: update NE_ABI_VERSION and the bindings");
static_assert(sizeof(ne_moe_config) == 112, "ne_moe_config changed: update NE_ABI_VERSION and the bindings");
static_assert(sizeof(ne_sae_config) == 104, "ne_sae_config changed: update NE_ABI_VERSION and the bindings");
static_assert(sizeof(ne_sae_stats) == 56, "ne_sae_stats changed: update NE_ABI_VERSION and the bindings");
static_assert(sizeof(ne_non_finite) == 24, "ne_non_finite changed: update NE_ABI_VERSION and the bindings");

namespace {

template <class T>
T& deref(T* pointer, const char* name) {
    if (pointer == nullptr) ne::invalid(std::string(name) + " is null");
    return *pointer;
}

}  // namespace

extern "C" {

NE_API const char* ne_last_error(void) { return ne::last_error_cstr(); }

NE_API const char* ne_status_name(int32_t status) {
    switch (status) {
        case NE_OK: return "NE_OK";
        case NE_ERR_INVALID_ARGUMENT: return "NE_ERR_INVALID_ARGUMENT";
        case NE_ERR_OUT_OF_MEMORY: return "NE_ERR_OUT_OF_MEMORY";
        case NE_ERR_BACKEND_UNAVAILABLE: return "NE_ERR_BACKEND_UNAVAILABLE";
        case NE_ERR_CUDA: return "NE_ERR_CUDA";
        case NE_ERR_UNSUPPORTED: return "NE_ERR_UNSUPPORTED";
        case NE_ERR_INTERNAL: return "NE_ERR_INTERNAL";
        default: return "NE_ERR_UNKNOWN";
    }
}

NE_API const char* ne_version(void) { return NE_VERSION_STRING; }
NE_API int32_t ne_abi_version(void) { return NE_ABI_VERSION; }

NE_API size_t ne_runtime_info_size(void) { return sizeof(ne_runtime_info); }
NE_API size_t ne_device_info_size(void) { return sizeof(ne_device_info); }
NE_API size_t ne_toy_config_size(void) { return sizeof(ne_toy_config); }
NE_API size_t ne_moe_config_size(void) { return sizeof(ne_moe_config); }
NE_API size_t ne_sae_config_size(void) { return sizeof(ne_sae_config); }
NE_API size_t ne_sae_stats_size(void) { return sizeof(ne_sae_stats); }
NE_API size_t ne_capabilities_size(void) { return sizeof(ne_capabilities); }
NE_API size_t ne_non_finite_size(void) { return sizeof(ne_non_finite); }

NE_API ne_status ne_runtime_query(ne_runtime_info* out) {
    return ne::guarded(__func__, [&] {
        auto& info = deref(out, "out");
        info = ne_runtime_info{};
        info.cuda_compiled = ne::CudaDevices::found() ? 1 : 0;
        info.cuda_loaded = ne::CudaDevices::loaded() ? 1 : 0;
        info.cuda_device_count = ne::CudaDevices::count();
        info.cpu_threads = ne::cpu_threads();
#ifdef NE_HAVE_NVTX
        info.nvtx = 1;
#endif
    });
}

NE_API const char* ne_cuda_unavailable_reason(void) { return ne::CudaDevices::unavailable_reason(); }

NE_API ne_status ne_context_create(int32_t backend, int32_t device, ne_context** out) {
    return ne::guarded(__func__, [&] {
        auto& result = deref(out, "out");
        result = nullptr;
        result = ne::create_context(backend, device);
    });
}

NE_API ne_status ne_context_destroy(ne_context* ctx) {
    return ne::guarded(__func__, [&] { delete ctx; });
}

NE_API ne_status ne_context_device_info(const ne_context* ctx, ne_device_info* out) {
    return ne::guarded(__func__, [&] { deref(out, "out") = ne::device_info(deref(ctx, "ctx")); });
}

NE_API ne_status ne_context_capabilities(const ne_context* ctx, ne_capabilities* out) {
    return ne::guarded(__func__, [&] { deref(out, "out") = ne::capabilities(deref(ctx, "ctx")); });
}

NE_API ne_status ne_context_supports_toy(const ne_context* ctx, const ne_toy_config* config) {
    return ne::guarded(__func__, [&] { ne::ToyModel::check(deref(ctx, "ctx"), deref(config, "config")); });
}

NE_API ne_status ne_context_supports_moe(const ne_context* ctx, const ne_moe_config* config) {
    return ne::guarded(__func__, [&] { ne::MoeModel::check(deref(ctx, "ctx"), deref(config, "config")); });
}

NE_API ne_status ne_context_supports_sae(const ne_context* ctx, const ne_sae_config* config) {
    return ne::guarded(__func__, [&] { ne::SaeModel::check(deref(ctx, "ctx"), deref(config, "config")); });
}

NE_API ne_status ne_toy_create(ne_context* ctx, const ne_toy_config* config, const float* importance,
                               int64_t importance_count, const float* feature_probability, int64_t probability_count,
                               ne_toy** out) {
    return ne::guarded(__func__, [&] {
        auto& result = deref(out, "out");
        result = nullptr;
        result = new ne_toy{ne::ToyModel(deref(ctx, "ctx"), deref(config, "config"), importance, importance_count,
                                         feature_probability, probability_count)};
    });
}

NE_API ne_status ne_toy_destroy(ne_toy* toy) {
    return ne::guarded(__func__, [&] { delete toy; });
}

NE_API ne_status ne_toy_train(ne_toy* toy, int64_t steps) {
    return ne::guarded(__func__, [&] { deref(toy, "toy").model.train(steps); });
}

NE_API ne_status ne_toy_steps_done(const ne_toy* toy, int64_t* out) {
    return ne::guarded(__func__, [&] { deref(out, "out") = deref(toy, "toy").model.steps_done(); });
}

NE_API ne_status ne_toy_non_finite(const ne_toy* toy, ne_non_finite* out) {
    return ne::guarded(__func__, [&] { deref(out, "out") = deref(toy, "toy").model.non_finite(); });
}

NE_API ne_status ne_toy_set_l1(ne_toy* toy, const float* l1, int64_t l1_count) {
    return ne::guarded(__func__, [&] { deref(toy, "toy").model.set_l1(l1, l1_count); });
}

NE_API ne_status ne_toy_set_feature_sets(ne_toy* toy, const int32_t* set_of_feature, int64_t feature_count,
                                         const int32_t* set_kind, int64_t set_count) {
    return ne::guarded(__func__, [&] {
        deref(toy, "toy").model.set_feature_sets(set_of_feature, feature_count, set_kind, set_count);
    });
}

NE_API ne_status ne_toy_evaluate(ne_toy* toy, int64_t batches, float* loss, int64_t loss_count, float* penalty,
                                 int64_t penalty_count) {
    return ne::guarded(__func__, [&] {
        deref(toy, "toy").model.evaluate(batches, loss, loss_count, penalty, penalty_count);
    });
}

NE_API ne_status ne_toy_get_params(const ne_toy* toy, float* W, int64_t w_count, float* W_out, int64_t w_out_count,
                                   float* b, int64_t b_count) {
    return ne::guarded(__func__, [&] {
        deref(toy, "toy").model.get_params(W, w_count, W_out, w_out_count, b, b_count);
    });
}

NE_API ne_status ne_toy_set_params(ne_toy* toy, const float* W, int64_t w_count, const float* W_out,
                                   int64_t w_out_count, const float* b, int64_t b_count) {
    return ne::guarded(__func__, [&] {
        deref(toy, "toy").model.set_params(W, w_count, W_out, w_out_count, b, b_count);
    });
}

NE_API ne_status ne_toy_sample_batch(const ne_toy* toy, int64_t step, int64_t instance, float* x, int64_t x_count) {
    return ne::guarded(__func__, [&] { deref(toy, "toy").model.sample_batch(step, instance, x, x_count); });
}

NE_API ne_status ne_moe_create(ne_context* ctx, const ne_moe_config* config, const float* importance,
                               int64_t importance_count, const float* feature_probability, int64_t probability_count,
                               ne_moe** out) {
    return ne::guarded(__func__, [&] {
        auto& result = deref(out, "out");
        result = nullptr;
        result = new ne_moe{ne::MoeModel(deref(ctx, "ctx"), deref(config, "config"), importance, importance_count,
                                         feature_probability, probability_count)};
    });
}

NE_API ne_status ne_moe_destroy(ne_moe* moe) {
    return ne::guarded(__func__, [&] { delete moe; });
}

NE_API ne_status ne_moe_set_l1(ne_moe* moe, const float* l1, int64_t l1_count) {
    return ne::guarded(__func__, [&] { deref(moe, "moe").model.set_l1(l1, l1_count); });
}

NE_API ne_status ne_moe_set_feature_sets(ne_moe* moe, const int32_t* set_of_feature, int64_t feature_count,
                                         const int32_t* set_kind, int64_t set_count) {
    return ne::guarded(__func__, [&] {
        deref(moe, "moe").model.set_feature_sets(set_of_feature, feature_count, set_kind, set_count);
    });
}

NE_API ne_status ne_moe_train(ne_moe* moe, int64_t steps) {
    return ne::guarded(__func__, [&] { deref(moe, "moe").model.train(steps); });
}

NE_API ne_status ne_moe_steps_done(const ne_moe* moe, int64_t* out) {
    return ne::guarded(__func__, [&] { deref(out, "out") = deref(moe, "moe").model.steps_done(); });
}

NE_API ne_status ne_moe_non_finite(const ne_moe* moe, ne_non_finite* out) {
    return ne::guarded(__func__, [&] { deref(out, "out") = deref(moe, "moe").model.non_finite(); });
}

NE_API ne_status ne_moe_evaluate(ne_moe* moe, int64_t batches, float* out, int64_t out_count) {
    return ne::guarded(__func__, [&] { deref(moe, "moe").model.evaluate(batches, out, out_count); });
}

NE_API ne_status ne_moe_get_params(const ne_moe* moe, float* W, int64_t w_count, float* b, int64_t b_count,
                                   float* W_gate, int64_t gate_count, float* W_noise, int64_t noise_count,
                                   float* route_bias, int64_t bias_count) {
    return ne::guarded(__func__, [&] {
        deref(moe, "moe").model.get_params(W, w_count, b, b_count, W_gate, gate_count, W_noise, noise_count, route_bias,
                                           bias_count);
    });
}

NE_API ne_status ne_moe_set_params(ne_moe* moe, const float* W, int64_t w_count, const float* b, int64_t b_count,
                                   const float* W_gate, int64_t gate_count, const float* W_noise, int64_t noise_count,
                                   const float* route_bias, int64_t bias_count) {
    return ne::guarded(__func__, [&] {
        deref(moe, "moe").model.set_params(W, w_count, b, b_count, W_gate, gate_count, W_noise, noise_count, route_bias,
                                           bias_count);
    });
}

NE_API ne_status ne_sae_create(ne_context* ctx, const ne_sae_config* config, ne_sae** out) {
    return ne::guarded(__func__, [&] {
        auto& result = deref(out, "out");
        result = nullptr;
        result = new ne_sae{ne::SaeModel(deref(ctx, "ctx"), deref(config, "config"))};
    });
}

NE_API ne_status ne_sae_destroy(ne_sae* sae) {
    return ne::guarded(__func__, [&] { delete sae; });
}

NE_API ne_status ne_sae_init_decoder_bias(ne_sae* sae, const float* x, int64_t x_count, int32_t method) {
    return ne::guarded(__func__, [&] { deref(sae, "sae").model.init_decoder_bias(x, x_count, method); });
}

NE_API ne_status ne_sae_train_step(ne_sae* sae, const float* x, int64_t x_count, float lr, ne_sae_stats* stats) {
    return ne::guarded(__func__, [&] {
        const ne_sae_stats result = deref(sae, "sae").model.train_step(x, x_count, lr);
        if (stats != nullptr) *stats = result;
    });
}

NE_API ne_status ne_sae_non_finite(const ne_sae* sae, ne_non_finite* out) {
    return ne::guarded(__func__, [&] { deref(out, "out") = deref(sae, "sae").model.non_finite(); });
}

NE_API ne_status ne_sae_evaluate(ne_sae* sae, const float* x, int64_t x_count, float* x_hat, int64_t x_hat_count,
                                 int64_t* fire_count, int64_t fire_count_count, ne_sae_stats* stats) {
    return ne::guarded(__func__, [&] {
        const ne_sae_stats result =
            deref(sae, "sae").model.evaluate(x, x_count, x_hat, x_hat_count, fire_count, fire_count_count);
        if (stats != nullptr) *stats = result;
    });
}

NE_API ne_status ne_sae_get_params(const ne_sae* sae, float* W_enc, int64_t enc_count, float* b_enc,
                                   int64_t b_enc_count, float* W_dec, int64_t dec_count, float* b_dec,
                                   int64_t b_dec_count, float* threshold, int64_t threshold_count) {
    return ne::guarded(__func__, [&] {
        deref(sae, "sae").model.get_params(W_enc, enc_count, b_enc, b_enc_count, W_dec, dec_count, b_dec, b_dec_count,
                                           threshold, threshold_count);
    });
}

NE_API ne_status ne_sae_set_params(ne_sae* sae, const float* W_enc, int64_t enc_count, const float* b_enc,
                                   int64_t b_enc_count, const float* W_dec, int64_t dec_count, const float* b_dec,
                                   int64_t b_dec_count, const float* threshold, int64_t threshold_count) {
    return ne::guarded(__func__, [&] {
        deref(sae, "sae").model.set_params(W_enc, enc_count, b_enc, b_enc_count, W_dec, dec_count, b_dec, b_dec_count,
                                           threshold, threshold_count);
    });
}

NE_API ne_status ne_sae_state_size(const ne_sae* sae, int64_t* bytes) {
    return ne::guarded(__func__, [&] { deref(bytes, "bytes") = deref(sae, "sae").model.state_size(); });
}

NE_API ne_status ne_sae_get_state(const ne_sae* sae, void* state, int64_t bytes) {
    return ne::guarded(__func__, [&] { deref(sae, "sae").model.get_state(state, bytes); });
}

NE_API ne_status ne_sae_restore(ne_sae* sae, const float* W_enc, int64_t enc_count, const float* b_enc,
                                int64_t b_enc_count, const float* W_dec, int64_t dec_count, const float* b_dec,
                                int64_t b_dec_count, const float* threshold, int64_t threshold_count, const void* state,
                                int64_t bytes) {
    return ne::guarded(__func__, [&] {
        deref(sae, "sae").model.restore(W_enc, enc_count, b_enc, b_enc_count, W_dec, dec_count, b_dec, b_dec_count,
                                        threshold, threshold_count, state, bytes);
    });
}

NE_API ne_status ne_sgemm(ne_context* ctx, int64_t m, int64_t n, int64_t k, const float* A, int64_t a_count,
                          const float* B, int64_t b_count, float* C, int64_t c_count) {
    return ne::guarded(__func__, [&] {
        if (!ne::capabilities(deref(ctx, "ctx")).sgemm)
            ne::fail(NE_ERR_UNSUPPORTED, "the GEMM runs on CPU contexts only; this one is CUDA");
        for (const auto& [name, value] : {std::pair<const char*, int64_t>{"m", m}, {"n", n}, {"k", k}})
            if (value < 1) ne::invalid(std::string(name) + " is " + std::to_string(value) + "; valid: >= 1");
        if (m > INT64_MAX / k || k > INT64_MAX / n || m > INT64_MAX / n)
            ne::invalid("m * k, k * n or m * n overflows 64 bits");
        ne::check_count("A", A, a_count, m * k);
        ne::check_count("B", B, b_count, k * n);
        ne::check_count("C", C, c_count, m * n);
        std::vector<float> panels;
        ne::sgemm_blocked(m, n, k, A, B, C, panels);
    });
}

}  // extern "C"
