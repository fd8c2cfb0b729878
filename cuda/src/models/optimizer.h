// The optimizer every model trains with, written once for CPU and CUDA: Adam and AdamW's element update, and its
// per-step constants. Bias corrections are computed in double on the host and arrive precomputed, so every backend
// applies the same float arithmetic.
#pragma once
#include <math.h>
#include <stdint.h>

#include "core/hostdevice.h"
#include "nativeengine.h"

namespace ne {

// One step's constants: step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t).
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

// The constants of optimizer step t >= 1; optimizer is an ne_optimizer.
AdamStep adam_step(int32_t optimizer, float lr, float weight_decay, float beta1, float beta2, float eps, int64_t t);

}  // namespace ne
