// CUDA against CPU through the C ABI: the same config and seed, one step (gradient-level agreement) and a whole
// short run (several launches of many steps each), compared parameter by parameter, for every model kind, with
// the L1 penalty and with feature sets.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "check.h"
#include "nativeengine.h"

namespace {

// How long the multi-step comparisons run. NE_TEST_QUICK=1 (set by the emulated CUDA tier, cuda/tests/emu, which runs
// every kernel thread by thread on the CPU under sanitizers) shortens them: 30 steps in launches of 1, 7 and 22
// instead of 300 in 1, 57 and 242, MoE runs of 20 steps instead of 200, and the widest toy case at batch 200 instead
// of 1024 (still three full tiles and a partial one).
struct Lengths {
    int64_t steps = 300;
    std::vector<int64_t> launches{1, 57, 242};
    int64_t moe_steps = 200;
    int64_t wide_batch = 1024;
};

const Lengths& lengths() {
    static const Lengths chosen = [] {
        Lengths l;
        const char* quick = std::getenv("NE_TEST_QUICK");
        if (quick != nullptr && quick[0] == '1') l = Lengths{30, {1, 7, 22}, 20, 200};
        return l;
    }();
    return chosen;
}

struct Run {
    std::vector<float> W, W_out, b, loss, penalty;
};

// Optional data settings applied after creation: per-instance L1 and feature sets.
struct Extras {
    std::vector<float> l1;                 // [instances] or empty
    std::vector<int32_t> set_of_feature;   // [n] or empty
    std::vector<int32_t> set_kind;
};

Run train(ne_context* ctx, const ne_toy_config& config, const std::vector<float>& importance,
          const std::vector<float>& probability, const Extras& extras, const std::vector<int64_t>& chunks) {
    ne_toy* toy = nullptr;
    const int64_t per = config.n_instances * config.n_features;
    if (ne_toy_create(ctx, &config, importance.data(), per, probability.data(), per, &toy) != NE_OK) {
        std::printf("ne_toy_create: %s\n", ne_last_error());
        CHECK(false);
        return {};
    }
    if (!extras.l1.empty()) CHECK(ne_toy_set_l1(toy, extras.l1.data(), extras.l1.size()) == NE_OK);
    if (!extras.set_of_feature.empty())
        CHECK(ne_toy_set_feature_sets(toy, extras.set_of_feature.data(), extras.set_of_feature.size(),
                                      extras.set_kind.data(), extras.set_kind.size()) == NE_OK);
    for (int64_t steps : chunks) CHECK(ne_toy_train(toy, steps) == NE_OK);
    const bool untied = config.model == NE_TOY_ABS_VALUE;
    Run run{std::vector<float>(per * config.n_hidden), std::vector<float>(untied ? per * config.n_hidden : 0),
            std::vector<float>(per), std::vector<float>(config.n_instances), std::vector<float>(config.n_instances)};
    CHECK(ne_toy_get_params(toy, run.W.data(), run.W.size(), untied ? run.W_out.data() : nullptr, run.W_out.size(),
                            run.b.data(), run.b.size()) == NE_OK);
    CHECK(ne_toy_evaluate(toy, 4, run.loss.data(), run.loss.size(), run.penalty.data(), run.penalty.size()) == NE_OK);
    ne_toy_destroy(toy);
    return run;
}

double compare(const char* what, const std::vector<float>& cpu, const std::vector<float>& cuda, double tol,
               double rel) {
    double worst = 0.0;
    int bad = 0;
    for (size_t j = 0; j < cpu.size(); ++j) {
        const double error = std::fabs(static_cast<double>(cpu[j]) - cuda[j]);
        worst = std::max(worst, error);
        if (!ne_test::close(cuda[j], cpu[j], tol, rel) && bad++ < 5)
            std::printf("  %s[%zu]: cpu %.8g cuda %.8g\n", what, j, cpu[j], cuda[j]);
    }
    CHECK(bad == 0);
    return worst;
}

void parity(ne_context* cpu, ne_context* cuda, int32_t model, int64_t n, int64_t m, int64_t instances,
            int64_t batch, const Extras& extras = {}) {
    ne_toy_config config{};
    config.model = model;
    config.optimizer = NE_OPTIMIZER_ADAMW;
    config.n_features = n;
    config.n_hidden = m;
    config.n_instances = instances;
    config.batch_size = batch;
    config.lr = 1e-3f;
    config.weight_decay = 0.01f;
    config.beta1 = 0.9f;
    config.beta2 = 0.999f;
    // Adam's first steps move each weight by about lr * sign(gradient): with eps = 1e-8 a gradient that is zero
    // up to rounding could flip sign between backends and move a weight by 2 lr. eps = 1e-3 keeps the update a
    // smooth function of the gradient, so the comparison measures the kernels, not that discontinuity.
    config.eps = 1e-3f;
    config.seed = 20221;
    std::vector<float> importance(instances * n), probability(instances * n);
    for (int64_t k = 0; k < instances; ++k)
        for (int64_t i = 0; i < n; ++i) {
            importance[k * n + i] = std::pow(0.9f, static_cast<float>(i));
            probability[k * n + i] = std::pow(0.05f, static_cast<float>(k) / std::max<int64_t>(1, instances - 1));
        }
    const std::string label = "model " + std::to_string(model) + " n=" + std::to_string(n) + " m=" +
                              std::to_string(m) + (extras.l1.empty() ? "" : " l1") +
                              (extras.set_of_feature.empty() ? "" : " sets");
    // One step: both backends start from the same init and draw the same batch, so they differ only by
    // float summation order.
    {
        const Run a = train(cpu, config, importance, probability, extras, {1});
        const Run b = train(cuda, config, importance, probability, extras, {1});
        const double w = compare("W after 1 step", a.W, b.W, 1e-6, 1e-5);
        compare("W_out after 1 step", a.W_out, b.W_out, 1e-6, 1e-5);
        compare("b after 1 step", a.b, b.b, 1e-6, 1e-5);
        compare("evaluation loss", a.loss, b.loss, 1e-7, 1e-4);
        compare("evaluation penalty", a.penalty, b.penalty, 1e-7, 1e-4);
        std::printf("%s: 1 step, max |W_cpu - W_cuda| = %.2e\n", label.c_str(), w);
    }
    // A short run in uneven launches on CUDA against one call on CPU.
    const int64_t steps = lengths().steps;
    {
        const Run a = train(cpu, config, importance, probability, extras, {steps});
        const Run b = train(cuda, config, importance, probability, extras, lengths().launches);
        const double w = compare("W after the run", a.W, b.W, 2e-3, 1e-2);
        compare("W_out after the run", a.W_out, b.W_out, 2e-3, 1e-2);
        compare("b after the run", a.b, b.b, 2e-3, 1e-2);
        compare("evaluation loss after the run", a.loss, b.loss, 1e-5, 1e-2);
        compare("evaluation penalty after the run", a.penalty, b.penalty, 1e-5, 1e-2);
        std::printf("%s: %lld steps, max |W_cpu - W_cuda| = %.2e\n", label.c_str(), static_cast<long long>(steps), w);
    }
    // The notebook's optimizer settings (eps = 1e-8): trajectories may part by a few lr, so compare what they
    // reach, the evaluation loss per instance.
    {
        config.eps = 1e-8f;
        const Run a = train(cpu, config, importance, probability, extras, {steps});
        const Run b = train(cuda, config, importance, probability, extras, {steps});
        compare("evaluation loss after the run at eps 1e-8", a.loss, b.loss, 1e-5, 3e-2);
    }
}

// Mixture of experts: both backends from the same init and data, one step and a short run, every parameter
// and every evaluation field compared.
struct MoeRun {
    std::vector<float> W, b, gate, noise, bias, eval;
};

MoeRun train_moe(ne_context* ctx, const ne_moe_config& config, const std::vector<float>& importance,
                 const std::vector<float>& probability, int64_t steps) {
    ne_moe* moe = nullptr;
    const int64_t per = config.n_instances * config.n_features;
    if (ne_moe_create(ctx, &config, importance.data(), per, probability.data(), per, &moe) != NE_OK) {
        std::printf("ne_moe_create: %s\n", ne_last_error());
        CHECK(false);
        return {};
    }
    std::vector<float> l1(config.n_instances, 0.01f);
    CHECK(ne_moe_set_l1(moe, l1.data(), l1.size()) == NE_OK);
    CHECK(ne_moe_train(moe, steps) == NE_OK);
    const int64_t I = config.n_instances, E = config.n_experts, n = config.n_features, m = config.expert_hidden;
    MoeRun run{std::vector<float>(I * E * n * m), std::vector<float>(I * E * n), std::vector<float>(I * n * E),
               std::vector<float>(I * n * E), std::vector<float>(I * E), std::vector<float>(I * (NE_MOE_EVAL_FIELDS + E))};
    CHECK(ne_moe_get_params(moe, run.W.data(), run.W.size(), run.b.data(), run.b.size(), run.gate.data(),
                            run.gate.size(), run.noise.data(), run.noise.size(), run.bias.data(), run.bias.size()) == NE_OK);
    CHECK(ne_moe_evaluate(moe, 4, run.eval.data(), run.eval.size()) == NE_OK);
    ne_moe_destroy(moe);
    return run;
}

void moe_parity(ne_context* cpu, ne_context* cuda, int32_t expert_model, int64_t E, int64_t k, int32_t renormalize,
                int32_t noise, float capacity, float bias_update) {
    ne_moe_config config{};
    config.expert_model = expert_model;
    config.optimizer = NE_OPTIMIZER_ADAMW;
    config.n_features = 12;
    config.expert_hidden = 3;
    config.n_experts = E;
    config.top_k = k;
    config.n_instances = 3;
    config.batch_size = 256;
    config.lr = 1e-3f;
    config.weight_decay = 0.01f;
    config.beta1 = 0.9f;
    config.beta2 = 0.999f;
    config.eps = 1e-3f;  // smooth in the gradient, as for the toy parity
    config.renormalize = renormalize;
    config.noise = noise;
    config.load_balance = 0.01f;
    config.z_loss = 0.001f;
    config.bias_update = bias_update;
    config.capacity_factor = capacity;
    config.seed = 4242;
    std::vector<float> importance(3 * 12), probability(3 * 12);
    for (int64_t j = 0; j < 3 * 12; ++j) {
        importance[j] = std::pow(0.8f, static_cast<float>(j % 12));
        probability[j] = j < 12 ? 1.0f : (j < 24 ? 0.1f : 0.02f);
    }
    char label[128];
    std::snprintf(label, sizeof label, "moe model %d E=%lld k=%lld renorm %d noise %d capacity %.2f bias %.3f",
                  expert_model, static_cast<long long>(E), static_cast<long long>(k), renormalize, noise, capacity,
                  bias_update);
    for (int64_t steps : {int64_t(1), lengths().moe_steps}) {
        const MoeRun a = train_moe(cpu, config, importance, probability, steps);
        const MoeRun b = train_moe(cuda, config, importance, probability, steps);
        const double tol = steps == 1 ? 1e-6 : 2e-3, rel = steps == 1 ? 1e-5 : 1e-2;
        const double w = compare("moe W", a.W, b.W, tol, rel);
        compare("moe b", a.b, b.b, tol, rel);
        compare("moe W_gate", a.gate, b.gate, tol, rel);
        compare("moe W_noise", a.noise, b.noise, tol, rel);
        compare("moe route_bias", a.bias, b.bias, 1e-6, 0);
        compare("moe evaluation", a.eval, b.eval, 1e-5, 1e-2);
        std::printf("%s: %lld steps, max |W_cpu - W_cuda| = %.2e\n", label, static_cast<long long>(steps), w);
    }
}

}  // namespace

