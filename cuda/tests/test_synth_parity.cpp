// The synthetic sampler's CUDA twin against the CPU through the C ABI: the same config on a CPU and a CUDA context
// gives the same bits, x and codes (dense and sparse), for every generator family (Sharkey independent and
// correlated; SynthSAEBench with its forest, exclusion, parent scaling and copula; the 16k preset's forest), over
// ranges in both streams and across the 2^32 boundary of the sample word. And an SAE step on the CUDA context that
// draws its batch on the device equals the same step on the batch drawn on the host and passed in. Skips (77)
// without a CUDA device.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "nativeengine.h"

namespace {

ne_synth_config sharkey(int32_t rank) {
    ne_synth_config c{};
    c.kind = NE_SYNTH_SHARKEY;
    c.n_features = 96;
    c.d = 20;
    c.decay = 0.98;
    c.active_mean = 6;
    c.correlation_rank = rank;
    c.seed = 11;
    c.ortho_chunk = 1024;
    return c;
}

ne_synth_config saebench() {
    ne_synth_config c{};
    ne_synth_preset_config(NE_SYNTH_PRESET_16K, &c);
    c.n_features = 300;
    c.d = 24;
    c.root_nodes = 3;  // 3 trees of 85 features and 45 free ones
    c.p_min = 0.01;
    c.correlation_rank = 6;
    c.ortho_steps = 3;
    c.ortho_lr = 1e-3;
    c.seed = 5;
    return c;
}

// The 16k preset's forest and copula with a small dictionary (the sampler's speed and bits do not depend on d).
ne_synth_config preset_forest() {
    ne_synth_config c{};
    ne_synth_preset_config(NE_SYNTH_PRESET_16K, &c);
    c.d = 8;
    c.ortho_steps = 0;
    return c;
}

struct Draw {
    std::vector<float> x, codes, value;
    std::vector<int64_t> row_begin;
    std::vector<int32_t> index;
};

Draw draw(ne_synth* synth, const ne_synth_config& c, int32_t stream, int64_t first, int64_t count) {
    Draw r;
    r.x.resize(count * c.d);
    r.codes.resize(count * c.n_features);
    CHECK(ne_synth_sample(synth, stream, first, count, r.x.data(), r.x.size(), r.codes.data(), r.codes.size()) == NE_OK);
    r.row_begin.resize(count + 1);
    int64_t total = 0;
    CHECK(ne_synth_sample_sparse(synth, stream, first, count, nullptr, 0, r.row_begin.data(), count + 1, nullptr, nullptr,
                                 0, &total) == NE_OK);
    r.index.resize(total);
    r.value.resize(total);
    CHECK(ne_synth_sample_sparse(synth, stream, first, count, nullptr, 0, r.row_begin.data(), count + 1, r.index.data(),
                                 r.value.data(), total, &total) == NE_OK);
    return r;
}

template <typename T>
bool same(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

void compare(ne_context* cpu, ne_context* cuda, const char* name, const ne_synth_config& c,
             std::vector<std::pair<int64_t, int64_t>> ranges) {
    ne_synth *a = nullptr, *b = nullptr;
    CHECK(ne_synth_create(cpu, &c, nullptr, 0, nullptr, 0, &a) == NE_OK);
    CHECK(ne_synth_create(cuda, &c, nullptr, 0, nullptr, 0, &b) == NE_OK);
    if (a == nullptr || b == nullptr) {
        std::printf("%s: %s\n", name, ne_last_error());
        return;
    }
    int64_t samples = 0, active = 0;
    for (int32_t stream : {NE_SYNTH_STREAM_TRAIN, NE_SYNTH_STREAM_EVALUATE})
        for (const auto& [first, count] : ranges) {
            const Draw on_cpu = draw(a, c, stream, first, count), on_cuda = draw(b, c, stream, first, count);
            const bool x = same(on_cpu.x, on_cuda.x), codes = same(on_cpu.codes, on_cuda.codes);
            const bool sparse = same(on_cpu.row_begin, on_cuda.row_begin) && same(on_cpu.index, on_cuda.index) &&
                                same(on_cpu.value, on_cuda.value);
            if (!(x && codes && sparse))
                std::printf("%s: stream %d, samples %lld + %lld: x %s, codes %s, sparse %s\n", name, stream,
                            static_cast<long long>(first), static_cast<long long>(count), x ? "equal" : "DIFFER",
                            codes ? "equal" : "DIFFER", sparse ? "equal" : "DIFFER");
            CHECK(x && codes && sparse);
            samples += count;
            active += on_cpu.row_begin[count];
        }
    std::printf("%s: %lld samples, %.2f active per sample, identical on both backends\n", name,
                static_cast<long long>(samples), static_cast<double>(active) / static_cast<double>(samples));
    CHECK(active > 0);
    ne_synth_destroy(a);
    ne_synth_destroy(b);
}

// On the CUDA context: the step drawing its batch on the device equals the step on the host-drawn batch.
void sae_draws_on_the_device(ne_context* cuda) {
    const ne_synth_config c = saebench();
    ne_synth* synth = nullptr;
    CHECK(ne_synth_create(cuda, &c, nullptr, 0, nullptr, 0, &synth) == NE_OK);
    ne_sae_config s{};
    s.architecture = NE_SAE_TOPK;
    s.d_in = c.d;
    s.d_sae = 64;
    s.k = 4;
    s.batch_size = 96;
    s.dead_window = 1000;
    s.auxk_alpha = 1.0f / 32;
    s.jump_bandwidth = 1e-3f;
    s.beta1 = 0.9f;
    s.beta2 = 0.999f;
    s.eps = 1e-8f;
    s.seed = 2;
    ne_sae *device = nullptr, *host = nullptr;
    CHECK(ne_sae_create(cuda, &s, &device) == NE_OK && ne_sae_create(cuda, &s, &host) == NE_OK);
    if (synth == nullptr || device == nullptr || host == nullptr) return;
    const float scale = 0.75f;
    std::vector<float> batch(s.batch_size * c.d);
    // The last step's batch crosses the 2^32 boundary of the sample word: drawn on the host in two runs.
    for (int64_t first : {int64_t{0}, int64_t{96}, int64_t{500}, (int64_t{1} << 32) - 40}) {
        ne_sae_stats a{}, b{};
        CHECK(ne_sae_train_step_synth(device, synth, first, scale, 1e-3f, &a) == NE_OK);
        CHECK(ne_synth_sample(synth, NE_SYNTH_STREAM_TRAIN, first, s.batch_size, batch.data(), batch.size(), nullptr,
                              0) == NE_OK);
        for (float& v : batch) v *= scale;
        CHECK(ne_sae_train_step(host, batch.data(), batch.size(), 1e-3f, &b) == NE_OK);
        CHECK(a.mse == b.mse && a.l0 == b.l0 && a.steps == b.steps);
    }
    auto params = [&](ne_sae* sae) {
        const int64_t d = s.d_in, m = s.d_sae;
        std::vector<float> all(2 * d * m + m + d);
        float* p = all.data();
        CHECK(ne_sae_get_params(sae, p, d * m, p + d * m, m, p + d * m + m, m * d, p + 2 * d * m + m, d, nullptr, 0) ==
              NE_OK);
        return all;
    };
    CHECK(same(params(device), params(host)));
    ne_sae_destroy(device);
    ne_sae_destroy(host);
    ne_synth_destroy(synth);
}

}  // namespace

int main() {
    ne_context *cpu = nullptr, *cuda = nullptr;
    if (ne_context_create(NE_BACKEND_CPU, 0, &cpu) != NE_OK) return 1;
    if (ne_context_create(NE_BACKEND_CUDA, 0, &cuda) != NE_OK) {
        std::printf("skipped: no CUDA device (%s)\n", ne_last_error());
        ne_context_destroy(cpu);
        return ne_test::kSkipped;
    }
    const int64_t edge = (int64_t{1} << 32) - 5;
    compare(cpu, cuda, "sharkey independent", sharkey(0), {{0, 64}, {1000, 37}, {edge, 10}});
    compare(cpu, cuda, "sharkey correlated", sharkey(4), {{0, 64}, {edge, 10}});
    compare(cpu, cuda, "synthsaebench reduced", saebench(), {{0, 200}, {77777, 33}, {edge, 10}});
    compare(cpu, cuda, "synthsaebench 16k forest", preset_forest(), {{0, 24}, {edge, 8}});
    sae_draws_on_the_device(cuda);
    ne_context_destroy(cuda);
    ne_context_destroy(cpu);
    return ne_test::finish("test_synth_parity");
}
