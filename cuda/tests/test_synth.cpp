// The synthetic generator (models/synth.h, docs/synthsaebench.md) against its specification: the float
// transcendental functions, the ground truth (Zipf probabilities, the forest's numbering, compensation, the copula
// factor, magnitudes, the orthogonalised dictionary), sample statistics on large samples against the model they
// imply (firing rates, exclusion, gating, parent scaling, magnitude moments, copula joint firing), the 16k
// preset's true L0, the Sharkey set, and determinism (same seed, same bytes; any sample alone; thread counts;
// the CPU sampler equal to the definitions bit for bit).
// `test_synth --bench` measures the sampler's throughput; `--bench-ortho` also times the 16k orthogonalisation.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "models/synth_truth.h"

using namespace ne;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double phi(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI); }

// P(z_i > a, z_j > b) for a standard bivariate normal with correlation rho (Simpson's rule over z_i).
double upper_orthant(double a, double b, double rho) {
    const double hi = 9.0, root = std::sqrt(1 - rho * rho);
    if (a >= hi) return 0;
    const int steps = 4000;
    const double h = (hi - a) / steps;
    double sum = 0;
    for (int k = 0; k <= steps; ++k) {
        const double x = a + k * h, w = k == 0 || k == steps ? 1 : (k % 2 ? 4 : 2);
        sum += w * phi(x) * (1 - Phi((b - rho * x) / root));
    }
    return sum * h / 3;
}

template <typename T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// Probability that feature i is active in a sample when every feature's draw is independent (rank 0): a feature
// without a parent is active with q_i = p'_i P(magnitude > 0); a child c of P with A_P q_c w_c, w_c = E[1/(1+K)]
// for an exclusive P (K: the other active siblings), else 1.
std::vector<double> independent_rates(const SynthTruth& t) {
    const int64_t n = t.spec.n;
    std::vector<double> q(n), A(n);
    for (int64_t i = 0; i < n; ++i) {
        const double positive =
            t.spec.kind == kSynthSharkey || t.stddev[i] == 0 ? 1.0 : Phi(t.mean[i] / static_cast<double>(t.stddev[i]));
        q[i] = t.fire_probability[i] * positive;
    }
    for (int64_t i = 0; i < n; ++i) {  // parents have lower indices than their children
        const int32_t P = t.parent[i];
        if (P < 0) {
            A[i] = q[i];
            continue;
        }
        double w = 1;
        if (t.flags[P] & kSynthExclusive) {
            std::vector<double> others(1, 1.0);  // distribution of K
            for (int64_t c = t.child_begin[P]; c < t.child_begin[P + 1]; ++c) {
                if (t.child[c] == i) continue;
                const double o = q[t.child[c]];
                others.push_back(0.0);
                for (size_t k = others.size() - 1; k >= 1; --k) others[k] = others[k] * (1 - o) + others[k - 1] * o;
                others[0] *= 1 - o;
            }
            w = 0;
            for (size_t k = 0; k < others.size(); ++k) w += others[k] / (1.0 + static_cast<double>(k));
        }
        A[i] = A[P] * q[i] * w;
    }
    return A;
}

// A reduced SynthSAEBench: 8 trees of branching 4 and depth 3 (680 features) and 344 free ones.
SynthSpec small_spec(int32_t rank) {
    SynthSpec s = synth_preset_16k();
    s.n = 1024;
    s.d = 48;
    s.root_nodes = 8;
    s.p_min = 2e-3;
    s.correlation_rank = rank;
    s.ortho_steps = 20;
    s.ortho_lr = 3e-3;
    s.seed = 7;
    return s;
}

// ---- float functions -------------------------------------------------------------------------------------------

