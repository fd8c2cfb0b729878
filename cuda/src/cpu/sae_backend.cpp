// The CPU backend of the sparse autoencoder: parameters, gradients, Adam moments and firing history in host
// memory, one step by the fast path (sae_blocked.cpp) and the step's other pieces (sae_cpu.cpp). W_enc, its
// gradient and its moments stay in the fast path's encoder panels (sae.h); they cross the ABI as [d][m]. A shard of
// a split SAE sums its data group's gradients before the optimizer, so every replica applies the same update.
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
    CpuSae(const SaeSpec& spec, const SaeShard& shard) : spec_(spec), shard_(shard) {
        for (auto* t : {&params_, &grads_, &moment1_, &moment2_}) t->resize(spec_, true);
        since_fired_.assign(spec_.m, 0);
        fire_count_.assign(spec_.m, 0);
        touched_.assign(spec_.m, 0);
    }

    void set_params(const SaeParams<float>& p) override { assign(params_, p); }
    void set_sparsity_coefficients(float l1_coefficient, float l0_coefficient) override {
        spec_.l1_coefficient = l1_coefficient;
        spec_.l0_coefficient = l0_coefficient;
    }
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
                                          fire_count_.data(), nullptr, &shard_);
        }
        if (!std::isfinite(loss.total())) {
            // Each term of the loss is summed over the latent and data groups before this, so a value that is not
            // finite on any rank makes it so on every rank: they all skip the step together.
            loss.applied = false;  // every tensor stays as it was
            return loss;
        }
        NE_NVTX_RANGE("sae.optimizer");
        // fire_count_ is the whole step's: a data group's replicas keep the same firing history.
        Communicator* data = shard_.data_group();
        const int64_t tokens = data != nullptr ? spec_.batch * data->size() : spec_.batch;
        sae_update_since_fired(spec_.m, tokens, fire_count_.data(), since_fired_.data());
        if (sparse_updates) {
            // Every latent with a gradient: those that fired, AuxK's dead latents, jumprelu's near its threshold; in a
            // data group, those of any replica's tokens, so every replica moves the same rows.
            sae_touched_latents(workspace_, spec_.m, touched_.data());
            if (data != nullptr) data->allreduce(touched_.data(), spec_.m, NE_COMM_UINT8, NE_COMM_MAX);
        }
        if (data != nullptr) sum_gradients(*data, sparse_updates);
        sae_project_decoder_grad(spec_.m, spec_.d, params_.W_dec.data(), grads_.W_dec.data());
        if (sparse_updates) {
            sae_adam_update(spec_, params_, grads_, moment1_, moment2_, step, touched_.data(), true);
        } else {
            sae_adam_update(spec_, params_, grads_, moment1_, moment2_, step, nullptr, true);
        }
        loss.parameters_finite = sae_normalize_decoder(spec_.m, spec_.d, params_.W_dec.data());
        if (Communicator* latents = shard_.latent_group()) {
            // Each shard checked only its own rows (a data group's replicas hold the same ones): the latent group
            // agrees, so every rank records the same step and stops at it.
            int64_t finite = loss.parameters_finite ? 1 : 0;
            latents->allreduce(&finite, 1, NE_COMM_INT64, NE_COMM_MIN);
            loss.parameters_finite = finite != 0;
        }
        return loss;
    }

    SaeLoss evaluate(const SaeSpec& spec, const float* x, float* x_hat, int64_t* fire_count) override {
        return sae_loss_and_grad_fast(spec, params_.params(), x, nullptr, nullptr, workspace_, fire_count, x_hat,
                                      &shard_);
    }

private:
    // Sums the gradients over the data group: all of them, or with sparse updates only the latents the optimizer
    // will move (touched_), packed into one buffer. b_dec's always.
    void sum_gradients(Communicator& data, bool sparse_updates) {
        const int64_t d = spec_.d, m = spec_.m;
        const bool jump = !grads_.log_threshold.empty();
        if (!sparse_updates) {
            for (auto* tensor : {&grads_.W_enc, &grads_.b_enc, &grads_.W_dec, &grads_.b_dec, &grads_.log_threshold})
                data.allreduce_sum(tensor->data(), static_cast<int64_t>(tensor->size()));
            return;
        }
        rows_.clear();
        for (int64_t j = 0; j < m; ++j)
            if (touched_[j]) rows_.push_back(j);
        const int64_t count = static_cast<int64_t>(rows_.size()), width = 2 * d + 1 + (jump ? 1 : 0);
        packed_.resize(count * width + d);
        for (int64_t q = 0; q < count; ++q) {
            const int64_t j = rows_[q];
            float* out = packed_.data() + q * width;
            std::copy(grads_.W_dec.begin() + j * d, grads_.W_dec.begin() + (j + 1) * d, out);
            const float* column = grads_.W_enc.data() + (j / width_ * d) * width_ + j % width_;
            for (int64_t i = 0; i < d; ++i) out[d + i] = column[i * width_];
            out[2 * d] = grads_.b_enc[j];
            if (jump) out[2 * d + 1] = grads_.log_threshold[j];
        }
        std::copy(grads_.b_dec.begin(), grads_.b_dec.end(), packed_.begin() + count * width);
        data.allreduce_sum(packed_.data(), static_cast<int64_t>(packed_.size()));
        for (int64_t q = 0; q < count; ++q) {
            const int64_t j = rows_[q];
            const float* in = packed_.data() + q * width;
            std::copy(in, in + d, grads_.W_dec.begin() + j * d);
            float* column = grads_.W_enc.data() + (j / width_ * d) * width_ + j % width_;
            for (int64_t i = 0; i < d; ++i) column[i * width_] = in[d + i];
            grads_.b_enc[j] = in[2 * d];
            if (jump) grads_.log_threshold[j] = in[2 * d + 1];
        }
        std::copy(packed_.begin() + count * width, packed_.end(), grads_.b_dec.begin());
    }

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
    SaeShard shard_;
    SaeTensors params_, grads_, moment1_, moment2_;
    const int64_t width_ = sae_panel_width();  // the encoder panels' columns
    std::vector<int64_t> rows_;  // touched latents, and their gradients packed for the data group
    std::vector<float> packed_;
    std::vector<int64_t> since_fired_, fire_count_;  // [m]
    std::vector<uint8_t> touched_;                   // [m]
    SaeWorkspace workspace_;
};

}  // namespace

std::unique_ptr<SaeBackend> make_cpu_sae(const SaeSpec& spec, const SaeShard& shard) {
    return std::make_unique<CpuSae>(spec, shard);
}

}  // namespace ne
