// CPU backend of the mixture-of-experts toy models. moe_loss_and_grad is the readable reference: tokens in order,
// so routing, capacity and every sum are deterministic; the CUDA kernel is tested against it. The backend trains
// and evaluates with the grouped kernel (moe_grouped.cpp), which gives the reference's results to the bit, with
// OpenMP over instances.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <vector>

#include "core/nvtx.h"
#include "models/moe.h"
#include "models/moe_common.h"
#include "models/training.h"

namespace ne {

void moe_router_noise(const MoeSpec& spec, uint64_t seed, Stream stream, int64_t step, int64_t instance,
                      std::vector<float>& normal, std::vector<float>& jitter) {
    normal.clear();
    jitter.clear();
    const auto step32 = static_cast<uint32_t>(step), instance32 = static_cast<uint32_t>(instance);
    float quad[4];
    if (spec.noise == NE_MOE_NOISE_NOISY_TOPK) {
        normal.resize(spec.batch * spec.experts);
        for (int64_t t = 0; t < spec.batch; ++t)
            for (int64_t e = 0; e < spec.experts; e += 4) {
                moe_normal_quad(seed, stream, step32, instance32, static_cast<uint32_t>(t),
                                static_cast<uint32_t>(e / 4), quad);
                for (int64_t j = e; j < std::min(e + 4, spec.experts); ++j) normal[t * spec.experts + j] = quad[j - e];
            }
    } else if (spec.noise == NE_MOE_NOISE_JITTER) {
        jitter.resize(spec.batch * spec.n);
        for (int64_t t = 0; t < spec.batch; ++t)
            for (int64_t i = 0; i < spec.n; i += 4) {
                moe_jitter_quad(seed, stream, step32, instance32, static_cast<uint32_t>(t), static_cast<uint32_t>(i / 4),
                                kMoeJitter, quad);
                for (int64_t j = i; j < std::min(i + 4, spec.n); ++j) jitter[t * spec.n + j] = quad[j - i];
            }
    }
}

template <typename T>
MoeBatch moe_loss_and_grad(const MoeSpec& s, MoeParams<T> p, const T* importance, T l1, const T* x, const T* normal,
                           const T* jitter, MoeGrads<T>* g, T* output) {
    const int64_t n = s.n, m = s.m, E = s.experts, K = s.top_k, B = s.batch;
    const bool hidden_relu = toy_hidden_relu(s.expert_model);
    const bool noisy = normal != nullptr, jittered = jitter != nullptr;
    const MoeSizes sizes(s);
    if (g != nullptr) {
        std::fill(g->W, g->W + sizes.W, T(0));
        std::fill(g->b, g->b + sizes.b, T(0));
        std::fill(g->W_gate, g->W_gate + sizes.gate, T(0));
        std::fill(g->W_noise, g->W_noise + sizes.gate, T(0));
    }
    MoeBatch result;
    result.load.assign(E, 0);

    // Pass 1, routing: logits H, probabilities g, the chosen experts in rank order, whether each slot is kept.
    std::vector<T> xr(B * n), z(B * E), sp(B * E), H(B * E), prob(B * E), lse(B);
    std::vector<int64_t> chosen(B * K);
    std::vector<char> kept(B * K);
    const int64_t capacity = moe_capacity(s.capacity_factor, B, K, E);
    std::vector<int64_t> taken(E, 0);
    std::vector<char> picked(E);
    for (int64_t t = 0; t < B; ++t) {
        const T* xt = x + t * n;
        T* xrt = xr.data() + t * n;
        for (int64_t i = 0; i < n; ++i) xrt[i] = jittered ? xt[i] * jitter[t * n + i] : xt[i];
        T* Ht = H.data() + t * E;
        T* zt = z.data() + t * E;
        T* spt = sp.data() + t * E;
        // Logits over the nonzero inputs only (adding an exact zero changes no sum), in input order.
        std::fill(zt, zt + E, T(0));
        std::fill(spt, spt + E, T(0));
        for (int64_t i = 0; i < n; ++i) {
            const T xi = xrt[i];
            if (xi == T(0)) continue;
            for (int64_t e = 0; e < E; ++e) zt[e] += xi * p.W_gate[i * E + e];
            if (noisy)
                for (int64_t e = 0; e < E; ++e) spt[e] += xi * p.W_noise[i * E + e];
        }
        for (int64_t e = 0; e < E; ++e) Ht[e] = noisy ? zt[e] + normal[t * E + e] * moe_softplus(spt[e]) : zt[e];
        const T top = *std::max_element(Ht, Ht + E);
        T sum = T(0);
        T* probt = prob.data() + t * E;
        for (int64_t e = 0; e < E; ++e) {
            probt[e] = std::exp(Ht[e] - top);
            sum += probt[e];
        }
        for (int64_t e = 0; e < E; ++e) probt[e] /= sum;
        lse[t] = top + std::log(sum);
        // Top-k of H + route_bias in rank order; ties go to the lower index (a strict comparison in index order).
        std::fill(picked.begin(), picked.end(), 0);
        for (int64_t r = 0; r < K; ++r) {
            int64_t e = -1;
            for (int64_t c = 0; c < E; ++c)
                if (!picked[c] && (e < 0 || Ht[c] + p.route_bias[c] > Ht[e] + p.route_bias[e])) e = c;
            picked[e] = 1;
            chosen[t * K + r] = e;
            result.load[e] += 1;
            kept[t * K + r] = taken[e] < capacity;
            if (kept[t * K + r]) taken[e] += 1;
            else result.dropped += 1;
        }
    }

    // Auxiliary losses: load balance alpha E sum_e f_e P_e (f without gradient) and z-loss c mean lse^2.
    std::vector<T> f(E), P(E, T(0));
    for (int64_t e = 0; e < E; ++e) f[e] = static_cast<T>(result.load[e]) / static_cast<T>(B * K);
    for (int64_t t = 0; t < B; ++t)
        for (int64_t e = 0; e < E; ++e) P[e] += prob[t * E + e] / static_cast<T>(B);
    double balance = 0, zsum = 0;
    for (int64_t e = 0; e < E; ++e) balance += static_cast<double>(f[e] * P[e]);
    for (int64_t t = 0; t < B; ++t) zsum += static_cast<double>(lse[t] * lse[t]);
    result.balance = static_cast<double>(s.load_balance) * static_cast<double>(E) * balance;
    result.z = static_cast<double>(s.z_loss) * zsum / static_cast<double>(B);

    // Pass 2, per token: experts, combine, loss and gradients.
    const T scale = T(2) / (static_cast<T>(B) * static_cast<T>(n));
    const T l1_scale = l1 / static_cast<T>(B);
    std::vector<T> a(K * m), h(K * m), pre(K * n), out(K * n), y(n), d(n), gate(K), dgate(K), dprob(E), gh(m), dH(E), dS(E);
    double task = 0, l1_norm = 0;
    for (int64_t t = 0; t < B; ++t) {
        const T* xt = x + t * n;
        const T* probt = prob.data() + t * E;
        // Gates of the chosen experts (renormalised over them when asked).
        T chosen_sum = T(0);
        for (int64_t r = 0; r < K; ++r) chosen_sum += probt[chosen[t * K + r]];
        for (int64_t r = 0; r < K; ++r)
            gate[r] = s.renormalize ? probt[chosen[t * K + r]] / chosen_sum : probt[chosen[t * K + r]];
        std::fill(y.begin(), y.end(), T(0));
        for (int64_t r = 0; r < K; ++r) {
            if (!kept[t * K + r]) continue;
            const int64_t e = chosen[t * K + r];
            const T* We = p.W + e * n * m;
            const T* be = p.b + e * n;
            T* ar = a.data() + r * m;
            T* hr = h.data() + r * m;
            // a = W_e^T x over the nonzero inputs, in input order.
            std::fill(ar, ar + m, T(0));
            for (int64_t i = 0; i < n; ++i) {
                if (xt[i] == T(0)) continue;
                for (int64_t j = 0; j < m; ++j) ar[j] += xt[i] * We[i * m + j];
            }
            for (int64_t j = 0; j < m; ++j) {
                hr[j] = hidden_relu && ar[j] < T(0) ? T(0) : ar[j];
                l1_norm += static_cast<double>(std::abs(hr[j]));
            }
            // pre_i = b_i + sum_j W_ij h_j, summed in j order for every i at once (independent chains).
            T* prer = pre.data() + r * n;
            std::copy(be, be + n, prer);
            for (int64_t j = 0; j < m; ++j)
                for (int64_t i = 0; i < n; ++i) prer[i] += We[i * m + j] * hr[j];
            for (int64_t i = 0; i < n; ++i) {
                out[r * n + i] = prer[i] > T(0) ? prer[i] : T(0);
                y[i] += gate[r] * out[r * n + i];
            }
        }
        for (int64_t i = 0; i < n; ++i) {
            const T diff = y[i] - xt[i];
            task += static_cast<double>(importance[i] * diff * diff);
            d[i] = scale * importance[i] * diff;
            if (output != nullptr) output[t * n + i] = y[i];
        }
        if (g == nullptr) continue;

        // Experts: upstream gate_r * d through the output ReLU, then as a toy model's backward.
        for (int64_t r = 0; r < K; ++r) {
            dgate[r] = T(0);
            if (!kept[t * K + r]) continue;
            const int64_t e = chosen[t * K + r];
            const T* We = p.W + e * n * m;
            T* gWe = g->W + e * n * m;
            T* gbe = g->b + e * n;
            const T* ar = a.data() + r * m;
            const T* hr = h.data() + r * m;
            for (int64_t j = 0; j < m; ++j) gh[j] = l1_scale * static_cast<T>((hr[j] > T(0)) - (hr[j] < T(0)));
            for (int64_t i = 0; i < n; ++i) {
                dgate[r] += d[i] * out[r * n + i];  // the gate gradient <dL/dy, expert_e(x)>
                const T dpre = pre[r * n + i] > T(0) ? gate[r] * d[i] : T(0);
                if (dpre == T(0)) continue;
                gbe[i] += dpre;
                for (int64_t j = 0; j < m; ++j) {
                    gWe[i * m + j] += dpre * hr[j];
                    gh[j] += dpre * We[i * m + j];
                }
            }
            if (hidden_relu)
                for (int64_t j = 0; j < m; ++j) gh[j] = ar[j] > T(0) ? gh[j] : T(0);
            for (int64_t i = 0; i < n; ++i) {
                if (xt[i] == T(0)) continue;
                for (int64_t j = 0; j < m; ++j) gWe[i * m + j] += xt[i] * gh[j];
            }
        }
        // Gates back to the router probabilities (through the renormalisation), plus the balance loss.
        std::fill(dprob.begin(), dprob.end(), T(0));
        if (s.renormalize) {
            T weighted = T(0);
            for (int64_t r = 0; r < K; ++r) weighted += dgate[r] * gate[r];
            for (int64_t r = 0; r < K; ++r) dprob[chosen[t * K + r]] += (dgate[r] - weighted) / chosen_sum;
        } else {
            for (int64_t r = 0; r < K; ++r) dprob[chosen[t * K + r]] += dgate[r];
        }
        const T alpha_scale = static_cast<T>(s.load_balance) * static_cast<T>(E) / static_cast<T>(B);
        for (int64_t e = 0; e < E; ++e) dprob[e] += alpha_scale * f[e];
        // Softmax backward, plus the z-loss: d/dH_e c lse^2 / B = 2 c lse prob_e / B.
        T dot = T(0);
        for (int64_t e = 0; e < E; ++e) dot += probt[e] * dprob[e];
        const T z_scale = T(2) * static_cast<T>(s.z_loss) * lse[t] / static_cast<T>(B);
        const T* xrt = xr.data() + t * n;
        for (int64_t e = 0; e < E; ++e) {
            dH[e] = probt[e] * (dprob[e] - dot) + z_scale * probt[e];
            dS[e] = noisy ? dH[e] * normal[t * E + e] * moe_sigmoid(sp[t * E + e]) : T(0);
        }
        // W_gate [n][E] row by row: contiguous, and each element still sums its tokens in order.
        for (int64_t i = 0; i < n; ++i) {
            const T xi = xrt[i];
            if (xi == T(0)) continue;
            for (int64_t e = 0; e < E; ++e) g->W_gate[i * E + e] += xi * dH[e];
            if (noisy)
                for (int64_t e = 0; e < E; ++e) g->W_noise[i * E + e] += xi * dS[e];
        }
    }
    result.task = task / (static_cast<double>(B) * static_cast<double>(n));
    result.l1 = static_cast<double>(l1) * l1_norm / static_cast<double>(B);
    return result;
}

template MoeBatch moe_loss_and_grad<float>(const MoeSpec&, MoeParams<float>, const float*, float, const float*,
                                           const float*, const float*, MoeGrads<float>*, float*);
template MoeBatch moe_loss_and_grad<double>(const MoeSpec&, MoeParams<double>, const double*, double, const double*,
                                            const double*, const double*, MoeGrads<double>*, double*);

namespace {

class CpuMoe final : public MoeBackend {
public:
    CpuMoe(const MoeSpec& spec, const ToyShape& shape, const ToyData& data)
        : spec_(spec), shape_(shape), data_(data), sizes_(spec), instances_(shape.instances),
          W_(instances_ * sizes_.W), b_(instances_ * sizes_.b), gate_(instances_ * sizes_.gate),
          noise_(instances_ * sizes_.gate), bias_(instances_ * sizes_.bias),
          mW_(W_.size()), vW_(W_.size()), mb_(b_.size()), vb_(b_.size()), mgate_(gate_.size()),
          vgate_(gate_.size()), mnoise_(noise_.size()), vnoise_(noise_.size()), non_finite_(instances_) {}

