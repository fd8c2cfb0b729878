// Parts of a batch of toy and MoE models (ne_toy_create_part, ne_moe_create_part), as the ranks of a split sweep
// train them, against the whole batch in one model, through the C ABI on the CPU: every instance of a part starts
// from, trains like and evaluates like the same instance of the whole, bit for bit (initial parameters, data streams
// with feature sets, router noise and jitter, Adam), for parts of 2, 3 and 1 of 6 instances.
#include <cstdio>
#include <cstring>
#include <vector>

#include "check.h"
#include "nativeengine.h"

namespace {

constexpr int64_t kInstances = 6, kN = 8, kSteps = 40;
constexpr int64_t kParts[][2] = {{0, 2}, {2, 3}, {5, 1}};  // first, count

std::vector<float> rows(const std::vector<float>& whole, int64_t first, int64_t count, int64_t width) {
    return std::vector<float>(whole.begin() + first * width, whole.begin() + (first + count) * width);
}

// Per-instance probabilities and importances that differ between instances, so a misplaced slice shows.
void inputs(std::vector<float>& importance, std::vector<float>& probability) {
    importance.resize(kInstances * kN);
    probability.resize(kInstances * kN);
    for (int64_t k = 0; k < kInstances; ++k)
        for (int64_t i = 0; i < kN; ++i) {
            importance[k * kN + i] = 1.0f - 0.05f * static_cast<float>(i);
            probability[k * kN + i] = 0.05f + 0.1f * static_cast<float>(k);
        }
}

void toy(ne_context* ctx, int32_t model) {
    ne_toy_config c{};
    c.model = model;
    c.n_features = kN;
    c.n_hidden = 3;
    c.n_instances = kInstances;
    c.batch_size = 64;
    c.lr = 1e-2f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.seed = 5;
    std::vector<float> importance, probability;
    inputs(importance, probability);
    const int32_t set_of_feature[kN] = {0, 0, -1, 1, 1, -1, -1, -1};
    const int32_t set_kind[2] = {NE_FEATURES_CORRELATED, NE_FEATURES_ANTICORRELATED};
    const int64_t nm = kN * 3;
    const bool untied = model == NE_TOY_ABS_VALUE;

    ne_toy* whole = nullptr;
    CHECK(ne_toy_create(ctx, &c, importance.data(), kInstances * kN, probability.data(), kInstances * kN, &whole) == NE_OK);
    CHECK(ne_toy_set_feature_sets(whole, set_of_feature, kN, set_kind, 2) == NE_OK);
    CHECK(ne_toy_train(whole, kSteps) == NE_OK);
    std::vector<float> W(kInstances * nm), W_out(untied ? kInstances * nm : 0), b(kInstances * kN), loss(kInstances);
    CHECK(ne_toy_get_params(whole, W.data(), W.size(), W_out.data(), W_out.size(), b.data(), b.size()) == NE_OK);
    CHECK(ne_toy_evaluate(whole, 4, loss.data(), kInstances, nullptr, 0) == NE_OK);

    for (const auto& part : kParts) {
        const int64_t first = part[0], count = part[1];
        ne_toy_config pc = c;
        pc.n_instances = count;
        ne_toy* toy = nullptr;
        const std::vector<float> imp = rows(importance, first, count, kN), prob = rows(probability, first, count, kN);
        CHECK(ne_toy_create_part(ctx, &pc, first, kInstances, imp.data(), count * kN, prob.data(), count * kN, &toy) == NE_OK);
        CHECK(ne_toy_set_feature_sets(toy, set_of_feature, kN, set_kind, 2) == NE_OK);
        CHECK(ne_toy_train(toy, kSteps) == NE_OK);
        std::vector<float> pW(count * nm), pW_out(untied ? count * nm : 0), pb(count * kN), ploss(count);
        CHECK(ne_toy_get_params(toy, pW.data(), pW.size(), pW_out.data(), pW_out.size(), pb.data(), pb.size()) == NE_OK);
        CHECK(ne_toy_evaluate(toy, 4, ploss.data(), count, nullptr, 0) == NE_OK);
        CHECK(pW == rows(W, first, count, nm));
        CHECK(pb == rows(b, first, count, kN));
        CHECK(!untied || pW_out == rows(W_out, first, count, nm));
        CHECK(ploss == rows(loss, first, count, 1));
        ne_toy_destroy(toy);
    }
    ne_toy* outside = nullptr;
    ne_toy_config pc = c;
    pc.n_instances = 2;
    CHECK(ne_toy_create_part(ctx, &pc, 5, kInstances, importance.data(), 2 * kN, probability.data(), 2 * kN, &outside) ==
          NE_ERR_INVALID_ARGUMENT);
    std::printf("  toy model %d: parts equal the whole\n", model);
    ne_toy_destroy(whole);
}

void moe(ne_context* ctx, int32_t noise) {
    ne_moe_config c{};
    c.expert_model = NE_TOY_RELU_OUTPUT;
    c.n_features = kN;
    c.expert_hidden = 2;
    c.n_experts = 4;
    c.top_k = 2;
    c.n_instances = kInstances;
    c.batch_size = 32;
    c.lr = 1e-2f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.renormalize = 1;
    c.noise = noise;
    c.load_balance = 0.01f;
    c.z_loss = 0.001f;
    c.seed = 9;
    std::vector<float> importance, probability;
    inputs(importance, probability);
    const int64_t E = 4, w = E * kN * 2, eb = E * kN, gate = kN * E, out = NE_MOE_EVAL_FIELDS + E;
    auto params = [&](ne_moe* model, int64_t count) {
        std::vector<float> W(count * w), b(count * eb), g(count * gate), noise_w(count * gate), bias(count * E);
        CHECK(ne_moe_get_params(model, W.data(), W.size(), b.data(), b.size(), g.data(), g.size(), noise_w.data(),
                                noise_w.size(), bias.data(), bias.size()) == NE_OK);
        return std::vector<std::vector<float>>{W, b, g, noise_w, bias};
    };
    ne_moe* whole = nullptr;
    CHECK(ne_moe_create(ctx, &c, importance.data(), kInstances * kN, probability.data(), kInstances * kN, &whole) == NE_OK);
    CHECK(ne_moe_train(whole, kSteps) == NE_OK);
    const auto reference = params(whole, kInstances);
    std::vector<float> evaluation(kInstances * out);
    CHECK(ne_moe_evaluate(whole, 4, evaluation.data(), evaluation.size()) == NE_OK);
    const int64_t widths[] = {w, eb, gate, gate, E};
    for (const auto& part : kParts) {
        const int64_t first = part[0], count = part[1];
        ne_moe_config pc = c;
        pc.n_instances = count;
        ne_moe* model = nullptr;
        const std::vector<float> imp = rows(importance, first, count, kN), prob = rows(probability, first, count, kN);
        CHECK(ne_moe_create_part(ctx, &pc, first, kInstances, imp.data(), count * kN, prob.data(), count * kN, &model) == NE_OK);
        CHECK(ne_moe_train(model, kSteps) == NE_OK);
        const auto mine = params(model, count);
        for (int t = 0; t < 5; ++t) CHECK(mine[t] == rows(reference[t], first, count, widths[t]));
        std::vector<float> ev(count * out);
        CHECK(ne_moe_evaluate(model, 4, ev.data(), ev.size()) == NE_OK);
        CHECK(ev == rows(evaluation, first, count, out));
        ne_moe_destroy(model);
    }
    std::printf("  moe with router noise %d: parts equal the whole\n", noise);
    ne_moe_destroy(whole);
}

}  // namespace

int main() {
    ne_context* ctx = nullptr;
    CHECK(ne_context_create(NE_BACKEND_CPU, 0, &ctx) == NE_OK);
    for (int32_t model : {NE_TOY_LINEAR, NE_TOY_RELU_HIDDEN, NE_TOY_ABS_VALUE}) toy(ctx, model);
    for (int32_t noise : {NE_MOE_NOISE_NONE, NE_MOE_NOISE_NOISY_TOPK, NE_MOE_NOISE_JITTER}) moe(ctx, noise);
    ne_context_destroy(ctx);
    return ne_test::finish("test_parts");
}
