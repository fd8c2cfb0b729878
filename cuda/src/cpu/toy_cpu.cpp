// CPU backend of the toy models. toy_loss_and_grad below is the readable per-sample reference that the
// blocked SIMD kernel (toy_blocked.cpp) and the CUDA kernels are tested against; the backend trains with the
// blocked kernel, OpenMP over instances (each thread runs all steps of its instances, so no barrier separates
// one step from the next).
#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/nvtx.h"
#include "models/toy.h"
#include "models/training.h"

namespace ne {

namespace {

// One sample's independent features. The input kind is a template constant: a run-time flag inside the loop
// keeps the compiler from vectorising Philox across pairs.
template <bool SignedInputs>
void generate_row(const ToyShape& shape, const float* probability, Stream stream, uint32_t step, uint32_t instance,
                  uint32_t sample, float* row) {
    const int64_t n = shape.n, full_pairs = n / 2;
    for (int64_t pair = 0; pair < full_pairs; ++pair) {
        toy_feature_pair(shape.seed, stream, step, instance, sample, static_cast<uint32_t>(pair),
                         probability[2 * pair], probability[2 * pair + 1], SignedInputs, row[2 * pair],
                         row[2 * pair + 1]);
    }
    if (n % 2 == 1) {
        float unused;
        toy_feature_pair(shape.seed, stream, step, instance, sample, static_cast<uint32_t>(full_pairs),
                         probability[n - 1], 0.0f, SignedInputs, row[n - 1], unused);
    }
}

#if defined(__AVX512F__)
// GCC 12 reports its own _mm512_undefined_* placeholders inside the intrinsics as maybe-uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The same stream, 16 features (8 pairs) per Philox pass. GCC widens the portable loop above to 64-bit
// multiplies; Philox needs only 32x32->64, which vpmuludq does on the low halves of 64-bit lanes.

constexpr int kPasses = 4;  // independent passes interleaved: one alone waits on the multiply latency

// kPasses x 8 Philox4x32-10 evaluations at once, one per 64-bit lane, each word in the low half of its lane.
// vpmuludq reads only the low halves, so whatever the high halves hold between rounds never matters.
inline void philox4x32_10_x8(__m512i (&c)[4][kPasses], uint32_t k0, uint32_t k1) {
    const __m512i mul0 = _mm512_set1_epi64(0xD2511F53u), mul1 = _mm512_set1_epi64(0xCD9E8D57u);
    for (int round = 0; round < 10; ++round) {
        const __m512i key0 = _mm512_set1_epi64(k0), key1 = _mm512_set1_epi64(k1);
        for (int j = 0; j < kPasses; ++j) {
            const __m512i p0 = _mm512_mul_epu32(c[0][j], mul0), p1 = _mm512_mul_epu32(c[2][j], mul1);
            // 0x96: the three-way exclusive or.
            c[0][j] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c[1][j], key0, 0x96);
            c[2][j] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), c[3][j], key1, 0x96);
            c[1][j] = p1;
            c[3][j] = p0;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

// The whole batch: pass q covers sample q / per_row, features 16 (q % per_row) onwards.
template <bool SignedInputs>
void generate_batch_x16(const ToyShape& shape, const float* probability, Stream stream, uint32_t step,
                        uint32_t instance, float* x) {
    const int64_t n = shape.n, per_row = (n + 15) / 16, passes = shape.batch * per_row;
    // Pair l's words sit in the low half of lane l; this picks the words of features 2l and 2l+1 into lanes
    // 2l and 2l+1, which is feature order.
    const __m512i interleave = _mm512_setr_epi32(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
    const __m512i lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
    const __m512 unit = _mm512_set1_ps(1.0f / 16777216.0f), one = _mm512_set1_ps(1.0f);
    for (int64_t q0 = 0; q0 < passes; q0 += kPasses) {
        __m512i c[4][kPasses];
        for (int j = 0; j < kPasses; ++j) {
            // Passes past the end repeat the last one and are not stored.
            const int64_t q = std::min(q0 + j, passes - 1), sample = q / per_row, first = 16 * (q % per_row);
            c[0][j] = _mm512_add_epi64(_mm512_set1_epi64(first / 2), lane);
            c[1][j] = _mm512_set1_epi64(sample);
            c[2][j] = _mm512_set1_epi64(instance);
            c[3][j] = _mm512_set1_epi64(stream_word(stream, step));
        }
        philox4x32_10_x8(c, static_cast<uint32_t>(shape.seed), static_cast<uint32_t>(shape.seed >> 32));
        for (int j = 0; j < kPasses && q0 + j < passes; ++j) {
            const int64_t q = q0 + j, sample = q / per_row, first = 16 * (q % per_row), left = n - first;
            const __mmask16 inside = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
            const __m512i presence_bits = _mm512_permutex2var_epi32(c[0][j], interleave, c[2][j]);
            const __m512i value_bits = _mm512_permutex2var_epi32(c[1][j], interleave, c[3][j]);
            // uniform01 of each word: exact, as in the definition.
            const __m512 presence = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(presence_bits, 8)), unit);
            __m512 value = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(value_bits, 8)), unit);
            if (SignedInputs) value = _mm512_sub_ps(_mm512_add_ps(value, value), one);
            // Past n the probability reads as 0 and nothing is stored.
            const __m512 p = _mm512_maskz_loadu_ps(inside, probability + first);
            const __m512 present = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(presence, p, _CMP_LT_OQ), one);
            // value * (0 or 1), like the definition, so a negative absent value stays -0.
            _mm512_mask_storeu_ps(x + sample * n + first, inside, _mm512_mul_ps(value, present));
        }
    }
}
#pragma GCC diagnostic pop
#endif

}  // namespace

