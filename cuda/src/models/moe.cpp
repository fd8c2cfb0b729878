// Mixture-of-experts orchestration, backend-neutral: validates the configuration, initialises parameters and
// hands whole runs of steps (with their optimizer constants) to the backend.
#include <cmath>
#include <string>

#include "core/context.h"
#include "core/error.h"
#include "models/backends.h"
#include "models/moe_model.h"
#include "models/training.h"

namespace ne {
namespace {

void check_config(const ne_moe_config& c) {
    auto require = [](bool ok, const std::string& message) {
        if (!ok) invalid(message);
    };
    require(c.expert_model == NE_TOY_RELU_OUTPUT || c.expert_model == NE_TOY_RELU_HIDDEN,
            "config.expert_model is " + std::to_string(c.expert_model) + "; valid: 1 (relu_output), 2 (relu_hidden)");
    require(c.n_features >= 1 && c.n_features <= (1 << 20),
            "config.n_features is " + std::to_string(c.n_features) + "; valid: 1..1048576");
    require(c.expert_hidden >= 1 && c.expert_hidden <= (1 << 20),
            "config.expert_hidden is " + std::to_string(c.expert_hidden) + "; valid: 1..1048576");
    require(c.n_experts >= 1 && c.n_experts <= 4096,
            "config.n_experts is " + std::to_string(c.n_experts) + "; valid: 1..4096");
    require(c.top_k >= 1 && c.top_k <= c.n_experts,
            "config.top_k is " + std::to_string(c.top_k) + "; valid: 1..n_experts (" + std::to_string(c.n_experts) + ")");
    require(c.n_instances >= 1 && c.n_instances <= (1 << 24),
            "config.n_instances is " + std::to_string(c.n_instances) + "; valid: 1..16777216");
    require(c.batch_size >= 1 && c.batch_size <= (1 << 24),
            "config.batch_size is " + std::to_string(c.batch_size) + "; valid: 1..16777216");
    check_optimizer_settings(c.optimizer, c.lr, c.weight_decay, c.beta1, c.beta2, c.eps);
    require(c.renormalize == 0 || c.renormalize == 1,
            "config.renormalize is " + std::to_string(c.renormalize) + "; valid: 0, 1");
    require(c.noise >= NE_MOE_NOISE_NONE && c.noise <= NE_MOE_NOISE_JITTER,
            "config.noise is " + std::to_string(c.noise) + "; valid: 0 (none), 1 (noisy_topk), 2 (jitter)");
    for (auto [name, value] : {std::pair<const char*, float>{"load_balance", c.load_balance}, {"z_loss", c.z_loss},
                               {"bias_update", c.bias_update}, {"capacity_factor", c.capacity_factor}})
        require(std::isfinite(value) && value >= 0,
                std::string("config.") + name + " is " + std::to_string(value) + "; valid: >= 0");
}

MoeSpec spec_of(const ne_moe_config& c) {
    return MoeSpec{c.expert_model, c.n_features, c.expert_hidden, c.n_experts, c.top_k, c.batch_size, c.renormalize,
                   c.noise, c.load_balance, c.z_loss, c.capacity_factor};
}

}  // namespace

void MoeModel::check(const ne_context& ctx, const ne_moe_config& config) {
    check_config(config);
    check_moe_supported(ctx, spec_of(config), config.n_instances);
}

MoeModel::MoeModel(const ne_context& ctx, const ne_moe_config& config, const float* importance,
                   int64_t importance_count, const float* probability, int64_t probability_count,
                   int64_t first_instance, int64_t total_instances)
    : config_(config) {
    check(ctx, config);
    spec_ = spec_of(config);
    shape_ = ToyShape{config.expert_model, config.n_features, config.expert_hidden, config.n_instances,
                      config.batch_size, config.seed, first_instance};
    const int64_t total = check_part(first_instance, total_instances, shape_.instances);
    const int64_t per_feature = shape_.instances * shape_.n;
    check_per_instance_values("importance", importance, importance_count, per_feature, false);
    check_per_instance_values("feature_probability", probability, probability_count, per_feature, true);
    data_.importance.assign(importance, importance + per_feature);
    data_.probability.assign(probability, probability + per_feature);
    data_.l1.assign(shape_.instances, 0.0f);

    backend_ = make_moe_backend(ctx, spec_, shape_, data_);

    // Each expert starts as a toy model of the same run would (xavier-normal over (instances, n, m)); the
    // router xavier-normal over (n, E); noise weights and routing biases at zero (Shazeer et al. 2017).
    const MoeSizes sizes(spec_);
    const int64_t I = shape_.instances;
    const double expert_std = std::sqrt(2.0 / (static_cast<double>(spec_.m) * (spec_.n + total)));
    const double gate_std = std::sqrt(2.0 / static_cast<double>(spec_.n + spec_.experts));
    const std::vector<float> W = normal_init(shape_.seed, 0, I * sizes.W, expert_std, first_instance * sizes.W);
    const std::vector<float> W_gate = normal_init(shape_.seed, 2, I * sizes.gate, gate_std, first_instance * sizes.gate);
    const std::vector<float> b(I * sizes.b, 0.0f), W_noise(I * sizes.gate, 0.0f), bias(I * sizes.bias, 0.0f);
    backend_->set_params(W.data(), b.data(), W_gate.data(), W_noise.data(), bias.data());
}

void MoeModel::set_l1(const float* l1, int64_t count) {
    check_per_instance_values("l1", l1, count, shape_.instances, false);
    data_.l1.assign(l1, l1 + count);
    backend_->set_data(data_);
}

void MoeModel::set_feature_sets(const int32_t* set_of_feature, int64_t feature_count, const int32_t* set_kind,
                                int64_t set_count) {
    data_.rules = feature_rules(shape_.n, shape_.instances, data_.probability, set_of_feature, feature_count, set_kind,
                                set_count);
    backend_->set_data(data_);
}

void MoeModel::train(int64_t steps) {
    train_in_chunks(steps, steps_done_, optimizer_steps_, config_.optimizer, config_.lr, config_.weight_decay,
                    config_.beta1, config_.beta2, config_.eps,
                    [&](int64_t first, const std::vector<AdamStep>& adam) { backend_->train(first, adam, config_.bias_update); });
}

void MoeModel::evaluate(int64_t batches, float* out, int64_t out_count) {
    if (batches < 1 || batches > kMaxStreamIndex) invalid("batches is " + std::to_string(batches) + "; valid: >= 1");
    check_count("out", out, out_count, shape_.instances * (NE_MOE_EVAL_FIELDS + spec_.experts));
    backend_->evaluate(batches, out);
}

ne_non_finite MoeModel::non_finite() const {
    std::vector<ne_non_finite> per_instance(shape_.instances);
    backend_->non_finite(per_instance.data());
    return earliest_non_finite(per_instance);
}

void MoeModel::check_params(const void* W, int64_t w_count, const void* b, int64_t b_count, const void* W_gate,
                            int64_t gate_count, const void* W_noise, int64_t noise_count, const void* route_bias,
                            int64_t bias_count) const {
    const MoeSizes sizes(spec_);
    const int64_t I = shape_.instances;
    check_count("W", W, w_count, I * sizes.W);
    check_count("b", b, b_count, I * sizes.b);
    check_count("W_gate", W_gate, gate_count, I * sizes.gate);
    check_count("W_noise", W_noise, noise_count, I * sizes.gate);
    check_count("route_bias", route_bias, bias_count, I * sizes.bias);
}

void MoeModel::get_params(float* W, int64_t w_count, float* b, int64_t b_count, float* W_gate, int64_t gate_count,
                          float* W_noise, int64_t noise_count, float* route_bias, int64_t bias_count) const {
    check_params(W, w_count, b, b_count, W_gate, gate_count, W_noise, noise_count, route_bias, bias_count);
    backend_->get_params(W, b, W_gate, W_noise, route_bias);
}

void MoeModel::set_params(const float* W, int64_t w_count, const float* b, int64_t b_count, const float* W_gate,
                          int64_t gate_count, const float* W_noise, int64_t noise_count, const float* route_bias,
                          int64_t bias_count) {
    check_params(W, w_count, b, b_count, W_gate, gate_count, W_noise, noise_count, route_bias, bias_count);
    backend_->set_params(W, b, W_gate, W_noise, route_bias);
    optimizer_steps_ = 0;
}

}  // namespace ne