    void train(int64_t first_step, const std::vector<AdamStep>& adam, float bias_update) override {
        NE_NVTX_RANGE("moe.train");
        run_instances([&](int64_t inst, Scratch& s) {
            for (size_t k = 0; k < adam.size() && non_finite_[inst].step == 0; ++k) {
                const int64_t step = first_step + static_cast<int64_t>(k);
                MoeBatch batch;
                {
                    NE_NVTX_RANGE("moe.forward_backward");
                    batch = run_batch(inst, Stream::kTrain, step, true, s);
                }
                // Training skips summing the loss terms, so (as on CUDA) a step whose gradient is not finite is
                // the one not applied, reported as the loss's, and the instance stops there.
                if (!all_finite(s.gW.data(), sizes_.W) || !all_finite(s.gb.data(), sizes_.b) ||
                    !all_finite(s.ggate.data(), sizes_.gate) || !all_finite(s.gnoise.data(), sizes_.gate)) {
                    non_finite_[inst] = ne_non_finite{step + 1, inst, NE_NON_FINITE_LOSS, 0};
                    break;
                }
                NE_NVTX_RANGE("moe.optimizer");
                const AdamStep& hp = adam[k];
                auto update = [&](std::vector<float>& param, std::vector<float>& m, std::vector<float>& v,
                                  const std::vector<float>& grad, int64_t size) {
                    const int64_t o = inst * size;
                    for (int64_t j = 0; j < size; ++j) adam_update(param[o + j], grad[j], m[o + j], v[o + j], hp);
                };
                update(W_, mW_, vW_, s.gW, sizes_.W);
                update(b_, mb_, vb_, s.gb, sizes_.b);
                update(gate_, mgate_, vgate_, s.ggate, sizes_.gate);
                update(noise_, mnoise_, vnoise_, s.gnoise, sizes_.gate);
                if (!all_finite(W_.data() + inst * sizes_.W, sizes_.W) || !all_finite(b_.data() + inst * sizes_.b, sizes_.b) ||
                    !all_finite(gate_.data() + inst * sizes_.gate, sizes_.gate) ||
                    !all_finite(noise_.data() + inst * sizes_.gate, sizes_.gate))
                    non_finite_[inst] = ne_non_finite{step + 1, inst, NE_NON_FINITE_PARAMETERS, 0};
                if (bias_update > 0.0f) {
                    // Aux-loss-free balancing: raise the bias of under-loaded experts, lower the over-loaded.
                    const double mean_load = static_cast<double>(spec_.batch * spec_.top_k) / spec_.experts;
                    for (int64_t e = 0; e < spec_.experts; ++e) {
                        const double gap = mean_load - static_cast<double>(batch.load[e]);
                        bias_[inst * sizes_.bias + e] += bias_update * static_cast<float>((gap > 0) - (gap < 0));
                    }
                }
            }
        });
    }

