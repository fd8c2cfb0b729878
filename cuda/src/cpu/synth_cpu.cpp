// CPU kernels of the synthetic generator: the dictionary's orthogonalisation (two GEMMs per chunk of the Gram
// matrix) and the sampler. The sampler evaluates the definitions of models/synth.h with one shortcut that never
// changes a result: a feature's firing test fmaf(s, eta(u), m) > t is first bracketed by the smallest and largest
// eta of the 2048 grid points that share u's top 12 bits (both tests are monotone in eta), so the inverse normal
// CDF is evaluated only when the bracket straddles the threshold (about 1 feature in 4096).
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "core/error.h"
#include "models/sae.h"
#include "models/synth_truth.h"
#include "models/toy_common.h"
#include "models/training.h"

namespace ne {

double synth_ortho_loss_grad(int64_t n, int64_t d, const float* W, float* grad, int64_t chunk) {
    chunk = std::max<int64_t>(1, std::min(chunk, n));
    std::vector<float> WT(d * n), gram(chunk * n), gW(chunk * d), panels;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < d; ++j) WT[j * n + i] = W[i * d + j];
    double loss = 0;
    for (int64_t first = 0; first < n; first += chunk) {
        const int64_t rows = std::min(chunk, n - first);
        sgemm_blocked(rows, n, d, W + first * d, WT.data(), gram.data(), panels);  // rows of W W^T
        std::vector<float> diagonal(rows);
        double off = 0, on = 0;
        for (int64_t r = 0; r < rows; ++r) {
            float* row = gram.data() + r * n;
            diagonal[r] = row[first + r];
            row[first + r] = 0.0f;
            double sum = 0;
            for (int64_t j = 0; j < n; ++j) sum += static_cast<double>(row[j]) * row[j];
            off += sum;
            const double excess = static_cast<double>(diagonal[r]) - 1.0;
            on += excess * excess;
        }
        loss += off + static_cast<double>(n) * on;
        if (grad == nullptr) continue;
        // d/dw_i: 4 sum_{j != i} (w_i . w_j) w_j + 4 n (|w_i|^2 - 1) w_i.
        sgemm_blocked(rows, d, n, gram.data(), W, gW.data(), panels);
        const float scale_n = 4.0f * static_cast<float>(n);
        for (int64_t r = 0; r < rows; ++r) {
            const float own = scale_n * (diagonal[r] - 1.0f);
            const float* w = W + (first + r) * d;
            float* g = grad + (first + r) * d;
            for (int64_t j = 0; j < d; ++j) g[j] = fmaf(own, w[j], 4.0f * gW[r * d + j]);
        }
    }
    return loss;
}

static void normalize_rows(int64_t n, int64_t d, float* W) {
    for (int64_t i = 0; i < n; ++i) {
        float* w = W + i * d;
        double squared = 0;
        for (int64_t j = 0; j < d; ++j) squared += static_cast<double>(w[j]) * w[j];
        const float norm = static_cast<float>(std::max(std::sqrt(squared), 1e-8));
        for (int64_t j = 0; j < d; ++j) w[j] = w[j] / norm;
    }
}

double synth_orthogonalize(int64_t n, int64_t d, float* W, int32_t steps, float lr, int64_t chunk) {
    normalize_rows(n, d, W);
    if (steps <= 0) return 0;
    const int64_t count = n * d;
    std::vector<float> grad(count), m(count, 0.0f), v(count, 0.0f);
    const std::vector<AdamStep> adam = adam_schedule(NE_OPTIMIZER_ADAM, lr, 0.0f, 0.9f, 0.999f, 1e-8f, 0, steps);
    double loss = 0;
    for (int32_t step = 0; step < steps; ++step) {
        loss = synth_ortho_loss_grad(n, d, W, grad.data(), chunk);
        const AdamStep s = adam[step];
#pragma omp parallel for schedule(static)
        for (int64_t e = 0; e < count; ++e) adam_update(W[e], grad[e], m[e], v[e], s);
    }
    normalize_rows(n, d, W);
    return loss;
}

