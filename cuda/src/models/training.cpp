#include "models/training.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "nativeengine.h"

namespace ne {

void check_per_instance_values(const char* name, const float* values, int64_t count, int64_t expected,
                               bool probability) {
    if (values == nullptr) invalid(std::string(name) + " is null");
    if (count != expected)
        invalid(std::string(name) + " has " + std::to_string(count) + " values; expected " + std::to_string(expected));
    for (int64_t k = 0; k < count; ++k) {
        const float v = values[k];
        const bool ok = probability ? (v >= 0.0f && v <= 1.0f) : (std::isfinite(v) && v >= 0.0f);
        if (!ok)
            invalid(std::string(name) + "[" + std::to_string(k) + "] is " + std::to_string(v) + "; valid: " +
                    (probability ? "[0, 1]" : "finite and >= 0"));
    }
}

bool all_finite(const float* values, int64_t count) {
    bool finite = true;
    for (int64_t k = 0; k < count; ++k) finite &= std::isfinite(values[k]);
    return finite;
}

ne_non_finite earliest_non_finite(const std::vector<ne_non_finite>& per_instance) {
    ne_non_finite result{};
    for (const ne_non_finite& instance : per_instance)
        if (instance.step != 0 && (result.step == 0 || instance.step < result.step)) result = instance;
    return result;
}

void check_count(const char* name, const void* buffer, int64_t count, int64_t expected) {
    if (buffer == nullptr) invalid(std::string(name) + " is null");
    if (count != expected)
        invalid(std::string(name) + " has room for " + std::to_string(count) + " floats; expected " +
                std::to_string(expected));
}

void check_optimizer_settings(int32_t optimizer, float lr, float weight_decay, float beta1, float beta2, float eps) {
    auto require = [](bool ok, const std::string& message) {
        if (!ok) invalid(message);
    };
    require(optimizer == NE_OPTIMIZER_ADAMW || optimizer == NE_OPTIMIZER_ADAM,
            "config.optimizer is " + std::to_string(optimizer) + "; valid: 0 (adamw), 1 (adam)");
    require(std::isfinite(lr) && lr > 0, "config.lr is " + std::to_string(lr) + "; valid: > 0");
    require(std::isfinite(weight_decay) && weight_decay >= 0,
            "config.weight_decay is " + std::to_string(weight_decay) + "; valid: >= 0");
    require(beta1 >= 0 && beta1 < 1, "config.beta1 is " + std::to_string(beta1) + "; valid: [0, 1)");
    require(beta2 >= 0 && beta2 < 1, "config.beta2 is " + std::to_string(beta2) + "; valid: [0, 1)");
    require(std::isfinite(eps) && eps > 0, "config.eps is " + std::to_string(eps) + "; valid: > 0");
    // Adam's first step moves a parameter by up to lr / (1 - beta1): it must be a float.
    require(std::isfinite(lr / (1.0f - beta1)),
            "config.lr is " + std::to_string(lr) + "; valid: > 0 with lr / (1 - beta1) finite in float32");
}

std::vector<FeatureRule> feature_rules(int64_t n, int64_t instances, const std::vector<float>& probability,
                                       const int32_t* set_of_feature, int64_t feature_count, const int32_t* set_kind,
                                       int64_t set_count) {
    if (set_of_feature == nullptr) invalid("set_of_feature is null");
    if (feature_count != n)
        invalid("set_of_feature has " + std::to_string(feature_count) + " entries; expected n_features = " +
                std::to_string(n));
    if (set_count < 0 || set_count > n / 2)
        invalid("set_count is " + std::to_string(set_count) + "; valid: 0.." + std::to_string(n / 2) +
                " (each set has at least 2 of the " + std::to_string(n) + " features)");
    if (set_count > 0 && set_kind == nullptr) invalid("set_kind is null");
    for (int64_t s = 0; s < set_count; ++s)
        if (set_kind[s] != NE_FEATURES_CORRELATED && set_kind[s] != NE_FEATURES_ANTICORRELATED)
            invalid("set_kind[" + std::to_string(s) + "] is " + std::to_string(set_kind[s]) +
                    "; valid: 1 (correlated), 2 (anticorrelated)");
    std::vector<FeatureRule> rules(n, FeatureRule{NE_FEATURES_INDEPENDENT, 0, 0, 1, 0});
    std::vector<std::vector<int32_t>> members(set_count);
    for (int64_t i = 0; i < n; ++i) {
        const int32_t s = set_of_feature[i];
        if (s < -1 || s >= set_count)
            invalid("set_of_feature[" + std::to_string(i) + "] is " + std::to_string(s) + "; valid: -1 (no set) or 0.." +
                    std::to_string(set_count - 1));
        if (s >= 0) members[s].push_back(static_cast<int32_t>(i));
    }
    for (int64_t s = 0; s < set_count; ++s) {
        const auto& set = members[s];
        if (set.size() < 2)
            invalid("feature set " + std::to_string(s) + " has " + std::to_string(set.size()) +
                    " member(s); a set needs at least 2");
        for (size_t r = 0; r < set.size(); ++r) {
            for (int64_t k = 0; k < instances; ++k) {
                const float* p = probability.data() + k * n;
                if (p[set[r]] != p[set[0]])
                    invalid("feature set " + std::to_string(s) + ": feature " + std::to_string(set[r]) +
                            " has probability " + std::to_string(p[set[r]]) + " in instance " + std::to_string(k) +
                            " but the set's first feature " + std::to_string(set[0]) + " has " +
                            std::to_string(p[set[0]]) + "; members of a set share one probability");
            }
            rules[set[r]] = FeatureRule{set_kind[s], set[0], set[1], static_cast<int32_t>(set.size()),
                                        static_cast<int32_t>(r)};
        }
    }
    if (set_count == 0) rules.clear();
    return rules;
}

int64_t check_part(int64_t first_instance, int64_t total_instances, int64_t instances) {
    if (total_instances == 0 && first_instance == 0) return instances;
    if (first_instance < 0 || total_instances < 1 || first_instance + instances > total_instances)
        invalid("instances [" + std::to_string(first_instance) + ", " + std::to_string(first_instance + instances) +
                ") are not a part of " + std::to_string(total_instances) + " instances; valid: 0 <= first_instance, " +
                "first_instance + n_instances <= total_instances");
    if (total_instances > (int64_t{1} << 32))
        invalid("total_instances is " + std::to_string(total_instances) + "; the random streams index at most 2^32");
    return total_instances;
}

std::vector<float> normal_init(uint64_t seed, uint32_t tensor, int64_t count, double stddev, int64_t first) {
    std::vector<float> values(count);
    // Value v of the sequence is half of pair v / 2; a slice may start and end inside a pair.
    for (int64_t pair = first / 2; pair < (first + count + 1) / 2; ++pair) {
        const Philox4 r = philox4x32_10(static_cast<uint32_t>(pair), static_cast<uint32_t>(pair >> 32), tensor,
                                        stream_word(Stream::kInit, 0), static_cast<uint32_t>(seed),
                                        static_cast<uint32_t>(seed >> 32));
        // Box-Muller; u1 in (0, 1] keeps the log finite.
        const double u1 = (static_cast<double>(r.v[0] >> 8) + 1.0) / 16777216.0;
        const double u2 = static_cast<double>(r.v[1] >> 8) / 16777216.0;
        const double radius = std::sqrt(-2.0 * std::log(u1)), angle = 2.0 * M_PI * u2;
        const int64_t even = 2 * pair - first, odd = even + 1;
        if (even >= 0) values[even] = static_cast<float>(stddev * radius * std::cos(angle));
        if (odd < count) values[odd] = static_cast<float>(stddev * radius * std::sin(angle));
    }
    return values;
}

AdamStep adam_step(int32_t optimizer, float lr, float weight_decay, float beta1, float beta2, float eps, int64_t t) {
    const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(t));
    const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(t));
    return AdamStep{lr, weight_decay, beta1, beta2, eps, static_cast<float>(lr / bc1), static_cast<float>(std::sqrt(bc2)),
                    optimizer == NE_OPTIMIZER_ADAMW ? 1 : 0};
}

