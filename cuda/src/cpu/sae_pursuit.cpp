// Matching pursuit (sae.h's matching_pursuit): the greedy encoder and its exact backward through the unrolled
// pursuit, one token at a time. Both CPU paths (the reference and the backend's fast path) run this one
// implementation: correctness first. Only the decoder's dot products with the residual are spread over threads
// (each latent's dot is one thread's own loop, the argmax sequential), so results do not depend on the thread count;
// the tokens run one after another, a slower path than the blocked kernels of the other architectures. The CUDA
// backend's twin (cuda/sae_pursuit_cuda.cu) runs each step over the whole batch and is tested against this one.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "models/sae.h"

namespace ne {
namespace {

// Loops over fewer multiply-adds than this run on one thread.
constexpr int64_t kParallelWork = int64_t(1) << 16;

}  // namespace

template <typename T>
int64_t sae_pursuit_encode(const SaeSpec& s, const T* W_dec, const T* b_dec, const T* x, T* acts, T* residual,
                           std::vector<PursuitRecord<T>>* steps, std::vector<double>* residual_norms) {
    const int64_t d = s.d, m = s.m;
    std::fill(acts, acts + m, T(0));
    for (int64_t i = 0; i < d; ++i) residual[i] = x[i] - b_dec[i];
    std::vector<T> dots(m);
    const int64_t limit = s.pursuit_iterations();
    const bool parallel = m * d >= kParallelWork;
    if (steps != nullptr) steps->clear();
    int64_t iterations = 0;
    while (iterations < limit) {
#pragma omp parallel for schedule(static) if (parallel)
        for (int64_t j = 0; j < m; ++j) {
            T dot = T(0);
            for (int64_t i = 0; i < d; ++i) dot += residual[i] * W_dec[j * d + i];
            dots[j] = dot;
        }
        // argmax of ReLU(dots), the lowest index on a tie (so latent 0 when every dot is <= 0, with v = 0).
        int64_t best = 0;
        T best_value = dots[0] > T(0) ? dots[0] : T(0);
        for (int64_t j = 1; j < m; ++j) {
            const T v = dots[j] > T(0) ? dots[j] : T(0);
            if (v > best_value) {
                best = j;
                best_value = v;
            }
        }
        const bool new_support = acts[best] == T(0) && best_value != T(0);
        acts[best] += best_value;
        for (int64_t i = 0; i < d; ++i) residual[i] -= best_value * W_dec[best * d + i];
        ++iterations;
        if (steps != nullptr) steps->push_back({best, dots[best], best_value});
        double sq = 0;
        for (int64_t i = 0; i < d; ++i) sq += static_cast<double>(residual[i]) * static_cast<double>(residual[i]);
        if (residual_norms != nullptr) residual_norms->push_back(std::sqrt(sq));
        if (s.stop_on_duplicate_support && !new_support) break;
        if (s.residual_threshold > 0 && std::sqrt(sq) < static_cast<double>(s.residual_threshold)) break;
    }
    return iterations;
}

template <typename T>
SaeLoss sae_pursuit_loss_and_grad(const SaeSpec& s, const T* W_dec, const T* b_dec, const T* x,
                                  const int64_t* since_fired, T* gW_dec, T* gb_dec, int64_t* fire_count, T* x_hat,
                                  int64_t* selected) {
    const int64_t d = s.d, m = s.m, B = s.batch;
    SaeLoss loss;
    if (since_fired != nullptr)
        for (int64_t j = 0; j < m; ++j) loss.dead += since_fired[j] >= s.dead_window;
    if (gW_dec != nullptr) {
        std::fill(gW_dec, gW_dec + m * d, T(0));
        std::fill(gb_dec, gb_dec + d, T(0));
    }
    if (fire_count != nullptr) std::fill(fire_count, fire_count + m, int64_t(0));
    if (selected != nullptr) std::fill(selected, selected + m, int64_t(0));
    std::vector<double> mean(d, 0.0);
    for (int64_t t = 0; t < B; ++t)
        for (int64_t i = 0; i < d; ++i) mean[i] += static_cast<double>(x[t * d + i]);
    for (auto& v : mean) v /= static_cast<double>(B);
    std::vector<T> acts(m), residual(d), xh(d), g_xhat(d), g_r(d);
    std::vector<PursuitRecord<T>> steps;
    const T scale = T(2) / static_cast<T>(B);
    double sse = 0, variance = 0, nonzero = 0;
    for (int64_t t = 0; t < B; ++t) {
        const T* xt = x + t * d;
        sae_pursuit_encode<T>(s, W_dec, b_dec, xt, acts.data(), residual.data(), &steps, nullptr);
        // x^ = acts W_dec + b_dec, as the decoder computes it (not x - r: the loss is of the decoder's output).
        for (int64_t i = 0; i < d; ++i) xh[i] = b_dec[i];
        for (int64_t j = 0; j < m; ++j) {
            if (acts[j] == T(0)) continue;
            nonzero += 1;
            if (fire_count != nullptr) ++fire_count[j];
            for (int64_t i = 0; i < d; ++i) xh[i] += acts[j] * W_dec[j * d + i];
        }
        if (x_hat != nullptr) std::copy(xh.begin(), xh.end(), x_hat + t * d);
        for (int64_t i = 0; i < d; ++i) {
            const T r = xh[i] - xt[i];
            sse += static_cast<double>(r * r);
            g_xhat[i] = scale * r;
            const double c = static_cast<double>(xt[i]) - mean[i];
            variance += c * c;
        }
        if (selected != nullptr)
            for (const auto& step : steps) ++selected[step.latent];
        if (gW_dec == nullptr) continue;

        // Backward. The decoder: d/dW_dec,j += acts_j g_xhat, d/db_dec += g_xhat, d/dacts_j = g_xhat . W_dec,j.
        for (int64_t i = 0; i < d; ++i) gb_dec[i] += g_xhat[i];
        for (int64_t j = 0; j < m; ++j)
            if (acts[j] != T(0))
                for (int64_t i = 0; i < d; ++i) gW_dec[j * d + i] += acts[j] * g_xhat[i];
        // The pursuit, last step first: r_{q+1} = r_q - v_q w, v_q = ReLU(r_q . w), acts_j += v_q (w = W_dec,j).
        // g_r = d loss/d r_{q+1} (0 after the last step: the final residual feeds only the stopping rule). The
        // residual r_q is rebuilt from r_{q+1} as r_{q+1} + v_q w.
        std::fill(g_r.begin(), g_r.end(), T(0));
        for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
            const int64_t j = it->latent;
            const T* w = W_dec + j * d;
            T* gw = gW_dec + j * d;
            T g_value = T(0);  // d loss/d v_q: through acts_j and through r_{q+1}
            for (int64_t i = 0; i < d; ++i) g_value += g_xhat[i] * w[i] - g_r[i] * w[i];
            for (int64_t i = 0; i < d; ++i) {
                gw[i] -= it->value * g_r[i];
                residual[i] += it->value * w[i];  // now r_q
            }
            if (!(it->pre > T(0))) continue;  // ReLU's flat side
            for (int64_t i = 0; i < d; ++i) {
                gw[i] += g_value * residual[i];
                g_r[i] += g_value * w[i];
            }
        }
        // r_0 = x - b_dec.
        for (int64_t i = 0; i < d; ++i) gb_dec[i] -= g_r[i];
    }
    loss.mse = sse / static_cast<double>(B);
    loss.fvu = variance > 0 ? sse / variance : 0.0;
    loss.l0 = nonzero / static_cast<double>(B);
    return loss;
}

template int64_t sae_pursuit_encode<float>(const SaeSpec&, const float*, const float*, const float*, float*, float*,
                                           std::vector<PursuitRecord<float>>*, std::vector<double>*);
template int64_t sae_pursuit_encode<double>(const SaeSpec&, const double*, const double*, const double*, double*,
                                            double*, std::vector<PursuitRecord<double>>*, std::vector<double>*);
template SaeLoss sae_pursuit_loss_and_grad<float>(const SaeSpec&, const float*, const float*, const float*,
                                                  const int64_t*, float*, float*, int64_t*, float*, int64_t*);
template SaeLoss sae_pursuit_loss_and_grad<double>(const SaeSpec&, const double*, const double*, const double*,
                                                   const int64_t*, double*, double*, int64_t*, double*, int64_t*);

}  // namespace ne
