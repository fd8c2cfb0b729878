// Sparse-autoencoder training on the GPU: the CUDA twin of the CPU fast path (cpu/sae_blocked.cpp, whose
// mathematics models/sae.h defines), tested against it by cuda/tests/test_sae_parity.cpp. One step on x [B][d]:
//
//  encode    xc = x - b_dec, then per chunk of C latents (C = min(m, 8192), fewer when B * C would pass 2^28
//            floats): U = xc W_enc[:, chunk] + b_enc, the GEMM on cuBLAS (fp32, tf32, or bf16 inputs with fp32
//            accumulation), and each token's selection updated from the chunk:
//              topk, batchtopk   a running list of the token's best `cap` latents (topk: cap = k), merged with the
//                                chunk by an exact radix select on the key (value, then lower latent index);
//              AuxK              the same running merge over dead latents only, cap = k_aux'; matryoshka's
//                                per-level AuxK keeps one such list per level (its own dead latents), the token's
//                                lists then being `terms` virtual tokens v = t * terms + l;
//              relu, jumprelu,   the latents above a per-latent cut are appended (0, theta - eps/2, the inference
//              batchtopk (inf.)  threshold); a token past `cap` keeps counting and the encode runs again with room.
//            So [B][m] is never stored. Every list stays sorted by latent index.
//            batchtopk (training) then takes the k*B best of all tokens' candidates: a stable radix sort of
//            (value, position) pairs, positions in flat-index order, gives the CPU's tie-break (lower t*m + j).
//            This is exact as long as no token had all its `cap` candidates kept (it may then hold more of the
//            best): in that case cap doubles and the encode runs again, as on the CPU.
//  decode    one block per token: x^ = b_dec + sum over its list of z W_dec[j], in list order; squared error,
//            d loss/d x^ = 2 (x^ - x) / B, the sparsity and L0 sums; AuxK's residual the same way. Matryoshka:
//            each inner level's x^_l the same way over the listed latents below its width, and level_dx, what a
//            latent first held by level l sees in place of dxhat (sae.h; the CPU fast path's ws.level_dx).
//  backward  d loss/d z per slot (one warp per dot product); the slots (then AuxK's) are bucketed by latent with a
//            stable radix sort, so each latent's entries are in the CPU's order (main slots by token, then AuxK's),
//            and one block per latent sums its W_dec row, encoder column (as a row of gWencT [m][d], transposed
//            afterwards), b_enc and jumprelu threshold gradients over its own entries; b_dec from column sums.
//  optimizer decoder-gradient projection, Adam (dense, or the latents that fired plus b_dec), renormalisation of
//            the decoder rows, tokens_since_fired.
//  matching_pursuit has no encoder: its encode (the pursuit, then its codes as the lists above) and backward are
//            sae_pursuit_cuda.cu's; the decode, statistics and optimizer are the ones here.
//
// Determinism: every floating-point sum has one fixed order (a thread's own loop, fixed-shape tree reductions,
// sequential sums over sorted entries); atomics only count integers. cuBLAS GEMMs are deterministic for a fixed
// device and shape. So a run repeats bit for bit on one GPU; it differs from the CPU by summation order and
// FMA contraction, which the parity test's tolerances cover.
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <memory>
#include <string>

#include "core/nvtx.h"
#include "cuda/cuda_check.h"
#include "cuda/device_arena.h"
#include "cuda/sae_cuda.h"
#include "cuda/sae_device.h"
#include "cuda/sae_pursuit_cuda.h"
#include "cuda/synth_cuda.h"
#include "models/optimizer.h"
#include "models/toy_common.h"

namespace ne::cuda {

// One SAE's tensors on the device, in SaeTensors order; log_threshold is null unless jumprelu.
struct SaeDeviceTensors {
    float *W_enc, *b_enc, *W_dec, *b_dec, *log_threshold;  // [d][m], [m], [m][d], [d], [m]
};

// What a batch's kernels report to the host, summed in fixed order.
struct SaeDeviceStats {
    double sse, sparsity, l0, variance;  // sums over the batch
    double aux_num[kSaeMaxLevels];       // AuxK, per term: sum ||e - e^||^2
    double aux_den[kSaeMaxLevels];       //                sum ||e||^2
    double min_kept;                     // batchtopk: smallest positive kept code
    unsigned long long dead;             // dead latents
    unsigned long long dead_term[kSaeMaxLevels];  // dead latents of each AuxK term
    int32_t max_count;                   // largest list a token needed (threshold architectures)
    int32_t saturated;                   // batchtopk: some token had every candidate kept
    int32_t non_finite_rows;             // some decoder row's norm was not finite after the update
};

// Per-batch buffers sized by the token count (and k_aux): one allocation.
struct SaeTokenBuffers {
    DeviceArena arena;
    int64_t tokens = 0, kaux = 0;               // what it was sized for
    float *x, *xc, *U, *x_hat, *dxhat;          // [T][d] each, U [T][chunk_for(T)]
    float* dehat;                               // [T][terms][d]: d loss/d e^ of each AuxK term
    float* level_dx;                            // matryoshka: [inner levels][T][d]
    float* level_e;                             // per-level AuxK: [inner levels][T][d], x - x^_l
    __nv_bfloat16* xc_bf16;                     // [T][d], bf16 precision only
    float* aux_u[2];                            // [T][kaux] AuxK lists ([T][terms][ka]), double-buffered
    int32_t* aux_idx[2];
    float* aux_dz;                              // [T][kaux]
    int32_t *aux_count, *count;                 // [T][terms], [T]
    double *token_stats, *aux_stats;            // [T][3], [T][terms][2]
    double *column_partial, *feature_mean, *feature_var;  // [T / kTokenTile][d], [d], [d]
};

// Per-batch buffers sized by tokens * cap (the main lists and the sorts): one allocation.
struct SaeSlotBuffers {
    DeviceArena arena;
    int64_t tokens = 0, cap = 0, kaux = 0;
    float* list_u[2];      // [T][cap], double-buffered
    int32_t* list_idx[2];  // [T][cap]
    float* slot_dz;        // [T][cap]
    uint8_t* kept;         // [T][cap]
    uint32_t *keys, *keys_sorted;  // [T * (cap + kaux)]
    int32_t *values, *values_sorted;
};

}  // namespace ne::cuda

struct ne_cuda_sae {
    int32_t device;
    ne::SaeSpec spec;
    int32_t precision;  // ne_sae_precision
    int64_t chunk;      // latents per encoder pass (at most)
    int64_t cap;        // slots per token of the threshold and batchtopk lists, kept across steps (grows)
    cudaStream_t stream;
    cublasHandle_t blas;
    ne::cuda::DeviceArena arena;  // everything below except the per-batch buffers and CUB's scratch
    ne::cuda::SaeDeviceTensors params, grads, moment1, moment2;
    int64_t *since_fired, *fire_count;  // [m]
    uint8_t* dead;                      // [m]
    float *theta, *cut, *row_norm, *enc_sum;  // [m]
    float* gWencT;                            // [m][d]
    __nv_bfloat16* W_enc_bf16;                // [d][m], bf16 precision only
    int32_t *latent_count, *latent_begin;     // [m + 1]
    ne::cuda::SaeDeviceStats* stats;
    ne::cuda::SaeTokenBuffers tokens;
    ne::cuda::SaeSlotBuffers slots;
    ne::cuda::DeviceArena temp;  // CUB's temporary storage
    ne::cuda::PursuitBuffers pursuit;  // matching_pursuit (sae_pursuit_cuda.h)
};

namespace ne::cuda {
namespace {

constexpr int64_t kDefaultChunk = 8192;
constexpr int64_t kMaxChunkFloats = int64_t(1) << 28;  // bound on B * C, the chunk's pre-activations

// ---- device helpers ------------------------------------------------------------------------------------------

// A float's bits as an unsigned integer of the same order (-0 ranks as +0, as the CPU's comparisons have it).
__device__ __forceinline__ uint32_t ordered_bits(float v) {
    const uint32_t b = __float_as_uint(v == 0.0f ? 0.0f : v);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// The rank of (value, latent): larger value first, then the lower latent index. Unique per latent.
__device__ __forceinline__ uint64_t rank_key(float u, int32_t j) {
    return (static_cast<uint64_t>(ordered_bits(u)) << 32) | static_cast<uint64_t>(0xffffffffu - static_cast<uint32_t>(j));
}

__device__ __forceinline__ float code_of(float u, int32_t j, bool jump, const float* theta) {
    return jump ? (u > theta[j] ? u : 0.0f) : (u > 0.0f ? u : 0.0f);
}

// Matryoshka's nested widths as kernels take them (by value); inner = 0 for the other architectures.
struct Levels {
    int inner;                     // levels besides the full one
    int64_t widths[kSaeMaxLevels];
};

Levels levels_of(const SaeSpec& spec) {
    Levels l{};
    l.inner = spec.inner_levels();
    for (int q = 0; q < l.inner; ++q) l.widths[q] = spec.widths[q];
    return l;
}

// AuxK's terms as kernels take them (sae.h): one over every latent, or one per matryoshka level (level_auxk), term
// l over the latents [l > 0 ? end[l - 1] : 0, end[l]), keeping cap[l] codes per token, weighted alpha[l].
struct AuxTerms {
    int n;
    int64_t end[kSaeMaxLevels];
    int64_t cap[kSaeMaxLevels];
    float alpha[kSaeMaxLevels];
};

AuxTerms aux_terms_of(const SaeSpec& spec) {
    AuxTerms a{};
    a.n = spec.aux_levels();
    for (int l = 0; l < a.n; ++l) a.end[l] = spec.aux_end(l);
    return a;
}

__host__ __device__ __forceinline__ int term_of(const AuxTerms& a, int64_t j) {
    int l = 0;
    while (l + 1 < a.n && j >= a.end[l]) ++l;
    return l;
}

// d loss/d x^ as latent j of token t sees it: dxhat, or for matryoshka its first level's row of level_dx.
__device__ __forceinline__ const float* dx_row(const Levels& lv, const float* dxhat, const float* level_dx, int64_t T,
                                               int64_t d, int64_t t, int64_t j) {
    int l = 0;
    while (l < lv.inner && j >= lv.widths[l]) ++l;
    return l < lv.inner ? level_dx + (l * T + t) * d : dxhat + t * d;
}


// ---- encoder and selection -----------------------------------------------------------------------------------

struct SetupArgs {
    int64_t m;
    bool jump, relu;
    float eps, threshold;          // jumprelu bandwidth; batchtopk inference threshold
    const float* log_threshold;    // [m] jumprelu
    const int64_t* since_fired;    // [m] or null (no latent is dead)
    int64_t dead_window;
    float *theta, *cut;            // [m]
    uint8_t* dead;                 // [m]
    AuxTerms terms;                // counts each term's dead latents
    SaeDeviceStats* stats;
};

// theta (jumprelu), the cut of the threshold architectures (a latent is listed when u > cut) and the dead mask.
__global__ void latent_setup_kernel(SetupArgs a) {
    for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < a.m; j += int64_t(gridDim.x) * blockDim.x) {
        if (a.jump) {
            const float theta = expf(a.log_threshold[j]);
            a.theta[j] = theta;
            a.cut[j] = theta - a.eps / 2;
        } else {
            a.cut[j] = a.relu ? 0.0f : a.threshold;
        }
        const bool dead = a.since_fired != nullptr && a.since_fired[j] >= a.dead_window;
        a.dead[j] = dead ? 1 : 0;
        if (dead) {
            atomicAdd(&a.stats->dead, 1ull);
            atomicAdd(&a.stats->dead_term[term_of(a.terms, j)], 1ull);
        }
    }
}

// xc = x - b_dec, and its bf16 copy when xc_bf16 is not null.
__global__ void center_kernel(const float* x, const float* b_dec, int64_t T, int64_t d, float* xc,
                              __nv_bfloat16* xc_bf16) {
    for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < T * d; e += int64_t(gridDim.x) * blockDim.x) {
        const float v = x[e] - b_dec[e % d];
        xc[e] = v;
        if (xc_bf16 != nullptr) xc_bf16[e] = __float2bfloat16(v);
    }
}

__global__ void to_bf16_kernel(const float* in, int64_t n, __nv_bfloat16* out) {
    for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x)
        out[e] = __float2bfloat16(in[e]);
}

