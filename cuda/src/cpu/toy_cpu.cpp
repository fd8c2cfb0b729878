// CPU backend of the toy models. toy_loss_and_grad below is the readable per-sample reference that the
// blocked SIMD kernel (toy_blocked.cpp) and the CUDA kernels are tested against; the backend trains with the
// blocked kernel, OpenMP over instances (each thread runs all steps of its instances, so no barrier separates
// one step from the next).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/nvtx.h"
#include "models/toy.h"

namespace ne {

void toy_generate_batch(const ToyShape& shape, const float* probability, Stream stream, int64_t step,
                        int64_t instance, float* x) {
    const int64_t n = shape.n, full_pairs = n / 2;
    for (int64_t t = 0; t < shape.batch; ++t) {
        float* row = x + t * n;
        // Branch-free over whole pairs so the compiler vectorises Philox across them.
        for (int64_t pair = 0; pair < full_pairs; ++pair) {
            toy_feature_pair(shape.seed, stream, static_cast<uint32_t>(step), static_cast<uint32_t>(instance),
                             static_cast<uint32_t>(t), static_cast<uint32_t>(pair), probability[2 * pair],
                             probability[2 * pair + 1], row[2 * pair], row[2 * pair + 1]);
        }
        if (n % 2 == 1) {
            float unused;
            toy_feature_pair(shape.seed, stream, static_cast<uint32_t>(step), static_cast<uint32_t>(instance),
                             static_cast<uint32_t>(t), static_cast<uint32_t>(full_pairs), probability[n - 1], 0.0f,
                             row[n - 1], unused);
        }
    }
}

template <typename T>
T toy_loss_and_grad(int32_t model, int64_t n, int64_t m, int64_t batch, const T* W, const T* b,
                    const T* importance, const T* x, T* gW, T* gb) {
    const bool relu = model == NE_TOY_RELU_OUTPUT;
    // d loss / d x'_i = 2 I_i (x'_i - x_i) / (batch n)
    const T scale = T(2) / (static_cast<T>(batch) * static_cast<T>(n));
    std::fill(gW, gW + n * m, T(0));
    std::fill(gb, gb + n, T(0));
    std::vector<T> h(m), g(m), d(n);
    double loss = 0.0;
    for (int64_t t = 0; t < batch; ++t) {
        const T* xt = x + t * n;
        // h = W^T x: inputs are mostly zeros at low feature probability, so skip them.
        std::fill(h.begin(), h.end(), T(0));
        for (int64_t i = 0; i < n; ++i) {
            const T xi = xt[i];
            if (xi == T(0)) continue;
            const T* wi = W + i * m;
            for (int64_t k = 0; k < m; ++k) h[k] += xi * wi[k];
        }
        // x' = W h + b (then ReLU); d = d loss / d pre-activation.
        for (int64_t i = 0; i < n; ++i) {
            const T* wi = W + i * m;
            T pre = b[i];
            for (int64_t k = 0; k < m; ++k) pre += wi[k] * h[k];
            const bool active = !relu || pre > T(0);
            const T diff = (active ? pre : T(0)) - xt[i];
            loss += static_cast<double>(importance[i] * diff * diff);
            d[i] = active ? scale * importance[i] * diff : T(0);
        }
        // g = d loss / d h = W^T d.
        std::fill(g.begin(), g.end(), T(0));
        for (int64_t i = 0; i < n; ++i) {
            const T di = d[i];
            if (di == T(0)) continue;
            const T* wi = W + i * m;
            for (int64_t k = 0; k < m; ++k) g[k] += di * wi[k];
        }
        // W appears twice (encode and decode): gW_i += d_i h + x_i g.
        for (int64_t i = 0; i < n; ++i) {
            const T di = d[i], xi = xt[i];
            gb[i] += di;
            if (di == T(0) && xi == T(0)) continue;
            T* gwi = gW + i * m;
            for (int64_t k = 0; k < m; ++k) gwi[k] += di * h[k] + xi * g[k];
        }
    }
    return static_cast<T>(loss / (static_cast<double>(batch) * static_cast<double>(n)));
}

template float toy_loss_and_grad<float>(int32_t, int64_t, int64_t, int64_t, const float*, const float*,
                                        const float*, const float*, float*, float*);
template double toy_loss_and_grad<double>(int32_t, int64_t, int64_t, int64_t, const double*, const double*,
                                          const double*, const double*, double*, double*);

namespace {

class CpuToy final : public ToyBackend {
public:
    CpuToy(const ToyShape& shape, const std::vector<float>& importance, const std::vector<float>& probability)
        : shape_(shape),
          importance_(importance),
          probability_(probability),
          W_(shape.instances * shape.n * shape.m),
          b_(shape.instances * shape.n),
          mW_(W_.size()), vW_(W_.size()), mb_(b_.size()), vb_(b_.size()) {}

