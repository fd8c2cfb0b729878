// The mixture-of-experts reference: finite differences on every parameter (experts, router, noise weights)
// across router variants; the forward against a dense reference that runs every expert and masks; and the
// properties the design promises: k = 1 with renormalisation gives the router exactly zero gradient from the
// task, dropped tokens give no output and no expert gradient, experts without tokens get zero gradient, and
// the load-balancing loss is exactly alpha at uniform router probabilities.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "models/moe.h"

using namespace ne;

namespace {

template <typename T>
struct Instance {
    MoeSpec spec;
    std::vector<T> W, b, W_gate, W_noise, route_bias, importance, x, normal, jitter;
    T l1 = 0;

    Instance(const MoeSpec& s, uint64_t seed, double density) : spec(s) {
        std::mt19937_64 rng(seed);
        std::normal_distribution<double> normal_dist(0.0, 0.5);
        std::uniform_real_distribution<double> uniform(0.0, 1.0);
        const MoeSizes sizes(s);
        auto fill = [&](std::vector<T>& v, int64_t count, double scale) {
            v.resize(count);
            for (auto& e : v) e = static_cast<T>(normal_dist(rng) * scale);
        };
        fill(W, sizes.W, 1.0);
        fill(b, sizes.b, 0.3);
        fill(W_gate, sizes.gate, 2.0);
        fill(W_noise, sizes.gate, 1.0);
        route_bias.assign(sizes.bias, T(0));
        importance.resize(s.n);
        for (int64_t i = 0; i < s.n; ++i) importance[i] = static_cast<T>(std::pow(0.9, static_cast<double>(i)));
        x.resize(s.batch * s.n);
        for (auto& v : x) v = static_cast<T>(uniform(rng) < density ? uniform(rng) : 0.0);
        if (s.noise == NE_MOE_NOISE_NOISY_TOPK) fill(normal, s.batch * s.experts, 2.0);
        if (s.noise == NE_MOE_NOISE_JITTER) {
            jitter.resize(s.batch * s.n);
            for (auto& v : jitter) v = static_cast<T>(1.0 + 0.01 * (2 * uniform(rng) - 1));
        }
    }

    MoeParams<T> params() const {
        return {W.data(), b.data(), W_gate.data(), W_noise.data(), route_bias.data()};
    }

