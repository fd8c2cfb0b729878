// The sparse autoencoder's CPU kernels: finite differences in double on every parameter of every architecture
// (jumprelu's threshold against its straight-through definition), the AuxK term alone and inside the step; the
// fast path against the reference in float on shapes with remainders, up to m = 16384, and its independence of
// the thread count; top-k tie-breaking; decoder normalisation and gradient projection; touched-rows Adam; the
// geometric median; and a training run that recovers synthetic ground-truth features (MMCS). `test_sae --bench`
// also times the fast path at two sizes.
#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "check.h"
#include "nativeengine.h"
#include "nativeengine.h"
#include "core/error.h"
#include "models/sae.h"
#include "models/training.h"

using namespace ne;

namespace {

const char* arch_name(int32_t a) {
    static const char* names[] = {"topk", "batchtopk", "relu", "jumprelu", "matryoshka", "pursuit"};
    return names[a];
}

// Parameters and inputs of one SAE in T, random but with codes of every kind (on, off, near a threshold).
template <typename T>
struct Problem {
    SaeSpec spec;
    std::vector<T> W_enc, b_enc, W_dec, b_dec, log_threshold, x;
    std::vector<int64_t> since_fired;

    Problem(const SaeSpec& s, uint64_t seed, double dead_fraction = 0.0) : spec(s) {
        std::mt19937_64 rng(seed);
        std::normal_distribution<double> normal(0.0, 1.0);
        std::uniform_real_distribution<double> uniform(0.0, 1.0);
        const int64_t d = s.d, m = s.m;
        auto fill = [&](std::vector<T>& v, int64_t n, double scale, double shift) {
            v.resize(n);
            for (auto& e : v) e = static_cast<T>(shift + scale * normal(rng));
        };
        fill(W_dec, m * d, 1.0 / std::sqrt(static_cast<double>(d)), 0.0);
        fill(W_enc, d * m, 1.0 / std::sqrt(static_cast<double>(d)), 0.0);
        fill(b_enc, m, 0.1, 0.0);
        fill(b_dec, d, 0.1, 0.0);
        fill(x, s.batch * d, 1.0, 0.2);
        if (s.architecture == kSaeJumpRelu) {
            log_threshold.resize(m);
            for (auto& e : log_threshold) e = static_cast<T>(std::log(0.05 + 0.5 * uniform(rng)));
        }
        since_fired.assign(m, 0);
        for (auto& e : since_fired) e = uniform(rng) < dead_fraction ? s.dead_window : 0;
    }
    SaeParams<T> params() const {
        return {W_enc.data(), b_enc.data(), W_dec.data(), b_dec.data(),
                log_threshold.empty() ? nullptr : log_threshold.data()};
    }
};

template <typename T>
struct Grads {
    std::vector<T> W_enc, b_enc, W_dec, b_dec, log_threshold;
    explicit Grads(const SaeSpec& s, T fill = T(0))
        : W_enc(s.d * s.m, fill), b_enc(s.m, fill), W_dec(s.m * s.d, fill), b_dec(s.d, fill),
          log_threshold(s.architecture == kSaeJumpRelu ? s.m : 0, fill) {}
    SaeGrads<T> view() {
        return {W_enc.data(), b_enc.data(), W_dec.data(), b_dec.data(),
                log_threshold.empty() ? nullptr : log_threshold.data()};
    }
};

// The largest |sum - (a + b)| over W_enc, b_enc, W_dec and b_dec: a step's gradients against two parts of it.
double worst_sum_error(const Grads<double>& sum, const Grads<double>& a, const Grads<double>& b) {
    double worst = 0;
    for (auto tensor : {&Grads<double>::W_enc, &Grads<double>::b_enc, &Grads<double>::W_dec, &Grads<double>::b_dec})
        for (size_t q = 0; q < (sum.*tensor).size(); ++q)
            worst = std::max(worst, std::fabs((sum.*tensor)[q] - ((a.*tensor)[q] + (b.*tensor)[q])));
    return worst;
}

SaeSpec make_spec(int32_t arch, int64_t d, int64_t m, int64_t k, int64_t batch) {
    SaeSpec s;
    s.architecture = arch;
    s.d = d;
    s.m = m;
    s.k = k;
    s.batch = batch;
    s.l1_coefficient = 0.3f;
    s.l0_coefficient = 0.2f;
    s.auxk_alpha = 0.5f;
    s.k_aux = 3;
    s.dead_window = 1000;
    if (arch == kSaeMatryoshkaBatchTopK) {
        // Nested levels at about m/6 and m/2, then m (fewer when m is too small for them to differ).
        for (int64_t w : {std::max<int64_t>(1, m / 6), m / 2, m})
            if (s.levels == 0 || w > s.widths[s.levels - 1]) s.widths[s.levels++] = w;
    }
    return s;
}

// The fast path with W_enc and its gradient in SAELens's [d][m]: converted to the encoder panels it takes and back.
SaeLoss fast_saelens(const SaeSpec& s, SaeParams<float> p, const float* x, const int64_t* since_fired,
                     SaeGrads<float>* g, SaeWorkspace& ws, int64_t* fire_count = nullptr, float* x_hat = nullptr) {
    std::vector<float> panels(sae_panel_elements(s.d, s.m)), grad_panels(g != nullptr ? panels.size() : 0);
    sae_encoder_to_panels(s.d, s.m, p.W_enc, panels.data());
    p.W_enc = panels.data();
    SaeGrads<float> gp{};
    if (g != nullptr) {
        gp = *g;
        gp.W_enc = grad_panels.data();
    }
    const SaeLoss loss =
        sae_loss_and_grad_fast(s, p, x, since_fired, g != nullptr ? &gp : nullptr, ws, fire_count, x_hat);
    if (g != nullptr) {
        sae_encoder_from_panels(s.d, s.m, grad_panels.data(), g->W_enc);
        // The padding of the last panel holds no latent: its gradient is zero.
        const int64_t width = sae_panel_width(), tiles = (s.m + width - 1) / width;
        for (int64_t i = 0; i < s.d; ++i)
            for (int64_t c = s.m - (tiles - 1) * width; c < width; ++c)
                CHECK(grad_panels[((tiles - 1) * s.d + i) * width + c] == 0.0f);
    }
    return loss;
}

// Central differences of f against the analytic gradient for every element of param.
template <class F>
double fd_check(const char* label, std::vector<double>& param, const std::vector<double>& grad, F&& f) {
    const double h = 1e-6;
    double worst = 0;
    for (size_t j = 0; j < param.size(); ++j) {
        const double saved = param[j];
        param[j] = saved + h;
        const double up = f();
        param[j] = saved - h;
        const double down = f();
        param[j] = saved;
        const double numeric = (up - down) / (2 * h);
        worst = std::max(worst, std::fabs(numeric - grad[j]) / (1e-6 + std::fabs(numeric)));
        if (!ne_test::close(grad[j], numeric, 1e-7, 1e-5)) {
            std::printf("  %s[%zu]: analytic %.10g numeric %.10g\n", label, j, grad[j], numeric);
            CHECK(false);
        }
    }
    return worst;
}

void finite_differences(int32_t arch) {
    SaeSpec s = make_spec(arch, 5, 12, 3, 7);
    Problem<double> pr(s, 100 + arch);
    Grads<double> g(s);
    auto gv = g.view();
    const SaeLoss base = sae_loss_and_grad<double>(s, pr.params(), pr.x.data(), nullptr, &gv);
    auto total = [&] { return sae_loss_and_grad<double>(s, pr.params(), pr.x.data(), nullptr, nullptr).total(); };
    double worst = 0;
    worst = std::max(worst, fd_check("W_enc", pr.W_enc, g.W_enc, total));
    worst = std::max(worst, fd_check("b_enc", pr.b_enc, g.b_enc, total));
    worst = std::max(worst, fd_check("W_dec", pr.W_dec, g.W_dec, total));
    worst = std::max(worst, fd_check("b_dec", pr.b_dec, g.b_dec, total));
    std::printf("FD %-9s mse %.4f sparsity %.4f l0 %.2f: worst relative error %.2e\n", arch_name(arch), base.mse,
                base.sparsity, base.l0, worst);
}

// jumprelu's threshold gradient is a straight-through estimate, not a derivative: check it against the
// definition, with a bandwidth wide enough that many codes fall inside the kernel.
void jumprelu_threshold_gradient() {
    SaeSpec s = make_spec(kSaeJumpRelu, 5, 12, 3, 9);
    s.jump_bandwidth = 0.4f;
    Problem<double> pr(s, 7);
    Grads<double> g(s);
    auto gv = g.view();
    std::vector<double> x_hat(s.batch * s.d);
    sae_loss_and_grad<double>(s, pr.params(), pr.x.data(), nullptr, &gv, nullptr, x_hat.data());
    const double eps = s.jump_bandwidth, B = static_cast<double>(s.batch);
    double worst = 0;
    int inside = 0;
    for (int64_t j = 0; j < s.m; ++j) {
        const double theta = std::exp(pr.log_threshold[j]);
        double expected = 0;
        for (int64_t t = 0; t < s.batch; ++t) {
            double u = pr.b_enc[j], dz = 0;
            for (int64_t i = 0; i < s.d; ++i) {
                u += (pr.x[t * s.d + i] - pr.b_dec[i]) * pr.W_enc[i * s.m + j];
                dz += 2.0 / B * (x_hat[t * s.d + i] - pr.x[t * s.d + i]) * pr.W_dec[j * s.d + i];
            }
            if (std::fabs(u - theta) >= eps / 2) continue;
            ++inside;
            // d/dtheta of z (-(theta/eps) K) and of the L0 term (-(1/eps) K), times dtheta/dlog_theta = theta.
            expected += theta * (-(theta / eps) * dz - s.l0_coefficient / (B * eps));
        }
        worst = std::max(worst, std::fabs(expected - g.log_threshold[j]));
        CHECK(ne_test::close(g.log_threshold[j], expected, 1e-12, 1e-9));
    }
    CHECK(inside > 0);
    std::printf("jumprelu threshold STE: %d codes inside the kernel, worst error %.2e\n", inside, worst);
}

// AuxK alone with the residual held fixed (FD on what it trains), then inside the step: the step's gradients
// equal the main terms' plus AuxK's, and AuxK leaves b_dec and live latents alone.
void auxk_gradients(int32_t arch) {
    SaeSpec s = make_spec(arch, 6, 14, 3, 8);
    Problem<double> pr(s, 300 + arch, 0.4);
    std::vector<uint8_t> dead(s.m);
    int64_t dead_count = 0;
    for (int64_t j = 0; j < s.m; ++j) dead_count += dead[j] = pr.since_fired[j] >= s.dead_window;
    std::vector<double> residual(s.batch * s.d);
    std::mt19937_64 rng(5);
    std::normal_distribution<double> normal(0.0, 1.0);
    for (auto& e : residual) e = normal(rng);
    Grads<double> g(s);
    auto gv = g.view();
    const double aux = sae_auxk_loss_and_grad<double>(s, pr.params(), pr.x.data(), residual.data(), dead.data(), &gv);
    auto f = [&] {
        return sae_auxk_loss_and_grad<double>(s, pr.params(), pr.x.data(), residual.data(), dead.data(), nullptr);
    };
    double worst = 0;
    worst = std::max(worst, fd_check("aux W_enc", pr.W_enc, g.W_enc, f));
    worst = std::max(worst, fd_check("aux b_enc", pr.b_enc, g.b_enc, f));
    worst = std::max(worst, fd_check("aux W_dec", pr.W_dec, g.W_dec, f));
    double stray = 0;
    for (double v : g.b_dec) stray = std::max(stray, std::fabs(v));
    for (int64_t j = 0; j < s.m; ++j)
        if (!dead[j]) {
            stray = std::max(stray, std::fabs(g.b_enc[j]));
            for (int64_t i = 0; i < s.d; ++i)
                stray = std::max({stray, std::fabs(g.W_dec[j * s.d + i]), std::fabs(g.W_enc[i * s.m + j])});
        }
    CHECK(stray == 0.0);
    CHECK(aux > 0);

    // Inside the step.
    Grads<double> full(s), main_only(s);
    auto fv = full.view(), mv = main_only.view();
    const SaeLoss with = sae_loss_and_grad<double>(s, pr.params(), pr.x.data(), pr.since_fired.data(), &fv);
    const SaeLoss without = sae_loss_and_grad<double>(s, pr.params(), pr.x.data(), nullptr, &mv);
    std::vector<double> x_hat(s.batch * s.d), e(s.batch * s.d);
    sae_loss_and_grad<double>(s, pr.params(), pr.x.data(), nullptr, nullptr, nullptr, x_hat.data());
    for (size_t q = 0; q < e.size(); ++q) e[q] = pr.x[q] - x_hat[q];
    Grads<double> aux_only(s);
    auto av = aux_only.view();
    const double aux_step = sae_auxk_loss_and_grad<double>(s, pr.params(), pr.x.data(), e.data(), dead.data(), &av);
    CHECK(with.dead == dead_count && with.auxk > 0);
    CHECK(ne_test::close(with.auxk, aux_step, 1e-14, 1e-12));
    CHECK(ne_test::close(with.mse, without.mse, 1e-14, 1e-12));
    const double mismatch = worst_sum_error(full, main_only, aux_only);
    CHECK(mismatch < 1e-12);
    std::printf("FD auxk (%s, %lld dead, k_aux %lld): auxk %.4f, worst relative error %.2e; step = main + auxk "
                "within %.1e\n",
                arch_name(arch), static_cast<long long>(dead_count), static_cast<long long>(s.aux_k()), aux, worst,
                mismatch);
}

// Matryoshka's per-level AuxK (level_auxk) against its definition, built from parts checked elsewhere: each level's
// residual e_l = x - x^_l from the same SAE with the decoder rows past w_l zeroed (the codes unchanged), its own dead
// latents, AuxK alone (finite-differenced in auxk_gradients) weighted by min(dead_l / k_aux, 1). The step's AuxK is
// the sum of those terms and its gradients the main terms' plus theirs; a level without dead latents adds nothing.
// With one level it is batchtopk's AuxK weighted by min(dead / k_aux, 1).
void level_auxk_properties() {
    SaeSpec s = make_spec(kSaeMatryoshkaBatchTopK, 7, 30, 3, 9);
    s.levels = 3;
    s.widths[0] = 5;
    s.widths[1] = 14;
    s.widths[2] = s.m;
    s.level_auxk = 1;
    s.k_aux = 4;
    Problem<double> pr(s, 41, 0.0);
    // Dead: 3 latents of level 0, none of level 1, 9 of level 2 (more than k_aux: weight 1 there).
    for (int64_t j : {0, 2, 4, 14, 15, 17, 19, 21, 23, 25, 27, 29}) pr.since_fired[j] = s.dead_window;
    Grads<double> full(s), main_only(s), expected(s);
    auto fv = full.view(), mv = main_only.view(), ev = expected.view();
    const SaeLoss with = sae_loss_and_grad<double>(s, pr.params(), pr.x.data(), pr.since_fired.data(), &fv);
    const SaeLoss without = sae_loss_and_grad<double>(s, pr.params(), pr.x.data(), nullptr, &mv);
    double aux = 0;
    int terms = 0;
    for (int l = 0; l < s.levels; ++l) {
        const int64_t begin = l > 0 ? s.widths[l - 1] : 0, end = s.widths[l];
        std::vector<uint8_t> dead(s.m, 0);
        int64_t count = 0;
        for (int64_t j = begin; j < end; ++j) count += dead[j] = pr.since_fired[j] >= s.dead_window;
        if (count == 0) continue;
        Problem<double> prefix = pr;
        std::fill(prefix.W_dec.begin() + end * s.d, prefix.W_dec.end(), 0.0);
        std::vector<double> x_hat(s.batch * s.d), e(s.batch * s.d);
        sae_loss_and_grad<double>(s, prefix.params(), pr.x.data(), nullptr, nullptr, nullptr, x_hat.data());
        for (size_t q = 0; q < e.size(); ++q) e[q] = pr.x[q] - x_hat[q];
        SaeSpec term = s;
        term.auxk_alpha = static_cast<float>(s.auxk_alpha * std::min(1.0, static_cast<double>(count) / s.k_aux));
        aux += sae_auxk_loss_and_grad<double>(term, pr.params(), pr.x.data(), e.data(), dead.data(), &ev);
        ++terms;
    }
    CHECK(terms == 2 && aux > 0);
    CHECK(ne_test::close(with.auxk, aux, 1e-14, 1e-12));
    CHECK(with.mse == without.mse && with.sparsity == without.sparsity);
    const double mismatch = worst_sum_error(full, main_only, expected);
    CHECK(mismatch < 1e-12);

    // One level: batchtopk's AuxK (every dead latent on x - x^), weighted.
    SaeSpec one = make_spec(kSaeMatryoshkaBatchTopK, 7, 30, 3, 9), plain = one;
    one.levels = 1;
    one.widths[0] = one.m;
    one.level_auxk = 1;
    plain.architecture = kSaeBatchTopK;
    plain.levels = 0;
    plain.k_aux = one.k_aux = 40 < one.m ? 40 : one.m;  // more than the dead count: the weight is below 1
    Problem<double> po(one, 43, 0.3);
    int64_t dead_count = 0;
    for (int64_t f : po.since_fired) dead_count += f >= one.dead_window;
    const SaeLoss lo = sae_loss_and_grad<double>(one, po.params(), po.x.data(), po.since_fired.data(), nullptr);
    const SaeLoss lp = sae_loss_and_grad<double>(plain, po.params(), po.x.data(), po.since_fired.data(), nullptr);
    const double weight = std::min(1.0, static_cast<double>(dead_count) / static_cast<double>(one.k_aux));
    CHECK(dead_count > 0 && weight < 1.0 && lp.auxk > 0);
    CHECK(ne_test::close(lo.auxk, static_cast<float>(plain.auxk_alpha * weight) / plain.auxk_alpha * lp.auxk, 1e-12,
                         1e-9));
    std::printf("matryoshka per-level AuxK: %d terms sum to the step's AuxK %.5f, gradients = main + terms within "
                "%.1e; one level = batchtopk's AuxK x %.3f\n", terms, with.auxk, mismatch, weight);
}

// The fast path against the float reference: loss terms, reconstruction, firing counts and every gradient.
// loud scales token 0's input, so under batchtopk it takes more than its share of the batch's codes.
double fast_matches_reference(SaeSpec s, uint64_t seed, double dead_fraction, SaeWorkspace& ws, bool verbose,
                              float loud = 1.0f) {
    Problem<float> pr(s, seed, dead_fraction);
    for (int64_t i = 0; i < s.d; ++i) pr.x[i] *= loud;
    Grads<float> gr(s), gf(s, 123.0f);
    auto grv = gr.view(), gfv = gf.view();
    std::vector<float> xr(s.batch * s.d), xf(s.batch * s.d);
    std::vector<int64_t> fr(s.m), ff(s.m);
    const SaeLoss ref = sae_loss_and_grad<float>(s, pr.params(), pr.x.data(), pr.since_fired.data(), &grv, fr.data(),
                                                 xr.data());
    const SaeLoss fast =
        fast_saelens(s, pr.params(), pr.x.data(), pr.since_fired.data(), &gfv, ws, ff.data(), xf.data());
    bool ok = ne_test::close(fast.mse, ref.mse, 1e-6, 1e-4) && ne_test::close(fast.fvu, ref.fvu, 1e-6, 1e-4) &&
              ne_test::close(fast.sparsity, ref.sparsity, 1e-6, 1e-4) && ne_test::close(fast.auxk, ref.auxk, 1e-6, 1e-4) &&
              fast.l0 == ref.l0 && fast.dead == ref.dead && ne_test::close(fast.min_kept, ref.min_kept, 1e-6, 1e-4);
    ok = ok && ff == fr;
    double worst = 0;
    auto compare = [&](const std::vector<float>& a, const std::vector<float>& b) {
        double scale = 0;
        for (float v : b) scale = std::max(scale, static_cast<double>(std::fabs(v)));
        for (size_t q = 0; q < a.size(); ++q) {
            const double err = std::fabs(static_cast<double>(a[q]) - b[q]) / (1e-30 + std::max(scale, 1e-3));
            worst = std::max(worst, err);
            if (!ne_test::close(a[q], b[q], 1e-4 * std::max(scale, 1e-3), 1e-3)) ok = false;
        }
    };
    compare(xf, xr);
    compare(gf.W_enc, gr.W_enc);
    compare(gf.b_enc, gr.b_enc);
    compare(gf.W_dec, gr.W_dec);
    compare(gf.b_dec, gr.b_dec);
    compare(gf.log_threshold, gr.log_threshold);
    if (!ok || verbose)
        std::printf("%s %-9s d=%lld m=%lld k=%lld batch=%lld dead=%lld: mse %.5f/%.5f auxk %.5f/%.5f l0 %.2f/%.2f, "
                    "worst gradient error %.2e of the largest\n",
                    ok ? "fast=ref" : "MISMATCH", arch_name(s.architecture), static_cast<long long>(s.d),
                    static_cast<long long>(s.m), static_cast<long long>(s.k), static_cast<long long>(s.batch),
                    static_cast<long long>(ref.dead), fast.mse, ref.mse, fast.auxk, ref.auxk, fast.l0, ref.l0, worst);
    CHECK(ok);
    return worst;
}

// Matryoshka's properties: with one level (w_0 = d_sae) it is batchtopk bit for bit (reference and fast path, AuxK
// included); with two, its extra term is the mse of the batchtopk codes decoded by the first w_0 latents alone (the
// same SAE with the decoder rows past w_0 zeroed: the encoder, hence the codes, unchanged).
void matryoshka_properties() {
    for (double dead : {0.0, 0.3}) {
        SaeSpec b = make_spec(kSaeBatchTopK, 17, 100, 3, 33), one = b;
        one.architecture = kSaeMatryoshkaBatchTopK;
        one.levels = 1;
        one.widths[0] = one.m;
        Problem<float> pr(b, 77, dead);
        Grads<float> gb(b), go(one), fb(b), fo(one);
        auto gbv = gb.view(), gov = go.view(), fbv = fb.view(), fov = fo.view();
        const SaeLoss lb = sae_loss_and_grad<float>(b, pr.params(), pr.x.data(), pr.since_fired.data(), &gbv);
        const SaeLoss lo = sae_loss_and_grad<float>(one, pr.params(), pr.x.data(), pr.since_fired.data(), &gov);
        CHECK(lb.total() == lo.total() && lb.mse == lo.mse && lb.auxk == lo.auxk && lo.sparsity == 0.0);
        CHECK(lb.min_kept == lo.min_kept && lb.l0 == lo.l0);
        CHECK(gb.W_enc == go.W_enc && gb.b_enc == go.b_enc && gb.W_dec == go.W_dec && gb.b_dec == go.b_dec);
        SaeWorkspace wb, wo;
        const SaeLoss kb = fast_saelens(b, pr.params(), pr.x.data(), pr.since_fired.data(), &fbv, wb);
        const SaeLoss ko = fast_saelens(one, pr.params(), pr.x.data(), pr.since_fired.data(), &fov, wo);
        CHECK(kb.total() == ko.total() && kb.min_kept == ko.min_kept);
        CHECK(fb.W_enc == fo.W_enc && fb.b_enc == fo.b_enc && fb.W_dec == fo.W_dec && fb.b_dec == fo.b_dec);
    }
    SaeSpec two = make_spec(kSaeMatryoshkaBatchTopK, 9, 40, 4, 12);
    two.levels = 2;
    two.widths[0] = 13;
    two.widths[1] = two.m;
    SaeSpec b = two;
    b.architecture = kSaeBatchTopK;
    b.levels = 0;
    Problem<double> pr(two, 5);
    const SaeLoss lm = sae_loss_and_grad<double>(two, pr.params(), pr.x.data(), nullptr, nullptr);
    std::vector<int64_t> fired_m(two.m), fired_b(two.m);
    sae_loss_and_grad<double>(two, pr.params(), pr.x.data(), nullptr, nullptr, fired_m.data());
    std::fill(pr.W_dec.begin() + two.widths[0] * two.d, pr.W_dec.end(), 0.0);
    const SaeLoss lb = sae_loss_and_grad<double>(b, pr.params(), pr.x.data(), nullptr, nullptr, fired_b.data());
    CHECK(fired_m == fired_b);
    CHECK(lm.sparsity > 0 && ne_test::close(lm.sparsity, lb.mse, 1e-12, 1e-12));
    std::printf("matryoshka: one level = batchtopk bit for bit; the inner level's term = the mse of its prefix "
                "(%.4f, full %.4f)\n", lm.sparsity, lm.mse);
}

// Matching pursuit's properties, on unit decoder rows (as training keeps them): the residual norm never grows from
// step to step; the steps respect max_iterations, and without the other stopping rules take exactly that many; a
// token's codes are nonzero on at most as many latents as it took steps; with stop_on_duplicate_support the last
// step of a token that stopped early chose a latent already in the support (or none); the decoder's x^ is x minus
// the final residual.
void pursuit_properties() {
    for (auto [limit, duplicate, threshold] : {std::tuple<int64_t, int32_t, float>{0, 1, 1e-2f}, {3, 0, 0.0f},
                                               {40, 1, 0.0f}, {7, 0, 0.5f}}) {
        SaeSpec s = make_spec(kSaeMatchingPursuit, 16, 60, 0, 25);
        s.max_iterations = limit;
        s.stop_on_duplicate_support = duplicate;
        s.residual_threshold = threshold;
        Problem<double> pr(s, 40 + limit);
        sae_normalize_decoder(s.m, s.d, pr.W_dec.data());
        std::vector<double> acts(s.m), residual(s.d);
        int64_t most = 0, stopped_early = 0;
        for (int64_t t = 0; t < s.batch; ++t) {
            std::vector<PursuitRecord<double>> steps;
            std::vector<double> norms;
            const double* xt = pr.x.data() + t * s.d;
            const int64_t taken = sae_pursuit_encode<double>(s, pr.W_dec.data(), pr.b_dec.data(), xt, acts.data(),
                                                             residual.data(), &steps, &norms);
            most = std::max(most, taken);
            CHECK(taken >= 1 && taken <= s.pursuit_iterations() && static_cast<int64_t>(norms.size()) == taken);
            if (!duplicate && threshold <= 0) CHECK(taken == s.pursuit_iterations());
            double before = 0;
            for (int64_t i = 0; i < s.d; ++i) before += (xt[i] - pr.b_dec[i]) * (xt[i] - pr.b_dec[i]);
            before = std::sqrt(before);
            for (double n : norms) {
                CHECK(n <= before * (1 + 1e-12));
                before = n;
            }
            int64_t nonzero = 0;
            for (double a : acts) nonzero += a != 0.0;
            CHECK(nonzero <= taken);
            if (taken < s.pursuit_iterations() && !(threshold > 0 && norms.back() < threshold)) {
                ++stopped_early;
                CHECK(duplicate);
                const int64_t last = steps.back().latent;
                int64_t earlier = 0;
                for (size_t q = 0; q + 1 < steps.size(); ++q) earlier += steps[q].latent == last && steps[q].value > 0;
                CHECK(earlier > 0 || steps.back().value == 0.0);
            }
            for (int64_t i = 0; i < s.d; ++i) {
                double xh = pr.b_dec[i];
                for (int64_t j = 0; j < s.m; ++j) xh += acts[j] * pr.W_dec[j * s.d + i];
                CHECK(ne_test::close(xh, xt[i] - residual[i], 1e-12, 1e-10));
            }
        }
        if (duplicate && threshold == 0.0f) CHECK(stopped_early > 0);
        std::printf("pursuit (max_iterations %lld, stop on duplicate %d, residual threshold %.2g): at most %lld "
                    "steps, %lld tokens stopped on a repeated support; residual norms never grew\n",
                    static_cast<long long>(limit), duplicate, threshold, static_cast<long long>(most),
                    static_cast<long long>(stopped_early));
    }
}

// Same results, bit for bit, whatever the thread count.
void fast_is_deterministic(int32_t arch, int32_t level_auxk = 0) {
    SaeSpec s = make_spec(arch, 67, 1100, 7, 131);  // large enough to run in parallel
    s.level_auxk = level_auxk;
    if (arch == kSaeJumpRelu) s.jump_bandwidth = 0.05f;
    Problem<float> pr(s, 9, 0.2);
    std::vector<Grads<float>> g;
    std::vector<SaeLoss> losses;
    const int threads_before = omp_get_max_threads();
    for (int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        SaeWorkspace ws;
        g.emplace_back(s);
        auto v = g.back().view();
        losses.push_back(fast_saelens(s, pr.params(), pr.x.data(), pr.since_fired.data(), &v, ws));
    }
    omp_set_num_threads(threads_before);
    for (size_t r = 1; r < g.size(); ++r) {
        CHECK(losses[r].total() == losses[0].total());
        CHECK(g[r].W_enc == g[0].W_enc && g[r].b_enc == g[0].b_enc && g[r].W_dec == g[0].W_dec &&
              g[r].b_dec == g[0].b_dec && g[r].log_threshold == g[0].log_threshold);
    }
}

// Every latent with a nonzero gradient is touched (AuxK's dead latents included); the spec check names fields.
void touched_and_spec_checks() {
    SaeSpec s = make_spec(kSaeTopK, 20, 90, 3, 11);
    Problem<float> pr(s, 21, 0.3);
    Grads<float> g(s);
    auto gv = g.view();
    SaeWorkspace ws;
    fast_saelens(s, pr.params(), pr.x.data(), pr.since_fired.data(), &gv, ws);
    std::vector<uint8_t> touched(s.m);
    sae_touched_latents(ws, s.m, touched.data());
    int64_t count = 0;
    for (int64_t j = 0; j < s.m; ++j) {
        bool nonzero = g.b_enc[j] != 0.0f;
        for (int64_t i = 0; i < s.d; ++i) nonzero = nonzero || g.W_dec[j * s.d + i] != 0.0f || g.W_enc[i * s.m + j] != 0.0f;
        CHECK(!nonzero || touched[j]);
        count += touched[j];
    }
    CHECK(count > 0 && count < s.m);
    sae_check_spec(s);
    auto rejects = [](SaeSpec bad, const char* field) {
        try {
            sae_check_spec(bad);
        } catch (const Error& e) {
            return std::string(e.what()).find(field) == 0;
        }
        return false;
    };
    SaeSpec bad = s;
    bad.k = s.m + 1;
    CHECK(rejects(bad, "k is"));
    bad = s;
    bad.jump_bandwidth = 0;
    CHECK(rejects(bad, "jump_bandwidth"));
    bad = s;
    bad.architecture = 7;
    CHECK(rejects(bad, "architecture"));
    std::printf("touched latents: %lld of %lld cover every nonzero gradient row; spec checks reject bad fields\n",
                static_cast<long long>(count), static_cast<long long>(s.m));
}

// Equal pre-activations: the lower latent index wins (topk), the lower token then latent (batchtopk).
void tie_breaking() {
    for (int32_t arch : {kSaeTopK, kSaeBatchTopK}) {
        SaeSpec s = make_spec(arch, 3, 70, 2, 2);
        Problem<float> pr(s, 1);
        std::fill(pr.W_enc.begin(), pr.W_enc.end(), 0.0f);
        std::fill(pr.b_enc.begin(), pr.b_enc.end(), 0.5f);
        for (int64_t j : {5, 9, 40, 66}) pr.b_enc[j] = 3.0f;  // four-way tie for the top two (per token)
        pr.b_enc[1] = 2.0f;
        std::vector<int64_t> fr(s.m), ff(s.m);
        SaeWorkspace ws;
        sae_loss_and_grad<float>(s, pr.params(), pr.x.data(), nullptr, nullptr, fr.data());
        fast_saelens(s, pr.params(), pr.x.data(), nullptr, nullptr, ws, ff.data());
        // Both tokens have equal u: topk picks 5 and 9 for each; batchtopk the 4 best of the flat batch order,
        // i.e. 5, 9, 40, 66 of token 0.
        std::vector<int64_t> expected(s.m, 0);
        if (arch == kSaeTopK) expected[5] = expected[9] = 2;
        else expected[5] = expected[9] = expected[40] = expected[66] = 1;
        CHECK(fr == expected);
        CHECK(ff == expected);
    }
    std::printf("tie-breaking: lower index wins (topk per token, batchtopk in flat batch order)\n");
}

void decoder_normalisation() {
    const int64_t m = 9, d = 13;
    std::mt19937_64 rng(3);
    std::normal_distribution<double> normal(0.0, 2.0);
    std::vector<double> W(m * d), g(m * d);
    for (auto& v : W) v = normal(rng);
    for (auto& v : g) v = normal(rng);
    sae_project_decoder_grad<double>(m, d, W.data(), g.data());
    double worst_dot = 0, worst_norm = 0;
    for (int64_t j = 0; j < m; ++j) {
        double dot = 0, gn = 0, wn = 0;
        for (int64_t i = 0; i < d; ++i) {
            dot += g[j * d + i] * W[j * d + i];
            gn += g[j * d + i] * g[j * d + i];
            wn += W[j * d + i] * W[j * d + i];
        }
        worst_dot = std::max(worst_dot, std::fabs(dot) / std::sqrt(gn * wn));
    }
    sae_normalize_decoder<double>(m, d, W.data());
    for (int64_t j = 0; j < m; ++j) {
        double wn = 0;
        for (int64_t i = 0; i < d; ++i) wn += W[j * d + i] * W[j * d + i];
        worst_norm = std::max(worst_norm, std::fabs(std::sqrt(wn) - 1));
    }
    CHECK(worst_dot < 1e-14);
    CHECK(worst_norm < 1e-14);
    // Still orthogonal after normalising (projection is along the direction only), and in float too.
    std::vector<float> Wf(W.begin(), W.end()), gf(g.begin(), g.end());
    sae_project_decoder_grad<float>(m, d, Wf.data(), gf.data());
    sae_normalize_decoder<float>(m, d, Wf.data());
    double worst_float = 0;
    for (int64_t j = 0; j < m; ++j) {
        double wn = 0;
        for (int64_t i = 0; i < d; ++i) wn += static_cast<double>(Wf[j * d + i]) * Wf[j * d + i];
        worst_float = std::max(worst_float, std::fabs(std::sqrt(wn) - 1));
    }
    CHECK(worst_float < 1e-6);
    std::printf("decoder: projected gradient |cos| to rows <= %.1e, row norms within %.1e of 1 (float %.1e)\n",
                worst_dot, worst_norm, worst_float);
}

void touched_rows_adam() {
    SaeSpec s = make_spec(kSaeJumpRelu, 6, 2 * sae_panel_width() + 5, 2, 4);  // three panels, the last partial
    SaeTensors p, g, m1, m2, dense_p, dense_m1, dense_m2;
    sae_init(s, 11, p, 0.1f);
    g.resize(s);
    m1.resize(s);
    m2.resize(s);
    std::mt19937_64 rng(4);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (auto* v : {&g.W_enc, &g.b_enc, &g.W_dec, &g.b_dec, &g.log_threshold})
        for (auto& e : *v) e = normal(rng);
    std::vector<uint8_t> touched(s.m, 0);
    touched[2] = touched[7] = touched[s.m - 1] = 1;  // none in the middle panel
    dense_p = p;
    dense_m1 = m1;
    dense_m2 = m2;
    const AdamStep step = adam_schedule(NE_OPTIMIZER_ADAM, 1e-2f, 0.0f, 0.9f, 0.999f, 1e-8f, 0, 1)[0];
    const SaeTensors before = p;
    // The same update on W_enc in the encoder panels, as the CPU backend keeps it.
    SaeTensors panel_p = p, panel_g = g, panel_m1 = m1, panel_m2 = m2;
    for (auto [from, to] : {std::pair{&p, &panel_p}, {&g, &panel_g}, {&m1, &panel_m1}, {&m2, &panel_m2}}) {
        to->W_enc.assign(sae_panel_elements(s.d, s.m), 1.0f);
        sae_encoder_to_panels(s.d, s.m, from->W_enc.data(), to->W_enc.data());
    }
    sae_adam_update(s, p, g, m1, m2, step, touched.data());
    sae_adam_update(s, dense_p, g, dense_m1, dense_m2, step);
    sae_adam_update(s, panel_p, panel_g, panel_m1, panel_m2, step, touched.data(), true);
    std::vector<float> back(s.d * s.m);
    sae_encoder_from_panels(s.d, s.m, panel_p.W_enc.data(), back.data());
    CHECK(back == p.W_enc);
    const int64_t width = sae_panel_width();
    for (int64_t i = 0; i < s.d; ++i)
        for (int64_t c = s.m - 2 * width; c < width; ++c) CHECK(panel_p.W_enc[(2 * s.d + i) * width + c] == 0.0f);
    CHECK(panel_p.b_enc == p.b_enc && panel_p.W_dec == p.W_dec && panel_p.b_dec == p.b_dec &&
          panel_p.log_threshold == p.log_threshold);
    bool ok = p.b_dec == dense_p.b_dec;
    for (int64_t j = 0; j < s.m; ++j) {
        const SaeTensors& want = touched[j] ? dense_p : before;
        ok = ok && p.b_enc[j] == want.b_enc[j] && p.log_threshold[j] == want.log_threshold[j];
        for (int64_t i = 0; i < s.d; ++i)
            ok = ok && p.W_dec[j * s.d + i] == want.W_dec[j * s.d + i] && p.W_enc[i * s.m + j] == want.W_enc[i * s.m + j];
    }
    CHECK(ok);
    // Initialisation: unit rows, W_enc = W_dec^T.
    double worst = 0;
    for (int64_t j = 0; j < s.m; ++j) {
        double n = 0;
        for (int64_t i = 0; i < s.d; ++i) {
            n += static_cast<double>(before.W_dec[j * s.d + i]) * before.W_dec[j * s.d + i];
            CHECK(before.W_enc[i * s.m + j] == before.W_dec[j * s.d + i]);
        }
        worst = std::max(worst, std::fabs(std::sqrt(n) - 1));
    }
    CHECK(worst < 1e-6);
    std::printf("adam: touched-rows update equals dense on touched latents and leaves the rest, also on W_enc in "
                "panels; init rows unit\n");
}

void geometric_median() {
    // Collinear points 0, 1, 2, 3, 100 along v: the median is 2v (the mean 21.2v).
    const int64_t d = 3;
    const double v[d] = {0.6, 0.0, 0.8};
    std::vector<float> line;
    for (double a : {0.0, 1.0, 2.0, 3.0, 100.0})
        for (int64_t i = 0; i < d; ++i) line.push_back(static_cast<float>(a * v[i]));
    const std::vector<float> med = sae_geometric_median(5, d, line.data(), 500, 1e-12);
    const std::vector<float> mean = sae_data_mean(5, d, line.data());
    double err = 0, mean_err = 0;
    for (int64_t i = 0; i < d; ++i) {
        err = std::max(err, std::fabs(med[i] - 2 * v[i]));
        mean_err = std::max(mean_err, std::fabs(mean[i] - 2 * v[i]));
    }
    CHECK(err < 1e-3);
    CHECK(mean_err > 5);
    // A symmetric cloud (each point and its mirror through c) has median c, also with points far away.
    const int64_t d2 = 7, half = 40;
    std::mt19937_64 rng(2);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<double> c(d2);
    for (auto& e : c) e = normal(rng);
    std::vector<float> cloud;
    for (int64_t t = 0; t < half; ++t) {
        std::vector<double> offset(d2);
        const double scale = t == 0 ? 1000.0 : 1.0;
        for (auto& e : offset) e = scale * normal(rng);
        for (double sign : {1.0, -1.0})
            for (int64_t i = 0; i < d2; ++i) cloud.push_back(static_cast<float>(c[i] + sign * offset[i]));
    }
    const std::vector<float> sym = sae_geometric_median(2 * half, d2, cloud.data(), 500, 1e-12);
    double sym_err = 0;
    for (int64_t i = 0; i < d2; ++i) sym_err = std::max(sym_err, std::fabs(sym[i] - c[i]));
    CHECK(sym_err < 1e-4);
    // An outlier moves the mean far more than the median.
    std::vector<float> tilted(cloud.begin(), cloud.begin() + (2 * half - 1) * d2);
    for (int64_t i = 0; i < d2; ++i) tilted.push_back(static_cast<float>(c[i] + 1e4));
    const std::vector<float> tm = sae_geometric_median(2 * half, d2, tilted.data());
    const std::vector<float> tmean = sae_data_mean(2 * half, d2, tilted.data());
    double med_shift = 0, mean_shift = 0;
    for (int64_t i = 0; i < d2; ++i) {
        med_shift += (tm[i] - c[i]) * (tm[i] - c[i]);
        mean_shift += (tmean[i] - c[i]) * (tmean[i] - c[i]);
    }
    CHECK(std::sqrt(med_shift) < 1.0 && std::sqrt(mean_shift) > 100);
    std::printf("geometric median: collinear error %.1e (mean off by %.1f), symmetric error %.1e, outlier moves "
                "median %.3f vs mean %.1f\n",
                err, mean_err, sym_err, std::sqrt(med_shift), std::sqrt(mean_shift));
}

// Synthetic ground truth: n_true unit features in d dimensions, each firing with probability p, coefficients
// U[0,1]. A TopK SAE trained with the step's pieces should find them.
void training_recovers_features() {
    const int64_t d = 32, n_true = 64, m = 128, k = 5, B = 512, steps = 2000;
    std::mt19937_64 rng(2024);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    std::vector<float> F(n_true * d);
    for (int64_t f = 0; f < n_true; ++f) {
        double n = 0;
        for (int64_t i = 0; i < d; ++i) n += std::pow(F[f * d + i] = normal(rng), 2);
        for (int64_t i = 0; i < d; ++i) F[f * d + i] /= static_cast<float>(std::sqrt(n));
    }
    const float p = 5.0f / static_cast<float>(n_true);
    std::vector<float> x(B * d);
    auto generate = [&] {
        std::fill(x.begin(), x.end(), 0.0f);
        for (int64_t t = 0; t < B; ++t)
            for (int64_t f = 0; f < n_true; ++f) {
                if (uniform(rng) >= p) continue;
                const float c = uniform(rng);
                for (int64_t i = 0; i < d; ++i) x[t * d + i] += c * F[f * d + i];
            }
    };
    SaeSpec s;
    s.architecture = kSaeTopK;
    s.d = d;
    s.m = m;
    s.k = k;
    s.batch = B;
    s.dead_window = 20 * B;
    SaeTensors params, grads, m1, m2;
    sae_init(s, 1, params);
    grads.resize(s);
    m1.resize(s);
    m2.resize(s);
    generate();
    params.b_dec = sae_geometric_median(B, d, x.data());
    std::vector<int64_t> since_fired(m, 0), fire_count(m);
    const std::vector<AdamStep> adam = adam_schedule(NE_OPTIMIZER_ADAM, 2e-3f, 0.0f, 0.9f, 0.999f, 1e-8f, 0, steps);
    SaeWorkspace ws;
    SaeLoss last;
    auto mmcs = [&] {
        double sum = 0;
        for (int64_t f = 0; f < n_true; ++f) {
            double best = -1;
            for (int64_t j = 0; j < m; ++j) {
                double dot = 0, n = 0;
                for (int64_t i = 0; i < d; ++i) {
                    dot += static_cast<double>(F[f * d + i]) * params.W_dec[j * d + i];
                    n += static_cast<double>(params.W_dec[j * d + i]) * params.W_dec[j * d + i];
                }
                best = std::max(best, dot / std::sqrt(n));
            }
            sum += best;
        }
        return sum / static_cast<double>(n_true);
    };
    const auto start = std::chrono::steady_clock::now();
    const double mmcs_init = mmcs();
    for (int64_t step = 0; step < steps; ++step) {
        if (step > 0) generate();
        SaeGrads<float> gv = grads.grads();
        last = fast_saelens(s, params.params(), x.data(), since_fired.data(), &gv, ws, fire_count.data());
        sae_update_since_fired(m, B, fire_count.data(), since_fired.data());
        sae_project_decoder_grad<float>(m, d, params.W_dec.data(), grads.W_dec.data());
        sae_adam_update(s, params, grads, m1, m2, adam[step]);
        sae_normalize_decoder<float>(m, d, params.W_dec.data());
        if (step % 500 == 0)
            std::printf("  step %4lld: mse %.4f fvu %.4f auxk %.4f dead %lld MMCS %.3f\n", static_cast<long long>(step),
                        last.mse, last.fvu, last.auxk, static_cast<long long>(last.dead), mmcs());
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double final_mmcs = mmcs();
    std::printf("training (topk d=%lld m=%lld k=%lld batch %lld, %lld steps, %.1f s): fvu %.4f dead %lld, MMCS "
                "%.3f -> %.3f\n",
                static_cast<long long>(d), static_cast<long long>(m), static_cast<long long>(k),
                static_cast<long long>(B), static_cast<long long>(steps), seconds, last.fvu,
                static_cast<long long>(last.dead), mmcs_init, final_mmcs);
    CHECK(final_mmcs >= 0.9);
}

void bench(int64_t d, int64_t m, int64_t k, int64_t B, int repeats) {
    SaeSpec s = make_spec(kSaeTopK, d, m, k, B);
    s.k_aux = 0;
    s.dead_window = 1 << 30;
    Problem<float> pr(s, 77, 0.0);
    SaeTensors params, grads;
    sae_init(s, 3, params);
    std::copy(pr.b_dec.begin(), pr.b_dec.end(), params.b_dec.begin());
    {
        // The layout the CPU backend trains in.
        std::vector<float> panels(sae_panel_elements(d, m));
        sae_encoder_to_panels(d, m, params.W_enc.data(), panels.data());
        params.W_enc.swap(panels);
    }
    grads.resize(s, true);
    SaeWorkspace ws;
    SaeGrads<float> gv = grads.grads();
    sae_loss_and_grad_fast(s, params.params(), pr.x.data(), nullptr, &gv, ws);  // warm-up, sizes the workspace
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < repeats; ++r) sae_loss_and_grad_fast(s, params.params(), pr.x.data(), nullptr, &gv, ws);
    const double fb = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repeats;
    const auto start_fwd = std::chrono::steady_clock::now();
    sae_loss_and_grad_fast(s, params.params(), pr.x.data(), nullptr, nullptr, ws);
    const double fwd = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_fwd).count();
    SaeTensors m1, m2;
    m1.resize(s, true);
    m2.resize(s, true);
    const AdamStep step = adam_schedule(NE_OPTIMIZER_ADAM, 1e-4f, 0.0f, 0.9f, 0.999f, 1e-8f, 0, 1)[0];
    const auto start_adam = std::chrono::steady_clock::now();
    sae_project_decoder_grad<float>(m, d, params.W_dec.data(), grads.W_dec.data());
    sae_adam_update(s, params, grads, m1, m2, step, nullptr, true);
    sae_normalize_decoder<float>(m, d, params.W_dec.data());
    const double opt = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_adam).count();
    const double flops = 2.0 * static_cast<double>(d) * static_cast<double>(m) * static_cast<double>(B);
    std::printf("bench topk d=%lld m=%lld k=%lld batch %lld, %d threads: forward+backward %.3f s (%.0f tokens/s, "
                "encoder %.1f GFLOP/s), forward %.3f s (%.0f tokens/s), optimizer step %.3f s; with it %.0f "
                "tokens/s\n",
                static_cast<long long>(d), static_cast<long long>(m), static_cast<long long>(k),
                static_cast<long long>(B), omp_get_max_threads(), fb, B / fb, flops / fb * 1e-9, fwd, B / fwd, opt,
                B / (fb + opt));
}

}  // namespace

