// The sparse autoencoder on CUDA against the CPU backend, through the C ABI: every architecture CUDA runs (topk,
// batchtopk with its inference threshold, relu, jumprelu, matryoshka_batchtopk with three nested levels, and
// matching_pursuit with each stopping rule, on inputs of its own: see PursuitProblem), AuxK on dead latents, dense and touched-rows Adam, the encoder in one
// chunk and in several (NE_SAE_CHUNK), lists that must grow (a token with many codes), d above one block's width, a
// batch of 700 tokens (a column-sum tile of 512 and a partial one of 188: the b_dec gradient and the FVU statistics);
// parameters, Adam moments, firing history, stats and x^ after each of a few steps on fresh inputs from the same
// parameters; tf32 and bf16 encoders with looser tolerances; and checkpoints: a CPU state restored on CUDA reads back
// byte for byte and trains on like the CPU, and a CUDA run resumed from its own checkpoint equals the unbroken run.
//
// Tolerance: |cuda - cpu| <= atol + rtol |cpu|, per element (see Tolerance below for the values). In fp32 the two
// backends differ only by summation order and FMA contraction, ~1e-7 relative on the pre-activations; the residual
// x - x^ is smaller than x, so losses and gradients carry ~1e-5 relative; Adam's eps = 1e-3 keeps the update a smooth
// function of the gradient (as test_parity argues), so parameters agree to ~1e-9 per step. tf32 (10-bit mantissa)
// and bf16 (8-bit) round the encoder's inputs: pre-activations move by ~1e-3 and ~5e-3, the residual and gradients
// by ~1%, parameters by ~1% of an Adam step (lr = 1e-3).
//
// The selection is discontinuous (a code that is on or off moves a whole row), so the inputs keep every decision
// away from its boundary: the decoder rows are orthonormal (m <= d) with W_enc = W_dec^T, each token is a sum of
// live atoms with coefficients in [1.5, 2.5] plus noise of 0.002 per coordinate, live latents have b_enc = -0.3 and
// the last 16 latents (never in the data, so dead after the first step; dead_window = batch) have b_enc spread over
// [0.38, 0.52], except the very last at 0.75. So active pre-activations lie in [1.2, 2.2], inactive live ones near
// -0.3, the unused ones near 0.38 .. 0.52 and 0.75: a token with k - 1 atoms under topk takes the 0.75 one, far from
// every other; jumprelu's theta = 0.6 with bandwidth 0.6 puts the unused ones inside the straight-through window
// (0.3, 0.9), the 0.75 one above theta, and everything else outside; batchtopk's supports sum to exactly k * batch;
// AuxK takes every dead latent (k_aux = m). Rounding, even bf16's (~5e-3 on u), then cannot flip a code, and the
// comparison measures the kernels.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "nativeengine.h"

namespace {

constexpr int64_t kDead = 16;  // the last kDead latents never appear in the data
constexpr float kLr = 1e-3f;

const char* arch_name(int32_t a) {
    static const char* names[] = {"topk", "batchtopk", "relu", "jumprelu", "matryoshka", "pursuit"};
    return names[a];
}
const char* precision_name(int32_t p) {
    static const char* names[] = {"fp32", "tf32", "bf16"};
    return names[p];
}

struct Case {
    int32_t arch;
    int64_t d, m, batch, k;
    int32_t sparse_updates;
    int64_t chunk;      // NE_SAE_CHUNK for the CUDA model; 0: the default
    int32_t precision;  // of the CUDA model; the CPU runs fp32
    // matryoshka: AuxK per level, the levels at m - kDead/2 and m - kDead/4 so that each holds dead latents
    int32_t level_auxk = 0;
};

struct Tolerance {
    double atol, rtol;
};

// How close CUDA must come to the CPU, by what is compared.
struct Tolerances {
    Tolerance params, moment1, moment2, stats, x_hat, threshold;
};

Tolerances tolerances_for(int32_t precision) {
    if (precision == NE_SAE_TF32) return {{2e-4, 2e-3}, {1e-6, 5e-2}, {1e-9, 1e-1}, {1e-5, 1e-2}, {2e-3, 2e-3}, {1e-4, 5e-3}};
    if (precision == NE_SAE_BF16) return {{1e-3, 2e-2}, {5e-6, 2e-1}, {1e-8, 4e-1}, {1e-4, 5e-2}, {1e-2, 1e-2}, {1e-3, 2e-2}};
    return {{1e-6, 1e-5}, {1e-8, 1e-3}, {1e-11, 1e-3}, {1e-7, 1e-3}, {1e-5, 1e-5}, {1e-7, 1e-5}};
}

// The dictionary the data is made of, the parameters both backends start from, and the data stream.
struct Problem {
    Case c;
    std::vector<float> W_dec, W_enc, b_enc, b_dec, threshold;

    explicit Problem(const Case& cs) : c(cs) {
        const int64_t d = c.d, m = c.m;
        std::mt19937_64 rng(1000 + 17 * d + m);
        std::normal_distribution<double> normal(0.0, 1.0);
        // Orthonormal rows by Gram-Schmidt (in double).
        std::vector<double> rows(m * d);
        for (int64_t j = 0; j < m; ++j) {
            double* r = rows.data() + j * d;
            for (int64_t i = 0; i < d; ++i) r[i] = normal(rng);
            for (int pass = 0; pass < 2; ++pass)
                for (int64_t q = 0; q < j; ++q) {
                    const double* o = rows.data() + q * d;
                    double dot = 0;
                    for (int64_t i = 0; i < d; ++i) dot += r[i] * o[i];
                    for (int64_t i = 0; i < d; ++i) r[i] -= dot * o[i];
                }
            double norm = 0;
            for (int64_t i = 0; i < d; ++i) norm += r[i] * r[i];
            for (int64_t i = 0; i < d; ++i) r[i] /= std::sqrt(norm);
        }
        W_dec.assign(rows.begin(), rows.end());
        W_enc.resize(d * m);
        for (int64_t i = 0; i < d; ++i)
            for (int64_t j = 0; j < m; ++j) W_enc[i * m + j] = W_dec[j * d + i];
        b_enc.assign(m, -0.3f);
        for (int64_t q = 0; q < kDead; ++q) b_enc[m - kDead + q] = 0.38f + 0.01f * static_cast<float>(q);
        b_enc[m - 1] = 0.75f;
        b_dec.resize(d);
        for (auto& v : b_dec) v = static_cast<float>(0.1 * normal(rng));
        threshold.assign(m, 0.6f);
    }