    MoeBatch run(MoeGrads<T>* grads, T* output = nullptr) const {
        return moe_loss_and_grad<T>(spec, params(), importance.data(), l1, x.data(),
                                    normal.empty() ? nullptr : normal.data(), jitter.empty() ? nullptr : jitter.data(),
                                    grads, output);
    }
};

template <typename T>
struct Grads {
    std::vector<T> W, b, W_gate, W_noise;
    explicit Grads(const MoeSpec& s) {
        const MoeSizes sizes(s);
        W.resize(sizes.W);
        b.resize(sizes.b);
        W_gate.resize(sizes.gate);
        W_noise.resize(sizes.gate);
    }
    MoeGrads<T> view() { return {W.data(), b.data(), W_gate.data(), W_noise.data()}; }
};

double total(const MoeBatch& r) { return r.task + r.l1 + r.balance + r.z; }

void finite_differences(const char* name, MoeSpec spec, double l1, double density) {
    Instance<double> inst(spec, 7 + spec.experts + spec.noise, density);
    inst.l1 = l1;
    Grads<double> grads(spec);
    auto view = grads.view();
    const MoeBatch base = inst.run(&view);
    int checked = 0, bad = 0;
    double worst = 0;
    auto check = [&](std::vector<double>& param, const std::vector<double>& grad, const char* pname) {
        for (size_t j = 0; j < param.size(); ++j) {
            const double saved = param[j], h = 1e-6;
            param[j] = saved + h;
            const double up = total(inst.run(nullptr));
            param[j] = saved - h;
            const double down = total(inst.run(nullptr));
            param[j] = saved;
            const double numeric = (up - down) / (2 * h);
            worst = std::max(worst, std::fabs(numeric - grad[j]) / (1e-7 + std::fabs(numeric)));
            if (!ne_test::close(grad[j], numeric, 1e-7, 1e-5) && bad++ < 5)
                std::printf("%s d/d%s[%zu]: analytic %.10g numeric %.10g\n", name, pname, j, grad[j], numeric);
            ++checked;
        }
    };
    check(inst.W, grads.W, "W");
    check(inst.b, grads.b, "b");
    check(inst.W_gate, grads.W_gate, "W_gate");
    check(inst.W_noise, grads.W_noise, "W_noise");
    CHECK(bad == 0);
    std::printf("%s: %d gradients, worst relative error %.2e, %lld of %lld slots dropped\n", name, checked, worst,
                static_cast<long long>(base.dropped), static_cast<long long>(spec.batch * spec.top_k));
}

// Every expert on every token, then a mask of the chosen, kept ones: an independent forward.
void dense_reference_matches(MoeSpec spec) {
    Instance<double> inst(spec, 99, 0.5);
    std::vector<double> y(spec.batch * spec.n);
    inst.run(nullptr, y.data());
    const int64_t n = spec.n, m = spec.m, E = spec.experts;
    const int64_t capacity = spec.capacity_factor > 0
                                 ? static_cast<int64_t>(std::ceil(static_cast<double>(spec.capacity_factor) * spec.batch * spec.top_k / E * (1 - 1e-6)))
                                 : spec.batch * spec.top_k;
    std::vector<int64_t> taken(E, 0);
    double worst = 0;
    for (int64_t t = 0; t < spec.batch; ++t) {
        const double* x = inst.x.data() + t * n;
        std::vector<double> logits(E), prob(E), all(E * n);
        for (int64_t e = 0; e < E; ++e) {
            for (int64_t i = 0; i < n; ++i) logits[e] += x[i] * inst.W_gate[i * E + e];
            // expert e on this token, whether chosen or not
            std::vector<double> h(m);
            for (int64_t j = 0; j < m; ++j) {
                for (int64_t i = 0; i < n; ++i) h[j] += x[i] * inst.W[(e * n + i) * m + j];
                if (toy_hidden_relu(spec.expert_model)) h[j] = std::max(h[j], 0.0);
            }
            for (int64_t i = 0; i < n; ++i) {
                double pre = inst.b[e * n + i];
                for (int64_t j = 0; j < m; ++j) pre += inst.W[(e * n + i) * m + j] * h[j];
                all[e * n + i] = std::max(pre, 0.0);
            }
        }
        double top = logits[0], sum = 0;
        for (double v : logits) top = std::max(top, v);
        for (int64_t e = 0; e < E; ++e) sum += std::exp(logits[e] - top);
        for (int64_t e = 0; e < E; ++e) prob[e] = std::exp(logits[e] - top) / sum;
        // mask: the k largest logits (lower index first on ties), within capacity
        std::vector<char> chosen(E, 0), kept(E, 0);
        double chosen_sum = 0;
        for (int64_t r = 0; r < spec.top_k; ++r) {
            int64_t best = -1;
            for (int64_t e = 0; e < E; ++e)
                if (!chosen[e] && (best < 0 || logits[e] > logits[best])) best = e;
            chosen[best] = 1;
            chosen_sum += prob[best];
            if (taken[best] < capacity) kept[best] = 1, taken[best] += 1;
        }
        for (int64_t i = 0; i < n; ++i) {
            double expected = 0;
            for (int64_t e = 0; e < E; ++e)
                if (kept[e]) expected += (spec.renormalize ? prob[e] / chosen_sum : prob[e]) * all[e * n + i];
            worst = std::max(worst, std::fabs(expected - y[t * n + i]));
            CHECK(ne_test::close(y[t * n + i], expected, 1e-12, 1e-9));
        }
    }
    std::printf("dense reference (E=%lld k=%lld renorm=%d capacity %.2f): max |y - y_dense| = %.2e\n",
                static_cast<long long>(E), static_cast<long long>(spec.top_k), spec.renormalize, spec.capacity_factor,
                worst);
}

MoeSpec spec_of(int32_t model, int64_t n, int64_t m, int64_t E, int64_t k, int64_t batch, int32_t renormalize,
                int32_t noise, float alpha, float z, float capacity) {
    return MoeSpec{model, n, m, E, k, batch, renormalize, noise, alpha, z, capacity};
}

}  // namespace