// ||W_dec[j]||, one warp per row (relu's L1 weights).
__global__ void row_norm_kernel(const float* W_dec, int64_t m, int64_t d, float* row_norm) {
    const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
    const int lane = threadIdx.x % 32;
    for (int64_t j = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; j < m; j += warps) {
        float sq = 0.0f;
        for (int64_t i = lane; i < d; i += 32) sq += W_dec[j * d + i] * W_dec[j * d + i];
        sq = warp_sum(sq);
        if (lane == 0) row_norm[j] = sqrtf(sq);
    }
}

struct ChunkArgs {
    const float* U;        // [T][width] pre-activations of latents j0 .. j0 + width - 1, without b_enc
    int64_t j0;
    int32_t width;
    const float* b_enc;    // [m]
    const uint8_t* mask;   // [m]: only latents with mask[j] are candidates (AuxK's dead latents); null: all
    const float* cut;      // [m] append: the cut
    const float* in_u;     // [T][cap] merge: the current lists
    const int32_t* in_idx;
    float* out_u;          // [T][cap]
    int32_t* out_idx;
    int32_t* count;        // [T] entries in each list (read, then written)
    int64_t cap;           // slots per list
    // AuxK per term (grid.y = terms.n): list v = t * terms.n + l keeps terms.cap[l] of term l's latents.
    bool per_term;
    AuxTerms terms;
};

typedef cub::BlockScan<int, kThreads> BlockScan;

// One block per token: the token's best min(cap, candidates) of its current list and the chunk, by rank_key,
// written in candidate order (the list, then the chunk: still sorted by latent). The cap-th best key is found
// by a radix select, 8 bits at a time from the top, stopping as soon as every key sharing the known prefix is
// kept; keys are unique, so the selection is exact.
__global__ void __launch_bounds__(kThreads) merge_best_kernel(ChunkArgs a) {
    __shared__ typename BlockScan::TempStorage scan;
    __shared__ int hist[256];
    __shared__ int s_present, s_digit, s_remaining, s_done;
    const int64_t t = blockIdx.x, l = blockIdx.y, v = t * gridDim.y + l;  // v: the list
    const int tid = threadIdx.x;
    const int held = a.count[v];
    const int n = held + a.width;
    const float* in_u = a.in_u + v * a.cap;
    const int32_t* in_idx = a.in_idx + v * a.cap;
    const float* U = a.U + t * a.width;
    const int64_t capacity = a.per_term ? a.terms.cap[l] : a.cap;
    const int64_t lo = a.per_term && l > 0 ? a.terms.end[l - 1] : 0, hi = a.per_term ? a.terms.end[l] : INT64_MAX;
    auto fetch = [&](int c, float& u, int32_t& j) -> bool {
        if (c < held) {
            u = in_u[c];
            j = in_idx[c];
            return true;
        }
        j = static_cast<int32_t>(a.j0 + (c - held));
        if (j < lo || j >= hi) return false;
        if (a.mask != nullptr && !a.mask[j]) return false;
        u = U[c - held] + a.b_enc[j];
        return true;
    };

    if (tid == 0) s_present = 0;
    __syncthreads();
    int mine = 0;
    for (int c = tid; c < n; c += kThreads) {
        float u;
        int32_t j;
        mine += fetch(c, u, j) ? 1 : 0;
    }
    atomicAdd(&s_present, mine);
    __syncthreads();
    const int present = s_present;
    const int want = present < capacity ? present : static_cast<int>(capacity);
    uint64_t prefix = 0, known = 0;  // the want-th best key has `prefix` on the bits of `known`
    if (want < present) {
        int remaining = want;  // keys still to take among those matching the prefix
        for (int shift = 56; shift >= 0; shift -= 8) {
            for (int b = tid; b < 256; b += kThreads) hist[b] = 0;
            __syncthreads();
            for (int c = tid; c < n; c += kThreads) {
                float u;
                int32_t j;
                if (!fetch(c, u, j)) continue;
                const uint64_t key = rank_key(u, j);
                if ((key & known) == prefix) atomicAdd(&hist[(key >> shift) & 0xff], 1);
            }
            __syncthreads();
            if (tid == 0) {
                int above = 0, digit = 255;
                for (; digit > 0; --digit) {
                    if (above + hist[digit] >= remaining) break;
                    above += hist[digit];
                }
                s_digit = digit;
                s_remaining = remaining - above;
                s_done = hist[digit] == remaining - above ? 1 : 0;
            }
            __syncthreads();
            remaining = s_remaining;
            prefix |= static_cast<uint64_t>(s_digit) << shift;
            known |= static_cast<uint64_t>(0xff) << shift;
            const bool done = s_done != 0;
            __syncthreads();
            if (done) break;
        }
    }
    int written = 0;
    for (int c0 = 0; c0 < n; c0 += kThreads) {
        const int c = c0 + tid;
        float u = 0.0f;
        int32_t j = 0;
        bool keep = c < n && fetch(c, u, j);
        if (keep && want < present) keep = (rank_key(u, j) & known) >= prefix;
        int position, total;
        BlockScan(scan).ExclusiveSum(keep ? 1 : 0, position, total);
        if (keep) {
            a.out_u[v * a.cap + written + position] = u;
            a.out_idx[v * a.cap + written + position] = j;
        }
        written += total;
        __syncthreads();
    }
    if (tid == 0) a.count[v] = written;
}

// One block per token: appends the chunk's latents with u > cut[j] to the token's list (in latent order); past
// cap it only counts, so the caller learns how much room the token needs.
__global__ void __launch_bounds__(kThreads) append_above_kernel(ChunkArgs a) {
    __shared__ typename BlockScan::TempStorage scan;
    const int64_t t = blockIdx.x;
    const int tid = threadIdx.x;
    const int base = a.count[t];
    const float* U = a.U + t * a.width;
    int written = 0;
    for (int c0 = 0; c0 < a.width; c0 += kThreads) {
        const int c = c0 + tid;
        const int32_t j = static_cast<int32_t>(a.j0 + c);
        float u = 0.0f;
        bool keep = false;
        if (c < a.width) {
            u = U[c] + a.b_enc[j];
            keep = u > a.cut[j];
        }
        int position, total;
        BlockScan(scan).ExclusiveSum(keep ? 1 : 0, position, total);
        const int64_t slot = int64_t(base) + written + position;
        if (keep && slot < a.cap) {
            a.out_u[t * a.cap + slot] = u;
            a.out_idx[t * a.cap + slot] = j;
        }
        written += total;
        __syncthreads();
    }
    if (tid == 0) a.count[t] = base + written;
}

__global__ void max_count_kernel(const int32_t* count, int64_t T, SaeDeviceStats* stats) {
    for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < T; t += int64_t(gridDim.x) * blockDim.x)
        atomicMax(&stats->max_count, count[t]);
}

// batchtopk: sort keys of every candidate (ascending ~value = descending value; the sort is stable and positions
// t * cap + q follow the flat index t * m + j, so ties go to the lower flat index).
__global__ void batch_keys_kernel(const float* list_u, int64_t n, uint32_t* keys, int32_t* values) {
    for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < n; p += int64_t(gridDim.x) * blockDim.x) {
        keys[p] = ~ordered_bits(list_u[p]);
        values[p] = static_cast<int32_t>(p);
    }
}

// Marks the `keep` best candidates and records the smallest positive kept code (the last positive one in rank order).
__global__ void batch_keep_kernel(const int32_t* order, int64_t keep, const float* list_u, uint8_t* kept,
                                  SaeDeviceStats* stats) {
    for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < keep; r += int64_t(gridDim.x) * blockDim.x) {
        const float u = list_u[order[r]];
        kept[order[r]] = 1;
        if (u > 0.0f && (r + 1 == keep || !(list_u[order[r + 1]] > 0.0f))) stats->min_kept = u;
    }
}

// One block per token: keeps the marked candidates (in list order); flags a token whose every candidate was kept.
__global__ void __launch_bounds__(kThreads) batch_compact_kernel(const float* in_u, const int32_t* in_idx,
                                                                 const uint8_t* kept, int64_t cap, int64_t m,
                                                                 float* out_u, int32_t* out_idx, int32_t* count,
                                                                 SaeDeviceStats* stats) {
    __shared__ typename BlockScan::TempStorage scan;
    const int64_t t = blockIdx.x;
    int written = 0;
    for (int64_t q0 = 0; q0 < cap; q0 += kThreads) {
        const int64_t q = q0 + threadIdx.x;
        const bool keep = q < cap && kept[t * cap + q];
        int position, total;
        BlockScan(scan).ExclusiveSum(keep ? 1 : 0, position, total);
        if (keep) {
            out_u[t * cap + written + position] = in_u[t * cap + q];
            out_idx[t * cap + written + position] = in_idx[t * cap + q];
        }
        written += total;
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        count[t] = written;
        if (written == cap && cap < m) atomicOr(&stats->saturated, 1);
    }
}

