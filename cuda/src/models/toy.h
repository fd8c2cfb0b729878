// A batch of independent toy models (one "instance" each) and the interface its backends implement.
// The model owns its configuration and step counter; a backend owns parameters and optimizer state where they
// are computed (host memory for CPU, device memory for CUDA) and runs whole training steps there.
#pragma once
#include <memory>
#include <vector>

#include "models/toy_common.h"
#include "nativeengine.h"

namespace ne {

struct ToyShape {
    int32_t model;       // ne_toy_model
    int64_t n, m, instances, batch;
    uint64_t seed;
};

// What a backend must do. Parameter layouts: W [instances][n][m], b [instances][n];
// importance and probability [instances][n].
class ToyBackend {
public:
    virtual ~ToyBackend() = default;
    // Steps first_step .. first_step+count-1; adam[s] is the update for step first_step+s.
    virtual void train(int64_t first_step, const std::vector<AdamStep>& adam) = 0;
    virtual void evaluate(int64_t batches, float* loss) = 0;  // loss: [instances]
    virtual void get_params(float* W, float* b) const = 0;
    virtual void set_params(const float* W, const float* b) = 0;  // also zeroes the optimizer state
};

std::unique_ptr<ToyBackend> make_cpu_toy(const ToyShape& shape, const std::vector<float>& importance,
                                         const std::vector<float>& probability);

// Reference forward and backward for one instance over a batch x [batch][n], one sample at a time: returns the
// importance-weighted MSE (mean over batch and features) and writes (=, not +=) its gradients gW [n][m], gb [n].
// Templated so the gradient check can run the very same code in double.
template <typename T>
T toy_loss_and_grad(int32_t model, int64_t n, int64_t m, int64_t batch, const T* W, const T* b,
                    const T* importance, const T* x, T* gW, T* gb);

// Scratch of the blocked kernel, reused across steps so the hot loop allocates nothing.
template <typename T>
struct ToyWorkspace {
    std::vector<T> Wt, gWt, b, gb, importance, x, d, h, g;
    void resize(int64_t padded_n, int64_t m, int64_t block) {
        Wt.resize(m * padded_n);
        gWt.resize(m * padded_n);
        b.resize(padded_n);
        gb.resize(padded_n);
        importance.resize(padded_n);
        x.resize(block * padded_n);
        d.resize(block * padded_n);
        h.resize(block * m);
        g.resize(block * m);
    }
};

// Sizes a workspace for n features and m hidden (allocates; call outside parallel regions).
template <typename T>
void toy_workspace_prepare(ToyWorkspace<T>& workspace, int64_t n, int64_t m);

// The same loss and gradients as toy_loss_and_grad, computed by the SIMD-friendly blocked kernel the CPU
// backend trains with (cpu/toy_blocked.cpp). Tested against the reference above.
template <typename T>
T toy_loss_and_grad_blocked(int32_t model, int64_t n, int64_t m, int64_t batch, const T* W, const T* b,
                            const T* importance, const T* x, T* gW, T* gb, ToyWorkspace<T>& workspace);

// Fills x [batch][n] with the training (or evaluation) batch of one instance at one step.
void toy_generate_batch(const ToyShape& shape, const float* probability /*[n]*/, Stream stream, int64_t step,
                        int64_t instance, float* x);

}  // namespace ne
