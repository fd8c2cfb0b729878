// The object behind an ne_sae handle: a sparse autoencoder's parameters, optimizer state and firing history,
// trained one caller-supplied batch at a time (the data path lives with the caller). On the CPU backend the
// tensors live here; on CUDA they live on the device (CudaSae, the plugin's SAE) and only the step count and the
// batchtopk threshold stay here. Checkpoint state has one byte layout on both.
#pragma once
#include <memory>
#include <vector>

#include "models/sae.h"
#include "nativeengine.h"

struct ne_context;

namespace ne {

class CudaSae;

class SaeModel {
public:
    SaeModel(const ne_context& ctx, const ne_sae_config& config);
    ~SaeModel();

    void init_decoder_bias(const float* x, int64_t x_count, int32_t method);
    ne_sae_stats train_step(const float* x, int64_t x_count, float lr);
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

private:
    ne_sae_stats stats_of(const SaeLoss& loss) const;
    AdamStep adam_step(float lr) const;

    ne_sae_config config_;
    SaeSpec spec_;
    SaeTensors params_, grads_, moment1_, moment2_;
    std::vector<int64_t> since_fired_, fire_count_;
    std::vector<uint8_t> touched_;
    SaeThreshold threshold_;
    SaeWorkspace workspace_;
    int64_t steps_ = 0;
    std::unique_ptr<CudaSae> cuda_;  // null on the CPU backend
};

}  // namespace ne

struct ne_sae {
    ne::SaeModel model;
};
