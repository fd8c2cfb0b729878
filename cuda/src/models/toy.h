// A batch of independent toy models (one "instance" each) and the interface its backends implement.
// The model owns its configuration and step counter; a backend owns parameters and optimizer state where they
// are computed (host memory for CPU, device memory for CUDA) and runs whole training steps there.
#pragma once
#include <memory>
#include <vector>

#include "models/optimizer.h"
#include "models/toy_common.h"
#include "nativeengine.h"

namespace ne {

struct ToyShape {
    int32_t model;       // ne_toy_model
    int64_t n, m, instances, batch;
    uint64_t seed;
    // Instance i's random streams are those of instance first_instance + i of the whole run: a part of a batch of
    // models split across ranks trains exactly as those instances of the whole.
    int64_t first_instance = 0;
};

// Everything a backend needs besides parameters: per-instance importance, probability [instances][n] and L1
// coefficient [instances], and the feature-set rule of each feature [n] (empty when all are independent).
struct ToyData {
    std::vector<float> importance, probability, l1;
    std::vector<FeatureRule> rules;
};

// What a backend must do. Parameter layouts: W and W_out [instances][n][m], b [instances][n]. W_out exists
// for untied models only; elsewhere the pointers are null.
class ToyBackend {
public:
    virtual ~ToyBackend() = default;
    // Steps first_step .. first_step+count-1; adam[s] is the update for step first_step+s.
    virtual void train(int64_t first_step, const std::vector<AdamStep>& adam) = 0;
    // loss, penalty: [instances] task loss and L1 term.
    virtual void evaluate(int64_t batches, float* loss, float* penalty) = 0;
    virtual void get_params(float* W, float* W_out, float* b) const = 0;
    virtual void set_params(const float* W, const float* W_out, const float* b) = 0;  // also zeroes the optimizer state
    virtual void set_data(const ToyData& data) = 0;  // after l1 or feature sets change
    // per_instance [instances]: each instance's first non-finite step (step 0 while every step was finite). A step
    // whose loss (or gradient) is not finite is not applied (NE_NON_FINITE_LOSS); parameters that are not finite
    // after an update are NE_NON_FINITE_PARAMETERS. Either way the instance takes no further updates. set_params
    // clears it.
    virtual void non_finite(ne_non_finite* per_instance) const = 0;
};

std::unique_ptr<ToyBackend> make_cpu_toy(const ToyShape& shape, const ToyData& data);

// One instance's parameters and their gradients. W_out is null for tied models (the output uses W).
template <typename T>
struct ToyParams {
    const T* W;      // [n][m]
    const T* W_out;  // [n][m] or null
    const T* b;      // [n]
};
template <typename T>
struct ToyGrads {
    T* W;      // [n][m]
    T* W_out;  // [n][m] or null
    T* b;      // [n]
};

// The two terms of the objective over one batch.
struct ToyLoss {
    double task;     // importance-weighted MSE, mean over batch and features
    double penalty;  // l1 * mean over the batch of ||h||_1
    double total() const { return task + penalty; }
};

// Reference forward and backward for one instance over a batch x [batch][n], one sample at a time: returns the
// loss and writes (=, not +=) its gradients. Templated so the gradient check can run the very same code in
// double.
template <typename T>
ToyLoss toy_loss_and_grad(int32_t model, int64_t n, int64_t m, int64_t batch, ToyParams<T> params,
                          const T* importance, T l1, const T* x, ToyGrads<T> grads);

// Scratch of the blocked kernel (cpu/toy_blocked.cpp), reused across steps so the hot loop allocates nothing.
template <typename T>
struct ToyWorkspace {
    std::vector<T> Wp, Wop;            // W, W_out with rows padded to whole register tiles
    std::vector<T> gW, gW_out, gb;     // gradients, per lane until the end of the batch
    std::vector<T> x, d, h, g;         // a chunk of blocks' inputs, output gradients, hidden values and gradients
    std::vector<uint8_t> x_live, d_live;  // per block and feature: some sample has a nonzero x (d)
    std::vector<int32_t> x_rows, d_rows;  // one block's features with a nonzero x (d)
};

// Sizes a workspace for n features and m hidden (allocates; call outside parallel regions).
template <typename T>
void toy_workspace_prepare(ToyWorkspace<T>& workspace, int64_t n, int64_t m);

// The same loss and gradients as toy_loss_and_grad, computed by the SIMD-friendly blocked kernel the CPU
// backend trains with (cpu/toy_blocked.cpp). Tested against the reference above. grads.W null: the loss alone
// (evaluation), with the same arithmetic.
template <typename T>
ToyLoss toy_loss_and_grad_blocked(int32_t model, int64_t n, int64_t m, int64_t batch, ToyParams<T> params,
                                  const T* importance, T l1, const T* x, ToyGrads<T> grads,
                                  ToyWorkspace<T>& workspace);

// Fills x [batch][n] with the training (or evaluation) batch of one instance (of this model: its stream is that of
// shape.first_instance + instance) at one step. probability: [n] of the instance; rules: [n] or null when every
// feature is independent.
void toy_generate_batch(const ToyShape& shape, const float* probability, const FeatureRule* rules, Stream stream,
                        int64_t step, int64_t instance, float* x);

}  // namespace ne
