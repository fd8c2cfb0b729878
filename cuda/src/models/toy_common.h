// Definitions every toy-model backend shares, written once for CPU and CUDA: what tells the model kinds apart, and
// the data stream (the optimizer is in models/optimizer.h). A CUDA kernel and the CPU loop call the same functions,
// which is what makes a CPU run and a CUDA run of one config comparable step by step.
#pragma once
#include <stdint.h>

#include "core/hostdevice.h"
#include "core/philox.h"
#include "nativeengine.h"

namespace ne {

// What distinguishes the four model kinds, asked in one place.
NE_HD bool toy_untied(int32_t model) { return model == NE_TOY_ABS_VALUE; }  // W_out separate from W
NE_HD bool toy_hidden_relu(int32_t model) { return model == NE_TOY_RELU_HIDDEN || model == NE_TOY_ABS_VALUE; }
NE_HD bool toy_output_relu(int32_t model) { return model != NE_TOY_LINEAR; }
NE_HD bool toy_signed_inputs(int32_t model) { return model == NE_TOY_ABS_VALUE; }  // x ~ U[-1,1), target |x|

// A feature value from its 24-bit uniform: U[0,1), or U[-1,1) for signed inputs (2u - 1 is exact in float).
NE_HD float toy_value(float u, bool signed_inputs) { return signed_inputs ? 2.0f * u - 1.0f : u; }

// The four uniforms of features 2*pair and 2*pair+1 of one sample: presence draws in v[0], v[2], values in
// v[1], v[3].
NE_HD Philox4 toy_pair_bits(uint64_t seed, Stream stream, uint32_t step, uint32_t instance, uint32_t sample,
                            uint32_t pair) {
    return philox4x32_10(pair, sample, instance, stream_word(stream, step), static_cast<uint32_t>(seed),
                         static_cast<uint32_t>(seed >> 32));
}

// Features 2*pair and 2*pair+1 of one sample, drawn independently: a value with probability p, else 0.
NE_HD void toy_feature_pair(uint64_t seed, Stream stream, uint32_t step, uint32_t instance, uint32_t sample,
                            uint32_t pair, float p0, float p1, bool signed_inputs, float& x0, float& x1) {
    const Philox4 r = toy_pair_bits(seed, stream, step, instance, sample, pair);
    // value * (present ? 1 : 0): exact, and branch-free so host loops vectorise.
    x0 = toy_value(uniform01(r.v[1]), signed_inputs) * static_cast<float>(uniform01(r.v[0]) < p0);
    x1 = toy_value(uniform01(r.v[3]), signed_inputs) * static_cast<float>(uniform01(r.v[2]) < p1);
}

// How a feature of a feature set decides whether it fires, precomputed per feature on the host. A set uses
// its first member's presence draw (and probability) for "the set is on"; an anticorrelated set uses its
// second member's presence draw to choose the one member that fires, so no extra random numbers are needed.
struct FeatureRule {
    int32_t kind;     // ne_feature_set_kind; NE_FEATURES_INDEPENDENT for a feature in no set
    int32_t leader;   // first member of the set
    int32_t chooser;  // second member of the set
    int32_t size;     // members in the set (>= 2)
    int32_t rank;     // this feature's position in the set
};

// Uniform presence draw (v = 0) or value draw (v = 1) of one feature of one sample.
NE_HD float toy_feature_uniform(uint64_t seed, Stream stream, uint32_t step, uint32_t instance, uint32_t sample,
                                int32_t feature, int v) {
    const Philox4 r = toy_pair_bits(seed, stream, step, instance, sample, static_cast<uint32_t>(feature / 2));
    return uniform01(r.v[2 * (feature % 2) + v]);
}

// Value of a feature that belongs to a set (rule.kind != independent); probability: [n] of the instance.
NE_HD float toy_set_feature(uint64_t seed, Stream stream, uint32_t step, uint32_t instance, uint32_t sample,
                            int32_t feature, const FeatureRule& rule, const float* probability, bool signed_inputs) {
    const bool set_on =
        toy_feature_uniform(seed, stream, step, instance, sample, rule.leader, 0) < probability[rule.leader];
    bool fires = set_on;
    if (rule.kind == NE_FEATURES_ANTICORRELATED) {
        const float u = toy_feature_uniform(seed, stream, step, instance, sample, rule.chooser, 0);
        const int32_t scaled = static_cast<int32_t>(u * static_cast<float>(rule.size));
        const int32_t chosen = scaled < rule.size ? scaled : rule.size - 1;
        fires = set_on && chosen == rule.rank;
    }
    const float value = toy_value(toy_feature_uniform(seed, stream, step, instance, sample, feature, 1), signed_inputs);
    return fires ? value : 0.0f;
}

}  // namespace ne
