// Finite-difference check of every gradient of the toy models' loss (W and b, each model kind), run in double
// through the very code the CPU backend trains with (toy_loss_and_grad is a template).
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "models/toy.h"

using namespace ne;

static void check_model(int32_t model, const char* name, int64_t n, int64_t m, int64_t batch, double density) {
    std::mt19937_64 rng(42 + model);
    std::normal_distribution<double> normal(0.0, 0.4);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    std::vector<double> W(n * m), b(n), importance(n), x(batch * n);
    for (auto& w : W) w = normal(rng);
    for (auto& v : b) v = normal(rng) * 0.3;
    for (int64_t i = 0; i < n; ++i) importance[i] = std::pow(0.9, static_cast<double>(i));
    for (auto& v : x) v = uniform(rng) < density ? uniform(rng) : 0.0;

    std::vector<double> gW(n * m), gb(n), scratchW(n * m), scratchb(n);
    toy_loss_and_grad<double>(model, n, m, batch, W.data(), b.data(), importance.data(), x.data(), gW.data(),
                              gb.data());
    auto loss_at = [&](std::vector<double>& param, int64_t j, double delta) {
        const double saved = param[j];
        param[j] = saved + delta;
        const double loss = toy_loss_and_grad<double>(model, n, m, batch, W.data(), b.data(), importance.data(),
                                                      x.data(), scratchW.data(), scratchb.data());
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

int main() {
    check_model(NE_TOY_LINEAR, "linear", 7, 3, 16, 0.5);
    check_model(NE_TOY_RELU_OUTPUT, "relu_output", 7, 3, 16, 0.5);
    check_model(NE_TOY_RELU_OUTPUT, "relu_output dense", 5, 2, 8, 1.0);
    check_model(NE_TOY_RELU_OUTPUT, "relu_output sparse", 20, 5, 64, 0.05);
    return ne_test::finish("test_gradients");
}