int main() {
    ne_context* cuda = nullptr;
    if (ne_context_create(NE_BACKEND_CUDA, 0, &cuda) != NE_OK) {
        std::printf("ignored: no CUDA device (%s)\n", ne_last_error());
        return ne_test::kSkipped;
    }
    ne_context* cpu = nullptr;
    CHECK(ne_context_create(NE_BACKEND_CPU, 0, &cpu) == NE_OK);
    parity(cpu, cuda, NE_TOY_RELU_OUTPUT, 5, 2, 10, 1024);
    parity(cpu, cuda, NE_TOY_LINEAR, 5, 2, 4, 256);
    parity(cpu, cuda, NE_TOY_RELU_OUTPUT, 100, 20, 20, lengths().wide_batch);
    parity(cpu, cuda, NE_TOY_RELU_OUTPUT, 7, 3, 3, 100);  // odd n, batch not a multiple of the tile
    parity(cpu, cuda, NE_TOY_RELU_HIDDEN, 10, 5, 6, 512);
    parity(cpu, cuda, NE_TOY_ABS_VALUE, 3, 6, 4, 300);
    parity(cpu, cuda, NE_TOY_ABS_VALUE, 20, 7, 3, 128);
    // L1 on every kind (linear and relu_output penalise |W^T x|, the others ReLU(W^T x)).
    for (int32_t model : {NE_TOY_LINEAR, NE_TOY_RELU_OUTPUT, NE_TOY_RELU_HIDDEN, NE_TOY_ABS_VALUE})
        parity(cpu, cuda, model, 8, 4, 3, 256, Extras{{0.0f, 0.01f, 0.1f}, {}, {}});
    // Feature sets: a correlated triple and an anticorrelated pair, on the two input kinds.
    const Extras sets{{}, {0, 0, 0, 1, 1, -1, -1, -1, -1}, {NE_FEATURES_CORRELATED, NE_FEATURES_ANTICORRELATED}};
    parity(cpu, cuda, NE_TOY_RELU_OUTPUT, 9, 3, 4, 256, sets);
    parity(cpu, cuda, NE_TOY_ABS_VALUE, 9, 3, 4, 256, sets);
    moe_parity(cpu, cuda, NE_TOY_RELU_OUTPUT, 4, 1, 0, NE_MOE_NOISE_NONE, 0.0f, 0.0f);
    moe_parity(cpu, cuda, NE_TOY_RELU_OUTPUT, 4, 2, 1, NE_MOE_NOISE_NONE, 0.6f, 0.0f);
    moe_parity(cpu, cuda, NE_TOY_RELU_HIDDEN, 3, 2, 0, NE_MOE_NOISE_NOISY_TOPK, 0.0f, 0.001f);
    moe_parity(cpu, cuda, NE_TOY_RELU_OUTPUT, 5, 1, 1, NE_MOE_NOISE_JITTER, 1.0f, 0.0f);
    ne_context_destroy(cpu);
    ne_context_destroy(cuda);
    return ne_test::finish("test_parity");
}
