// CUDA against CPU through the C ABI: the same config and seed, one step (gradient-level agreement) and a whole
// short run (several launches of many steps each), compared parameter by parameter, for every model kind, with
// the L1 penalty and with feature sets; batches and shapes that leave partial tiles in the kernels (toy tiles of 64
// samples or fewer when shared memory runs short, MoE token tiles of 32, thread strides of 256); MoE tokens whose
// router choice is a near-tie excluded explicitly (moe_routing.h) and the router's decisions compared token by
// token; and the same CUDA run twice, bit for bit (under another thread schedule on the emulated device).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "moe_routing.h"
#include "nativeengine.h"

namespace {

// How long the multi-step comparisons run. NE_TEST_QUICK=1 (set by the emulated CUDA tier, cuda/tests/emu, which runs
// every kernel thread by thread on the CPU under sanitizers) shortens them: 30 steps in launches of 1, 7 and 22
// instead of 300 in 1, 57 and 242, MoE runs of 20 steps instead of 200, the widest toy case at batch 200 instead
// of 1024 (still three full tiles and a partial one), and the router's decisions on 64 instances instead of 256.
struct Lengths {
    int64_t steps = 300;
    std::vector<int64_t> launches{1, 57, 242};
    int64_t moe_steps = 200;
    int64_t wide_batch = 1024;
    int64_t router_instances = 256;
};

const Lengths& lengths() {
    static const Lengths chosen = [] {
        Lengths l;
        const char* quick = std::getenv("NE_TEST_QUICK");
        if (quick != nullptr && quick[0] == '1') l = Lengths{30, {1, 7, 22}, 20, 200, 64};
        return l;
    }();
    return chosen;
}

// A second run of the same training, to compare with the first bit for bit. On the emulated device it runs under
// another thread schedule (NE_EMU_SCHEDULE, read at every launch), so the comparison also shows the kernels do not
// depend on the order their threads run in; a GPU runs it as it comes.
class SecondRun {
public:
    explicit SecondRun(bool emulated) : emulated_(emulated) {
        if (!emulated_) return;
        const char* current = std::getenv("NE_EMU_SCHEDULE");
        had_ = current != nullptr;
        if (had_) saved_ = current;
        setenv("NE_EMU_SCHEDULE", had_ && saved_ == "reverse" ? "forward" : "reverse", 1);
    }
    ~SecondRun() {
        if (!emulated_) return;
        if (had_) setenv("NE_EMU_SCHEDULE", saved_.c_str(), 1);
        else unsetenv("NE_EMU_SCHEDULE");
    }
    SecondRun(const SecondRun&) = delete;
    SecondRun& operator=(const SecondRun&) = delete;

private:
    bool emulated_, had_ = false;
    std::string saved_;
};

// Whether two arrays hold the same bits; prints the first difference.
template <typename T>
bool identical(const char* what, const std::vector<T>& a, const std::vector<T>& b) {
    if (a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0)) return true;
    for (size_t j = 0; j < std::min(a.size(), b.size()); ++j)
        if (std::memcmp(&a[j], &b[j], sizeof(T)) != 0) {
            std::printf("  %s[%zu]: first run %.9g, second run %.9g\n", what, j, static_cast<double>(a[j]),
                        static_cast<double>(b[j]));
            break;
        }
    if (a.size() != b.size()) std::printf("  %s: %zu values, then %zu\n", what, a.size(), b.size());
    return false;
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
    CHECK(cpu.size() == cuda.size());
    for (size_t j = 0; j < std::min(cpu.size(), cuda.size()); ++j) {
        const double error = std::fabs(static_cast<double>(cpu[j]) - cuda[j]);
        worst = std::max(worst, error);
        if (!ne_test::close(cuda[j], cpu[j], tol, rel) && bad++ < 5)
            std::printf("  %s[%zu]: cpu %.8g cuda %.8g\n", what, j, cpu[j], cuda[j]);
    }
    CHECK(bad == 0);
    return worst;
}

struct ToyProblem {
    ne_toy_config config;
    std::vector<float> importance, probability;
};

