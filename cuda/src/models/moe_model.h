// The object behind an ne_moe handle.
#pragma once
#include <memory>
#include <vector>

#include "models/moe.h"

struct ne_context;

namespace ne {

class MoeModel {
public:
    // Throws unless the config is valid and ctx's backend can run it (ne_context_supports_moe).
    static void check(const ne_context& ctx, const ne_moe_config& config);

    // first_instance, total_instances: a part of a run split across ranks, as ToyModel's.
    MoeModel(const ne_context& ctx, const ne_moe_config& config, const float* importance, int64_t importance_count,
             const float* probability, int64_t probability_count, int64_t first_instance = 0,
             int64_t total_instances = 0);

    void set_l1(const float* l1, int64_t count);
    void set_feature_sets(const int32_t* set_of_feature, int64_t feature_count, const int32_t* set_kind,
                          int64_t set_count);
    void train(int64_t steps);
    void evaluate(int64_t batches, float* out, int64_t out_count);
    void get_params(float* W, int64_t w_count, float* b, int64_t b_count, float* W_gate, int64_t gate_count,
                    float* W_noise, int64_t noise_count, float* route_bias, int64_t bias_count) const;
    void set_params(const float* W, int64_t w_count, const float* b, int64_t b_count, const float* W_gate,
                    int64_t gate_count, const float* W_noise, int64_t noise_count, const float* route_bias,
                    int64_t bias_count);
    int64_t steps_done() const { return steps_done_; }
    ne_non_finite non_finite() const;

private:
    void check_params(const void* W, int64_t w_count, const void* b, int64_t b_count, const void* W_gate,
                      int64_t gate_count, const void* W_noise, int64_t noise_count, const void* route_bias,
                      int64_t bias_count) const;

    ne_moe_config config_;
    MoeSpec spec_{};
    ToyShape shape_{};
    ToyData data_;
    std::unique_ptr<MoeBackend> backend_;
    int64_t steps_done_ = 0;
    int64_t optimizer_steps_ = 0;
};

}  // namespace ne

struct ne_moe {
    ne::MoeModel model;
};