    void evaluate(int64_t batches, float* out) override {
        NE_NVTX_RANGE("moe.evaluate");
        const int64_t E = spec_.experts, fields = NE_MOE_EVAL_FIELDS + E;
        run_instances([&](int64_t inst, Scratch& s) {
            double sums[NE_MOE_EVAL_FIELDS] = {};
            std::vector<double> usage(E, 0.0);
            for (int64_t k = 0; k < batches; ++k) {
                const MoeBatch batch = run_batch(inst, Stream::kEvaluate, k, false, s);
                sums[0] += batch.task;
                sums[1] += batch.l1;
                sums[2] += batch.balance;
                sums[3] += batch.z;
                sums[4] += static_cast<double>(batch.dropped) / static_cast<double>(spec_.batch * spec_.top_k);
                for (int64_t e = 0; e < E; ++e) usage[e] += static_cast<double>(batch.load[e]) / spec_.batch;
            }
            float* o = out + inst * fields;
            for (int j = 0; j < NE_MOE_EVAL_FIELDS; ++j) o[j] = static_cast<float>(sums[j] / batches);
            for (int64_t e = 0; e < E; ++e) o[NE_MOE_EVAL_FIELDS + e] = static_cast<float>(usage[e] / batches);
        });
    }

    void get_params(float* W, float* b, float* W_gate, float* W_noise, float* route_bias) const override {
        std::copy(W_.begin(), W_.end(), W);
        std::copy(b_.begin(), b_.end(), b);
        std::copy(gate_.begin(), gate_.end(), W_gate);
        std::copy(noise_.begin(), noise_.end(), W_noise);
        std::copy(bias_.begin(), bias_.end(), route_bias);
    }

