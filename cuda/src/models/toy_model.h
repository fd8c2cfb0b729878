// The object behind an ne_toy handle.
#pragma once
#include <memory>
#include <vector>

#include "models/toy.h"

struct ne_context;

namespace ne {

class ToyModel {
public:
    // Throws unless the config is valid and ctx's backend can run it (ne_context_supports_toy).
    static void check(const ne_context& ctx, const ne_toy_config& config);

    // A part of a run split across ranks: its config.n_instances instances are [first_instance, first_instance +
    // n_instances) of total_instances, with their slice of the whole's initial parameters and their data streams
    // (total_instances 0: the whole run).
    ToyModel(const ne_context& ctx, const ne_toy_config& config, const float* importance, int64_t importance_count,
             const float* probability, int64_t probability_count, int64_t first_instance = 0,
             int64_t total_instances = 0);

    void train(int64_t steps);
    void set_l1(const float* l1, int64_t count);
    void set_feature_sets(const int32_t* set_of_feature, int64_t feature_count, const int32_t* set_kind,
                          int64_t set_count);
    void evaluate(int64_t batches, float* loss, int64_t loss_count, float* penalty, int64_t penalty_count);
    void get_params(float* W, int64_t w_count, float* W_out, int64_t w_out_count, float* b, int64_t b_count) const;
    void set_params(const float* W, int64_t w_count, const float* W_out, int64_t w_out_count, const float* b,
                    int64_t b_count);
    void sample_batch(int64_t step, int64_t instance, float* x, int64_t x_count) const;
    int64_t steps_done() const { return steps_done_; }
    ne_non_finite non_finite() const;

private:
    void check_params(const void* W, int64_t w_count, const void* W_out, int64_t w_out_count, const void* b,
                      int64_t b_count) const;

    ne_toy_config config_;
    ToyShape shape_{};
    ToyData data_;
    std::unique_ptr<ToyBackend> backend_;
    int64_t steps_done_ = 0;      // indexes the data stream
    int64_t optimizer_steps_ = 0; // Adam's t; restarts with the optimizer state on set_params
};

}  // namespace ne

struct ne_toy {
    ne::ToyModel model;
};
