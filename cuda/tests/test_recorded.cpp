// Short CPU runs of every model family through the C ABI, hashed (FNV-1a over the bytes of parameters, optimizer
// state and reported numbers) and compared with hashes recorded from an earlier build: a change that is meant to
// move code, not arithmetic, must leave every bit of every result where it was.
//
// The CPU kernels' arithmetic depends on the instruction set they are compiled for (vector width, FMA), so the
// recordings are kept per build signature. `test_recorded --print` prints this build's hashes in the table's form;
// cuda/tests/record.sh rewrites the table for all three signatures, for a change meant to change the arithmetic.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "nativeengine.h"

namespace {

struct Hash {
    uint64_t value = 0xcbf29ce484222325ull;
    void add(const void* data, size_t bytes) {
        const auto* p = static_cast<const unsigned char*>(data);
        for (size_t i = 0; i < bytes; ++i) value = (value ^ p[i]) * 0x100000001b3ull;
    }
    template <typename T>
    void add(const std::vector<T>& v) { add(v.data(), v.size() * sizeof(T)); }
};

#define OK(call) CHECK((call) == NE_OK)

const char* signature() {
#if defined(__AVX512F__)
    return "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
    return "avx2";
#else
    return "baseline";
#endif
}

struct Recorded {
    const char* signature;
    const char* run;
    uint64_t hash;
};

// Recorded before the backend interfaces were introduced; the sparse-update runs of topk and batchtopk again when
// sparse updates began to reach AuxK's latents.
const Recorded kRecorded[] = {
#include "test_recorded_values.inc"
};

std::vector<float> per_instance(int64_t instances, int64_t n, float base, float step) {
    std::vector<float> v(instances * n);
    for (int64_t k = 0; k < instances; ++k)
        for (int64_t i = 0; i < n; ++i) v[k * n + i] = base + step * static_cast<float>((k * 3 + i) % 5);
    return v;
}

uint64_t toy_run(ne_context* ctx, int32_t model, bool sets, bool l1) {
    ne_toy_config c{};
    c.model = model;
    c.optimizer = model == NE_TOY_LINEAR ? NE_OPTIMIZER_ADAM : NE_OPTIMIZER_ADAMW;
    c.n_features = 8;
    c.n_hidden = 3;
    c.n_instances = 3;
    c.batch_size = 33;
    c.lr = 3e-3f;
    c.weight_decay = 0.01f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.seed = 1234 + static_cast<uint64_t>(model);
    std::vector<float> importance = per_instance(3, 8, 0.5f, 0.1f), probability(3 * 8, 0.3f);
    ne_toy* toy = nullptr;
    OK(ne_toy_create(ctx, &c, importance.data(), 24, probability.data(), 24, &toy));
    if (sets) {
        const int32_t set_of_feature[8] = {0, 0, 1, 1, 1, -1, -1, -1};
        const int32_t kinds[2] = {NE_FEATURES_CORRELATED, NE_FEATURES_ANTICORRELATED};
        OK(ne_toy_set_feature_sets(toy, set_of_feature, 8, kinds, 2));
    }
    if (l1) {
        const float lambda[3] = {0.0f, 0.01f, 0.1f};
        OK(ne_toy_set_l1(toy, lambda, 3));
    }
    OK(ne_toy_train(toy, 25));
    const bool untied = model == NE_TOY_ABS_VALUE;
    std::vector<float> W(3 * 8 * 3), W_out(untied ? W.size() : 0), b(3 * 8), loss(3), penalty(3);
    OK(ne_toy_get_params(toy, W.data(), static_cast<int64_t>(W.size()), W_out.data(), static_cast<int64_t>(W_out.size()),
                         b.data(), static_cast<int64_t>(b.size())));
    OK(ne_toy_evaluate(toy, 2, loss.data(), 3, penalty.data(), 3));
    OK(ne_toy_destroy(toy));
    Hash h;
    h.add(W);
    h.add(W_out);
    h.add(b);
    h.add(loss);
    h.add(penalty);
    return h.value;
}

uint64_t moe_run(ne_context* ctx, int32_t expert_model, int32_t noise, float capacity, float bias_update, int32_t renormalize) {
    ne_moe_config c{};
    c.expert_model = expert_model;
    c.optimizer = NE_OPTIMIZER_ADAMW;
    c.n_features = 9;
    c.expert_hidden = 2;
    c.n_experts = 4;
    c.top_k = 2;
    c.n_instances = 2;
    c.batch_size = 40;
    c.lr = 3e-3f;
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
    c.seed = 99 + static_cast<uint64_t>(noise);
    std::vector<float> importance = per_instance(2, 9, 0.6f, 0.1f), probability(2 * 9, 0.2f);
    ne_moe* moe = nullptr;
    OK(ne_moe_create(ctx, &c, importance.data(), 18, probability.data(), 18, &moe));
    const float lambda[2] = {0.0f, 0.02f};
    OK(ne_moe_set_l1(moe, lambda, 2));
    OK(ne_moe_train(moe, 20));
    const int64_t I = 2, E = 4, n = 9, m = 2;
    std::vector<float> W(I * E * n * m), b(I * E * n), gate(I * n * E), noise_w(I * n * E), bias(I * E);
    OK(ne_moe_get_params(moe, W.data(), static_cast<int64_t>(W.size()), b.data(), static_cast<int64_t>(b.size()),
                         gate.data(), static_cast<int64_t>(gate.size()), noise_w.data(),
                         static_cast<int64_t>(noise_w.size()), bias.data(), static_cast<int64_t>(bias.size())));
    std::vector<float> out(I * (NE_MOE_EVAL_FIELDS + E));
    OK(ne_moe_evaluate(moe, 2, out.data(), static_cast<int64_t>(out.size())));
    OK(ne_moe_destroy(moe));
    Hash h;
    for (const auto* v : {&W, &b, &gate, &noise_w, &bias, &out}) h.add(*v);
    return h.value;
}

uint64_t sae_run(ne_context* ctx, int32_t architecture, int32_t sparse_updates) {
    const int64_t d = 24, m = 96, batch = 64;
    ne_sae_config c{};
    c.architecture = architecture;
    c.sparse_updates = sparse_updates;
    c.d_in = d;
    c.d_sae = m;
    c.k = 5;
    c.k_aux = 8;
    c.batch_size = batch;
    c.dead_window = 2 * batch;  // latents silent for two batches count as dead, so AuxK runs
    c.l1_coefficient = architecture == NE_SAE_RELU ? 0.05f : 0.0f;
    c.l0_coefficient = architecture == NE_SAE_JUMPRELU ? 0.01f : 0.0f;
    c.auxk_alpha = architecture <= NE_SAE_BATCHTOPK ? 1.0f / 32 : 0.0f;
    c.jump_bandwidth = 0.05f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.seed = 7 + static_cast<uint64_t>(architecture);
    c.precision = NE_SAE_FP32;
    ne_sae* sae = nullptr;
    OK(ne_sae_create(ctx, &c, &sae));
    // Sparse data: each token a few of 40 fixed random directions (a small LCG keeps the test self-contained).
    uint32_t state = 2463534242u + static_cast<uint32_t>(architecture);
    auto next = [&] {
        state = state * 1664525u + 1013904223u;
        return static_cast<float>(state >> 8) / 16777216.0f;
    };
    std::vector<float> atoms(40 * d);
    for (float& a : atoms) a = next() - 0.5f;
    auto batch_of = [&](int64_t tokens) {
        std::vector<float> x(tokens * d, 0.0f);
        for (int64_t t = 0; t < tokens; ++t)
            for (int r = 0; r < 3; ++r) {
                const int64_t j = static_cast<int64_t>(next() * 40) % 40;
                const float coefficient = next();
                for (int64_t i = 0; i < d; ++i) x[t * d + i] += coefficient * atoms[j * d + i];
            }
        return x;
    };
    const std::vector<float> first = batch_of(batch);
    OK(ne_sae_init_decoder_bias(sae, first.data(), static_cast<int64_t>(first.size()), 1));
    Hash h;
    for (int step = 0; step < 15; ++step) {
        const std::vector<float> x = batch_of(batch);
        ne_sae_stats stats{};
        OK(ne_sae_train_step(sae, x.data(), static_cast<int64_t>(x.size()), 2e-3f, &stats));
        h.add(&stats, sizeof stats);
    }
    const std::vector<float> x = batch_of(50);
    std::vector<float> x_hat(x.size());
    std::vector<int64_t> fired(m, 0);
    ne_sae_stats stats{};
    OK(ne_sae_evaluate(sae, x.data(), static_cast<int64_t>(x.size()), x_hat.data(), static_cast<int64_t>(x_hat.size()),
                       fired.data(), m, &stats));
    h.add(&stats, sizeof stats);
    h.add(x_hat);
    h.add(fired);
    std::vector<float> W_enc(d * m), b_enc(m), W_dec(m * d), b_dec(d), threshold(m);
    OK(ne_sae_get_params(sae, W_enc.data(), d * m, b_enc.data(), m, W_dec.data(), m * d, b_dec.data(), d,
                         threshold.data(), m));
    for (const auto* v : {&W_enc, &b_enc, &W_dec, &b_dec, &threshold}) h.add(*v);
    int64_t bytes = 0;
    OK(ne_sae_state_size(sae, &bytes));
    std::vector<char> state_bytes(static_cast<size_t>(bytes));
    OK(ne_sae_get_state(sae, state_bytes.data(), bytes));
    h.add(state_bytes);
    OK(ne_sae_destroy(sae));
    return h.value;
}

}  // namespace

