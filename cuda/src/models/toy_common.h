// Definitions every toy-model backend shares, written once for CPU and CUDA: the data stream, the loss weight
// and the optimizer's element update. A CUDA kernel and the CPU loop call the same functions, which is what
// makes a CPU run and a CUDA run of one config comparable step by step.
#pragma once
#include <math.h>
#include <stdint.h>

#include "core/hostdevice.h"
#include "core/philox.h"

namespace ne {

// Features 2*pair and 2*pair+1 of one sample: U[0,1) with probability p, else 0. One Philox call yields both
// (two words decide presence, two give values).
NE_HD void toy_feature_pair(uint64_t seed, Stream stream, uint32_t step, uint32_t instance, uint32_t sample,
                            uint32_t pair, float p0, float p1, float& x0, float& x1) {
    const Philox4 r = philox4x32_10(pair, sample, instance, stream_word(stream, step),
                                    static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    // value * (present ? 1 : 0): exact, and branch-free so host loops vectorise.
    x0 = uniform01(r.v[1]) * static_cast<float>(uniform01(r.v[0]) < p0);
    x1 = uniform01(r.v[3]) * static_cast<float>(uniform01(r.v[2]) < p1);
}

// One Adam/AdamW step for one parameter. Bias corrections arrive precomputed (in double on the host) so every
// backend applies the same float arithmetic: step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t).
struct AdamStep {
    float lr, weight_decay, beta1, beta2, eps, step_size, bc2_sqrt;
    int32_t decoupled;  // 1: AdamW (decay the parameter), 0: Adam (decay added to the gradient)
};

NE_HD void adam_update(float& param, float grad, float& m, float& v, const AdamStep& s) {
    if (s.decoupled) {
        param *= 1.0f - s.lr * s.weight_decay;
    } else {
        grad += s.weight_decay * param;
    }
    m = s.beta1 * m + (1.0f - s.beta1) * grad;
    v = s.beta2 * v + (1.0f - s.beta2) * grad * grad;
    const float denom = sqrtf(v) / s.bc2_sqrt + s.eps;
    param -= s.step_size * (m / denom);
}

}  // namespace ne
