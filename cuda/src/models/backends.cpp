#include "models/backends.h"

#include <cstdint>
#include <string>
#include <utility>

#include "core/context.h"
#include "core/error.h"
#include "core/plugin.h"
#include "models/cuda_table.h"

namespace ne {
namespace {

// ---- the CUDA plugin's models ----------------------------------------------------------------------------------

const ne_cuda_model_table& cuda_models() {
    static const ne_cuda_model_table* const table = [] {
        auto entry = reinterpret_cast<ne_cuda_models_fn>(Plugin::get(NE_CUDA_PLUGIN_FILE).symbol(NE_CUDA_MODELS_ENTRY));
        const ne_cuda_model_table* models = entry != nullptr ? entry() : nullptr;
        return models != nullptr && models->abi == NE_CUDA_PLUGIN_ABI ? models : nullptr;
    }();
    if (table == nullptr)
        fail(NE_ERR_BACKEND_UNAVAILABLE, std::string(NE_CUDA_PLUGIN_FILE) + " exports no model table of plugin ABI " +
                                             std::to_string(NE_CUDA_PLUGIN_ABI) + "; rebuild both libraries together");
    return *table;
}

// Calls a plugin entry with an error buffer appended to its arguments; throws the plugin's message on failure.
template <class Entry, class... Args>
void call(Entry entry, Args... args) {
    char err[1024] = "";
    check_plugin(entry(args..., err, sizeof err), err);
}

// Adapters from the backend interfaces to the plugin's entries: the tensors live on the device.
class CudaToy final : public ToyBackend {
public:
    CudaToy(int32_t device, const ToyShape& shape, const ToyData& data) : table_(cuda_models()) {
        call(table_.toy_create, device, &shape, &toy_);
        try {
            set_data(data);
        } catch (...) {
            table_.toy_destroy(toy_);
            throw;
        }
    }
    ~CudaToy() override { table_.toy_destroy(toy_); }

    void train(int64_t first_step, const std::vector<AdamStep>& adam) override {
        call(table_.toy_train, toy_, first_step, adam.data(), static_cast<int64_t>(adam.size()));
    }
    void evaluate(int64_t batches, float* loss, float* penalty) override {
        call(table_.toy_evaluate, toy_, batches, loss, penalty);
    }
    void get_params(float* W, float* W_out, float* b) const override { call(table_.toy_get_params, toy_, W, W_out, b); }
    void set_params(const float* W, const float* W_out, const float* b) override {
        call(table_.toy_set_params, toy_, W, W_out, b);
    }
    void set_data(const ToyData& data) override {
        call(table_.toy_set_data, toy_, data.importance.data(), data.probability.data(), data.l1.data(),
             data.rules.empty() ? nullptr : data.rules.data());
    }
    void non_finite(ne_non_finite* per_instance) const override { call(table_.toy_non_finite, toy_, per_instance); }

private:
    const ne_cuda_model_table& table_;
    ne_cuda_toy* toy_ = nullptr;
};

class CudaMoe final : public MoeBackend {
public:
    CudaMoe(int32_t device, const MoeSpec& spec, const ToyShape& shape, const ToyData& data) : table_(cuda_models()) {
        call(table_.moe_create, device, &spec, shape.instances, shape.seed, &moe_);
        try {
            set_data(data);
        } catch (...) {
            table_.moe_destroy(moe_);
            throw;
        }
    }
    ~CudaMoe() override { table_.moe_destroy(moe_); }

    void train(int64_t first_step, const std::vector<AdamStep>& adam, float bias_update) override {
        call(table_.moe_train, moe_, first_step, adam.data(), static_cast<int64_t>(adam.size()), bias_update);
    }
    void evaluate(int64_t batches, float* out) override { call(table_.moe_evaluate, moe_, batches, out); }
    void get_params(float* W, float* b, float* W_gate, float* W_noise, float* route_bias) const override {
        call(table_.moe_get_params, moe_, W, b, W_gate, W_noise, route_bias);
    }
    void set_params(const float* W, const float* b, const float* W_gate, const float* W_noise,
                    const float* route_bias) override {
        call(table_.moe_set_params, moe_, W, b, W_gate, W_noise, route_bias);
    }
    void set_data(const ToyData& data) override {
        call(table_.moe_set_data, moe_, data.importance.data(), data.probability.data(), data.l1.data(),
             data.rules.empty() ? nullptr : data.rules.data());
    }
    void non_finite(ne_non_finite* per_instance) const override { call(table_.moe_non_finite, moe_, per_instance); }

private:
    const ne_cuda_model_table& table_;
    ne_cuda_moe* moe_ = nullptr;
};

class CudaSae final : public SaeBackend {
public:
    CudaSae(int32_t device, const SaeSpec& spec, int32_t precision) : table_(cuda_models()) {
        call(table_.sae_create, device, &spec, precision, &sae_);
    }
    ~CudaSae() override { table_.sae_destroy(sae_); }