void toy_generate_batch(const ToyShape& shape, const float* probability, const FeatureRule* rules, Stream stream,
                        int64_t step, int64_t instance, float* x) {
    const int64_t n = shape.n;
    const bool signed_inputs = toy_signed_inputs(shape.model);
    const auto step32 = static_cast<uint32_t>(step), instance32 = static_cast<uint32_t>(shape.first_instance + instance);
#if defined(__AVX512F__)
    if (signed_inputs)
        generate_batch_x16<true>(shape, probability, stream, step32, instance32, x);
    else
        generate_batch_x16<false>(shape, probability, stream, step32, instance32, x);
#else
    for (int64_t t = 0; t < shape.batch; ++t) {
        if (signed_inputs)
            generate_row<true>(shape, probability, stream, step32, instance32, static_cast<uint32_t>(t), x + t * n);
        else
            generate_row<false>(shape, probability, stream, step32, instance32, static_cast<uint32_t>(t), x + t * n);
    }
#endif
    if (rules == nullptr) return;
    // A feature in a set then takes its set's rule instead of its independent draw.
    for (int64_t t = 0; t < shape.batch; ++t) {
        float* row = x + t * n;
        const auto sample = static_cast<uint32_t>(t);
        for (int64_t i = 0; i < n; ++i) {
            if (rules[i].kind == NE_FEATURES_INDEPENDENT) continue;
            row[i] = toy_set_feature(shape.seed, stream, step32, instance32, sample, static_cast<int32_t>(i), rules[i],
                                     probability, signed_inputs);
        }
    }
}

template <typename T>
ToyLoss toy_loss_and_grad(int32_t model, int64_t n, int64_t m, int64_t batch, ToyParams<T> p, const T* importance,
                          T l1, const T* x, ToyGrads<T> g) {
    const bool hidden_relu = toy_hidden_relu(model), output_relu = toy_output_relu(model);
    const bool signed_inputs = toy_signed_inputs(model);
    const T* W_out = toy_untied(model) ? p.W_out : p.W;
    T* gW_out = toy_untied(model) ? g.W_out : g.W;
    // d loss / d x'_i = 2 I_i (x'_i - target_i) / (batch n); d penalty / d h_k = l1 sign(h_k) / batch.
    const T scale = T(2) / (static_cast<T>(batch) * static_cast<T>(n));
    const T l1_scale = l1 / static_cast<T>(batch);
    std::fill(g.W, g.W + n * m, T(0));
    if (toy_untied(model)) std::fill(g.W_out, g.W_out + n * m, T(0));
    std::fill(g.b, g.b + n, T(0));
    std::vector<T> a(m), h(m), gh(m), d(n);
    double task = 0.0, l1_norm = 0.0;
    for (int64_t t = 0; t < batch; ++t) {
        const T* xt = x + t * n;
        // a = W^T x: inputs are mostly zeros at low feature probability, so skip them.
        std::fill(a.begin(), a.end(), T(0));
        for (int64_t i = 0; i < n; ++i) {
            const T xi = xt[i];
            if (xi == T(0)) continue;
            const T* wi = p.W + i * m;
            for (int64_t k = 0; k < m; ++k) a[k] += xi * wi[k];
        }
        for (int64_t k = 0; k < m; ++k) {
            h[k] = hidden_relu && a[k] < T(0) ? T(0) : a[k];
            l1_norm += static_cast<double>(std::abs(h[k]));
        }
        // x' = W_out h + b (then ReLU); d = d loss / d pre-activation.
        for (int64_t i = 0; i < n; ++i) {
            const T* wi = W_out + i * m;
            T pre = p.b[i];
            for (int64_t k = 0; k < m; ++k) pre += wi[k] * h[k];
            const bool active = !output_relu || pre > T(0);
            const T target = signed_inputs ? std::abs(xt[i]) : xt[i];
            const T diff = (active ? pre : T(0)) - target;
            task += static_cast<double>(importance[i] * diff * diff);
            d[i] = active ? scale * importance[i] * diff : T(0);
        }
        // gh = d loss / d a: W_out^T d plus the penalty's subgradient, through the hidden ReLU.
        for (int64_t k = 0; k < m; ++k) gh[k] = l1_scale * static_cast<T>((h[k] > T(0)) - (h[k] < T(0)));
        for (int64_t i = 0; i < n; ++i) {
            const T di = d[i];
            if (di == T(0)) continue;
            const T* wi = W_out + i * m;
            for (int64_t k = 0; k < m; ++k) gh[k] += di * wi[k];
        }
        if (hidden_relu)
            for (int64_t k = 0; k < m; ++k) gh[k] = a[k] > T(0) ? gh[k] : T(0);
        // Tied models get both terms in gW (W encodes and decodes): gW_out_i += d_i h, gW_i += x_i gh.
        for (int64_t i = 0; i < n; ++i) {
            const T di = d[i], xi = xt[i];
            g.b[i] += di;
            T* gwo = gW_out + i * m;
            T* gwi = g.W + i * m;
            if (di != T(0))
                for (int64_t k = 0; k < m; ++k) gwo[k] += di * h[k];
            if (xi != T(0))
                for (int64_t k = 0; k < m; ++k) gwi[k] += xi * gh[k];
        }
    }
    return ToyLoss{task / (static_cast<double>(batch) * static_cast<double>(n)),
                   static_cast<double>(l1) * l1_norm / static_cast<double>(batch)};
}

