// The MoE router's top-k choice recomputed on the host, to find the tokens CPU and CUDA may legitimately route
// differently. Both backends compute the logits H = x W_gate (+ noise) and pick the top k of H + route_bias in float,
// with summation orders, FMA contractions and libm routines (the noise's logf, cosf, expf, log1pf) that differ by a
// few rounding errors. A token whose k-th and (k+1)-th choices lie closer than those errors may go either way, and
// then the two runs part by a whole token's gradient, which no tolerance meant for rounding covers.
//
// So the parity tests recompute every token's logits in double from each backend's own parameters, with a bound on
// that backend's float error per logit (the stated bound, kSafety times the worst case of the float arithmetic):
//   r_e = kSafety u [(n + 2) (sum_i |xr_i W_gate[i][e]| + |N_e| sum_i |xr_i W_noise[i][e]|) + 25 |N_e| softplus_e
//                    + |H_e| + |H_e + bias_e|]
// u = 2^-24; xr = x (times the jitter multipliers); N_e the token's normal draw (noisy top-k only). The dot products
// round by at most (n u) sum |terms|, the jitter multipliers (1 + eps (2v - 1), contracted or not) by 2u, the normal
// draw and softplus by a few ulps of their libm routines (25 u covers both), the last two additions by u each. A
// token whose logits are all exact (every input 0, no noise) has r = 0: both backends compare the same floats and
// break ties to the lower index alike. A token is certain for a backend when every chosen expert c beats every other
// o by more than r_c + r_o; it is near-tied when it is not certain for one of the backends, or when the two
// backends' parameters (which part by rounding over a run) give different exact choices. Its instance is then
// excluded from the comparison, and counted, instead of loosening the tolerances.
//
// The inputs are drawn here from the engine's Philox streams exactly as both backends draw them (independent
// features only: no feature sets); routing_inputs_match_the_engine checks that against ne_toy_sample_batch.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "check.h"
#include "core/philox.h"
#include "models/moe.h"
#include "models/moe_common.h"
#include "models/toy_common.h"
#include "nativeengine.h"