ToyProblem toy_problem(int32_t model, int64_t n, int64_t m, int64_t instances, int64_t batch) {
    ToyProblem p{};
    ne_toy_config& config = p.config;
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
    p.importance.resize(instances * n);
    p.probability.resize(instances * n);
    for (int64_t k = 0; k < instances; ++k)
        for (int64_t i = 0; i < n; ++i) {
            p.importance[k * n + i] = std::pow(0.9f, static_cast<float>(i));
            p.probability[k * n + i] = std::pow(0.05f, static_cast<float>(k) / std::max<int64_t>(1, instances - 1));
        }
    return p;
}

void parity(ne_context* cpu, ne_context* cuda, int32_t model, int64_t n, int64_t m, int64_t instances,
            int64_t batch, const Extras& extras = {}) {
    ToyProblem p = toy_problem(model, n, m, instances, batch);
    ne_toy_config& config = p.config;
    const std::string label = "model " + std::to_string(model) + " n=" + std::to_string(n) + " m=" +
                              std::to_string(m) + " B=" + std::to_string(batch) + (extras.l1.empty() ? "" : " l1") +
                              (extras.set_of_feature.empty() ? "" : " sets");
    // One step: both backends start from the same init and draw the same batch, so they differ only by
    // float summation order.
    {
        const Run a = train(cpu, config, p.importance, p.probability, extras, {1});
        const Run b = train(cuda, config, p.importance, p.probability, extras, {1});
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
        const Run a = train(cpu, config, p.importance, p.probability, extras, {steps});
        const Run b = train(cuda, config, p.importance, p.probability, extras, lengths().launches);
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
        const Run a = train(cpu, config, p.importance, p.probability, extras, {steps});
        const Run b = train(cuda, config, p.importance, p.probability, extras, {steps});
        compare("evaluation loss after the run at eps 1e-8", a.loss, b.loss, 1e-5, 3e-2);
    }
}

// The same CUDA toy run (uneven launches) twice: parameters and evaluation identical to the bit.
void toy_twice(ne_context* cuda, bool emulated, int32_t model, int64_t n, int64_t m, int64_t instances, int64_t batch,
               const Extras& extras = {}) {
    const ToyProblem p = toy_problem(model, n, m, instances, batch);
    const Run a = train(cuda, p.config, p.importance, p.probability, extras, lengths().launches);
    Run b;
    {
        const SecondRun second(emulated);
        b = train(cuda, p.config, p.importance, p.probability, extras, lengths().launches);
    }
    bool same = identical("W", a.W, b.W) & identical("W_out", a.W_out, b.W_out) & identical("b", a.b, b.b);
    same = identical("evaluation loss", a.loss, b.loss) & identical("evaluation penalty", a.penalty, b.penalty) & same;
    CHECK(same);
    std::printf("model %d n=%lld m=%lld B=%lld%s: the same %lld-step CUDA run twice%s: %s\n", model,
                static_cast<long long>(n), static_cast<long long>(m), static_cast<long long>(batch),
                extras.l1.empty() ? "" : " l1+sets", static_cast<long long>(lengths().steps),
                emulated ? " (second under another schedule)" : "", same ? "identical" : "DIFFERENT");
}

// ---- mixture of experts ----------------------------------------------------------------------------------------

struct MoeCase {
    int32_t expert_model;
    int64_t E, k;
    int32_t renormalize, noise;
    float capacity, bias_update;
    int64_t n = 12, m = 3, batch = 256;
};

struct MoeProblem {
    ne_moe_config config;
    std::vector<float> importance, probability;  // [instances][n]
};