int main(int argc, char** argv) {
    const bool print = argc > 1 && std::strcmp(argv[1], "--print") == 0;
    ne_context* ctx = nullptr;
    OK(ne_context_create(NE_BACKEND_CPU, 0, &ctx));
    std::vector<std::pair<std::string, uint64_t>> runs;
    const char* toy_names[] = {"linear", "relu_output", "relu_hidden", "abs_value"};
    for (int32_t model = NE_TOY_LINEAR; model <= NE_TOY_ABS_VALUE; ++model) {
        runs.emplace_back(std::string("toy_") + toy_names[model], toy_run(ctx, model, false, model == NE_TOY_RELU_HIDDEN));
        runs.emplace_back(std::string("toy_") + toy_names[model] + "_sets", toy_run(ctx, model, true, false));
    }
    runs.emplace_back("moe_relu_output_plain", moe_run(ctx, NE_TOY_RELU_OUTPUT, NE_MOE_NOISE_NONE, 0.0f, 0.0f, 1));
    runs.emplace_back("moe_relu_output_noisy_capacity", moe_run(ctx, NE_TOY_RELU_OUTPUT, NE_MOE_NOISE_NOISY_TOPK, 1.0f, 0.0f, 0));
    runs.emplace_back("moe_relu_hidden_jitter_bias", moe_run(ctx, NE_TOY_RELU_HIDDEN, NE_MOE_NOISE_JITTER, 0.0f, 1e-3f, 1));
    const char* sae_names[] = {"topk", "batchtopk", "relu", "jumprelu"};
    for (int32_t a = NE_SAE_TOPK; a <= NE_SAE_JUMPRELU; ++a)
        for (int32_t sparse = 0; sparse <= 1; ++sparse)
            runs.emplace_back(std::string("sae_") + sae_names[a] + (sparse ? "_sparse" : "_dense"), sae_run(ctx, a, sparse));
    OK(ne_context_destroy(ctx));

    if (print) {
        for (const auto& [name, hash] : runs)
            std::printf("    {\"%s\", \"%s\", 0x%016llxull},\n", signature(), name.c_str(),
                        static_cast<unsigned long long>(hash));
        return ne_test::finish("test_recorded --print");
    }
    int compared = 0;
    for (const auto& [name, hash] : runs) {
        const Recorded* recorded = nullptr;
        for (const Recorded& r : kRecorded)
            if (std::strcmp(r.signature, signature()) == 0 && name == r.run) recorded = &r;
        if (recorded == nullptr) {
            std::printf("no recording of %s for build signature %s: record with test_recorded --print\n", name.c_str(),
                        signature());
            CHECK(recorded != nullptr);
            continue;
        }
        ++compared;
        if (recorded->hash != hash)
            std::printf("%s (%s): hash 0x%016llx, recorded 0x%016llx\n", name.c_str(), signature(),
                        static_cast<unsigned long long>(hash), static_cast<unsigned long long>(recorded->hash));
        CHECK(recorded->hash == hash);
    }
    std::printf("%d runs compared with their recordings (build signature %s)\n", compared, signature());
    return ne_test::finish("test_recorded");
}