void transcendentals() {
    // log: within 2 ulp of the double result over [2^-24, 1] (what the inverse normal needs) and beyond.
    double worst_log = 0;
    for (uint32_t bits = 0x33800000u; bits <= 0x40000000u; bits += 997u) {
        const float x = synth_bits_float(bits);
        const double exact = std::log(static_cast<double>(x));
        worst_log = std::max(worst_log, std::fabs(synth_log(x) - exact) / std::max(std::fabs(exact), 1e-30));
    }
    std::printf("  log: worst relative error %.2e\n", worst_log);
    CHECK(worst_log < 2.5e-7);
    CHECK(synth_log(1.0f) == 0.0f);

    // Inverse normal: against the double reference on the whole grid (every 7th point), exactly antisymmetric.
    double worst = 0;
    bool antisymmetric = true;
    for (uint32_t k = 0; k < (1u << 23); k += 7) {
        const float p = synth_open_uniform(k << 9);
        const double exact = synth_inverse_normal_double(static_cast<double>(p));
        const float value = synth_inverse_normal(p);
        worst = std::max(worst, std::fabs(value - exact) / (1 + std::fabs(exact)));
        antisymmetric = antisymmetric && synth_inverse_normal(1.0f - p) == -value;
    }
    std::printf("  inverse normal: worst error %.2e (1 + |x|)\n", worst);
    CHECK(worst < 1e-6);
    CHECK(antisymmetric);
    CHECK(synth_open_uniform(0) == 1.0f / 16777216.0f && synth_open_uniform(0xFFFFFFFFu) == 1.0f - 1.0f / 16777216.0f);
    // The double reference itself: Phi(Phi^-1(p)) = p.
    for (double p : {1e-9, 5e-4, 0.02, 0.3, 0.5, 0.77, 0.999})
        CHECK(ne_test::close(Phi(synth_inverse_normal_double(p)), p, 0, 1e-12));
}

// ---- ground truth ----------------------------------------------------------------------------------------------

void zipf_and_magnitudes() {
    const SynthTruth t = synth_build_codes(synth_preset_16k());
    const int64_t n = t.spec.n;
    CHECK(t.probability[0] == 0.4f);
    CHECK(ne_test::close(t.probability[n - 1], 5e-4, 0, 1e-6));
    // p_i = p_min + (p_max - p_min) ((i+1)^-1/2 - n^-1/2) / (1 - n^-1/2) at rank 100.
    CHECK(ne_test::close(t.probability[99], 5e-4 + (0.4 - 5e-4) * (0.1 - 1.0 / 128) / (1 - 1.0 / 128), 0, 1e-6));
    bool descending = true;
    for (int64_t i = 1; i < n; ++i) descending = descending && t.probability[i] <= t.probability[i - 1];
    CHECK(descending);
    CHECK(t.mean[0] == 5.0f && t.mean[n - 1] == 4.0f && ne_test::close(t.mean[n / 2], 5.0 - 8192.0 / 16383, 0, 1e-6));
    // Standard deviations |N(0.5, 0.5^2)|: mean 0.5 sqrt(2/pi) e^-1/2 + 0.5 (1 - 2 Phi(-1)), second moment 0.5.
    double sum = 0, squares = 0;
    bool positive = true;
    for (const float s : t.stddev) {
        sum += s;
        squares += static_cast<double>(s) * s;
        positive = positive && s >= 0;
    }
    const double expected = 0.5 * std::sqrt(2 / M_PI) * std::exp(-0.5) + 0.5 * (1 - 2 * Phi(-1));
    const double spread = std::sqrt(0.5 - expected * expected) / std::sqrt(static_cast<double>(n));
    std::printf("  stddev magnitudes: mean %.4f (expected %.4f)\n", sum / n, expected);
    CHECK(positive);
    CHECK(std::fabs(sum / n - expected) < 5 * spread);
    CHECK(std::fabs(squares / n - 0.5) < 0.03);
}