// Three instances: every feature always present, at 0.1, and at 0.02 (mostly empty tokens).
MoeProblem moe_problem(const MoeCase& mc) {
    MoeProblem p{};
    ne_moe_config& config = p.config;
    config.expert_model = mc.expert_model;
    config.optimizer = NE_OPTIMIZER_ADAMW;
    config.n_features = mc.n;
    config.expert_hidden = mc.m;
    config.n_experts = mc.E;
    config.top_k = mc.k;
    config.n_instances = 3;
    config.batch_size = mc.batch;
    config.lr = 1e-3f;
    config.weight_decay = 0.01f;
    config.beta1 = 0.9f;
    config.beta2 = 0.999f;
    config.eps = 1e-3f;  // smooth in the gradient, as for the toy parity
    config.renormalize = mc.renormalize;
    config.noise = mc.noise;
    config.load_balance = 0.01f;
    config.z_loss = 0.001f;
    config.bias_update = mc.bias_update;
    config.capacity_factor = mc.capacity;
    config.seed = 4242;
    const int64_t n = mc.n;
    p.importance.resize(3 * n);
    p.probability.resize(3 * n);
    for (int64_t j = 0; j < 3 * n; ++j) {
        p.importance[j] = std::pow(0.8f, static_cast<float>(j % n));
        p.probability[j] = j < n ? 1.0f : (j < 2 * n ? 0.1f : 0.02f);
    }
    return p;
}

ne_moe* make_moe(ne_context* ctx, const MoeProblem& p, float l1) {
    ne_moe* moe = nullptr;
    if (ne_moe_create(ctx, &p.config, p.importance.data(), p.importance.size(), p.probability.data(),
                      p.probability.size(), &moe) != NE_OK) {
        std::printf("ne_moe_create: %s\n", ne_last_error());
        CHECK(false);
        return nullptr;
    }
    std::vector<float> l1s(p.config.n_instances, l1);
    CHECK(ne_moe_set_l1(moe, l1s.data(), l1s.size()) == NE_OK);
    return moe;
}

std::vector<float> moe_evaluation(ne_moe* moe, const ne_moe_config& c) {
    std::vector<float> eval(c.n_instances * (NE_MOE_EVAL_FIELDS + c.n_experts));
    CHECK(ne_moe_evaluate(moe, 4, eval.data(), eval.size()) == NE_OK);
    return eval;
}

// The values of the instances `keep` marks, from an array of `per` values per instance.
std::vector<float> instances_of(const std::vector<float>& values, const std::vector<char>& keep) {
    const size_t per = values.size() / keep.size();
    std::vector<float> kept;
    for (size_t k = 0; k < keep.size(); ++k)
        if (keep[k]) kept.insert(kept.end(), values.begin() + k * per, values.begin() + (k + 1) * per);
    return kept;
}

// Near-tied tokens met so far (moe_routing.h), and the instances they exclude.
struct TieCount {
    int64_t tokens = 0, tied = 0;
    void add(const moe_routing::BatchTies& ties, std::vector<char>& keep) {
        tokens += ties.tokens;
        tied += ties.tied;
        for (size_t k = 0; k < keep.size(); ++k)
            if (ties.per_instance[k] > 0) keep[k] = 0;
    }
};

// Both models' parameters and evaluation, over the instances still compared (train_keep): the evaluation's own
// batches are checked for near-ties under the parameters they are evaluated with.
double compare_moe(const std::string& label, ne_moe* cpu, ne_moe* cuda, const MoeProblem& p,
                   const std::vector<char>& train_keep, TieCount& evaluation_ties, double tol, double rel) {
    const moe_routing::Params a = moe_routing::read_params(cpu, p.config), b = moe_routing::read_params(cuda, p.config);
    std::vector<char> keep = train_keep;
    for (int64_t batch = 0; batch < 4; ++batch)
        evaluation_ties.add(moe_routing::find_ties(p.config, p.probability, ne::Stream::kEvaluate, batch, false, a, b),
                            keep);
    const auto only = [&](const std::vector<float>& v) { return instances_of(v, train_keep); };
    const double w = compare((label + " W").c_str(), only(a.W), only(b.W), tol, rel);
    compare((label + " b").c_str(), only(a.b), only(b.b), tol, rel);
    compare((label + " W_gate").c_str(), only(a.gate), only(b.gate), tol, rel);
    compare((label + " W_noise").c_str(), only(a.noise), only(b.noise), tol, rel);
    compare((label + " route_bias").c_str(), only(a.bias), only(b.bias), 1e-6, 0);
    compare((label + " evaluation").c_str(), instances_of(moe_evaluation(cpu, p.config), keep),
            instances_of(moe_evaluation(cuda, p.config), keep), 1e-5, 1e-2);
    return w;
}

