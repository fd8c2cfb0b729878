// Synthetic activations with a known ground truth (docs/synthsaebench.md): SynthSAEBench (SAELens
// `sae_lens/synthetic/`) and the Sharkey et al. (2022) set, as one generator. Each sample is
//   x = sum_i a_i W_i + b,   W [n][d] unit rows, b [d],   a [n] >= 0 sparse,
// and the codes a come from a Gaussian copula (feature i fires when z_i > t_i, z = F g + s * eta with a low-rank
// factor F [n][r], g ~ N(0, I_r), eta ~ N(0, I_n)), a magnitude per firing feature, and a forest of features in
// which children are gated (and optionally scaled) by their parent and siblings may be mutually exclusive.
//
// The ground truth (W, b, probabilities, thresholds, F, magnitude parameters, the forest) is built once on the
// host from the seed (models/synth_truth.cpp). A sample depends only on (seed, stream, step, sample index) and the
// ground truth: every random number it uses is one Philox word addressed by what it is for, so any sample, or
// any part of one, can be drawn alone, in any order, on any backend. This header holds that per-sample math,
// written once for the CPU sampler (cpu/synth_cpu.cpp) and its CUDA twin (cuda/synth_cuda.cu).
//
// Float determinism. The per-sample math uses only IEEE-754 single-precision +, -, *, /, sqrtf and fmaf, which
// are correctly rounded on x86-64 and on CUDA devices, so both produce the same bits, provided that
//   - every product whose result feeds an addition or subtraction is written as an explicit fmaf (the rule this
//     file follows), so no compiler can contract a different pair: GCC with -march=native contracts a*b+c by
//     default and nvcc does too (-fmad=true);
//   - no fast-math flags (-ffast-math, --use_fast_math: they flush denormals and approximate division and
//     square root);
//   - no library transcendental is called: the logarithm and the inverse normal CDF are implemented here.
// The host-side construction of the ground truth uses double and libm freely: it runs once, on the host, and
// its result is what every backend samples from.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/hostdevice.h"
#include "core/philox.h"

namespace ne {

enum SynthKind : int32_t {
    kSynthSaeBench = 0,  // Zipf probabilities, forest, low-rank copula, relu(normal) magnitudes, orthogonalised W
    kSynthSharkey = 1,   // p_i = min(1, c decay^i), optional copula, U(0,1] magnitudes, Gaussian unit W, no bias
};

// Everything that defines a generator. Fixed-width fields only, so it can cross a C ABI unchanged.
struct SynthSpec {
    int32_t kind = kSynthSaeBench;
    int32_t correlation_rank = 0;  // r; 0: features fire independently
    int64_t n = 0, d = 0;          // features, dimensions
    uint64_t seed = 0;

    // Firing probabilities. SaeBench: Zipf, p_i = p_min + (p_max - p_min) ((i+1)^-a - n^-a) / (1 - n^-a).
    double zipf_exponent = 1.0, p_min = 0.01, p_max = 0.3;
    // Sharkey: p_i = min(1, c decay^i) with c such that sum_i p_i = active_mean.
    double decay = 0.99, active_mean = 5.0;

    // Forest (SaeBench). root_nodes 0: none. Features are numbered breadth-first over the whole forest: the roots
    // 0 .. R-1, then their children level by level; the features left over belong to no tree.
    int64_t root_nodes = 0;
    int32_t branching_min = 2, branching_max = 2;  // children per internal node, uniform in [min, max]
    int32_t max_depth = 1;                          // roots at depth 0, leaves at max_depth
    int32_t me_min_depth = 0, me_max_depth = -1;    // depths of parents eligible for mutual exclusion (-1: no limit)
    int32_t compensate = 0;                         // 1: raise probabilities to offset gating and exclusion
    int32_t scale_children = 0;                     // 1: a child's value is scaled by parent value / parent mean
    double me_portion = 0.0;                        // fraction of eligible parents with exclusive children

    // Copula: F = correlation_scale * N(0,1) [n][r] (SaeBench; Sharkey: N(0,1) rows normalised, see synth_truth.cpp).
    double correlation_scale = 0.0;

    // Magnitudes (SaeBench): mean linear from mean_start (feature 0) to mean_end (feature n-1); standard
    // deviation |N(std_mean, std_std^2)| per feature, or std_mean itself when std_std is 0.
    double mean_start = 1.0, mean_end = 1.0, std_mean = 0.0, std_std = 0.0;

