// Finite-difference check of every gradient of the toy models' objective (W, W_out, b; every model kind, with
// and without the L1 penalty), in double, through both CPU implementations (the per-sample reference and the
// blocked kernel the backend trains with; both are templates); then the blocked kernel against the reference
// in float on fresh random inputs, and its loss alone (evaluation) against its loss with gradients.
#include <cmath>
#include <cstdio>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "check.h"
#include "models/toy.h"

using namespace ne;

using LossAndGrad = ToyLoss (*)(int32_t, int64_t, int64_t, int64_t, ToyParams<double>, const double*, double,
                                const double*, ToyGrads<double>);

static ToyLoss blocked_double(int32_t model, int64_t n, int64_t m, int64_t batch, ToyParams<double> params,
                              const double* importance, double l1, const double* x, ToyGrads<double> grads) {
    static ToyWorkspace<double> workspace;
    return toy_loss_and_grad_blocked<double>(model, n, m, batch, params, importance, l1, x, grads, workspace);
}

// Inputs as the data stream makes them: U[0,1) (or U[-1,1) for signed models) with probability `density`.
template <typename T, class Rng>
static std::vector<T> sparse_inputs(int32_t model, int64_t count, double density, Rng& rng) {
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    std::vector<T> x(count);
    for (auto& v : x) {
        const double value = toy_signed_inputs(model) ? 2.0 * uniform(rng) - 1.0 : uniform(rng);
        v = static_cast<T>(uniform(rng) < density ? value : 0.0);
    }
    return x;
}

static void check_model(LossAndGrad loss_and_grad, int32_t model, const char* name, int64_t n, int64_t m,
                        int64_t batch, double density, double l1) {
    std::mt19937_64 rng(42 + model);
    std::normal_distribution<double> normal(0.0, 0.4);
    const bool untied = toy_untied(model);
    std::vector<double> W(n * m), W_out(untied ? n * m : 0), b(n), importance(n);
    for (auto& w : W) w = normal(rng);
    for (auto& w : W_out) w = normal(rng);
    for (auto& v : b) v = normal(rng) * 0.3;
    for (int64_t i = 0; i < n; ++i) importance[i] = std::pow(0.9, static_cast<double>(i));
    const std::vector<double> x = sparse_inputs<double>(model, batch * n, density, rng);

    std::vector<double> gW(n * m), gW_out(W_out.size()), gb(n), sW(n * m), sW_out(W_out.size()), sb(n);
    auto params = [&] { return ToyParams<double>{W.data(), untied ? W_out.data() : nullptr, b.data()}; };
    loss_and_grad(model, n, m, batch, params(), importance.data(), l1, x.data(),
                  ToyGrads<double>{gW.data(), untied ? gW_out.data() : nullptr, gb.data()});
    auto loss_at = [&](std::vector<double>& param, int64_t j, double delta) {
        const double saved = param[j];
        param[j] = saved + delta;
        const ToyLoss loss = loss_and_grad(model, n, m, batch, params(), importance.data(), l1, x.data(),
                                           ToyGrads<double>{sW.data(), untied ? sW_out.data() : nullptr, sb.data()});
        param[j] = saved;
        return loss.total();
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
    if (untied) check_param(W_out, gW_out, "W_out");
    check_param(b, gb, "b");
    std::printf("%s (l1 %.2f): %d gradients checked, worst relative error %.2e\n", name, l1, checked, worst);
}

// The blocked float kernel equals the reference within float rounding, on shapes that exercise every remainder
// (n not a multiple of the vector width, batch not a multiple of the block, sparse and dense inputs). A negative
// bias shift puts most outputs below their ReLU, as in a trained sparse model, so the gradient d is sparse too.
static void blocked_matches_reference(int32_t model, int64_t n, int64_t m, int64_t batch, double density, float l1,
                                      float bias_shift, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.3f);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    const bool untied = toy_untied(model);
    std::vector<float> W(n * m), W_out(untied ? n * m : 0), b(n), importance(n);
    for (auto& w : W) w = normal(rng);
    for (auto& w : W_out) w = normal(rng);
    for (auto& v : b) v = normal(rng) * 0.2f + bias_shift;
    for (auto& v : importance) v = uniform(rng);
    const std::vector<float> x = sparse_inputs<float>(model, batch * n, density, rng);
    std::vector<float> gW_ref(n * m), gW_out_ref(W_out.size()), gb_ref(n);
    std::vector<float> gW(n * m, 123.0f), gW_out(W_out.size(), 123.0f), gb(n, 123.0f);
    const ToyParams<float> params{W.data(), untied ? W_out.data() : nullptr, b.data()};
    ToyWorkspace<float> workspace;
    const ToyLoss loss_ref = toy_loss_and_grad<float>(
        model, n, m, batch, params, importance.data(), l1, x.data(),
        ToyGrads<float>{gW_ref.data(), untied ? gW_out_ref.data() : nullptr, gb_ref.data()});
    const ToyLoss loss = toy_loss_and_grad_blocked<float>(
        model, n, m, batch, params, importance.data(), l1, x.data(),
        ToyGrads<float>{gW.data(), untied ? gW_out.data() : nullptr, gb.data()}, workspace);
    // Evaluation asks for the loss alone: the same bits, no gradient written.
    const ToyLoss loss_only = toy_loss_and_grad_blocked<float>(model, n, m, batch, params, importance.data(), l1,
                                                                x.data(), ToyGrads<float>{nullptr, nullptr, nullptr},
                                                                workspace);
    CHECK(loss_only.task == loss.task && loss_only.penalty == loss.penalty);
    CHECK(ne_test::close(loss.task, loss_ref.task, 1e-7, 1e-5));
    CHECK(ne_test::close(loss.penalty, loss_ref.penalty, 1e-7, 1e-5));
    double scale = 0.0;
    for (float g : gW_ref) scale = std::max(scale, static_cast<double>(std::fabs(g)));
    int bad = 0;
    for (int64_t j = 0; j < n * m; ++j) bad += !ne_test::close(gW[j], gW_ref[j], 1e-5 * scale, 1e-3);
    for (size_t j = 0; j < gW_out.size(); ++j) bad += !ne_test::close(gW_out[j], gW_out_ref[j], 1e-5 * scale, 1e-3);
    for (int64_t j = 0; j < n; ++j) bad += !ne_test::close(gb[j], gb_ref[j], 1e-5 * scale, 1e-3);
    if (bad)
        std::printf("blocked vs reference model %d n=%lld m=%lld batch=%lld l1=%g: %d mismatches\n", model,
                    static_cast<long long>(n), static_cast<long long>(m), static_cast<long long>(batch), l1, bad);
    CHECK(bad == 0);
}