// Mixture of experts: both backends from the same init and data, step by step, every parameter and evaluation field
// compared after one step and after the run, over the instances whose tokens never met a near-tie; then the same
// CUDA run again in one launch, which must give the same bits as the step-by-step one.
void moe_parity(ne_context* cpu_ctx, ne_context* cuda_ctx, bool emulated, const MoeCase& mc) {
    const MoeProblem p = moe_problem(mc);
    const ne_moe_config& c = p.config;
    char label[160];
    std::snprintf(label, sizeof label, "moe model %d n=%lld m=%lld B=%lld E=%lld k=%lld renorm %d noise %d capacity %.2f bias %.3f",
                  c.expert_model, static_cast<long long>(c.n_features), static_cast<long long>(c.expert_hidden),
                  static_cast<long long>(c.batch_size), static_cast<long long>(c.n_experts),
                  static_cast<long long>(c.top_k), c.renormalize, c.noise, c.capacity_factor, c.bias_update);
    ne_moe* cpu = make_moe(cpu_ctx, p, 0.01f);
    ne_moe* cuda = make_moe(cuda_ctx, p, 0.01f);
    if (cpu == nullptr || cuda == nullptr) {
        ne_moe_destroy(cpu);
        ne_moe_destroy(cuda);
        return;
    }
    const int64_t steps = lengths().moe_steps;
    std::vector<char> keep(c.n_instances, 1);
    TieCount training, evaluation;
    double w1 = 0, w = 0;
    for (int64_t step = 0; step < steps; ++step) {
        training.add(moe_routing::find_ties(c, p.probability, ne::Stream::kTrain, step, true,
                                            moe_routing::read_params(cpu, c), moe_routing::read_params(cuda, c)),
                     keep);
        CHECK(ne_moe_train(cpu, 1) == NE_OK);
        if (ne_moe_train(cuda, 1) != NE_OK) {
            std::printf("ne_moe_train (cuda): %s\n", ne_last_error());
            CHECK(false);
            break;
        }
        if (step == 0) w1 = compare_moe("moe after 1 step", cpu, cuda, p, keep, evaluation, 1e-6, 1e-5);
    }
    w = compare_moe("moe after the run", cpu, cuda, p, keep, evaluation, 2e-3, 1e-2);
    const int64_t compared = std::count(keep.begin(), keep.end(), 1);
    std::printf("%s: max |W_cpu - W_cuda| = %.2e after 1 step, %.2e after %lld; near-tied tokens excluded: %lld of "
                "%lld trained, %lld of %lld evaluated; instances compared: %lld of %lld\n",
                label, w1, w, static_cast<long long>(steps), static_cast<long long>(training.tied),
                static_cast<long long>(training.tokens), static_cast<long long>(evaluation.tied),
                static_cast<long long>(evaluation.tokens), static_cast<long long>(compared),
                static_cast<long long>(c.n_instances));
    // Near-ties are rare (a few in a million tokens): many would mean the bound is too wide to mean anything.
    CHECK(training.tied * 500 <= training.tokens);
    CHECK(evaluation.tied * 500 <= evaluation.tokens);
    CHECK(compared > 0);

    // The same CUDA training again, in one launch: bit for bit the step-by-step run.
    ne_moe* again = nullptr;
    moe_routing::Params b;
    std::vector<float> again_evaluation;
    {
        const SecondRun second(emulated);
        again = make_moe(cuda_ctx, p, 0.01f);
        if (again != nullptr) {
            CHECK(ne_moe_train(again, steps) == NE_OK);
            b = moe_routing::read_params(again, c);
            again_evaluation = moe_evaluation(again, c);
        }
    }
    if (again != nullptr) {
        const moe_routing::Params a = moe_routing::read_params(cuda, c);
        bool same = identical("moe W", a.W, b.W) & identical("moe b", a.b, b.b) & identical("moe W_gate", a.gate, b.gate);
        same = identical("moe W_noise", a.noise, b.noise) & identical("moe route_bias", a.bias, b.bias) & same;
        same = identical("moe evaluation", moe_evaluation(cuda, c), again_evaluation) & same;
        CHECK(same);
        std::printf("%s: the same CUDA run in one launch%s: %s\n", label,
                    emulated ? " (under another schedule)" : "", same ? "identical" : "DIFFERENT");
    }
    ne_moe_destroy(again);
    ne_moe_destroy(cpu);
    ne_moe_destroy(cuda);
}