namespace {

constexpr int kBinShift = 20;                  // a word's top 12 bits: its bin of 2^11 grid points
constexpr int kBins = 1 << (32 - kBinShift);

// The smallest and largest synth_normal over the grid points of each bin, by evaluating all 2^23 of them once
// (PPND7 in float is monotone only up to rounding, so the bracket is measured, not assumed).
struct EtaBins {
    std::vector<float> lo, hi;
};

const EtaBins& eta_bins() {
    static const EtaBins bins = [] {
        EtaBins b;
        b.lo.resize(kBins);
        b.hi.resize(kBins);
#pragma omp parallel for schedule(static)
        for (int bin = 0; bin < kBins; ++bin) {
            float lo = std::numeric_limits<float>::infinity(), hi = -lo;
            const uint32_t first = static_cast<uint32_t>(bin) << kBinShift, points = 1u << (kBinShift - 9);
            for (uint32_t p = 0; p < points; ++p) {
                const float eta = synth_normal(first + (p << 9));
                lo = std::min(lo, eta);
                hi = std::max(hi, eta);
            }
            b.lo[bin] = lo;
            b.hi[bin] = hi;
        }
        return b;
    }();
    return bins;
}

// What every sample needs about the features without a parent, laid out for the sampler's loops.
struct TopPlan {
    std::vector<int32_t> feature;      // [T] ascending
    std::vector<float> factor_t;       // [r][T] F transposed
    std::vector<float> noise, threshold, probability;  // [T]
    std::vector<uint32_t> blocks;      // distinct Philox blocks (feature / 4), ascending
    std::vector<int32_t> word;         // [T] 4 * (position of the feature's block in `blocks`) + feature % 4
};

TopPlan make_plan(const SynthTruth& t) {
    TopPlan plan;
    const int64_t T = static_cast<int64_t>(t.top.size()), r = t.spec.correlation_rank;
    plan.feature = t.top;
    plan.factor_t.resize(r * T);
    plan.noise.resize(T);
    plan.threshold.resize(T);
    plan.probability.resize(T);
    plan.word.resize(T);
    for (int64_t j = 0; j < T; ++j) {
        const int32_t i = t.top[j];
        for (int64_t k = 0; k < r; ++k) plan.factor_t[k * T + j] = t.factor[i * r + k];
        plan.noise[j] = t.noise_scale[i];
        plan.threshold[j] = r > 0 ? t.threshold[i] : 0.0f;
        plan.probability[j] = t.fire_probability[i];
        const uint32_t block = static_cast<uint32_t>(i) >> 2;
        if (plan.blocks.empty() || plan.blocks.back() != block) plan.blocks.push_back(block);
        plan.word[j] = 4 * static_cast<int32_t>(plan.blocks.size() - 1) + (i & 3);
    }
    return plan;
}

struct Scratch {
    std::vector<float> g, m;
    std::vector<uint32_t> words;
    std::vector<std::pair<int32_t, float>> active, stack;
    std::vector<float> raw;
};

// The forest below the active features without a parent: each active parent P with value v_P > 0 draws its
// children (fires, then magnitude; active when the magnitude is > 0), keeps one uniformly chosen active child if
// it is exclusive, and passes each kept child raw * (v_P / mean_P) (rescaling parent) or raw (gating parent).
// Subtrees are independent given their root's value, so the order of the walk does not matter.
void walk_forest(const SynthView& v, Stream stream, uint32_t step, uint32_t sample, Scratch& s) {
    s.stack.clear();
    for (const auto& a : s.active)
        if (v.child_begin[a.first + 1] > v.child_begin[a.first]) s.stack.push_back(a);
    while (!s.stack.empty()) {
        const auto [P, value_P] = s.stack.back();
        s.stack.pop_back();
        const int64_t first = v.child_begin[P], last = v.child_begin[P + 1];
        s.raw.clear();
        uint32_t active = 0;
        for (int64_t c = first; c < last; ++c) {
            const int32_t child = v.child[c];
            const float raw = synth_fires(v, child, s.g.data(), stream, step, sample)
                                  ? synth_magnitude(v, child, stream, step, sample)
                                  : 0.0f;
            s.raw.push_back(raw);
            active += raw > 0.0f;
        }
        int64_t keep = -1;  // -1: every active child stays
        if ((v.flags[P] & kSynthExclusive) && active >= 2) keep = synth_choice(v, P, active, stream, step, sample);
        int64_t position = 0;
        for (int64_t c = first; c < last; ++c) {
            const float raw = s.raw[c - first];
            if (!(raw > 0.0f)) continue;
            const bool kept = keep < 0 || position == keep;
            ++position;
            if (!kept) continue;
            const int32_t child = v.child[c];
            const float value = synth_child_value(v, P, raw, value_P);
            if (!(value > 0.0f)) continue;
            s.active.push_back({child, value});
            if (v.child_begin[child + 1] > v.child_begin[child]) s.stack.push_back({child, value});
        }
    }
    std::sort(s.active.begin(), s.active.end());
}

// One sample's active features into s.active (ascending), with the bracketed firing test.
void sample_codes(const SynthView& v, const TopPlan& plan, const EtaBins* bins, Stream stream, uint32_t step,
                  uint32_t sample, Scratch& s) {
    const int64_t T = static_cast<int64_t>(plan.feature.size()), r = v.rank;
    s.g.resize(r);
    synth_factor_draw(v, stream, step, sample, s.g.data());
    s.m.assign(T, 0.0f);
    for (int64_t k = 0; k < r; ++k) {  // m_j = F_j . g in k order, vectorised across features
        const float* f = plan.factor_t.data() + k * T;
        const float gk = s.g[k];
        float* m = s.m.data();
        for (int64_t j = 0; j < T; ++j) m[j] = fmaf(f[j], gk, m[j]);
    }
    const int64_t B = static_cast<int64_t>(plan.blocks.size());
    s.words.resize(4 * B);
    for (int64_t q = 0; q < B; ++q) {
        const Philox4 w = synth_block(v.seed, stream, step, sample, kSynthFire, plan.blocks[q]);
        for (int l = 0; l < 4; ++l) s.words[4 * q + l] = w.v[l];
    }
    s.active.clear();
    for (int64_t j = 0; j < T; ++j) {
        const uint32_t bits = s.words[plan.word[j]];
        bool fires;
        if (r == 0) {
            fires = uniform01(bits) < plan.probability[j];
        } else {
            const uint32_t bin = bits >> kBinShift;
            const float sj = plan.noise[j], mj = s.m[j], tj = plan.threshold[j];
            if (fmaf(sj, bins->lo[bin], mj) > tj) fires = true;
            else if (!(fmaf(sj, bins->hi[bin], mj) > tj)) fires = false;
            else fires = fmaf(sj, synth_normal(bits), mj) > tj;
        }
        if (!fires) continue;
        const int32_t i = plan.feature[j];
        const float value = synth_magnitude(v, i, stream, step, sample);
        if (value > 0.0f) s.active.push_back({i, value});
    }
    walk_forest(v, stream, step, sample, s);
}

}  // namespace

