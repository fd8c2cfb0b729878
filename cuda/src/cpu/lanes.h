// One sample per vector lane: what the CPU backend's blocked kernels (toy_blocked.cpp, moe_grouped.cpp) share.
// A block of kLanes samples is transposed so that feature i of every sample sits in one vector, xt [n][kLanes];
// then a broadcast weight times that vector is a full-width FMA, and each lane does exactly the arithmetic of its
// own sample, in the same order as a one-sample-at-a-time reference.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace ne::lanes {

constexpr int64_t kLanes = 16;  // samples per block: one AVX-512 register of floats

// kLanes values, one per sample, as one GCC/Clang vector: the compiler maps it to the widest registers the
// target has, with no intrinsics.
template <typename T>
struct LanesOf {
    typedef T type __attribute__((vector_size(kLanes * sizeof(T))));
};
template <typename T>
using Lanes = typename LanesOf<T>::type;

template <typename T>
inline Lanes<T> load(const T* p) {
    Lanes<T> v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <typename T>
inline void store(T* p, const Lanes<T>& v) {
    std::memcpy(p, &v, sizeof v);
}

template <typename T>
inline T lane_sum(const Lanes<T>& v) {
    T sum = T(0);
    for (int64_t l = 0; l < kLanes; ++l) sum += v[l];
    return sum;
}

template <typename T>
inline bool any_nonzero(const Lanes<T>& v) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
        __m512 r;
        std::memcpy(&r, &v, sizeof r);
        return _mm512_cmp_ps_mask(r, _mm512_setzero_ps(), _CMP_NEQ_UQ) != 0;
    }
#endif
    for (int64_t l = 0; l < kLanes; ++l)
        if (v[l] != T(0)) return true;
    return false;
}

inline int64_t round_up(int64_t v, int64_t multiple) { return (v + multiple - 1) / multiple * multiple; }

#if defined(__AVX512F__)
// The permutes of a 16 x 16 transpose: stage s swaps the off-diagonal b x b blocks (b = 8 >> s) of every 2b x 2b
// block, with two two-source permutes per pair of rows.
struct TransposePicks {
    int32_t low[4][16], high[4][16];
};
constexpr TransposePicks make_transpose_picks() {
    TransposePicks p{};
    for (int stage = 0; stage < 4; ++stage) {
        const int b = 8 >> stage;
        for (int j = 0; j < 16; ++j) {
            const int group = j / (2 * b) * (2 * b), offset = j % (2 * b);
            p.low[stage][j] = offset < b ? j : 16 + group + offset - b;
            p.high[stage][j] = offset < b ? group + b + offset : 16 + j;
        }
    }
    return p;
}
alignas(64) inline constexpr TransposePicks kTransposePicks = make_transpose_picks();

// Transposes 16 x 16 floats in registers.
inline void transpose16(__m512 (&r)[16]) {
#pragma GCC unroll 4
    for (int stage = 0; stage < 4; ++stage) {
        const int b = 8 >> stage;
        const __m512i pick_low = _mm512_load_si512(kTransposePicks.low[stage]);
        const __m512i pick_high = _mm512_load_si512(kTransposePicks.high[stage]);
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) {
            if ((i / b) % 2 != 0) continue;
            const __m512 a = r[i], c = r[i + b];
            r[i] = _mm512_permutex2var_ps(a, pick_low, c);
            r[i + b] = _mm512_permutex2var_ps(a, pick_high, c);
        }
    }
}
#endif

// xt[i][l] = rows[l][i] for the block's `count` samples (each a row of n values), zero in lanes past them.
template <typename T>
void transpose_rows(const T* const* rows, int64_t count, int64_t n, T* xt) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
        static_assert(kLanes == 16, "the tile transpose assumes 16 lanes");
        for (int64_t first = 0; first < n; first += 16) {
            const int64_t width = std::min<int64_t>(16, n - first);
            const __mmask16 inside = static_cast<__mmask16>((1u << width) - 1u);
            // Fully unrolled, so the 16 rows stay in registers.
            __m512 r[16];
#pragma GCC unroll 16
            for (int64_t l = 0; l < 16; ++l)
                r[l] = l < count ? _mm512_maskz_loadu_ps(inside, rows[l] + first) : _mm512_setzero_ps();
            transpose16(r);
#pragma GCC unroll 16
            for (int64_t j = 0; j < 16; ++j)
                if (j < width) _mm512_storeu_ps(xt + (first + j) * kLanes, r[j]);
        }
        return;
    }
#endif
    for (int64_t i = 0; i < n; ++i)
        for (int64_t l = 0; l < kLanes; ++l) xt[i * kLanes + l] = l < count ? rows[l][i] : T(0);
}

// The same for rows n apart in one array: xt[i][l] = x[l][i].
template <typename T>
void transpose_block(const T* x, int64_t count, int64_t n, T* xt) {
    const T* rows[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) rows[l] = x + std::min(l, std::max<int64_t>(count - 1, 0)) * n;
    transpose_rows(rows, count, n, xt);
}

// The way back: rows[l][i] = xt[i][l] for the first `count` lanes, i < n; each row has room for n rounded up to
// kLanes values, and the ones past n are written as zero.
template <typename T>
void transpose_to_rows(const T* xt, int64_t count, int64_t n, T* const* rows) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
        for (int64_t first = 0; first < n; first += 16) {
            const int64_t width = std::min<int64_t>(16, n - first);
            __m512 r[16];
#pragma GCC unroll 16
            for (int64_t j = 0; j < 16; ++j)
                r[j] = j < width ? _mm512_loadu_ps(xt + (first + j) * kLanes) : _mm512_setzero_ps();
            transpose16(r);
#pragma GCC unroll 16
            for (int64_t l = 0; l < 16; ++l)
                if (l < count) _mm512_storeu_ps(rows[l] + first, r[l]);
        }
        return;
    }
#endif
    const int64_t padded = round_up(n, kLanes);
    for (int64_t l = 0; l < count; ++l)
        for (int64_t i = 0; i < padded; ++i) rows[l][i] = i < n ? xt[i * kLanes + l] : T(0);
}

}  // namespace ne::lanes
