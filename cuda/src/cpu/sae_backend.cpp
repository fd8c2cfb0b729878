// The CPU backend of the sparse autoencoder: parameters, gradients, Adam moments and firing history in host
// memory, one step by the fast path (sae_blocked.cpp) and the step's other pieces (sae_cpu.cpp). W_enc, its
// gradient and its moments stay in the fast path's encoder panels (sae.h); they cross the ABI as [d][m].
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/nvtx.h"
#include "models/sae.h"

namespace ne {
namespace {

void copy_into(std::vector<float>& tensor, const float* values) {
    if (values != nullptr) std::copy(values, values + tensor.size(), tensor.begin());
}

void copy_out(const std::vector<float>& tensor, float* values) {
    if (values != nullptr) std::copy(tensor.begin(), tensor.end(), values);
}

class CpuSae final : public SaeBackend {
public:
    explicit CpuSae(const SaeSpec& spec) : spec_(spec) {
        for (auto* t : {&params_, &grads_, &moment1_, &moment2_}) t->resize(spec_, true);
        since_fired_.assign(spec_.m, 0);
        fire_count_.assign(spec_.m, 0);
        touched_.assign(spec_.m, 0);
    }

    void set_params(const SaeParams<float>& p) override { assign(params_, p); }
    void get_params(const SaeGrads<float>& p) const override { read(params_, p); }

    void set_state(const SaeParams<float>* moment1, const SaeParams<float>* moment2,
                   const int64_t* since_fired) override {
        for (auto [tensors, view] : {std::pair{&moment1_, moment1}, std::pair{&moment2_, moment2}}) {
            if (view != nullptr) assign(*tensors, *view);
            else tensors->resize(spec_, true);
        }
        if (since_fired != nullptr) std::copy(since_fired, since_fired + spec_.m, since_fired_.begin());
        else std::fill(since_fired_.begin(), since_fired_.end(), 0);
    }

    void get_state(const SaeGrads<float>& moment1, const SaeGrads<float>& moment2, int64_t* since_fired) const override {
        read(moment1_, moment1);
        read(moment2_, moment2);
        std::copy(since_fired_.begin(), since_fired_.end(), since_fired);
    }

    SaeLoss train_step(const float* x, const AdamStep& step, bool sparse_updates) override {
        SaeGrads<float> grads = grads_.grads();
        SaeLoss loss;
        {
            NE_NVTX_RANGE("sae.forward_backward");
            loss = sae_loss_and_grad_fast(spec_, params_.params(), x, since_fired_.data(), &grads, workspace_,
                                          fire_count_.data());
        }
        if (!std::isfinite(loss.total())) {
            loss.applied = false;  // every tensor stays as it was
            return loss;
        }
        NE_NVTX_RANGE("sae.optimizer");
        sae_update_since_fired(spec_.m, spec_.batch, fire_count_.data(), since_fired_.data());
        sae_project_decoder_grad(spec_.m, spec_.d, params_.W_dec.data(), grads_.W_dec.data());
        if (sparse_updates) {
            // Every latent with a gradient: those that fired, AuxK's dead latents, jumprelu's near its threshold.
            sae_touched_latents(workspace_, spec_.m, touched_.data());
            sae_adam_update(spec_, params_, grads_, moment1_, moment2_, step, touched_.data(), true);
        } else {
            sae_adam_update(spec_, params_, grads_, moment1_, moment2_, step, nullptr, true);
        }
        loss.parameters_finite = sae_normalize_decoder(spec_.m, spec_.d, params_.W_dec.data());
        return loss;
    }

    SaeLoss evaluate(const SaeSpec& spec, const float* x, float* x_hat, int64_t* fire_count) override {
        return sae_loss_and_grad_fast(spec, params_.params(), x, nullptr, nullptr, workspace_, fire_count, x_hat);
    }

private:
    // Tensors of the view that are not null replace the owned ones.
    void assign(SaeTensors& t, const SaeParams<float>& v) const {
        if (v.W_enc != nullptr) sae_encoder_to_panels(spec_.d, spec_.m, v.W_enc, t.W_enc.data());
        copy_into(t.b_enc, v.b_enc);
        copy_into(t.W_dec, v.W_dec);
        copy_into(t.b_dec, v.b_dec);
        if (!t.log_threshold.empty()) copy_into(t.log_threshold, v.log_threshold);
    }
    void read(const SaeTensors& t, const SaeGrads<float>& v) const {
        if (v.W_enc != nullptr) sae_encoder_from_panels(spec_.d, spec_.m, t.W_enc.data(), v.W_enc);
        copy_out(t.b_enc, v.b_enc);
        copy_out(t.W_dec, v.W_dec);
        copy_out(t.b_dec, v.b_dec);
        if (!t.log_threshold.empty()) copy_out(t.log_threshold, v.log_threshold);
    }

    SaeSpec spec_;
    SaeTensors params_, grads_, moment1_, moment2_;
    std::vector<int64_t> since_fired_, fire_count_;  // [m]
    std::vector<uint8_t> touched_;                   // [m]
    SaeWorkspace workspace_;
};

}  // namespace

std::unique_ptr<SaeBackend> make_cpu_sae(const SaeSpec& spec) { return std::make_unique<CpuSae>(spec); }

}  // namespace ne