// The router's decisions token by token. With one token per instance and bias_update > 0, the route bias of a
// chosen expert goes down and every other one goes up after each step (load 1 or 0 against a mean of k / E), so
// the bias read back after every step says which experts each backend chose for each token. Every token that is
// not near-tied must go where the host's exact choice under that backend's parameters says, on both backends; the
// near-tied ones are counted and must be rare, and instances that met one are left out of the final comparison.
void moe_router_decisions(ne_context* cpu_ctx, ne_context* cuda_ctx, int64_t E, int64_t k, int32_t noise) {
    MoeProblem p{};
    ne_moe_config& c = p.config;
    c.expert_model = NE_TOY_RELU_OUTPUT;
    c.optimizer = NE_OPTIMIZER_ADAMW;
    c.n_features = 12;
    c.expert_hidden = 3;
    c.n_experts = E;
    c.top_k = k;
    c.n_instances = lengths().router_instances;
    c.batch_size = 1;
    c.lr = 1e-2f;  // a router that moves between steps
    c.weight_decay = 0.0f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-3f;
    c.renormalize = 1;
    c.noise = noise;
    c.load_balance = 0.01f;
    c.z_loss = 0.001f;
    c.bias_update = 1e-3f;
    c.seed = 515;
    p.importance.assign(c.n_instances * c.n_features, 1.0f);
    p.probability.assign(c.n_instances * c.n_features, 0.3f);
    ne_moe* cpu = make_moe(cpu_ctx, p, 0.0f);
    ne_moe* cuda = make_moe(cuda_ctx, p, 0.0f);
    if (cpu == nullptr || cuda == nullptr) {
        ne_moe_destroy(cpu);
        ne_moe_destroy(cuda);
        return;
    }
    const int64_t I = c.n_instances, n = c.n_features, steps = 4;
    std::vector<char> keep(I, 1);
    int64_t tokens = 0, tied = 0, tied_apart = 0, wrong = 0;
    moe_routing::Params a = moe_routing::read_params(cpu, c), b = moe_routing::read_params(cuda, c);
    for (int64_t step = 0; step < steps; ++step) {
        std::vector<moe_routing::Choice> choice_a(I), choice_b(I);
        for (int64_t inst = 0; inst < I; ++inst) {
            const moe_routing::Inputs in =
                moe_routing::draw(c, p.probability.data() + inst * n, ne::Stream::kTrain, step, inst, true);
            const int64_t g = inst * n * E;
            choice_a[inst] = moe_routing::choose(c, in, 0, a.gate.data() + g, a.noise.data() + g, a.bias.data() + inst * E);
            choice_b[inst] = moe_routing::choose(c, in, 0, b.gate.data() + g, b.noise.data() + g, b.bias.data() + inst * E);
        }
        CHECK(ne_moe_train(cpu, 1) == NE_OK);
        CHECK(ne_moe_train(cuda, 1) == NE_OK);
        const moe_routing::Params a2 = moe_routing::read_params(cpu, c), b2 = moe_routing::read_params(cuda, c);
        for (int64_t inst = 0; inst < I; ++inst) {
            uint64_t routed_a = 0, routed_b = 0;
            for (int64_t e = 0; e < E; ++e) {
                if (a2.bias[inst * E + e] < a.bias[inst * E + e]) routed_a |= uint64_t(1) << e;
                if (b2.bias[inst * E + e] < b.bias[inst * E + e]) routed_b |= uint64_t(1) << e;
            }
            CHECK(__builtin_popcountll(routed_a) == k && __builtin_popcountll(routed_b) == k);
            ++tokens;
            if (moe_routing::near_tied(choice_a[inst], choice_b[inst])) {
                ++tied;
                tied_apart += routed_a != routed_b;
                keep[inst] = 0;
                std::printf("  near-tie: step %lld instance %lld, margin %.3g within the bound %.3g\n",
                            static_cast<long long>(step), static_cast<long long>(inst), choice_a[inst].margin,
                            choice_a[inst].bound);
            } else if (routed_a != choice_a[inst].set || routed_b != choice_b[inst].set) {
                if (wrong++ < 5)
                    std::printf("  step %lld instance %lld: cpu chose %#llx, cuda %#llx, the exact choice is %#llx\n",
                                static_cast<long long>(step), static_cast<long long>(inst),
                                static_cast<unsigned long long>(routed_a), static_cast<unsigned long long>(routed_b),
                                static_cast<unsigned long long>(choice_a[inst].set));
            }
        }
        a = a2;
        b = b2;
    }
    CHECK(wrong == 0);
    CHECK(tied * 500 <= tokens);
    const auto only = [&](const std::vector<float>& v) { return instances_of(v, keep); };
    compare("router test W", only(a.W), only(b.W), 2e-3, 1e-2);
    compare("router test W_gate", only(a.gate), only(b.gate), 2e-3, 1e-2);
    compare("router test W_noise", only(a.noise), only(b.noise), 2e-3, 1e-2);
    compare("router test route_bias", only(a.bias), only(b.bias), 1e-6, 0);
    std::printf("moe router E=%lld k=%lld noise %d: %lld tokens, %lld near-tied (excluded; %lld routed apart), every "
                "other routed alike on both backends as the exact choice says\n",
                static_cast<long long>(E), static_cast<long long>(k), noise, static_cast<long long>(tokens),
                static_cast<long long>(tied), static_cast<long long>(tied_apart));
    ne_moe_destroy(cpu);
    ne_moe_destroy(cuda);
}

