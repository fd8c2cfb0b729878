// Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"): a counter-based generator,
// so any element of any batch can be drawn independently, in any order, bit-identically on CPU and GPU.
#pragma once
#include <stdint.h>

#include "core/hostdevice.h"

namespace ne {

struct Philox4 {
    uint32_t v[4];
};

NE_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
    const uint64_t product = static_cast<uint64_t>(a) * b;
    hi = static_cast<uint32_t>(product >> 32);
    lo = static_cast<uint32_t>(product);
}

NE_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
    constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
    constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
// Fully unrolled, so a host loop over counters has straight-line code the compiler can vectorise.
#if defined(__CUDACC__)
#  pragma unroll
#elif defined(__GNUC__)
#  pragma GCC unroll 10
#endif
    for (int round = 0; round < 10; ++round) {
        uint32_t hi0, lo0, hi1, lo1;
        philox_mulhilo(kMul0, c0, hi0, lo0);
        philox_mulhilo(kMul1, c2, hi1, lo1);
        const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += kWeyl0;
        k1 += kWeyl1;
    }
    return Philox4{{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 random bits: exact in float, so CPU and GPU agree bit for bit.
NE_HD float uniform01(uint32_t bits) { return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f); }

// Streams are told apart by the top two bits of the last counter word.
enum class Stream : uint32_t { kTrain = 0u, kEvaluate = 2u, kInit = 3u };
constexpr uint32_t kMaxStreamIndex = (1u << 30) - 1u;

NE_HD uint32_t stream_word(Stream stream, uint32_t index) {
    return (static_cast<uint32_t>(stream) << 30) | (index & kMaxStreamIndex);
}

}  // namespace ne
