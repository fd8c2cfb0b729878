// Runs every CUDA kernel path under several thread schedules of the emulated device (NE_EMU_SCHEDULE: forward, reverse,
// two random ones) and requires results identical to the bit: the kernels are meant to be deterministic, so any
// difference is a missing barrier, a race on shared or global memory, an order-dependent atomic, or a read of memory
// nobody wrote (the emulator fills such memory with a different pattern per schedule). Short runs at small shapes that
// still reach every path: toy models of every kind with L1 and feature sets, a tile below 64 and a partial tile; MoE
// with every router noise, capacity and bias update, and a partial token tile; SAEs of every architecture, precision
// and Adam mode, AuxK (matryoshka's per level too), several encoder chunks, lists that grow, and a batch above one
// column-sum tile (512 tokens).
// Emulated-tier only: the parity tests compare against the CPU; this compares the emulated device with itself.
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "nativeengine.h"

namespace {

struct Digest {
    std::string what;
    uint64_t hash;
};

uint64_t fnv1a(const void* data, size_t bytes, uint64_t h = 1469598103934665603ull) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

template <typename T>
uint64_t hash_of(const std::vector<T>& v, uint64_t h = 1469598103934665603ull) {
    return fnv1a(v.data(), v.size() * sizeof(T), h);
}

bool ok(ne_status status, const char* call) {
    if (status == NE_OK) return true;
    std::printf("%s: %s\n", call, ne_last_error());
    CHECK(false);
    return false;
}

void toy_case(ne_context* ctx, int32_t model, int64_t n, int64_t m, int64_t instances, int64_t batch, bool extras,
              std::vector<Digest>& out) {
    ne_toy_config c{};
    c.model = model;
    c.optimizer = NE_OPTIMIZER_ADAMW;
    c.n_features = n;
    c.n_hidden = m;
    c.n_instances = instances;
    c.batch_size = batch;
    c.lr = 1e-2f;
    c.weight_decay = 0.01f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.seed = 77;
    std::vector<float> importance(instances * n), probability(instances * n);
    for (int64_t j = 0; j < instances * n; ++j) {
        importance[j] = std::pow(0.9f, static_cast<float>(j % n));
        probability[j] = 0.1f + 0.3f * static_cast<float>(j / n);  // per instance (a feature set shares one)
    }
    ne_toy* toy = nullptr;
    if (!ok(ne_toy_create(ctx, &c, importance.data(), importance.size(), probability.data(), probability.size(), &toy),
            "ne_toy_create"))
        return;
    if (extras) {
        std::vector<float> l1(instances);
        for (int64_t k = 0; k < instances; ++k) l1[k] = 0.05f * static_cast<float>(k);
        ok(ne_toy_set_l1(toy, l1.data(), l1.size()), "ne_toy_set_l1");
        std::vector<int32_t> set_of(n, -1), kinds{NE_FEATURES_CORRELATED, NE_FEATURES_ANTICORRELATED};
        set_of[0] = set_of[1] = set_of[2] = 0;
        set_of[3] = set_of[4] = 1;
        ok(ne_toy_set_feature_sets(toy, set_of.data(), set_of.size(), kinds.data(), kinds.size()), "ne_toy_set_feature_sets");
    }
    ok(ne_toy_train(toy, 1), "ne_toy_train");
    ok(ne_toy_train(toy, 2), "ne_toy_train");
    const bool untied = model == NE_TOY_ABS_VALUE;
    std::vector<float> W(instances * n * m), W_out(untied ? instances * n * m : 0), b(instances * n);
    std::vector<float> loss(instances), penalty(instances);
    ok(ne_toy_get_params(toy, W.data(), W.size(), untied ? W_out.data() : nullptr, W_out.size(), b.data(), b.size()),
       "ne_toy_get_params");
    ok(ne_toy_evaluate(toy, 2, loss.data(), loss.size(), penalty.data(), penalty.size()), "ne_toy_evaluate");
    ne_toy_destroy(toy);
    char label[96];
    std::snprintf(label, sizeof label, "toy model %d n=%lld m=%lld B=%lld%s", model, static_cast<long long>(n),
                  static_cast<long long>(m), static_cast<long long>(batch), extras ? " l1+sets" : "");
    out.push_back({std::string(label) + " params", hash_of(b, hash_of(W_out, hash_of(W)))});
    out.push_back({std::string(label) + " evaluation", hash_of(penalty, hash_of(loss))});
}

void moe_case(ne_context* ctx, int32_t expert_model, int64_t E, int64_t k, int32_t renormalize, int32_t noise,
              float capacity, float bias_update, std::vector<Digest>& out) {
    ne_moe_config c{};
    c.expert_model = expert_model;
    c.optimizer = NE_OPTIMIZER_ADAMW;
    c.n_features = 12;
    c.expert_hidden = 3;
    c.n_experts = E;
    c.top_k = k;
    c.n_instances = 2;
    c.batch_size = 100;  // 3 full tiles of 32 and one of 4
    c.lr = 1e-2f;
    c.weight_decay = 0.01f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.renormalize = renormalize;
    c.noise = noise;
    c.load_balance = 0.01f;
    c.z_loss = 0.001f;
    c.bias_update = bias_update;
    c.capacity_factor = capacity;
    c.seed = 4242;
    const int64_t I = c.n_instances, n = c.n_features, m = c.expert_hidden;
    std::vector<float> importance(I * n), probability(I * n);
    for (int64_t j = 0; j < I * n; ++j) {
        importance[j] = std::pow(0.8f, static_cast<float>(j % n));
        probability[j] = j < n ? 0.5f : 0.1f;
    }
    ne_moe* moe = nullptr;
    if (!ok(ne_moe_create(ctx, &c, importance.data(), importance.size(), probability.data(), probability.size(), &moe),
            "ne_moe_create"))
        return;
    std::vector<float> l1(I, 0.01f);
    ok(ne_moe_set_l1(moe, l1.data(), l1.size()), "ne_moe_set_l1");
    ok(ne_moe_train(moe, 2), "ne_moe_train");
    std::vector<float> W(I * E * n * m), b(I * E * n), gate(I * n * E), noise_w(I * n * E), bias(I * E);
    std::vector<float> eval(I * (NE_MOE_EVAL_FIELDS + E));
    ok(ne_moe_get_params(moe, W.data(), W.size(), b.data(), b.size(), gate.data(), gate.size(), noise_w.data(),
                         noise_w.size(), bias.data(), bias.size()),
       "ne_moe_get_params");
    ok(ne_moe_evaluate(moe, 2, eval.data(), eval.size()), "ne_moe_evaluate");
    ne_moe_destroy(moe);
    char label[96];
    std::snprintf(label, sizeof label, "moe model %d E=%lld k=%lld renorm %d noise %d capacity %.1f bias %.3f",
                  expert_model, static_cast<long long>(E), static_cast<long long>(k), renormalize, noise, capacity,
                  bias_update);
    out.push_back({std::string(label) + " params", hash_of(bias, hash_of(noise_w, hash_of(gate, hash_of(b, hash_of(W)))))});
    out.push_back({std::string(label) + " evaluation", hash_of(eval)});
}

void sae_case(ne_context* ctx, int32_t arch, int32_t precision, int32_t sparse, int64_t batch, std::vector<Digest>& out,
              int32_t level_auxk = 0) {
    const int64_t d = 40, m = 96;
    ne_sae_config c{};
    c.architecture = arch;
    c.sparse_updates = sparse;
    c.d_in = d;
    c.d_sae = m;
    c.k = 4;
    c.k_aux = 8;
    c.batch_size = batch;
    c.dead_window = batch;  // latents that did not fire in a step are dead in the next: AuxK runs from step 2
    c.l1_coefficient = 0.05f;
    c.l0_coefficient = 0.05f;
    c.auxk_alpha = 1.0f / 32;
    c.jump_bandwidth = 0.5f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.seed = 11;
    c.precision = precision;
    if (arch == NE_SAE_MATRYOSHKA_BATCHTOPK) {  // levels that straddle the encoder chunks
        c.matryoshka_levels = 3;
        c.matryoshka_widths[0] = 12;
        c.matryoshka_widths[1] = 44;
        c.matryoshka_widths[2] = m;
        c.matryoshka_aux_loss = level_auxk;
    }
    if (arch == NE_SAE_MATCHING_PURSUIT) {  // SAELens's stopping rules
        c.residual_threshold = 1e-2f;
        c.stop_on_duplicate_support = 1;
    }
    setenv("NE_SAE_CHUNK", "40", 1);  // encoder chunks (matching pursuit: dots) of 40, 40 and 16 latents
    ne_sae* sae = nullptr;
    const ne_status created = ne_sae_create(ctx, &c, &sae);
    unsetenv("NE_SAE_CHUNK");
    if (!ok(created, "ne_sae_create")) return;
    std::mt19937_64 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto data = [&](int64_t tokens) {
        std::vector<float> x(tokens * d);
        for (auto& v : x) v = normal(rng);
        for (int64_t i = 0; i < d; i += 3) x[i] += 4.0f;  // token 0 is far out: many codes (relu, jumprelu lists grow)
        return x;
    };
    const std::vector<float> first = data(batch);
    ok(ne_sae_init_decoder_bias(sae, first.data(), first.size(), 0), "ne_sae_init_decoder_bias");
    std::vector<double> stats;
    for (int step = 0; step < 3; ++step) {
        const std::vector<float> x = step == 0 ? first : data(batch);
        ne_sae_stats s{};
        ok(ne_sae_train_step(sae, x.data(), x.size(), 1e-2f, &s), "ne_sae_train_step");
        stats.insert(stats.end(), {s.mse, s.sparsity, s.auxk, s.fvu, s.l0, static_cast<double>(s.dead)});
    }
    const int64_t tokens = 37;
    const std::vector<float> x = data(tokens);
    std::vector<float> x_hat(tokens * d);
    std::vector<int64_t> fired(m, 0);
    ne_sae_stats s{};
    ok(ne_sae_evaluate(sae, x.data(), x.size(), x_hat.data(), x_hat.size(), fired.data(), fired.size(), &s),
       "ne_sae_evaluate");
    stats.insert(stats.end(), {s.mse, s.sparsity, s.fvu, s.l0});
    std::vector<float> W_enc(d * m), b_enc(m), W_dec(m * d), b_dec(d), threshold(m);
    ok(ne_sae_get_params(sae, W_enc.data(), W_enc.size(), b_enc.data(), b_enc.size(), W_dec.data(), W_dec.size(),
                         b_dec.data(), b_dec.size(), threshold.data(), threshold.size()),
       "ne_sae_get_params");
    int64_t bytes = 0;
    ok(ne_sae_state_size(sae, &bytes), "ne_sae_state_size");
    std::vector<uint8_t> state(bytes);
    ok(ne_sae_get_state(sae, state.data(), bytes), "ne_sae_get_state");
    ne_sae_destroy(sae);
    static const char* arch_names[] = {"topk", "batchtopk", "relu", "jumprelu", "matryoshka", "pursuit"};
    static const char* precision_names[] = {"fp32", "tf32", "bf16"};
    char label[112];
    std::snprintf(label, sizeof label, "sae %s%s %s sparse=%d B=%lld", arch_names[arch],
                  level_auxk ? " (AuxK per level)" : "", precision_names[precision], sparse, static_cast<long long>(batch));
    out.push_back({std::string(label) + " params",
                   hash_of(threshold, hash_of(b_dec, hash_of(W_dec, hash_of(b_enc, hash_of(W_enc)))))});
    out.push_back({std::string(label) + " state", hash_of(state)});
    out.push_back({std::string(label) + " stats", hash_of(stats)});
    out.push_back({std::string(label) + " evaluation", hash_of(fired, hash_of(x_hat))});
}

std::vector<Digest> run_all(ne_context* ctx) {
    std::vector<Digest> out;
    for (int32_t model : {NE_TOY_LINEAR, NE_TOY_RELU_OUTPUT, NE_TOY_RELU_HIDDEN, NE_TOY_ABS_VALUE})
        toy_case(ctx, model, 7, 3, 3, 70, model != NE_TOY_RELU_HIDDEN, out);
    toy_case(ctx, NE_TOY_RELU_OUTPUT, 1000, 20, 1, 12, false, out);  // shared memory leaves a tile of 5 samples
    moe_case(ctx, NE_TOY_RELU_OUTPUT, 4, 1, 0, NE_MOE_NOISE_NONE, 0.0f, 0.0f, out);
    moe_case(ctx, NE_TOY_RELU_OUTPUT, 4, 2, 1, NE_MOE_NOISE_NONE, 0.6f, 0.0f, out);
    moe_case(ctx, NE_TOY_RELU_HIDDEN, 3, 2, 0, NE_MOE_NOISE_NOISY_TOPK, 0.0f, 0.001f, out);
    moe_case(ctx, NE_TOY_RELU_OUTPUT, 5, 1, 1, NE_MOE_NOISE_JITTER, 1.0f, 0.0f, out);
    for (int32_t arch : {NE_SAE_TOPK, NE_SAE_BATCHTOPK, NE_SAE_RELU, NE_SAE_JUMPRELU, NE_SAE_MATCHING_PURSUIT}) {
        for (int32_t precision : {NE_SAE_FP32, NE_SAE_TF32, NE_SAE_BF16}) sae_case(ctx, arch, precision, 0, 40, out);
        sae_case(ctx, arch, NE_SAE_FP32, 1, 40, out);
    }
    sae_case(ctx, NE_SAE_TOPK, NE_SAE_FP32, 1, 520, out);
    sae_case(ctx, NE_SAE_MATRYOSHKA_BATCHTOPK, NE_SAE_FP32, 1, 40, out);
    sae_case(ctx, NE_SAE_MATRYOSHKA_BATCHTOPK, NE_SAE_FP32, 0, 40, out, 1);
    return out;
}

}  // namespace

