// Toy model orchestration, backend-neutral: validates the configuration, initialises parameters, computes the
// optimizer's per-step constants and hands whole runs of steps to the backend.
#include "models/toy.h"

#include <cmath>
#include <string>

#include "core/context.h"
#include "core/error.h"
#include "models/backends.h"
#include "models/toy_model.h"
#include "models/training.h"

namespace ne {
namespace {

void check_config(const ne_toy_config& c) {
    auto require = [](bool ok, const std::string& message) {
        if (!ok) invalid(message);
    };
    require(c.model >= NE_TOY_LINEAR && c.model <= NE_TOY_ABS_VALUE,
            "config.model is " + std::to_string(c.model) +
                "; valid: 0 (linear), 1 (relu_output), 2 (relu_hidden), 3 (abs_value)");
    require(c.n_features >= 1 && c.n_features <= (1 << 24),
            "config.n_features is " + std::to_string(c.n_features) + "; valid: 1..16777216");
    require(c.n_hidden >= 1 && c.n_hidden <= (1 << 24),
            "config.n_hidden is " + std::to_string(c.n_hidden) + "; valid: 1..16777216");
    require(c.n_instances >= 1 && c.n_instances <= (1 << 24),
            "config.n_instances is " + std::to_string(c.n_instances) + "; valid: 1..16777216");
    require(c.batch_size >= 1 && c.batch_size <= (1 << 24),
            "config.batch_size is " + std::to_string(c.batch_size) + "; valid: 1..16777216");
    check_optimizer_settings(c.optimizer, c.lr, c.weight_decay, c.beta1, c.beta2, c.eps);
}

ToyShape shape_of(const ne_toy_config& c) {
    return ToyShape{c.model, c.n_features, c.n_hidden, c.n_instances, c.batch_size, c.seed};
}

}  // namespace

void ToyModel::check(const ne_context& ctx, const ne_toy_config& config) {
    check_config(config);
    check_toy_supported(ctx, shape_of(config));
}

ToyModel::ToyModel(const ne_context& ctx, const ne_toy_config& config, const float* importance,
                   int64_t importance_count, const float* probability, int64_t probability_count,
                   int64_t first_instance, int64_t total_instances)
    : config_(config) {
    check(ctx, config);
    shape_ = shape_of(config);
    const int64_t total = check_part(first_instance, total_instances, shape_.instances);
    shape_.first_instance = first_instance;
    const int64_t per_feature = shape_.instances * shape_.n;
    check_per_instance_values("importance", importance, importance_count, per_feature, false);
    check_per_instance_values("feature_probability", probability, probability_count, per_feature, true);
    data_.importance.assign(importance, importance + per_feature);
    data_.probability.assign(probability, probability + per_feature);
    data_.l1.assign(shape_.instances, 0.0f);

    backend_ = make_toy_backend(ctx, shape_, data_);

    // xavier_normal_ over the whole run's (instances, n, m) tensor: fan_in = n*m, fan_out = instances*m.
    const double stddev = std::sqrt(2.0 / (static_cast<double>(shape_.m) * (shape_.n + total)));
    const int64_t count = shape_.instances * shape_.n * shape_.m, first = first_instance * shape_.n * shape_.m;
    const std::vector<float> W = normal_init(shape_.seed, 0, count, stddev, first);
    const std::vector<float> W_out = toy_untied(shape_.model) ? normal_init(shape_.seed, 1, count, stddev, first)
                                                              : std::vector<float>{};
    const std::vector<float> b(shape_.instances * shape_.n, 0.0f);
    backend_->set_params(W.data(), W_out.empty() ? nullptr : W_out.data(), b.data());
}

void ToyModel::set_l1(const float* l1, int64_t count) {
    check_per_instance_values("l1", l1, count, shape_.instances, false);
    data_.l1.assign(l1, l1 + count);
    backend_->set_data(data_);
}

void ToyModel::set_feature_sets(const int32_t* set_of_feature, int64_t feature_count, const int32_t* set_kind,
                                int64_t set_count) {
    data_.rules = feature_rules(shape_.n, shape_.instances, data_.probability, set_of_feature, feature_count, set_kind,
                                set_count);
    backend_->set_data(data_);
}

void ToyModel::train(int64_t steps) {
    train_in_chunks(steps, steps_done_, optimizer_steps_, config_.optimizer, config_.lr, config_.weight_decay,
                    config_.beta1, config_.beta2, config_.eps,
                    [&](int64_t first, const std::vector<AdamStep>& adam) { backend_->train(first, adam); });
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

ne_non_finite ToyModel::non_finite() const {
    std::vector<ne_non_finite> per_instance(shape_.instances);
    backend_->non_finite(per_instance.data());
    return earliest_non_finite(per_instance);
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

}  // namespace ne