void forest() {
    // The 16k preset: 128 trees of 1 + 4 + 16 + 64 features numbered breadth-first over the forest.
    const SynthTruth t = synth_build_codes(synth_preset_16k());
    int64_t per_depth[4] = {0, 0, 0, 0}, free = 0, exclusive = 0, rescale = 0;
    for (int64_t i = 0; i < t.spec.n; ++i) {
        if (t.depth[i] < 0) ++free; else ++per_depth[t.depth[i]];
        exclusive += (t.flags[i] & kSynthExclusive) != 0;
        rescale += (t.flags[i] & kSynthRescale) != 0;
    }
    CHECK(per_depth[0] == 128 && per_depth[1] == 512 && per_depth[2] == 2048 && per_depth[3] == 8192);
    CHECK(free == 16384 - 10880 && t.top.size() == static_cast<size_t>(128 + free));
    CHECK(exclusive == 128 + 512 + 2048 && rescale == exclusive);
    // Roots 0..127; root r's children 128 + 4r ..; node 128's children 640..643; the last leaf is 10879.
    bool numbering = true;
    for (int32_t r = 0; r < 128; ++r)
        for (int32_t c = 0; c < 4; ++c) numbering = numbering && t.parent[128 + 4 * r + c] == r;
    numbering = numbering && t.parent[640] == 128 && t.parent[643] == 128 && t.parent[644] == 129;
    numbering = numbering && t.depth[10879] == 3 && t.depth[10880] == -1 && t.parent[2688] == 640;
    CHECK(numbering);
    CHECK(t.clamped == 0);

    // Random branching and a portion of exclusive parents: structure consistent, portion exact.
    SynthSpec s = small_spec(0);
    s.root_nodes = 5;
    s.branching_min = 2;
    s.branching_max = 5;
    s.me_portion = 0.5;
    s.me_min_depth = 1;
    const SynthTruth u = synth_build_codes(s);
    int64_t eligible = 0, chosen = 0, previous_parent = -1;
    bool consistent = true;
    for (int64_t i = 0; i < s.n; ++i) {
        const int64_t kids = u.child_begin[i + 1] - u.child_begin[i];
        consistent = consistent && kids <= 5 && (kids == 0 || kids >= 2 || i + kids == s.n);
        for (int64_t c = u.child_begin[i]; c < u.child_begin[i + 1]; ++c)
            consistent = consistent && u.parent[u.child[c]] == i && u.depth[u.child[c]] == u.depth[i] + 1;
        if (u.parent[i] >= 0) {  // breadth-first: parents of successive features never decrease
            consistent = consistent && u.parent[i] >= previous_parent;
            previous_parent = u.parent[i];
        }
        if (u.depth[i] >= 1 && u.depth[i] < s.max_depth && kids >= 2) ++eligible;
        chosen += (u.flags[i] & kSynthExclusive) != 0;
        consistent = consistent && (!(u.flags[i] & kSynthExclusive) || u.depth[i] >= 1);
    }
    std::printf("  random branching: %lld eligible parents, %lld exclusive\n", (long long)eligible, (long long)chosen);
    CHECK(consistent);
    CHECK(chosen == eligible / 2);
}

void compensation_by_hand() {
    // Root 0 with children 1, 2; 1 has 3, 4; 2 has 5, 6; all exclusive. p'_c = p_c / p_P (1 + p_sibling / p_P).
    SynthSpec s = small_spec(0);
    s.n = 7;
    s.root_nodes = 1;
    s.branching_min = s.branching_max = 2;
    s.max_depth = 2;
    s.zipf_exponent = 1.0;
    s.p_min = 0.05;
    s.p_max = 0.9;
    const SynthTruth t = synth_build_codes(s);
    const std::vector<double> p(t.probability.begin(), t.probability.end());
    const double expected[7] = {p[0],
                                p[1] / p[0] * (1 + p[2] / p[0]),
                                p[2] / p[0] * (1 + p[1] / p[0]),
                                p[3] / p[1] * (1 + p[4] / p[1]),
                                p[4] / p[1] * (1 + p[3] / p[1]),
                                p[5] / p[2] * (1 + p[6] / p[2]),
                                p[6] / p[2] * (1 + p[5] / p[2])};
    int64_t clamped = 0;
    for (int i = 0; i < 7; ++i) {
        clamped += expected[i] >= 1;
        CHECK(ne_test::close(t.fire_probability[i], std::min(1.0, expected[i]), 0, 2e-7));
    }
    CHECK(t.clamped == clamped);
    CHECK(t.threshold.empty());  // rank 0: no copula
}

void copula_factor() {
    const SynthTruth t = synth_build_codes(synth_preset_16k());
    const int64_t r = 25;
    double worst = 0, mean_square = 0;
    for (int64_t i = 0; i < t.spec.n; ++i) {
        double squared = 0;
        for (int64_t k = 0; k < r; ++k) squared += static_cast<double>(t.factor[i * r + k]) * t.factor[i * r + k];
        mean_square += squared;
        worst = std::max(worst, std::fabs(squared + static_cast<double>(t.noise_scale[i]) * t.noise_scale[i] - 1));
    }
    CHECK(worst < 1e-6);  // unit diagonal
    CHECK(std::fabs(mean_square / t.spec.n - r * 0.01) < 0.005);
    for (int64_t i : {0, 5000, 16383})
        CHECK(ne_test::close(t.threshold[i], -synth_inverse_normal_double(t.fire_probability[i]), 1e-6, 1e-6));

    // Rows that would leave less than 0.01 on the diagonal are shrunk to |F_i|^2 = 0.99.
    SynthSpec s = small_spec(4);
    s.correlation_scale = 1.0;
    const SynthTruth u = synth_build_codes(s);
    int64_t shrunk = 0;
    bool capped = true;
    for (int64_t i = 0; i < s.n; ++i) {
        double squared = 0;
        for (int64_t k = 0; k < 4; ++k) squared += static_cast<double>(u.factor[i * 4 + k]) * u.factor[i * 4 + k];
        capped = capped && squared <= 0.99 + 1e-6;
        shrunk += std::fabs(squared - 0.99) < 1e-6;
    }
    std::printf("  copula at scale 1, rank 4: %lld of %lld rows shrunk to |F|^2 = 0.99\n", (long long)shrunk,
                (long long)s.n);
    CHECK(capped && shrunk > s.n / 4);
}