int main() {
    for (auto [fn, label] : {std::pair<LossAndGrad, const char*>{toy_loss_and_grad<double>, "reference"},
                             std::pair<LossAndGrad, const char*>{blocked_double, "blocked"}}) {
        std::printf("-- %s\n", label);
        for (double l1 : {0.0, 0.3}) {
            check_model(fn, NE_TOY_LINEAR, "linear", 7, 3, 16, 0.5, l1);
            check_model(fn, NE_TOY_RELU_OUTPUT, "relu_output", 7, 3, 13, 0.5, l1);
            check_model(fn, NE_TOY_RELU_OUTPUT, "relu_output dense", 5, 2, 8, 1.0, l1);
            check_model(fn, NE_TOY_RELU_OUTPUT, "relu_output sparse", 20, 5, 64, 0.05, l1);
            check_model(fn, NE_TOY_RELU_HIDDEN, "relu_hidden", 10, 5, 16, 0.5, l1);
            check_model(fn, NE_TOY_RELU_HIDDEN, "relu_hidden odd", 7, 3, 13, 0.3, l1);
            check_model(fn, NE_TOY_ABS_VALUE, "abs_value", 3, 6, 16, 0.7, l1);
            check_model(fn, NE_TOY_ABS_VALUE, "abs_value wide", 9, 4, 11, 0.4, l1);
        }
    }
    uint64_t seed = 1;
    for (int32_t model : {NE_TOY_LINEAR, NE_TOY_RELU_OUTPUT, NE_TOY_RELU_HIDDEN, NE_TOY_ABS_VALUE})
        for (auto [n, m, batch] : {std::tuple<int64_t, int64_t, int64_t>{5, 2, 1024}, {100, 20, 1024}, {17, 3, 7},
                                   {1, 1, 3}, {200, 20, 130}, {64, 40, 33}, {3, 6, 50}})
            for (double density : {1.0, 0.1, 0.01})
                for (float l1 : {0.0f, 0.05f})
                    for (float bias_shift : {0.0f, -0.4f})
                        blocked_matches_reference(model, n, m, batch, density, l1, bias_shift, seed++);
    return ne_test::finish("test_gradients");
}