    // Dictionary: b random of norm bias_norm (0: no bias); W orthogonalised by ortho_steps Adam steps at ortho_lr.
    double bias_norm = 0.0;
    double ortho_lr = 0.01;
    int32_t ortho_steps = 0;
    int32_t ortho_chunk = 1024;  // rows of the Gram matrix held at once
};

// ---- random words --------------------------------------------------------------------------------------------

// What a word is for: the third Philox counter word is kSynthTag | purpose, far above any toy instance index,
// the first is index / 4 and the word index % 4. The fourth is the stream word of (stream, step), the second
// the sample index, the key the seed.
constexpr uint32_t kSynthTag = 0x53590000u;  // "SY"
enum SynthPurpose : uint32_t {
    kSynthFactorNormal = 0,  // g_k, k < r
    kSynthFire = 1,          // feature i's copula noise eta_i, or its presence uniform when r = 0
    kSynthMagnitude = 2,     // feature i's magnitude
    kSynthChoice = 3,        // the child kept by exclusive parent i
};

// The four words of indices 4 block .. 4 block + 3.
NE_HD Philox4 synth_block(uint64_t seed, Stream stream, uint32_t step, uint32_t sample, uint32_t purpose,
                          uint32_t block) {
    return philox4x32_10(block, sample, kSynthTag | purpose, stream_word(stream, step), static_cast<uint32_t>(seed),
                         static_cast<uint32_t>(seed >> 32));
}

NE_HD uint32_t synth_word(uint64_t seed, Stream stream, uint32_t step, uint32_t sample, uint32_t purpose,
                          uint64_t index) {
    return synth_block(seed, stream, step, sample, purpose, static_cast<uint32_t>(index >> 2)).v[index & 3u];
}

// Uniform on the 2^23 points (2k+1) 2^-24, k < 2^23: symmetric about 1/2, never 0 or 1, exact in float.
NE_HD float synth_open_uniform(uint32_t bits) {
    return static_cast<float>(2u * (bits >> 9) + 1u) * (1.0f / 16777216.0f);
}

// ---- deterministic float transcendental functions -------------------------------------------------------------

NE_HD uint32_t synth_float_bits(float x) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(x);
#else
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
#endif
}
NE_HD float synth_bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
#endif
}

// Natural logarithm of a positive normal float, within about one ulp. x = 2^k m with m in [sqrt(1/2), sqrt(2));
// log m = 2 atanh(s), s = (m-1)/(m+1), by the minimax polynomial of the classic single-precision log (FreeBSD
// msun k_logf.h): log(1+f) = f - (h - s (h + R(s^2))), h = f^2/2.
NE_HD float synth_log(float x) {
    const uint32_t bits = synth_float_bits(x);
    int32_t k = static_cast<int32_t>(bits >> 23) - 127;
    float m = synth_bits_float((bits & 0x007FFFFFu) | 0x3F800000u);  // [1, 2)
    if (m > 1.41421356f) {
        m = m * 0.5f;  // exact
        k += 1;
    }
    const float f = m - 1.0f;  // exact (Sterbenz)
    const float s = f / (2.0f + f);
    const float z = s * s;
    const float poly = fmaf(fmaf(fmaf(0.24279078841f, z, 0.28498786688f), z, 0.40000972152f), z, 0.66666662693f);
    const float h = 0.5f * f * f;
    const float inner = fmaf(z, poly, h);        // h + R, R = z poly
    const float log_m = f - fmaf(-s, inner, h);  // f - (h - s (h + R))
    const float kf = static_cast<float>(k);
    return fmaf(kf, 6.9313812256e-01f, fmaf(kf, 9.0580006145e-06f, log_m));  // + k ln 2 (split in two parts)
}

// Phi^-1(p) for p in (0, 1): Wichura's AS 241 PPND7 (Applied Statistics 37, 1988), accurate to about 1e-7,
// evaluated in float with explicit fmaf. Exactly antisymmetric: synth_inverse_normal(1-p) = -synth_inverse_normal(p).
NE_HD float synth_inverse_normal(float p) {
    const float q = p - 0.5f;
    if (fabsf(q) <= 0.425f) {
        const float r = fmaf(-q, q, 0.180625f);
        const float num = fmaf(fmaf(fmaf(5.9109374720e+01f, r, 1.5929113202e+02f), r, 5.0434271938e+01f), r,
                               3.3871327179e+00f);
        const float den = fmaf(fmaf(fmaf(6.7187563600e+01f, r, 7.8757757664e+01f), r, 1.7895169469e+01f), r, 1.0f);
        return q * num / den;
    }
    float r = q < 0.0f ? p : 1.0f - p;
    r = sqrtf(-synth_log(r));
    float value;
    if (r <= 5.0f) {
        r = r - 1.6f;
        const float num = fmaf(fmaf(fmaf(1.7023821103e-01f, r, 1.3067284816e+00f), r, 2.7568153900e+00f), r,
                               1.4234372777e+00f);
        const float den = fmaf(fmaf(1.2021132975e-01f, r, 7.3700164250e-01f), r, 1.0f);
        value = num / den;
    } else {
        r = r - 5.0f;
        const float num = fmaf(fmaf(fmaf(1.7337203997e-02f, r, 4.2868294337e-01f), r, 3.0812263860e+00f), r,
                               6.6579051150e+00f);
        const float den = fmaf(fmaf(1.2258202635e-02f, r, 2.4197894225e-01f), r, 1.0f);
        value = num / den;
    }
    return q < 0.0f ? -value : value;
}