template ToyLoss toy_loss_and_grad<float>(int32_t, int64_t, int64_t, int64_t, ToyParams<float>, const float*, float,
                                          const float*, ToyGrads<float>);
template ToyLoss toy_loss_and_grad<double>(int32_t, int64_t, int64_t, int64_t, ToyParams<double>, const double*,
                                           double, const double*, ToyGrads<double>);

namespace {

class CpuToy final : public ToyBackend {
public:
    CpuToy(const ToyShape& shape, const ToyData& data)
        : shape_(shape),
          data_(data),
          untied_(toy_untied(shape.model)),
          nm_(shape.n * shape.m),
          W_(shape.instances * nm_),
          W_out_(untied_ ? W_.size() : 0),
          b_(shape.instances * shape.n),
          mW_(W_.size()), vW_(W_.size()), mW_out_(W_out_.size()), vW_out_(W_out_.size()),
          mb_(b_.size()), vb_(b_.size()), non_finite_(shape.instances) {}

    void train(int64_t first_step, const std::vector<AdamStep>& adam) override {
        NE_NVTX_RANGE("toy.train");
        run_instances([&](int64_t inst, Scratch& s) {
            const int64_t wo = inst * nm_, bo = inst * shape_.n;
            for (size_t k = 0; k < adam.size() && non_finite_[inst].step == 0; ++k) {
                const int64_t number = first_step + static_cast<int64_t>(k) + 1;
                {
                    NE_NVTX_RANGE("toy.generate");
                    generate(Stream::kTrain, first_step + static_cast<int64_t>(k), inst, s.x.data());
                }
                {
                    NE_NVTX_RANGE("toy.forward_backward");
                    // A step with a loss that is not finite is not applied, and the instance stops there.
                    if (!std::isfinite(loss_and_grad(inst, s).total())) {
                        non_finite_[inst] = ne_non_finite{number, inst, NE_NON_FINITE_LOSS, 0};
                        break;
                    }
                }
                NE_NVTX_RANGE("toy.optimizer");
                const AdamStep& step = adam[k];
                for (int64_t j = 0; j < nm_; ++j) adam_update(W_[wo + j], s.gW[j], mW_[wo + j], vW_[wo + j], step);
                if (untied_)
                    for (int64_t j = 0; j < nm_; ++j)
                        adam_update(W_out_[wo + j], s.gW_out[j], mW_out_[wo + j], vW_out_[wo + j], step);
                for (int64_t j = 0; j < shape_.n; ++j) adam_update(b_[bo + j], s.gb[j], mb_[bo + j], vb_[bo + j], step);
                if (!all_finite(W_.data() + wo, nm_) || (untied_ && !all_finite(W_out_.data() + wo, nm_)) ||
                    !all_finite(b_.data() + bo, shape_.n))
                    non_finite_[inst] = ne_non_finite{number, inst, NE_NON_FINITE_PARAMETERS, 0};
            }
        });
    }

