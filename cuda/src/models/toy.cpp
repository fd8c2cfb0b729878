// Toy model orchestration, backend-neutral: validates the configuration, initialises parameters, computes the
// optimizer's per-step constants and hands whole runs of steps to the backend.
#include "models/toy.h"

#include <cmath>
#include <string>

#include "core/context.h"
#include "core/cuda_plugin.h"
#include "core/error.h"
#include "models/toy_model.h"

namespace ne {
namespace {

// Adapter from the ToyBackend interface to the CUDA plugin's C table.
class CudaToy final : public ToyBackend {
public:
    CudaToy(const ne_cuda_plugin* plugin, int32_t device, const ToyShape& s, const ToyData& data)
        : plugin_(plugin) {
        char err[1024] = "";
        check_plugin(plugin_->toy_create(device, s.model, s.n, s.m, s.instances, s.batch, s.seed, &toy_, err,
                                         sizeof err),
                     err);
        try {
            set_data(data);
        } catch (...) {
            plugin_->toy_destroy(toy_);
            throw;
        }
    }
    ~CudaToy() override { plugin_->toy_destroy(toy_); }

    void train(int64_t first_step, const std::vector<AdamStep>& adam) override {
        char err[1024] = "";
        check_plugin(plugin_->toy_train(toy_, first_step, adam.data(), static_cast<int64_t>(adam.size()), err,
                                        sizeof err),
                     err);
    }
    void evaluate(int64_t batches, float* loss, float* penalty) override {
        char err[1024] = "";
        check_plugin(plugin_->toy_evaluate(toy_, batches, loss, penalty, err, sizeof err), err);
    }
    void get_params(float* W, float* W_out, float* b) const override {
        char err[1024] = "";
        check_plugin(plugin_->toy_get_params(toy_, W, W_out, b, err, sizeof err), err);
    }
    void set_params(const float* W, const float* W_out, const float* b) override {
        char err[1024] = "";
        check_plugin(plugin_->toy_set_params(toy_, W, W_out, b, err, sizeof err), err);
    }
    void set_data(const ToyData& data) override {
        char err[1024] = "";
        check_plugin(plugin_->toy_set_data(toy_, data.importance.data(), data.probability.data(), data.l1.data(),
                                           data.rules.empty() ? nullptr : data.rules.data(), err, sizeof err),
                     err);
    }

private:
    const ne_cuda_plugin* plugin_;
    ne_cuda_toy* toy_ = nullptr;
};

void check_config(const ne_toy_config& c) {
    auto require = [](bool ok, const std::string& message) {
        if (!ok) invalid(message);
    };
    require(c.model >= NE_TOY_LINEAR && c.model <= NE_TOY_ABS_VALUE,
            "config.model is " + std::to_string(c.model) +
                "; valid: 0 (linear), 1 (relu_output), 2 (relu_hidden), 3 (abs_value)");
    require(c.optimizer == NE_OPTIMIZER_ADAMW || c.optimizer == NE_OPTIMIZER_ADAM,
            "config.optimizer is " + std::to_string(c.optimizer) + "; valid: 0 (adamw), 1 (adam)");
    require(c.n_features >= 1 && c.n_features <= (1 << 24),
            "config.n_features is " + std::to_string(c.n_features) + "; valid: 1..16777216");
    require(c.n_hidden >= 1 && c.n_hidden <= (1 << 24),
            "config.n_hidden is " + std::to_string(c.n_hidden) + "; valid: 1..16777216");
    require(c.n_instances >= 1 && c.n_instances <= (1 << 24),
            "config.n_instances is " + std::to_string(c.n_instances) + "; valid: 1..16777216");
    require(c.batch_size >= 1 && c.batch_size <= (1 << 24),
            "config.batch_size is " + std::to_string(c.batch_size) + "; valid: 1..16777216");
    require(std::isfinite(c.lr) && c.lr > 0, "config.lr is " + std::to_string(c.lr) + "; valid: > 0");
    require(std::isfinite(c.weight_decay) && c.weight_decay >= 0,
            "config.weight_decay is " + std::to_string(c.weight_decay) + "; valid: >= 0");
    require(c.beta1 >= 0 && c.beta1 < 1, "config.beta1 is " + std::to_string(c.beta1) + "; valid: [0, 1)");
    require(c.beta2 >= 0 && c.beta2 < 1, "config.beta2 is " + std::to_string(c.beta2) + "; valid: [0, 1)");
    require(std::isfinite(c.eps) && c.eps > 0, "config.eps is " + std::to_string(c.eps) + "; valid: > 0");
}

void check_per_feature(const char* name, const float* values, int64_t count, int64_t expected, bool probability) {
    if (values == nullptr) invalid(std::string(name) + " is null");
    if (count != expected)
        invalid(std::string(name) + " has " + std::to_string(count) + " values; expected n_instances * n_features = " +
                std::to_string(expected));
    for (int64_t k = 0; k < count; ++k) {
        const float v = values[k];
        const bool ok = probability ? (v >= 0.0f && v <= 1.0f) : (std::isfinite(v) && v >= 0.0f);
        if (!ok)
            invalid(std::string(name) + "[" + std::to_string(k) + "] is " + std::to_string(v) + "; valid: " +
                    (probability ? "[0, 1]" : "finite and >= 0"));
    }
}

}  // namespace

ToyModel::ToyModel(const ne_context& ctx, const ne_toy_config& config, const float* importance,
                   int64_t importance_count, const float* probability, int64_t probability_count)
    : config_(config) {
    check_config(config);
    shape_ = ToyShape{config.model, config.n_features, config.n_hidden, config.n_instances, config.batch_size,
                      config.seed};
    const int64_t per_feature = shape_.instances * shape_.n;
    check_per_feature("importance", importance, importance_count, per_feature, false);
    check_per_feature("feature_probability", probability, probability_count, per_feature, true);
    data_.importance.assign(importance, importance + per_feature);
    data_.probability.assign(probability, probability + per_feature);
    data_.l1.assign(shape_.instances, 0.0f);

    if (ctx.backend == NE_BACKEND_CUDA)
        backend_ = std::make_unique<CudaToy>(CudaPlugin::get(), ctx.device, shape_, data_);
    else
        backend_ = make_cpu_toy(shape_, data_);

    std::vector<float> W, W_out;
    initial_weights(0, W);
    if (toy_untied(shape_.model)) initial_weights(1, W_out);
    const std::vector<float> b(shape_.instances * shape_.n, 0.0f);
    backend_->set_params(W.data(), W_out.empty() ? nullptr : W_out.data(), b.data());
}

void ToyModel::initial_weights(uint32_t tensor, std::vector<float>& W) const {
    // xavier_normal_ over the (instances, n, m) tensor: fan_in = n*m, fan_out = instances*m. `tensor` keys a
    // disjoint part of the init stream, so W and W_out are independent.
    const double stddev = std::sqrt(2.0 / (static_cast<double>(shape_.m) * (shape_.n + shape_.instances)));
    const int64_t count = shape_.instances * shape_.n * shape_.m;
    W.resize(count);
    for (int64_t pair = 0; pair < (count + 1) / 2; ++pair) {
        const Philox4 r = philox4x32_10(static_cast<uint32_t>(pair), static_cast<uint32_t>(pair >> 32), tensor,
                                        stream_word(Stream::kInit, 0), static_cast<uint32_t>(shape_.seed),
                                        static_cast<uint32_t>(shape_.seed >> 32));
        // Box-Muller; u1 in (0, 1] keeps the log finite.
        const double u1 = (static_cast<double>(r.v[0] >> 8) + 1.0) / 16777216.0;
        const double u2 = static_cast<double>(r.v[1] >> 8) / 16777216.0;
        const double radius = std::sqrt(-2.0 * std::log(u1)), angle = 2.0 * M_PI * u2;
        W[2 * pair] = static_cast<float>(stddev * radius * std::cos(angle));
        if (2 * pair + 1 < count) W[2 * pair + 1] = static_cast<float>(stddev * radius * std::sin(angle));
    }
}

void ToyModel::set_l1(const float* l1, int64_t count) {
    check_count("l1", l1, count, shape_.instances);
    for (int64_t k = 0; k < count; ++k)
        if (!std::isfinite(l1[k]) || l1[k] < 0.0f)
            invalid("l1[" + std::to_string(k) + "] is " + std::to_string(l1[k]) + "; valid: finite and >= 0");
    data_.l1.assign(l1, l1 + count);
    backend_->set_data(data_);
}

void ToyModel::set_feature_sets(const int32_t* set_of_feature, int64_t feature_count, const int32_t* set_kind,
                                int64_t set_count) {
    if (set_of_feature == nullptr) invalid("set_of_feature is null");
    if (feature_count != shape_.n)
        invalid("set_of_feature has " + std::to_string(feature_count) + " entries; expected n_features = " +
                std::to_string(shape_.n));
    if (set_count < 0 || set_count > shape_.n / 2)
        invalid("set_count is " + std::to_string(set_count) + "; valid: 0.." + std::to_string(shape_.n / 2) +
                " (each set has at least 2 of the " + std::to_string(shape_.n) + " features)");
    if (set_count > 0 && set_kind == nullptr) invalid("set_kind is null");
    for (int64_t s = 0; s < set_count; ++s)
        if (set_kind[s] != NE_FEATURES_CORRELATED && set_kind[s] != NE_FEATURES_ANTICORRELATED)
            invalid("set_kind[" + std::to_string(s) + "] is " + std::to_string(set_kind[s]) +
                    "; valid: 1 (correlated), 2 (anticorrelated)");
    std::vector<FeatureRule> rules(shape_.n, FeatureRule{NE_FEATURES_INDEPENDENT, 0, 0, 1, 0});
    std::vector<std::vector<int32_t>> members(set_count);
    for (int64_t i = 0; i < shape_.n; ++i) {
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
            for (int64_t k = 0; k < shape_.instances; ++k) {
                const float* p = data_.probability.data() + k * shape_.n;
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
    data_.rules = std::move(rules);
    backend_->set_data(data_);
}

void ToyModel::train(int64_t steps) {
    if (steps < 0) invalid("steps is " + std::to_string(steps) + "; valid: >= 0");
    if (steps_done_ + steps > kMaxStreamIndex)
        invalid("steps_done + steps would reach " + std::to_string(steps_done_ + steps) + "; at most " +
                std::to_string(kMaxStreamIndex) + " steps per model");
    // The CUDA backend takes a whole run in one call; chunks bound the table of per-step constants.
    constexpr int64_t kChunk = 4096;
    while (steps > 0) {
        const int64_t count = std::min(steps, kChunk);
        std::vector<AdamStep> adam(count);
        for (int64_t k = 0; k < count; ++k) {
            const double t = static_cast<double>(optimizer_steps_ + k + 1);
            const double bc1 = 1.0 - std::pow(static_cast<double>(config_.beta1), t);
            const double bc2 = 1.0 - std::pow(static_cast<double>(config_.beta2), t);
            adam[k] = AdamStep{config_.lr,
                               config_.weight_decay,
                               config_.beta1,
                               config_.beta2,
                               config_.eps,
                               static_cast<float>(config_.lr / bc1),
                               static_cast<float>(std::sqrt(bc2)),
                               config_.optimizer == NE_OPTIMIZER_ADAMW ? 1 : 0};
        }
        backend_->train(steps_done_, adam);
        steps_done_ += count;
        optimizer_steps_ += count;
        steps -= count;
    }
}

void ToyModel::evaluate(int64_t batches, float* loss, int64_t loss_count, float* penalty, int64_t penalty_count) {
    if (batches < 1 || batches > kMaxStreamIndex) invalid("batches is " + std::to_string(batches) + "; valid: >= 1");
    check_count("loss", loss, loss_count, shape_.instances);
    std::vector<float> discarded;
    if (penalty_count == 0) {
        discarded.resize(shape_.instances);
        penalty = discarded.data();
        penalty_count = shape_.instances;
    }
    check_count("penalty", penalty, penalty_count, shape_.instances);
    backend_->evaluate(batches, loss, penalty);
}

void ToyModel::check_params(const void* W, int64_t w_count, const void* W_out, int64_t w_out_count, const void* b,
                            int64_t b_count) const {
    const int64_t nm = shape_.instances * shape_.n * shape_.m;
    check_count("W", W, w_count, nm);
    if (toy_untied(shape_.model)) {
        check_count("W_out", W_out, w_out_count, nm);
    } else if (w_out_count != 0) {
        invalid("W_out has room for " + std::to_string(w_out_count) +
                " floats but this model is tied (W_out exists for abs_value only): pass count 0");
    }
    check_count("b", b, b_count, shape_.instances * shape_.n);
}

void ToyModel::get_params(float* W, int64_t w_count, float* W_out, int64_t w_out_count, float* b,
                          int64_t b_count) const {
    check_params(W, w_count, W_out, w_out_count, b, b_count);
    backend_->get_params(W, W_out, b);
}

void ToyModel::set_params(const float* W, int64_t w_count, const float* W_out, int64_t w_out_count, const float* b,
                          int64_t b_count) {
    check_params(W, w_count, W_out, w_out_count, b, b_count);
    backend_->set_params(W, W_out, b);
    optimizer_steps_ = 0;
}

void ToyModel::sample_batch(int64_t step, int64_t instance, float* x, int64_t x_count) const {
    if (step < 0 || step > kMaxStreamIndex)
        invalid("step is " + std::to_string(step) + "; valid: 0.." + std::to_string(kMaxStreamIndex));
    if (instance < 0 || instance >= shape_.instances)
        invalid("instance is " + std::to_string(instance) + "; valid: 0.." + std::to_string(shape_.instances - 1));
    check_count("x", x, x_count, shape_.batch * shape_.n);
    toy_generate_batch(shape_, data_.probability.data() + instance * shape_.n,
                       data_.rules.empty() ? nullptr : data_.rules.data(), Stream::kTrain, step, instance, x);
}

void ToyModel::check_count(const char* name, const void* buffer, int64_t count, int64_t expected) {
    if (buffer == nullptr) invalid(std::string(name) + " is null");
    if (count != expected)
        invalid(std::string(name) + " has room for " + std::to_string(count) + " floats; expected " +
                std::to_string(expected));
}

}  // namespace ne