int main() {
    const char* seed_text = std::getenv("NE_EMU_SEED");
    const unsigned long long seed = seed_text != nullptr ? std::strtoull(seed_text, nullptr, 10) : 1;
    const std::string schedules[] = {"forward", "reverse", "random:" + std::to_string(seed),
                                     "random:" + std::to_string(seed + 1)};
    std::vector<Digest> reference;
    for (const std::string& schedule : schedules) {
        setenv("NE_EMU_SCHEDULE", schedule.c_str(), 1);
        ne_context* ctx = nullptr;
        if (ne_context_create(NE_BACKEND_CUDA, 0, &ctx) != NE_OK) {
            std::printf("ignored: no CUDA device (%s)\n", ne_last_error());
            return ne_test::kSkipped;
        }
        ne_device_info info{};
        CHECK(ne_context_device_info(ctx, &info) == NE_OK);
        if (std::strstr(info.name, "emulated") == nullptr) {
            std::printf("ignored: %s is not the emulated device; this test compares the emulator's schedules\n", info.name);
            ne_context_destroy(ctx);
            return ne_test::kSkipped;
        }
        const std::vector<Digest> digests = run_all(ctx);
        ne_context_destroy(ctx);
        if (reference.empty()) {
            reference = digests;
            std::printf("%s: %zu results\n", schedule.c_str(), digests.size());
            continue;
        }
        CHECK(digests.size() == reference.size());
        int differ = 0;
        for (size_t i = 0; i < digests.size() && i < reference.size(); ++i)
            if (digests[i].hash != reference[i].hash) {
                ++differ;
                std::printf("  %s: %s differs from forward (%016" PRIx64 " vs %016" PRIx64 ")\n", schedule.c_str(),
                            digests[i].what.c_str(), digests[i].hash, reference[i].hash);
            }
        CHECK(differ == 0);
        std::printf("%s: %zu results, %d differ from forward\n", schedule.c_str(), digests.size(), differ);
    }
    return ne_test::finish("test_schedules");
}