// The near-tie test itself: a token whose two best experts differ by an ulp of their gate weights is near-tied, one
// whose experts differ by 1e-3 is not, and an empty token (exact logits) is not. Host only.
void near_tie_detection() {
    ne_moe_config c{};
    c.expert_model = NE_TOY_RELU_OUTPUT;
    c.n_features = 12;
    c.n_experts = 4;
    c.top_k = 1;
    c.n_instances = 1;
    c.batch_size = 64;
    c.noise = NE_MOE_NOISE_NONE;
    c.seed = 9;
    const int64_t n = c.n_features, E = c.n_experts;
    const std::vector<float> probability(n, 0.15f), noise(n * E, 0.0f), bias(E, 0.0f);
    const moe_routing::Inputs in = moe_routing::draw(c, probability.data(), ne::Stream::kTrain, 0, 0, true);
    for (const float apart : {0.0f, 1e-3f}) {
        // Experts 0 and 1 alike (1 an ulp above 0, or 1e-3 relative above), 2 and 3 far below.
        std::vector<float> gate(n * E);
        for (int64_t i = 0; i < n; ++i) {
            const float w = 0.1f + 0.05f * static_cast<float>(i);
            gate[i * E + 0] = w;
            gate[i * E + 1] = apart == 0.0f ? std::nextafter(w, 1.0f) : w * (1.0f + apart);
            gate[i * E + 2] = gate[i * E + 3] = -w;
        }
        int64_t empty = 0, flagged = 0, flagged_empty = 0;
        for (int64_t t = 0; t < c.batch_size; ++t) {
            const bool is_empty = std::all_of(in.x.begin() + t * n, in.x.begin() + (t + 1) * n, [](float v) { return v == 0.0f; });
            const moe_routing::Choice choice = moe_routing::choose(c, in, t, gate.data(), noise.data(), bias.data());
            const bool tied = moe_routing::near_tied(choice, choice);
            empty += is_empty;
            flagged += tied;
            flagged_empty += tied && is_empty;
        }
        std::printf("near-tie detection, experts %s apart: %lld of %lld tokens near-tied (%lld empty)\n",
                    apart == 0.0f ? "an ulp" : "1e-3", static_cast<long long>(flagged),
                    static_cast<long long>(c.batch_size), static_cast<long long>(empty));
        CHECK(empty > 0 && empty < c.batch_size);
        CHECK(flagged_empty == 0);
        CHECK(flagged == (apart == 0.0f ? c.batch_size - empty : 0));
    }
}

