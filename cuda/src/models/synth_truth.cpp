// The ground truth of a synthetic generator, built on the host (docs/synthsaebench.md says where each rule comes
// from). Everything random comes from the Philox init stream under the keys below, so the same spec gives the same
// bytes on every machine.
#include "models/synth_truth.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"
#include "models/training.h"

namespace ne {

namespace {

// Init-stream tensor keys (third counter word); toy, MoE and SAE use 0..2 and 16.
constexpr uint32_t kKeyDictionary = kSynthTag + 0;  // W normals [n][d]
constexpr uint32_t kKeyBias = kSynthTag + 1;        // b normals [d]
constexpr uint32_t kKeyFactor = kSynthTag + 2;      // copula factor normals [n][r]
constexpr uint32_t kKeyStddev = kSynthTag + 3;      // magnitude standard deviation normals [n]
constexpr uint32_t kKeyForest = kSynthTag + 4;      // words of the forest: branching, exclusive parents

// Word j of the forest's sequence.
uint32_t forest_word(uint64_t seed, uint64_t j) {
    const Philox4 r = philox4x32_10(static_cast<uint32_t>(j >> 2), static_cast<uint32_t>(j >> 34), kKeyForest,
                                    stream_word(Stream::kInit, 1), static_cast<uint32_t>(seed),
                                    static_cast<uint32_t>(seed >> 32));
    return r.v[j & 3u];
}

// Uniform integer in [0, range) from one word (multiply-shift).
int64_t below(uint32_t bits, int64_t range) {
    return static_cast<int64_t>((static_cast<uint64_t>(bits) * static_cast<uint64_t>(range)) >> 32);
}

std::vector<double> zipf_probabilities(const SynthSpec& s) {
    std::vector<double> p(s.n);
    if (s.n == 1) {
        p[0] = s.p_max;
        return p;
    }
    const double smallest = std::pow(static_cast<double>(s.n), -s.zipf_exponent);  // rank n; rank 1 gives 1
    for (int64_t i = 0; i < s.n; ++i) {
        const double raw = std::pow(static_cast<double>(i + 1), -s.zipf_exponent);
        p[i] = s.p_min + (s.p_max - s.p_min) * (raw - smallest) / (1.0 - smallest);
    }
    return p;
}

// min(1, c decay^i) with c found by bisection so the sum is active_mean (SyntheticActivations.FiringProbabilities).
std::vector<double> sharkey_probabilities(const SynthSpec& s) {
    const int64_t n = s.n;
    auto sum = [&](double c) {
        double total = 0;
        for (int64_t i = 0; i < n; ++i) total += std::min(1.0, c * std::pow(s.decay, static_cast<double>(i)));
        return total;
    };
    double lo = 0, hi = 1;
    while (sum(hi) < s.active_mean) hi *= 2;
    for (int iteration = 0; iteration < 200; ++iteration) {
        const double mid = 0.5 * (lo + hi);
        if (sum(mid) < s.active_mean) lo = mid; else hi = mid;
    }
    std::vector<double> p(n);
    for (int64_t i = 0; i < n; ++i) p[i] = std::min(1.0, hi * std::pow(s.decay, static_cast<double>(i)));
    return p;
}

// The forest, breadth-first over all trees at once (SAELens generate_hierarchy).
void build_forest(const SynthSpec& s, SynthTruth& t) {
    const int64_t n = s.n;
    t.parent.assign(n, -1);
    t.depth.assign(n, -1);
    t.flags.assign(n, 0);
    std::vector<std::vector<int32_t>> children(n);
    std::vector<int32_t> parents;  // every node created at depth < max_depth, in creation order
    uint64_t word = 0;
    int64_t next = 0;
    std::vector<int32_t> level;
    for (int64_t r = 0; r < s.root_nodes && next < n; ++r) {
        t.depth[next] = 0;
        parents.push_back(static_cast<int32_t>(next));
        level.push_back(static_cast<int32_t>(next++));
    }
    while (!level.empty()) {
        std::vector<int32_t> next_level;
        for (const int32_t node : level) {
            if (t.depth[node] >= s.max_depth) continue;
            const int64_t branching = s.branching_min == s.branching_max
                                          ? s.branching_min
                                          : s.branching_min + below(forest_word(s.seed, word++),
                                                                    s.branching_max - s.branching_min + 1);
            for (int64_t c = 0; c < branching && next < n; ++c) {
                const int32_t child = static_cast<int32_t>(next++);
                t.parent[child] = node;
                t.depth[child] = t.depth[node] + 1;
                children[node].push_back(child);
                if (t.depth[child] < s.max_depth) {
                    next_level.push_back(child);
                    parents.push_back(child);
                }
            }
        }
        level.swap(next_level);
    }
    // Exclusive parents: floor(portion * eligible) of the eligible ones, a uniform random subset.
    std::vector<int32_t> eligible;
    for (const int32_t p : parents)
        if (t.depth[p] >= s.me_min_depth && (s.me_max_depth < 0 || t.depth[p] <= s.me_max_depth) &&
            children[p].size() >= 2)
            eligible.push_back(p);
    const auto chosen = static_cast<int64_t>(static_cast<double>(eligible.size()) * s.me_portion);
    for (int64_t k = 0; k < chosen; ++k) {  // partial Fisher-Yates
        const int64_t pick = k + below(forest_word(s.seed, word++), static_cast<int64_t>(eligible.size()) - k);
        std::swap(eligible[k], eligible[pick]);
        t.flags[eligible[k]] |= kSynthExclusive;
    }
    if (s.scale_children)
        for (const int32_t p : parents) t.flags[p] |= kSynthRescale;
    t.child_begin.assign(n + 1, 0);
    for (int64_t i = 0; i < n; ++i) t.child_begin[i + 1] = t.child_begin[i] + static_cast<int64_t>(children[i].size());
    t.child.clear();
    for (int64_t i = 0; i < n; ++i) t.child.insert(t.child.end(), children[i].begin(), children[i].end());
}

// Compensation factors (SAELens Hierarchy.compute_probability_correction_factors), from the base probabilities:
// a child of P gets 1 / p_P; a child of an exclusive P with siblings S gets (1 + sum_{s in S} p_s / p_P) on top.
std::vector<double> compensation(const SynthTruth& t, const std::vector<double>& p) {
    const int64_t n = static_cast<int64_t>(p.size());
    std::vector<double> factor(n, 1.0);
    for (int64_t i = 0; i < n; ++i) {
        const int32_t up = t.parent[i];
        if (up >= 0 && p[up] > 0) factor[i] = 1.0 / p[up];
    }
    for (int64_t P = 0; P < n; ++P) {
        const int64_t first = t.child_begin[P], last = t.child_begin[P + 1];
        if (!(t.flags[P] & kSynthExclusive) || last - first < 2 || !(p[P] > 0)) continue;
        double total = 0;
        for (int64_t c = first; c < last; ++c) total += p[t.child[c]];
        for (int64_t c = first; c < last; ++c) {
            const double others = std::max(0.0, total - p[t.child[c]]);
            factor[t.child[c]] *= 1.0 + others / p[P];
        }
    }
    return factor;
}

void build_correlation(const SynthSpec& s, SynthTruth& t) {
    const int64_t n = s.n, r = s.correlation_rank;
    t.noise_scale.assign(n, 1.0f);
    if (r == 0) return;
    const std::vector<float> normals = normal_init(s.seed, kKeyFactor, n * r, 1.0);
    t.factor.resize(n * r);
    for (int64_t i = 0; i < n; ++i) {
        double squared = 0;
        std::vector<double> row(r);
        for (int64_t k = 0; k < r; ++k) {
            row[k] = s.kind == kSynthSharkey ? normals[i * r + k]
                                             : static_cast<double>(static_cast<float>(normals[i * r + k] *
                                                                                      s.correlation_scale));
            squared += row[k] * row[k];
        }
        double diagonal;
        if (s.kind == kSynthSharkey) {
            // Sigma = S (F F^T + I) S, S = diag(1 / sqrt(1 + |F_i|^2)): factor S F, noise scale S.
            const double scale = 1.0 / std::sqrt(1.0 + squared);
            for (auto& e : row) e *= scale;
            diagonal = scale * scale;
        } else {
            // A row whose diagonal term would fall below 0.01 is shrunk to |F_i|^2 = 0.99 (SAELens
            // generate_random_low_rank_correlation_matrix): the implied correlation matrix keeps a unit diagonal.
            if (1.0 - squared < 0.01) {
                const double shrink = std::sqrt(0.99 / squared);
                squared = 0;
                for (auto& e : row) {
                    e *= shrink;
                    squared += e * e;
                }
            }
            diagonal = 1.0 - squared;
        }
        for (int64_t k = 0; k < r; ++k) t.factor[i * r + k] = static_cast<float>(row[k]);
        t.noise_scale[i] = static_cast<float>(std::sqrt(diagonal));
    }
}

}  // namespace

SynthSpec synth_preset_16k() {
    SynthSpec s;
    s.kind = kSynthSaeBench;
    s.n = 16384;
    s.d = 768;
    s.seed = 42;
    s.zipf_exponent = 0.5;
    s.p_min = 5e-4;
    s.p_max = 0.4;
    s.root_nodes = 128;
    s.branching_min = s.branching_max = 4;
    s.max_depth = 3;
    s.me_portion = 1.0;
    s.me_min_depth = 0;
    s.me_max_depth = -1;
    s.compensate = 1;
    s.scale_children = 1;
    s.correlation_rank = 25;
    s.correlation_scale = 0.1;
    s.mean_start = 5.0;
    s.mean_end = 4.0;
    s.std_mean = 0.5;
    s.std_std = 0.5;
    s.bias_norm = 0.5;
    s.ortho_steps = 100;
    s.ortho_lr = 3e-4;
    s.ortho_chunk = 1024;
    return s;
}

SynthSpec synth_sharkey_spec(int64_t d, int64_t n, double decay, double active_mean, int32_t rank, uint64_t seed) {
    SynthSpec s;
    s.kind = kSynthSharkey;
    s.n = n;
    s.d = d;
    s.decay = decay;
    s.active_mean = active_mean;
    s.correlation_rank = rank;
    s.seed = seed;
    return s;
}

void synth_check_spec(const SynthSpec& s) {
    auto fail_field = [](const char* field, const std::string& value, const char* valid) {
        invalid(std::string(field) + " is " + value + "; valid: " + valid);
    };
    auto str = [](double v) { return std::to_string(v); };
    if (s.kind != kSynthSaeBench && s.kind != kSynthSharkey)
        fail_field("kind", std::to_string(s.kind), "0 (synthsaebench) or 1 (sharkey)");
    if (s.n < 1 || s.n > INT32_MAX) fail_field("n_features", std::to_string(s.n), "1 .. 2^31-1");
    if (s.d < 1) fail_field("d", std::to_string(s.d), ">= 1");
    if (s.correlation_rank < 0) fail_field("correlation_rank", std::to_string(s.correlation_rank), ">= 0");
    if (s.kind == kSynthSharkey) {
        if (!(s.decay > 0 && s.decay <= 1)) fail_field("decay", str(s.decay), "(0, 1]");
        if (!(s.active_mean > 0 && s.active_mean <= static_cast<double>(s.n)))
            fail_field("active_mean", str(s.active_mean), "(0, n_features]");
        return;
    }
    if (!(s.zipf_exponent > 0) || !std::isfinite(s.zipf_exponent))
        fail_field("zipf_exponent", str(s.zipf_exponent), "> 0");
    if (!(s.p_min > 0 && s.p_min < s.p_max && s.p_max <= 1))
        fail_field("p_min, p_max", str(s.p_min) + ", " + str(s.p_max), "0 < p_min < p_max <= 1");
    if (s.root_nodes < 0) fail_field("root_nodes", std::to_string(s.root_nodes), ">= 0");
    if (s.root_nodes > 0) {
        if (s.branching_min < 2 || s.branching_max < s.branching_min)
            fail_field("branching", std::to_string(s.branching_min) + ".." + std::to_string(s.branching_max),
                       "2 <= min <= max");
        if (s.max_depth < 1) fail_field("max_depth", std::to_string(s.max_depth), ">= 1");
        if (!(s.me_portion >= 0 && s.me_portion <= 1)) fail_field("me_portion", str(s.me_portion), "[0, 1]");
        if (s.me_min_depth < 0) fail_field("me_min_depth", std::to_string(s.me_min_depth), ">= 0");
        if (s.me_max_depth >= 0 && s.me_max_depth < s.me_min_depth)
            fail_field("me_max_depth", std::to_string(s.me_max_depth), "-1 (none) or >= me_min_depth");
    }
    if (!(s.correlation_scale >= 0) || !std::isfinite(s.correlation_scale))
        fail_field("correlation_scale", str(s.correlation_scale), ">= 0");
    if (!(s.mean_start > 0 && s.mean_end > 0))
        fail_field("mean magnitudes", str(s.mean_start) + " -> " + str(s.mean_end), "both > 0");
    if (!(s.std_mean >= 0 && s.std_std >= 0))
        fail_field("std magnitudes", str(s.std_mean) + ", " + str(s.std_std), "both >= 0");
    if (!(s.bias_norm >= 0)) fail_field("bias_norm", str(s.bias_norm), ">= 0");
    if (s.ortho_steps < 0) fail_field("ortho_steps", std::to_string(s.ortho_steps), ">= 0");
    if (s.ortho_steps > 0 && !(s.ortho_lr > 0)) fail_field("ortho_lr", str(s.ortho_lr), "> 0");
    if (s.ortho_chunk < 1) fail_field("ortho_chunk", std::to_string(s.ortho_chunk), ">= 1");
}

double synth_inverse_normal_double(double p) {
    if (p <= 0) return -std::numeric_limits<double>::infinity();
    if (p >= 1) return std::numeric_limits<double>::infinity();
    // Acklam's rational approximation (relative error below 1.2e-9).
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                               1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                               6.680131188771972e+01, -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                               -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
    static const double e[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                               3.754408661907416e+00};
    double x;
    if (p < 0.02425 || p > 1 - 0.02425) {
        const double q = std::sqrt(-2 * std::log(p < 0.5 ? p : 1 - p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((e[0] * q + e[1]) * q + e[2]) * q + e[3]) * q + 1);
        if (p > 0.5) x = -x;
    } else {
        const double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    }
    // One Halley step on Phi(x) - p brings it to double precision.
    const double err = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
    const double u = err * std::sqrt(2 * M_PI) * std::exp(0.5 * x * x);
    return x - u / (1 + 0.5 * x * u);
}

SynthView SynthTruth::view() const {
    auto ptr = [](const auto& v) { return v.empty() ? nullptr : v.data(); };
    SynthView v{};
    v.kind = spec.kind;
    v.rank = spec.correlation_rank;
    v.n = spec.n;
    v.d = spec.d;
    v.seed = spec.seed;
    v.fire_probability = ptr(fire_probability);
    v.threshold = ptr(threshold);
    v.factor = ptr(factor);
    v.noise_scale = ptr(noise_scale);
    v.mean = ptr(mean);
    v.stddev = ptr(stddev);
    v.parent = ptr(parent);
    v.child_begin = ptr(child_begin);
    v.child = ptr(child);
    v.flags = ptr(flags);
    v.W = ptr(W);
    v.b = ptr(b);
    return v;
}

SynthTruth synth_build_codes(const SynthSpec& spec) {
    synth_check_spec(spec);
    SynthTruth t;
    t.spec = spec;
    const int64_t n = spec.n;
    const std::vector<double> p = spec.kind == kSynthSharkey ? sharkey_probabilities(spec) : zipf_probabilities(spec);

    if (spec.kind == kSynthSaeBench && spec.root_nodes > 0) {
        build_forest(spec, t);
    } else {
        t.parent.assign(n, -1);
        t.depth.assign(n, -1);
        t.flags.assign(n, 0);
        t.child_begin.assign(n + 1, 0);
    }
    for (int64_t i = 0; i < n; ++i)
        if (t.parent[i] < 0) t.top.push_back(static_cast<int32_t>(i));

    t.probability.resize(n);
    t.fire_probability.resize(n);
    const std::vector<double> factor =
        spec.compensate && spec.root_nodes > 0 ? compensation(t, p) : std::vector<double>(n, 1.0);
    for (int64_t i = 0; i < n; ++i) {
        const double corrected = p[i] * factor[i];
        if (corrected >= 1.0 && p[i] < 1.0) ++t.clamped;
        t.probability[i] = static_cast<float>(p[i]);
        t.fire_probability[i] = static_cast<float>(std::min(1.0, corrected));
    }

    build_correlation(spec, t);
    if (spec.correlation_rank > 0) {
        t.threshold.resize(n);
        // Phi^-1(1 - p') = -Phi^-1(p'), computed from p' itself (accurate for small p').
        for (int64_t i = 0; i < n; ++i)
            t.threshold[i] = static_cast<float>(-synth_inverse_normal_double(t.fire_probability[i]));
    }

    if (spec.kind == kSynthSaeBench) {
        t.mean.resize(n);
        t.stddev.resize(n);
        for (int64_t i = 0; i < n; ++i)
            t.mean[i] = static_cast<float>(
                n == 1 ? spec.mean_start
                       : spec.mean_start + (spec.mean_end - spec.mean_start) * static_cast<double>(i) /
                                               static_cast<double>(n - 1));
        if (spec.std_std > 0) {
            const std::vector<float> normals = normal_init(spec.seed, kKeyStddev, n, 1.0);
            for (int64_t i = 0; i < n; ++i)
                t.stddev[i] = static_cast<float>(std::fabs(spec.std_mean + spec.std_std * normals[i]));
        } else {
            std::fill(t.stddev.begin(), t.stddev.end(), static_cast<float>(spec.std_mean));
        }
    }
    return t;
}

void synth_build_dictionary(SynthTruth& t) {
    const SynthSpec& s = t.spec;
    const int64_t n = s.n, d = s.d;
    t.W = normal_init(s.seed, kKeyDictionary, n * d, 1.0);
    for (int64_t i = 0; i < n; ++i) {
        double squared = 0;
        for (int64_t j = 0; j < d; ++j) squared += static_cast<double>(t.W[i * d + j]) * t.W[i * d + j];
        const double norm = std::max(std::sqrt(squared), 1e-8);
        for (int64_t j = 0; j < d; ++j) t.W[i * d + j] = static_cast<float>(t.W[i * d + j] / norm);
    }
    if (s.kind == kSynthSaeBench && s.ortho_steps > 0)
        synth_orthogonalize(n, d, t.W.data(), s.ortho_steps, static_cast<float>(s.ortho_lr), s.ortho_chunk);
    t.b.assign(d, 0.0f);
    if (s.kind == kSynthSaeBench && s.bias_norm > 0) {
        const std::vector<float> normals = normal_init(s.seed, kKeyBias, d, 1.0);
        double squared = 0;
        for (const float v : normals) squared += static_cast<double>(v) * v;
        const double scale = s.bias_norm / std::max(std::sqrt(squared), 1e-8);
        for (int64_t j = 0; j < d; ++j) t.b[j] = static_cast<float>(normals[j] * scale);
    }
}

}  // namespace ne
