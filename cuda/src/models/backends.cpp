#include "models/backends.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

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
        call(table_.moe_create, device, &spec, shape.instances, shape.seed, shape.first_instance, &moe_);
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

// The CUDA twin of the synthetic sampler: a device copy of the truth, drawn into device buffers, read back.
class CudaSynth final : public SynthBackend {
public:
    CudaSynth(int32_t device, const SynthTruth& truth) : table_(cuda_models()), device_(device), n_(truth.spec.n) {
        const SynthView view = truth.view();
        call(table_.synth_create, device, &view, truth.top.data(), static_cast<int64_t>(truth.top.size()), &synth_);
    }
    ~CudaSynth() override { table_.synth_destroy(synth_); }

    void sample(Stream stream, uint32_t step, uint32_t first, int64_t count, float* x, float* codes,
                SynthSparseCodes* sparse) const override {
        int32_t slots = 0;
        call(table_.synth_draw, synth_, static_cast<uint32_t>(stream), step, first, count, &slots);
        if (codes == nullptr && sparse == nullptr) {
            call(table_.synth_read, synth_, x, nullptr, nullptr, nullptr);
            return;
        }
        std::vector<int32_t> active(count), index(count * slots);
        std::vector<float> value(count * slots);
        call(table_.synth_read, synth_, x, active.data(), index.data(), value.data());
        if (sparse != nullptr) {
            sparse->row_begin.assign(count + 1, 0);
            for (int64_t t = 0; t < count; ++t) sparse->row_begin[t + 1] = sparse->row_begin[t] + active[t];
            sparse->index.resize(sparse->row_begin[count]);
            sparse->value.resize(sparse->row_begin[count]);
            for (int64_t t = 0; t < count; ++t)
                for (int32_t a = 0; a < active[t]; ++a) {
                    sparse->index[sparse->row_begin[t] + a] = index[t * slots + a];
                    sparse->value[sparse->row_begin[t] + a] = value[t * slots + a];
                }
        }
        if (codes != nullptr) {
            std::fill(codes, codes + count * n_, 0.0f);
            for (int64_t t = 0; t < count; ++t)
                for (int32_t a = 0; a < active[t]; ++a) codes[t * n_ + index[t * slots + a]] = value[t * slots + a];
        }
    }

    ne_cuda_synth* handle() const { return synth_; }
    int32_t device() const { return device_; }

private:
    const ne_cuda_model_table& table_;
    int32_t device_;
    int64_t n_;
    ne_cuda_synth* synth_ = nullptr;
};

class CudaSae final : public SaeBackend {
public:
    CudaSae(int32_t device, const SaeSpec& spec, int32_t precision) : table_(cuda_models()), device_(device) {
        call(table_.sae_create, device, &spec, precision, &sae_);
    }
    ~CudaSae() override { table_.sae_destroy(sae_); }

    void set_params(const SaeParams<float>& params) override { call(table_.sae_set_params, sae_, &params); }
    void set_sparsity_coefficients(float l1_coefficient, float l0_coefficient) override {
        call(table_.sae_set_sparsity_coefficients, sae_, l1_coefficient, l0_coefficient);
    }
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
    bool train_step_synth(const SynthBackend& synth, Stream stream, uint32_t step, uint32_t first, float scale,
                          const AdamStep& adam, bool sparse_updates, SaeLoss& loss) override {
        const auto* twin = dynamic_cast<const CudaSynth*>(&synth);
        if (twin == nullptr || twin->device() != device_) return false;  // drawn on the host, or on another device
        call(table_.sae_train_step_synth, sae_, twin->handle(), static_cast<uint32_t>(stream), step, first, scale, &adam,
             sparse_updates ? 1 : 0, &loss);
        return true;
    }

private:
    const ne_cuda_model_table& table_;
    int32_t device_;
    ne_cuda_sae* sae_ = nullptr;
};

// ---- the CPU backend's capabilities -----------------------------------------------------------------------------

ne_capabilities cpu_capabilities() {
    ne_capabilities c{};
    c.backend = NE_BACKEND_CPU;
    c.toy_models = (1 << NE_TOY_LINEAR) | (1 << NE_TOY_RELU_OUTPUT) | (1 << NE_TOY_RELU_HIDDEN) | (1 << NE_TOY_ABS_VALUE);
    c.moe_noise = (1 << NE_MOE_NOISE_NONE) | (1 << NE_MOE_NOISE_NOISY_TOPK) | (1 << NE_MOE_NOISE_JITTER);
    c.sae_architectures = (1 << NE_SAE_TOPK) | (1 << NE_SAE_BATCHTOPK) | (1 << NE_SAE_RELU) | (1 << NE_SAE_JUMPRELU) |
                          (1 << NE_SAE_MATRYOSHKA_BATCHTOPK) | (1 << NE_SAE_MATCHING_PURSUIT);
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

std::unique_ptr<SynthBackend> make_synth_backend(const ne_context& ctx, const SynthTruth& truth) {
    if (ctx.backend == NE_BACKEND_CUDA) return std::make_unique<CudaSynth>(ctx.device, truth);
    return make_cpu_synth(truth);
}

std::unique_ptr<SaeBackend> make_sae_backend(const ne_context& ctx, const SaeSpec& spec, int32_t precision,
                                             const SaeShard& shard) {
    check_sae_supported(ctx, spec, precision);
    const bool split = shard.latent_group() != nullptr || shard.data_group() != nullptr;
    if (ctx.backend == NE_BACKEND_CUDA) {
        if (split)
            fail(NE_ERR_UNSUPPORTED, "an SAE split across ranks trains on the CPU backend; the CUDA backend's step "
                                     "runs in one process (use backend cpu, or one rank)");
        return std::make_unique<CudaSae>(ctx.device, spec, precision);
    }
    return make_cpu_sae(spec, shard);
}

}  // namespace ne