namespace moe_routing {

constexpr double kUnit = 1.0 / 16777216.0;  // 2^-24, float's unit roundoff
constexpr double kSafety = 4.0;

// A model's parameters, every instance (layouts as ne_moe_get_params gives them).
struct Params {
    std::vector<float> W, b, gate, noise, bias;
};

inline Params read_params(const ne_moe* moe, const ne_moe_config& c) {
    const int64_t I = c.n_instances, E = c.n_experts, n = c.n_features, m = c.expert_hidden;
    Params p{std::vector<float>(I * E * n * m), std::vector<float>(I * E * n), std::vector<float>(I * n * E),
             std::vector<float>(I * n * E), std::vector<float>(I * E)};
    const ne_status status = ne_moe_get_params(moe, p.W.data(), p.W.size(), p.b.data(), p.b.size(), p.gate.data(),
                                               p.gate.size(), p.noise.data(), p.noise.size(), p.bias.data(),
                                               p.bias.size());
    if (status != NE_OK) std::printf("ne_moe_get_params: %s\n", ne_last_error());
    CHECK(status == NE_OK);
    return p;
}

// One batch of one instance's router inputs: x [batch][n], and the router's noise when it trains with some:
// normal [batch][E] (noisy top-k) or the jitter multipliers [batch][n].
struct Inputs {
    std::vector<float> x, normal, jitter;
};

// The batch of `step` in `stream` for `instance` (probability: that instance's [n]); training draws the noise too.
inline Inputs draw(const ne_moe_config& c, const float* probability, ne::Stream stream, int64_t step, int64_t instance,
                   bool training) {
    const int64_t n = c.n_features, E = c.n_experts, B = c.batch_size;
    const auto step32 = static_cast<uint32_t>(step), instance32 = static_cast<uint32_t>(instance);
    const bool signed_inputs = ne::toy_signed_inputs(c.expert_model);
    Inputs in;
    in.x.resize(B * n);
    for (int64_t t = 0; t < B; ++t)
        for (int64_t i = 0; i < n; i += 2) {
            float x0 = 0.0f, x1 = 0.0f;
            ne::toy_feature_pair(c.seed, stream, step32, instance32, static_cast<uint32_t>(t), static_cast<uint32_t>(i / 2),
                                 probability[i], i + 1 < n ? probability[i + 1] : 0.0f, signed_inputs, x0, x1);
            in.x[t * n + i] = x0;
            if (i + 1 < n) in.x[t * n + i + 1] = x1;
        }
    float quad[4];
    if (training && c.noise == NE_MOE_NOISE_NOISY_TOPK) {
        in.normal.resize(B * E);
        for (int64_t t = 0; t < B; ++t)
            for (int64_t e = 0; e < E; e += 4) {
                ne::moe_normal_quad(c.seed, stream, step32, instance32, static_cast<uint32_t>(t),
                                    static_cast<uint32_t>(e / 4), quad);
                for (int64_t j = e; j < std::min(e + 4, E); ++j) in.normal[t * E + j] = quad[j - e];
            }
    } else if (training && c.noise == NE_MOE_NOISE_JITTER) {
        in.jitter.resize(B * n);
        for (int64_t t = 0; t < B; ++t)
            for (int64_t i = 0; i < n; i += 4) {
                ne::moe_jitter_quad(c.seed, stream, step32, instance32, static_cast<uint32_t>(t),
                                    static_cast<uint32_t>(i / 4), ne::kMoeJitter, quad);
                for (int64_t j = i; j < std::min(i + 4, n); ++j) in.jitter[t * n + j] = quad[j - i];
            }
    }
    return in;
}

// One backend's choice for one token: the chosen experts (a bit per expert), whether the float arithmetic certainly
// makes it, and the closest call (the smallest v_c - v_o between a chosen c and another o, and its r_c + r_o).
struct Choice {
    uint64_t set = 0;
    bool certain = true;
    double margin = INFINITY, bound = 0;
};

// Token t of `in` under one instance's W_gate [n][E], W_noise [n][E] and route_bias [E].
inline Choice choose(const ne_moe_config& c, const Inputs& in, int64_t t, const float* gate, const float* noise,
                     const float* bias) {
    const int64_t n = c.n_features, E = c.n_experts, K = c.top_k;
    const bool noisy = !in.normal.empty(), jittered = !in.jitter.empty();
    std::vector<double> v(E), r(E);
    for (int64_t e = 0; e < E; ++e) {
        double z = 0, z_abs = 0, s = 0, s_abs = 0;
        for (int64_t i = 0; i < n; ++i) {
            const double xr = jittered ? static_cast<double>(in.x[t * n + i] * in.jitter[t * n + i]) : in.x[t * n + i];
            z += xr * gate[i * E + e];
            z_abs += std::fabs(xr * gate[i * E + e]);
            s += xr * noise[i * E + e];
            s_abs += std::fabs(xr * noise[i * E + e]);
        }
        const double normal = noisy ? in.normal[t * E + e] : 0.0;
        const double softplus = noisy ? ne::moe_softplus(s) : 0.0;
        const double h = z + normal * softplus;
        v[e] = h + bias[e];
        const bool exact = z_abs == 0 && !noisy;
        r[e] = exact ? 0.0
                     : kSafety * kUnit *
                           (static_cast<double>(n + 2) * (z_abs + std::fabs(normal) * s_abs) +
                            25.0 * std::fabs(normal) * softplus + std::fabs(h) + std::fabs(v[e]));
    }
    // Top k in rank order, ties to the lower index (as both backends choose).
    Choice choice;
    for (int64_t q = 0; q < K; ++q) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; ++e)
            if (!(choice.set >> e & 1) && (best < 0 || v[e] > v[best])) best = e;
        choice.set |= uint64_t(1) << best;
    }
    for (int64_t a = 0; a < E; ++a) {
        if (!(choice.set >> a & 1)) continue;
        for (int64_t o = 0; o < E; ++o) {
            if (choice.set >> o & 1) continue;
            const double margin = v[a] - v[o], bound = r[a] + r[o];
            if (margin - bound < choice.margin - choice.bound) choice.margin = margin, choice.bound = bound;
            const bool same_floats = bound == 0 && (margin > 0 || (margin == 0 && a < o));
            if (!(margin > bound || same_floats)) choice.certain = false;
        }
    }
    return choice;
}

// Whether CPU and CUDA may route the token differently (see the file comment).
inline bool near_tied(const Choice& cpu, const Choice& cuda) {
    return !(cpu.certain && cuda.certain && cpu.set == cuda.set);
}

// Near-tied tokens of one batch: per instance, how many of its tokens (instances: c.n_instances).
struct BatchTies {
    std::vector<int64_t> per_instance;
    int64_t tokens = 0, tied = 0;
};

// Every instance's batch of `step` in `stream`, routed under both backends' parameters. probability: [I][n].
inline BatchTies find_ties(const ne_moe_config& c, const std::vector<float>& probability, ne::Stream stream, int64_t step,
                           bool training, const Params& cpu, const Params& cuda) {
    const int64_t I = c.n_instances, n = c.n_features, E = c.n_experts;
    BatchTies ties;
    ties.per_instance.assign(I, 0);
    for (int64_t inst = 0; inst < I; ++inst) {
        const Inputs in = draw(c, probability.data() + inst * n, stream, step, inst, training);
        const int64_t g = inst * n * E;
        for (int64_t t = 0; t < c.batch_size; ++t) {
            const Choice a = choose(c, in, t, cpu.gate.data() + g, cpu.noise.data() + g, cpu.bias.data() + inst * E);
            const Choice b = choose(c, in, t, cuda.gate.data() + g, cuda.noise.data() + g, cuda.bias.data() + inst * E);
            ++ties.tokens;
            if (near_tied(a, b)) {
                ++ties.tied;
                ++ties.per_instance[inst];
            }
        }
    }
    return ties;
}

}  // namespace moe_routing
