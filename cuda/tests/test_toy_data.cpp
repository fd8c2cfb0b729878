// The toy data stream with feature sets and signed inputs, through the C ABI (ne_toy_set_feature_sets and
// ne_toy_sample_batch): correlated sets fire together with the set's probability; anticorrelated sets fire
// exactly one member, chosen uniformly; features outside sets keep their own probability and independence;
// abs_value inputs are U[-1, 1).
#include <cmath>
#include <cstdio>
#include <vector>

#include "check.h"
#include "nativeengine.h"

namespace {

constexpr int64_t kN = 7, kBatch = 4096, kSteps = 10;

// Checks |measured - p| within 5 standard errors of a Bernoulli rate over `samples` draws.
void check_rate(const char* what, double count, double samples, double p) {
    const double rate = count / samples, sd = std::sqrt(p * (1 - p) / samples);
    std::printf("  %-34s expected %.4f measured %.4f\n", what, p, rate);
    CHECK(std::fabs(rate - p) <= 5 * sd + 1e-12);
}

void run(ne_context* ctx, int32_t model) {
    ne_toy_config config{};
    config.model = model;
    config.n_features = kN;
    config.n_hidden = 3;
    config.n_instances = 2;
    config.batch_size = kBatch;
    config.lr = 1e-3f;
    config.beta1 = 0.9f;
    config.beta2 = 0.999f;
    config.eps = 1e-8f;
    config.seed = 77;
    // Features 0-2: a correlated set at p = 0.3; 3-4: an anticorrelated pair at p = 0.4; 5, 6 independent.
    const float p[kN] = {0.3f, 0.3f, 0.3f, 0.4f, 0.4f, 0.2f, 0.6f};
    std::vector<float> importance(2 * kN, 1.0f), probability(2 * kN);
    for (int k = 0; k < 2; ++k)
        for (int i = 0; i < kN; ++i) probability[k * kN + i] = p[i];
    ne_toy* toy = nullptr;
    CHECK(ne_toy_create(ctx, &config, importance.data(), 2 * kN, probability.data(), 2 * kN, &toy) == NE_OK);
    const int32_t set_of_feature[kN] = {0, 0, 0, 1, 1, -1, -1};
    const int32_t kinds[2] = {NE_FEATURES_CORRELATED, NE_FEATURES_ANTICORRELATED};
    CHECK(ne_toy_set_feature_sets(toy, set_of_feature, kN, kinds, 2) == NE_OK);

    const bool signed_inputs = model == NE_TOY_ABS_VALUE;
    std::vector<float> x(kBatch * kN);
    double fired[kN] = {}, value_sum = 0.0, values = 0.0, corr_on = 0.0, anti_on = 0.0, anti_first = 0.0;
    double both_independent = 0.0;
    int64_t broken_correlated = 0, broken_anticorrelated = 0, out_of_range = 0;
    for (int64_t step = 0; step < kSteps; ++step) {
        CHECK(ne_toy_sample_batch(toy, step, 1, x.data(), static_cast<int64_t>(x.size())) == NE_OK);
        for (int64_t t = 0; t < kBatch; ++t) {
            const float* row = x.data() + t * kN;
            bool on[kN];
            for (int i = 0; i < kN; ++i) {
                on[i] = row[i] != 0.0f;
                fired[i] += on[i];
                const float low = signed_inputs ? -1.0f : 0.0f;
                out_of_range += row[i] < low || row[i] >= 1.0f;
                if (on[i]) {
                    value_sum += row[i];
                    values += 1;
                }
            }
            broken_correlated += on[0] != on[1] || on[0] != on[2];
            broken_anticorrelated += on[3] && on[4];
            corr_on += on[0];
            anti_on += on[3] || on[4];
            anti_first += on[3];
            both_independent += on[5] && on[6];
        }
    }
    const double samples = kSteps * static_cast<double>(kBatch);
    std::printf("model %d:\n", model);
    CHECK(out_of_range == 0);
    CHECK(broken_correlated == 0);      // correlated members fire together, always
    CHECK(broken_anticorrelated == 0);  // never two members of an anticorrelated set at once
    check_rate("correlated set on", corr_on, samples, 0.3);
    check_rate("anticorrelated set on", anti_on, samples, 0.4);
    check_rate("anticorrelated: first member", anti_first, samples, 0.2);
    check_rate("anticorrelated: second member", fired[4], samples, 0.2);
    check_rate("independent feature 5", fired[5], samples, 0.2);
    check_rate("independent feature 6", fired[6], samples, 0.6);
    check_rate("independent 5 and 6 together", both_independent, samples, 0.2 * 0.6);
    const double mean = value_sum / values, expected_mean = signed_inputs ? 0.0 : 0.5;
    const double sd = (signed_inputs ? 2.0 : 1.0) * std::sqrt(1.0 / 12.0 / values);
    std::printf("  mean non-zero value %.4f (expected %.1f)\n", mean, expected_mean);
    CHECK(std::fabs(mean - expected_mean) < 5 * sd);
    // Clearing the sets restores independent draws: the correlated members part ways.
    CHECK(ne_toy_set_feature_sets(toy, set_of_feature, kN, kinds, 0) == NE_ERR_INVALID_ARGUMENT);
    const int32_t none[kN] = {-1, -1, -1, -1, -1, -1, -1};
    CHECK(ne_toy_set_feature_sets(toy, none, kN, nullptr, 0) == NE_OK);
    CHECK(ne_toy_sample_batch(toy, 0, 1, x.data(), static_cast<int64_t>(x.size())) == NE_OK);
    int64_t apart = 0;
    for (int64_t t = 0; t < kBatch; ++t) apart += (x[t * kN] != 0.0f) != (x[t * kN + 1] != 0.0f);
    CHECK(apart > kBatch / 10);
    ne_toy_destroy(toy);
}

}  // namespace

int main() {
    ne_context* ctx = nullptr;
    CHECK(ne_context_create(NE_BACKEND_CPU, 0, &ctx) == NE_OK);
    run(ctx, NE_TOY_RELU_OUTPUT);
    run(ctx, NE_TOY_ABS_VALUE);
    ne_context_destroy(ctx);
    return ne_test::finish("test_toy_data");
}
