// The extern "C" entry points: check arguments, run the call inside ne::guarded (which turns every exception
// into a status and a thread-local message) and nothing else.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "core/comm.h"
#include "core/context.h"
#include "core/cuda_devices.h"
#include "core/error.h"
#include "core/nvtx.h"
#include "models/backends.h"
#include "models/moe_model.h"
#include "models/sae.h"
#include "models/sae_model.h"
#include "models/synth_model.h"
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
static_assert(sizeof(ne_sae_config) == 192, "ne_sae_config changed: update NE_ABI_VERSION and the bindings");
static_assert(sizeof(ne_sae_stats) == 56, "ne_sae_stats changed: update NE_ABI_VERSION and the bindings");
static_assert(sizeof(ne_mpi_info) == 800, "ne_mpi_info changed: update NE_ABI_VERSION and the bindings");
static_assert(sizeof(ne_comm_counters) == 40, "ne_comm_counters changed: update NE_ABI_VERSION and the bindings");
static_assert(sizeof(ne_non_finite) == 24, "ne_non_finite changed: update NE_ABI_VERSION and the bindings");
static_assert(sizeof(ne_synth_config) == 184, "ne_synth_config changed: update NE_ABI_VERSION and the bindings");

// A communicator handle: the world's (never destroyed), or a part of it that the handle owns.
struct ne_comm {
    ne::Communicator* comm;
    std::unique_ptr<ne::Communicator> owned;
};