void dictionary() {
    // The gradient of the orthogonalisation loss against central differences.
    const int64_t n = 6, d = 3;
    std::mt19937_64 rng(3);
    std::normal_distribution<float> normal(0.0f, 0.6f);
    std::vector<float> W(n * d), grad(n * d);
    for (auto& w : W) w = normal(rng);
    synth_ortho_loss_grad(n, d, W.data(), grad.data(), 4);
    double worst = 0;
    for (int64_t e = 0; e < n * d; ++e) {
        const float keep = W[e], h = 1e-3f;
        W[e] = keep + h;
        const double up = synth_ortho_loss_grad(n, d, W.data(), nullptr, 4);
        W[e] = keep - h;
        const double down = synth_ortho_loss_grad(n, d, W.data(), nullptr, 4);
        W[e] = keep;
        const double numeric = (up - down) / (static_cast<double>(keep + h) - static_cast<double>(keep - h));
        worst = std::max(worst, std::fabs(numeric - grad[e]) / (1 + std::fabs(numeric)));
    }
    std::printf("  orthogonalisation gradient vs differences: worst %.2e\n", worst);
    CHECK(worst < 2e-3);

    // Orthogonalisation lowers the largest |cos| and the loss; rows end unit-norm; b has the asked norm.
    auto max_cos = [](const std::vector<float>& M, int64_t rows, int64_t cols) {
        double worst_cos = 0;
        for (int64_t i = 0; i < rows; ++i)
            for (int64_t j = i + 1; j < rows; ++j) {
                double dot = 0;
                for (int64_t k = 0; k < cols; ++k) dot += static_cast<double>(M[i * cols + k]) * M[j * cols + k];
                worst_cos = std::max(worst_cos, std::fabs(dot));
            }
        return worst_cos;
    };
    SynthSpec s = small_spec(0);
    s.n = 256;
    s.d = 32;
    s.root_nodes = 0;
    s.ortho_steps = 0;
    SynthTruth plain = synth_build_codes(s);
    synth_build_dictionary(plain);
    s.ortho_steps = 100;
    s.ortho_lr = 3e-3;
    SynthTruth ortho = synth_build_codes(s);
    synth_build_dictionary(ortho);
    const double before = synth_ortho_loss_grad(s.n, s.d, plain.W.data(), nullptr, 64);
    const double after = synth_ortho_loss_grad(s.n, s.d, ortho.W.data(), nullptr, 64);
    const double cos_before = max_cos(plain.W, s.n, s.d), cos_after = max_cos(ortho.W, s.n, s.d);
    std::printf("  256 x 32, 100 Adam steps at 3e-3: loss %.1f -> %.1f, max |cos| %.3f -> %.3f\n", before, after,
                cos_before, cos_after);
    CHECK(after < 0.9 * before && cos_after < cos_before);
    double worst_norm = 0, bias = 0;
    for (int64_t i = 0; i < s.n; ++i) {
        double squared = 0;
        for (int64_t k = 0; k < s.d; ++k) squared += static_cast<double>(ortho.W[i * s.d + k]) * ortho.W[i * s.d + k];
        worst_norm = std::max(worst_norm, std::fabs(std::sqrt(squared) - 1));
    }
    for (const float v : ortho.b) bias += static_cast<double>(v) * v;
    CHECK(worst_norm < 1e-6);
    CHECK(ne_test::close(std::sqrt(bias), 0.5, 1e-6, 0));
}

// ---- samples ---------------------------------------------------------------------------------------------------