    // tokens x [tokens][d]: token 0 carries `heavy` live atoms (more than the lists first hold), the others k or
    // k - 1 so that the supports sum to exactly k * tokens.
    std::vector<float> batch(int64_t tokens, uint64_t seed) const {
        const int64_t d = c.d, live = c.m - kDead, k = c.k;
        const int64_t heavy = std::min(live, 4 * k + 4);
        std::mt19937_64 rng(seed);
        std::normal_distribution<double> normal(0.0, 1.0);
        std::uniform_real_distribution<double> coefficient(1.5, 2.5);
        std::vector<int64_t> sizes(tokens, k);
        if (tokens > 1) {
            sizes[0] = heavy;
            int64_t excess = heavy - k;
            for (int64_t t = 1; t < tokens && excess > 0; ++t, --excess) sizes[t] = k - 1;
        }
        std::vector<float> x(tokens * d);
        std::vector<int64_t> latents(live);
        for (int64_t t = 0; t < tokens; ++t) {
            std::iota(latents.begin(), latents.end(), int64_t(0));
            std::shuffle(latents.begin(), latents.end(), rng);
            float* row = x.data() + t * d;
            for (int64_t i = 0; i < d; ++i) row[i] = b_dec[i] + static_cast<float>(0.002 * normal(rng));
            for (int64_t q = 0; q < sizes[t]; ++q) {
                const float a = static_cast<float>(coefficient(rng));
                for (int64_t i = 0; i < d; ++i) row[i] += a * W_dec[latents[q] * d + i];
            }
        }
        return x;
    }
};

ne_sae_config config_of(const Case& c, int32_t precision) {
    ne_sae_config config{};
    config.architecture = c.arch;
    config.sparse_updates = c.sparse_updates;
    config.d_in = c.d;
    config.d_sae = c.m;
    config.k = c.k;
    config.k_aux = c.m;  // every dead latent takes part: no AuxK selection boundary
    config.batch_size = c.batch;
    config.dead_window = c.batch;
    config.l1_coefficient = 0.05f;
    config.l0_coefficient = 0.05f;
    config.auxk_alpha = 1.0f / 32;
    config.jump_bandwidth = 0.6f;
    config.beta1 = 0.9f;
    config.beta2 = 0.999f;
    config.eps = 1e-3f;  // a smooth update (see the file comment)
    if (c.arch == NE_SAE_MATRYOSHKA_BATCHTOPK) {  // levels at about m/6 and m/2, then m
        config.matryoshka_levels = 3;
        config.matryoshka_widths[0] = c.level_auxk ? c.m - kDead / 2 : c.m / 6;
        config.matryoshka_widths[1] = c.level_auxk ? c.m - kDead / 4 : c.m / 2;
        config.matryoshka_widths[2] = c.m;
        config.matryoshka_aux_loss = c.level_auxk;
    }
    config.seed = 7;
    config.precision = precision;
    return config;
}

// A model on ctx with the problem's parameters; chunk > 0 sets NE_SAE_CHUNK while it is created.
ne_sae* make_model(ne_context* ctx, const Problem& p, int32_t precision, int64_t chunk) {
    const ne_sae_config config = config_of(p.c, precision);
    if (chunk > 0) setenv("NE_SAE_CHUNK", std::to_string(chunk).c_str(), 1);
    ne_sae* sae = nullptr;
    const ne_status status = ne_sae_create(ctx, &config, &sae);
    if (chunk > 0) unsetenv("NE_SAE_CHUNK");
    if (status != NE_OK) {
        std::printf("ne_sae_create: %s\n", ne_last_error());
        CHECK(false);
        return nullptr;
    }
    const int64_t d = p.c.d, m = p.c.m;
    const bool jump = p.c.arch == NE_SAE_JUMPRELU;
    if (ne_sae_set_params(sae, p.W_enc.data(), d * m, p.b_enc.data(), m, p.W_dec.data(), m * d, p.b_dec.data(), d,
                          jump ? p.threshold.data() : nullptr, jump ? m : 0) != NE_OK) {
        std::printf("ne_sae_set_params: %s\n", ne_last_error());
        CHECK(false);
    }
    return sae;
}

// Parameters (threshold as ne_sae_get_params gives it) and state bytes of a model.
struct Snapshot {
    std::vector<float> W_enc, b_enc, W_dec, b_dec, threshold;
    std::vector<uint8_t> state;
};

Snapshot snapshot(ne_sae* sae, const Case& c) {
    const int64_t d = c.d, m = c.m;
    Snapshot s{std::vector<float>(d * m), std::vector<float>(m), std::vector<float>(m * d), std::vector<float>(d),
               std::vector<float>(m), {}};
    CHECK(ne_sae_get_params(sae, s.W_enc.data(), d * m, s.b_enc.data(), m, s.W_dec.data(), m * d, s.b_dec.data(), d,
                            s.threshold.data(), m) == NE_OK);
    int64_t bytes = 0;
    CHECK(ne_sae_state_size(sae, &bytes) == NE_OK);
    s.state.resize(bytes);
    CHECK(ne_sae_get_state(sae, s.state.data(), bytes) == NE_OK);
    return s;
}

void restore(ne_sae* sae, const Case& c, const Snapshot& s) {
    const int64_t d = c.d, m = c.m;
    if (ne_sae_restore(sae, s.W_enc.data(), d * m, s.b_enc.data(), m, s.W_dec.data(), m * d, s.b_dec.data(), d,
                       s.threshold.data(), m, s.state.data(), static_cast<int64_t>(s.state.size())) != NE_OK) {
        std::printf("ne_sae_restore: %s\n", ne_last_error());
        CHECK(false);
    }
}

// Worst |cuda - cpu| over n values, every value checked against tol (the first mismatches printed).
template <typename T>
double compare(const std::string& what, const T* cpu, const T* cuda, size_t n, Tolerance tol) {
    double worst = 0;
    int bad = 0;
    for (size_t q = 0; q < n; ++q) {
        const double a = static_cast<double>(cpu[q]), b = static_cast<double>(cuda[q]);
        worst = std::max(worst, std::fabs(a - b));
        if (!ne_test::close(b, a, tol.atol, tol.rtol) && bad++ < 5)
            std::printf("  %s[%zu]: cpu %.9g cuda %.9g\n", what.c_str(), q, a, b);
    }
    if (bad > 0) std::printf("  %s: %d of %zu values outside %.1e + %.1e |cpu|\n", what.c_str(), bad, n, tol.atol, tol.rtol);
    CHECK(bad == 0);
    return worst;
}

void compare_stats(const std::string& what, const ne_sae_stats& a, const ne_sae_stats& b, Tolerance tol) {
    const double cpu[] = {a.mse, a.sparsity, a.auxk, a.fvu};
    const double cuda[] = {b.mse, b.sparsity, b.auxk, b.fvu};
    compare(what + " mse, sparsity, auxk, fvu", cpu, cuda, 4, tol);
    compare(what + " l0", &a.l0, &b.l0, 1, Tolerance{1e-12, 0});  // the same codes: the same count
    if (a.dead != b.dead || a.steps != b.steps)
        std::printf("  %s: dead %lld / %lld, steps %lld / %lld\n", what.c_str(), static_cast<long long>(a.dead),
                    static_cast<long long>(b.dead), static_cast<long long>(a.steps), static_cast<long long>(b.steps));
    CHECK(a.dead == b.dead);
    CHECK(a.steps == b.steps);
}

// Parameters and state: the state's header and firing history exactly (the batchtopk threshold with tolerance), its
// Adam moments with tolerance.
double compare_snapshots(const std::string& what, const Case& c, const Snapshot& a, const Snapshot& b,
                         const Tolerances& tol, bool moments) {
    double worst = 0;
    worst = std::max(worst, compare(what + " W_enc", a.W_enc.data(), b.W_enc.data(), a.W_enc.size(), tol.params));
    worst = std::max(worst, compare(what + " b_enc", a.b_enc.data(), b.b_enc.data(), a.b_enc.size(), tol.params));
    worst = std::max(worst, compare(what + " W_dec", a.W_dec.data(), b.W_dec.data(), a.W_dec.size(), tol.params));
    worst = std::max(worst, compare(what + " b_dec", a.b_dec.data(), b.b_dec.data(), a.b_dec.size(), tol.params));
    compare(what + " threshold", a.threshold.data(), b.threshold.data(), a.threshold.size(),
            c.arch == NE_SAE_JUMPRELU ? tol.params : tol.threshold);
    CHECK(a.state.size() == b.state.size());
    if (a.state.size() != b.state.size()) return worst;
    // StateHeader (models/sae_model.cpp): magic, d, m, architecture, reserved, steps, threshold updates (48 bytes),
    // then the threshold (double); since_fired [m]; moment1 then moment2, each W_enc, b_enc, W_dec, b_dec (and
    // log_threshold for jumprelu).
    constexpr size_t kHeader = 56;
    CHECK(std::memcmp(a.state.data(), b.state.data(), 48) == 0);
    double ta = 0, tb = 0;
    std::memcpy(&ta, a.state.data() + 48, sizeof ta);
    std::memcpy(&tb, b.state.data() + 48, sizeof tb);
    compare(what + " state threshold", &ta, &tb, 1, tol.threshold);
    const size_t since_bytes = static_cast<size_t>(c.m) * sizeof(int64_t);
    if (std::memcmp(a.state.data() + kHeader, b.state.data() + kHeader, since_bytes) != 0)
        std::printf("  %s: tokens_since_fired differ\n", what.c_str());
    CHECK(std::memcmp(a.state.data() + kHeader, b.state.data() + kHeader, since_bytes) == 0);
    if (moments) {
        const size_t floats = (a.state.size() - kHeader - since_bytes) / sizeof(float) / 2;
        std::vector<float> ma(2 * floats), mb(2 * floats);
        std::memcpy(ma.data(), a.state.data() + kHeader + since_bytes, ma.size() * sizeof(float));
        std::memcpy(mb.data(), b.state.data() + kHeader + since_bytes, mb.size() * sizeof(float));
        compare(what + " Adam moment 1", ma.data(), mb.data(), floats, tol.moment1);
        compare(what + " Adam moment 2", ma.data() + floats, mb.data() + floats, floats, tol.moment2);
    }
    return worst;
}

// One evaluation of both models on the same `tokens` tokens of the problem (Problem or PursuitProblem): stats, x^
// and fire counts. Returns the CPU's stats.
template <class AnyProblem>
ne_sae_stats compare_evaluation(const std::string& what, ne_sae* cpu, ne_sae* cuda, const AnyProblem& p, uint64_t seed,
                                const Tolerances& tol, int64_t tokens = 100) {
    const int64_t d = p.c.d, m = p.c.m;
    const std::vector<float> x = p.batch(tokens, seed);
    std::vector<float> xa(tokens * d), xb(tokens * d);
    std::vector<int64_t> fa(m, 0), fb(m, 0);
    ne_sae_stats sa{}, sb{};
    CHECK(ne_sae_evaluate(cpu, x.data(), tokens * d, xa.data(), tokens * d, fa.data(), m, &sa) == NE_OK);
    if (ne_sae_evaluate(cuda, x.data(), tokens * d, xb.data(), tokens * d, fb.data(), m, &sb) != NE_OK) {
        std::printf("ne_sae_evaluate (cuda, %s): %s\n", what.c_str(), ne_last_error());
        CHECK(false);
        return sa;
    }
    compare_stats(what + " evaluation", sa, sb, tol.stats);
    compare(what + " evaluation x_hat", xa.data(), xb.data(), xa.size(), tol.x_hat);
    CHECK(fa == fb);
    return sa;
}

// Both backends from the same parameters, `steps` steps on the same fresh batches, compared after every step.
void parity(ne_context* cpu_ctx, ne_context* cuda_ctx, const Case& c, int steps = 4) {
    const Problem p(c);
    const Tolerances tol = tolerances_for(c.precision);
    char label[160];
    std::snprintf(label, sizeof label, "%s%s %s d=%lld m=%lld B=%lld k=%lld sparse=%d chunk=%lld", arch_name(c.arch),
                  c.level_auxk ? " (AuxK per level)" : "", precision_name(c.precision), static_cast<long long>(c.d),
                  static_cast<long long>(c.m), static_cast<long long>(c.batch), static_cast<long long>(c.k),
                  c.sparse_updates, static_cast<long long>(c.chunk));
    ne_sae* cpu = make_model(cpu_ctx, p, NE_SAE_FP32, 0);
    ne_sae* cuda = make_model(cuda_ctx, p, c.precision, c.chunk);
    if (cpu == nullptr || cuda == nullptr) {
        ne_sae_destroy(cpu);
        ne_sae_destroy(cuda);
        return;
    }
    compare_evaluation(std::string(label) + " before training", cpu, cuda, p, 99, tol);
    double worst = 0;
    for (int step = 0; step < steps; ++step) {
        const std::vector<float> x = p.batch(c.batch, 500 + step);
        ne_sae_stats sa{}, sb{};
        CHECK(ne_sae_train_step(cpu, x.data(), c.batch * c.d, kLr, &sa) == NE_OK);
        if (ne_sae_train_step(cuda, x.data(), c.batch * c.d, kLr, &sb) != NE_OK) {
            std::printf("ne_sae_train_step (cuda): %s\n", ne_last_error());
            CHECK(false);
            break;
        }
        const std::string at = std::string(label) + " step " + std::to_string(step + 1);
        compare_stats(at, sa, sb, tol.stats);
        worst = std::max(worst, compare_snapshots(at, c, snapshot(cpu, c), snapshot(cuda, c), tol,
                                                  c.precision == NE_SAE_FP32));
        if (step == 0) CHECK(sa.dead == 0);  // nothing is dead before the first step; from the second on AuxK runs
        if (step == 1 && c.arch != NE_SAE_RELU && c.arch != NE_SAE_JUMPRELU) CHECK(sa.dead > 0 && sa.auxk > 0);
        if (c.arch == NE_SAE_MATRYOSHKA_BATCHTOPK) CHECK(sa.sparsity > 0);  // the inner levels' reconstruction
    }
    // batchtopk evaluates with its learned threshold, which lies at the smallest active codes: a reduced-precision
    // encoder moves codes by more than their distance to it, so only fp32 compares that evaluation.
    if ((c.arch != NE_SAE_BATCHTOPK && c.arch != NE_SAE_MATRYOSHKA_BATCHTOPK) || c.precision == NE_SAE_FP32)
        compare_evaluation(std::string(label) + " after training", cpu, cuda, p, 98, tol);
    std::printf("%s: %d steps, max |param_cpu - param_cuda| = %.2e\n", label, steps, worst);
    ne_sae_destroy(cpu);
    ne_sae_destroy(cuda);
}

// Checkpoints on CUDA: a CPU checkpoint restored on CUDA reads back unchanged and trains on like the CPU; a CUDA
// run resumed from its own checkpoint repeats the unbroken run bit for bit (the kernels are deterministic).
void checkpoints(ne_context* cpu_ctx, ne_context* cuda_ctx, const Case& c) {
    const Problem p(c);
    const Tolerances tol = tolerances_for(NE_SAE_FP32);
    const std::string label = std::string(arch_name(c.arch)) + " checkpoint";
    std::vector<std::vector<float>> batches;
    for (int step = 0; step < 4; ++step) batches.push_back(p.batch(c.batch, 700 + step));
    auto train = [&](ne_sae* sae, int first, int last) {
        for (int step = first; step < last; ++step) {
            ne_sae_stats stats{};
            if (ne_sae_train_step(sae, batches[step].data(), c.batch * c.d, kLr, &stats) != NE_OK) {
                std::printf("ne_sae_train_step: %s\n", ne_last_error());
                CHECK(false);
            }
        }
    };
    // The jumprelu threshold crosses as theta = exp(log theta) and back, which may move log theta by an ulp.
    const Tolerance exact{0, c.arch == NE_SAE_JUMPRELU ? 1e-6 : 0};

    // CPU state on CUDA.
    ne_sae* cpu = make_model(cpu_ctx, p, NE_SAE_FP32, 0);
    ne_sae* cuda = make_model(cuda_ctx, p, NE_SAE_FP32, 0);
    train(cpu, 0, 2);
    const Snapshot saved = snapshot(cpu, c);
    restore(cuda, c, saved);
    const Snapshot back = snapshot(cuda, c);
    CHECK(back.state == saved.state);
    compare(label + " W_enc read back", saved.W_enc.data(), back.W_enc.data(), saved.W_enc.size(), Tolerance{0, 0});
    compare(label + " W_dec read back", saved.W_dec.data(), back.W_dec.data(), saved.W_dec.size(), Tolerance{0, 0});
    compare(label + " b_enc read back", saved.b_enc.data(), back.b_enc.data(), saved.b_enc.size(), Tolerance{0, 0});
    compare(label + " b_dec read back", saved.b_dec.data(), back.b_dec.data(), saved.b_dec.size(), Tolerance{0, 0});
    compare(label + " threshold read back", saved.threshold.data(), back.threshold.data(), saved.threshold.size(), exact);
    train(cpu, 2, 4);
    train(cuda, 2, 4);
    compare_snapshots(label + " CPU state trained on", c, snapshot(cpu, c), snapshot(cuda, c), tol, true);
    ne_sae_destroy(cpu);
    ne_sae_destroy(cuda);

    // A CUDA checkpoint resumed on CUDA.
    ne_sae* unbroken = make_model(cuda_ctx, p, NE_SAE_FP32, 0);
    ne_sae* first = make_model(cuda_ctx, p, NE_SAE_FP32, 0);
    ne_sae* resumed = make_model(cuda_ctx, p, NE_SAE_FP32, 0);
    train(unbroken, 0, 4);
    train(first, 0, 2);
    restore(resumed, c, snapshot(first, c));
    train(resumed, 2, 4);
    const Snapshot a = snapshot(unbroken, c), b = snapshot(resumed, c);
    compare(label + " resumed W_enc", a.W_enc.data(), b.W_enc.data(), a.W_enc.size(), exact);
    compare(label + " resumed W_dec", a.W_dec.data(), b.W_dec.data(), a.W_dec.size(), exact);
    compare(label + " resumed b_enc", a.b_enc.data(), b.b_enc.data(), a.b_enc.size(), exact);
    compare(label + " resumed b_dec", a.b_dec.data(), b.b_dec.data(), a.b_dec.size(), exact);
    compare(label + " resumed threshold", a.threshold.data(), b.threshold.data(), a.threshold.size(), exact);
    if (c.arch != NE_SAE_JUMPRELU) CHECK(a.state == b.state);
    std::printf("%s: restored and resumed\n", label.c_str());
    ne_sae_destroy(unbroken);
    ne_sae_destroy(first);
    ne_sae_destroy(resumed);
}

// ---- matching pursuit ----------------------------------------------------------------------------------------

// Matching pursuit's cases: its stopping rules and the shapes of its kernels (sae_pursuit_cuda.cu).
struct PursuitCase {
    const char* name;
    int64_t d, m, batch;
    int32_t max_iterations, stop_on_duplicate;
    float residual_threshold;
    int32_t sparse_updates;
    int64_t chunk;         // NE_SAE_CHUNK (latents per dots GEMM); 0: the default
    int64_t group_rows;    // NE_SAE_PURSUIT_ROWS (the backward's rows per group); 0: the default
    int32_t precision;
};

// The pursuit's choices are discontinuous, so its inputs keep them apart: random unit decoder rows (not orthogonal,
// so the pursuit comes back to latents it chose and the duplicate-support rule fires on real choices, not on
// rounding), tokens b_dec + 4 random atoms with coefficients in [1, 2] + noise of 0.05 per coordinate. The dots a
// step compares are then O(0.1) apart, far beyond the backends' rounding (~1e-6), and the residual threshold (0.6)
// lies well above the noise's norm (0.05 sqrt(64) = 0.4) and below the norm before the last atom goes.
struct PursuitProblem {
    PursuitCase c;
    std::vector<float> W_dec, W_enc, b_enc, b_dec;