void synth_sample_reference(const SynthTruth& truth, Stream stream, uint32_t step, uint32_t sample,
                            std::vector<int32_t>& index, std::vector<float>& value) {
    const SynthView v = truth.view();
    Scratch s;
    s.g.resize(v.rank);
    synth_factor_draw(v, stream, step, sample, s.g.data());
    for (const int32_t i : truth.top) {
        if (!synth_fires(v, i, s.g.data(), stream, step, sample)) continue;
        const float magnitude = synth_magnitude(v, i, stream, step, sample);
        if (magnitude > 0.0f) s.active.push_back({i, magnitude});
    }
    walk_forest(v, stream, step, sample, s);
    index.clear();
    value.clear();
    for (const auto& a : s.active) {
        index.push_back(a.first);
        value.push_back(a.second);
    }
}

void synth_sample_cpu(const SynthTruth& truth, Stream stream, uint32_t step, uint32_t first_sample, int64_t count,
                      float* x, float* codes, SynthSparseCodes* sparse) {
    if (count <= 0) return;
    const SynthView v = truth.view();
    const int64_t n = v.n, d = v.d;
    if (x != nullptr && (v.W == nullptr || v.b == nullptr))
        invalid("synth_sample_cpu: x requested before the dictionary was built");
    const TopPlan plan = make_plan(truth);
    const EtaBins* bins = v.rank > 0 ? &eta_bins() : nullptr;
    std::vector<std::vector<std::pair<int32_t, float>>> rows(sparse != nullptr ? count : 0);
#pragma omp parallel
    {
        Scratch s;
#pragma omp for schedule(dynamic, 16)
        for (int64_t t = 0; t < count; ++t) {
            sample_codes(v, plan, bins, stream, step, first_sample + static_cast<uint32_t>(t), s);
            if (x != nullptr) {
                float* row = x + t * d;
                std::copy(v.b, v.b + d, row);
                for (const auto& [i, value] : s.active) {
                    const float* w = v.W + static_cast<int64_t>(i) * d;
                    for (int64_t j = 0; j < d; ++j) row[j] = fmaf(value, w[j], row[j]);
                }
            }
            if (codes != nullptr) {
                float* row = codes + t * n;
                std::fill(row, row + n, 0.0f);
                for (const auto& [i, value] : s.active) row[i] = value;
            }
            if (sparse != nullptr) rows[t] = s.active;
        }
    }
    if (sparse != nullptr) {
        sparse->row_begin.assign(count + 1, 0);
        for (int64_t t = 0; t < count; ++t)
            sparse->row_begin[t + 1] = sparse->row_begin[t] + static_cast<int64_t>(rows[t].size());
        sparse->index.resize(sparse->row_begin[count]);
        sparse->value.resize(sparse->row_begin[count]);
        for (int64_t t = 0; t < count; ++t)
            for (size_t a = 0; a < rows[t].size(); ++a) {
                sparse->index[sparse->row_begin[t] + a] = rows[t][a].first;
                sparse->value[sparse->row_begin[t] + a] = rows[t][a].second;
            }
    }
}

namespace {

class CpuSynth final : public SynthBackend {
public:
    explicit CpuSynth(const SynthTruth& truth) : truth_(truth) {}
    void sample(Stream stream, uint32_t step, uint32_t first, int64_t count, float* x, float* codes,
                SynthSparseCodes* sparse) const override {
        synth_sample_cpu(truth_, stream, step, first, count, x, codes, sparse);
    }

private:
    const SynthTruth& truth_;
};

}  // namespace

std::unique_ptr<SynthBackend> make_cpu_synth(const SynthTruth& truth) { return std::make_unique<CpuSynth>(truth); }

}  // namespace ne