// Per-feature firing rates against the independent-draw model, the forest's rules on every sample, magnitude
// moments, and parent scaling, on 200k samples of the reduced preset without correlation.
void sample_statistics() {
    SynthTruth t = synth_build_codes(small_spec(0));
    const SynthView v = t.view();
    const int64_t n = t.spec.n, S = 200000;
    SynthSparseCodes codes;
    synth_sample_cpu(t, Stream::kTrain, 3, 0, S, nullptr, nullptr, &codes);
    std::vector<double> count(n, 0), sum(n, 0), squares(n, 0);
    std::vector<float> dense(n, 0.0f);
    int64_t exclusion_broken = 0, orphans = 0, scaling_wrong = 0, magnitude_wrong = 0;
    double l0_squares = 0;
    for (int64_t t_ = 0; t_ < S; ++t_) {
        const int64_t first = codes.row_begin[t_], last = codes.row_begin[t_ + 1];
        const double l0 = static_cast<double>(last - first);
        l0_squares += l0 * l0;
        for (int64_t a = first; a < last; ++a) dense[codes.index[a]] = codes.value[a];
        for (int64_t a = first; a < last; ++a) {
            const int32_t i = codes.index[a];
            const float value = codes.value[a];
            count[i] += 1;
            sum[i] += value;
            squares[i] += static_cast<double>(value) * value;
            const float raw = synth_magnitude(v, i, Stream::kTrain, 3, static_cast<uint32_t>(t_));
            const int32_t P = t.parent[i];
            if (P < 0) {
                magnitude_wrong += value != raw;
            } else if (!(dense[P] > 0.0f)) {
                ++orphans;
            } else {
                scaling_wrong += value != synth_child_value(v, P, raw, dense[P]);
            }
            if (t.flags[i] & kSynthExclusive) {
                int active_children = 0;
                for (int64_t c = t.child_begin[i]; c < t.child_begin[i + 1]; ++c) active_children += dense[t.child[c]] > 0;
                exclusion_broken += active_children > 1;
            }
        }
        for (int64_t a = first; a < last; ++a) dense[codes.index[a]] = 0.0f;
    }
    CHECK(exclusion_broken == 0);
    CHECK(orphans == 0);
    CHECK(scaling_wrong == 0);
    CHECK(magnitude_wrong == 0);

    const std::vector<double> A = independent_rates(t);
    double worst_z = 0, model_l0 = 0, target_l0 = 0, worst_target = 0;
    int64_t within_10 = 0;
    for (int64_t i = 0; i < n; ++i) {
        const double rate = count[i] / S, spread = std::sqrt(A[i] * (1 - A[i]) / S) + 1e-9;
        worst_z = std::max(worst_z, std::fabs(rate - A[i]) / spread);
        model_l0 += A[i];
        target_l0 += t.probability[i];
        const double off = std::fabs(A[i] - t.probability[i]) / t.probability[i];
        worst_target = std::max(worst_target, off);
        within_10 += off <= 0.1;
    }
    const double l0 = static_cast<double>(codes.index.size()) / S;
    const double l0_spread = std::sqrt((l0_squares / S - l0 * l0) / S);
    std::printf("  1024 features, 200k samples: L0 %.3f (model %.3f, targets %.3f); worst per-feature |z| %.2f\n", l0,
                model_l0, target_l0, worst_z);
    std::printf("  compensation: model rate within 10%% of the target for %lld of %lld features (worst %.0f%% off)\n",
                (long long)within_10, (long long)n, 100 * worst_target);
    CHECK(worst_z < 5.5);
    CHECK(std::fabs(l0 - model_l0) < 5 * l0_spread);

    // Magnitudes of the busiest features without a parent: relu(N(mu, sigma^2)) given > 0.
    for (int32_t i : {0, 1, 2, 700}) {
        const double mu = t.mean[i], sigma = t.stddev[i], a = -mu / sigma;
        const double tail = 1 - Phi(a), lambda = phi(a) / tail;
        const double mean = mu + sigma * lambda, variance = sigma * sigma * (1 + a * lambda - lambda * lambda);
        const double m = sum[i] / count[i], var = squares[i] / count[i] - m * m;
        CHECK(std::fabs(m - mean) < 5 * std::sqrt(variance / count[i]));
        CHECK(std::fabs(var - variance) < 6 * variance * std::sqrt(2.0 / count[i]) + 1e-6);
    }
}

