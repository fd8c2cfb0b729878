#include "models/synth_model.h"

#include <algorithm>
#include <string>

#include "core/error.h"
#include "models/backends.h"
#include "models/training.h"

namespace ne {

SynthSpec synth_spec_of(const ne_synth_config& c) {
    SynthSpec s;
    s.kind = c.kind;
    s.correlation_rank = c.correlation_rank;
    s.n = c.n_features;
    s.d = c.d;
    s.seed = c.seed;
    s.zipf_exponent = c.zipf_exponent;
    s.p_min = c.p_min;
    s.p_max = c.p_max;
    s.decay = c.decay;
    s.active_mean = c.active_mean;
    s.root_nodes = c.root_nodes;
    s.branching_min = c.branching_min;
    s.branching_max = c.branching_max;
    s.max_depth = c.max_depth;
    s.me_min_depth = c.me_min_depth;
    s.me_max_depth = c.me_max_depth;
    s.compensate = c.compensate;
    s.scale_children = c.scale_children;
    s.me_portion = c.me_portion;
    s.correlation_scale = c.correlation_scale;
    s.mean_start = c.mean_start;
    s.mean_end = c.mean_end;
    s.std_mean = c.std_mean;
    s.std_std = c.std_std;
    s.bias_norm = c.bias_norm;
    s.ortho_lr = c.ortho_lr;
    s.ortho_steps = c.ortho_steps;
    s.ortho_chunk = c.ortho_chunk;
    if (c.compensate != 0 && c.compensate != 1) invalid("compensate is " + std::to_string(c.compensate) + "; valid: 0, 1");
    if (c.scale_children != 0 && c.scale_children != 1)
        invalid("scale_children is " + std::to_string(c.scale_children) + "; valid: 0, 1");
    synth_check_spec(s);
    return s;
}

ne_synth_config synth_config_of(const SynthSpec& s) {
    ne_synth_config c{};
    c.kind = s.kind;
    c.correlation_rank = s.correlation_rank;
    c.n_features = s.n;
    c.d = s.d;
    c.seed = s.seed;
    c.zipf_exponent = s.zipf_exponent;
    c.p_min = s.p_min;
    c.p_max = s.p_max;
    c.decay = s.decay;
    c.active_mean = s.active_mean;
    c.root_nodes = s.root_nodes;
    c.branching_min = s.branching_min;
    c.branching_max = s.branching_max;
    c.max_depth = s.max_depth;
    c.me_min_depth = s.me_min_depth;
    c.me_max_depth = s.me_max_depth;
    c.compensate = s.compensate;
    c.scale_children = s.scale_children;
    c.me_portion = s.me_portion;
    c.correlation_scale = s.correlation_scale;
    c.mean_start = s.mean_start;
    c.mean_end = s.mean_end;
    c.std_mean = s.std_mean;
    c.std_std = s.std_std;
    c.bias_norm = s.bias_norm;
    c.ortho_lr = s.ortho_lr;
    c.ortho_steps = s.ortho_steps;
    c.ortho_chunk = s.ortho_chunk;
    return c;
}

SynthModel::SynthModel(const ne_context& ctx, const ne_synth_config& config, const float* W, int64_t w_count,
                       const float* b, int64_t b_count) {
    const SynthSpec spec = synth_spec_of(config);
    const bool given = w_count != 0 || b_count != 0;  // a pointer with count 0 is ignored
    if (given) {
        check_count("W", W, w_count, spec.n * spec.d);
        check_count("b", b, b_count, spec.d);
    }
    truth_ = std::make_unique<SynthTruth>(synth_build_codes(spec));
    if (given) {
        truth_->W.assign(W, W + w_count);
        truth_->b.assign(b, b + b_count);
    } else {
        synth_build_dictionary(*truth_);
    }
    backend_ = make_synth_backend(ctx, *truth_);
}

void SynthModel::sample(int32_t stream, int64_t first, int64_t count, float* x, float* codes,
                        SynthSparseCodes* sparse) const {
    if (stream != NE_SYNTH_STREAM_TRAIN && stream != NE_SYNTH_STREAM_EVALUATE)
        invalid("stream is " + std::to_string(stream) + "; valid: 0 (train), 1 (evaluate)");
    if (first < 0 || first >= kSynthMaxSamples)
        invalid("first_sample is " + std::to_string(first) + "; valid: 0 .. 2^62-1");
    if (count < 1 || count > kSynthMaxSamples - first)
        invalid("count is " + std::to_string(count) + "; valid: >= 1 with first_sample + count <= 2^62");
    const Stream which = stream == NE_SYNTH_STREAM_TRAIN ? Stream::kTrain : Stream::kEvaluate;
    const int64_t n = truth_->spec.n, d = truth_->spec.d;
    if (sparse != nullptr) {
        sparse->row_begin.assign(1, 0);
        sparse->index.clear();
        sparse->value.clear();
    }
    SynthSparseCodes run;
    for (int64_t done = 0; done < count;) {
        const int64_t at = first + done;
        const uint32_t step = static_cast<uint32_t>(at >> 32), sample = static_cast<uint32_t>(at);
        const int64_t length = std::min<int64_t>(count - done, (int64_t{1} << 32) - sample);
        backend_->sample(which, step, sample, length, x != nullptr ? x + done * d : nullptr,
                         codes != nullptr ? codes + done * n : nullptr, sparse != nullptr ? &run : nullptr);
        if (sparse != nullptr) {
            const int64_t offset = sparse->row_begin.back();
            for (int64_t t = 1; t <= length; ++t) sparse->row_begin.push_back(offset + run.row_begin[t]);
            sparse->index.insert(sparse->index.end(), run.index.begin(), run.index.end());
            sparse->value.insert(sparse->value.end(), run.value.begin(), run.value.end());
        }
        done += length;
    }
}

void SynthModel::get_truth(float* W, int64_t w_count, float* b, int64_t b_count, float* probability,
                           int64_t probability_count, float* fire_probability, int64_t fire_probability_count,
                           int32_t* parent, int64_t parent_count, int32_t* flags, int64_t flags_count, float* mean,
                           int64_t mean_count, float* stddev, int64_t stddev_count) const {
    const int64_t n = truth_->spec.n, d = truth_->spec.d;
    // An output with count 0 is skipped and its pointer ignored.
    if (w_count != 0) check_count("W", W, w_count, n * d);
    if (b_count != 0) check_count("b", b, b_count, d);
    if (probability_count != 0) check_count("probability", probability, probability_count, n);
    if (fire_probability_count != 0)
        check_count("fire_probability", fire_probability, fire_probability_count, n);
    if (parent_count != 0) check_count("parent", parent, parent_count, n);
    if (flags_count != 0) check_count("flags", flags, flags_count, n);
    if (mean_count != 0) check_count("mean", mean, mean_count, n);
    if (stddev_count != 0) check_count("stddev", stddev, stddev_count, n);
    if (w_count != 0) std::copy(truth_->W.begin(), truth_->W.end(), W);
    if (b_count != 0) std::copy(truth_->b.begin(), truth_->b.end(), b);
    if (probability_count != 0) std::copy(truth_->probability.begin(), truth_->probability.end(), probability);
    if (fire_probability_count != 0)
        std::copy(truth_->fire_probability.begin(), truth_->fire_probability.end(), fire_probability);
    if (parent_count != 0) std::copy(truth_->parent.begin(), truth_->parent.end(), parent);
    if (flags_count != 0)
        for (int64_t i = 0; i < n; ++i) flags[i] = truth_->flags[i];
    // Sharkey's magnitudes are U(0, 1]: mean 1/2, standard deviation 1/sqrt(12).
    const bool sharkey = truth_->spec.kind == kSynthSharkey;
    if (mean_count != 0) {
        if (sharkey) std::fill(mean, mean + n, 0.5f);
        else std::copy(truth_->mean.begin(), truth_->mean.end(), mean);
    }
    if (stddev_count != 0) {
        if (sharkey) std::fill(stddev, stddev + n, 0.28867513f);
        else std::copy(truth_->stddev.begin(), truth_->stddev.end(), stddev);
    }
}

}  // namespace ne