// ---- decoder and loss ----------------------------------------------------------------------------------------

struct DecodeArgs {
    int64_t d, cap;
    bool jump, relu;
    float scale;  // 2 / B
    const float *x, *b_dec, *W_dec, *theta, *row_norm;
    const float* list_u;
    const int32_t *list_idx, *count;
    float *x_hat, *dxhat;  // x_hat may be null
    double* token_stats;   // [T][3]: squared error, sparsity (matryoshka: the inner levels' squared error), l0
    Levels levels;
    int64_t T;
    float* level_dx;       // matryoshka: [inner][T][d]
    float* level_e;        // per-level AuxK: [inner][T][d] receives x - x^_l; else null
};

// One block per token: x^ = b_dec + sum over the list of z W_dec[j]; d loss/d x^ = scale (x^ - x).
__global__ void __launch_bounds__(kThreads) decode_kernel(DecodeArgs a) {
    __shared__ double red[kThreads];
    const int64_t t = blockIdx.x, d = a.d;
    const int n = a.count[t];
    const float* u = a.list_u + t * a.cap;
    const int32_t* idx = a.list_idx + t * a.cap;
    double sq = 0.0, inner_sq = 0.0;
    for (int64_t i = threadIdx.x; i < d; i += kThreads) {
        float acc = a.b_dec[i];
        for (int q = 0; q < n; ++q) {
            const float z = code_of(u[q], idx[q], a.jump, a.theta);
            if (z != 0.0f) acc += z * a.W_dec[int64_t(idx[q]) * d + i];
        }
        if (a.x_hat != nullptr) a.x_hat[t * d + i] = acc;
        const float r = acc - a.x[t * d + i];
        sq += static_cast<double>(r * r);
        a.dxhat[t * d + i] = a.scale * r;
        // Matryoshka's inner levels, from the innermost out of the sum: row l = row l+1 + scale (x^_l - x).
        float next = a.scale * r;
        for (int l = a.levels.inner - 1; l >= 0; --l) {
            float level = a.b_dec[i];
            for (int q = 0; q < n; ++q) {
                if (idx[q] >= a.levels.widths[l]) continue;
                const float z = code_of(u[q], idx[q], a.jump, a.theta);
                if (z != 0.0f) level += z * a.W_dec[int64_t(idx[q]) * d + i];
            }
            const float rl = level - a.x[t * d + i];
            inner_sq += static_cast<double>(rl * rl);
            if (a.level_e != nullptr) a.level_e[(l * a.T + t) * d + i] = -rl;
            next = next + a.scale * rl;
            a.level_dx[(l * a.T + t) * d + i] = next;
        }
    }
    sq = block_sum(sq, red);
    inner_sq = block_sum(inner_sq, red);
    if (threadIdx.x == 0) {
        double sparsity = 0.0, l0 = 0.0;
        for (int q = 0; q < n; ++q) {
            const int32_t j = idx[q];
            const float z = code_of(u[q], j, a.jump, a.theta);
            if (a.jump && u[q] > a.theta[j]) sparsity += 1.0;
            if (z == 0.0f) continue;
            l0 += 1.0;
            if (a.relu) sparsity += static_cast<double>(z * a.row_norm[j]);
        }
        a.token_stats[t * 3 + 0] = sq;
        a.token_stats[t * 3 + 1] = a.levels.inner > 0 ? inner_sq : sparsity;
        a.token_stats[t * 3 + 2] = l0;
    }
}

// fire_count[j] += the tokens whose code j is nonzero.
__global__ void fire_kernel(const float* list_u, const int32_t* list_idx, const int32_t* count, int64_t T, int64_t cap,
                            bool jump, const float* theta, int64_t* fire_count) {
    for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < T * cap; p += int64_t(gridDim.x) * blockDim.x) {
        if (p % cap >= count[p / cap]) continue;
        if (code_of(list_u[p], list_idx[p], jump, theta) != 0.0f)
            atomicAdd(reinterpret_cast<unsigned long long*>(fire_count + list_idx[p]), 1ull);
    }
}

// Column sums of x [T][d] in two fixed-order passes: partial [tiles][d] over kTokenTile tokens each (grid.x over
// features, grid.y over tiles), then the tiles in order. center, when not null, sums (x - center_i)^2 instead.
constexpr int64_t kTokenTile = 512;

__global__ void column_partial_kernel(const float* x, int64_t T, int64_t d, const double* center, double* partial) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, t0 = int64_t(blockIdx.y) * kTokenTile;
    if (i >= d) return;
    const int64_t t1 = t0 + kTokenTile < T ? t0 + kTokenTile : T;
    double sum = 0.0;
    for (int64_t t = t0; t < t1; ++t) {
        const double v = static_cast<double>(x[t * d + i]);
        sum += center != nullptr ? (v - center[i]) * (v - center[i]) : v;
    }
    partial[int64_t(blockIdx.y) * d + i] = sum;
}

// out_i = scale * sum over tiles of partial[tile][i], into a double or a float array.
__global__ void column_finish_kernel(const double* partial, int64_t tiles, int64_t d, double scale, double* out,
                                     float* out_float) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < d; i += int64_t(gridDim.x) * blockDim.x) {
        double sum = 0.0;
        for (int64_t tile = 0; tile < tiles; ++tile) sum += partial[tile * d + i];
        if (out != nullptr) out[i] = scale * sum;
        else out_float[i] = static_cast<float>(scale * sum);
    }
}

// *out = sum_r values[r * stride], one block, fixed order.
__global__ void __launch_bounds__(kThreads) sum_kernel(const double* values, int64_t rows, int64_t stride, double* out) {
    __shared__ double red[kThreads];
    double sum = 0.0;
    for (int64_t r = threadIdx.x; r < rows; r += kThreads) sum += values[r * stride];
    sum = block_sum(sum, red);
    if (threadIdx.x == 0) *out = sum;
}

struct AuxArgs {
    int64_t T, d, ka;  // ka: slots per list
    int terms;
    float scale;  // 2 / B
    const float *dxhat, *W_dec, *aux_u;
    const float* level_e;  // per-level AuxK: [inner][T][d], the inner levels' residuals
    const int32_t *aux_idx, *aux_count;
    float* dehat;        // [T][terms][d] receives e - e^ (scaled into d auxk / d e^ afterwards)
    double* aux_stats;   // [T][terms][2]: ||e - e^||^2, ||e||^2
};

// One block per list v = t * terms + l: e = x - x^ = -dxhat / scale (per level: x - x^_l, from level_e for the
// inner levels), e^ from the list's AuxK codes (ReLU of the listed u).
__global__ void __launch_bounds__(kThreads) aux_residual_kernel(AuxArgs a) {
    __shared__ double red[kThreads];
    const int64_t v = blockIdx.x, t = v / a.terms, l = v % a.terms, d = a.d;
    const int n = a.aux_count[v];
    const float* u = a.aux_u + v * a.ka;
    const int32_t* idx = a.aux_idx + v * a.ka;
    const float* level_e = a.level_e != nullptr && l + 1 < a.terms ? a.level_e + (l * a.T + t) * d : nullptr;
    double norm = 0.0, sq = 0.0;
    for (int64_t i = threadIdx.x; i < d; i += kThreads) {
        const float e = level_e != nullptr ? level_e[i] : -a.dxhat[t * d + i] / a.scale;
        norm += static_cast<double>(e * e);
        float diff = e;
        for (int q = 0; q < n; ++q)
            if (u[q] > 0.0f) diff += -u[q] * a.W_dec[int64_t(idx[q]) * d + i];
        sq += static_cast<double>(diff * diff);
        a.dehat[v * d + i] = diff;
    }
    norm = block_sum(norm, red);
    sq = block_sum(sq, red);
    if (threadIdx.x == 0) {
        a.aux_stats[v * 2 + 0] = sq;
        a.aux_stats[v * 2 + 1] = norm;
    }
}

// d auxk / d e^ = -2 alpha_l (e - e^) / sum ||e||^2 per term (nothing for a term whose residual is zero: it is then
// skipped). dehat [T][terms][d].
__global__ void aux_scale_kernel(float* dehat, int64_t n, int64_t d, AuxTerms terms, const SaeDeviceStats* stats) {
    for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
        const int l = static_cast<int>((e / d) % terms.n);
        const double den = stats->aux_den[l];
        if (den > 0.0) dehat[e] *= static_cast<float>(-2.0 * static_cast<double>(terms.alpha[l]) / den);
    }
}

// ---- backward ------------------------------------------------------------------------------------------------

struct DzArgs {
    int64_t T, cap, d;
    const int32_t *idx, *count;  // [T][cap], [T]
    const float* source;         // [T][d]: dxhat (main codes) or dehat (AuxK codes)
    Levels levels;               // main codes of matryoshka: level_dx [inner][T][d] in place of dxhat by level
    const float* level_dx;
    const float* W_dec;
    const float* row_norm;       // relu: adds l1 * ||W_dec[j]||; else null
    float l1;
    float* dz;                   // [T][cap]
};

// d loss/d z of every listed code: one warp per dot product source_t . W_dec[j].
__global__ void dz_kernel(DzArgs a) {
    const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
    const int lane = threadIdx.x % 32;
    for (int64_t w = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; w < a.T * a.cap; w += warps) {
        const int64_t t = w / a.cap, q = w % a.cap;
        if (q >= a.count[t]) continue;  // the whole warp shares w
        const int64_t j = a.idx[w];
        const float* source = dx_row(a.levels, a.source, a.level_dx, a.T, a.d, t, j);
        float dot = 0.0f;
        for (int64_t i = lane; i < a.d; i += 32) dot += source[i] * a.W_dec[j * a.d + i];
        dot = warp_sum(dot);
        if (lane == 0) a.dz[w] = a.row_norm != nullptr ? dot + a.l1 * a.row_norm[j] : dot;
    }
}

