// The object behind an ne_synth handle: a synthetic generator's ground truth (models/synth_truth.h), built once on
// the host from an ne_synth_config (or with a dictionary given back from a file), and its samples addressed by a
// 64-bit index in a stream. Validates, converts the ABI config, splits index ranges into the sampler's (step, sample)
// words, and delegates the drawing to its SynthBackend (the context's: CPU, or the CUDA twin on the device).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "models/synth_truth.h"
#include "nativeengine.h"

struct ne_context;

namespace ne {

// The spec an ABI config describes (field for field); throws invalid-argument naming the field unless usable.
SynthSpec synth_spec_of(const ne_synth_config& config);
ne_synth_config synth_config_of(const SynthSpec& spec);

// Samples 0 .. 2^62-1 of a stream: sample s is word (s mod 2^32) of step s / 2^32 (models/synth.h), so any range
// of indices is one or more contiguous runs of the sampler.
constexpr int64_t kSynthMaxSamples = int64_t{1} << 62;

class SynthModel {
public:
    // W [n][d] and b [d] (both or neither, counts n*d and d): the dictionary to use instead of building one.
    SynthModel(const ne_context& ctx, const ne_synth_config& config, const float* W, int64_t w_count, const float* b,
               int64_t b_count);

    const SynthTruth& truth() const { return *truth_; }
    const SynthBackend& backend() const { return *backend_; }
    int64_t d() const { return truth_->spec.d; }
    int64_t n() const { return truth_->spec.n; }

    // Samples first .. first+count-1 of `stream` (ne_synth_stream): x [count][d], dense codes [count][n] and sparse
    // codes, each optional (null). Throws naming the argument when the range is out of bounds.
    void sample(int32_t stream, int64_t first, int64_t count, float* x, float* codes, SynthSparseCodes* sparse) const;

    void get_truth(float* W, int64_t w_count, float* b, int64_t b_count, float* probability, int64_t probability_count,
                   float* fire_probability, int64_t fire_probability_count, int32_t* parent, int64_t parent_count,
                   int32_t* flags, int64_t flags_count, float* mean, int64_t mean_count, float* stddev,
                   int64_t stddev_count) const;

private:
    std::unique_ptr<SynthTruth> truth_;  // on the heap: the CPU backend refers to it, and the model moves
    std::unique_ptr<SynthBackend> backend_;
};

}  // namespace ne

struct ne_synth {
    ne::SynthModel model;
};
