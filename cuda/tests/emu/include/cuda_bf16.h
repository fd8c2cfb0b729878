// Emulated cuda_bf16.h: the bfloat16 storage type and its conversions (round to nearest even, as the device's
// cvt.rn.bf16.f32), for .cu files compiled by the emulated tier (see cuda_runtime.h).
#pragma once
#include <stdint.h>
#include <string.h>

struct __nv_bfloat16 {
    uint16_t __x;

    __nv_bfloat16() = default;
    __nv_bfloat16(float f) {  // NOLINT: implicit, as the toolkit's type
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        if ((bits & 0x7fffffffu) > 0x7f800000u) {
            __x = static_cast<uint16_t>((bits >> 16) | 0x0040u);  // NaN stays NaN (quiet)
        } else {
            bits += 0x7fffu + ((bits >> 16) & 1u);
            __x = static_cast<uint16_t>(bits >> 16);
        }
    }
    operator float() const {
        const uint32_t bits = static_cast<uint32_t>(__x) << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
};
typedef __nv_bfloat16 nv_bfloat16;

inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return static_cast<float>(b); }
