// Mixture-of-experts toy models: E toy-model experts behind a top-k softmax router, many instances trained
// together. As in toy.h, the model owns configuration and step counting; a backend owns parameters and
// optimizer state and runs whole steps. Definitions: the ne_moe_config comment in nativeengine.h.
#pragma once
#include <memory>
#include <vector>

#include "models/toy.h"
#include "nativeengine.h"

namespace ne {

// Everything that fixes the arithmetic of one batch, except the tensors.
struct MoeSpec {
    int32_t expert_model;  // NE_TOY_RELU_OUTPUT or NE_TOY_RELU_HIDDEN
    int64_t n, m, experts, top_k, batch;
    int32_t renormalize, noise;
    float load_balance, z_loss, capacity_factor;
};

// Jitter of the router's input: x * (1 + kJitter * (2u - 1)).
constexpr float kMoeJitter = 0.01f;

// One instance's parameters and gradients (gradients: =, not +=; route_bias has none).
template <typename T>
struct MoeParams {
    const T* W;           // [E][n][m]
    const T* b;           // [E][n]
    const T* W_gate;      // [n][E]
    const T* W_noise;     // [n][E]
    const T* route_bias;  // [E], used only to choose experts
};
template <typename T>
struct MoeGrads {
    T* W;
    T* b;
    T* W_gate;
    T* W_noise;
};

// What one batch measured besides the gradients.
struct MoeBatch {
    double task = 0, l1 = 0, balance = 0, z = 0;  // the loss terms
    std::vector<int64_t> load;                     // [E] slots routed to each expert (before dropping)
    int64_t dropped = 0;                           // slots dropped by the capacity limit
};

// The router's random inputs of one batch: normal [batch][E] (noisy_topk) and jitter multipliers [batch][n]
// (jitter); empty when unused. Drawn from the data's Philox stream, in a counter range the data never uses.
void moe_router_noise(const MoeSpec& spec, uint64_t seed, Stream stream, int64_t step, int64_t instance,
                      std::vector<float>& normal, std::vector<float>& jitter);

// Reference forward and backward of one instance over x [batch][n], one token at a time, in two passes:
// routing (selection, capacity, load) for the whole batch, then experts, loss and gradients. normal and
// jitter may be null (no noise). grads may be null (evaluation). output, when not null, receives y
// [batch][n]. Templated so the gradient check runs the same code in double.
template <typename T>
MoeBatch moe_loss_and_grad(const MoeSpec& spec, MoeParams<T> params, const T* importance, T l1, const T* x,
                           const T* normal, const T* jitter, MoeGrads<T>* grads, T* output = nullptr);

// Scratch of the grouped kernel (cpu/moe_grouped.cpp), reused across batches so the hot loop allocates nothing
// once sized. Rows are padded to whole vectors (np = n rounded up to the vector width).
template <typename T>
struct MoeWorkspace {
    std::vector<T> x, xr;                   // [batch][np] the inputs and the router's (jittered) inputs
    std::vector<T> z, sp, H, prob;          // [batch / lanes][E][lanes] logits, noise pre-activations, H, softmax
    std::vector<T> lse, chosen_sum;         // [batch] log-sum-exp of H, sum of the chosen probabilities
    std::vector<T> gate;                    // [batch][K] gates
    std::vector<int64_t> chosen;            // [batch][K] experts in rank order
    std::vector<char> kept;                 // [batch][K] within capacity
    std::vector<int32_t> lane_of_slot;      // [batch][K] block * lanes + lane of a kept slot, -1 when dropped
    std::vector<int32_t> block_slots;       // [blocks][lanes] the slots (t * K + r) of each block, -1 past the end
    std::vector<int32_t> block_tokens;      // [blocks][lanes] their tokens t
    std::vector<int32_t> block_expert;      // [blocks]
    std::vector<T> a, h, gh, out;           // [blocks][m|m|m|n][lanes] per slot: W^T x, hidden, its gradient, output
    std::vector<T> out_rows, d_rows, dgate; // [batch][K][np] outputs, [batch][np] d loss / d y, [batch][K]
    std::vector<T> gW, gb, gW_gate, gW_noise;  // [E][m][np], [E][np], [E][np], [E][np]: gradients, transposed
    std::vector<T> importance, rows_tmp;    // [np] importance padded with zeros; [np] one token's differences
    std::vector<T> lanes_x, lanes_d;        // [n][lanes] one block's inputs (or d) and d loss / d pre
    std::vector<T> prob_rows, router_rows;  // [batch][E] the softmax again, by token; [E] one token's d / d prob
    std::vector<T> dH_rows, dS_rows;        // [batch][E] d loss / d H and d loss / d noise pre-activation
    std::vector<T> token_vectors;           // [2][lanes][lanes] one vector of features of each token of a block
    std::vector<int64_t> taken, first_block, cursor;  // [E]
    std::vector<char> picked;               // [E]
};

// The same batch as moe_loss_and_grad, computed by the grouped kernel the CPU backend trains with
// (cpu/moe_grouped.cpp): tokens are grouped by the expert they are routed to, kLanes of them in the lanes of
// one vector, and every sum keeps the reference's order, so the results are bit-identical to it (for finite
// values). losses = false leaves task, l1, balance and z at zero (training reads only the gradients and the
// load; summing the loss terms in the reference's order is a long serial chain).
template <typename T>
MoeBatch moe_loss_and_grad_grouped(const MoeSpec& spec, MoeParams<T> params, const T* importance, T l1, const T* x,
                                   const T* normal, const T* jitter, MoeGrads<T>* grads, MoeWorkspace<T>& workspace,
                                   T* output = nullptr, bool losses = true);

// Parameter counts of one instance.
struct MoeSizes {
    int64_t W, b, gate, bias;
    explicit MoeSizes(const MoeSpec& s)
        : W(s.experts * s.n * s.m), b(s.experts * s.n), gate(s.n * s.experts), bias(s.experts) {}
};

class MoeBackend {
public:
    virtual ~MoeBackend() = default;
    // adam[s] is the update for step first_step + s; bias_update as in ne_moe_config.
    virtual void train(int64_t first_step, const std::vector<AdamStep>& adam, float bias_update) = 0;
    // out: [instances][NE_MOE_EVAL_FIELDS + E], see ne_moe_evaluate.
    virtual void evaluate(int64_t batches, float* out) = 0;
    virtual void get_params(float* W, float* b, float* W_gate, float* W_noise, float* route_bias) const = 0;
    virtual void set_params(const float* W, const float* b, const float* W_gate, const float* W_noise,
                            const float* route_bias) = 0;
    virtual void set_data(const ToyData& data) = 0;
    // As ToyBackend::non_finite.
    virtual void non_finite(ne_non_finite* per_instance) const = 0;
};

// shape: the data's shape (model = expert_model, m = expert_hidden), as toy_generate_batch takes it.
std::unique_ptr<MoeBackend> make_cpu_moe(const MoeSpec& spec, const ToyShape& shape, const ToyData& data);

}  // namespace ne