// The host draws the router's inputs as the engine does: its x equals ne_toy_sample_batch's (the same data
// stream, through a toy model of the same shape and seed) bit for bit.
void routing_inputs_match_the_engine(ne_context* cpu, const MoeCase& mc) {
    const MoeProblem p = moe_problem(mc);
    const ne_moe_config& c = p.config;
    ne_toy_config t{};
    t.model = c.expert_model;
    t.optimizer = NE_OPTIMIZER_ADAMW;
    t.n_features = c.n_features;
    t.n_hidden = c.expert_hidden;
    t.n_instances = c.n_instances;
    t.batch_size = c.batch_size;
    t.lr = c.lr;
    t.beta1 = c.beta1;
    t.beta2 = c.beta2;
    t.eps = c.eps;
    t.seed = c.seed;
    ne_toy* toy = nullptr;
    if (ne_toy_create(cpu, &t, p.importance.data(), p.importance.size(), p.probability.data(), p.probability.size(),
                      &toy) != NE_OK) {
        std::printf("ne_toy_create: %s\n", ne_last_error());
        CHECK(false);
        return;
    }
    int differ = 0;
    for (int64_t step : {int64_t(0), int64_t(7)})
        for (int64_t inst = 0; inst < c.n_instances; ++inst) {
            std::vector<float> engine(c.batch_size * c.n_features);
            CHECK(ne_toy_sample_batch(toy, step, inst, engine.data(), engine.size()) == NE_OK);
            const moe_routing::Inputs in =
                moe_routing::draw(c, p.probability.data() + inst * c.n_features, ne::Stream::kTrain, step, inst, false);
            differ += !identical("router input x", engine, in.x);
        }
    CHECK(differ == 0);
    ne_toy_destroy(toy);
}

}  // namespace

