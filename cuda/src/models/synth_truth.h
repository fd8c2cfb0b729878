// The ground truth of a synthetic generator (models/synth.h), built once on the host from its spec, and the CPU
// sampler that draws batches from it. docs/synthsaebench.md gives the specification and its sources.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "models/synth.h"

namespace ne {

// SynthSAEBench-16k (SAELens' benchmark model, as the paper's experiments build it): 16,384 features in 768
// dimensions, Zipf(0.5) in [5e-4, 0.4], 128 roots of branching 4 and depth 3 with every parent exclusive,
// compensation and parent scaling on, copula rank 25 at scale 0.1, mean magnitudes 5 -> 4, standard deviations
// |N(0.5, 0.5^2)|, bias norm 0.5, 100 orthogonalisation steps at lr 3e-4, seed 42.
SynthSpec synth_preset_16k();

// The Sharkey et al. (2022) set as the Runner's SyntheticOptions define it: features unit Gaussian rows, p_i =
// min(1, c decay^i) with sum_i p_i = active_mean, copula of rank `rank` when correlated (rank 0: independent),
// coefficients U(0, 1].
SynthSpec synth_sharkey_spec(int64_t d, int64_t n, double decay, double active_mean, int32_t rank, uint64_t seed);

// Throws invalid-argument naming the field unless the spec is usable.
void synth_check_spec(const SynthSpec& spec);

struct SynthTruth {
    SynthSpec spec{};
    std::vector<float> probability;       // [n] target firing probability p_i (before compensation)
    std::vector<float> fire_probability;  // [n] p'_i = min(1, p_i c_i), c_i the compensation factor (1 without)
    std::vector<float> threshold;         // [n] Phi^-1(1 - p'_i): -inf when p'_i = 1, +inf when 0 (r > 0)
    std::vector<float> factor;            // [n][r] F
    std::vector<float> noise_scale;       // [n] s_i, s_i^2 + |F_i|^2 = 1
    std::vector<float> mean, stddev;      // [n] magnitude parameters (SaeBench)
    std::vector<int32_t> parent;          // [n] -1: a root or a feature in no tree
    std::vector<int32_t> depth;           // [n] 0 for roots, -1 for features in no tree
    std::vector<int64_t> child_begin;     // [n+1]
    std::vector<int32_t> child;           // children of i at child[child_begin[i] .. child_begin[i+1])
    std::vector<uint8_t> flags;           // [n] kSynthExclusive | kSynthRescale
    std::vector<int32_t> top;             // features without a parent, ascending: evaluated for every sample
    int64_t clamped = 0;                  // features whose compensated probability reached 1 (from below)
    std::vector<float> W;                 // [n][d] unit rows; empty until synth_build_dictionary
    std::vector<float> b;                 // [d]

    SynthView view() const;
};

// Everything but the dictionary: probabilities, forest, compensation, thresholds, copula factor, magnitudes.
// Cheap (O(n r)); enough to draw codes.
SynthTruth synth_build_codes(const SynthSpec& spec);

// W and b: Gaussian rows normalised, orthogonalised (ortho_steps > 0), then b. O(ortho_steps n^2 d).
void synth_build_dictionary(SynthTruth& truth);

inline SynthTruth synth_build(const SynthSpec& spec) {
    SynthTruth truth = synth_build_codes(spec);
    synth_build_dictionary(truth);
    return truth;
}

// Phi^-1(p) in double (Acklam's approximation refined by one Halley step on erfc): the host's thresholds.
double synth_inverse_normal_double(double p);

// ---- CPU kernels (cpu/synth_cpu.cpp) ---------------------------------------------------------------------------

// The orthogonalisation loss of W [n][d], sum_{i != j} (w_i . w_j)^2 + n sum_i (|w_i|^2 - 1)^2, and its gradient
// grad [n][d] (null: loss only). Gram rows in chunks of `chunk`.
double synth_ortho_loss_grad(int64_t n, int64_t d, const float* W, float* grad, int64_t chunk);

// Rows to unit norm (norms clamped at 1e-8), then `steps` full-gradient Adam steps (PyTorch defaults: betas 0.9,
// 0.999, eps 1e-8) at `lr` on the loss above, then rows to unit norm again. Returns the loss before the last step
// (0 when steps is 0).
double synth_orthogonalize(int64_t n, int64_t d, float* W, int32_t steps, float lr, int64_t chunk);

// Sparse codes of a batch: row t holds index[row_begin[t] .. row_begin[t+1]) (ascending) and their values.
struct SynthSparseCodes {
    std::vector<int64_t> row_begin;
    std::vector<int32_t> index;
    std::vector<float> value;
};

// Samples first_sample .. first_sample+count-1 of (stream, step): x [count][d] (null: not wanted; needs the
// dictionary), dense codes [count][n] (null: not wanted), sparse codes (null: not wanted). OpenMP over samples;
// the result does not depend on the thread count or on how samples are split between calls.
void synth_sample_cpu(const SynthTruth& truth, Stream stream, uint32_t step, uint32_t first_sample, int64_t count,
                      float* x, float* codes, SynthSparseCodes* sparse);

// Where a generator's samples are drawn. SynthModel (models/synth_model.h) builds the truth on the host and hands it
// to one backend, chosen in models/backends.cpp: the CPU sampler, or the CUDA twin (cuda/synth_cuda.cu), which holds
// a device copy of the truth and draws the same bits. Outputs are host memory, as synth_sample_cpu's.
class SynthBackend {
public:
    virtual ~SynthBackend() = default;
    // As synth_sample_cpu: samples first .. first+count-1 of (stream, step), first + count <= 2^32.
    virtual void sample(Stream stream, uint32_t step, uint32_t first, int64_t count, float* x, float* codes,
                        SynthSparseCodes* sparse) const = 0;
};

// The CPU backend: synth_sample_cpu on `truth`, which must outlive it.
std::unique_ptr<SynthBackend> make_cpu_synth(const SynthTruth& truth);

// One sample's active features (ascending) and values by the definitions alone, without the CPU sampler's
// shortcuts: what synth_sample_cpu must equal bit for bit.
void synth_sample_reference(const SynthTruth& truth, Stream stream, uint32_t step, uint32_t sample,
                            std::vector<int32_t>& index, std::vector<float>& value);

}  // namespace ne