// Joint firing of copula pairs against the bivariate normal orthant of their correlation F_i . F_j.
void copula_statistics() {
    SynthSpec s = small_spec(2);
    s.n = 12;
    s.root_nodes = 0;
    s.zipf_exponent = 1.0;
    s.p_min = 0.1;
    s.p_max = 0.4;
    s.correlation_scale = 0.55;
    s.std_mean = 0.0;
    s.std_std = 0.0;  // magnitude always the mean: active exactly when fired
    const SynthTruth t = synth_build_codes(s);
    const int64_t n = s.n, S = 200000;
    std::vector<float> codes(S * n);
    synth_sample_cpu(t, Stream::kEvaluate, 0, 0, S, nullptr, codes.data(), nullptr);
    double worst_z = 0, strongest = 0;
    for (int64_t i = 0; i < n; ++i) {
        double fired = 0;
        for (int64_t k = 0; k < S; ++k) fired += codes[k * n + i] > 0;
        const double p = t.fire_probability[i];
        worst_z = std::max(worst_z, std::fabs(fired / S - p) / std::sqrt(p * (1 - p) / S));
        for (int64_t j = i + 1; j < n; ++j) {
            const double rho = static_cast<double>(t.factor[2 * i]) * t.factor[2 * j] +
                               static_cast<double>(t.factor[2 * i + 1]) * t.factor[2 * j + 1];
            const double both = upper_orthant(t.threshold[i], t.threshold[j], rho);
            double seen = 0;
            for (int64_t k = 0; k < S; ++k) seen += codes[k * n + i] > 0 && codes[k * n + j] > 0;
            worst_z = std::max(worst_z, std::fabs(seen / S - both) / std::sqrt(both * (1 - both) / S));
            const double pj = t.fire_probability[j];
            strongest = std::max(strongest, std::fabs(both - p * pj) / std::sqrt(p * (1 - p) * pj * (1 - pj)));
        }
    }
    std::printf("  copula, 12 features, 200k samples: worst |z| %.2f over marginals and 66 pairs (strongest "
                "indicator correlation %.2f)\n", worst_z, strongest);
    CHECK(worst_z < 5.5);
    CHECK(strongest > 0.1);  // the check has something to see
}

void preset_16k_l0() {
    const auto start = std::chrono::steady_clock::now();
    const SynthTruth t = synth_build_codes(synth_preset_16k());
    const int64_t S = 32768;
    SynthSparseCodes codes;
    synth_sample_cpu(t, Stream::kEvaluate, 0, 0, S, nullptr, nullptr, &codes);
    double squares = 0;
    for (int64_t k = 0; k < S; ++k) {
        const double l0 = static_cast<double>(codes.row_begin[k + 1] - codes.row_begin[k]);
        squares += l0 * l0;
    }
    const double l0 = static_cast<double>(codes.index.size()) / S, spread = std::sqrt((squares / S - l0 * l0) / S);
    const std::vector<double> A = independent_rates(t);
    double model = 0, target = 0;
    for (int64_t i = 0; i < t.spec.n; ++i) {
        model += A[i];
        target += t.probability[i];
    }
    std::printf("  16k preset: true L0 %.2f +- %.2f over %lld samples (independent-draw model %.2f, sum of target "
                "probabilities %.2f; %lld probabilities clamped) in %.1f s\n",
                l0, spread, (long long)S, model, target, (long long)t.clamped, seconds_since(start));
    CHECK(std::fabs(l0 - 34.0) < 1.5);            // the docs: about 34
    CHECK(std::fabs(l0 - model) < 0.03 * model);  // correlations at scale 0.1 barely move it
}