int main() {
    // Guards between the tensors of every CUDA model's device allocation, checked after each call and at destroy
    // (core/arena.h): an overrun from one tensor into the next fails the call.
    setenv("NE_ARENA_GUARD", "1", 0);
    ne_context* cuda = nullptr;
    if (ne_context_create(NE_BACKEND_CUDA, 0, &cuda) != NE_OK) {
        std::printf("ignored: no CUDA device (%s)\n", ne_last_error());
        return ne_test::kSkipped;
    }
    ne_device_info device{};
    CHECK(ne_context_device_info(cuda, &device) == NE_OK);
    const bool emulated = std::strstr(device.name, "emulated") != nullptr;
    std::printf("device: %s\n", device.name);
    ne_context* cpu = nullptr;
    CHECK(ne_context_create(NE_BACKEND_CPU, 0, &cpu) == NE_OK);
    parity(cpu, cuda, NE_TOY_RELU_OUTPUT, 5, 2, 10, 1024);
    parity(cpu, cuda, NE_TOY_LINEAR, 5, 2, 4, 256);
    parity(cpu, cuda, NE_TOY_RELU_OUTPUT, 100, 20, 20, lengths().wide_batch);
    parity(cpu, cuda, NE_TOY_RELU_OUTPUT, 7, 3, 3, 100);  // odd n, batch not a multiple of the tile
    parity(cpu, cuda, NE_TOY_RELU_HIDDEN, 10, 5, 6, 512);
    parity(cpu, cuda, NE_TOY_ABS_VALUE, 3, 6, 4, 300);
    parity(cpu, cuda, NE_TOY_ABS_VALUE, 20, 7, 3, 128);
    // Tiles below 64 samples: shared memory holds 24 (H100) or 11 (A100) samples next to the weights, so a batch of
    // 50 ends in a partial tile; n odd (a lone last feature pair) and n m not a multiple of the 256 threads.
    parity(cpu, cuda, NE_TOY_RELU_OUTPUT, 601, 21, 2, 50);
    // Untied weights take twice the room: tiles of 48 (H100) or 23 (A100), so 110 samples end in a partial tile.
    parity(cpu, cuda, NE_TOY_ABS_VALUE, 301, 21, 2, 110);
    // L1 on every kind (linear and relu_output penalise |W^T x|, the others ReLU(W^T x)).
    for (int32_t model : {NE_TOY_LINEAR, NE_TOY_RELU_OUTPUT, NE_TOY_RELU_HIDDEN, NE_TOY_ABS_VALUE})
        parity(cpu, cuda, model, 8, 4, 3, 256, Extras{{0.0f, 0.01f, 0.1f}, {}, {}});
    // Feature sets: a correlated triple and an anticorrelated pair, on the two input kinds.
    const Extras sets{{}, {0, 0, 0, 1, 1, -1, -1, -1, -1}, {NE_FEATURES_CORRELATED, NE_FEATURES_ANTICORRELATED}};
    parity(cpu, cuda, NE_TOY_RELU_OUTPUT, 9, 3, 4, 256, sets);
    parity(cpu, cuda, NE_TOY_ABS_VALUE, 9, 3, 4, 256, sets);
    // Run twice: a partial small tile, and untied weights with L1 and feature sets.
    toy_twice(cuda, emulated, NE_TOY_RELU_OUTPUT, 601, 21, 2, 50);
    toy_twice(cuda, emulated, NE_TOY_ABS_VALUE, 9, 3, 3, 256, Extras{{0.0f, 0.01f, 0.1f}, sets.set_of_feature, sets.set_kind});

    near_tie_detection();
    routing_inputs_match_the_engine(cpu, MoeCase{NE_TOY_RELU_OUTPUT, 5, 2, 1, NE_MOE_NOISE_NONE, 0.0f, 0.0f, 13, 5, 45});
    moe_parity(cpu, cuda, emulated, MoeCase{NE_TOY_RELU_OUTPUT, 4, 1, 0, NE_MOE_NOISE_NONE, 0.0f, 0.0f});
    moe_parity(cpu, cuda, emulated, MoeCase{NE_TOY_RELU_OUTPUT, 4, 2, 1, NE_MOE_NOISE_NONE, 0.6f, 0.0f});
    moe_parity(cpu, cuda, emulated, MoeCase{NE_TOY_RELU_HIDDEN, 3, 2, 0, NE_MOE_NOISE_NOISY_TOPK, 0.0f, 0.001f});
    moe_parity(cpu, cuda, emulated, MoeCase{NE_TOY_RELU_OUTPUT, 5, 1, 1, NE_MOE_NOISE_JITTER, 1.0f, 0.0f});
    // Partial token tiles: 45 tokens are a tile of 32 and one of 13; n = 13 leaves a lone feature pair and a partial
    // jitter quad, E = 5 a partial quad of normals, E n m = 325 a partial stride of 256 threads.
    moe_parity(cpu, cuda, emulated, MoeCase{NE_TOY_RELU_OUTPUT, 5, 2, 1, NE_MOE_NOISE_NOISY_TOPK, 1.0f, 0.001f, 13, 5, 45});
    moe_parity(cpu, cuda, emulated, MoeCase{NE_TOY_RELU_HIDDEN, 5, 1, 0, NE_MOE_NOISE_JITTER, 0.6f, 0.0f, 13, 5, 45});
    // The router's decisions token by token, with each kind of router noise.
    moe_router_decisions(cpu, cuda, 6, 2, NE_MOE_NOISE_NONE);
    moe_router_decisions(cpu, cuda, 5, 2, NE_MOE_NOISE_NOISY_TOPK);
    moe_router_decisions(cpu, cuda, 4, 1, NE_MOE_NOISE_JITTER);
    ne_context_destroy(cpu);
    ne_context_destroy(cuda);
    return ne_test::finish("test_parity");
}