struct BucketArgs {
    int64_t T, cap, ka, m;               // ka: slots per AuxK list, terms lists per token
    int terms;
    const int32_t *idx, *count;          // main lists
    const int32_t *aux_idx, *aux_count;  // AuxK lists (ka = 0: none)
    const SaeDeviceStats* stats;         // AuxK entries only when its residual was nonzero
    uint32_t* keys;                      // latent, or m for an empty slot
    int32_t* values;                     // entry: t * cap + q, then T * cap + t * ka + q
    int32_t* latent_count;               // [m + 1] += entries per latent
};

__global__ void bucket_keys_kernel(BucketArgs a) {
    const int64_t main = a.T * a.cap, total = main + a.T * a.terms * a.ka;
    for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
        int64_t j = a.m;
        if (e < main) {
            if (e % a.cap < a.count[e / a.cap]) j = a.idx[e];
        } else {
            const int64_t p = e - main, list = p / a.ka;
            if (a.stats->aux_den[list % a.terms] > 0.0 && p % a.ka < a.aux_count[list]) j = a.aux_idx[p];
        }
        a.keys[e] = static_cast<uint32_t>(j);
        a.values[e] = static_cast<int32_t>(e);
        if (j < a.m) atomicAdd(a.latent_count + j, 1);
    }
}

struct LatentArgs {
    int64_t T, cap, ka, d;                   // ka: slots per AuxK list, terms lists per token
    int terms;
    bool jump, relu;
    float eps, l0_term, l1;                  // jumprelu bandwidth, l0 / (B eps), l1 / B
    const int32_t *begin, *entries;          // [m + 1], entries sorted by latent
    const float *list_u, *slot_dz, *aux_u, *aux_dz;
    const float *dxhat, *dehat, *xc;         // [T][d]
    Levels levels;                           // matryoshka: main entries read level_dx by level
    const float* level_dx;
    const float *W_dec, *theta, *row_norm;
    float *gW_dec, *gWencT, *gb_enc, *enc_sum, *glog;  // [m][d], [m][d], [m], [m], [m] (jumprelu)
};

// What one entry contributes to its latent's gradients.
struct Entry {
    const float* dec_row;  // dxhat_t (main) or dehat_t (AuxK)
    const float* enc_row;  // xc_t
    float dec, enc;        // gW_dec += dec * dec_row, gWencT += enc * enc_row
    float gb, enc_sum, z, glog;
};

__device__ Entry entry_of(const LatentArgs& a, int64_t entry, int64_t j) {
    Entry r{};
    if (entry < a.T * a.cap) {
        const int64_t t = entry / a.cap;
        const float u = a.list_u[entry], dz = a.slot_dz[entry];
        const float z = code_of(u, static_cast<int32_t>(j), a.jump, a.theta);
        r.dec_row = dx_row(a.levels, a.dxhat, a.level_dx, a.T, a.d, t, j);
        r.enc_row = a.xc + t * a.d;
        if (a.jump && fabsf(u - a.theta[j]) < a.eps / 2) {
            const float theta = a.theta[j];
            r.glog = theta * (-(theta / a.eps) * dz - a.l0_term);
        }
        if (z != 0.0f) {  // z = 0 with the code listed: ReLU's flat side, or below jumprelu's threshold
            r.dec = z;
            r.enc = dz;
            r.gb = dz;
            r.enc_sum = dz;
            r.z = z;
        }
    } else {
        const int64_t p = entry - a.T * a.cap, list = p / a.ka, t = list / a.terms;
        const float u = a.aux_u[p];
        r.dec_row = a.dehat + list * a.d;
        r.enc_row = a.xc + t * a.d;
        if (u > 0.0f) {
            r.dec = u;
            r.enc = a.aux_dz[p];
            r.gb = r.enc;
        }
    }
    return r;
}

// One block per latent: its gradients from its own entries, summed in entry order.
__global__ void __launch_bounds__(kThreads) latent_grad_kernel(LatentArgs a) {
    __shared__ const float* s_dec_row[kThreads];
    __shared__ const float* s_enc_row[kThreads];
    __shared__ float s_dec[kThreads], s_enc[kThreads], s_gb[kThreads], s_es[kThreads], s_z[kThreads], s_glog[kThreads];
    __shared__ float s_zsum;
    const int64_t j = blockIdx.x, d = a.d;
    const int tid = threadIdx.x;
    const int64_t begin = a.begin[j], end = a.begin[j + 1];

    // The scalar sums, by one thread in entry order.
    float gb = 0.0f, enc_sum = 0.0f, zsum = 0.0f, glog = 0.0f;
    for (int64_t e0 = begin; e0 < end; e0 += kThreads) {
        if (e0 + tid < end) {
            const Entry r = entry_of(a, a.entries[e0 + tid], j);
            s_gb[tid] = r.gb;
            s_es[tid] = r.enc_sum;
            s_z[tid] = r.z;
            s_glog[tid] = r.glog;
        }
        __syncthreads();
        const int batch = static_cast<int>(end - e0 < kThreads ? end - e0 : kThreads);
        if (tid == 0)
            for (int q = 0; q < batch; ++q) {
                glog += s_glog[q];
                gb += s_gb[q];
                enc_sum += s_es[q];
                zsum += s_z[q];
            }
        __syncthreads();
    }
    if (tid == 0) {
        a.gb_enc[j] = gb;
        a.enc_sum[j] = enc_sum;
        if (a.jump) a.glog[j] = glog;
        s_zsum = zsum;
    }
    __syncthreads();
    const float l1_row = a.relu && s_zsum != 0.0f ? a.l1 * s_zsum / a.row_norm[j] : 0.0f;

    // The rows, one element per thread, entries staged through shared memory.
    for (int64_t i0 = 0; i0 < d; i0 += kThreads) {
        const int64_t i = i0 + tid;
        float gdec = 0.0f, genc = 0.0f;
        for (int64_t e0 = begin; e0 < end; e0 += kThreads) {
            if (e0 + tid < end) {
                const Entry r = entry_of(a, a.entries[e0 + tid], j);
                s_dec_row[tid] = r.dec_row;
                s_enc_row[tid] = r.enc_row;
                s_dec[tid] = r.dec;
                s_enc[tid] = r.enc;
            }
            __syncthreads();
            const int batch = static_cast<int>(end - e0 < kThreads ? end - e0 : kThreads);
            if (i < d)
                for (int q = 0; q < batch; ++q) {
                    gdec += s_dec[q] * s_dec_row[q][i];
                    genc += s_enc[q] * s_enc_row[q][i];
                }
            __syncthreads();
        }
        if (i < d) {
            if (l1_row != 0.0f) gdec += l1_row * a.W_dec[j * d + i];
            a.gW_dec[j * d + i] = gdec;
            a.gWencT[j * d + i] = genc;
        }
    }
}

// out [cols][rows] = in [rows][cols]^T, 32 x 32 tiles; grid.x over row tiles (up to m / 32), grid.y over columns.
__global__ void transpose_kernel(const float* in, int64_t rows, int64_t cols, float* out) {
    __shared__ float tile[32][33];
    const int64_t r0 = int64_t(blockIdx.x) * 32, c0 = int64_t(blockIdx.y) * 32;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        const int64_t r = r0 + k, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[k][threadIdx.x] = in[r * cols + c];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        const int64_t c = c0 + k, r = r0 + threadIdx.x;
        if (r < rows && c < cols) out[c * rows + r] = tile[threadIdx.x][k];
    }
}

// gb_dec[i] -= W_enc[i, :] . enc_sum (the encoder's input is x - b_dec), one block per i.
__global__ void __launch_bounds__(kThreads) b_dec_encoder_kernel(const float* W_enc, const float* enc_sum, int64_t m,
                                                                 float* gb_dec) {
    __shared__ float red[kThreads];
    const int64_t i = blockIdx.x;
    float dot = 0.0f;
    for (int64_t j = threadIdx.x; j < m; j += kThreads) dot += W_enc[i * m + j] * enc_sum[j];
    dot = block_sum(dot, red);
    if (threadIdx.x == 0) gb_dec[i] -= dot;
}

// ---- optimizer -----------------------------------------------------------------------------------------------

// g_j -= (g_j . w_j / ||w_j||^2) w_j, one block per decoder row.
__global__ void __launch_bounds__(kThreads) project_kernel(const float* W_dec, int64_t d, float* gW_dec) {
    __shared__ double red[kThreads];
    const int64_t j = blockIdx.x;
    const float* w = W_dec + j * d;
    float* g = gW_dec + j * d;
    double sq = 0.0, dot = 0.0;
    for (int64_t i = threadIdx.x; i < d; i += kThreads) {
        sq += static_cast<double>(w[i]) * static_cast<double>(w[i]);
        dot += static_cast<double>(w[i]) * static_cast<double>(g[i]);
    }
    sq = block_sum(sq, red);
    dot = block_sum(dot, red);
    if (sq == 0.0) return;
    const float along = static_cast<float>(dot / sq);
    for (int64_t i = threadIdx.x; i < d; i += kThreads) g[i] -= along * w[i];
}

// Decoder rows to unit norm (a zero row stays), one block per row; a norm that is not finite is flagged in stats.
__global__ void __launch_bounds__(kThreads) normalize_kernel(float* W_dec, int64_t d, SaeDeviceStats* stats) {
    __shared__ double red[kThreads];
    float* w = W_dec + int64_t(blockIdx.x) * d;
    double sq = 0.0;
    for (int64_t i = threadIdx.x; i < d; i += kThreads) sq += static_cast<double>(w[i]) * static_cast<double>(w[i]);
    sq = block_sum(sq, red);
    if (threadIdx.x == 0 && !isfinite(sq)) stats->non_finite_rows = 1;
    if (sq == 0.0) return;
    const float inv = static_cast<float>(1.0 / sqrt(sq));
    for (int64_t i = threadIdx.x; i < d; i += kThreads) w[i] *= inv;
}

// Which latent an element of a tensor belongs to, for touched-rows Adam.
enum class Layout : int32_t { kDense, kRows, kColumns, kVector };  // dense; [m][inner]; [inner_rows][m]; [m]

// entries [m]: the backward's entries per latent (codes and AuxK codes): a latent without any has no gradient.
__global__ void adam_kernel(float* param, const float* grad, float* m1, float* m2, int64_t n, AdamStep step,
                            const int32_t* entries, Layout layout, int64_t inner) {
    for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
        if (layout != Layout::kDense) {
            const int64_t j = layout == Layout::kRows ? e / inner : layout == Layout::kColumns ? e % inner : e;
            if (entries[j] <= 0) continue;
        }
        adam_update(param[e], grad[e], m1[e], m2[e], step);
    }
}