    void train(int64_t first_step, const std::vector<AdamStep>& adam) override {
        NE_NVTX_RANGE("toy.train");
        run_instances([&](int64_t inst, Scratch& s) {
            float* W = W_.data() + inst * shape_.n * shape_.m;
            float* b = b_.data() + inst * shape_.n;
            float* mW = mW_.data() + inst * shape_.n * shape_.m;
            float* vW = vW_.data() + inst * shape_.n * shape_.m;
            float* mb = mb_.data() + inst * shape_.n;
            float* vb = vb_.data() + inst * shape_.n;
            for (size_t k = 0; k < adam.size(); ++k) {
                {
                    NE_NVTX_RANGE("toy.generate");
                    toy_generate_batch(shape_, probability_.data() + inst * shape_.n, Stream::kTrain,
                                       first_step + static_cast<int64_t>(k), inst, s.x.data());
                }
                {
                    NE_NVTX_RANGE("toy.forward_backward");
                    toy_loss_and_grad_blocked<float>(shape_.model, shape_.n, shape_.m, shape_.batch, W, b,
                                                     importance_.data() + inst * shape_.n, s.x.data(), s.gW.data(),
                                                     s.gb.data(), s.workspace);
                }
                NE_NVTX_RANGE("toy.optimizer");
                const AdamStep& step = adam[k];
                for (int64_t j = 0; j < shape_.n * shape_.m; ++j) adam_update(W[j], s.gW[j], mW[j], vW[j], step);
                for (int64_t j = 0; j < shape_.n; ++j) adam_update(b[j], s.gb[j], mb[j], vb[j], step);
            }
        });
    }

    void evaluate(int64_t batches, float* loss) override {
        NE_NVTX_RANGE("toy.evaluate");
        run_instances([&](int64_t inst, Scratch& s) {
            double total = 0.0;
            for (int64_t k = 0; k < batches; ++k) {
                toy_generate_batch(shape_, probability_.data() + inst * shape_.n, Stream::kEvaluate, k, inst,
                                   s.x.data());
                total += toy_loss_and_grad_blocked<float>(
                    shape_.model, shape_.n, shape_.m, shape_.batch, W_.data() + inst * shape_.n * shape_.m,
                    b_.data() + inst * shape_.n, importance_.data() + inst * shape_.n, s.x.data(), s.gW.data(),
                    s.gb.data(), s.workspace);
            }
            loss[inst] = static_cast<float>(total / static_cast<double>(batches));
        });
    }

    void get_params(float* W, float* b) const override {
        std::copy(W_.begin(), W_.end(), W);
        std::copy(b_.begin(), b_.end(), b);
    }

    void set_params(const float* W, const float* b) override {
        std::copy(W, W + W_.size(), W_.begin());
        std::copy(b, b + b_.size(), b_.begin());
        for (auto* state : {&mW_, &vW_, &mb_, &vb_}) std::fill(state->begin(), state->end(), 0.0f);
    }

private:
    struct Scratch {
        std::vector<float> x, gW, gb;
        ToyWorkspace<float> workspace;
    };

    // Runs body(instance, scratch) for every instance on the OpenMP threads. Scratch is allocated up front,
    // one per thread, so nothing inside the parallel region can throw.
    template <class Body>
    void run_instances(Body&& body) {
        const int threads = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(shape_.instances)));
        std::vector<Scratch> scratch(threads);
        for (auto& s : scratch) {
            s.x.resize(shape_.batch * shape_.n);
            s.gW.resize(shape_.n * shape_.m);
            s.gb.resize(shape_.n);
            toy_workspace_prepare(s.workspace, shape_.n, shape_.m);
        }
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int64_t inst = 0; inst < shape_.instances; ++inst) body(inst, scratch[omp_get_thread_num()]);
    }

    ToyShape shape_;
    std::vector<float> importance_, probability_;
    std::vector<float> W_, b_, mW_, vW_, mb_, vb_;
};

}  // namespace

std::unique_ptr<ToyBackend> make_cpu_toy(const ToyShape& shape, const std::vector<float>& importance,
                                         const std::vector<float>& probability) {
    return std::make_unique<CpuToy>(shape, importance, probability);
}

}  // namespace ne