    explicit PursuitProblem(const PursuitCase& cs) : c(cs) {
        const int64_t d = c.d, m = c.m;
        std::mt19937_64 rng(3000 + 13 * d + m);
        std::normal_distribution<double> normal(0.0, 1.0);
        W_dec.resize(m * d);
        for (int64_t j = 0; j < m; ++j) {
            std::vector<double> row(d);
            double norm = 0;
            for (auto& v : row) {
                v = normal(rng);
                norm += v * v;
            }
            for (int64_t i = 0; i < d; ++i) W_dec[j * d + i] = static_cast<float>(row[i] / std::sqrt(norm));
        }
        W_enc.resize(d * m);  // unused by the pursuit; kept (and Adam moves it on its zero gradient)
        for (int64_t i = 0; i < d; ++i)
            for (int64_t j = 0; j < m; ++j) W_enc[i * m + j] = W_dec[j * d + i];
        b_enc.assign(m, 0.0f);
        b_dec.resize(d);
        for (auto& v : b_dec) v = static_cast<float>(0.1 * normal(rng));
    }

    std::vector<float> batch(int64_t tokens, uint64_t seed) const {
        const int64_t d = c.d, m = c.m;
        std::mt19937_64 rng(seed);
        std::normal_distribution<double> normal(0.0, 1.0);
        std::uniform_real_distribution<double> coefficient(1.0, 2.0);
        std::uniform_int_distribution<int64_t> latent(0, m - 1);
        std::vector<float> x(tokens * d);
        for (int64_t t = 0; t < tokens; ++t) {
            float* row = x.data() + t * d;
            for (int64_t i = 0; i < d; ++i) row[i] = b_dec[i] + static_cast<float>(0.05 * normal(rng));
            for (int q = 0; q < 4; ++q) {
                const int64_t j = latent(rng);
                const float a = static_cast<float>(coefficient(rng));
                for (int64_t i = 0; i < d; ++i) row[i] += a * W_dec[j * d + i];
            }
        }
        return x;
    }