// With sparse updates, Adam must move every latent with a gradient. AuxK's dead latents never fire, so counting
// firing alone would leave them as they are and AuxK would revive nothing; latents with no gradient stay put.
void sparse_updates_reach_auxk_latents() {
    const int64_t d = 8, m = 16, B = 32;
    ne_sae_config c{};
    c.architecture = NE_SAE_TOPK;
    c.sparse_updates = 1;
    c.d_in = d;
    c.d_sae = m;
    c.k = 2;
    c.k_aux = 4;
    c.batch_size = B;
    c.dead_window = B;  // silent for one batch: dead
    c.auxk_alpha = 1.0f;
    c.jump_bandwidth = 1e-3f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    ne_context* ctx = nullptr;
    ne_sae* sae = nullptr;
    CHECK(ne_context_create(NE_BACKEND_CPU, 0, &ctx) == NE_OK);
    CHECK(ne_sae_create(ctx, &c, &sae) == NE_OK);
    std::vector<float> W_enc(d * m), b_enc(m), W_dec(m * d), b_dec(d, 0.0f);
    CHECK(ne_sae_get_params(sae, W_enc.data(), d * m, b_enc.data(), m, W_dec.data(), m * d, b_dec.data(), d, nullptr,
                            0) == NE_OK);
    // Latents 0 and 1 win every token's top 2; latent 2 stays positive but never wins (dead after the first batch,
    // then one of AuxK's); the rest are negative, so AuxK's ReLU gives them no gradient.
    for (int64_t j = 0; j < m; ++j) b_enc[j] = j < 2 ? 5.0f : j == 2 ? 0.5f : -5.0f;
    CHECK(ne_sae_set_params(sae, W_enc.data(), d * m, b_enc.data(), m, W_dec.data(), m * d, b_dec.data(), d, nullptr,
                            0) == NE_OK);
    std::vector<float> x(B * d);
    uint32_t state = 12345u;
    for (int step = 0; step < 6; ++step) {
        for (float& v : x) {
            state = state * 1664525u + 1013904223u;
            v = 0.1f * (static_cast<float>(state >> 8) / 16777216.0f - 0.5f);
        }
        ne_sae_stats stats{};
        CHECK(ne_sae_train_step(sae, x.data(), B * d, 1e-2f, &stats) == NE_OK);
        if (step > 0) CHECK(stats.auxk > 0.0);  // AuxK runs once latents are dead
    }
    std::vector<float> W_enc2(d * m), after(m), W_dec2(m * d), b_dec2(d);
    CHECK(ne_sae_get_params(sae, W_enc2.data(), d * m, after.data(), m, W_dec2.data(), m * d, b_dec2.data(), d,
                            nullptr, 0) == NE_OK);
    std::printf("sparse updates: b_enc of AuxK's latent 2 %.6f -> %.6f; of a latent without gradient %.6f -> %.6f\n",
                b_enc[2], after[2], b_enc[7], after[7]);
    CHECK(after[0] != b_enc[0]);
    CHECK(after[2] != b_enc[2]);
    for (int64_t j = 3; j < m; ++j) CHECK(after[j] == b_enc[j]);
    CHECK(ne_sae_destroy(sae) == NE_OK);
    CHECK(ne_context_destroy(ctx) == NE_OK);
}

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) {
        bench(256, 4096, 32, 4096, 3);
        bench(768, 24576, 32, 4096, 1);
        return 0;
    }
    for (int32_t arch : {kSaeTopK, kSaeBatchTopK, kSaeRelu, kSaeJumpRelu, kSaeMatryoshkaBatchTopK, kSaeMatchingPursuit})
        finite_differences(arch);
    jumprelu_threshold_gradient();
    auxk_gradients(kSaeTopK);
    auxk_gradients(kSaeBatchTopK);
    auxk_gradients(kSaeMatryoshkaBatchTopK);
    matryoshka_properties();
    level_auxk_properties();
    pursuit_properties();

    SaeWorkspace ws;  // one workspace across shapes, as a backend would reuse it
    uint64_t seed = 1;
    double worst = 0;
    int cases = 0;
    for (int32_t arch : {kSaeTopK, kSaeBatchTopK, kSaeRelu, kSaeJumpRelu, kSaeMatryoshkaBatchTopK, kSaeMatchingPursuit})
        for (auto [d, m, k, B] : {std::array<int64_t, 4>{5, 12, 1, 7}, {17, 100, 3, 33}, {16, 64, 4, 64},
                                  {33, 257, 8, 65}, {1, 3, 1, 1}, {70, 129, 16, 130}})
            for (double dead : {0.0, 0.3}) {
                SaeSpec s = make_spec(arch, d, m, k, B);
                if (arch == kSaeJumpRelu) s.jump_bandwidth = 0.05f;
                worst = std::max(worst, fast_matches_reference(s, seed++, dead, ws, false));
                ++cases;
                if (arch == kSaeMatryoshkaBatchTopK && dead > 0) {  // and with AuxK per level
                    s.level_auxk = 1;
                    worst = std::max(worst, fast_matches_reference(s, seed++, dead, ws, false));
                    ++cases;
                }
            }
    for (int32_t arch : {kSaeBatchTopK, kSaeMatryoshkaBatchTopK}) {
        SaeSpec s = make_spec(arch, 9, 40, 2, 5);
        s.inference = 1;
        s.threshold = 0.3f;
        worst = std::max(worst, fast_matches_reference(s, seed++, 0.0, ws, false));
        ++cases;
    }
    {
        // One token far louder than the rest holds most of batchtopk's k*B codes: more than the 4k candidates a
        // token starts with, so the encoder must run again with more room.
        SaeSpec s = make_spec(kSaeBatchTopK, 24, 300, 3, 21);
        SaeWorkspace fresh;
        worst = std::max(worst, fast_matches_reference(s, seed++, 0.0, fresh, false, 40.0f));
        CHECK(fresh.cap > 4 * s.k);
        std::printf("batchtopk with a loud token: candidate slots per token grew from %lld to %lld\n",
                    static_cast<long long>(4 * s.k), static_cast<long long>(fresh.cap));
        ++cases;
    }
    std::printf("fast = reference on %d small cases, worst gradient error %.2e of each tensor's largest\n", cases,
                worst);
    for (int32_t arch : {kSaeTopK, kSaeBatchTopK, kSaeMatryoshkaBatchTopK}) {
        SaeSpec s = make_spec(arch, 64, 16384, 32, 33);
        s.k_aux = 32;
        fast_matches_reference(s, seed++, 0.01, ws, true);
        if (arch == kSaeMatryoshkaBatchTopK) {
            s.level_auxk = 1;
            fast_matches_reference(s, seed++, 0.01, ws, true);
        }
    }
    for (int32_t arch : {kSaeTopK, kSaeBatchTopK, kSaeRelu, kSaeJumpRelu, kSaeMatryoshkaBatchTopK, kSaeMatchingPursuit})
        fast_is_deterministic(arch);
    fast_is_deterministic(kSaeMatryoshkaBatchTopK, 1);
    std::printf("fast path: bitwise equal on 1, 2 and 3 threads\n");
    tie_breaking();
    touched_and_spec_checks();
    decoder_normalisation();
    touched_rows_adam();
    sparse_updates_reach_auxk_latents();
    geometric_median();
    training_recovers_features();
    return ne_test::finish("test_sae");
}
