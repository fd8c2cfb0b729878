// Finite-difference check of every gradient of the toy models' loss (W and b, each model kind), in double,
// through both CPU implementations (the per-sample reference and the blocked kernel the backend trains with;
// both are templates); then the blocked kernel against the reference in float on fresh random inputs.
#include <cstdio>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "check.h"
#include "models/toy.h"

using namespace ne;

using LossAndGrad = double (*)(int32_t, int64_t, int64_t, int64_t, const double*, const double*, const double*,
                               const double*, double*, double*);

static double blocked_double(int32_t model, int64_t n, int64_t m, int64_t batch, const double* W, const double* b,
                             const double* importance, const double* x, double* gW, double* gb) {
    static ToyWorkspace<double> workspace;
    return toy_loss_and_grad_blocked<double>(model, n, m, batch, W, b, importance, x, gW, gb, workspace);
}

static void check_model(LossAndGrad loss_and_grad, int32_t model, const char* name, int64_t n, int64_t m,
                        int64_t batch, double density) {
    std::mt19937_64 rng(42 + model);
    std::normal_distribution<double> normal(0.0, 0.4);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    std::vector<double> W(n * m), b(n), importance(n), x(batch * n);
    for (auto& w : W) w = normal(rng);
    for (auto& v : b) v = normal(rng) * 0.3;
    for (int64_t i = 0; i < n; ++i) importance[i] = std::pow(0.9, static_cast<double>(i));
    for (auto& v : x) v = uniform(rng) < density ? uniform(rng) : 0.0;

    std::vector<double> gW(n * m), gb(n), scratchW(n * m), scratchb(n);
    loss_and_grad(model, n, m, batch, W.data(), b.data(), importance.data(), x.data(), gW.data(), gb.data());
    auto loss_at = [&](std::vector<double>& param, int64_t j, double delta) {
        const double saved = param[j];
        param[j] = saved + delta;
        const double loss = loss_and_grad(model, n, m, batch, W.data(), b.data(), importance.data(), x.data(),
                                          scratchW.data(), scratchb.data());
        param[j] = saved;
        return loss;
    };
    const double h = 1e-6;
    double worst = 0.0;
    int checked = 0;
    auto check_param = [&](std::vector<double>& param, const std::vector<double>& grad, const char* pname) {
        for (int64_t j = 0; j < static_cast<int64_t>(param.size()); ++j) {
            const double numeric = (loss_at(param, j, h) - loss_at(param, j, -h)) / (2 * h);
            const double error = std::fabs(numeric - grad[j]);
            worst = std::max(worst, error / (1e-7 + std::fabs(numeric)));
            if (!ne_test::close(grad[j], numeric, 1e-7, 1e-5)) {
                std::printf("%s d/d%s[%lld]: analytic %.10g numeric %.10g\n", name, pname, static_cast<long long>(j),
                            grad[j], numeric);
                CHECK(false);
            }
            ++checked;
        }
    };
    check_param(W, gW, "W");
    check_param(b, gb, "b");
    std::printf("%s: %d gradients checked, worst relative error %.2e\n", name, checked, worst);
}

// The blocked float kernel equals the reference within float rounding, on shapes that exercise every remainder
// (n not a multiple of the vector width, batch not a multiple of the block, sparse and dense inputs).
static void blocked_matches_reference(int32_t model, int64_t n, int64_t m, int64_t batch, double density,
                                      uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.3f);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    std::vector<float> W(n * m), b(n), importance(n), x(batch * n);
    for (auto& w : W) w = normal(rng);
    for (auto& v : b) v = normal(rng) * 0.2f;
    for (auto& v : importance) v = uniform(rng);
    for (auto& v : x) v = uniform(rng) < density ? uniform(rng) : 0.0f;
    std::vector<float> gW_ref(n * m), gb_ref(n), gW(n * m, 123.0f), gb(n, 123.0f);
    ToyWorkspace<float> workspace;
    const float loss_ref = toy_loss_and_grad<float>(model, n, m, batch, W.data(), b.data(), importance.data(),
                                                    x.data(), gW_ref.data(), gb_ref.data());
    const float loss = toy_loss_and_grad_blocked<float>(model, n, m, batch, W.data(), b.data(), importance.data(),
                                                        x.data(), gW.data(), gb.data(), workspace);
    CHECK(ne_test::close(loss, loss_ref, 1e-7, 1e-5));
    double scale = 0.0;
    for (float g : gW_ref) scale = std::max(scale, static_cast<double>(std::fabs(g)));
    int bad = 0;
    for (int64_t j = 0; j < n * m; ++j) bad += !ne_test::close(gW[j], gW_ref[j], 1e-5 * scale, 1e-3);
    for (int64_t j = 0; j < n; ++j) bad += !ne_test::close(gb[j], gb_ref[j], 1e-5 * scale, 1e-3);
    if (bad) std::printf("blocked vs reference n=%lld m=%lld batch=%lld: %d mismatches\n", static_cast<long long>(n),
                         static_cast<long long>(m), static_cast<long long>(batch), bad);
    CHECK(bad == 0);
}

int main() {
    for (auto [fn, label] : {std::pair<LossAndGrad, const char*>{toy_loss_and_grad<double>, "reference"},
                             std::pair<LossAndGrad, const char*>{blocked_double, "blocked"}}) {
        std::printf("-- %s\n", label);
        check_model(fn, NE_TOY_LINEAR, "linear", 7, 3, 16, 0.5);
        check_model(fn, NE_TOY_RELU_OUTPUT, "relu_output", 7, 3, 13, 0.5);
        check_model(fn, NE_TOY_RELU_OUTPUT, "relu_output dense", 5, 2, 8, 1.0);
        check_model(fn, NE_TOY_RELU_OUTPUT, "relu_output sparse", 20, 5, 64, 0.05);
    }
    uint64_t seed = 1;
    for (int32_t model : {NE_TOY_LINEAR, NE_TOY_RELU_OUTPUT})
        for (auto [n, m, batch] : {std::tuple<int64_t, int64_t, int64_t>{5, 2, 1024}, {100, 20, 1024}, {17, 3, 7},
                                   {1, 1, 3}, {200, 20, 130}, {64, 40, 33}})
            for (double density : {1.0, 0.1, 0.01}) blocked_matches_reference(model, n, m, batch, density, seed++);
    return ne_test::finish("test_gradients");
}