    void set_params(const float* W, const float* b, const float* W_gate, const float* W_noise,
                    const float* route_bias) override {
        std::copy(W, W + W_.size(), W_.begin());
        std::copy(b, b + b_.size(), b_.begin());
        std::copy(W_gate, W_gate + gate_.size(), gate_.begin());
        std::copy(W_noise, W_noise + noise_.size(), noise_.begin());
        std::copy(route_bias, route_bias + bias_.size(), bias_.begin());
        for (auto* state : {&mW_, &vW_, &mb_, &vb_, &mgate_, &vgate_, &mnoise_, &vnoise_})
            std::fill(state->begin(), state->end(), 0.0f);
        std::fill(non_finite_.begin(), non_finite_.end(), ne_non_finite{});
    }

    void set_data(const ToyData& data) override { data_ = data; }

    void non_finite(ne_non_finite* per_instance) const override {
        std::copy(non_finite_.begin(), non_finite_.end(), per_instance);
    }

private:
    struct Scratch {
        std::vector<float> x, normal, jitter, gW, gb, ggate, gnoise;
        MoeWorkspace<float> workspace;
    };

    MoeBatch run_batch(int64_t inst, Stream stream, int64_t step, bool training, Scratch& s) {
        toy_generate_batch(shape_, data_.probability.data() + inst * shape_.n,
                           data_.rules.empty() ? nullptr : data_.rules.data(), stream, step, inst, s.x.data());
        // Router noise is a training device: evaluation routes on the clean logits.
        if (training) moe_router_noise(spec_, shape_.seed, stream, step, shape_.first_instance + inst, s.normal, s.jitter);
        else s.normal.clear(), s.jitter.clear();
        const MoeParams<float> params{W_.data() + inst * sizes_.W, b_.data() + inst * sizes_.b,
                                      gate_.data() + inst * sizes_.gate, noise_.data() + inst * sizes_.gate,
                                      bias_.data() + inst * sizes_.bias};
        MoeGrads<float> grads{s.gW.data(), s.gb.data(), s.ggate.data(), s.gnoise.data()};
        // Training reads only the gradients and the load, so it skips summing the loss terms.
        return moe_loss_and_grad_grouped<float>(spec_, params, data_.importance.data() + inst * shape_.n,
                                                data_.l1[inst], s.x.data(), s.normal.empty() ? nullptr : s.normal.data(),
                                                s.jitter.empty() ? nullptr : s.jitter.data(),
                                                training ? &grads : nullptr, s.workspace, nullptr, !training);
    }

