// The C ABI's contract: bad arguments return a status with a message naming them, destroy accepts NULL, and no
// exception escapes (a throw would terminate this process).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "nativeengine.h"

static bool mentions(const char* text) { return std::strstr(ne_last_error(), text) != nullptr; }

int main() {
    CHECK(std::string(ne_version()).size() >= 5);
    CHECK(ne_abi_version() == NE_ABI_VERSION);
    CHECK(std::string(ne_status_name(NE_ERR_INVALID_ARGUMENT)) == "NE_ERR_INVALID_ARGUMENT");
    CHECK(ne_toy_config_size() == sizeof(ne_toy_config));
    CHECK(ne_context_destroy(nullptr) == NE_OK);
    CHECK(ne_toy_destroy(nullptr) == NE_OK);

    ne_context* ctx = nullptr;
    CHECK(ne_context_create(7, 0, &ctx) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("backend 7"));
    CHECK(ne_context_create(NE_BACKEND_CPU, 0, nullptr) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("out is null"));
    CHECK(ne_context_create(NE_BACKEND_CPU, 0, &ctx) == NE_OK);
    CHECK(std::string(ne_last_error()).empty());

    ne_runtime_info runtime{};
    CHECK(ne_runtime_query(&runtime) == NE_OK);
    if (runtime.cuda_device_count == 0) {
        ne_context* cuda = nullptr;
        CHECK(ne_context_create(NE_BACKEND_CUDA, 0, &cuda) == NE_ERR_BACKEND_UNAVAILABLE);
        CHECK(mentions("cuda"));
        CHECK(cuda == nullptr);
    }

    ne_device_info info{};
    CHECK(ne_context_device_info(ctx, &info) == NE_OK);
    CHECK(info.backend == NE_BACKEND_CPU && info.total_memory > 0 && std::strlen(info.name) > 0);

    ne_toy_config config{};
    config.model = NE_TOY_RELU_OUTPUT;
    config.optimizer = NE_OPTIMIZER_ADAMW;
    config.n_features = 5;
    config.n_hidden = 2;
    config.n_instances = 2;
    config.batch_size = 16;
    config.lr = 1e-3f;
    config.weight_decay = 0.01f;
    config.beta1 = 0.9f;
    config.beta2 = 0.999f;
    config.eps = 1e-8f;
    std::vector<float> importance(10, 1.0f), probability(10, 0.5f);
    ne_toy* toy = nullptr;

    CHECK(ne_toy_create(ctx, &config, importance.data(), 9, probability.data(), 10, &toy) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("importance has 9 values"));
    probability[3] = 1.5f;
    CHECK(ne_toy_create(ctx, &config, importance.data(), 10, probability.data(), 10, &toy) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("feature_probability[3]"));
    probability[3] = 0.5f;
    config.n_hidden = 0;
    CHECK(ne_toy_create(ctx, &config, importance.data(), 10, probability.data(), 10, &toy) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("n_hidden is 0"));
    config.n_hidden = 2;
    CHECK(ne_toy_create(nullptr, &config, importance.data(), 10, probability.data(), 10, &toy) ==
          NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("ctx is null"));
    CHECK(toy == nullptr);

    CHECK(ne_toy_create(ctx, &config, importance.data(), 10, probability.data(), 10, &toy) == NE_OK);
    CHECK(ne_toy_train(toy, -1) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("steps is -1"));
    CHECK(ne_toy_train(toy, 3) == NE_OK);
    int64_t steps = 0;
    CHECK(ne_toy_steps_done(toy, &steps) == NE_OK && steps == 3);
    std::vector<float> W(20), b(10), loss(2);
    CHECK(ne_toy_get_params(toy, W.data(), 19, nullptr, 0, b.data(), 10) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("W has room for 19"));
    CHECK(ne_toy_get_params(toy, W.data(), 20, W.data(), 20, b.data(), 10) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("this model is tied"));
    CHECK(ne_toy_get_params(toy, W.data(), 20, nullptr, 0, b.data(), 10) == NE_OK);
    CHECK(ne_toy_evaluate(toy, 0, loss.data(), 2, nullptr, 0) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("batches is 0"));
    std::vector<float> penalty(2, -1.0f);
    CHECK(ne_toy_evaluate(toy, 2, loss.data(), 2, penalty.data(), 2) == NE_OK);
    CHECK(loss[0] > 0.0f && loss[1] > 0.0f);
    CHECK(penalty[0] == 0.0f && penalty[1] == 0.0f);  // no L1 set
    const float l1_bad[2] = {0.1f, -1.0f};
    CHECK(ne_toy_set_l1(toy, l1_bad, 2) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("l1[1] is -1"));
    const float l1[2] = {0.0f, 0.5f};
    CHECK(ne_toy_set_l1(toy, l1, 2) == NE_OK);
    CHECK(ne_toy_evaluate(toy, 2, loss.data(), 2, penalty.data(), 2) == NE_OK);
    CHECK(penalty[0] == 0.0f && penalty[1] > 0.0f);
    // Feature sets: a lone member, an unknown kind and an out-of-range index are refused with their names.
    const int32_t lone[5] = {0, -1, -1, -1, -1}, kinds[1] = {NE_FEATURES_CORRELATED};
    CHECK(ne_toy_set_feature_sets(toy, lone, 5, kinds, 1) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("feature set 0 has 1 member"));
    const int32_t pair[5] = {0, 0, -1, -1, -1}, bad_kind[1] = {7};
    CHECK(ne_toy_set_feature_sets(toy, pair, 5, bad_kind, 1) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("set_kind[0] is 7"));
    const int32_t out_of_range[5] = {0, 0, 3, -1, -1};
    CHECK(ne_toy_set_feature_sets(toy, out_of_range, 5, kinds, 1) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("set_of_feature[2] is 3"));
    CHECK(ne_toy_set_feature_sets(toy, pair, 5, kinds, 1) == NE_OK);
    CHECK(ne_toy_sample_batch(toy, 0, 2, W.data(), 80) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("instance is 2"));
    CHECK(ne_toy_destroy(toy) == NE_OK);

    // The SAE's reduced-precision encoders exist on CUDA only; the CPU refuses them by name.
    CHECK(ne_sae_config_size() == sizeof(ne_sae_config));
    ne_sae_config sae_config{};
    sae_config.architecture = NE_SAE_TOPK;
    sae_config.d_in = 8;
    sae_config.d_sae = 16;
    sae_config.k = 2;
    sae_config.batch_size = 4;
    sae_config.dead_window = 100;
    sae_config.jump_bandwidth = 1e-3f;
    sae_config.beta1 = 0.9f;
    sae_config.beta2 = 0.999f;
    sae_config.eps = 1e-8f;
    ne_sae* sae = nullptr;
    for (int32_t precision : {NE_SAE_TF32, NE_SAE_BF16}) {
        sae_config.precision = precision;
        CHECK(ne_sae_create(ctx, &sae_config, &sae) == NE_ERR_UNSUPPORTED);
        CHECK(mentions("config.precision is") && mentions("needs the CUDA backend"));
        CHECK(sae == nullptr);
    }
    sae_config.precision = 3;
    CHECK(ne_sae_create(ctx, &sae_config, &sae) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("config.precision is 3; valid: 0 (fp32), 1 (tf32), 2 (bf16)"));
    sae_config.precision = NE_SAE_FP32;
    CHECK(ne_sae_create(ctx, &sae_config, &sae) == NE_OK);
    CHECK(ne_sae_destroy(sae) == NE_OK);

    // The capability query answers what creating would find out, without creating anything.
    CHECK(ne_capabilities_size() == sizeof(ne_capabilities));
    ne_capabilities caps{};
    CHECK(ne_context_capabilities(ctx, nullptr) == NE_ERR_INVALID_ARGUMENT);
    CHECK(ne_context_capabilities(ctx, &caps) == NE_OK);
    CHECK(caps.backend == NE_BACKEND_CPU && caps.sgemm == 1 && caps.max_shared_bytes == 0);
    CHECK(caps.sae_precisions == (1 << NE_SAE_FP32));
    CHECK(caps.sae_architectures == 0x3f && caps.toy_models == 0xf && caps.moe_noise == 0x7);  // every SAE architecture
    CHECK(ne_context_supports_sae(ctx, &sae_config) == NE_OK);
    sae_config.precision = NE_SAE_BF16;
    CHECK(ne_context_supports_sae(ctx, &sae_config) == NE_ERR_UNSUPPORTED);
    CHECK(mentions("config.precision is 2 (bf16)"));
    sae_config.precision = NE_SAE_FP32;
    sae_config.k = 0;
    CHECK(ne_context_supports_sae(ctx, &sae_config) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("config.k is 0"));
    CHECK(ne_context_supports_toy(ctx, &config) == NE_OK);
    config.batch_size = 0;
    CHECK(ne_context_supports_toy(ctx, &config) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("config.batch_size is 0"));
    CHECK(ne_context_supports_toy(nullptr, &config) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("ctx is null"));
    ne_moe_config moe_config{};
    CHECK(ne_context_supports_moe(ctx, &moe_config) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("config.expert_model is 0"));

    // Evaluation over no batches would divide by zero on every backend: both models refuse it up front.
    moe_config.expert_model = NE_TOY_RELU_OUTPUT;
    moe_config.optimizer = NE_OPTIMIZER_ADAMW;
    moe_config.n_features = 5;
    moe_config.expert_hidden = 2;
    moe_config.n_experts = 2;
    moe_config.top_k = 1;
    moe_config.n_instances = 2;
    moe_config.batch_size = 8;
    moe_config.lr = 1e-3f;
    moe_config.beta1 = 0.9f;
    moe_config.beta2 = 0.999f;
    moe_config.eps = 1e-8f;
    CHECK(ne_context_supports_moe(ctx, &moe_config) == NE_OK);
    ne_moe* moe = nullptr;
    CHECK(ne_moe_create(ctx, &moe_config, importance.data(), 10, probability.data(), 10, &moe) == NE_OK);
    std::vector<float> eval(2 * (NE_MOE_EVAL_FIELDS + 2));
    CHECK(ne_moe_evaluate(moe, 0, eval.data(), static_cast<int64_t>(eval.size())) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("batches is 0"));
    CHECK(ne_moe_evaluate(moe, 1, eval.data(), static_cast<int64_t>(eval.size())) == NE_OK);
    CHECK(ne_moe_destroy(moe) == NE_OK);
    CHECK(ne_context_destroy(ctx) == NE_OK);
    return ne_test::finish("test_abi");
}