    // The Case the shared snapshot and comparison helpers read (arch, d, m).
    Case as_case() const { return Case{NE_SAE_MATCHING_PURSUIT, c.d, c.m, c.batch, 0, c.sparse_updates, c.chunk, c.precision}; }
};

// Sets an environment variable for a scope (value null or "0": left unset), restoring what was there.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const std::string& value) : name_(name) {
        const char* current = std::getenv(name);
        had_ = current != nullptr;
        if (had_) saved_ = current;
        if (!value.empty() && value != "0") setenv(name, value.c_str(), 1);
    }
    ~ScopedEnv() {
        if (had_) setenv(name_, saved_.c_str(), 1);
        else unsetenv(name_);
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    const char* name_;
    bool had_ = false;
    std::string saved_;
};

ne_sae* make_pursuit_model(ne_context* ctx, const PursuitProblem& p, int32_t precision) {
    const PursuitCase& c = p.c;
    ne_sae_config config = config_of(p.as_case(), precision);
    config.k = 0;
    config.max_iterations = c.max_iterations;
    config.stop_on_duplicate_support = c.stop_on_duplicate;
    config.residual_threshold = c.residual_threshold;
    ScopedEnv chunk("NE_SAE_CHUNK", std::to_string(c.chunk));
    ne_sae* sae = nullptr;
    if (ne_sae_create(ctx, &config, &sae) != NE_OK) {
        std::printf("ne_sae_create (%s): %s\n", c.name, ne_last_error());
        CHECK(false);
        return nullptr;
    }
    const int64_t d = c.d, m = c.m;
    CHECK(ne_sae_set_params(sae, p.W_enc.data(), d * m, p.b_enc.data(), m, p.W_dec.data(), m * d, p.b_dec.data(), d,
                            nullptr, 0) == NE_OK);
    return sae;
}

