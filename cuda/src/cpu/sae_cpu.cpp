// CPU sparse autoencoder: the readable per-token reference of sae.h's definitions (sae_loss_and_grad, which the
// fast path in sae_blocked.cpp and any CUDA kernel are tested against) and the step's other pieces: decoder
// normalisation, gradient projection, Adam, dead-latent counters and initialisation.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/sae.h"
#include "models/training.h"

namespace ne {

void SaeTensors::resize(const SaeSpec& spec, bool encoder_panels) {
    W_enc.assign(encoder_panels ? sae_panel_elements(spec.d, spec.m) : spec.d * spec.m, 0.0f);
    b_enc.assign(spec.m, 0.0f);
    W_dec.assign(spec.m * spec.d, 0.0f);
    b_dec.assign(spec.d, 0.0f);
    log_threshold.assign(spec.architecture == kSaeJumpRelu ? spec.m : 0, 0.0f);
}

SaeParams<float> SaeTensors::params() const {
    return {W_enc.data(), b_enc.data(), W_dec.data(), b_dec.data(),
            log_threshold.empty() ? nullptr : log_threshold.data()};
}

SaeGrads<float> SaeTensors::grads() {
    return {W_enc.data(), b_enc.data(), W_dec.data(), b_dec.data(),
            log_threshold.empty() ? nullptr : log_threshold.data()};
}

namespace {

// Loops over fewer elements than this run on one thread (a parallel region costs more than they do).
constexpr int64_t kParallelElements = int64_t(1) << 16;

// a ranks ahead of b: larger value, or equal value and lower index.
template <typename T>
bool ranks_ahead(T va, int64_t ia, T vb, int64_t ib) {
    return va > vb || (va == vb && ia < ib);
}

// The n best of `order` (indices into values) in rank order.
template <typename T>
void select_best(std::vector<int64_t>& order, const T* values, int64_t n) {
    std::partial_sort(order.begin(), order.begin() + n, order.end(),
                      [&](int64_t a, int64_t b) { return ranks_ahead(values[a], a, values[b], b); });
    order.resize(n);
}

}  // namespace

template <typename T>
double sae_auxk_loss_and_grad(const SaeSpec& s, SaeParams<T> p, const T* x, const T* residual, const uint8_t* dead,
                              SaeGrads<T>* g) {
    const int64_t d = s.d, m = s.m, B = s.batch;
    std::vector<int64_t> dead_list;
    for (int64_t j = 0; j < m; ++j)
        if (dead[j]) dead_list.push_back(j);
    if (dead_list.empty() || s.auxk_alpha == 0) return 0.0;
    const int64_t ka = std::min<int64_t>(s.aux_k(), static_cast<int64_t>(dead_list.size()));
    std::vector<T> xc(B * d), u(m), z(B * ka), diff(B * d);
    std::vector<int64_t> chosen(B * ka);
    T num = T(0), den = T(0);
    for (int64_t t = 0; t < B; ++t) {
        T* xct = xc.data() + t * d;
        for (int64_t i = 0; i < d; ++i) xct[i] = x[t * d + i] - p.b_dec[i];
        for (int64_t j : dead_list) {
            T a = p.b_enc[j];
            for (int64_t i = 0; i < d; ++i) a += xct[i] * p.W_enc[i * m + j];
            u[j] = a;
        }
        std::vector<int64_t> order = dead_list;
        select_best(order, u.data(), ka);
        T* dt = diff.data() + t * d;
        for (int64_t i = 0; i < d; ++i) dt[i] = residual[t * d + i];
        for (int64_t q = 0; q < ka; ++q) {
            const int64_t j = order[q];
            const T zj = u[j] > T(0) ? u[j] : T(0);
            chosen[t * ka + q] = j;
            z[t * ka + q] = zj;
            for (int64_t i = 0; i < d; ++i) dt[i] -= zj * p.W_dec[j * d + i];
        }
        for (int64_t i = 0; i < d; ++i) {
            num += dt[i] * dt[i];
            den += residual[t * d + i] * residual[t * d + i];
        }
    }
    if (den == T(0)) return 0.0;
    const T alpha = static_cast<T>(s.auxk_alpha);
    if (g != nullptr) {
        // d auxk / d e^_t = -2 alpha (e_t - e^_t) / sum ||e||^2, the denominator held constant with e.
        const T scale = T(-2) * alpha / den;
        for (int64_t t = 0; t < B; ++t) {
            const T* dt = diff.data() + t * d;
            const T* xct = xc.data() + t * d;
            for (int64_t q = 0; q < ka; ++q) {
                const int64_t j = chosen[t * ka + q];
                const T zj = z[t * ka + q];
                T dz = T(0);
                for (int64_t i = 0; i < d; ++i) {
                    dz += scale * dt[i] * p.W_dec[j * d + i];
                    g->W_dec[j * d + i] += zj * scale * dt[i];
                }
                if (!(zj > T(0))) continue;
                for (int64_t i = 0; i < d; ++i) g->W_enc[i * m + j] += dz * xct[i];
                g->b_enc[j] += dz;
            }
        }
    }
    return static_cast<double>(alpha * num / den);
}

template <typename T>
SaeLoss sae_loss_and_grad(const SaeSpec& s, SaeParams<T> p, const T* x, const int64_t* since_fired, SaeGrads<T>* g,
                          int64_t* fire_count, T* x_hat) {
    const int64_t d = s.d, m = s.m, B = s.batch;
    const int32_t arch = s.architecture;
    const bool jump = arch == kSaeJumpRelu;
    if (arch == kSaeMatchingPursuit) {  // no encoder (sae_pursuit.cpp)
        if (g != nullptr) {
            std::fill(g->W_enc, g->W_enc + d * m, T(0));
            std::fill(g->b_enc, g->b_enc + m, T(0));
        }
        return sae_pursuit_loss_and_grad<T>(s, p.W_dec, p.b_dec, x, since_fired, g != nullptr ? g->W_dec : nullptr,
                                            g != nullptr ? g->b_dec : nullptr, fire_count, x_hat);
    }
    SaeLoss loss;

    // Encoder: u = (x - b_dec) W_enc + b_enc.
    std::vector<T> xc(B * d), u(B * m), z(B * m, T(0)), r(B * d);
    for (int64_t t = 0; t < B; ++t) {
        T* xct = xc.data() + t * d;
        for (int64_t i = 0; i < d; ++i) xct[i] = x[t * d + i] - p.b_dec[i];
        for (int64_t j = 0; j < m; ++j) {
            T a = p.b_enc[j];
            for (int64_t i = 0; i < d; ++i) a += xct[i] * p.W_enc[i * m + j];
            u[t * m + j] = a;
        }
    }
    std::vector<T> theta(jump ? m : 0);
    for (int64_t j = 0; j < static_cast<int64_t>(theta.size()); ++j) theta[j] = std::exp(p.log_threshold[j]);

    // Selection: which codes are on (for jumprelu: above the threshold).
    std::vector<uint8_t> on(B * m, 0);
    if (arch == kSaeTopK) {
        for (int64_t t = 0; t < B; ++t) {
            std::vector<int64_t> order(m);
            std::iota(order.begin(), order.end(), int64_t(0));
            select_best(order, u.data() + t * m, s.k);
            for (int64_t j : order) on[t * m + j] = 1;
        }
    } else if (sae_batch_selects(arch) && !s.inference) {
        std::vector<int64_t> order(B * m);
        std::iota(order.begin(), order.end(), int64_t(0));
        select_best(order, u.data(), s.k * B);
        for (int64_t e : order) on[e] = 1;
    } else {
        for (int64_t t = 0; t < B; ++t)
            for (int64_t j = 0; j < m; ++j) {
                const T cut = jump ? theta[j] : sae_batch_selects(arch) ? static_cast<T>(s.threshold) : T(0);
                on[t * m + j] = u[t * m + j] > cut;
            }
    }
    int64_t nonzero = 0;
    double min_kept = 0;
    if (fire_count != nullptr) std::fill(fire_count, fire_count + m, int64_t(0));
    for (int64_t e = 0; e < B * m; ++e) {
        if (!on[e]) continue;
        z[e] = jump ? u[e] : u[e] > T(0) ? u[e] : T(0);
        if (z[e] == T(0)) continue;
        ++nonzero;
        if (fire_count != nullptr) ++fire_count[e % m];
        const double v = static_cast<double>(z[e]);
        if (min_kept == 0 || v < min_kept) min_kept = v;
    }
    loss.l0 = static_cast<double>(nonzero) / static_cast<double>(B);
    if (sae_batch_selects(arch) && !s.inference) loss.min_kept = min_kept;

    // Decoder and loss terms.
    std::vector<T> row_norm(m);
    for (int64_t j = 0; j < m; ++j) {
        T sq = T(0);
        for (int64_t i = 0; i < d; ++i) sq += p.W_dec[j * d + i] * p.W_dec[j * d + i];
        row_norm[j] = std::sqrt(sq);
    }
    std::vector<double> mean(d, 0.0);
    for (int64_t t = 0; t < B; ++t)
        for (int64_t i = 0; i < d; ++i) mean[i] += static_cast<double>(x[t * d + i]);
    for (auto& v : mean) v /= static_cast<double>(B);
    double sse = 0, variance = 0, sparsity = 0;
    for (int64_t t = 0; t < B; ++t) {
        T* rt = r.data() + t * d;
        for (int64_t i = 0; i < d; ++i) rt[i] = p.b_dec[i];
        for (int64_t j = 0; j < m; ++j) {
            const T zj = z[t * m + j];
            if (zj == T(0)) continue;
            for (int64_t i = 0; i < d; ++i) rt[i] += zj * p.W_dec[j * d + i];
            if (arch == kSaeRelu) sparsity += static_cast<double>(zj * row_norm[j]);
        }
        if (x_hat != nullptr) std::copy(rt, rt + d, x_hat + t * d);
        for (int64_t i = 0; i < d; ++i) {
            rt[i] -= x[t * d + i];
            sse += static_cast<double>(rt[i] * rt[i]);
            const double c = static_cast<double>(x[t * d + i]) - mean[i];
            variance += c * c;
        }
        if (jump)
            for (int64_t j = 0; j < m; ++j) sparsity += on[t * m + j];
    }
    loss.mse = sse / static_cast<double>(B);
    loss.fvu = variance > 0 ? sse / variance : 0.0;
    const double coefficient = arch == kSaeRelu ? s.l1_coefficient : jump ? s.l0_coefficient : 0.0f;
    loss.sparsity = coefficient * sparsity / static_cast<double>(B);

    // Matryoshka's inner levels: level_r [B][inner][d] = x^_l - x, x^_l from the latents below widths[l].
    const int inner = s.inner_levels();
    std::vector<T> level_r(B * inner * d);
    if (inner > 0) {
        double inner_sse = 0;
        for (int64_t t = 0; t < B; ++t)
            for (int l = 0; l < inner; ++l) {
                T* lr = level_r.data() + (t * inner + l) * d;
                for (int64_t i = 0; i < d; ++i) lr[i] = p.b_dec[i];
                for (int64_t j = 0; j < s.widths[l]; ++j) {
                    const T zj = z[t * m + j];
                    if (zj == T(0)) continue;
                    for (int64_t i = 0; i < d; ++i) lr[i] += zj * p.W_dec[j * d + i];
                }
                for (int64_t i = 0; i < d; ++i) {
                    lr[i] -= x[t * d + i];
                    inner_sse += static_cast<double>(lr[i] * lr[i]);
                }
            }
        loss.sparsity = inner_sse / static_cast<double>(B);
    }

    // Dead latents for AuxK.
    std::vector<uint8_t> dead(m, 0);
    if (since_fired != nullptr)
        for (int64_t j = 0; j < m; ++j) {
            dead[j] = since_fired[j] >= s.dead_window;
            loss.dead += dead[j];
        }
    const bool auxk = sae_has_auxk(arch) && loss.dead > 0 && s.auxk_alpha != 0;

    if (g != nullptr) {
        std::fill(g->W_enc, g->W_enc + d * m, T(0));
        std::fill(g->b_enc, g->b_enc + m, T(0));
        std::fill(g->W_dec, g->W_dec + m * d, T(0));
        std::fill(g->b_dec, g->b_dec + d, T(0));
        if (jump) std::fill(g->log_threshold, g->log_threshold + m, T(0));
        const T scale = T(2) / static_cast<T>(B);
        const T l1 = static_cast<T>(s.l1_coefficient) / static_cast<T>(B);
        const T eps = static_cast<T>(s.jump_bandwidth);
        const T l0 = static_cast<T>(s.l0_coefficient) / static_cast<T>(B);
        // dxl [inner + 1][d]: d loss/d x^ of the full level (row inner), and for each inner level l the sum over
        // the levels from l on, which is what a latent first held by level l sees (sae.h).
        std::vector<T> dxl((inner + 1) * d);
        for (int64_t t = 0; t < B; ++t) {
            const T* xct = xc.data() + t * d;
            T* dxh = dxl.data() + inner * d;
            for (int64_t i = 0; i < d; ++i) dxh[i] = scale * r[t * d + i];
            for (int l = inner - 1; l >= 0; --l)
                for (int64_t i = 0; i < d; ++i)
                    dxl[l * d + i] = dxl[(l + 1) * d + i] + scale * level_r[(t * inner + l) * d + i];
            for (int64_t i = 0; i < d; ++i) g->b_dec[i] += dxl[i];
            for (int64_t j = 0; j < m; ++j) {
                const T* dxj = inner > 0 ? dxl.data() + s.level_of(j) * d : dxh;
                const T uj = u[t * m + j], zj = z[t * m + j];
                const bool near = jump && std::abs(uj - theta[j]) < eps / T(2);
                if (zj == T(0) && !near) continue;
                T dz = T(0);
                for (int64_t i = 0; i < d; ++i) dz += dxj[i] * p.W_dec[j * d + i];
                if (zj != T(0)) {
                    for (int64_t i = 0; i < d; ++i) g->W_dec[j * d + i] += zj * dxj[i];
                    if (arch == kSaeRelu) {
                        dz += l1 * row_norm[j];
                        for (int64_t i = 0; i < d; ++i) g->W_dec[j * d + i] += l1 * zj * p.W_dec[j * d + i] / row_norm[j];
                    }
                }
                if (near) {
                    const T th = theta[j];
                    g->log_threshold[j] += th * (-(th / eps) * dz - l0 / eps);
                }
                if (zj == T(0)) continue;  // z = 0 with u on: ReLU's flat side (topk, batchtopk)
                for (int64_t i = 0; i < d; ++i) {
                    g->W_enc[i * m + j] += dz * xct[i];
                    g->b_dec[i] -= dz * p.W_enc[i * m + j];
                }
                g->b_enc[j] += dz;
            }
        }
    }
    if (auxk) {
        // One term per level with level_auxk (the residual of the levels up to it, its own dead latents), else
        // one over every dead latent on x - x^.
        std::vector<T> e(B * d);
        std::vector<uint8_t> level_dead(m);
        for (int l = 0; l < s.aux_levels(); ++l) {
            int64_t count = 0;
            for (int64_t j = 0; j < m; ++j) {
                level_dead[j] = dead[j] && j >= s.aux_begin(l) && j < s.aux_end(l);
                count += level_dead[j];
            }
            if (count == 0) continue;
            for (int64_t t = 0; t < B; ++t)
                for (int64_t i = 0; i < d; ++i)
                    e[t * d + i] = s.auxk_per_level() && l < inner ? -level_r[(t * inner + l) * d + i] : -r[t * d + i];
            SaeSpec term = s;
            term.auxk_alpha = static_cast<float>(s.auxk_alpha * s.aux_weight(count));
            loss.auxk += sae_auxk_loss_and_grad<T>(term, p, x, e.data(), level_dead.data(), g);
        }
    }
    return loss;
}

template SaeLoss sae_loss_and_grad<float>(const SaeSpec&, SaeParams<float>, const float*, const int64_t*,
                                          SaeGrads<float>*, int64_t*, float*);
template SaeLoss sae_loss_and_grad<double>(const SaeSpec&, SaeParams<double>, const double*, const int64_t*,
                                           SaeGrads<double>*, int64_t*, double*);
template double sae_auxk_loss_and_grad<float>(const SaeSpec&, SaeParams<float>, const float*, const float*,
                                              const uint8_t*, SaeGrads<float>*);
template double sae_auxk_loss_and_grad<double>(const SaeSpec&, SaeParams<double>, const double*, const double*,
                                               const uint8_t*, SaeGrads<double>*);

void sae_check_spec(const SaeSpec& s) {
    auto require = [](bool ok, const std::string& message) {
        if (!ok) invalid(message);
    };
    require(s.architecture >= kSaeTopK && s.architecture <= kSaeMatchingPursuit,
            "architecture is " + std::to_string(s.architecture) +
                "; valid: 0 (topk), 1 (batchtopk), 2 (relu), 3 (jumprelu), 4 (matryoshka_batchtopk), "
                "5 (matching_pursuit)");
    require(s.d >= 1, "d_in is " + std::to_string(s.d) + "; valid: >= 1");
    require(s.m >= 1 && s.m <= INT32_MAX, "d_sae is " + std::to_string(s.m) + "; valid: 1..2^31-1");
    require(s.batch >= 1, "batch is " + std::to_string(s.batch) + "; valid: >= 1");
    if (s.architecture == kSaeTopK || sae_batch_selects(s.architecture))
        require(s.k >= 1 && s.k <= s.m, "k is " + std::to_string(s.k) + "; valid: 1..d_sae = " + std::to_string(s.m));
    auto coefficient = [&](float v, const char* name) {
        require(std::isfinite(v) && v >= 0, std::string(name) + " is " + std::to_string(v) + "; valid: finite and >= 0");
    };
    coefficient(s.l1_coefficient, "l1_coefficient");
    coefficient(s.l0_coefficient, "l0_coefficient");
    coefficient(s.auxk_alpha, "auxk_alpha");
    require(std::isfinite(s.jump_bandwidth) && s.jump_bandwidth > 0,
            "jump_bandwidth is " + std::to_string(s.jump_bandwidth) + "; valid: > 0");
    require(s.k_aux >= 0 && s.k_aux <= s.m, "k_aux is " + std::to_string(s.k_aux) + "; valid: 0 (d_in/2) or 1..d_sae");
    require(s.dead_window >= 1, "dead_window is " + std::to_string(s.dead_window) + "; valid: >= 1");
    require(std::isfinite(s.threshold), "threshold is " + std::to_string(s.threshold) + "; valid: finite");
    require(std::isfinite(s.residual_threshold),
            "residual_threshold is " + std::to_string(s.residual_threshold) + "; valid: finite");
    require(s.max_iterations >= 0, "max_iterations is " + std::to_string(s.max_iterations) + "; valid: >= 0");
    if (s.architecture == kSaeMatryoshkaBatchTopK) {
        require(s.levels >= 1 && s.levels <= kSaeMaxLevels,
                "matryoshka levels is " + std::to_string(s.levels) + "; valid: 1.." + std::to_string(kSaeMaxLevels));
        for (int l = 0; l < s.levels; ++l)
            require(s.widths[l] >= 1 && (l == 0 || s.widths[l] > s.widths[l - 1]),
                    "matryoshka width " + std::to_string(l) + " is " + std::to_string(s.widths[l]) +
                        "; valid: >= 1 and strictly increasing");
        require(s.widths[s.levels - 1] == s.m, "the last matryoshka width is " + std::to_string(s.widths[s.levels - 1]) +
                                                   "; valid: d_sae = " + std::to_string(s.m));
    }
    require(s.level_auxk == 0 || (s.level_auxk == 1 && s.architecture == kSaeMatryoshkaBatchTopK),
            "level_auxk is " + std::to_string(s.level_auxk) + "; valid: 0, or 1 for matryoshka_batchtopk");
}

void sae_update_since_fired(int64_t m, int64_t batch, const int64_t* fire_count, int64_t* since_fired) {
    for (int64_t j = 0; j < m; ++j) since_fired[j] = fire_count[j] > 0 ? 0 : since_fired[j] + batch;
}

template <typename T>
bool sae_normalize_decoder(int64_t m, int64_t d, T* W_dec) {
    int non_finite = 0;
#pragma omp parallel for schedule(static) reduction(| : non_finite) if (m * d >= kParallelElements)
    for (int64_t j = 0; j < m; ++j) {
        T* w = W_dec + j * d;
        double sq = 0;
        for (int64_t i = 0; i < d; ++i) sq += static_cast<double>(w[i]) * static_cast<double>(w[i]);
        if (!std::isfinite(sq)) non_finite = 1;
        if (sq == 0) continue;
        const T inv = static_cast<T>(1.0 / std::sqrt(sq));
        for (int64_t i = 0; i < d; ++i) w[i] *= inv;
    }
    return non_finite == 0;
}

template <typename T>
void sae_project_decoder_grad(int64_t m, int64_t d, const T* W_dec, T* gW_dec) {
#pragma omp parallel for schedule(static) if (m * d >= kParallelElements)
    for (int64_t j = 0; j < m; ++j) {
        const T* w = W_dec + j * d;
        T* gj = gW_dec + j * d;
        double sq = 0, dot = 0;
        for (int64_t i = 0; i < d; ++i) {
            sq += static_cast<double>(w[i]) * static_cast<double>(w[i]);
            dot += static_cast<double>(w[i]) * static_cast<double>(gj[i]);
        }
        if (sq == 0) continue;
        const T along = static_cast<T>(dot / sq);  // (g . w^) w^ = (g . w / ||w||^2) w
        for (int64_t i = 0; i < d; ++i) gj[i] -= along * w[i];
    }
}

template bool sae_normalize_decoder<float>(int64_t, int64_t, float*);
template bool sae_normalize_decoder<double>(int64_t, int64_t, double*);
template void sae_project_decoder_grad<float>(int64_t, int64_t, const float*, float*);
template void sae_project_decoder_grad<double>(int64_t, int64_t, const double*, double*);

void sae_adam_update(const SaeSpec& spec, SaeTensors& p, const SaeTensors& g, SaeTensors& m1, SaeTensors& m2,
                     const AdamStep& step, const uint8_t* touched, bool encoder_panels) {
    const int64_t d = spec.d, m = spec.m;
    auto dense = [&](std::vector<float>& param, const std::vector<float>& grad, std::vector<float>& a,
                     std::vector<float>& b) {
        const int64_t n = static_cast<int64_t>(param.size());
#pragma omp parallel for schedule(static) if (n >= kParallelElements)
        for (int64_t q = 0; q < n; ++q) adam_update(param[q], grad[q], a[q], b[q], step);
    };
    dense(p.b_dec, g.b_dec, m1.b_dec, m2.b_dec);
    if (touched == nullptr) {
        dense(p.W_enc, g.W_enc, m1.W_enc, m2.W_enc);
        dense(p.b_enc, g.b_enc, m1.b_enc, m2.b_enc);
        dense(p.W_dec, g.W_dec, m1.W_dec, m2.W_dec);
        dense(p.log_threshold, g.log_threshold, m1.log_threshold, m2.log_threshold);
        return;
    }
    std::vector<int64_t> rows;
    for (int64_t j = 0; j < m; ++j)
        if (touched[j]) rows.push_back(j);
    const int64_t count = static_cast<int64_t>(rows.size());
    const bool jump = !p.log_threshold.empty();
    const bool parallel = count * d >= kParallelElements;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t q = 0; q < count; ++q) {
        const int64_t j = rows[q];
        for (int64_t i = 0; i < d; ++i)
            adam_update(p.W_dec[j * d + i], g.W_dec[j * d + i], m1.W_dec[j * d + i], m2.W_dec[j * d + i], step);
        adam_update(p.b_enc[j], g.b_enc[j], m1.b_enc[j], m2.b_enc[j], step);
        if (jump) adam_update(p.log_threshold[j], g.log_threshold[j], m1.log_threshold[j], m2.log_threshold[j], step);
    }
    // A touched latent is a column of W_enc: of [d][m] (one block of width m), or of its panel ([d][width] blocks
    // side by side). Walk the rows of each block and, in each row, the block's touched columns (a run of `rows`).
    const int64_t width = encoder_panels ? sae_panel_width() : m, blocks = (m + width - 1) / width;
    std::vector<int64_t> first(blocks + 1, count);  // rows[first[b] .. first[b + 1]) are block b's
    for (int64_t q = count - 1; q >= 0; --q) first[rows[q] / width] = q;
    for (int64_t b = blocks - 1; b >= 0; --b) first[b] = std::min(first[b], first[b + 1]);
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
    for (int64_t b = 0; b < blocks; ++b)
        for (int64_t i = 0; i < d; ++i)
            for (int64_t q = first[b]; q < first[b + 1]; ++q) {
                const int64_t e = (b * d + i) * width + rows[q] - b * width;
                adam_update(p.W_enc[e], g.W_enc[e], m1.W_enc[e], m2.W_enc[e], step);
            }
}

