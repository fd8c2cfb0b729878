// Random inputs of the MoE router, written once for CPU and CUDA: Philox counters in a range the data stream
// never uses (the data's first counter word is a feature pair index < 2^23).
#pragma once
#include <math.h>
#include <stdint.h>

#include "core/hostdevice.h"
#include "core/philox.h"

namespace ne {

constexpr uint32_t kMoeNormalCounter = 0x80000000u;  // | quad index over experts
constexpr uint32_t kMoeJitterCounter = 0xC0000000u;  // | quad index over features

// Four standard normals for experts 4q .. 4q+3 of one token (Box-Muller on two pairs of uniforms).
NE_HD void moe_normal_quad(uint64_t seed, Stream stream, uint32_t step, uint32_t instance, uint32_t sample,
                           uint32_t quad, float out[4]) {
    const Philox4 r = philox4x32_10(kMoeNormalCounter | quad, sample, instance, stream_word(stream, step),
                                    static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    for (int h = 0; h < 2; ++h) {
        // u1 in (0, 1] keeps the log finite.
        const float u1 = (static_cast<float>(r.v[2 * h] >> 8) + 1.0f) * (1.0f / 16777216.0f);
        const float u2 = uniform01(r.v[2 * h + 1]);
        const float radius = sqrtf(-2.0f * logf(u1)), angle = 6.283185307179586f * u2;
        out[2 * h] = radius * cosf(angle);
        out[2 * h + 1] = radius * sinf(angle);
    }
}

// Four jitter multipliers 1 + eps * (2u - 1) for features 4q .. 4q+3 of one token.
NE_HD void moe_jitter_quad(uint64_t seed, Stream stream, uint32_t step, uint32_t instance, uint32_t sample,
                           uint32_t quad, float eps, float out[4]) {
    const Philox4 r = philox4x32_10(kMoeJitterCounter | quad, sample, instance, stream_word(stream, step),
                                    static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    for (int j = 0; j < 4; ++j) out[j] = 1.0f + eps * (2.0f * uniform01(r.v[j]) - 1.0f);
}

// softplus and its derivative, overflow-safe.
NE_HD float moe_softplus(float s) { return s > 20.0f ? s : log1pf(expf(s)); }
NE_HD double moe_softplus(double s) { return s > 20.0 ? s : log1p(exp(s)); }
NE_HD float moe_sigmoid(float s) { return 1.0f / (1.0f + expf(-s)); }
NE_HD double moe_sigmoid(double s) { return 1.0 / (1.0 + exp(-s)); }

// Slots an expert may take per batch: ceil(capacity_factor * batch * k / E), or unlimited (capacity_factor 0).
NE_HD int64_t moe_capacity(float capacity_factor, int64_t batch, int64_t top_k, int64_t experts) {
    if (capacity_factor <= 0.0f) return INT64_MAX;
    const double slots = static_cast<double>(capacity_factor) * static_cast<double>(batch * top_k) /
                         static_cast<double>(experts);
    // A factor given as a float (0.6f is 0.6000000238) must not round 6 slots up to 7.
    return static_cast<int64_t>(ceil(slots * (1.0 - 1e-6)));
}

}  // namespace ne
