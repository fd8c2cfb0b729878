// Non-finite training values through the C ABI, on every backend present: a step whose loss is not finite is not
// applied and is reported (ne_*_non_finite) with its 1-based number, and the parameters read afterwards are those
// of the last finite step.
#include <cmath>
#include <cstdio>
#include <vector>

#include "check.h"
#include "nativeengine.h"

namespace {

bool all_finite(const std::vector<float>& values) {
    for (float v : values)
        if (!std::isfinite(v)) return false;
    return true;
}

ne_toy_config toy_config(float lr) {
    ne_toy_config c{};
    c.model = NE_TOY_RELU_OUTPUT;
    c.optimizer = NE_OPTIMIZER_ADAMW;
    c.n_features = 6;
    c.n_hidden = 3;
    c.n_instances = 3;
    c.batch_size = 32;
    c.lr = lr;
    c.weight_decay = 0.0f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.seed = 3;
    return c;
}

// A learning rate of 1e30 makes the first update reach ~1e31, so a later forward pass overflows: the first step is
// finite, a later one is not, and the parameters keep their finite values.
void toy_stops_at_the_first_non_finite_step(ne_context* ctx, const char* backend) {
    std::printf("%s: toy\n", backend);
    const ne_toy_config good = toy_config(1e-3f), bad = toy_config(1e30f);
    std::vector<float> importance(18, 1.0f), probability(18, 0.5f);
    ne_toy* toy = nullptr;
    CHECK(ne_toy_create(ctx, &good, importance.data(), 18, probability.data(), 18, &toy) == NE_OK);
    CHECK(ne_toy_train(toy, 20) == NE_OK);
    ne_non_finite report{};
    CHECK(ne_toy_non_finite(toy, &report) == NE_OK);
    CHECK(report.step == 0 && report.quantity == NE_NON_FINITE_NONE);
    CHECK(ne_toy_destroy(toy) == NE_OK);

    // A rate whose first Adam step overflows float32 is refused up front.
    const ne_toy_config overflowing = toy_config(3e38f);
    CHECK(ne_toy_create(ctx, &overflowing, importance.data(), 18, probability.data(), 18, &toy) ==
          NE_ERR_INVALID_ARGUMENT);
    CHECK(toy == nullptr);

    CHECK(ne_toy_create(ctx, &bad, importance.data(), 18, probability.data(), 18, &toy) == NE_OK);
    CHECK(ne_toy_train(toy, 10) == NE_OK);
    CHECK(ne_toy_non_finite(toy, &report) == NE_OK);
    std::printf("  first non-finite step %lld (instance %lld)\n", static_cast<long long>(report.step),
                static_cast<long long>(report.instance));
    CHECK(report.step >= 2 && report.step <= 10);
    CHECK(report.quantity == NE_NON_FINITE_LOSS);
    CHECK(report.instance >= 0 && report.instance < 3);
    std::vector<float> W(54), b(18);
    CHECK(ne_toy_get_params(toy, W.data(), 54, nullptr, 0, b.data(), 18) == NE_OK);
    CHECK(all_finite(W) && all_finite(b));
    CHECK(ne_toy_destroy(toy) == NE_OK);
}

void moe_stops_at_the_first_non_finite_step(ne_context* ctx, const char* backend) {
    std::printf("%s: moe\n", backend);
    ne_moe_config c{};
    c.expert_model = NE_TOY_RELU_OUTPUT;
    c.optimizer = NE_OPTIMIZER_ADAMW;
    c.n_features = 6;
    c.expert_hidden = 2;
    c.n_experts = 3;
    c.top_k = 2;
    c.n_instances = 2;
    c.batch_size = 32;
    c.lr = 1e30f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.renormalize = 1;
    c.load_balance = 0.01f;
    c.seed = 5;
    std::vector<float> importance(12, 1.0f), probability(12, 0.5f);
    ne_moe* moe = nullptr;
    CHECK(ne_moe_create(ctx, &c, importance.data(), 12, probability.data(), 12, &moe) == NE_OK);
    if (moe == nullptr) return;
    CHECK(ne_moe_train(moe, 10) == NE_OK);
    ne_non_finite report{};
    CHECK(ne_moe_non_finite(moe, &report) == NE_OK);
    std::printf("  first non-finite step %lld (instance %lld)\n", static_cast<long long>(report.step),
                static_cast<long long>(report.instance));
    CHECK(report.step >= 2 && report.step <= 10 && report.quantity == NE_NON_FINITE_LOSS);
    std::vector<float> W(2 * 3 * 6 * 2), b(2 * 3 * 6), gate(2 * 6 * 3), noise(2 * 6 * 3), bias(2 * 3);
    CHECK(ne_moe_get_params(moe, W.data(), W.size(), b.data(), b.size(), gate.data(), gate.size(), noise.data(),
                            noise.size(), bias.data(), bias.size()) == NE_OK);
    CHECK(all_finite(W) && all_finite(b) && all_finite(gate));
    CHECK(ne_moe_destroy(moe) == NE_OK);
}

// A batch holding a NaN: the step is not applied (parameters and step count unchanged) and reported as step 2.
void sae_skips_a_non_finite_batch(ne_context* ctx, const char* backend) {
    std::printf("%s: sae\n", backend);
    ne_sae_config c{};
    c.architecture = NE_SAE_TOPK;
    c.d_in = 8;
    c.d_sae = 16;
    c.k = 2;
    c.batch_size = 16;
    c.dead_window = 1000;
    c.auxk_alpha = 1.0f / 32;
    c.jump_bandwidth = 1e-3f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    ne_sae* sae = nullptr;
    CHECK(ne_sae_create(ctx, &c, &sae) == NE_OK);
    if (sae == nullptr) return;
    std::vector<float> x(16 * 8);
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
    ne_sae_stats stats{};
    CHECK(ne_sae_train_step(sae, x.data(), x.size(), 1e-3f, &stats) == NE_OK);
    CHECK(std::isfinite(stats.mse) && stats.steps == 1);
    std::vector<float> W_enc(128), b_enc(16), W_dec(128), b_dec(8), before(128);
    CHECK(ne_sae_get_params(sae, W_enc.data(), 128, b_enc.data(), 16, before.data(), 128, b_dec.data(), 8, nullptr, 0) ==
          NE_OK);
    x[19] = std::nanf("");
    CHECK(ne_sae_train_step(sae, x.data(), x.size(), 1e-3f, &stats) == NE_OK);
    CHECK(!std::isfinite(stats.mse));
    CHECK(stats.steps == 1);
    ne_non_finite report{};
    CHECK(ne_sae_non_finite(sae, &report) == NE_OK);
    CHECK(report.step == 2 && report.quantity == NE_NON_FINITE_LOSS);
    CHECK(ne_sae_get_params(sae, W_enc.data(), 128, b_enc.data(), 16, W_dec.data(), 128, b_dec.data(), 8, nullptr, 0) ==
          NE_OK);
    CHECK(W_dec == before && all_finite(W_enc) && all_finite(b_dec));
    CHECK(ne_sae_destroy(sae) == NE_OK);
}

}  // namespace

int main() {
    CHECK(ne_non_finite_size() == sizeof(ne_non_finite));
    ne_context* cpu = nullptr;
    CHECK(ne_context_create(NE_BACKEND_CPU, 0, &cpu) == NE_OK);
    toy_stops_at_the_first_non_finite_step(cpu, "cpu");
    moe_stops_at_the_first_non_finite_step(cpu, "cpu");
    sae_skips_a_non_finite_batch(cpu, "cpu");
    CHECK(ne_context_destroy(cpu) == NE_OK);

    ne_runtime_info runtime{};
    CHECK(ne_runtime_query(&runtime) == NE_OK);
    if (runtime.cuda_loaded && runtime.cuda_device_count > 0) {
        ne_context* cuda = nullptr;
        CHECK(ne_context_create(NE_BACKEND_CUDA, 0, &cuda) == NE_OK);
        toy_stops_at_the_first_non_finite_step(cuda, "cuda");
        moe_stops_at_the_first_non_finite_step(cuda, "cuda");
        sae_skips_a_non_finite_batch(cuda, "cuda");
        CHECK(ne_context_destroy(cuda) == NE_OK);
    } else {
        std::printf("cuda: no device, CPU checks only\n");
    }
    return ne_test::finish("test_non_finite");
}