namespace {

template <class T>
T& deref(T* pointer, const char* name) {
    if (pointer == nullptr) ne::invalid(std::string(name) + " is null");
    return *pointer;
}

ne::Communicator* communicator(ne_comm* comm) { return comm != nullptr ? comm->comm : nullptr; }

void check_bytes(const char* name, int64_t bytes) {
    if (bytes < 0) ne::invalid(std::string(name) + " is " + std::to_string(bytes) + "; valid: >= 0");
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

NE_API ne_status ne_toy_create_part(ne_context* ctx, const ne_toy_config* config, int64_t first_instance,
                                    int64_t total_instances, const float* importance, int64_t importance_count,
                                    const float* feature_probability, int64_t probability_count, ne_toy** out) {
    return ne::guarded(__func__, [&] {
        auto& result = deref(out, "out");
        result = nullptr;
        if (total_instances < 1) ne::invalid("total_instances is " + std::to_string(total_instances) + "; valid: >= 1");
        result = new ne_toy{ne::ToyModel(deref(ctx, "ctx"), deref(config, "config"), importance, importance_count,
                                         feature_probability, probability_count, first_instance, total_instances)};
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

NE_API ne_status ne_moe_create_part(ne_context* ctx, const ne_moe_config* config, int64_t first_instance,
                                    int64_t total_instances, const float* importance, int64_t importance_count,
                                    const float* feature_probability, int64_t probability_count, ne_moe** out) {
    return ne::guarded(__func__, [&] {
        auto& result = deref(out, "out");
        result = nullptr;
        if (total_instances < 1) ne::invalid("total_instances is " + std::to_string(total_instances) + "; valid: >= 1");
        result = new ne_moe{ne::MoeModel(deref(ctx, "ctx"), deref(config, "config"), importance, importance_count,
                                         feature_probability, probability_count, first_instance, total_instances)};
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

NE_API ne_status ne_sae_create_sharded(ne_context* ctx, const ne_sae_config* config, ne_comm* latents, ne_comm* data,
                                       ne_sae** out) {
    return ne::guarded(__func__, [&] {
        auto& result = deref(out, "out");
        result = nullptr;
        result = new ne_sae{ne::SaeModel(deref(ctx, "ctx"), deref(config, "config"), communicator(latents),
                                         communicator(data))};
    });
}

NE_API ne_status ne_sae_shard(const ne_sae* sae, int64_t* first, int64_t* count) {
    return ne::guarded(__func__, [&] {
        const auto& model = deref(sae, "sae").model;
        deref(first, "first") = model.first_latent();
        deref(count, "count") = model.latents();
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

NE_API ne_status ne_sae_set_sparsity_coefficient(ne_sae* sae, float coefficient) {
    return ne::guarded(__func__, [&] { deref(sae, "sae").model.set_sparsity_coefficient(coefficient); });
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

// ---- synthetic activations with a known ground truth (ABI 5) ---------------------------------------------------

NE_API size_t ne_synth_config_size(void) { return sizeof(ne_synth_config); }

NE_API ne_status ne_synth_preset_config(int32_t preset, ne_synth_config* out) {
    return ne::guarded(__func__, [&] {
        auto& result = deref(out, "out");
        if (preset != NE_SYNTH_PRESET_16K) ne::invalid("preset is " + std::to_string(preset) + "; valid: 0 (16k)");
        result = ne::synth_config_of(ne::synth_preset_16k());
    });
}

NE_API ne_status ne_synth_check(const ne_synth_config* config) {
    return ne::guarded(__func__, [&] { ne::synth_spec_of(deref(config, "config")); });
}

NE_API ne_status ne_synth_create(ne_context* ctx, const ne_synth_config* config, const float* W, int64_t w_count,
                                 const float* b, int64_t b_count, ne_synth** out) {
    return ne::guarded(__func__, [&] {
        auto& result = deref(out, "out");
        result = nullptr;
        result = new ne_synth{ne::SynthModel(deref(ctx, "ctx"), deref(config, "config"), W, w_count, b, b_count)};
    });
}

NE_API ne_status ne_synth_destroy(ne_synth* synth) {
    return ne::guarded(__func__, [&] { delete synth; });
}

NE_API ne_status ne_synth_sample(const ne_synth* synth, int32_t stream, int64_t first_sample, int64_t count, float* x,
                                 int64_t x_count, float* codes, int64_t codes_count) {
    return ne::guarded(__func__, [&] {
        const auto& model = deref(synth, "synth").model;
        if (count < 1) ne::invalid("count is " + std::to_string(count) + "; valid: >= 1");
        if (x_count != 0) ne::check_count("x", x, x_count, count * model.d());
        if (codes_count != 0) ne::check_count("codes", codes, codes_count, count * model.n());
        model.sample(stream, first_sample, count, x_count != 0 ? x : nullptr, codes_count != 0 ? codes : nullptr, nullptr);
    });
}

NE_API ne_status ne_synth_sample_sparse(const ne_synth* synth, int32_t stream, int64_t first_sample, int64_t count,
                                        float* x, int64_t x_count, int64_t* row_begin, int64_t row_begin_count,
                                        int32_t* index, float* value, int64_t capacity, int64_t* total) {
    return ne::guarded(__func__, [&] {
        const auto& model = deref(synth, "synth").model;
        auto& needed = deref(total, "total");
        if (count < 1) ne::invalid("count is " + std::to_string(count) + "; valid: >= 1");
        if (x_count != 0) ne::check_count("x", x, x_count, count * model.d());
        ne::check_count("row_begin", row_begin, row_begin_count, count + 1);
        if (capacity < 0) ne::invalid("capacity is " + std::to_string(capacity) + "; valid: >= 0");
        if (capacity > 0 && (index == nullptr || value == nullptr)) ne::invalid("index or value is null with capacity > 0");
        ne::SynthSparseCodes codes;
        model.sample(stream, first_sample, count, x_count != 0 ? x : nullptr, nullptr, &codes);
        std::copy(codes.row_begin.begin(), codes.row_begin.end(), row_begin);
        needed = codes.row_begin.back();
        if (needed <= capacity) {
            std::copy(codes.index.begin(), codes.index.end(), index);
            std::copy(codes.value.begin(), codes.value.end(), value);
        }
    });
}

NE_API ne_status ne_synth_get_truth(const ne_synth* synth, float* W, int64_t w_count, float* b, int64_t b_count,
                                    float* probability, int64_t probability_count, float* fire_probability,
                                    int64_t fire_probability_count, int32_t* parent, int64_t parent_count,
                                    int32_t* flags, int64_t flags_count, float* mean, int64_t mean_count,
                                    float* stddev, int64_t stddev_count) {
    return ne::guarded(__func__, [&] {
        deref(synth, "synth").model.get_truth(W, w_count, b, b_count, probability, probability_count,
                                              fire_probability, fire_probability_count, parent, parent_count, flags,
                                              flags_count, mean, mean_count, stddev, stddev_count);
    });
}

NE_API ne_status ne_sae_train_step_synth(ne_sae* sae, const ne_synth* synth, int64_t first_sample, float scale,
                                         float lr, ne_sae_stats* stats) {
    return ne::guarded(__func__, [&] {
        const ne_sae_stats result =
            deref(sae, "sae").model.train_step_synth(deref(synth, "synth").model, first_sample, scale, lr);
        if (stats != nullptr) *stats = result;
    });
}

NE_API size_t ne_mpi_info_size(void) { return sizeof(ne_mpi_info); }
NE_API size_t ne_comm_counters_size(void) { return sizeof(ne_comm_counters); }

NE_API ne_status ne_mpi_query(ne_mpi_info* out) {
    return ne::guarded(__func__, [&] { deref(out, "out") = ne::mpi_info(); });
}

NE_API ne_status ne_comm_world(ne_comm** out) {
    return ne::guarded(__func__, [&] {
        auto& result = deref(out, "out");
        result = nullptr;
        result = new ne_comm{&ne::world(), nullptr};
    });
}

NE_API ne_status ne_comm_split(ne_comm* comm, int32_t color, int32_t key, ne_comm** out) {
    return ne::guarded(__func__, [&] {
        auto& result = deref(out, "out");
        result = nullptr;
        auto part = deref(comm, "comm").comm->split(color, key);
        ne::Communicator* raw = part.get();
        result = new ne_comm{raw, std::move(part)};
    });
}

NE_API ne_status ne_comm_destroy(ne_comm* comm) {
    return ne::guarded(__func__, [&] { delete comm; });
}

NE_API ne_status ne_comm_rank(const ne_comm* comm, int32_t* rank, int32_t* size) {
    return ne::guarded(__func__, [&] {
        const ne::Communicator& c = *deref(comm, "comm").comm;
        deref(rank, "rank") = c.rank();
        deref(size, "size") = c.size();
    });
}

NE_API ne_status ne_comm_allreduce(ne_comm* comm, void* buffer, int64_t count, int32_t type, int32_t op) {
    return ne::guarded(__func__, [&] {
        ne::Communicator& c = *deref(comm, "comm").comm;
        if (count < 0) ne::invalid("count is " + std::to_string(count) + "; valid: >= 0");
        if (count > 0 && buffer == nullptr) ne::invalid("buffer is null");
        c.allreduce(buffer, count, type, op);
    });
}

NE_API ne_status ne_comm_allgather(ne_comm* comm, const void* send, int64_t bytes, void* receive,
                                   int64_t receive_bytes) {
    return ne::guarded(__func__, [&] {
        ne::Communicator& c = *deref(comm, "comm").comm;
        check_bytes("bytes", bytes);
        if (receive_bytes != bytes * c.size())
            ne::invalid("receive_bytes is " + std::to_string(receive_bytes) + "; expected size * bytes = " +
                        std::to_string(bytes * c.size()));
        if (bytes > 0 && (send == nullptr || receive == nullptr)) ne::invalid("send or receive is null");
        c.allgather(send, bytes, receive);
    });
}

NE_API ne_status ne_comm_gather(ne_comm* comm, const void* send, int64_t bytes, void* receive, int64_t receive_bytes,
                                int32_t root) {
    return ne::guarded(__func__, [&] {
        ne::Communicator& c = *deref(comm, "comm").comm;
        check_bytes("bytes", bytes);
        const bool here = c.rank() == root;
        const int64_t expected = here ? bytes * c.size() : 0;
        if (here ? receive_bytes != expected : receive_bytes != 0 && receive_bytes != bytes * c.size())
            ne::invalid("receive_bytes is " + std::to_string(receive_bytes) + "; expected " +
                        std::to_string(expected) + (here ? " (size * bytes) on the root" : " off the root"));
        if (bytes > 0 && (send == nullptr || (here && receive == nullptr))) ne::invalid("send or receive is null");
        c.gather(send, bytes, receive, root);
    });
}

NE_API ne_status ne_comm_broadcast(ne_comm* comm, void* buffer, int64_t bytes, int32_t root) {
    return ne::guarded(__func__, [&] {
        ne::Communicator& c = *deref(comm, "comm").comm;
        check_bytes("bytes", bytes);
        if (bytes > 0 && buffer == nullptr) ne::invalid("buffer is null");
        c.broadcast(buffer, bytes, root);
    });
}

NE_API ne_status ne_comm_barrier(ne_comm* comm) {
    return ne::guarded(__func__, [&] { deref(comm, "comm").comm->barrier(); });
}

NE_API ne_status ne_comm_counters_get(const ne_comm* comm, ne_comm_counters* out) {
    return ne::guarded(__func__, [&] { deref(out, "out") = deref(comm, "comm").comm->counters(); });
}

NE_API ne_status ne_comm_abort(ne_comm* comm, int32_t code) {
    return ne::guarded(__func__, [&] { deref(comm, "comm").comm->abort(code); });
}

NE_API ne_status ne_mpi_finalize(void) {
    return ne::guarded(__func__, [&] { ne::mpi_finalize(); });
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
