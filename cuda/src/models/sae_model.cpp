// Sparse-autoencoder orchestration: validation, initialisation, one optimizer step (forward and backward,
// decoder-gradient projection, Adam, decoder renormalisation, firing history) and checkpoint state, on the CPU
// here or on the CUDA plugin through CudaSae.
#include "models/sae_model.h"

#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "core/context.h"
#include "core/cuda_plugin.h"
#include "core/error.h"
#include "core/nvtx.h"
#include "models/training.h"

namespace ne {
namespace {

void check_config(const ne_sae_config& c) {
    auto require = [](bool ok, const std::string& message) {
        if (!ok) invalid(message);
    };
    require(c.architecture >= NE_SAE_TOPK && c.architecture <= NE_SAE_JUMPRELU,
            "config.architecture is " + std::to_string(c.architecture) +
                "; valid: 0 (topk), 1 (batchtopk), 2 (relu), 3 (jumprelu)");
    require(c.d_in >= 1 && c.d_in <= (1 << 20), "config.d_in is " + std::to_string(c.d_in) + "; valid: 1..1048576");
    require(c.d_sae >= 1 && c.d_sae <= (int64_t{1} << 28),
            "config.d_sae is " + std::to_string(c.d_sae) + "; valid: 1..268435456");
    if (c.architecture == NE_SAE_TOPK || c.architecture == NE_SAE_BATCHTOPK)
        require(c.k >= 1 && c.k <= c.d_sae,
                "config.k is " + std::to_string(c.k) + "; valid: 1..d_sae (" + std::to_string(c.d_sae) + ")");
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

std::vector<std::vector<float>*> tensors_of(SaeTensors& t) {
    return {&t.W_enc, &t.b_enc, &t.W_dec, &t.b_dec, &t.log_threshold};
}

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

const char* precision_name(int32_t precision) {
    return precision == NE_SAE_TF32 ? "tf32" : precision == NE_SAE_BF16 ? "bf16" : "fp32";
}

}  // namespace

// Adapter from SaeModel to the CUDA plugin's SAE entries: the tensors live on the device.
class CudaSae {
public:
    CudaSae(const ne_cuda_plugin* plugin, int32_t device, const SaeSpec& spec, int32_t precision) : plugin_(plugin) {
        char err[1024] = "";
        check_plugin(plugin_->sae_create(device, &spec, precision, &sae_, err, sizeof err), err);
    }
    ~CudaSae() { plugin_->sae_destroy(sae_); }
    CudaSae(const CudaSae&) = delete;
    CudaSae& operator=(const CudaSae&) = delete;