void sharkey() {
    const SynthTruth t = synth_build([] { return synth_sharkey_spec(64, 256, 0.99, 5.0, 0, 11); }());
    double total = 0;
    for (const float p : t.probability) total += p;
    CHECK(ne_test::close(total, 5.0, 1e-4, 0));
    CHECK(t.b.size() == 64 && std::all_of(t.b.begin(), t.b.end(), [](float b) { return b == 0.0f; }));
    const int64_t S = 100000, n = 256;
    std::vector<float> codes(S * n);
    synth_sample_cpu(t, Stream::kTrain, 0, 0, S, nullptr, codes.data(), nullptr);
    double worst_z = 0, sum = 0, active = 0;
    bool in_range = true;
    for (int64_t i = 0; i < n; ++i) {
        double fired = 0;
        for (int64_t k = 0; k < S; ++k) {
            const float c = codes[k * n + i];
            if (c == 0.0f) continue;
            fired += 1;
            sum += c;
            in_range = in_range && c > 0.0f && c <= 1.0f;
        }
        active += fired;
        const double p = t.probability[i];
        worst_z = std::max(worst_z, std::fabs(fired / S - p) / std::sqrt(p * (1 - p) / S));
    }
    std::printf("  sharkey 256 features: L0 %.3f (active_mean 5), worst |z| %.2f, mean coefficient %.4f\n",
                active / S, worst_z, sum / active);
    CHECK(in_range && worst_z < 5.5);
    CHECK(std::fabs(sum / active - 0.5) < 5 * std::sqrt(1.0 / 12 / active));

    // Correlated: marginals kept; the copula's correlation is S F F^T S (unit diagonal).
    const SynthTruth c = synth_build(synth_sharkey_spec(64, 16, 0.9, 4.0, 3, 12));
    std::vector<float> cc(S * 16);
    synth_sample_cpu(c, Stream::kTrain, 0, 0, S, nullptr, cc.data(), nullptr);
    double worst = 0;
    for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = i + 1; j < 5; ++j) {
            double rho = 0;
            for (int k = 0; k < 3; ++k) rho += static_cast<double>(c.factor[i * 3 + k]) * c.factor[j * 3 + k];
            const double both = upper_orthant(c.threshold[i], c.threshold[j], rho);
            double seen = 0;
            for (int64_t k = 0; k < S; ++k) seen += cc[k * 16 + i] > 0 && cc[k * 16 + j] > 0;
            worst = std::max(worst, std::fabs(seen / S - both) / std::sqrt(both * (1 - both) / S));
        }
    std::printf("  sharkey correlated: worst |z| %.2f over 10 pairs\n", worst);
    CHECK(worst < 5.5);
}

// ---- determinism -----------------------------------------------------------------------------------------------

void determinism() {
    const SynthTruth a = synth_build(small_spec(25)), b = synth_build(small_spec(25));
    CHECK(same_bytes(a.W, b.W) && same_bytes(a.b, b.b) && same_bytes(a.fire_probability, b.fire_probability) &&
          same_bytes(a.threshold, b.threshold) && same_bytes(a.factor, b.factor) && same_bytes(a.stddev, b.stddev) &&
          same_bytes(a.parent, b.parent) && same_bytes(a.flags, b.flags));
    SynthSpec other = small_spec(25);
    other.seed += 1;
    CHECK(!same_bytes(synth_build_codes(other).factor, a.factor));

    const int64_t S = 96, d = a.spec.d, n = a.spec.n;
    std::vector<float> x1(S * d), x2(S * d), x3(S * d), codes(S * n);
    SynthSparseCodes sparse;
    synth_sample_cpu(a, Stream::kTrain, 5, 1000, S, x1.data(), codes.data(), &sparse);
    synth_sample_cpu(b, Stream::kTrain, 5, 1000, S, x2.data(), nullptr, nullptr);
    CHECK(same_bytes(x1, x2));
    // Split into two calls, and on one thread: the same bytes.
    synth_sample_cpu(a, Stream::kTrain, 5, 1000, 37, x3.data(), nullptr, nullptr);
    synth_sample_cpu(a, Stream::kTrain, 5, 1037, S - 37, x3.data() + 37 * d, nullptr, nullptr);
    CHECK(same_bytes(x1, x3));
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    synth_sample_cpu(a, Stream::kTrain, 5, 1000, S, x3.data(), nullptr, nullptr);
    omp_set_num_threads(threads);
    CHECK(same_bytes(x1, x3));
    // Another step or stream draws other samples.
    synth_sample_cpu(a, Stream::kTrain, 6, 1000, S, x3.data(), nullptr, nullptr);
    CHECK(!same_bytes(x1, x3));

    // Every sample equals the definitions alone, bit for bit: codes, then x = b + sum_i a_i W_i by fmaf in
    // ascending i (what a CUDA kernel computes).
    int64_t differ = 0;
    std::vector<int32_t> index;
    std::vector<float> value;
    for (int64_t k = 0; k < S; ++k) {
        synth_sample_reference(a, Stream::kTrain, 5, static_cast<uint32_t>(1000 + k), index, value);
        const int64_t first = sparse.row_begin[k], count = sparse.row_begin[k + 1] - first;
        differ += count != static_cast<int64_t>(index.size());
        if (count != static_cast<int64_t>(index.size())) continue;
        differ += std::memcmp(index.data(), sparse.index.data() + first, count * sizeof(int32_t)) != 0;
        differ += std::memcmp(value.data(), sparse.value.data() + first, count * sizeof(float)) != 0;
        std::vector<float> x(a.b);
        for (size_t e = 0; e < index.size(); ++e)
            for (int64_t j = 0; j < d; ++j) x[j] = std::fma(value[e], a.W[index[e] * d + j], x[j]);
        differ += std::memcmp(x.data(), x1.data() + k * d, d * sizeof(float)) != 0;
        for (int64_t i = 0; i < n; ++i) {
            const auto it = std::lower_bound(index.begin(), index.end(), static_cast<int32_t>(i));
            const float expected = it != index.end() && *it == i ? value[it - index.begin()] : 0.0f;
            differ += std::memcmp(&expected, &codes[k * n + i], sizeof(float)) != 0;
        }
    }
    CHECK(differ == 0);

    // The same on the 16k preset's codes (25-dimensional copula, the sampler's bracketed firing test).
    const SynthTruth big = synth_build_codes(synth_preset_16k());
    SynthSparseCodes bc;
    synth_sample_cpu(big, Stream::kEvaluate, 9, 0, 64, nullptr, nullptr, &bc);
    int64_t big_differ = 0;
    for (int64_t k = 0; k < 64; ++k) {
        synth_sample_reference(big, Stream::kEvaluate, 9, static_cast<uint32_t>(k), index, value);
        const int64_t first = bc.row_begin[k], count = bc.row_begin[k + 1] - first;
        big_differ += count != static_cast<int64_t>(index.size()) ||
                      !std::equal(index.begin(), index.end(), bc.index.begin() + first) ||
                      std::memcmp(value.data(), bc.value.data() + first, count * sizeof(float)) != 0;
    }
    CHECK(big_differ == 0);
}