bool pursuit_train(ne_sae* sae, const PursuitProblem& p, const std::vector<float>& x, ne_sae_stats& stats) {
    ScopedEnv rows("NE_SAE_PURSUIT_ROWS", std::to_string(p.c.group_rows));
    if (ne_sae_train_step(sae, x.data(), p.c.batch * p.c.d, kLr, &stats) == NE_OK) return true;
    std::printf("ne_sae_train_step (%s): %s\n", p.c.name, ne_last_error());
    CHECK(false);
    return false;
}

// Evaluation on the same 77 tokens (not a multiple of any block); the pursuit took several latents per token.
void pursuit_evaluation(const std::string& what, ne_sae* cpu, ne_sae* cuda, const PursuitProblem& p, uint64_t seed,
                        const Tolerances& tol) {
    CHECK(compare_evaluation(what, cpu, cuda, p, seed, tol, 77).l0 > 1);
}

// CUDA against the CPU from the same parameters: an evaluation, then `steps` training steps on fresh batches, the
// parameters and Adam moments (the first moment after step 1 is 0.1 times every gradient, W_enc's and b_enc's zero)
// compared after each, then another evaluation.
void pursuit_parity(ne_context* cpu_ctx, ne_context* cuda_ctx, const PursuitCase& c, int steps = 3) {
    const PursuitProblem p(c);
    const Case cs = p.as_case();
    const Tolerances tol = tolerances_for(c.precision);
    char label[200];
    std::snprintf(label, sizeof label, "pursuit %s %s d=%lld m=%lld B=%lld max_iterations=%d duplicate=%d "
                  "threshold=%g sparse=%d chunk=%lld rows=%lld", c.name, precision_name(c.precision),
                  static_cast<long long>(c.d), static_cast<long long>(c.m), static_cast<long long>(c.batch),
                  c.max_iterations, c.stop_on_duplicate, c.residual_threshold, c.sparse_updates,
                  static_cast<long long>(c.chunk), static_cast<long long>(c.group_rows));
    ne_sae* cpu = make_pursuit_model(cpu_ctx, p, NE_SAE_FP32);
    ne_sae* cuda = make_pursuit_model(cuda_ctx, p, c.precision);
    if (cpu == nullptr || cuda == nullptr) {
        ne_sae_destroy(cpu);
        ne_sae_destroy(cuda);
        return;
    }
    pursuit_evaluation(std::string(label) + " before training", cpu, cuda, p, 91, tol);
    double worst = 0;
    for (int step = 0; step < steps; ++step) {
        const std::vector<float> x = p.batch(c.batch, 600 + step);
        ne_sae_stats sa{}, sb{};
        if (!pursuit_train(cpu, p, x, sa) || !pursuit_train(cuda, p, x, sb)) break;
        const std::string at = std::string(label) + " step " + std::to_string(step + 1);
        compare_stats(at, sa, sb, tol.stats);
        CHECK(sa.sparsity == 0 && sa.auxk == 0 && sb.sparsity == 0 && sb.auxk == 0);
        const Snapshot a = snapshot(cpu, cs), b = snapshot(cuda, cs);
        worst = std::max(worst, compare_snapshots(at, cs, a, b, tol, c.precision == NE_SAE_FP32));
        if (c.max_iterations > 0 && c.stop_on_duplicate == 0 && c.residual_threshold <= 0)
            CHECK(sa.l0 <= c.max_iterations && sb.l0 <= c.max_iterations);
    }
    pursuit_evaluation(std::string(label) + " after training", cpu, cuda, p, 92, tol);
    std::printf("%s: %d steps, max |param_cpu - param_cuda| = %.2e\n", label, steps, worst);
    ne_sae_destroy(cpu);
    ne_sae_destroy(cuda);
}