    void set_params(const SaeParams<float>& params) {
        char err[1024] = "";
        check_plugin(plugin_->sae_set_params(sae_, &params, err, sizeof err), err);
    }
    void get_params(const SaeGrads<float>& params) const {
        char err[1024] = "";
        check_plugin(plugin_->sae_get_params(sae_, &params, err, sizeof err), err);
    }
    // Null arguments set zeros.
    void set_state(const SaeParams<float>* moment1, const SaeParams<float>* moment2, const int64_t* since_fired) {
        char err[1024] = "";
        check_plugin(plugin_->sae_set_state(sae_, moment1, moment2, since_fired, err, sizeof err), err);
    }
    void get_state(const SaeGrads<float>& moment1, const SaeGrads<float>& moment2, int64_t* since_fired) const {
        char err[1024] = "";
        check_plugin(plugin_->sae_get_state(sae_, &moment1, &moment2, since_fired, err, sizeof err), err);
    }
    SaeLoss train_step(const float* x, const AdamStep& step, int32_t sparse_updates) {
        char err[1024] = "";
        SaeLoss loss;
        check_plugin(plugin_->sae_train_step(sae_, x, &step, sparse_updates, &loss, err, sizeof err), err);
        return loss;
    }
    SaeLoss evaluate(const SaeSpec& spec, const float* x, float* x_hat, int64_t* fire_count) {
        char err[1024] = "";
        SaeLoss loss;
        check_plugin(plugin_->sae_evaluate(sae_, &spec, x, x_hat, fire_count, &loss, err, sizeof err), err);
        return loss;
    }

private:
    const ne_cuda_plugin* plugin_;
    ne_cuda_sae* sae_ = nullptr;
};

SaeModel::~SaeModel() = default;

SaeModel::SaeModel(const ne_context& ctx, const ne_sae_config& config) : config_(config) {
    check_config(config);
    if (ctx.backend != NE_BACKEND_CUDA && config.precision != NE_SAE_FP32)
        fail(NE_ERR_UNSUPPORTED, "config.precision is " + std::to_string(config.precision) + " (" +
                                     precision_name(config.precision) + "): " + precision_name(config.precision) +
                                     " needs the CUDA backend; the CPU backend trains in fp32 (0)");
    spec_.architecture = config.architecture;
    spec_.d = config.d_in;
    spec_.m = config.d_sae;
    spec_.batch = config.batch_size;
    spec_.k = config.k;
    spec_.l1_coefficient = config.l1_coefficient;
    spec_.l0_coefficient = config.l0_coefficient;
    spec_.jump_bandwidth = config.jump_bandwidth;
    spec_.auxk_alpha = config.auxk_alpha;
    spec_.k_aux = config.k_aux;
    spec_.dead_window = config.dead_window;
    if (ctx.backend == NE_BACKEND_CUDA) {
        SaeTensors init;
        sae_init(spec_, config.seed, init);
        cuda_ = std::make_unique<CudaSae>(CudaPlugin::get(), ctx.device, spec_, config.precision);
        cuda_->set_params(init.params());
        return;
    }
    sae_init(spec_, config.seed, params_);
    for (auto* t : {&grads_, &moment1_, &moment2_}) t->resize(spec_);
    since_fired_.assign(spec_.m, 0);
    fire_count_.assign(spec_.m, 0);
    touched_.assign(spec_.m, 0);
}

void SaeModel::init_decoder_bias(const float* x, int64_t x_count, int32_t method) {
    if (x == nullptr) invalid("x is null");
    if (x_count <= 0 || x_count % spec_.d != 0)
        invalid("x has " + std::to_string(x_count) + " floats; expected tokens * d_in (" + std::to_string(spec_.d) + ")");
    if (method != 0 && method != 1) invalid("method is " + std::to_string(method) + "; valid: 0 (mean), 1 (geometric median)");
    const int64_t tokens = x_count / spec_.d;
    std::vector<float> b_dec =
        method == 0 ? sae_data_mean(tokens, spec_.d, x) : sae_geometric_median(tokens, spec_.d, x);
    if (cuda_) cuda_->set_params({nullptr, nullptr, nullptr, b_dec.data(), nullptr});
    else params_.b_dec = std::move(b_dec);
}

AdamStep SaeModel::adam_step(float lr) const {
    const double t = static_cast<double>(steps_ + 1);
    return AdamStep{lr, 0.0f, config_.beta1, config_.beta2, config_.eps,
                    static_cast<float>(lr / (1.0 - std::pow(static_cast<double>(config_.beta1), t))),
                    static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(config_.beta2), t))), 1};
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
    NE_NVTX_RANGE("sae.step");
    check_count("x", x, x_count, spec_.batch * spec_.d);
    if (!std::isfinite(lr) || lr <= 0) invalid("lr is " + std::to_string(lr) + "; valid: > 0");
    if (cuda_) {
        const SaeLoss loss = cuda_->train_step(x, adam_step(lr), config_.sparse_updates);
        if (spec_.architecture == NE_SAE_BATCHTOPK) threshold_.update(loss.min_kept);
        ++steps_;
        return stats_of(loss);
    }
    std::fill(fire_count_.begin(), fire_count_.end(), 0);
    SaeGrads<float> grads = grads_.grads();
    SaeLoss loss;
    {
        NE_NVTX_RANGE("sae.forward_backward");
        loss = sae_loss_and_grad_fast(spec_, params_.params(), x, since_fired_.data(), &grads, workspace_,
                                      fire_count_.data());
    }
    NE_NVTX_RANGE("sae.optimizer");
    sae_update_since_fired(spec_.m, spec_.batch, fire_count_.data(), since_fired_.data());
    if (spec_.architecture == NE_SAE_BATCHTOPK) threshold_.update(loss.min_kept);
    sae_project_decoder_grad(spec_.m, spec_.d, params_.W_dec.data(), grads_.W_dec.data());
    const AdamStep step = adam_step(lr);
    if (config_.sparse_updates) {
        for (int64_t j = 0; j < spec_.m; ++j) touched_[j] = fire_count_[j] > 0 ? 1 : 0;
        sae_adam_update(spec_, params_, grads_, moment1_, moment2_, step, touched_.data());
    } else {
        sae_adam_update(spec_, params_, grads_, moment1_, moment2_, step);
    }
    sae_normalize_decoder(spec_.m, spec_.d, params_.W_dec.data());
    ++steps_;
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
    if (spec.architecture == NE_SAE_BATCHTOPK && threshold_.updates > 0) {
        spec.inference = 1;
        spec.threshold = static_cast<float>(threshold_.value);
    }
    std::vector<int64_t> fired(spec_.m, 0);
    const SaeLoss loss =
        cuda_ ? cuda_->evaluate(spec, x, x_hat, fired.data())
              : sae_loss_and_grad_fast(spec, params_.params(), x, nullptr, nullptr, workspace_, fired.data(), x_hat);
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
    const bool jump = spec_.architecture == NE_SAE_JUMPRELU;
    std::vector<float> log_threshold;  // CUDA: jumprelu's, downloaded
    if (cuda_) {
        if (jump && threshold_count != 0) log_threshold.resize(m);
        cuda_->get_params({W_enc, b_enc, W_dec, b_dec, log_threshold.empty() ? nullptr : log_threshold.data()});
    } else {
        std::copy(params_.W_enc.begin(), params_.W_enc.end(), W_enc);
        std::copy(params_.b_enc.begin(), params_.b_enc.end(), b_enc);
        std::copy(params_.W_dec.begin(), params_.W_dec.end(), W_dec);
        std::copy(params_.b_dec.begin(), params_.b_dec.end(), b_dec);
    }
    if (threshold_count == 0) return;
    check_count("threshold", threshold, threshold_count, m);
    const float* log_theta = cuda_ ? log_threshold.data() : params_.log_threshold.data();
    if (jump)
        for (int64_t j = 0; j < m; ++j) threshold[j] = std::exp(log_theta[j]);
    else
        std::fill(threshold, threshold + m, static_cast<float>(threshold_.value));
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
    if (cuda_) {
        std::vector<float> log_threshold(needs_threshold ? m : 0);
        for (int64_t j = 0; j < static_cast<int64_t>(log_threshold.size()); ++j) log_threshold[j] = std::log(threshold[j]);
        cuda_->set_params({W_enc, b_enc, W_dec, b_dec, needs_threshold ? log_threshold.data() : nullptr});
        cuda_->set_state(nullptr, nullptr, nullptr);
        threshold_ = SaeThreshold{};
        if (spec_.architecture == NE_SAE_BATCHTOPK && threshold_count != 0) threshold_.update(threshold[0]);
        steps_ = 0;
        return;
    }
    params_.W_enc.assign(W_enc, W_enc + d * m);
    params_.b_enc.assign(b_enc, b_enc + m);
    params_.W_dec.assign(W_dec, W_dec + m * d);
    params_.b_dec.assign(b_dec, b_dec + d);
    if (needs_threshold)
        for (int64_t j = 0; j < m; ++j) params_.log_threshold[j] = std::log(threshold[j]);
    threshold_ = SaeThreshold{};
    if (spec_.architecture == NE_SAE_BATCHTOPK && threshold_count != 0) threshold_.update(threshold[0]);
    for (auto* t : {&moment1_, &moment2_}) t->resize(spec_);
    std::fill(since_fired_.begin(), since_fired_.end(), 0);
    steps_ = 0;
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
    if (cuda_) {
        const std::vector<int64_t> sizes = tensor_sizes(spec_);
        char* moments = out + spec_.m * static_cast<int64_t>(sizeof(int64_t));
        cuda_->get_state(views_at<SaeGrads<float>>(moments, sizes),
                         views_at<SaeGrads<float>>(moments + bytes_of(sizes), sizes), reinterpret_cast<int64_t*>(out));
        return;
    }
    std::memcpy(out, since_fired_.data(), since_fired_.size() * sizeof(int64_t));
    out += since_fired_.size() * sizeof(int64_t);
    for (auto* moments : {&moment1_, &moment2_})
        for (auto* t : tensors_of(const_cast<SaeTensors&>(*moments))) {
            std::memcpy(out, t->data(), t->size() * sizeof(float));
            out += t->size() * sizeof(float);
        }
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
    threshold_.updates = header.threshold_updates;
    threshold_.value = header.threshold;
    const char* in = static_cast<const char*>(state) + sizeof header;
    if (cuda_) {
        const bool jump = spec_.architecture == NE_SAE_JUMPRELU;
        std::vector<float> log_threshold(jump ? m : 0);
        for (int64_t j = 0; j < static_cast<int64_t>(log_threshold.size()); ++j) log_threshold[j] = std::log(threshold[j]);
        cuda_->set_params({W_enc, b_enc, W_dec, b_dec, jump ? log_threshold.data() : nullptr});
        const std::vector<int64_t> sizes = tensor_sizes(spec_);
        const char* moments = in + m * static_cast<int64_t>(sizeof(int64_t));
        const auto moment1 = views_at<SaeParams<float>>(moments, sizes);
        const auto moment2 = views_at<SaeParams<float>>(moments + bytes_of(sizes), sizes);
        cuda_->set_state(&moment1, &moment2, reinterpret_cast<const int64_t*>(in));
        return;
    }
    params_.W_enc.assign(W_enc, W_enc + d * m);
    params_.b_enc.assign(b_enc, b_enc + m);
    params_.W_dec.assign(W_dec, W_dec + m * d);
    params_.b_dec.assign(b_dec, b_dec + d);
    if (spec_.architecture == NE_SAE_JUMPRELU)
        for (int64_t j = 0; j < m; ++j) params_.log_threshold[j] = std::log(threshold[j]);
    std::memcpy(since_fired_.data(), in, since_fired_.size() * sizeof(int64_t));
    in += since_fired_.size() * sizeof(int64_t);
    for (auto* moments : {&moment1_, &moment2_})
        for (auto* t : tensors_of(*moments)) {
            std::memcpy(t->data(), in, t->size() * sizeof(float));
            in += t->size() * sizeof(float);
        }
}

}  // namespace ne
