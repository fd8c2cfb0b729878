// Philox4x32-10 against the published known-answer vectors (Random123's kat_vectors), and the toy data stream's
// statistics: every feature non-zero with its probability, values uniform on [0, 1). The CPU's batch generator
// (vectorised where the machine allows) must equal the per-pair definition the CUDA kernels use, bit for bit.
#include <cstdio>
#include <cstring>
#include <vector>

#include "check.h"
#include "core/philox.h"
#include "models/toy.h"

using namespace ne;

static void known_answer(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1,
                         const uint32_t (&expected)[4]) {
    const Philox4 r = philox4x32_10(c0, c1, c2, c3, k0, k1);
    for (int j = 0; j < 4; ++j) {
        if (r.v[j] != expected[j]) std::printf("word %d: got %08x expected %08x\n", j, r.v[j], expected[j]);
        CHECK(r.v[j] == expected[j]);
    }
}

// toy_generate_batch against toy_feature_pair element by element, for widths around the vector width.
static void batch_matches_definition(int32_t model, int64_t n) {
    const ToyShape shape{model, n, 2, 3, 37, 0x1234567890abcdefull};
    std::vector<float> p(n), x(shape.batch * n);
    for (int64_t i = 0; i < n; ++i) p[i] = i == 0 ? 1.0f : 1.0f / static_cast<float>(1 + i % 7);
    const bool signed_inputs = toy_signed_inputs(model);
    toy_generate_batch(shape, p.data(), nullptr, Stream::kEvaluate, 11, 2, x.data());
    int64_t mismatches = 0;
    for (int64_t t = 0; t < shape.batch; ++t)
        for (int64_t pair = 0; 2 * pair < n; ++pair) {
            const int64_t i = 2 * pair;
            float x0, x1;
            toy_feature_pair(shape.seed, Stream::kEvaluate, 11, 2, static_cast<uint32_t>(t), static_cast<uint32_t>(pair),
                             p[i], i + 1 < n ? p[i + 1] : 0.0f, signed_inputs, x0, x1);
            mismatches += std::memcmp(&x0, &x[t * n + i], sizeof x0) != 0;
            if (i + 1 < n) mismatches += std::memcmp(&x1, &x[t * n + i + 1], sizeof x1) != 0;
        }
    if (mismatches != 0) std::printf("model %d n=%lld: %lld elements differ\n", model, (long long)n, (long long)mismatches);
    CHECK(mismatches == 0);
}

int main() {
    for (int32_t model : {NE_TOY_RELU_OUTPUT, NE_TOY_ABS_VALUE})
        for (int64_t n : {1, 2, 5, 15, 16, 17, 31, 100, 203}) batch_matches_definition(model, n);

    known_answer(0, 0, 0, 0, 0, 0, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
    known_answer(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu,
                 {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
    known_answer(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u,
                 {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});

    // Data stream: 5 features (odd n exercises the unpaired last one) with different probabilities.
    const ToyShape shape{NE_TOY_RELU_OUTPUT, 5, 2, 3, 4096, 1234};
    const float p[5] = {1.0f, 0.5f, 0.1f, 0.02f, 0.0f};
    std::vector<float> x(shape.batch * shape.n);
    std::vector<double> nonzero(5, 0.0), sum(5, 0.0);
    const int steps = 20;
    for (int step = 0; step < steps; ++step) {
        toy_generate_batch(shape, p, nullptr, Stream::kTrain, step, 1, x.data());
        for (int64_t t = 0; t < shape.batch; ++t)
            for (int i = 0; i < 5; ++i) {
                const float v = x[t * 5 + i];
                CHECK(v >= 0.0f && v < 1.0f);
                if (v != 0.0f) {
                    nonzero[i] += 1;
                    sum[i] += v;
                }
            }
    }
    const double samples = steps * static_cast<double>(shape.batch);
    for (int i = 0; i < 5; ++i) {
        const double rate = nonzero[i] / samples;
        const double sd = std::sqrt(p[i] * (1 - p[i]) / samples);
        std::printf("feature %d: p=%.3f measured %.4f", i, p[i], rate);
        CHECK(std::fabs(rate - p[i]) <= 5 * sd + 1e-12);
        if (nonzero[i] > 100) {
            const double mean = sum[i] / nonzero[i];
            std::printf(" mean %.4f", mean);
            CHECK(std::fabs(mean - 0.5) < 5 * std::sqrt(1.0 / 12.0 / nonzero[i]));
        }
        std::printf("\n");
    }
    // Streams are disjoint: train and evaluate batches at the same index differ; steps differ.
    std::vector<float> a(x.size()), b(x.size()), c(x.size());
    toy_generate_batch(shape, p, nullptr, Stream::kTrain, 3, 0, a.data());
    toy_generate_batch(shape, p, nullptr, Stream::kEvaluate, 3, 0, b.data());
    toy_generate_batch(shape, p, nullptr, Stream::kTrain, 4, 0, c.data());
    CHECK(a != b);
    CHECK(a != c);
    return ne_test::finish("test_philox");
}