// The same two steps twice on CUDA give identical bits (parameters, moments, firing history, stats). On the
// emulated device the second run goes under another thread schedule (NE_EMU_SCHEDULE, read at every launch).
void pursuit_determinism(ne_context* cuda_ctx, const PursuitCase& c, bool emulated) {
    const PursuitProblem p(c);
    const Case cs = p.as_case();
    std::vector<Snapshot> runs;
    std::vector<ne_sae_stats> last;
    for (int run = 0; run < 2; ++run) {
        const char* current = std::getenv("NE_EMU_SCHEDULE");
        ScopedEnv schedule("NE_EMU_SCHEDULE", emulated && run == 1 ? (current != nullptr &&
                                                                      std::string(current) == "reverse" ? "forward" : "reverse")
                                                                   : (current != nullptr ? current : ""));
        ne_sae* sae = make_pursuit_model(cuda_ctx, p, c.precision);
        if (sae == nullptr) return;
        ne_sae_stats stats{};
        for (int step = 0; step < 2; ++step) pursuit_train(sae, p, p.batch(c.batch, 800 + step), stats);
        runs.push_back(snapshot(sae, cs));
        last.push_back(stats);
        ne_sae_destroy(sae);
    }
    const Snapshot& a = runs[0];
    const Snapshot& b = runs[1];
    CHECK(a.W_enc == b.W_enc && a.b_enc == b.b_enc && a.W_dec == b.W_dec && a.b_dec == b.b_dec);
    CHECK(a.state == b.state);
    CHECK(std::memcmp(&last[0], &last[1], sizeof(ne_sae_stats)) == 0);
    std::printf("pursuit %s: two runs identical to the bit\n", c.name);
}

