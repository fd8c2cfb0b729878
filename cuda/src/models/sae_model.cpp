// Sparse-autoencoder orchestration, backend-neutral: validation, initialisation, Adam's constants, the step count,
// batchtopk's inference threshold and the checkpoint state's layout; the step itself runs on the SaeBackend.
#include "models/sae_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>

#include "core/context.h"
#include "core/error.h"
#include "core/nvtx.h"
#include "models/backends.h"
#include "models/synth_model.h"
#include "models/training.h"

namespace ne {
namespace {

void check_config(const ne_sae_config& c) {
    auto require = [](bool ok, const std::string& message) {
        if (!ok) invalid(message);
    };
    require(c.architecture >= NE_SAE_TOPK && c.architecture <= NE_SAE_MATCHING_PURSUIT,
            "config.architecture is " + std::to_string(c.architecture) +
                "; valid: 0 (topk), 1 (batchtopk), 2 (relu), 3 (jumprelu), 4 (matryoshka_batchtopk), "
                "5 (matching_pursuit)");
    if (c.architecture == NE_SAE_MATCHING_PURSUIT) {
        require(std::isfinite(c.residual_threshold), "config.residual_threshold is " +
                                                         std::to_string(c.residual_threshold) +
                                                         "; valid: finite (<= 0: no residual stop)");
        require(c.max_iterations >= 0, "config.max_iterations is " + std::to_string(c.max_iterations) +
                                           "; valid: >= 0 (0: d_in)");
        require(c.stop_on_duplicate_support == 0 || c.stop_on_duplicate_support == 1,
                "config.stop_on_duplicate_support is " + std::to_string(c.stop_on_duplicate_support) + "; valid: 0, 1");
    }
    require(c.d_in >= 1 && c.d_in <= (1 << 20), "config.d_in is " + std::to_string(c.d_in) + "; valid: 1..1048576");
    require(c.d_sae >= 1 && c.d_sae <= (int64_t{1} << 28),
            "config.d_sae is " + std::to_string(c.d_sae) + "; valid: 1..268435456");
    if (c.architecture == NE_SAE_TOPK || sae_batch_selects(c.architecture))
        require(c.k >= 1 && c.k <= c.d_sae,
                "config.k is " + std::to_string(c.k) + "; valid: 1..d_sae (" + std::to_string(c.d_sae) + ")");
    if (c.architecture == NE_SAE_MATRYOSHKA_BATCHTOPK) {
        const int levels = c.matryoshka_levels;
        require(levels >= 1 && levels <= NE_SAE_MAX_MATRYOSHKA_LEVELS,
                "config.matryoshka_levels is " + std::to_string(levels) + "; valid: 1.." +
                    std::to_string(NE_SAE_MAX_MATRYOSHKA_LEVELS));
        for (int l = 0; l < levels; ++l) {
            const int64_t w = c.matryoshka_widths[l], previous = l > 0 ? c.matryoshka_widths[l - 1] : 0;
            require(w > previous && w <= c.d_sae,
                    "config.matryoshka_widths[" + std::to_string(l) + "] is " + std::to_string(w) +
                        "; valid: strictly increasing widths in " + std::to_string(previous + 1) + "..d_sae (" +
                        std::to_string(c.d_sae) + ")");
        }
        require(c.matryoshka_widths[levels - 1] == c.d_sae,
                "config.matryoshka_widths[" + std::to_string(levels - 1) + "] (the last) is " +
                    std::to_string(c.matryoshka_widths[levels - 1]) + "; valid: d_sae (" + std::to_string(c.d_sae) +
                    ")");
        require(c.matryoshka_aux_loss == 0 || c.matryoshka_aux_loss == 1,
                "config.matryoshka_aux_loss is " + std::to_string(c.matryoshka_aux_loss) + "; valid: 0, 1");
    } else {
        require(c.matryoshka_levels == 0, "config.matryoshka_levels is " + std::to_string(c.matryoshka_levels) +
                                              "; valid: 0 unless the architecture is matryoshka_batchtopk");
        require(c.matryoshka_aux_loss == 0, "config.matryoshka_aux_loss is " + std::to_string(c.matryoshka_aux_loss) +
                                                "; valid: 0 unless the architecture is matryoshka_batchtopk");
    }
    require(c.k_aux >= 0 && c.k_aux <= c.d_sae, "config.k_aux is " + std::to_string(c.k_aux) + "; valid: 0..d_sae");
    require(c.batch_size >= 1 && c.batch_size <= (1 << 24),
            "config.batch_size is " + std::to_string(c.batch_size) + "; valid: 1..16777216");
    require(c.dead_window >= 1, "config.dead_window is " + std::to_string(c.dead_window) + "; valid: >= 1");
    require(c.sparse_updates == 0 || c.sparse_updates == 1,
            "config.sparse_updates is " + std::to_string(c.sparse_updates) + "; valid: 0, 1");
    require(c.precision >= NE_SAE_FP32 && c.precision <= NE_SAE_BF16,
            "config.precision is " + std::to_string(c.precision) + "; valid: 0 (fp32), 1 (tf32), 2 (bf16)");
    for (auto [name, value] : {std::pair<const char*, float>{"l1_coefficient", c.l1_coefficient},
                               {"l0_coefficient", c.l0_coefficient}, {"auxk_alpha", c.auxk_alpha}})
        require(std::isfinite(value) && value >= 0,
                std::string("config.") + name + " is " + std::to_string(value) + "; valid: >= 0");
    require(std::isfinite(c.jump_bandwidth) && c.jump_bandwidth > 0,
            "config.jump_bandwidth is " + std::to_string(c.jump_bandwidth) + "; valid: > 0");
    check_optimizer_settings(NE_OPTIMIZER_ADAM, 1.0f, 0.0f, c.beta1, c.beta2, c.eps);
}

// The bytes of the training state: a header that pins the shape, then counters, history and Adam moments.
struct StateHeader {
    char magic[8];
    int64_t d, m;
    int32_t architecture, reserved;
    int64_t steps, threshold_updates;
    double threshold;
};
constexpr char kStateMagic[8] = {'N', 'E', 'S', 'A', 'E', 'S', 'T', '1'};

// Floats of each tensor in SaeTensors order (log_threshold only for jumprelu): the state's moment layout.
std::vector<int64_t> tensor_sizes(const SaeSpec& s) {
    return {s.d * s.m, s.m, s.m * s.d, s.d, s.architecture == kSaeJumpRelu ? s.m : 0};
}

// Views of five consecutive tensors of `sizes` starting at bytes (a state buffer's moment section).
template <typename View, typename Byte>
View views_at(Byte* bytes, const std::vector<int64_t>& sizes) {
    using Float = std::conditional_t<std::is_const_v<Byte>, const float, float>;
    Float* p[5];
    for (int which = 0; which < 5; ++which) {
        p[which] = sizes[which] > 0 ? reinterpret_cast<Float*>(bytes) : nullptr;
        bytes += sizes[which] * static_cast<int64_t>(sizeof(float));
    }
    return View{p[0], p[1], p[2], p[3], p[4]};
}

int64_t bytes_of(const std::vector<int64_t>& sizes) {
    int64_t floats = 0;
    for (int64_t n : sizes) floats += n;
    return floats * static_cast<int64_t>(sizeof(float));
}


SaeSpec spec_of(const ne_sae_config& c) {
    SaeSpec spec;
    spec.architecture = c.architecture;
    spec.d = c.d_in;
    spec.m = c.d_sae;
    spec.batch = c.batch_size;
    spec.k = c.k;
    spec.l1_coefficient = c.l1_coefficient;
    spec.l0_coefficient = c.l0_coefficient;
    spec.jump_bandwidth = c.jump_bandwidth;
    spec.auxk_alpha = c.auxk_alpha;
    spec.k_aux = c.k_aux;
    spec.dead_window = c.dead_window;
    if (c.architecture == NE_SAE_MATCHING_PURSUIT) {
        spec.residual_threshold = c.residual_threshold;
        spec.max_iterations = c.max_iterations;
        spec.stop_on_duplicate_support = c.stop_on_duplicate_support;
    }
    if (c.architecture == NE_SAE_MATRYOSHKA_BATCHTOPK) {
        spec.levels = c.matryoshka_levels;
        for (int l = 0; l < spec.levels; ++l) spec.widths[l] = c.matryoshka_widths[l];
        spec.level_auxk = c.matryoshka_aux_loss;
    }
    return spec;
}

}  // namespace

void SaeModel::check(const ne_context& ctx, const ne_sae_config& config) {
    check_config(config);
    check_sae_supported(ctx, spec_of(config), config.precision);
}

SaeModel::SaeModel(const ne_context& ctx, const ne_sae_config& config, Communicator* latents, Communicator* data)
    : config_(config), spec_(spec_of(config)) {
    check_config(config);
    const int64_t shards = latents != nullptr ? latents->size() : 1;
    const int64_t replicas = data != nullptr ? data->size() : 1;
    if ((shards > 1 || replicas > 1) && config.architecture == NE_SAE_MATCHING_PURSUIT)
        invalid("config.architecture is matching_pursuit, which runs in one process (this SAE is split over " +
                std::to_string(shards) + " latent and " + std::to_string(replicas) + " data ranks)");
    if (shards > 1 && config.architecture == NE_SAE_MATRYOSHKA_BATCHTOPK)
        invalid("config.architecture is matryoshka_batchtopk, which cannot be split across latent shards (" +
                std::to_string(shards) + "); split it across data ranks only");
    if (config.d_sae % shards != 0)
        invalid("config.d_sae is " + std::to_string(config.d_sae) + "; split over " + std::to_string(shards) +
                " latent shards it must be divisible by " + std::to_string(shards));
    spec_.m = config.d_sae / shards;
    shard_.latents = latents;
    shard_.data = data;
    shard_.total_latents = config.d_sae;
    shard_.first_latent = (latents != nullptr ? latents->rank() : 0) * spec_.m;
    backend_ = make_sae_backend(ctx, spec_, config.precision, shard_);
    SaeTensors init;
    sae_init(spec_, config.seed, init, 1e-3f, shard_.first_latent);
    backend_->set_params(init.params());
}

void SaeModel::init_decoder_bias(const float* x, int64_t x_count, int32_t method) {
    if (x == nullptr) invalid("x is null");
    if (x_count <= 0 || x_count % spec_.d != 0)
        invalid("x has " + std::to_string(x_count) + " floats; expected tokens * d_in (" + std::to_string(spec_.d) + ")");
    if (method != 0 && method != 1) invalid("method is " + std::to_string(method) + "; valid: 0 (mean), 1 (geometric median)");
    const int64_t tokens = x_count / spec_.d;
    const std::vector<float> b_dec =
        method == 0 ? sae_data_mean(tokens, spec_.d, x) : sae_geometric_median(tokens, spec_.d, x);
    backend_->set_params({nullptr, nullptr, nullptr, b_dec.data(), nullptr});
}

ne_sae_stats SaeModel::stats_of(const SaeLoss& loss) const {
    ne_sae_stats s{};
    s.mse = loss.mse;
    s.sparsity = loss.sparsity;
    s.auxk = loss.auxk;
    s.fvu = loss.fvu;
    s.l0 = loss.l0;
    s.dead = loss.dead;
    s.steps = steps_;
    return s;
}

ne_sae_stats SaeModel::train_step(const float* x, int64_t x_count, float lr) {
    check_count("x", x, x_count, spec_.batch * spec_.d);
    return step_with(lr, [&](const AdamStep& step) { return backend_->train_step(x, step, config_.sparse_updates != 0); });
}

ne_sae_stats SaeModel::train_step_synth(const SynthModel& synth, int64_t first_sample, float scale, float lr) {
    if (synth.d() != spec_.d)
        invalid("the synth's d is " + std::to_string(synth.d()) + "; the SAE's d_in is " + std::to_string(spec_.d));
    if (!(scale > 0) || !std::isfinite(scale)) invalid("scale is " + std::to_string(scale) + "; valid: finite, > 0");
    if (first_sample < 0 || first_sample > kSynthMaxSamples - spec_.batch)
        invalid("first_sample is " + std::to_string(first_sample) + "; valid: 0 .. 2^62 - batch_size");
    // Drawn where the SAE trains when its backend takes the synth's batches there (the CUDA twin into the CUDA SAE)
    // and the batch lies in one sampler step; else drawn on the host and passed in: the same bits either way.
    const uint32_t step = static_cast<uint32_t>(first_sample >> 32), first = static_cast<uint32_t>(first_sample);
    if (static_cast<int64_t>(first) + spec_.batch <= (int64_t{1} << 32)) {
        bool drawn = false;
        const ne_sae_stats stats = step_with(lr, [&](const AdamStep& adam) {
            SaeLoss loss;
            drawn = backend_->train_step_synth(synth.backend(), Stream::kTrain, step, first, scale, adam,
                                               config_.sparse_updates != 0, loss);
            return loss;
        }, &drawn);
        if (drawn) return stats;
    }
    synth_batch_.resize(spec_.batch * spec_.d);
    {
        NE_NVTX_RANGE("sae.synth_batch");
        synth.sample(NE_SYNTH_STREAM_TRAIN, first_sample, spec_.batch, synth_batch_.data(), nullptr, nullptr);
    }
    if (scale != 1.0f)
        for (float& v : synth_batch_) v *= scale;
    return train_step(synth_batch_.data(), static_cast<int64_t>(synth_batch_.size()), lr);
}

ne_sae_stats SaeModel::step_with(float lr, const std::function<SaeLoss(const AdamStep&)>& run, const bool* ran) {
    NE_NVTX_RANGE("sae.step");
    if (!std::isfinite(lr) || lr <= 0) invalid("lr is " + std::to_string(lr) + "; valid: > 0");
    // AdamW without decay: the decoder's unit rows need none, and the encoder follows SAELens.
    const AdamStep step = adam_step(NE_OPTIMIZER_ADAMW, lr, 0.0f, config_.beta1, config_.beta2, config_.eps, steps_ + 1);
    if (!std::isfinite(step.step_size))
        invalid("lr is " + std::to_string(lr) + "; valid: > 0 with lr / (1 - beta1^t) finite in float32");
    const SaeLoss loss = run(step);
    if (ran != nullptr && !*ran) return ne_sae_stats{};  // nothing happened: the caller takes another way
    auto record = [&](int64_t at, int32_t quantity) {
        if (non_finite_.step == 0) non_finite_ = ne_non_finite{at, 0, quantity, 0};
    };
    if (!loss.applied) {
        record(steps_ + 1, NE_NON_FINITE_LOSS);  // the step was not applied: nothing counts it
        return stats_of(loss);
    }
    if (sae_batch_selects(spec_.architecture)) threshold_.update(loss.min_kept);
    ++steps_;
    if (!loss.parameters_finite) record(steps_, NE_NON_FINITE_PARAMETERS);
    return stats_of(loss);
}

ne_sae_stats SaeModel::evaluate(const float* x, int64_t x_count, float* x_hat, int64_t x_hat_count,
                                int64_t* fire_count, int64_t fire_count_count) {
    NE_NVTX_RANGE("sae.evaluate");
    if (x == nullptr) invalid("x is null");
    if (x_count <= 0 || x_count % spec_.d != 0)
        invalid("x has " + std::to_string(x_count) + " floats; expected tokens * d_in (" + std::to_string(spec_.d) + ")");
    if (x_hat != nullptr || x_hat_count != 0) check_count("x_hat", x_hat, x_hat_count, x_count);
    if (fire_count != nullptr || fire_count_count != 0) check_count("fire_count", fire_count, fire_count_count, spec_.m);
    SaeSpec spec = spec_;
    spec.batch = x_count / spec_.d;
    spec.auxk_alpha = 0;  // evaluation measures the reconstruction; AuxK is a training device
    if (sae_batch_selects(spec.architecture) && threshold_.updates > 0) {
        spec.inference = 1;
        spec.threshold = static_cast<float>(threshold_.value);
    }
    std::vector<int64_t> fired(spec_.m, 0);
    const SaeLoss loss = backend_->evaluate(spec, x, x_hat, fired.data());
    if (fire_count != nullptr)
        for (int64_t j = 0; j < spec_.m; ++j) fire_count[j] += fired[j];
    return stats_of(loss);
}

void SaeModel::get_params(float* W_enc, int64_t enc_count, float* b_enc, int64_t b_enc_count, float* W_dec,
                          int64_t dec_count, float* b_dec, int64_t b_dec_count, float* threshold,
                          int64_t threshold_count) const {
    const int64_t d = spec_.d, m = spec_.m;
    check_count("W_enc", W_enc, enc_count, d * m);
    check_count("b_enc", b_enc, b_enc_count, m);
    check_count("W_dec", W_dec, dec_count, m * d);
    check_count("b_dec", b_dec, b_dec_count, d);
    if (threshold_count != 0) check_count("threshold", threshold, threshold_count, m);
    const bool jump = spec_.architecture == NE_SAE_JUMPRELU;
    std::vector<float> log_threshold(jump && threshold_count != 0 ? m : 0);
    backend_->get_params({W_enc, b_enc, W_dec, b_dec, log_threshold.empty() ? nullptr : log_threshold.data()});
    if (threshold_count == 0) return;
    if (jump)
        for (int64_t j = 0; j < m; ++j) threshold[j] = std::exp(log_threshold[j]);
    else
        std::fill(threshold, threshold + m, static_cast<float>(threshold_.value));
}

void SaeModel::send_params(const float* W_enc, const float* b_enc, const float* W_dec, const float* b_dec,
                           const float* threshold) {
    const bool jump = spec_.architecture == NE_SAE_JUMPRELU;
    std::vector<float> log_threshold(jump ? spec_.m : 0);
    for (int64_t j = 0; j < static_cast<int64_t>(log_threshold.size()); ++j) log_threshold[j] = std::log(threshold[j]);
    backend_->set_params({W_enc, b_enc, W_dec, b_dec, jump ? log_threshold.data() : nullptr});
}

void SaeModel::set_sparsity_coefficient(float coefficient) {
    const bool relu = spec_.architecture == kSaeRelu, jump = spec_.architecture == kSaeJumpRelu;
    if (!relu && !jump)
        invalid("the sparsity coefficient belongs to relu (l1_coefficient) and jumprelu (l0_coefficient); this SAE's "
                "architecture is " + std::to_string(spec_.architecture));
    if (!std::isfinite(coefficient) || coefficient < 0)
        invalid(std::string(relu ? "l1_coefficient" : "l0_coefficient") + " is " + std::to_string(coefficient) +
                "; valid: >= 0");
    (relu ? config_.l1_coefficient : config_.l0_coefficient) = coefficient;
    (relu ? spec_.l1_coefficient : spec_.l0_coefficient) = coefficient;
    backend_->set_sparsity_coefficients(spec_.l1_coefficient, spec_.l0_coefficient);
}

void SaeModel::set_params(const float* W_enc, int64_t enc_count, const float* b_enc, int64_t b_enc_count,
                          const float* W_dec, int64_t dec_count, const float* b_dec, int64_t b_dec_count,
                          const float* threshold, int64_t threshold_count) {
    const int64_t d = spec_.d, m = spec_.m;
    check_count("W_enc", W_enc, enc_count, d * m);
    check_count("b_enc", b_enc, b_enc_count, m);
    check_count("W_dec", W_dec, dec_count, m * d);
    check_count("b_dec", b_dec, b_dec_count, d);
    const bool needs_threshold = spec_.architecture == NE_SAE_JUMPRELU;
    if (needs_threshold || threshold_count != 0) check_count("threshold", threshold, threshold_count, m);
    if (needs_threshold)
        for (int64_t j = 0; j < m; ++j)
            if (!(threshold[j] > 0.0f))
                invalid("threshold[" + std::to_string(j) + "] is " + std::to_string(threshold[j]) + "; valid: > 0");
    send_params(W_enc, b_enc, W_dec, b_dec, threshold);
    backend_->set_state(nullptr, nullptr, nullptr);
    threshold_ = SaeThreshold{};
    if (sae_batch_selects(spec_.architecture) && threshold_count != 0) threshold_.update(threshold[0]);
    steps_ = 0;
    non_finite_ = ne_non_finite{};
}

int64_t SaeModel::state_size() const {
    return static_cast<int64_t>(sizeof(StateHeader)) + spec_.m * static_cast<int64_t>(sizeof(int64_t)) +
           2 * bytes_of(tensor_sizes(spec_));
}

void SaeModel::get_state(void* state, int64_t bytes) const {
    if (state == nullptr) invalid("state is null");
    if (bytes != state_size())
        invalid("state has room for " + std::to_string(bytes) + " bytes; ne_sae_state_size says " +
                std::to_string(state_size()));
    auto* out = static_cast<char*>(state);
    StateHeader header{};
    std::memcpy(header.magic, kStateMagic, sizeof kStateMagic);
    header.d = spec_.d;
    header.m = spec_.m;
    header.architecture = spec_.architecture;
    header.steps = steps_;
    header.threshold_updates = threshold_.updates;
    header.threshold = threshold_.value;
    std::memcpy(out, &header, sizeof header);
    out += sizeof header;
    // Then tokens_since_fired [m] and the two moments, each tensor after tensor.
    const std::vector<int64_t> sizes = tensor_sizes(spec_);
    char* moments = out + spec_.m * static_cast<int64_t>(sizeof(int64_t));
    backend_->get_state(views_at<SaeGrads<float>>(moments, sizes),
                        views_at<SaeGrads<float>>(moments + bytes_of(sizes), sizes), reinterpret_cast<int64_t*>(out));
}

void SaeModel::restore(const float* W_enc, int64_t enc_count, const float* b_enc, int64_t b_enc_count,
                       const float* W_dec, int64_t dec_count, const float* b_dec, int64_t b_dec_count,
                       const float* threshold, int64_t threshold_count, const void* state, int64_t bytes) {
    const int64_t d = spec_.d, m = spec_.m;
    check_count("W_enc", W_enc, enc_count, d * m);
    check_count("b_enc", b_enc, b_enc_count, m);
    check_count("W_dec", W_dec, dec_count, m * d);
    check_count("b_dec", b_dec, b_dec_count, d);
    if (spec_.architecture == NE_SAE_JUMPRELU) check_count("threshold", threshold, threshold_count, m);
    if (state == nullptr) invalid("state is null");
    if (bytes != state_size())
        invalid("state has " + std::to_string(bytes) + " bytes; this model's state has " + std::to_string(state_size()));
    StateHeader header{};
    std::memcpy(&header, state, sizeof header);
    if (std::memcmp(header.magic, kStateMagic, sizeof kStateMagic) != 0)
        invalid("state does not start with the SAE state marker: not written by ne_sae_get_state");
    if (header.d != d || header.m != m || header.architecture != spec_.architecture)
        invalid("state is of an SAE with d_in " + std::to_string(header.d) + ", d_sae " + std::to_string(header.m) +
                ", architecture " + std::to_string(header.architecture) + "; this one has " + std::to_string(d) + ", " +
                std::to_string(m) + ", " + std::to_string(spec_.architecture));
    steps_ = header.steps;
    non_finite_ = ne_non_finite{};
    threshold_.updates = header.threshold_updates;
    threshold_.value = header.threshold;
    const char* in = static_cast<const char*>(state) + sizeof header;
    send_params(W_enc, b_enc, W_dec, b_dec, threshold);
    const std::vector<int64_t> sizes = tensor_sizes(spec_);
    const char* moments = in + m * static_cast<int64_t>(sizeof(int64_t));
    const auto moment1 = views_at<SaeParams<float>>(moments, sizes);
    const auto moment2 = views_at<SaeParams<float>>(moments + bytes_of(sizes), sizes);
    backend_->set_state(&moment1, &moment2, reinterpret_cast<const int64_t*>(in));
}

}  // namespace ne