    // As CpuToy::run_instances. The kernel sizes its workspace on the first batch (and the reference allocates
    // per batch), so an exception (an allocation failure) can arise inside the parallel region: it is caught
    // there and rethrown after it, because one escaping an OpenMP region would end the process.
    template <class Body>
    void run_instances(Body&& body) {
        const int threads = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(instances_)));
        std::vector<Scratch> scratch(threads);
        for (auto& s : scratch) {
            s.x.resize(shape_.batch * shape_.n);
            s.normal.reserve(spec_.batch * spec_.experts);
            s.jitter.reserve(spec_.batch * spec_.n);
            s.gW.resize(sizes_.W);
            s.gb.resize(sizes_.b);
            s.ggate.resize(sizes_.gate);
            s.gnoise.resize(sizes_.gate);
        }
        std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int64_t inst = 0; inst < instances_; ++inst) {
            try {
                body(inst, scratch[omp_get_thread_num()]);
            } catch (...) {
#pragma omp critical(ne_moe_failure)
                if (!failure) failure = std::current_exception();
            }
        }
        if (failure) std::rethrow_exception(failure);
    }

    MoeSpec spec_;
    ToyShape shape_;
    ToyData data_;
    MoeSizes sizes_;
    int64_t instances_;
    std::vector<float> W_, b_, gate_, noise_, bias_;
    std::vector<float> mW_, vW_, mb_, vb_, mgate_, vgate_, mnoise_, vnoise_;
    std::vector<ne_non_finite> non_finite_;  // [instances], see ToyBackend::non_finite
};

}  // namespace

std::unique_ptr<MoeBackend> make_cpu_moe(const MoeSpec& spec, const ToyShape& shape, const ToyData& data) {
    return std::make_unique<CpuMoe>(spec, shape, data);
}

}  // namespace ne
