// The synthetic generator through the C ABI (ne_synth_*): the 16k preset's values, config errors naming the field,
// sample ranges that are reproducible and resumable (a range equals the concatenation of its parts, in any order,
// across the 2^32 boundary of the sample word; sparse codes equal the dense ones; x = codes W + b), the ground truth
// read back and given back, the streams disjoint, and an SAE step on the generator's batch equal to the same step on
// the batch passed in by hand.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "nativeengine.h"

namespace {

bool mentions(const char* text) { return std::strstr(ne_last_error(), text) != nullptr; }

// A reduced SynthSAEBench: 4 trees of branching 3, depth 2 (52 features) and free ones, copula rank 4.
ne_synth_config small_config() {
    ne_synth_config c{};
    ne_synth_preset_config(NE_SYNTH_PRESET_16K, &c);
    c.n_features = 96;
    c.d = 12;
    c.root_nodes = 4;
    c.branching_min = c.branching_max = 3;
    c.max_depth = 2;
    c.p_min = 0.01;
    c.correlation_rank = 4;
    c.ortho_steps = 5;
    c.ortho_lr = 1e-3;
    c.seed = 5;
    return c;
}

template <typename T>
bool same(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

void preset_and_errors() {
    CHECK(ne_synth_config_size() == sizeof(ne_synth_config));
    ne_synth_config c{};
    CHECK(ne_synth_preset_config(NE_SYNTH_PRESET_16K, &c) == NE_OK);
    CHECK(c.kind == NE_SYNTH_SAEBENCH && c.n_features == 16384 && c.d == 768 && c.seed == 42);
    CHECK(c.zipf_exponent == 0.5 && c.p_min == 5e-4 && c.p_max == 0.4);
    CHECK(c.root_nodes == 128 && c.branching_min == 4 && c.branching_max == 4 && c.max_depth == 3);
    CHECK(c.me_portion == 1.0 && c.me_min_depth == 0 && c.me_max_depth == -1 && c.compensate == 1 &&
          c.scale_children == 1);
    CHECK(c.correlation_rank == 25 && c.correlation_scale == 0.1 && c.bias_norm == 0.5);
    CHECK(c.mean_start == 5.0 && c.mean_end == 4.0 && c.std_mean == 0.5 && c.std_std == 0.5);
    CHECK(c.ortho_steps == 100 && c.ortho_lr == 3e-4);
    CHECK(ne_synth_check(&c) == NE_OK);
    CHECK(ne_synth_preset_config(3, &c) == NE_ERR_INVALID_ARGUMENT && mentions("preset is 3"));
    CHECK(ne_synth_check(nullptr) == NE_ERR_INVALID_ARGUMENT && mentions("config is null"));

    ne_synth_config bad = small_config();
    bad.p_min = 0.5;
    CHECK(ne_synth_check(&bad) == NE_ERR_INVALID_ARGUMENT && mentions("p_min, p_max"));
    bad = small_config();
    bad.kind = 7;
    CHECK(ne_synth_check(&bad) == NE_ERR_INVALID_ARGUMENT && mentions("kind is 7"));
    bad = small_config();
    bad.branching_min = 1;
    CHECK(ne_synth_check(&bad) == NE_ERR_INVALID_ARGUMENT && mentions("branching"));
    bad = small_config();
    bad.compensate = 2;
    CHECK(ne_synth_check(&bad) == NE_ERR_INVALID_ARGUMENT && mentions("compensate is 2"));
    CHECK(ne_synth_destroy(nullptr) == NE_OK);
}

void sampling(ne_context* ctx) {
    const ne_synth_config c = small_config();
    const int64_t n = c.n_features, d = c.d;
    ne_synth* synth = nullptr;
    CHECK(ne_synth_create(ctx, &c, nullptr, 0, nullptr, 0, &synth) == NE_OK);
    if (synth == nullptr) return;

    // A range equals its parts drawn separately and in another order.
    const int64_t count = 40;
    std::vector<float> x(count * d), codes(count * n), part(count * d);
    CHECK(ne_synth_sample(synth, NE_SYNTH_STREAM_TRAIN, 100, count, x.data(), x.size(), codes.data(), codes.size()) == NE_OK);
    CHECK(ne_synth_sample(synth, NE_SYNTH_STREAM_TRAIN, 125, 15, part.data() + 25 * d, 15 * d, nullptr, 0) == NE_OK);
    CHECK(ne_synth_sample(synth, NE_SYNTH_STREAM_TRAIN, 100, 25, part.data(), 25 * d, nullptr, 0) == NE_OK);
    CHECK(same(x, part));

    // The truth: unit rows, a bias of norm 0.5, a forest, and x = codes W + b.
    std::vector<float> W(n * d), b(d), p(n), fire(n), mean(n), stddev(n);
    std::vector<int32_t> parent(n), flags(n);
    CHECK(ne_synth_get_truth(synth, W.data(), W.size(), b.data(), b.size(), p.data(), n, fire.data(), n, parent.data(),
                             n, flags.data(), n, mean.data(), n, stddev.data(), n) == NE_OK);
    double worst_norm = 0, bias = 0;
    for (int64_t i = 0; i < n; ++i) {
        double squared = 0;
        for (int64_t j = 0; j < d; ++j) squared += double(W[i * d + j]) * W[i * d + j];
        worst_norm = std::fmax(worst_norm, std::fabs(std::sqrt(squared) - 1));
    }
    for (float v : b) bias += double(v) * v;
    CHECK(worst_norm < 1e-5);
    CHECK(ne_test::close(std::sqrt(bias), 0.5, 1e-5, 0));
    int64_t roots = 0, children = 0, exclusive = 0;
    for (int64_t i = 0; i < n; ++i) {
        roots += parent[i] < 0 && i < 4;
        children += parent[i] >= 0;
        exclusive += (flags[i] & 1) != 0;
    }
    CHECK(roots == 4 && children == 4 * 3 + 4 * 9 && exclusive == 4 + 12);
    CHECK(p[0] == static_cast<float>(c.p_max) && fire[4] > p[4] && mean[0] == 5.0f && stddev[0] > 0);
    double worst = 0;
    for (int64_t t = 0; t < count; ++t)
        for (int64_t j = 0; j < d; ++j) {
            double v = b[j];
            for (int64_t i = 0; i < n; ++i) v += double(codes[t * n + i]) * W[i * d + j];
            worst = std::fmax(worst, std::fabs(v - x[t * d + j]));
        }
    CHECK(worst < 1e-4);

    // Sparse codes: the same samples, the same x; too small a capacity writes the offsets and the total only.
    std::vector<int64_t> row_begin(count + 1);
    std::vector<float> x_sparse(count * d);
    int64_t total = -1;
    CHECK(ne_synth_sample_sparse(synth, NE_SYNTH_STREAM_TRAIN, 100, count, x_sparse.data(), x_sparse.size(),
                                 row_begin.data(), count + 1, nullptr, nullptr, 0, &total) == NE_OK);
    CHECK(total > 0 && row_begin[count] == total && same(x, x_sparse));
    std::vector<int32_t> index(total);
    std::vector<float> value(total);
    CHECK(ne_synth_sample_sparse(synth, NE_SYNTH_STREAM_TRAIN, 100, count, nullptr, 0, row_begin.data(), count + 1,
                                 index.data(), value.data(), total, &total) == NE_OK);
    bool match = true;
    int64_t dense_active = 0;
    for (int64_t t = 0; t < count; ++t) {
        for (int64_t i = 0; i < n; ++i) dense_active += codes[t * n + i] > 0;
        for (int64_t e = row_begin[t]; e < row_begin[t + 1]; ++e)
            match = match && value[e] > 0 && codes[t * n + index[e]] == value[e] &&
                    (e == row_begin[t] || index[e] > index[e - 1]);
    }
    CHECK(match && dense_active == total);

    // Across the 2^32 boundary of the sample word: one call equals two.
    const int64_t edge = (int64_t{1} << 32) - 3;
    std::vector<float> across(6 * d), halves(6 * d);
    CHECK(ne_synth_sample(synth, NE_SYNTH_STREAM_TRAIN, edge, 6, across.data(), across.size(), nullptr, 0) == NE_OK);
    CHECK(ne_synth_sample(synth, NE_SYNTH_STREAM_TRAIN, edge, 3, halves.data(), 3 * d, nullptr, 0) == NE_OK);
    CHECK(ne_synth_sample(synth, NE_SYNTH_STREAM_TRAIN, edge + 3, 3, halves.data() + 3 * d, 3 * d, nullptr, 0) == NE_OK);
    CHECK(same(across, halves));

    // The evaluation stream is another stream.
    std::vector<float> other(count * d);
    CHECK(ne_synth_sample(synth, NE_SYNTH_STREAM_EVALUATE, 100, count, other.data(), other.size(), nullptr, 0) == NE_OK);
    CHECK(!same(x, other));

    // The truth given back (as read from a file) samples the same bytes without building the dictionary again.
    ne_synth* again = nullptr;
    CHECK(ne_synth_create(ctx, &c, W.data(), W.size(), b.data(), b.size(), &again) == NE_OK);
    std::vector<float> x_again(count * d);
    CHECK(ne_synth_sample(again, NE_SYNTH_STREAM_TRAIN, 100, count, x_again.data(), x_again.size(), nullptr, 0) == NE_OK);
    CHECK(same(x, x_again));
    ne_synth_destroy(again);

    // Argument errors name the argument.
    CHECK(ne_synth_sample(synth, 5, 0, 1, x.data(), d, nullptr, 0) == NE_ERR_INVALID_ARGUMENT && mentions("stream is 5"));
    CHECK(ne_synth_sample(synth, 0, -1, 1, x.data(), d, nullptr, 0) == NE_ERR_INVALID_ARGUMENT && mentions("first_sample"));
    CHECK(ne_synth_sample(synth, 0, 0, 2, x.data(), d, nullptr, 0) == NE_ERR_INVALID_ARGUMENT && mentions("x has"));
    CHECK(ne_synth_sample(synth, 0, 0, 0, x.data(), 0, nullptr, 0) == NE_ERR_INVALID_ARGUMENT && mentions("count is 0"));
    CHECK(ne_synth_create(ctx, &c, W.data(), 3, b.data(), b.size(), &again) == NE_ERR_INVALID_ARGUMENT && mentions("W has"));
    CHECK(ne_synth_get_truth(synth, W.data(), 5, nullptr, 0, nullptr, 0, nullptr, 0, nullptr, 0, nullptr, 0, nullptr, 0,
                             nullptr, 0) == NE_ERR_INVALID_ARGUMENT && mentions("W has"));
    ne_synth_destroy(synth);
}

// ne_sae_train_step_synth is ne_sae_train_step on the generator's batch, scaled: identical parameters.
void sae_from_synth(ne_context* ctx) {
    ne_synth_config c{};
    c.kind = NE_SYNTH_SHARKEY;
    c.n_features = 48;
    c.d = 16;
    c.decay = 0.99;
    c.active_mean = 4;
    c.correlation_rank = 2;
    c.seed = 9;
    c.ortho_chunk = 1024;
    ne_synth* synth = nullptr;
    CHECK(ne_synth_create(ctx, &c, nullptr, 0, nullptr, 0, &synth) == NE_OK);
    if (synth == nullptr) return;

    ne_sae_config s{};
    s.architecture = NE_SAE_TOPK;
    s.d_in = 16;
    s.d_sae = 32;
    s.k = 3;
    s.batch_size = 64;
    s.dead_window = 1000;
    s.auxk_alpha = 1.0f / 32;
    s.jump_bandwidth = 1e-3f;
    s.beta1 = 0.9f;
    s.beta2 = 0.999f;
    s.eps = 1e-8f;
    s.seed = 3;
    ne_sae *a = nullptr, *b = nullptr;
    CHECK(ne_sae_create(ctx, &s, &a) == NE_OK && ne_sae_create(ctx, &s, &b) == NE_OK);
    const float scale = 1.5f;
    std::vector<float> batch(64 * 16);
    for (int step = 0; step < 3; ++step) {
        const int64_t first = 64 * (step + 1);
        ne_sae_stats sa{}, sb{};
        CHECK(ne_sae_train_step_synth(a, synth, first, scale, 1e-3f, &sa) == NE_OK);
        CHECK(ne_synth_sample(synth, NE_SYNTH_STREAM_TRAIN, first, 64, batch.data(), batch.size(), nullptr, 0) == NE_OK);
        for (float& v : batch) v *= scale;
        CHECK(ne_sae_train_step(b, batch.data(), batch.size(), 1e-3f, &sb) == NE_OK);
        CHECK(sa.mse == sb.mse && sa.steps == sb.steps);
    }
    auto params = [](ne_sae* sae) {
        std::vector<float> all(2 * 16 * 32 + 32 + 16);
        float* p = all.data();
        CHECK(ne_sae_get_params(sae, p, 16 * 32, p + 512, 32, p + 544, 16 * 32, p + 1056, 16, nullptr, 0) == NE_OK);
        return all;
    };
    CHECK(same(params(a), params(b)));

    CHECK(ne_sae_train_step_synth(a, synth, 0, 0.0f, 1e-3f, nullptr) == NE_ERR_INVALID_ARGUMENT && mentions("scale is"));
    CHECK(ne_sae_train_step_synth(a, nullptr, 0, 1.0f, 1e-3f, nullptr) == NE_ERR_INVALID_ARGUMENT && mentions("synth is null"));
    s.d_in = 8;
    ne_sae* narrow = nullptr;
    CHECK(ne_sae_create(ctx, &s, &narrow) == NE_OK);
    CHECK(ne_sae_train_step_synth(narrow, synth, 0, 1.0f, 1e-3f, nullptr) == NE_ERR_INVALID_ARGUMENT &&
          mentions("d is 16"));
    ne_sae_destroy(narrow);
    ne_sae_destroy(a);
    ne_sae_destroy(b);
    ne_synth_destroy(synth);
}

}  // namespace

int main() {
    ne_context* ctx = nullptr;
    if (ne_context_create(NE_BACKEND_CPU, 0, &ctx) != NE_OK) {
        std::printf("no CPU context: %s\n", ne_last_error());
        return 1;
    }
    preset_and_errors();
    sampling(ctx);
    sae_from_synth(ctx);
    ne_context_destroy(ctx);
    return ne_test::finish("test_synth_abi");
}