__global__ void since_fired_kernel(const int64_t* fire_count, int64_t m, int64_t batch, int64_t* since_fired) {
    for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < m; j += int64_t(gridDim.x) * blockDim.x)
        since_fired[j] = fire_count[j] > 0 ? 0 : since_fired[j] + batch;
}

// ---- host side -----------------------------------------------------------------------------------------------

int64_t tensor_floats(const SaeSpec& s, int which) {  // SaeTensors order
    switch (which) {
        case 0: return s.d * s.m;
        case 1: return s.m;
        case 2: return s.m * s.d;
        case 3: return s.d;
        default: return s.architecture == kSaeJumpRelu ? s.m : 0;
    }
}

float** slot_of(SaeDeviceTensors& t, int which) {
    float** slots[] = {&t.W_enc, &t.b_enc, &t.W_dec, &t.b_dec, &t.log_threshold};
    return slots[which];
}

void carve_tensors(ArenaCarver& c, const SaeSpec& s, SaeDeviceTensors& t) {
    for (int which = 0; which < 5; ++which) {
        const int64_t n = tensor_floats(s, which);
        *slot_of(t, which) = n > 0 ? c.take<float>(n) : nullptr;
    }
}

int64_t chunk_for(const ne_cuda_sae& s, int64_t T) {
    int64_t C = std::min(s.spec.m, s.chunk);
    while (C > 256 && T * C > kMaxChunkFloats) C /= 2;
    return C;
}

void ensure_temp(ne_cuda_sae& s, size_t bytes) {
    if (bytes <= s.temp.bytes()) return;
    // Kernels queued on the stream may still use the scratch being replaced.
    NE_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    s.temp.allocate([&](ArenaCarver& c) { c.take<char>(static_cast<int64_t>(bytes)); });
}

void ensure_tokens(ne_cuda_sae& s, int64_t T, int64_t kaux) {
    SaeTokenBuffers& b = s.tokens;
    if (b.arena && T <= b.tokens && kaux <= b.kaux) return;
    // Grown, never shrunk: evaluation batches of varying size reuse the largest.
    const int64_t tokens = std::max(T, b.tokens), d = s.spec.d, terms = s.spec.aux_levels();
    // U holds T' * chunk_for(T') floats for every T' <= tokens.
    const int64_t u_floats = std::min(tokens * std::min(s.spec.m, s.chunk), std::max(kMaxChunkFloats, tokens * 256));
    kaux = std::max(kaux, b.kaux);
    NE_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    b = SaeTokenBuffers{};
    const bool bf16 = s.precision == NE_SAE_BF16;
    b.arena.allocate([&](ArenaCarver& c) {
        b.x = c.take<float>(tokens * d);
        b.xc = c.take<float>(tokens * d);
        b.xc_bf16 = bf16 ? c.take<__nv_bfloat16>(tokens * d) : nullptr;
        b.U = c.take<float>(u_floats);
        b.x_hat = c.take<float>(tokens * d);
        b.dxhat = c.take<float>(tokens * d);
        b.dehat = c.take<float>(tokens * terms * d);
        b.level_dx = c.take<float>(tokens * d * s.spec.inner_levels());
        b.level_e = c.take<float>(s.spec.auxk_per_level() ? tokens * d * s.spec.inner_levels() : 0);
        for (int k = 0; k < 2; ++k) {
            b.aux_u[k] = c.take<float>(tokens * kaux);
            b.aux_idx[k] = c.take<int32_t>(tokens * kaux);
        }
        b.aux_dz = c.take<float>(tokens * kaux);
        b.aux_count = c.take<int32_t>(tokens * terms);
        b.count = c.take<int32_t>(tokens);
        b.token_stats = c.take<double>(tokens * 3);
        b.aux_stats = c.take<double>(tokens * terms * 2);
        b.column_partial = c.take<double>((tokens + kTokenTile - 1) / kTokenTile * d);
        b.feature_mean = c.take<double>(d);
        b.feature_var = c.take<double>(d);
    });
    b.tokens = tokens;
    b.kaux = kaux;
}

void ensure_slots(ne_cuda_sae& s, int64_t T, int64_t cap, int64_t kaux) {
    SaeSlotBuffers& b = s.slots;
    if (b.arena && T <= b.tokens && cap <= b.cap && kaux <= b.kaux) return;
    T = std::max(T, b.tokens);
    cap = std::max(cap, b.cap);
    kaux = std::max(kaux, b.kaux);
    if (T * (cap + kaux) > kSaeMaxSlots)
        fail(NE_ERR_UNSUPPORTED, "batch * (codes per token + k_aux) = " + std::to_string(T * (cap + kaux)) +
                                     " exceeds the CUDA SAE kernels' limit 2^31 - 1; use a smaller batch");
    NE_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    b = SaeSlotBuffers{};
    b.arena.allocate([&](ArenaCarver& c) {
        for (int k = 0; k < 2; ++k) {
            b.list_u[k] = c.take<float>(T * cap);
            b.list_idx[k] = c.take<int32_t>(T * cap);
        }
        b.slot_dz = c.take<float>(T * cap);
        b.kept = c.take<uint8_t>(T * cap);
        b.keys = c.take<uint32_t>(T * (cap + kaux));
        b.keys_sorted = c.take<uint32_t>(T * (cap + kaux));
        b.values = c.take<int32_t>(T * (cap + kaux));
        b.values_sorted = c.take<int32_t>(T * (cap + kaux));
    });
    b.tokens = T;
    b.cap = cap;
    b.kaux = kaux;
}

// A stable ascending sort of (key, value) pairs on bits [0, end_bit) of the keys.
void sort_pairs(ne_cuda_sae& s, const uint32_t* keys, uint32_t* keys_sorted, const int32_t* values,
                int32_t* values_sorted, int64_t n, int end_bit) {
    size_t bytes = 0;
    NE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys, keys_sorted, values, values_sorted,
                                                  static_cast<int>(n), 0, end_bit, s.stream));
    ensure_temp(s, bytes);
    NE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(s.temp.data(), bytes, keys, keys_sorted, values, values_sorted,
                                                  static_cast<int>(n), 0, end_bit, s.stream));
}

// U [T][width] = xc [T][d] W_enc[:, j0 .. j0 + width) in the model's precision (row-major on both sides: cuBLAS
// sees column-major U^T = W_enc^T xc^T).
void encoder_gemm(ne_cuda_sae& s, int64_t T, int64_t j0, int64_t width) {
    const float one = 1.0f, zero = 0.0f;
    const bool bf16 = s.precision == NE_SAE_BF16;
    const void* A = bf16 ? static_cast<const void*>(s.W_enc_bf16 + j0) : static_cast<const void*>(s.params.W_enc + j0);
    const void* B = bf16 ? static_cast<const void*>(s.tokens.xc_bf16) : static_cast<const void*>(s.tokens.xc);
    const cudaDataType_t type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t compute = s.precision == NE_SAE_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    NE_CUBLAS_CHECK(cublasGemmEx(s.blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(width), static_cast<int>(T),
                                 static_cast<int>(s.spec.d), &one, A, type, static_cast<int>(s.spec.m), B, type,
                                 static_cast<int>(s.spec.d), &zero, s.tokens.U, CUDA_R_32F, static_cast<int>(width),
                                 compute, CUBLAS_GEMM_DEFAULT));
}

// out (or out_float) [d] = scale * sum_t x [T][d] (or of (x - center)^2), see column_partial_kernel.
void column_sums(ne_cuda_sae& s, const float* x, int64_t T, int64_t d, const double* center, double scale, double* out,
                 float* out_float) {
    const int64_t tiles = (T + kTokenTile - 1) / kTokenTile;
    const dim3 grid(static_cast<unsigned>((d + kThreads - 1) / kThreads), static_cast<unsigned>(tiles));
    column_partial_kernel<<<grid, kThreads, 0, s.stream>>>(x, T, d, center, s.tokens.column_partial);
    NE_CUDA_CHECK_LAUNCH("column_partial_kernel");
    column_finish_kernel<<<grid_for(d), kThreads, 0, s.stream>>>(s.tokens.column_partial, tiles, d, scale, out,
                                                                 out_float);
    NE_CUDA_CHECK_LAUNCH("column_finish_kernel");
}

SaeDeviceStats read_stats(ne_cuda_sae& s) {
    SaeDeviceStats h{};
    NE_CUDA_CHECK(cudaMemcpyAsync(&h, s.stats, sizeof h, cudaMemcpyDeviceToHost, s.stream));
    NE_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    return h;
}

// Where the encode left its result: which of the double-buffered lists, and their stride (slots per token).
struct Encoded {
    int list, aux;
    int64_t cap;
};

// matching_pursuit's view of a batch (sae_pursuit_cuda.h): it has no encoder, so it borrows the encoder's scratch,
// U for its dots and, in bf16, the W_enc and xc copies for W_dec and the residual.
PursuitBatch pursuit_batch(ne_cuda_sae& s, const SaeSpec& spec) {
    return PursuitBatch{s.stream, s.blas, s.precision, &spec, chunk_for(s, spec.batch), s.params.W_dec, s.tokens.xc,
                        s.tokens.U, s.W_enc_bf16, s.tokens.xc_bf16};
}

// matching_pursuit's encoder: the pursuit, then its codes in the lists the decoder reads.
Encoded pursuit_encode(ne_cuda_sae& s, const SaeSpec& spec, int64_t T) {
    const PursuitBatch batch = pursuit_batch(s, spec);
    const int64_t cap = std::min(pursuit_forward(s.pursuit, batch), spec.m);
    ensure_slots(s, T, cap, 0);
    pursuit_lists(s.pursuit, batch, cap, s.slots.list_u[0], s.slots.list_idx[0], s.tokens.count);
    return Encoded{0, 0, cap};
}

