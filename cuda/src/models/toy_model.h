// The object behind an ne_toy handle.
#pragma once
#include <memory>
#include <vector>

#include "models/toy.h"

struct ne_context;

namespace ne {

class ToyModel {
public:
    ToyModel(const ne_context& ctx, const ne_toy_config& config, const float* importance, int64_t importance_count,
             const float* probability, int64_t probability_count);

    void train(int64_t steps);
    void evaluate(int64_t batches, float* loss, int64_t loss_count);
    void get_params(float* W, int64_t w_count, float* b, int64_t b_count) const;
    void set_params(const float* W, int64_t w_count, const float* b, int64_t b_count);
    void sample_batch(int64_t step, int64_t instance, float* x, int64_t x_count) const;
    int64_t steps_done() const { return steps_done_; }

private:
    void initial_params(std::vector<float>& W, std::vector<float>& b) const;
    static void check_count(const char* name, const void* buffer, int64_t count, int64_t expected);

    ne_toy_config config_;
    ToyShape shape_{};
    std::vector<float> importance_, probability_;
    std::unique_ptr<ToyBackend> backend_;
    int64_t steps_done_ = 0;      // indexes the data stream
    int64_t optimizer_steps_ = 0; // Adam's t; restarts with the optimizer state on set_params
};

}  // namespace ne

struct ne_toy {
    ne::ToyModel model;
};
