// ne_sgemm, the engine's GEMM (the SAE encoder's blocked kernel) through the C ABI: against a product in double
// on random non-square shapes with remainders in every blocking (rows of a register tile, macro blocks of rows,
// panel width), on one thread and on several (bitwise the same: each output's sum has one order), with sentinels
// around C; and its argument errors. `test_gemm --bench [size]` times it at size^3.
#include <omp.h>

#include <chrono>
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

bool mentions(const char* text) { return std::strstr(ne_last_error(), text) != nullptr; }

std::vector<float> random_matrix(int64_t count, std::mt19937_64& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> v(count);
    for (auto& e : v) e = normal(rng);
    return v;
}

// C = A B for one shape, checked element by element against double: |c - ref| <= 1e-5 + 1e-5 * sum_i |a_i b_i|
// (float accumulation over k terms).
void check_shape(ne_context* ctx, int64_t m, int64_t n, int64_t k, std::mt19937_64& rng) {
    const std::vector<float> A = random_matrix(m * k, rng), B = random_matrix(k * n, rng);
    constexpr int64_t kGuard = 16;
    constexpr float kSentinel = 12345.0f;
    std::vector<float> guarded(m * n + 2 * kGuard, kSentinel);
    float* C = guarded.data() + kGuard;
    CHECK(ne_sgemm(ctx, m, n, k, A.data(), m * k, B.data(), k * n, C, m * n) == NE_OK);
    int64_t bad = 0;
    for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < n; ++c) {
            double ref = 0, magnitude = 0;
            for (int64_t i = 0; i < k; ++i) {
                const double term = static_cast<double>(A[r * k + i]) * static_cast<double>(B[i * n + c]);
                ref += term;
                magnitude += std::fabs(term);
            }
            if (!ne_test::close(C[r * n + c], ref, 1e-5 + 1e-5 * magnitude, 0.0)) ++bad;
        }
    if (bad > 0) std::printf("  %lld x %lld x %lld: %lld elements off\n", (long long)m, (long long)n, (long long)k,
                             (long long)bad);
    CHECK(bad == 0);
    bool intact = true;
    for (int64_t g = 0; g < kGuard; ++g) intact = intact && guarded[g] == kSentinel && guarded[kGuard + m * n + g] == kSentinel;
    CHECK(intact);

    // The same product on one thread is bitwise the same.
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    std::vector<float> single(m * n);
    CHECK(ne_sgemm(ctx, m, n, k, A.data(), m * k, B.data(), k * n, single.data(), m * n) == NE_OK);
    omp_set_num_threads(threads);
    CHECK(std::memcmp(single.data(), C, m * n * sizeof(float)) == 0);
}

int bench(ne_context* ctx, int64_t size) {
    std::mt19937_64 rng(1);
    const std::vector<float> A = random_matrix(size * size, rng), B = random_matrix(size * size, rng);
    std::vector<float> C(size * size);
    ne_sgemm(ctx, size, size, size, A.data(), size * size, B.data(), size * size, C.data(), size * size);
    const auto start = std::chrono::steady_clock::now();
    int runs = 0;
    double seconds = 0;
    while (seconds < 2.0) {
        ne_sgemm(ctx, size, size, size, A.data(), size * size, B.data(), size * size, C.data(), size * size);
        ++runs;
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    std::printf("ne_sgemm %lld^3, %d threads: %.1f GFLOP/s\n", (long long)size, omp_get_max_threads(),
                2.0 * size * size * size * runs / seconds / 1e9);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    ne_context* ctx = nullptr;
    if (ne_context_create(NE_BACKEND_CPU, 0, &ctx) != NE_OK) {
        std::printf("no CPU context: %s\n", ne_last_error());
        return 1;
    }
    if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) {
        const int code = bench(ctx, argc > 2 ? std::atoll(argv[2]) : 2048);
        ne_context_destroy(ctx);
        return code;
    }

    std::mt19937_64 rng(7);
    // Tiny shapes, every remainder of the register tile (rows) and panel (columns), k = 1, then shapes past the
    // macro block of rows and several panels, large enough to run in parallel.
    const int64_t shapes[][3] = {{1, 1, 1},   {1, 7, 3},     {5, 1, 9},     {3, 17, 1},     {9, 49, 13},
                                 {13, 95, 31}, {17, 33, 64},  {65, 97, 129}, {130, 250, 70}, {257, 161, 300},
                                 {200, 1000, 96}};
    for (const auto& s : shapes) check_shape(ctx, s[0], s[1], s[2], rng);

    // Argument errors name what is wrong and leave C alone.
    std::vector<float> A(6, 1.0f), B(6, 1.0f), C(4, -1.0f);
    CHECK(ne_sgemm(ctx, 2, 2, 3, A.data(), 6, B.data(), 6, C.data(), 4) == NE_OK);
    CHECK(C[0] == 3.0f && C[3] == 3.0f);
    CHECK(ne_sgemm(ctx, 2, 2, 3, A.data(), 5, B.data(), 6, C.data(), 4) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("A has room for 5 floats; expected 6"));
    CHECK(ne_sgemm(ctx, 2, 2, 3, A.data(), 6, nullptr, 6, C.data(), 4) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("B is null"));
    CHECK(ne_sgemm(ctx, 2, 2, 3, A.data(), 6, B.data(), 6, C.data(), 6) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("C has room for 6"));
    CHECK(ne_sgemm(ctx, 0, 2, 3, A.data(), 0, B.data(), 6, C.data(), 0) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("m is 0"));
    CHECK(ne_sgemm(ctx, int64_t(1) << 40, int64_t(1) << 40, 3, A.data(), 6, B.data(), 6, C.data(), 4) ==
          NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("overflows"));
    CHECK(ne_sgemm(nullptr, 2, 2, 3, A.data(), 6, B.data(), 6, C.data(), 4) == NE_ERR_INVALID_ARGUMENT);
    CHECK(mentions("ctx is null"));

    ne_runtime_info runtime{};
    CHECK(ne_runtime_query(&runtime) == NE_OK);
    if (runtime.cuda_loaded && runtime.cuda_device_count > 0) {
        ne_context* cuda = nullptr;
        CHECK(ne_context_create(NE_BACKEND_CUDA, 0, &cuda) == NE_OK);
        CHECK(ne_sgemm(cuda, 2, 2, 3, A.data(), 6, B.data(), 6, C.data(), 4) == NE_ERR_UNSUPPORTED);
        ne_context_destroy(cuda);
    }
    ne_context_destroy(ctx);
    return ne_test::finish("test_gemm");
}