void sae_init(const SaeSpec& spec, uint64_t seed, SaeTensors& p, float initial_threshold, int64_t first_latent) {
    const int64_t d = spec.d, m = spec.m;
    p.resize(spec);
    constexpr uint32_t kDecoderTensor = 16;  // init-stream key of the SAE decoder (toy and MoE use 0..2)
    p.W_dec = normal_init(seed, kDecoderTensor, m * d, 1.0, first_latent * d);
    sae_normalize_decoder(m, d, p.W_dec.data());
    for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j < m; ++j) p.W_enc[i * m + j] = p.W_dec[j * d + i];
    std::fill(p.log_threshold.begin(), p.log_threshold.end(), std::log(initial_threshold));
}

std::vector<float> sae_data_mean(int64_t n, int64_t d, const float* x) {
    std::vector<double> sum(d, 0.0);
    for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 0; i < d; ++i) sum[i] += static_cast<double>(x[t * d + i]);
    std::vector<float> mean(d);
    for (int64_t i = 0; i < d; ++i) mean[i] = static_cast<float>(sum[i] / static_cast<double>(n));
    return mean;
}

std::vector<float> sae_geometric_median(int64_t n, int64_t d, const float* x, int iterations, double tolerance) {
    std::vector<double> c(d, 0.0), next(d);
    for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 0; i < d; ++i) c[i] += static_cast<double>(x[t * d + i]) / static_cast<double>(n);
    for (int it = 0; it < iterations; ++it) {
        // Weiszfeld: c <- sum_t x_t / ||x_t - c|| / sum_t 1 / ||x_t - c||.
        std::fill(next.begin(), next.end(), 0.0);
        double weight_sum = 0;
        for (int64_t t = 0; t < n; ++t) {
            double sq = 0;
            for (int64_t i = 0; i < d; ++i) {
                const double diff = static_cast<double>(x[t * d + i]) - c[i];
                sq += diff * diff;
            }
            const double dist = std::sqrt(sq);
            if (dist < 1e-12) continue;
            const double w = 1.0 / dist;
            weight_sum += w;
            for (int64_t i = 0; i < d; ++i) next[i] += w * static_cast<double>(x[t * d + i]);
        }
        if (weight_sum == 0) break;  // every point sits on c
        double moved = 0, norm = 0;
        for (int64_t i = 0; i < d; ++i) {
            next[i] /= weight_sum;
            moved += (next[i] - c[i]) * (next[i] - c[i]);
            norm += next[i] * next[i];
        }
        c.swap(next);
        if (std::sqrt(moved) < tolerance * (1.0 + std::sqrt(norm))) break;
    }
    return std::vector<float>(c.begin(), c.end());
}

}  // namespace ne