    void evaluate(int64_t batches, float* loss, float* penalty) override {
        NE_NVTX_RANGE("toy.evaluate");
        run_instances([&](int64_t inst, Scratch& s) {
            double task = 0.0, l1 = 0.0;
            for (int64_t k = 0; k < batches; ++k) {
                generate(Stream::kEvaluate, k, inst, s.x.data());
                const ToyLoss batch_loss = loss_only(inst, s);
                task += batch_loss.task;
                l1 += batch_loss.penalty;
            }
            loss[inst] = static_cast<float>(task / static_cast<double>(batches));
            penalty[inst] = static_cast<float>(l1 / static_cast<double>(batches));
        });
    }

    void get_params(float* W, float* W_out, float* b) const override {
        std::copy(W_.begin(), W_.end(), W);
        if (untied_) std::copy(W_out_.begin(), W_out_.end(), W_out);
        std::copy(b_.begin(), b_.end(), b);
    }

    void set_params(const float* W, const float* W_out, const float* b) override {
        std::copy(W, W + W_.size(), W_.begin());
        if (untied_) std::copy(W_out, W_out + W_out_.size(), W_out_.begin());
        std::copy(b, b + b_.size(), b_.begin());
        for (auto* state : {&mW_, &vW_, &mW_out_, &vW_out_, &mb_, &vb_}) std::fill(state->begin(), state->end(), 0.0f);
        std::fill(non_finite_.begin(), non_finite_.end(), ne_non_finite{});
    }

    void set_data(const ToyData& data) override { data_ = data; }

    void non_finite(ne_non_finite* per_instance) const override {
        std::copy(non_finite_.begin(), non_finite_.end(), per_instance);
    }

private:
    struct Scratch {
        std::vector<float> x, gW, gW_out, gb;
        ToyWorkspace<float> workspace;
    };

    void generate(Stream stream, int64_t step, int64_t inst, float* x) const {
        toy_generate_batch(shape_, data_.probability.data() + inst * shape_.n,
                           data_.rules.empty() ? nullptr : data_.rules.data(), stream, step, inst, x);
    }

    ToyLoss loss_and_grad(int64_t inst, Scratch& s) const {
        const int64_t wo = inst * nm_, bo = inst * shape_.n;
        const ToyParams<float> params{W_.data() + wo, untied_ ? W_out_.data() + wo : nullptr, b_.data() + bo};
        const ToyGrads<float> grads{s.gW.data(), untied_ ? s.gW_out.data() : nullptr, s.gb.data()};
        return toy_loss_and_grad_blocked<float>(shape_.model, shape_.n, shape_.m, shape_.batch, params,
                                                data_.importance.data() + bo, data_.l1[inst], s.x.data(), grads,
                                                s.workspace);
    }

    ToyLoss loss_only(int64_t inst, Scratch& s) const {
        const int64_t wo = inst * nm_, bo = inst * shape_.n;
        const ToyParams<float> params{W_.data() + wo, untied_ ? W_out_.data() + wo : nullptr, b_.data() + bo};
        return toy_loss_and_grad_blocked<float>(shape_.model, shape_.n, shape_.m, shape_.batch, params,
                                                data_.importance.data() + bo, data_.l1[inst], s.x.data(),
                                                ToyGrads<float>{nullptr, nullptr, nullptr}, s.workspace);
    }

    // Runs body(instance, scratch) for every instance on the OpenMP threads. Scratch is allocated up front,
    // one per thread, so nothing inside the parallel region can throw.
    template <class Body>
    void run_instances(Body&& body) {
        const int threads = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(shape_.instances)));
        std::vector<Scratch> scratch(threads);
        for (auto& s : scratch) {
            s.x.resize(shape_.batch * shape_.n);
            s.gW.resize(nm_);
            s.gW_out.resize(untied_ ? nm_ : 0);
            s.gb.resize(shape_.n);
            toy_workspace_prepare(s.workspace, shape_.n, shape_.m);
        }
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int64_t inst = 0; inst < shape_.instances; ++inst) body(inst, scratch[omp_get_thread_num()]);
    }

    ToyShape shape_;
    ToyData data_;
    bool untied_;
    int64_t nm_;
    std::vector<float> W_, W_out_, b_, mW_, vW_, mW_out_, vW_out_, mb_, vb_;
    std::vector<ne_non_finite> non_finite_;  // [instances], see ToyBackend::non_finite
};

}  // namespace

std::unique_ptr<ToyBackend> make_cpu_toy(const ToyShape& shape, const ToyData& data) {
    return std::make_unique<CpuToy>(shape, data);
}

}  // namespace ne