// The chunked encoder and selection (see the file comment), growing the lists until every token fits. AuxK (ka > 0:
// slots per list) keeps terms.n lists per token, term l's best terms.cap[l] of its dead latents.
Encoded encode(ne_cuda_sae& s, const SaeSpec& spec, int64_t T, int64_t kaux, int64_t ka, const AuxTerms& terms) {
    if (spec.architecture == kSaeMatchingPursuit) return pursuit_encode(s, spec, T);
    const int64_t m = spec.m;
    const int32_t arch = spec.architecture;
    const bool batch_select = sae_batch_selects(arch) && !spec.inference;
    const bool best = arch == kSaeTopK || batch_select;
    const int64_t C = chunk_for(s, T);
    int64_t cap = arch == kSaeTopK ? spec.k
                                   : std::min(m, std::max(s.cap, batch_select ? 4 * spec.k : std::max<int64_t>(2 * spec.k, 32)));
    for (;;) {
        ensure_slots(s, T, cap, kaux);
        SaeTokenBuffers& tb = s.tokens;
        SaeSlotBuffers& sb = s.slots;
        NE_CUDA_CHECK(cudaMemsetAsync(tb.count, 0, T * sizeof(int32_t), s.stream));
        NE_CUDA_CHECK(cudaMemsetAsync(tb.aux_count, 0, T * terms.n * sizeof(int32_t), s.stream));
        Encoded at{0, 0, cap};
        for (int64_t j0 = 0; j0 < m; j0 += C) {
            const int32_t width = static_cast<int32_t>(std::min(C, m - j0));
            encoder_gemm(s, T, j0, width);
            ChunkArgs a{};
            a.U = tb.U;
            a.j0 = j0;
            a.width = width;
            a.b_enc = s.params.b_enc;
            a.cut = s.cut;
            a.count = tb.count;
            a.cap = cap;
            if (best) {
                a.in_u = sb.list_u[at.list];
                a.in_idx = sb.list_idx[at.list];
                a.out_u = sb.list_u[1 - at.list];
                a.out_idx = sb.list_idx[1 - at.list];
                merge_best_kernel<<<static_cast<unsigned>(T), kThreads, 0, s.stream>>>(a);
                NE_CUDA_CHECK_LAUNCH("merge_best_kernel");
                at.list = 1 - at.list;
            } else {
                a.out_u = sb.list_u[0];
                a.out_idx = sb.list_idx[0];
                append_above_kernel<<<static_cast<unsigned>(T), kThreads, 0, s.stream>>>(a);
                NE_CUDA_CHECK_LAUNCH("append_above_kernel");
            }
            if (ka > 0) {
                ChunkArgs x = a;
                x.mask = s.dead;
                x.in_u = tb.aux_u[at.aux];
                x.in_idx = tb.aux_idx[at.aux];
                x.out_u = tb.aux_u[1 - at.aux];
                x.out_idx = tb.aux_idx[1 - at.aux];
                x.count = tb.aux_count;
                x.cap = ka;
                x.per_term = true;
                x.terms = terms;
                merge_best_kernel<<<dim3(static_cast<unsigned>(T), static_cast<unsigned>(terms.n)), kThreads, 0,
                                    s.stream>>>(x);
                NE_CUDA_CHECK_LAUNCH("merge_best_kernel (AuxK)");
                at.aux = 1 - at.aux;
            }
        }
        if (!best) {
            NE_CUDA_CHECK(cudaMemsetAsync(&s.stats->max_count, 0, sizeof(int32_t), s.stream));
            max_count_kernel<<<grid_for(T), kThreads, 0, s.stream>>>(tb.count, T, s.stats);
            NE_CUDA_CHECK_LAUNCH("max_count_kernel");
            const int64_t need = read_stats(s).max_count;
            if (need > cap) {
                cap = std::min(m, (need + 7) / 8 * 8);
                continue;
            }
            s.cap = cap;
            return at;
        }
        if (!batch_select) return at;

        // batchtopk: the k * B best candidates of the batch.
        const int64_t n = T * cap, keep = spec.k * T;
        batch_keys_kernel<<<grid_for(n), kThreads, 0, s.stream>>>(sb.list_u[at.list], n, sb.keys, sb.values);
        NE_CUDA_CHECK_LAUNCH("batch_keys_kernel");
        sort_pairs(s, sb.keys, sb.keys_sorted, sb.values, sb.values_sorted, n, 32);
        NE_CUDA_CHECK(cudaMemsetAsync(sb.kept, 0, n, s.stream));
        NE_CUDA_CHECK(cudaMemsetAsync(&s.stats->saturated, 0, sizeof(int32_t), s.stream));
        NE_CUDA_CHECK(cudaMemsetAsync(&s.stats->min_kept, 0, sizeof(double), s.stream));
        batch_keep_kernel<<<grid_for(keep), kThreads, 0, s.stream>>>(sb.values_sorted, keep, sb.list_u[at.list],
                                                                       sb.kept, s.stats);
        NE_CUDA_CHECK_LAUNCH("batch_keep_kernel");
        batch_compact_kernel<<<static_cast<unsigned>(T), kThreads, 0, s.stream>>>(
            sb.list_u[at.list], sb.list_idx[at.list], sb.kept, cap, m, sb.list_u[1 - at.list],
            sb.list_idx[1 - at.list], tb.count, s.stats);
        NE_CUDA_CHECK_LAUNCH("batch_compact_kernel");
        at.list = 1 - at.list;
        if (read_stats(s).saturated) {
            cap = std::min(m, 2 * cap);
            continue;
        }
        s.cap = cap;
        return at;
    }
}