int main() {
    // Finite differences across router variants (alpha, z-loss and L1 on, so every term is checked).
    finite_differences("relu_output experts, top-2 renormalised", spec_of(NE_TOY_RELU_OUTPUT, 6, 3, 4, 2, 12, 1, 0, 0.1f, 0.01f, 0), 0.05, 0.6);
    finite_differences("relu_output experts, top-2 plain softmax", spec_of(NE_TOY_RELU_OUTPUT, 6, 3, 4, 2, 12, 0, 0, 0.1f, 0.01f, 0), 0.05, 0.6);
    finite_differences("relu_hidden experts, top-1, noisy top-k", spec_of(NE_TOY_RELU_HIDDEN, 5, 4, 3, 1, 10, 0, NE_MOE_NOISE_NOISY_TOPK, 0.1f, 0.01f, 0), 0.05, 0.7);
    finite_differences("relu_hidden experts, top-2 renormalised, noisy", spec_of(NE_TOY_RELU_HIDDEN, 5, 4, 3, 2, 10, 1, NE_MOE_NOISE_NOISY_TOPK, 0.1f, 0.01f, 0), 0.05, 0.7);
    finite_differences("relu_output experts, jitter, capacity 0.5", spec_of(NE_TOY_RELU_OUTPUT, 6, 2, 4, 2, 16, 1, NE_MOE_NOISE_JITTER, 0.1f, 0.01f, 0.5f), 0.02, 0.6);

    dense_reference_matches(spec_of(NE_TOY_RELU_OUTPUT, 7, 3, 5, 2, 40, 1, 0, 0, 0, 0));
    dense_reference_matches(spec_of(NE_TOY_RELU_HIDDEN, 7, 3, 5, 3, 40, 0, 0, 0, 0, 0));
    dense_reference_matches(spec_of(NE_TOY_RELU_OUTPUT, 7, 3, 4, 1, 40, 1, 0, 0, 0, 0.6f));

    // k = 1 with renormalisation: the gate is identically 1, so the task loss gives the router nothing.
    for (int32_t noise : {0, static_cast<int32_t>(NE_MOE_NOISE_NOISY_TOPK)}) {
        const MoeSpec spec = spec_of(NE_TOY_RELU_OUTPUT, 6, 3, 4, 1, 32, 1, noise, 0, 0, 0);
        Instance<float> inst(spec, 5, 0.6);
        Grads<float> grads(spec);
        auto view = grads.view();
        inst.run(&view);
        int nonzero = 0;
        for (float v : grads.W_gate) nonzero += v != 0.0f;
        for (float v : grads.W_noise) nonzero += v != 0.0f;
        int expert_grads = 0;
        for (float v : grads.W) expert_grads += v != 0.0f;
        std::printf("k=1 renormalised (noise %d): %d non-zero router gradients, %d non-zero expert gradients\n", noise,
                    nonzero, expert_grads);
        CHECK(nonzero == 0);
        CHECK(expert_grads > 0);
    }

    // Dropped tokens: top-1 over 2 experts with room for 2 slots each in a batch of 12: most tokens are dropped,
    // give zero output, and scaling a dropped token (same routing, still dropped) leaves the experts' gradients
    // exactly as they were.
    {
        const MoeSpec spec = spec_of(NE_TOY_RELU_OUTPUT, 5, 2, 2, 1, 12, 1, 0, 0, 0, 2.0f / 6.0f);
        Instance<double> inst(spec, 11, 0.8);
        std::vector<double> y(spec.batch * spec.n);
        Grads<double> before(spec);
        auto view = before.view();
        const MoeBatch batch = inst.run(&view, y.data());
        CHECK(batch.dropped == spec.batch - 4);
        const int64_t last = spec.batch - 1;  // token order fills capacity first, so the last token is dropped
        double output = 0;
        for (int64_t i = 0; i < spec.n; ++i) output += std::fabs(y[last * spec.n + i]);
        CHECK(output == 0.0);
        for (int64_t i = 0; i < spec.n; ++i) inst.x[last * spec.n + i] *= 1.7;
        Grads<double> after(spec);
        auto view_after = after.view();
        inst.run(&view_after);
        CHECK(after.W == before.W);
        CHECK(after.b == before.b);
        std::printf("capacity: %lld of %lld slots dropped; a dropped token's output is 0 and moves no expert gradient\n",
                    static_cast<long long>(batch.dropped), static_cast<long long>(spec.batch));
    }

    // An expert no token reaches gets exactly zero gradient.
    {
        const MoeSpec spec = spec_of(NE_TOY_RELU_HIDDEN, 6, 3, 3, 1, 24, 0, 0, 0.1f, 0.01f, 0);
        Instance<float> inst(spec, 3, 0.6);
        inst.route_bias[2] = -1e6f;  // never chosen
        inst.l1 = 0.1f;
        Grads<float> grads(spec);
        auto view = grads.view();
        const MoeBatch batch = inst.run(&view);
        CHECK(batch.load[2] == 0);
        int nonzero = 0;
        for (int64_t j = 2 * spec.n * spec.m; j < 3 * spec.n * spec.m; ++j) nonzero += grads.W[j] != 0.0f;
        for (int64_t j = 2 * spec.n; j < 3 * spec.n; ++j) nonzero += grads.b[j] != 0.0f;
        CHECK(nonzero == 0);
        std::printf("unused expert: load %lld, %d non-zero gradients\n", static_cast<long long>(batch.load[2]), nonzero);
    }

    // Load balancing: alpha E sum f P equals alpha exactly when the router is uniform (P = 1/E), and exceeds it
    // when the router prefers the experts it routes to.
    {
        MoeSpec spec = spec_of(NE_TOY_RELU_OUTPUT, 6, 3, 4, 1, 32, 0, 0, 1.0f, 0, 0);
        Instance<double> inst(spec, 13, 0.6);
        std::fill(inst.W_gate.begin(), inst.W_gate.end(), 0.0);
        const MoeBatch uniform = inst.run(nullptr);
        std::printf("load-balancing loss at uniform routing: %.12f\n", uniform.balance);
        CHECK(std::fabs(uniform.balance - 1.0) < 1e-12);
        for (int64_t i = 0; i < spec.n; ++i) inst.W_gate[i * spec.experts] = 3.0;  // prefer expert 0
        const MoeBatch skewed = inst.run(nullptr);
        std::printf("load-balancing loss when expert 0 is preferred: %.4f\n", skewed.balance);
        CHECK(skewed.balance > 1.5);
    }
    return ne_test::finish("test_moe");
}
