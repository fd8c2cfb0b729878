// What every trained model shares, whatever its architecture: argument checks of per-instance inputs, the
// feature-set rules of the data stream, xavier-normal initialisation from the Philox init stream, and the
// per-step optimizer constants.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/optimizer.h"
#include "models/toy_common.h"

namespace ne {

// Throws invalid-argument naming `name` unless values has `expected` entries, each finite and >= 0 (or in
// [0, 1] for probabilities).
void check_per_instance_values(const char* name, const float* values, int64_t count, int64_t expected,
                               bool probability);

// Throws unless buffer is non-null with exactly `expected` floats.
void check_count(const char* name, const void* buffer, int64_t count, int64_t expected);

// The checks of the optimizer fields every config shares, with their field names.
void check_optimizer_settings(int32_t optimizer, float lr, float weight_decay, float beta1, float beta2, float eps);

// The rule of each feature [n] from the sets (see ne_toy_set_feature_sets); empty when set_count is 0.
// probability: [instances][n], checked to be shared within each set.
std::vector<FeatureRule> feature_rules(int64_t n, int64_t instances, const std::vector<float>& probability,
                                       const int32_t* set_of_feature, int64_t feature_count, const int32_t* set_kind,
                                       int64_t set_count);

// The whole run's instance count for a part [first_instance, first_instance + instances) of total_instances (0: the
// part is the whole); throws invalid-argument naming the field unless the part lies inside the whole.
int64_t check_part(int64_t first_instance, int64_t total_instances, int64_t instances);

// count normals of standard deviation stddev from the init stream; `tensor` keys a disjoint part of it. first:
// the values from this position of the tensor's sequence on (a rank's slice of a tensor split across ranks).
std::vector<float> normal_init(uint64_t seed, uint32_t tensor, int64_t count, double stddev, int64_t first = 0);

// Adam's constants for optimizer steps t = first_t + 1 .. first_t + count (bias corrections in double).
std::vector<AdamStep> adam_schedule(int32_t optimizer, float lr, float weight_decay, float beta1, float beta2,
                                    float eps, int64_t first_t, int64_t count);

// Whether every one of count values is finite (the cheap check of parameters after an update).
bool all_finite(const float* values, int64_t count);

// The earliest of the instances' first non-finite steps (see ToyBackend::non_finite); the lowest instance on a tie.
ne_non_finite earliest_non_finite(const std::vector<ne_non_finite>& per_instance);

// Runs `steps` optimizer steps through train(first_step, adam) in chunks of at most 4096 (a CUDA backend takes a
// chunk in one launch; the chunk bounds the table of per-step constants), advancing steps_done (the data stream's
// index) and optimizer_steps (Adam's t). Checks the count against the stream's range first.
void train_in_chunks(int64_t steps, int64_t& steps_done, int64_t& optimizer_steps, int32_t optimizer, float lr,
                     float weight_decay, float beta1, float beta2, float eps,
                     const std::function<void(int64_t first_step, const std::vector<AdamStep>& adam)>& train);

}  // namespace ne