// Forward (and, with adam, backward and update) of one batch; see the file comment.
// x_host: the batch in host memory, or in device memory when x_on_device (drawn there by the synthetic sampler).
void run_batch(ne_cuda_sae& s, const SaeSpec& spec, const float* x_host, const AdamStep* adam, int32_t sparse_updates,
               float* x_hat_host, int64_t* fire_host, SaeLoss& loss, bool x_on_device = false) {
    const int64_t d = spec.d, m = spec.m, T = spec.batch;
    const int32_t arch = spec.architecture;
    const bool training = adam != nullptr;
    const bool jump = arch == kSaeJumpRelu, relu = arch == kSaeRelu;
    const bool batch_select = sae_batch_selects(arch) && !spec.inference;
    const bool auxk_arch = sae_has_auxk(arch) && training && spec.auxk_alpha != 0;
    const Levels levels = levels_of(spec);
    AuxTerms terms = aux_terms_of(spec);
    const bool per_level = auxk_arch && spec.auxk_per_level();
    const int64_t kaux = auxk_arch ? terms.n * std::min(spec.aux_k(), m) : 0;  // AuxK slots per token, at most
    const float scale = 2.0f / static_cast<float>(T);
    ensure_tokens(s, T, kaux);
    SaeTokenBuffers& tb = s.tokens;
    NE_CUDA_CHECK(cudaMemsetAsync(s.stats, 0, sizeof(SaeDeviceStats), s.stream));
    NE_CUDA_CHECK(cudaMemcpyAsync(tb.x, x_host, T * d * sizeof(float),
                                  x_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice, s.stream));

    Encoded at{};
    int64_t ka = 0;
    {
        NE_NVTX_RANGE("sae.encode");
        SetupArgs setup{m, jump, relu, spec.jump_bandwidth, spec.threshold, s.params.log_threshold,
                        training ? s.since_fired : nullptr, spec.dead_window, s.theta, s.cut, s.dead, terms, s.stats};
        latent_setup_kernel<<<grid_for(m), kThreads, 0, s.stream>>>(setup);
        NE_CUDA_CHECK_LAUNCH("latent_setup_kernel");
        const bool bf16 = s.precision == NE_SAE_BF16;
        center_kernel<<<grid_for(T * d), kThreads, 0, s.stream>>>(tb.x, s.params.b_dec, T, d, tb.xc,
                                                                  bf16 ? tb.xc_bf16 : nullptr);
        NE_CUDA_CHECK_LAUNCH("center_kernel");
        if (bf16) {
            to_bf16_kernel<<<grid_for(d * m), kThreads, 0, s.stream>>>(s.params.W_enc, d * m, s.W_enc_bf16);
            NE_CUDA_CHECK_LAUNCH("to_bf16_kernel");
        }
        if (relu) {
            row_norm_kernel<<<grid_for(32 * m), kThreads, 0, s.stream>>>(s.params.W_dec, m, d, s.row_norm);
            NE_CUDA_CHECK_LAUNCH("row_norm_kernel");
        }
        if (kaux > 0) {
            // Each term keeps min(k_aux, its dead latents) per token, in lists of ka slots (the largest of those).
            const SaeDeviceStats h = read_stats(s);
            for (int l = 0; l < terms.n; ++l) {
                const int64_t dead = static_cast<int64_t>(h.dead_term[l]);
                terms.cap[l] = std::min(spec.aux_k(), dead);
                terms.alpha[l] = dead > 0 ? static_cast<float>(spec.auxk_alpha * spec.aux_weight(dead)) : 0.0f;
                ka = std::max(ka, terms.cap[l]);
            }
        }
        at = encode(s, spec, T, kaux, ka, terms);
    }
    SaeSlotBuffers& sb = s.slots;
    const int64_t cap = at.cap;
    const float* list_u = sb.list_u[at.list];
    const int32_t* list_idx = sb.list_idx[at.list];
    {
        NE_NVTX_RANGE("sae.decode");
        DecodeArgs a{d, cap, jump, relu, scale, tb.x, s.params.b_dec, s.params.W_dec, s.theta, s.row_norm,
                     list_u, list_idx, tb.count, x_hat_host != nullptr ? tb.x_hat : nullptr, tb.dxhat, tb.token_stats,
                     levels, T, tb.level_dx, per_level && ka > 0 ? tb.level_e : nullptr};
        decode_kernel<<<static_cast<unsigned>(T), kThreads, 0, s.stream>>>(a);
        NE_CUDA_CHECK_LAUNCH("decode_kernel");
        NE_CUDA_CHECK(cudaMemsetAsync(s.fire_count, 0, m * sizeof(int64_t), s.stream));
        fire_kernel<<<grid_for(T * cap), kThreads, 0, s.stream>>>(list_u, list_idx, tb.count, T, cap, jump, s.theta,
                                                                  s.fire_count);
        NE_CUDA_CHECK_LAUNCH("fire_kernel");
        column_sums(s, tb.x, T, d, nullptr, 1.0 / static_cast<double>(T), tb.feature_mean, nullptr);
        column_sums(s, tb.x, T, d, tb.feature_mean, 1.0, tb.feature_var, nullptr);
        auto sum = [&](const double* values, int64_t rows, int64_t stride, double* out) {
            sum_kernel<<<1, kThreads, 0, s.stream>>>(values, rows, stride, out);
            NE_CUDA_CHECK_LAUNCH("sum_kernel");
        };
        sum(tb.token_stats + 0, T, 3, &s.stats->sse);
        sum(tb.token_stats + 1, T, 3, &s.stats->sparsity);
        sum(tb.token_stats + 2, T, 3, &s.stats->l0);
        sum(tb.feature_var, d, 1, &s.stats->variance);
        if (ka > 0) {
            const int aux_list = at.aux;
            AuxArgs x{T, d, ka, terms.n, scale, tb.dxhat, s.params.W_dec, tb.aux_u[aux_list],
                      per_level ? tb.level_e : nullptr, tb.aux_idx[aux_list], tb.aux_count, tb.dehat, tb.aux_stats};
            aux_residual_kernel<<<static_cast<unsigned>(T * terms.n), kThreads, 0, s.stream>>>(x);
            NE_CUDA_CHECK_LAUNCH("aux_residual_kernel");
            for (int l = 0; l < terms.n; ++l) {
                sum(tb.aux_stats + 2 * l + 0, T, 2 * terms.n, &s.stats->aux_num[l]);
                sum(tb.aux_stats + 2 * l + 1, T, 2 * terms.n, &s.stats->aux_den[l]);
            }
            aux_scale_kernel<<<grid_for(T * terms.n * d), kThreads, 0, s.stream>>>(tb.dehat, T * terms.n * d, d, terms,
                                                                                   s.stats);
            NE_CUDA_CHECK_LAUNCH("aux_scale_kernel");
        }
    }

    // A batch whose loss is not finite is not applied: no backward, no update, every tensor stays as it was.
    const double coefficient = relu ? spec.l1_coefficient : jump ? spec.l0_coefficient : levels.inner > 0 ? 1.0 : 0.0;
    auto loss_of = [&](const SaeDeviceStats& h) {
        SaeLoss l{};
        l.mse = h.sse / static_cast<double>(T);
        l.fvu = h.variance > 0 ? h.sse / h.variance : 0.0;
        l.l0 = h.l0 / static_cast<double>(T);
        l.sparsity = coefficient * h.sparsity / static_cast<double>(T);
        l.auxk = 0.0;
        for (int q = 0; q < terms.n && ka > 0; ++q)
            if (terms.cap[q] > 0 && h.aux_den[q] > 0) l.auxk += terms.alpha[q] * h.aux_num[q] / h.aux_den[q];
        l.min_kept = batch_select ? h.min_kept : 0.0;
        l.dead = static_cast<int64_t>(h.dead);
        l.parameters_finite = h.non_finite_rows == 0;
        return l;
    };
    const bool apply = training && std::isfinite(loss_of(read_stats(s)).total());

    if (apply && arch == kSaeMatchingPursuit) {
        NE_NVTX_RANGE("sae.backward");
        // No encoder: W_enc and b_enc get zero gradients; the latents some step chose are the touched ones.
        const float* b_dec_rows = pursuit_backward(s.pursuit, pursuit_batch(s, spec), tb.dxhat, s.grads.W_dec,
                                                   s.latent_count);
        NE_CUDA_CHECK(cudaMemsetAsync(s.grads.W_enc, 0, d * m * sizeof(float), s.stream));
        NE_CUDA_CHECK(cudaMemsetAsync(s.grads.b_enc, 0, m * sizeof(float), s.stream));
        column_sums(s, b_dec_rows, T, d, nullptr, 1.0, nullptr, s.grads.b_dec);
    }
    if (apply && arch != kSaeMatchingPursuit) {
        NE_NVTX_RANGE("sae.backward");
        const SaeDeviceTensors& p = s.params;
        const SaeDeviceTensors& g = s.grads;
        const float l1 = spec.l1_coefficient / static_cast<float>(T);
        DzArgs dz{T, cap, d, list_idx, tb.count, tb.dxhat, levels, tb.level_dx, p.W_dec, relu ? s.row_norm : nullptr,
                  l1, sb.slot_dz};
        dz_kernel<<<grid_for(32 * T * cap), kThreads, 0, s.stream>>>(dz);
        NE_CUDA_CHECK_LAUNCH("dz_kernel");
        if (ka > 0) {
            DzArgs x{T * terms.n, ka, d, tb.aux_idx[at.aux], tb.aux_count, tb.dehat, Levels{}, nullptr, p.W_dec,
                     nullptr, 0.0f, tb.aux_dz};
            dz_kernel<<<grid_for(32 * T * terms.n * ka), kThreads, 0, s.stream>>>(x);
            NE_CUDA_CHECK_LAUNCH("dz_kernel (AuxK)");
        }
        // Bucket the entries by latent: a stable sort on the latent keeps each latent's entries in entry order.
        const int64_t entries = T * (cap + terms.n * ka);
        NE_CUDA_CHECK(cudaMemsetAsync(s.latent_count, 0, (m + 1) * sizeof(int32_t), s.stream));
        BucketArgs bucket{T, cap, ka, m, terms.n, list_idx, tb.count, tb.aux_idx[at.aux], tb.aux_count, s.stats,
                          sb.keys, sb.values, s.latent_count};
        bucket_keys_kernel<<<grid_for(entries), kThreads, 0, s.stream>>>(bucket);
        NE_CUDA_CHECK_LAUNCH("bucket_keys_kernel");
        int end_bit = 1;
        while (end_bit < 32 && (int64_t(1) << end_bit) <= m) ++end_bit;
        sort_pairs(s, sb.keys, sb.keys_sorted, sb.values, sb.values_sorted, entries, end_bit);
        size_t bytes = 0;
        NE_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, s.latent_count, s.latent_begin,
                                                    static_cast<int>(m + 1), s.stream));
        ensure_temp(s, bytes);
        NE_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(s.temp.data(), bytes, s.latent_count, s.latent_begin,
                                                    static_cast<int>(m + 1), s.stream));
        LatentArgs la{};
        la.T = T;
        la.cap = cap;
        la.ka = ka;
        la.terms = terms.n;
        la.d = d;
        la.jump = jump;
        la.relu = relu;
        la.eps = spec.jump_bandwidth;
        la.l0_term = spec.l0_coefficient / (static_cast<float>(T) * spec.jump_bandwidth);
        la.l1 = l1;
        la.begin = s.latent_begin;
        la.entries = sb.values_sorted;
        la.list_u = list_u;
        la.slot_dz = sb.slot_dz;
        la.aux_u = tb.aux_u[at.aux];
        la.aux_dz = tb.aux_dz;
        la.dxhat = tb.dxhat;
        la.levels = levels;
        la.level_dx = tb.level_dx;
        la.dehat = tb.dehat;
        la.xc = tb.xc;
        la.W_dec = p.W_dec;
        la.theta = s.theta;
        la.row_norm = s.row_norm;
        la.gW_dec = g.W_dec;
        la.gWencT = s.gWencT;
        la.gb_enc = g.b_enc;
        la.enc_sum = s.enc_sum;
        la.glog = g.log_threshold;
        latent_grad_kernel<<<static_cast<unsigned>(m), kThreads, 0, s.stream>>>(la);
        NE_CUDA_CHECK_LAUNCH("latent_grad_kernel");
        transpose_kernel<<<dim3(static_cast<unsigned>((m + 31) / 32), static_cast<unsigned>((d + 31) / 32)), dim3(32, 8),
                           0, s.stream>>>(s.gWencT, m, d, g.W_enc);
        NE_CUDA_CHECK_LAUNCH("transpose_kernel");
        // Matryoshka: level 0's rows hold every level's term.
        column_sums(s, levels.inner > 0 ? tb.level_dx : tb.dxhat, T, d, nullptr, 1.0, nullptr, g.b_dec);
        b_dec_encoder_kernel<<<static_cast<unsigned>(d), kThreads, 0, s.stream>>>(p.W_enc, s.enc_sum, m, g.b_dec);
        NE_CUDA_CHECK_LAUNCH("b_dec_encoder_kernel");
    }
    if (apply) {
        NE_NVTX_RANGE("sae.optimizer");
        since_fired_kernel<<<grid_for(m), kThreads, 0, s.stream>>>(s.fire_count, m, T, s.since_fired);
        NE_CUDA_CHECK_LAUNCH("since_fired_kernel");
        project_kernel<<<static_cast<unsigned>(m), kThreads, 0, s.stream>>>(s.params.W_dec, d, s.grads.W_dec);
        NE_CUDA_CHECK_LAUNCH("project_kernel");
        // Sparse updates touch every latent with a gradient this step: it has entries in the backward's buckets.
        const int32_t* touched = sparse_updates ? s.latent_count : nullptr;
        const Layout layouts[] = {Layout::kColumns, Layout::kVector, Layout::kRows, Layout::kDense, Layout::kVector};
        const int64_t inner[] = {m, 1, d, 1, 1};
        for (int which = 0; which < 5; ++which) {
            const int64_t n = tensor_floats(spec, which);
            if (n == 0) continue;
            const Layout layout = touched != nullptr ? layouts[which] : Layout::kDense;
            adam_kernel<<<grid_for(n), kThreads, 0, s.stream>>>(*slot_of(s.params, which), *slot_of(s.grads, which),
                                                                *slot_of(s.moment1, which), *slot_of(s.moment2, which),
                                                                n, *adam, touched, layout, inner[which]);
            NE_CUDA_CHECK_LAUNCH("adam_kernel");
        }
        normalize_kernel<<<static_cast<unsigned>(m), kThreads, 0, s.stream>>>(s.params.W_dec, d, s.stats);
        NE_CUDA_CHECK_LAUNCH("normalize_kernel");
    }

    if (x_hat_host != nullptr)
        NE_CUDA_CHECK(cudaMemcpyAsync(x_hat_host, tb.x_hat, T * d * sizeof(float), cudaMemcpyDeviceToHost, s.stream));
    if (fire_host != nullptr)
        NE_CUDA_CHECK(cudaMemcpyAsync(fire_host, s.fire_count, m * sizeof(int64_t), cudaMemcpyDeviceToHost, s.stream));
    loss = loss_of(read_stats(s));
    loss.applied = apply || !training;
}