// A standard normal from one word (inverse CDF; |value| <= 5.33).
NE_HD float synth_normal(uint32_t bits) { return synth_inverse_normal(synth_open_uniform(bits)); }

// ---- the ground truth as a sampler sees it ----------------------------------------------------------------------

// Flags of a feature that is a parent in the forest.
constexpr uint8_t kSynthExclusive = 1;  // at most one child stays active
constexpr uint8_t kSynthRescale = 2;    // children are scaled by value / mean (else gated: kept or zeroed)

// Pointers into a ground truth (host or device memory alike). Per feature i:
struct SynthView {
    int32_t kind;                 // SynthKind
    int32_t rank;                 // r
    int64_t n, d;
    uint64_t seed;
    const float* fire_probability;  // [n] p'_i, after compensation (r = 0: presence iff uniform < p'_i)
    const float* threshold;         // [n] Phi^-1(1 - p'_i) (r > 0)
    const float* factor;            // [n][r] F
    const float* noise_scale;       // [n] s_i = sqrt(1 - |F_i|^2)
    const float* mean;              // [n] magnitude mean (SaeBench)
    const float* stddev;            // [n] magnitude standard deviation (SaeBench)
    const int32_t* parent;          // [n] parent feature, -1 for roots and features in no tree
    const int64_t* child_begin;     // [n+1] children of i: child[child_begin[i] .. child_begin[i+1]), in order
    const int32_t* child;
    const uint8_t* flags;           // [n] kSynthExclusive | kSynthRescale of i as a parent
    const float* W;                 // [n][d]
    const float* b;                 // [d]
};

// m_i = F_i . g, summed in k order.
NE_HD float synth_factor_dot(const SynthView& v, int64_t i, const float* g) {
    const float* f = v.factor + i * v.rank;
    float m = 0.0f;
    for (int32_t k = 0; k < v.rank; ++k) m = fmaf(f[k], g[k], m);
    return m;
}

// Whether feature i's copula variable passes its threshold, given m_i and its word. The definition of firing.
NE_HD bool synth_fires_given(const SynthView& v, int64_t i, float m, uint32_t fire_bits) {
    if (v.rank == 0) return uniform01(fire_bits) < v.fire_probability[i];
    return fmaf(v.noise_scale[i], synth_normal(fire_bits), m) > v.threshold[i];
}

// Whether feature i fires in a sample whose factor draw is g [r].
NE_HD bool synth_fires(const SynthView& v, int64_t i, const float* g, Stream stream, uint32_t step, uint32_t sample) {
    const uint32_t bits = synth_word(v.seed, stream, step, sample, kSynthFire, static_cast<uint64_t>(i));
    return synth_fires_given(v, i, v.rank > 0 ? synth_factor_dot(v, i, g) : 0.0f, bits);
}

// Feature i's value when it fires, before its parent acts on it: relu(mean + std eta) (SaeBench; 0 counts as
// not active), U(0, 1] (Sharkey).
NE_HD float synth_magnitude(const SynthView& v, int64_t i, Stream stream, uint32_t step, uint32_t sample) {
    const uint32_t bits = synth_word(v.seed, stream, step, sample, kSynthMagnitude, static_cast<uint64_t>(i));
    if (v.kind == kSynthSharkey) return static_cast<float>((bits >> 8) + 1u) * (1.0f / 16777216.0f);
    const float value = fmaf(v.stddev[i], synth_normal(bits), v.mean[i]);
    return value > 0.0f ? value : 0.0f;
}

// The factor draw g [r] of a sample.
NE_HD void synth_factor_draw(const SynthView& v, Stream stream, uint32_t step, uint32_t sample, float* g) {
    for (int32_t k = 0; k < v.rank; ++k)
        g[k] = synth_normal(synth_word(v.seed, stream, step, sample, kSynthFactorNormal, static_cast<uint64_t>(k)));
}

// Position (0 .. active-1) of the child that exclusive parent i keeps among its `active` active children.
NE_HD uint32_t synth_choice(const SynthView& v, int64_t i, uint32_t active, Stream stream, uint32_t step,
                            uint32_t sample) {
    const uint32_t bits = synth_word(v.seed, stream, step, sample, kSynthChoice, static_cast<uint64_t>(i));
    return static_cast<uint32_t>((static_cast<uint64_t>(bits) * active) >> 32);
}

// A child's value once its parent (final value parent_value > 0) acts on it: raw * (parent_value / parent_mean)
// when the parent rescales, else raw (the gate is open).
NE_HD float synth_child_value(const SynthView& v, int64_t parent, float raw, float parent_value) {
    if (v.flags[parent] & kSynthRescale) return raw * (parent_value / v.mean[parent]);
    return raw;
}

}  // namespace ne