    void set_params(const SaeParams<float>& params) override { call(table_.sae_set_params, sae_, &params); }
    void get_params(const SaeGrads<float>& params) const override { call(table_.sae_get_params, sae_, &params); }
    void set_state(const SaeParams<float>* moment1, const SaeParams<float>* moment2,
                   const int64_t* since_fired) override {
        call(table_.sae_set_state, sae_, moment1, moment2, since_fired);
    }
    void get_state(const SaeGrads<float>& moment1, const SaeGrads<float>& moment2, int64_t* since_fired) const override {
        call(table_.sae_get_state, sae_, &moment1, &moment2, since_fired);
    }
    SaeLoss train_step(const float* x, const AdamStep& step, bool sparse_updates) override {
        SaeLoss loss;
        call(table_.sae_train_step, sae_, x, &step, sparse_updates ? 1 : 0, &loss);
        return loss;
    }
    SaeLoss evaluate(const SaeSpec& spec, const float* x, float* x_hat, int64_t* fire_count) override {
        SaeLoss loss;
        call(table_.sae_evaluate, sae_, &spec, x, x_hat, fire_count, &loss);
        return loss;
    }

private:
    const ne_cuda_model_table& table_;
    ne_cuda_sae* sae_ = nullptr;
};

// ---- the CPU backend's capabilities -----------------------------------------------------------------------------

ne_capabilities cpu_capabilities() {
    ne_capabilities c{};
    c.backend = NE_BACKEND_CPU;
    c.toy_models = (1 << NE_TOY_LINEAR) | (1 << NE_TOY_RELU_OUTPUT) | (1 << NE_TOY_RELU_HIDDEN) | (1 << NE_TOY_ABS_VALUE);
    c.moe_noise = (1 << NE_MOE_NOISE_NONE) | (1 << NE_MOE_NOISE_NOISY_TOPK) | (1 << NE_MOE_NOISE_JITTER);
    c.sae_architectures = (1 << NE_SAE_TOPK) | (1 << NE_SAE_BATCHTOPK) | (1 << NE_SAE_RELU) | (1 << NE_SAE_JUMPRELU);
    c.sae_precisions = 1 << NE_SAE_FP32;  // the blocked GEMM is fp32
    c.sgemm = 1;
    c.max_shared_bytes = 0;
    c.max_sae_slots = INT64_MAX;
    return c;
}

const char* precision_name(int32_t precision) {
    return precision == NE_SAE_TF32 ? "tf32" : precision == NE_SAE_BF16 ? "bf16" : "fp32";
}

}  // namespace

ne_capabilities capabilities(const ne_context& ctx) {
    if (ctx.backend != NE_BACKEND_CUDA) return cpu_capabilities();
    ne_capabilities c{};
    call(cuda_models().capabilities, ctx.device, &c);
    return c;
}

void check_toy_supported(const ne_context& ctx, const ToyShape& shape) {
    if (ctx.backend == NE_BACKEND_CUDA) call(cuda_models().toy_supports, ctx.device, &shape);
}

void check_moe_supported(const ne_context& ctx, const MoeSpec& spec, int64_t instances) {
    if (ctx.backend == NE_BACKEND_CUDA) call(cuda_models().moe_supports, ctx.device, &spec, instances);
}

void check_sae_supported(const ne_context& ctx, const SaeSpec& spec, int32_t precision) {
    if (ctx.backend == NE_BACKEND_CUDA) {
        call(cuda_models().sae_supports, ctx.device, &spec, precision);
        return;
    }
    if ((cpu_capabilities().sae_precisions & (1 << precision)) == 0)
        fail(NE_ERR_UNSUPPORTED, "config.precision is " + std::to_string(precision) + " (" + precision_name(precision) +
                                     "): " + precision_name(precision) +
                                     " needs the CUDA backend; the CPU backend trains in fp32 (0)");
}

std::unique_ptr<ToyBackend> make_toy_backend(const ne_context& ctx, const ToyShape& shape, const ToyData& data) {
    if (ctx.backend == NE_BACKEND_CUDA) return std::make_unique<CudaToy>(ctx.device, shape, data);
    return make_cpu_toy(shape, data);
}

std::unique_ptr<MoeBackend> make_moe_backend(const ne_context& ctx, const MoeSpec& spec, const ToyShape& shape,
                                             const ToyData& data) {
    if (ctx.backend == NE_BACKEND_CUDA) return std::make_unique<CudaMoe>(ctx.device, spec, shape, data);
    return make_cpu_moe(spec, shape, data);
}

std::unique_ptr<SaeBackend> make_sae_backend(const ne_context& ctx, const SaeSpec& spec, int32_t precision) {
    check_sae_supported(ctx, spec, precision);
    if (ctx.backend == NE_BACKEND_CUDA) return std::make_unique<CudaSae>(ctx.device, spec, precision);
    return make_cpu_sae(spec);
}

}  // namespace ne