// ---- throughput ------------------------------------------------------------------------------------------------

void bench(bool ortho) {
    auto rate = [](const SynthTruth& t, int64_t batch, int batches, bool with_x) {
        std::vector<float> x(with_x ? batch * t.spec.d : 0);
        SynthSparseCodes codes;
        synth_sample_cpu(t, Stream::kTrain, 0, 0, batch, with_x ? x.data() : nullptr, nullptr, &codes);  // warm
        const auto start = std::chrono::steady_clock::now();
        for (int b = 1; b <= batches; ++b)
            synth_sample_cpu(t, Stream::kTrain, static_cast<uint32_t>(b), 0, batch, with_x ? x.data() : nullptr,
                             nullptr, &codes);
        return static_cast<double>(batch) * batches / seconds_since(start);
    };
    SynthSpec s = synth_preset_16k();
    s.ortho_steps = 0;  // the sampler's speed does not depend on W's values
    const SynthTruth big = synth_build(s);
    const SynthTruth small = synth_build(small_spec(25));
    std::printf("bench (%d threads): 16k preset x + codes %.0f samples/s, codes only %.0f samples/s\n",
                omp_get_max_threads(), rate(big, 1024, 20, true), rate(big, 1024, 20, false));
    std::printf("bench: reduced preset (1024 features, d 48) x + codes %.0f samples/s\n", rate(small, 1024, 50, true));
    const SynthTruth sharkey = synth_build(synth_sharkey_spec(256, 512, 0.99, 5.0, 4, 0));
    std::printf("bench: sharkey correlated (512 features, d 256) x + codes %.0f samples/s\n",
                rate(sharkey, 4096, 20, true));
    if (ortho) {
        SynthTruth t = synth_build_codes(synth_preset_16k());
        const auto start = std::chrono::steady_clock::now();
        synth_build_dictionary(t);
        std::printf("bench: 16k dictionary with 100 orthogonalisation steps: %.0f s\n", seconds_since(start));
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1 && (std::string(argv[1]) == "--bench" || std::string(argv[1]) == "--bench-ortho")) {
        bench(std::string(argv[1]) == "--bench-ortho");
        return 0;
    }
    const auto start = std::chrono::steady_clock::now();
    auto run = [&](const char* name, void (*test)()) {
        const auto begin = std::chrono::steady_clock::now();
        test();
        std::printf("%s: %.1f s\n", name, seconds_since(begin));
    };
    run("transcendentals", transcendentals);
    run("zipf_and_magnitudes", zipf_and_magnitudes);
    run("forest", forest);
    run("compensation_by_hand", compensation_by_hand);
    run("copula_factor", copula_factor);
    run("dictionary", dictionary);
    run("sample_statistics", sample_statistics);
    run("copula_statistics", copula_statistics);
    run("preset_16k_l0", preset_16k_l0);
    run("sharkey", sharkey);
    run("determinism", determinism);
    std::printf("total %.1f s\n", seconds_since(start));
    return ne_test::finish("test_synth");
}