// tf32 and bf16 dots only choose the latents (the values are fp32 dots), but they round them by ~1e-3 and ~5e-3, so
// a step whose two best dots lie that close may choose another latent than the CPU: no choice-by-choice parity here.
// The reduced-precision run must stay close to the CPU's in loss and L0 over a few steps and keep finite parameters.
void pursuit_reduced_precision(ne_context* cpu_ctx, ne_context* cuda_ctx, const PursuitCase& c) {
    const PursuitProblem p(c);
    ne_sae* cpu = make_pursuit_model(cpu_ctx, p, NE_SAE_FP32);
    ne_sae* cuda = make_pursuit_model(cuda_ctx, p, c.precision);
    if (cpu == nullptr || cuda == nullptr) {
        ne_sae_destroy(cpu);
        ne_sae_destroy(cuda);
        return;
    }
    for (int step = 0; step < 3; ++step) {
        const std::vector<float> x = p.batch(c.batch, 650 + step);
        ne_sae_stats sa{}, sb{};
        if (!pursuit_train(cpu, p, x, sa) || !pursuit_train(cuda, p, x, sb)) break;
        if (!ne_test::close(sb.mse, sa.mse, 0.0, 0.05) || !ne_test::close(sb.l0, sa.l0, 0.0, 0.05))
            std::printf("  pursuit %s step %d: mse %.6g / %.6g, l0 %.4g / %.4g\n", c.name, step + 1, sa.mse, sb.mse,
                        sa.l0, sb.l0);
        CHECK(ne_test::close(sb.mse, sa.mse, 0.0, 0.05));
        CHECK(ne_test::close(sb.l0, sa.l0, 0.0, 0.05));
    }
    const Snapshot b = snapshot(cuda, p.as_case());
    CHECK(std::all_of(b.W_dec.begin(), b.W_dec.end(), [](float v) { return std::isfinite(v); }));
    CHECK(std::all_of(b.b_dec.begin(), b.b_dec.end(), [](float v) { return std::isfinite(v); }));
    std::printf("pursuit %s %s: 3 steps within 5%% of the CPU's loss and L0\n", c.name, precision_name(c.precision));
    ne_sae_destroy(cpu);
    ne_sae_destroy(cuda);
}

}  // namespace

// ne_sae_set_sparsity_coefficient: a model created with one coefficient and set to another trains exactly as one
// created with the other (relu, jumprelu), on each backend; other architectures and bad values are refused, naming
// the coefficient.
void sparsity_coefficient(ne_context* ctx, const char* backend) {
    for (int32_t arch : {NE_SAE_RELU, NE_SAE_JUMPRELU}) {
        const Case c{arch, 64, 48, 64, 4, 0, 0, NE_SAE_FP32};
        const Problem p(c);
        ne_sae* set = make_model(ctx, p, NE_SAE_FP32, 0);
        ne_sae_config config = config_of(c, NE_SAE_FP32);
        (arch == NE_SAE_RELU ? config.l1_coefficient : config.l0_coefficient) = 0.4f;
        ne_sae* created = nullptr;
        CHECK(ne_sae_create(ctx, &config, &created) == NE_OK);
        ne_sae* unchanged = make_model(ctx, p, NE_SAE_FP32, 0);
        if (set == nullptr || created == nullptr || unchanged == nullptr) return;
        const int64_t d = c.d, m = c.m;
        const bool jump = arch == NE_SAE_JUMPRELU;
        CHECK(ne_sae_set_params(created, p.W_enc.data(), d * m, p.b_enc.data(), m, p.W_dec.data(), m * d, p.b_dec.data(),
                                d, jump ? p.threshold.data() : nullptr, jump ? m : 0) == NE_OK);
        CHECK(ne_sae_set_sparsity_coefficient(set, 0.4f) == NE_OK);
        ne_sae_stats a{}, b{}, u{};
        for (int step = 0; step < 2; ++step) {
            const std::vector<float> x = p.batch(c.batch, 700 + step);
            CHECK(ne_sae_train_step(set, x.data(), c.batch * d, kLr, &a) == NE_OK);
            CHECK(ne_sae_train_step(created, x.data(), c.batch * d, kLr, &b) == NE_OK);
            CHECK(ne_sae_train_step(unchanged, x.data(), c.batch * d, kLr, &u) == NE_OK);
        }
        const Snapshot sa = snapshot(set, c), sb = snapshot(created, c);
        CHECK(sa.W_enc == sb.W_enc && sa.b_enc == sb.b_enc && sa.W_dec == sb.W_dec && sa.b_dec == sb.b_dec &&
              sa.threshold == sb.threshold && sa.state == sb.state);
        CHECK(a.sparsity == b.sparsity && a.mse == b.mse);
        CHECK(a.sparsity > 0 && a.sparsity != u.sparsity);  // the coefficient took effect
        CHECK(ne_sae_set_sparsity_coefficient(set, -1.0f) == NE_ERR_INVALID_ARGUMENT);
        CHECK(std::string(ne_last_error()).find(jump ? "l0_coefficient is -1" : "l1_coefficient is -1") != std::string::npos);
        CHECK(ne_sae_set_sparsity_coefficient(set, std::nanf("")) == NE_ERR_INVALID_ARGUMENT);
        std::printf("%s %s: set_sparsity_coefficient matches a model created with it\n", backend, arch_name(arch));
        ne_sae_destroy(set);
        ne_sae_destroy(created);
        ne_sae_destroy(unchanged);
    }
    const Case topk{NE_SAE_TOPK, 64, 48, 64, 4, 0, 0, NE_SAE_FP32};
    const Problem p(topk);
    ne_sae* sae = make_model(ctx, p, NE_SAE_FP32, 0);
    if (sae == nullptr) return;
    CHECK(ne_sae_set_sparsity_coefficient(sae, 1.0f) == NE_ERR_INVALID_ARGUMENT);
    CHECK(std::string(ne_last_error()).find("relu (l1_coefficient) and jumprelu (l0_coefficient)") != std::string::npos);
    ne_sae_destroy(sae);
}