// Copies each non-null host tensor to or from the device tensors.
template <typename Host>
void copy_tensors(ne_cuda_sae& s, SaeDeviceTensors& device, const Host& host, cudaMemcpyKind kind) {
    const float* views[5] = {host.W_enc, host.b_enc, host.W_dec, host.b_dec, host.log_threshold};
    for (int which = 0; which < 5; ++which) {
        const int64_t n = tensor_floats(s.spec, which);
        if (n == 0 || views[which] == nullptr) continue;
        float* dev = *slot_of(device, which);
        if (kind == cudaMemcpyHostToDevice)
            NE_CUDA_CHECK(cudaMemcpyAsync(dev, views[which], n * sizeof(float), kind, s.stream));
        else
            NE_CUDA_CHECK(cudaMemcpyAsync(const_cast<float*>(views[which]), dev, n * sizeof(float), kind, s.stream));
    }
}

void zero_tensors(ne_cuda_sae& s, SaeDeviceTensors& device) {
    for (int which = 0; which < 5; ++which) {
        const int64_t n = tensor_floats(s.spec, which);
        if (n > 0) NE_CUDA_CHECK(cudaMemsetAsync(*slot_of(device, which), 0, n * sizeof(float), s.stream));
    }
}

// What the kernels cannot take: indices past 32 bits. (Every precision runs on every device the plugin serves:
// tf32 and bf16 GEMMs need sm_80, and the plugin is built for sm_80 and later.)
void check_supported(const SaeSpec& spec, int32_t precision) {
    if (precision < NE_SAE_FP32 || precision > NE_SAE_BF16)
        invalid("precision is " + std::to_string(precision) + "; valid: 0 (fp32), 1 (tf32), 2 (bf16)");
    if (spec.architecture == kSaeMatchingPursuit && spec.batch * pursuit_step_bound(spec) > kSaeMaxSlots)
        fail(NE_ERR_UNSUPPORTED, "batch * pursuit steps = " + std::to_string(spec.batch * pursuit_step_bound(spec)) +
                                     " exceeds the CUDA SAE kernels' limit 2^31 - 1; use a smaller batch or "
                                     "max_iterations");
    if (spec.d > INT32_MAX || spec.m >= INT32_MAX || spec.batch > INT32_MAX)
        fail(NE_ERR_UNSUPPORTED, "d_in, d_sae and batch must stay below 2^31 for the CUDA SAE kernels");
    const bool selects = spec.architecture == kSaeTopK || sae_batch_selects(spec.architecture);
    const int64_t slots = spec.batch * ((selects ? spec.k : 1) + spec.aux_k());
    if (slots > kSaeMaxSlots)
        fail(NE_ERR_UNSUPPORTED, "batch * (k + k_aux) = " + std::to_string(slots) +
                                     " exceeds the CUDA SAE kernels' limit 2^31 - 1; use a smaller batch");
}

// The guards of every arena of the model (NE_ARENA_GUARD), after a call that launched kernels.
void verify_guards(const ne_cuda_sae& s) {
    verify_guards(s.stream, s.arena, s.tokens.arena, s.slots.arena, s.temp, s.pursuit.tokens, s.pursuit.entries,
                  s.pursuit.temp);
}

}  // namespace

int32_t sae_supports(int32_t device, const SaeSpec* spec, int32_t precision, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] { check_supported(*spec, precision); });
}

int32_t sae_create(int32_t device, const SaeSpec* spec, int32_t precision, ne_cuda_sae** out, char* err,
                   size_t err_size) {
    return plugin_call(err, err_size, [&] {
        check_supported(*spec, precision);
        const int64_t d = spec->d, m = spec->m;
        NE_CUDA_CHECK(cudaSetDevice(device));
        std::unique_ptr<ne_cuda_sae, void (*)(ne_cuda_sae*)> sae(new ne_cuda_sae{}, sae_destroy);
        sae->device = device;
        sae->spec = *spec;
        sae->precision = precision;
        sae->chunk = kDefaultChunk;
        // NE_SAE_CHUNK overrides the encoder's chunk width (the tests use it to cross chunk boundaries at small m).
        if (const char* v = std::getenv("NE_SAE_CHUNK"); v != nullptr && std::atoll(v) > 0) sae->chunk = std::atoll(v);
        NE_CUDA_CHECK(cudaStreamCreateWithFlags(&sae->stream, cudaStreamNonBlocking));
        NE_CUBLAS_CHECK(cublasCreate(&sae->blas));
        NE_CUBLAS_CHECK(cublasSetStream(sae->blas, sae->stream));
        const bool bf16 = precision == NE_SAE_BF16;
        ne_cuda_sae& s = *sae;
        const size_t bytes = s.arena.allocate([&](ArenaCarver& c) {
            for (SaeDeviceTensors* t : {&s.params, &s.grads, &s.moment1, &s.moment2}) carve_tensors(c, *spec, *t);
            s.since_fired = c.take<int64_t>(m);
            s.fire_count = c.take<int64_t>(m);
            s.dead = c.take<uint8_t>(m);
            s.theta = c.take<float>(m);
            s.cut = c.take<float>(m);
            s.row_norm = c.take<float>(m);
            s.enc_sum = c.take<float>(m);
            s.gWencT = c.take<float>(m * d);
            s.W_enc_bf16 = bf16 ? c.take<__nv_bfloat16>(d * m) : nullptr;
            s.latent_count = c.take<int32_t>(m + 1);
            s.latent_begin = c.take<int32_t>(m + 1);
            s.stats = c.take<SaeDeviceStats>(1);
        });
        NE_CUDA_CHECK(cudaMemsetAsync(s.arena.data(), 0, bytes, s.stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(s.stream));
        s.arena.write_guards();  // the memset covered them (NE_ARENA_GUARD)
        *out = sae.release();
    });
}

void sae_destroy(ne_cuda_sae* sae) {
    if (sae == nullptr) return;
    cudaSetDevice(sae->device);
    if (sae->stream != nullptr) cudaStreamSynchronize(sae->stream);
    if (sae->blas != nullptr) cublasDestroy(sae->blas);
    if (sae->stream != nullptr) cudaStreamDestroy(sae->stream);
    delete sae;  // the arenas check their guards (NE_ARENA_GUARD) and free their allocations
}

int32_t sae_set_params(ne_cuda_sae* sae, const SaeParams<float>* params, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(sae->device));
        copy_tensors(*sae, sae->params, *params, cudaMemcpyHostToDevice);
        NE_CUDA_CHECK(cudaStreamSynchronize(sae->stream));
    });
}

int32_t sae_get_params(ne_cuda_sae* sae, const SaeGrads<float>* params, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(sae->device));
        copy_tensors(*sae, sae->params, *params, cudaMemcpyDeviceToHost);
        NE_CUDA_CHECK(cudaStreamSynchronize(sae->stream));
    });
}

int32_t sae_set_state(ne_cuda_sae* sae, const SaeParams<float>* moment1, const SaeParams<float>* moment2,
                      const int64_t* since_fired, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(sae->device));
        ne_cuda_sae& s = *sae;
        if (moment1 != nullptr) copy_tensors(s, s.moment1, *moment1, cudaMemcpyHostToDevice);
        else zero_tensors(s, s.moment1);
        if (moment2 != nullptr) copy_tensors(s, s.moment2, *moment2, cudaMemcpyHostToDevice);
        else zero_tensors(s, s.moment2);
        if (since_fired != nullptr)
            NE_CUDA_CHECK(cudaMemcpyAsync(s.since_fired, since_fired, s.spec.m * sizeof(int64_t), cudaMemcpyHostToDevice,
                                          s.stream));
        else
            NE_CUDA_CHECK(cudaMemsetAsync(s.since_fired, 0, s.spec.m * sizeof(int64_t), s.stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    });
}

int32_t sae_get_state(ne_cuda_sae* sae, const SaeGrads<float>* moment1, const SaeGrads<float>* moment2,
                      int64_t* since_fired, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(sae->device));
        ne_cuda_sae& s = *sae;
        copy_tensors(s, s.moment1, *moment1, cudaMemcpyDeviceToHost);
        copy_tensors(s, s.moment2, *moment2, cudaMemcpyDeviceToHost);
        NE_CUDA_CHECK(cudaMemcpyAsync(since_fired, s.since_fired, s.spec.m * sizeof(int64_t), cudaMemcpyDeviceToHost,
                                      s.stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    });
}

int32_t sae_train_step(ne_cuda_sae* sae, const float* x, const AdamStep* adam, int32_t sparse_updates, SaeLoss* loss,
                       char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_NVTX_RANGE("sae.train_step");
        NE_CUDA_CHECK(cudaSetDevice(sae->device));
        run_batch(*sae, sae->spec, x, adam, sparse_updates, nullptr, nullptr, *loss);
        verify_guards(*sae);
    });
}

// Read by every later step (run_batch takes the spec as it then is).
int32_t sae_set_sparsity_coefficients(ne_cuda_sae* sae, float l1_coefficient, float l0_coefficient, char* err,
                                      size_t err_size) {
    return plugin_call(err, err_size, [&] {
        sae->spec.l1_coefficient = l1_coefficient;
        sae->spec.l0_coefficient = l0_coefficient;
    });
}

int32_t sae_train_step_synth(ne_cuda_sae* sae, ne_cuda_synth* synth, uint32_t stream, uint32_t step, uint32_t first,
                             float scale, const AdamStep* adam, int32_t sparse_updates, SaeLoss* loss, char* err,
                             size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_NVTX_RANGE("sae.train_step");
        if (synth_device(*synth) != sae->device) invalid("the synth lives on another device than the SAE");
        NE_CUDA_CHECK(cudaSetDevice(sae->device));
        const float* x = synth_draw_device(*synth, sae->stream, static_cast<Stream>(stream), step, first, sae->spec.batch,
                                           scale);
        run_batch(*sae, sae->spec, x, adam, sparse_updates, nullptr, nullptr, *loss, true);
    });
}

int32_t sae_evaluate(ne_cuda_sae* sae, const SaeSpec* spec, const float* x, float* x_hat, int64_t* fire_count,
                     SaeLoss* loss, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_NVTX_RANGE("sae.evaluate");
        const SaeSpec& own = sae->spec;
        if (spec->d != own.d || spec->m != own.m || spec->architecture != own.architecture)
            invalid("evaluation spec has another shape or architecture than the model");
        if (spec->batch < 1 || spec->batch > INT32_MAX) invalid("evaluation tokens " + std::to_string(spec->batch) + " out of range");
        NE_CUDA_CHECK(cudaSetDevice(sae->device));
        SaeSpec eval = *spec;
        eval.auxk_alpha = 0;
        run_batch(*sae, eval, x, nullptr, 0, x_hat, fire_count, *loss);
        verify_guards(*sae);
    });
}

}  // namespace ne::cuda
