// The object behind an ne_sae handle: a sparse autoencoder trained one caller-supplied batch at a time (the data
// path lives with the caller). It validates, initialises, counts steps, keeps batchtopk's inference threshold and
// the checkpoint layout (one byte layout on every backend), and delegates the tensors to its SaeBackend.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "models/sae.h"
#include "nativeengine.h"

struct ne_context;

namespace ne {

class SynthModel;

class SaeModel {
public:
    // Throws unless the config is valid and ctx's backend can run it (ne_context_supports_sae).
    static void check(const ne_context& ctx, const ne_sae_config& config);

    // latents, data: the grid of a split SAE (ne_sae_create_sharded), or null for one rank along either.
    SaeModel(const ne_context& ctx, const ne_sae_config& config, Communicator* latents = nullptr,
             Communicator* data = nullptr);

    // This rank's latents: [first_latent, first_latent + latents) of d_sae.
    int64_t first_latent() const { return shard_.first_latent; }
    int64_t latents() const { return spec_.m; }

    void init_decoder_bias(const float* x, int64_t x_count, int32_t method);
    ne_sae_stats train_step(const float* x, int64_t x_count, float lr);
    // A step on samples first_sample .. first_sample + batch - 1 of synth's training stream, times scale.
    ne_sae_stats train_step_synth(const SynthModel& synth, int64_t first_sample, float scale, float lr);
    ne_sae_stats evaluate(const float* x, int64_t x_count, float* x_hat, int64_t x_hat_count, int64_t* fire_count,
                          int64_t fire_count_count);
    void get_params(float* W_enc, int64_t enc_count, float* b_enc, int64_t b_enc_count, float* W_dec,
                    int64_t dec_count, float* b_dec, int64_t b_dec_count, float* threshold,
                    int64_t threshold_count) const;
    void set_params(const float* W_enc, int64_t enc_count, const float* b_enc, int64_t b_enc_count, const float* W_dec,
                    int64_t dec_count, const float* b_dec, int64_t b_dec_count, const float* threshold,
                    int64_t threshold_count);
    int64_t state_size() const;
    void get_state(void* state, int64_t bytes) const;
    void restore(const float* W_enc, int64_t enc_count, const float* b_enc, int64_t b_enc_count, const float* W_dec,
                 int64_t dec_count, const float* b_dec, int64_t b_dec_count, const float* threshold,
                 int64_t threshold_count, const void* state, int64_t bytes);

    ne_non_finite non_finite() const { return non_finite_; }

    // l1_coefficient (relu) or l0_coefficient (jumprelu) from the next step on; throws invalid-argument for another
    // architecture or a value that is not finite and >= 0.
    void set_sparsity_coefficient(float coefficient);

private:
    ne_sae_stats stats_of(const SaeLoss& loss) const;
    // Validates lr, makes the Adam step, runs it and keeps the count, batchtopk's threshold and the first non-finite
    // step. ran, when given, is read after run: false means run did nothing (and nothing is recorded).
    ne_sae_stats step_with(float lr, const std::function<SaeLoss(const AdamStep&)>& run, const bool* ran = nullptr);
    // The parameters as host views, thresholds converted to the backend's log_threshold (jumprelu).
    void send_params(const float* W_enc, const float* b_enc, const float* W_dec, const float* b_dec,
                     const float* threshold);

    ne_sae_config config_;
    SaeSpec spec_;  // this rank's part: m its latents, batch its tokens
    SaeShard shard_;
    std::unique_ptr<SaeBackend> backend_;
    SaeThreshold threshold_;
    int64_t steps_ = 0;
    ne_non_finite non_finite_{};  // the first step whose loss or updated parameters were not finite
    std::vector<float> synth_batch_;  // train_step_synth's batch, drawn here rather than by the caller
};

}  // namespace ne

struct ne_sae {
    ne::SaeModel model;
};