int main() {
    // Guards between the tensors of every CUDA model's device allocation, checked after each call and at destroy
    // (core/arena.h): an overrun from one tensor into the next fails the call.
    setenv("NE_ARENA_GUARD", "1", 0);
    ne_context* cuda = nullptr;
    if (ne_context_create(NE_BACKEND_CUDA, 0, &cuda) != NE_OK) {
        std::printf("ignored: no CUDA device (%s)\n", ne_last_error());
        return ne_test::kSkipped;
    }
    ne_context* cpu = nullptr;
    CHECK(ne_context_create(NE_BACKEND_CPU, 0, &cpu) == NE_OK);
    for (int32_t arch : {NE_SAE_TOPK, NE_SAE_BATCHTOPK, NE_SAE_RELU, NE_SAE_JUMPRELU, NE_SAE_MATRYOSHKA_BATCHTOPK}) {
        // One encoder chunk; several with a remainder (48 = 20 + 20 + 8), dense and touched-rows Adam.
        parity(cpu, cuda, Case{arch, 64, 48, 64, 4, 0, 0, NE_SAE_FP32});
        parity(cpu, cuda, Case{arch, 64, 48, 64, 4, 0, 20, NE_SAE_FP32});
        parity(cpu, cuda, Case{arch, 64, 48, 64, 4, 1, 20, NE_SAE_FP32});
        // d and the candidates per merge above one block's width, more entries per latent than one staging pass.
        parity(cpu, cuda, Case{arch, 320, 300, 300, 6, 1, 0, NE_SAE_FP32}, 3);
        // Reduced-precision encoders.
        parity(cpu, cuda, Case{arch, 64, 48, 64, 4, 0, 20, NE_SAE_TF32});
        parity(cpu, cuda, Case{arch, 64, 48, 64, 4, 0, 20, NE_SAE_BF16});
        checkpoints(cpu, cuda, Case{arch, 64, 48, 64, 4, arch % 2, 0, NE_SAE_FP32});
    }
    // 700 tokens: the column sums (b_dec's gradient, the FVU's feature means and variances) run over a tile of 512
    // tokens and a partial one of 188, and every per-token grid ends in a partial block; batch-level selection too.
    parity(cpu, cuda, Case{NE_SAE_TOPK, 64, 48, 700, 4, 0, 0, NE_SAE_FP32}, 2);
    parity(cpu, cuda, Case{NE_SAE_BATCHTOPK, 64, 48, 700, 4, 1, 20, NE_SAE_FP32}, 2);
    parity(cpu, cuda, Case{NE_SAE_MATRYOSHKA_BATCHTOPK, 64, 48, 700, 4, 1, 20, NE_SAE_FP32}, 2);
    // Matryoshka's AuxK per level: each of the three levels holds dead latents, so each keeps its own list.
    parity(cpu, cuda, Case{NE_SAE_MATRYOSHKA_BATCHTOPK, 64, 48, 64, 4, 0, 0, NE_SAE_FP32, 1});
    parity(cpu, cuda, Case{NE_SAE_MATRYOSHKA_BATCHTOPK, 64, 48, 64, 4, 1, 20, NE_SAE_FP32, 1});
    parity(cpu, cuda, Case{NE_SAE_MATRYOSHKA_BATCHTOPK, 320, 300, 300, 6, 1, 0, NE_SAE_FP32, 1}, 3);
    parity(cpu, cuda, Case{NE_SAE_MATRYOSHKA_BATCHTOPK, 64, 48, 700, 4, 0, 20, NE_SAE_TF32, 1}, 2);
    checkpoints(cpu, cuda, Case{NE_SAE_MATRYOSHKA_BATCHTOPK, 64, 48, 64, 4, 1, 0, NE_SAE_FP32, 1});
    {
        // matching_pursuit runs on both backends: the CUDA context takes it and lists it.
        ne_sae_config config = config_of(Case{NE_SAE_MATCHING_PURSUIT, 64, 48, 64, 4, 0, 0, NE_SAE_FP32}, NE_SAE_FP32);
        config.k = 0;
        CHECK(ne_context_supports_sae(cuda, &config) == NE_OK);
        CHECK(ne_context_supports_sae(cpu, &config) == NE_OK);
        ne_capabilities caps{};
        CHECK(ne_context_capabilities(cuda, &caps) == NE_OK);
        CHECK((caps.sae_architectures & (1 << NE_SAE_MATRYOSHKA_BATCHTOPK)) != 0);
        CHECK((caps.sae_architectures & (1 << NE_SAE_MATCHING_PURSUIT)) != 0);
    }
    // matching_pursuit: each stopping rule alone; the defaults (threshold 1e-2, d steps, duplicate stop) on 301
    // tokens (no multiple of a block or a warp) with the dots in chunks of 30 (m = 100: three and a partial one) and
    // the backward in groups of at most 200 rows; d above one block's width; touched-rows Adam.
    const PursuitCase pursuit_cases[] = {
        {"max_iterations", 64, 48, 64, 6, 0, 0.0f, 0, 0, 0, NE_SAE_FP32},
        {"duplicate_support", 64, 48, 64, 0, 1, 0.0f, 0, 0, 0, NE_SAE_FP32},
        {"residual_threshold", 64, 48, 64, 0, 0, 0.6f, 0, 0, 0, NE_SAE_FP32},
        {"defaults", 64, 100, 301, 0, 1, 1e-2f, 1, 30, 200, NE_SAE_FP32},
        {"wide", 300, 80, 70, 12, 1, 0.0f, 1, 0, 0, NE_SAE_FP32},
    };
    for (const PursuitCase& c : pursuit_cases) pursuit_parity(cpu, cuda, c);
    pursuit_reduced_precision(cpu, cuda, PursuitCase{"tf32", 64, 48, 64, 0, 1, 0.0f, 0, 20, 0, NE_SAE_TF32});
    pursuit_reduced_precision(cpu, cuda, PursuitCase{"bf16", 64, 48, 64, 0, 1, 0.0f, 1, 20, 0, NE_SAE_BF16});
    ne_device_info device{};
    CHECK(ne_context_device_info(cuda, &device) == NE_OK);
    const bool emulated = std::strstr(device.name, "emulated") != nullptr;
    pursuit_determinism(cuda, pursuit_cases[3], emulated);
    sparsity_coefficient(cpu, "cpu");
    sparsity_coefficient(cuda, "cuda");
    ne_context_destroy(cpu);
    ne_context_destroy(cuda);
    return ne_test::finish("test_sae_parity");
}
