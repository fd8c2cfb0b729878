// The mixture-of-experts reference: finite differences on every parameter (experts, router, noise weights)
// across router variants; the forward against a dense reference that runs every expert and masks; and the
// properties the design promises: k = 1 with renormalisation gives the router exactly zero gradient from the
// task, dropped tokens give no output and no expert gradient, experts without tokens get zero gradient, and
// the load-balancing loss is exactly alpha at uniform router probabilities. Then the grouped kernel the backend
// trains with against the reference: the same bits in every gradient, loss term, load and output, step after step
// of training, across expert models, router noise, renormalisation, capacity dropping and shapes that leave every
// vector and tile remainder.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "check.h"
#include "models/moe.h"
#include "models/optimizer.h"

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

template <typename T>
int64_t differing(const std::vector<T>& a, const std::vector<T>& b) {
    if (a.size() != b.size()) return -1;
    int64_t count = 0;
    for (size_t j = 0; j < a.size(); ++j) count += std::memcmp(&a[j], &b[j], sizeof(T)) != 0;
    return count;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// The loss terms are sums in double. In float the products are rounded to float before the double add, so both
// kernels round alike; in double the compiler may contract a product into the add (an FMA) in one kernel's loop
// and not in the other's (the reference's sum over features is vectorised with an in-order reduction whose
// remainder is contracted), so there they agree to the last few bits.
template <typename T>
bool same_loss(double a, double b) {
    if (sizeof(T) == sizeof(float)) return same_bits(a, b);
    return std::fabs(a - b) <= 1e-14 * std::fabs(a);
}

// Trains two copies of one instance, one with each kernel, for `steps` Adam steps on fresh batches (inputs,
// router noise) and compares everything bit for bit at every step (the loss terms in double as same_loss says),
// and the parameters at the end. Returns the number of mismatches.
template <typename T>
int grouped_matches_reference(const char* name, MoeSpec spec, double density, T l1, int steps, uint64_t seed) {
    Instance<T> ref(spec, seed, density);
    ref.l1 = l1;
    std::mt19937_64 rng(seed * 7919 + 1);
    std::normal_distribution<double> normal_dist(0.0, 1.0);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    // A route bias breaks some ties the other way, as bias_update does during training.
    for (auto& v : ref.route_bias) v = static_cast<T>(normal_dist(rng) * 0.1);
    Instance<T> fast = ref;
    MoeWorkspace<T> workspace;
    const MoeSizes sizes(spec);
    std::vector<float> moments[2][4];  // Adam's m and v per parameter, per copy (float state, as the backend)
    for (auto& copy : moments)
        for (int k = 0; k < 4; ++k) copy[k].assign(2 * static_cast<size_t>(k < 1 ? sizes.W : k < 2 ? sizes.b : sizes.gate), 0.0f);
    int bad = 0;
    int64_t dropped = 0;
    for (int step = 1; step <= steps; ++step) {
        for (auto& v : ref.x) v = static_cast<T>(uniform(rng) < density ? uniform(rng) : 0.0);
        for (auto& v : ref.normal) v = static_cast<T>(normal_dist(rng) * 2.0);
        for (auto& v : ref.jitter) v = static_cast<T>(1.0 + 0.01 * (2 * uniform(rng) - 1));
        fast.x = ref.x;
        fast.normal = ref.normal;
        fast.jitter = ref.jitter;
        Grads<T> g_ref(spec), g_fast(spec);
        auto view_ref = g_ref.view(), view_fast = g_fast.view();
        std::fill(g_fast.W.begin(), g_fast.W.end(), T(123));  // every gradient is written, none accumulated
        std::vector<T> y_ref(spec.batch * spec.n), y_fast(spec.batch * spec.n, T(-5));
        const MoeBatch a = ref.run(&view_ref, y_ref.data());
        const MoeBatch b = moe_loss_and_grad_grouped<T>(
            spec, fast.params(), fast.importance.data(), fast.l1, fast.x.data(),
            fast.normal.empty() ? nullptr : fast.normal.data(), fast.jitter.empty() ? nullptr : fast.jitter.data(),
            &view_fast, workspace, y_fast.data());
        const int64_t diffs[] = {differing(g_ref.W, g_fast.W), differing(g_ref.b, g_fast.b),
                                 differing(g_ref.W_gate, g_fast.W_gate), differing(g_ref.W_noise, g_fast.W_noise),
                                 differing(y_ref, y_fast)};
        const bool same = diffs[0] == 0 && diffs[1] == 0 && diffs[2] == 0 && diffs[3] == 0 && diffs[4] == 0 &&
                          same_loss<T>(a.task, b.task) && same_loss<T>(a.l1, b.l1) &&
                          same_loss<T>(a.balance, b.balance) && same_loss<T>(a.z, b.z) && a.load == b.load &&
                          a.dropped == b.dropped;
        if (!same) {
            if (bad < 3)
                std::printf("%s step %d: differing W %lld b %lld W_gate %lld W_noise %lld y %lld; task %.17g %.17g "
                            "l1 %.17g %.17g balance %.17g %.17g z %.17g %.17g dropped %lld %lld\n",
                            name, step, static_cast<long long>(diffs[0]), static_cast<long long>(diffs[1]),
                            static_cast<long long>(diffs[2]), static_cast<long long>(diffs[3]),
                            static_cast<long long>(diffs[4]), a.task, b.task, a.l1, b.l1, a.balance, b.balance, a.z,
                            b.z, static_cast<long long>(a.dropped), static_cast<long long>(b.dropped));
            ++bad;
        }
        dropped += a.dropped;
        // Evaluation: the forward alone gives the same loss terms and outputs.
        std::vector<T> e_ref(y_ref.size()), e_fast(y_ref.size());
        const MoeBatch ea = ref.run(nullptr, e_ref.data());
        const MoeBatch eb = moe_loss_and_grad_grouped<T>(
            spec, fast.params(), fast.importance.data(), fast.l1, fast.x.data(),
            fast.normal.empty() ? nullptr : fast.normal.data(), fast.jitter.empty() ? nullptr : fast.jitter.data(),
            nullptr, workspace, e_fast.data());
        if (differing(e_ref, e_fast) != 0 || !same_loss<T>(ea.task, eb.task) || !same_loss<T>(ea.l1, eb.l1)) {
            if (bad < 3) std::printf("%s step %d: evaluation differs\n", name, step);
            ++bad;
        }
        // AdamW on both copies, each from its own gradients.
        const AdamStep hp = adam_step(NE_OPTIMIZER_ADAMW, 1e-2f, 0.01f, 0.9f, 0.999f, 1e-8f, step);
        auto update = [&](Instance<T>& inst, Grads<T>& g, std::vector<float>(&state)[4]) {
            std::vector<T>* params[] = {&inst.W, &inst.b, &inst.W_gate, &inst.W_noise};
            const std::vector<T>* grads[] = {&g.W, &g.b, &g.W_gate, &g.W_noise};
            for (int k = 0; k < 4; ++k) {
                const size_t count = params[k]->size();
                for (size_t j = 0; j < count; ++j) {
                    float param = static_cast<float>((*params[k])[j]);
                    adam_update(param, static_cast<float>((*grads[k])[j]), state[k][j], state[k][count + j], hp);
                    (*params[k])[j] = static_cast<T>(param);
                }
            }
        };
        update(ref, g_ref, moments[0]);
        update(fast, g_fast, moments[1]);
    }
    const int64_t params_differing = differing(ref.W, fast.W) + differing(ref.b, fast.b) +
                                     differing(ref.W_gate, fast.W_gate) + differing(ref.W_noise, fast.W_noise);
    if (params_differing != 0) {
        std::printf("%s: %lld parameters differ after %d steps\n", name, static_cast<long long>(params_differing), steps);
        ++bad;
    }
    std::printf("grouped = reference, %s %s: %d steps, %lld slots dropped, %s\n", name,
                sizeof(T) == 4 ? "float" : "double", steps, static_cast<long long>(dropped),
                bad == 0 ? (sizeof(T) == 4 ? "bit-identical" : "bit-identical (loss terms to 1e-14)") : "DIFFERENT");
    return bad;
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
    // The grouped kernel against the reference, bit for bit. Shapes: n below, at and past the vector width, m past
    // the register tile, E past the router's tile, batches that end mid-block, k up to 3.
    {
        struct Case {
            const char* name;
            MoeSpec spec;
            double density;
            float l1;
        };
        const int32_t noisy = NE_MOE_NOISE_NOISY_TOPK, jitter = NE_MOE_NOISE_JITTER;
        const Case cases[] = {
            {"compare_n20 (relu_output, top-1)", spec_of(NE_TOY_RELU_OUTPUT, 20, 5, 4, 1, 1024, 0, 0, 0.01f, 0.001f, 0), 0.1, 0.0f},
            {"dense inputs, top-2 renormalised", spec_of(NE_TOY_RELU_OUTPUT, 20, 5, 4, 2, 300, 1, 0, 0.01f, 0.001f, 0), 1.0, 0.0f},
            {"relu_hidden, L1, top-2 plain", spec_of(NE_TOY_RELU_HIDDEN, 9, 2, 4, 2, 40, 0, 0, 0.01f, 0.001f, 0), 0.2, 0.02f},
            {"noisy top-k, capacity 1", spec_of(NE_TOY_RELU_OUTPUT, 9, 2, 4, 2, 40, 0, noisy, 0.01f, 0.001f, 1.0f), 0.2, 0.0f},
            {"jitter, renormalised, relu_hidden", spec_of(NE_TOY_RELU_HIDDEN, 9, 2, 4, 2, 40, 1, jitter, 0.01f, 0.001f, 0), 0.2, 0.02f},
            {"capacity 0.5 drops, renormalised", spec_of(NE_TOY_RELU_OUTPUT, 17, 3, 5, 2, 123, 1, 0, 0.1f, 0.01f, 0.5f), 0.4, 0.05f},
            {"noisy, capacity 0.7, top-3 of 9", spec_of(NE_TOY_RELU_HIDDEN, 33, 11, 9, 3, 77, 1, noisy, 0.1f, 0.01f, 0.7f), 0.3, 0.01f},
            {"jitter, top-1 of 12, wide", spec_of(NE_TOY_RELU_OUTPUT, 40, 20, 12, 1, 201, 0, jitter, 0.1f, 0.01f, 0), 0.05, 0.0f},
            {"one feature, one hidden unit", spec_of(NE_TOY_RELU_OUTPUT, 1, 1, 2, 1, 19, 0, 0, 0.1f, 0.01f, 0), 0.5, 0.1f},
            {"k = E, renormalised", spec_of(NE_TOY_RELU_HIDDEN, 16, 4, 3, 3, 50, 1, noisy, 0.1f, 0.01f, 0), 0.5, 0.0f},
        };
        uint64_t seed = 100;
        for (const Case& c : cases) {
            CHECK(grouped_matches_reference<float>(c.name, c.spec, c.density, c.l1, 20, seed++) == 0);
            CHECK(grouped_matches_reference<double>(c.name, c.spec, c.density, static_cast<double>(c.l1), 3, seed++) == 0);
        }
    }
    return ne_test::finish("test_moe");
}