std::vector<AdamStep> adam_schedule(int32_t optimizer, float lr, float weight_decay, float beta1, float beta2,
                                    float eps, int64_t first_t, int64_t count) {
    std::vector<AdamStep> adam(count);
    for (int64_t k = 0; k < count; ++k) adam[k] = adam_step(optimizer, lr, weight_decay, beta1, beta2, eps, first_t + k + 1);
    return adam;
}

void train_in_chunks(int64_t steps, int64_t& steps_done, int64_t& optimizer_steps, int32_t optimizer, float lr,
                     float weight_decay, float beta1, float beta2, float eps,
                     const std::function<void(int64_t first_step, const std::vector<AdamStep>& adam)>& train) {
    if (steps < 0) invalid("steps is " + std::to_string(steps) + "; valid: >= 0");
    if (steps_done + steps > kMaxStreamIndex)
        invalid("steps_done + steps would reach " + std::to_string(steps_done + steps) + "; at most " +
                std::to_string(kMaxStreamIndex) + " steps per model");
    constexpr int64_t kChunk = 4096;
    while (steps > 0) {
        const int64_t count = std::min(steps, kChunk);
        train(steps_done, adam_schedule(optimizer, lr, weight_decay, beta1, beta2, eps, optimizer_steps, count));
        steps_done += count;
        optimizer_steps += count;
        steps -= count;
    }
}

}  // namespace ne
