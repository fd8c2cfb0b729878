// Matching pursuit on the GPU (models/sae.h's matching_pursuit), the twin of cpu/sae_pursuit.cpp, tested against
// it by cuda/tests/test_sae_parity.cpp. The CPU walks one token at a time; here every step runs over the whole batch:
//
//  forward   r_0 = xc. Per step: the dots R W_dec^T by the encoder's cuBLAS GEMM over chunks of latents (in the
//            model's precision); one block per token keeps the chunks' argmax of ReLU(dot) (ties: the lower latent,
//            so latent 0 when every dot is <= 0); then one block per still-running token recomputes the chosen dot
//            in fp32 (pre, v = ReLU(pre): a tf32 or bf16 GEMM only chooses), asks whether an earlier step holds the
//            latent (the support), updates r and ||r|| (double), records (latent, pre, v) and applies the stopping
//            rules. The host runs the steps, reading how many tokens still run every few steps; once at most half
//            of the tokens in the GEMM still run, the running ones are compacted (in token order, by a scan) and
//            their residuals gathered, so a long tail of a few tokens does not pay for the whole batch's GEMM.
//  codes     one block per token turns its records into a list sorted by latent with z_j = the sum of its values
//            in step order (as the CPU accumulates them); sae_cuda.cu's decoder, fire counts and loss read it.
//  backward  one block per token walks its steps last first (the CPU's recurrence: g_r = d loss/d r_{q+1}, r_q
//            rebuilt as r_{q+1} + v w) and writes each step's contribution to its decoder row,
//            v (dxhat - g_r) + [pre > 0] (dxhat - g_r).w r_q, as a row of its own; the rows are bucketed by latent
//            (a stable radix sort of (latent, entry)) and one block per latent adds its rows in entry order (token,
//            then step). Tokens go in groups whose rows fit a bounded buffer, the groups in order. b_dec's gradient
//            per token, dxhat - d loss/d r_0, is summed over tokens in fixed order by the caller.
//
// Determinism: sums are a thread's own loop, fixed-shape trees or sequential over sorted entries; atomics only
// count integers. The CPU differs by summation order and FMA contraction, so its choices are the same except on
// near-ties.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <string>
#include <vector>

#include "core/nvtx.h"
#include "cuda/cuda_check.h"
#include "cuda/sae_device.h"
#include "cuda/sae_pursuit_cuda.h"
#include "nativeengine.h"

namespace ne::cuda {
namespace {

constexpr int kCheckEvery = 4;                         // steps between reads of the running count
constexpr int64_t kContributionFloats = int64_t(1) << 26;  // bound on the backward's rows per group (256 MiB)

__global__ void pursuit_bf16_kernel(const float* in, int64_t n, __nv_bfloat16* out) {
    for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x)
        out[e] = __float2bfloat16(in[e]);
}

__global__ void pursuit_start_kernel(int64_t T, uint8_t* running, int32_t* steps, float* best_value,
                                     int32_t* best_latent) {
    for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t <= T; t += int64_t(gridDim.x) * blockDim.x) {
        steps[t] = 0;
        if (t == T) continue;
        running[t] = 1;
        best_value[t] = 0.0f;
        best_latent[t] = 0;
    }
}

// flags[t] = running[t] (flags[T] = 0), for the scan that compacts the running tokens.
__global__ void pursuit_flags_kernel(int64_t T, const uint8_t* running, int32_t* flags) {
    for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t <= T; t += int64_t(gridDim.x) * blockDim.x)
        flags[t] = t < T && running[t] ? 1 : 0;
}

// active[position[t]] = t for every running token: the running tokens in token order.
__global__ void pursuit_compact_kernel(int64_t T, const uint8_t* running, const int32_t* position, int32_t* active) {
    for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < T; t += int64_t(gridDim.x) * blockDim.x)
        if (running[t]) active[position[t]] = static_cast<int32_t>(t);
}

// gathered row r = residual row active[r].
__global__ void pursuit_gather_kernel(int64_t rows, int64_t d, const int32_t* active, const float* residual,
                                      float* gathered) {
    for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < rows * d; e += int64_t(gridDim.x) * blockDim.x)
        gathered[e] = residual[int64_t(active[e / d]) * d + e % d];
}

// One block per token: the chunk's best ReLU(dot) (the lower latent on a tie) replaces the token's best so far
// when strictly larger; chunks come in latent order, so ties keep the lower latent.
// Block b is row b of U and token active[b] (active null: token b).
__global__ void __launch_bounds__(kThreads) pursuit_argmax_kernel(const float* U, int32_t width, int64_t j0,
                                                                  const int32_t* active, const uint8_t* running,
                                                                  float* best_value, int32_t* best_latent) {
    __shared__ float s_value[kThreads];
    __shared__ int32_t s_column[kThreads];
    const int64_t t = active != nullptr ? active[blockIdx.x] : blockIdx.x;
    if (!running[t]) return;  // the whole block
    const float* row = U + int64_t(blockIdx.x) * width;
    float value = 0.0f;
    int32_t column = -1;  // none
    for (int32_t c = threadIdx.x; c < width; c += kThreads) {
        const float v = row[c] > 0.0f ? row[c] : 0.0f;
        if (column < 0 || v > value) {
            value = v;
            column = c;
        }
    }
    s_value[threadIdx.x] = value;
    s_column[threadIdx.x] = column;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            const float v = s_value[threadIdx.x + s];
            const int32_t c = s_column[threadIdx.x + s];
            const int32_t mine = s_column[threadIdx.x];
            if (c >= 0 && (mine < 0 || v > s_value[threadIdx.x] || (v == s_value[threadIdx.x] && c < mine))) {
                s_value[threadIdx.x] = v;
                s_column[threadIdx.x] = c;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0 && s_column[0] >= 0 && s_value[0] > best_value[t]) {
        best_value[t] = s_value[0];
        best_latent[t] = static_cast<int32_t>(j0 + s_column[0]);
    }
}

struct StepArgs {
    int64_t d, stride, q, limit;  // stride: records per token; q: this step; limit: steps at most
    int32_t stop_on_duplicate;
    float residual_threshold;
    const float* W_dec;
    float* residual;
    const int32_t* active;  // block b steps token active[b] (null: token b)
    uint8_t* running;
    float* best_value;
    int32_t* best_latent;
    int32_t* record_latent;
    float *record_pre, *record_value;
    int32_t* steps;
    int32_t* still_running;
};

// One block per running token: step q of its pursuit (see the file comment).
__global__ void __launch_bounds__(kThreads) pursuit_step_kernel(StepArgs a) {
    __shared__ float red_f[kThreads];
    __shared__ int red_i[kThreads];
    __shared__ double red_d[kThreads];
    const int64_t t = a.active != nullptr ? a.active[blockIdx.x] : blockIdx.x, d = a.d;
    if (!a.running[t]) return;  // the whole block
    const int32_t j = a.best_latent[t];
    const float* w = a.W_dec + int64_t(j) * d;
    float* r = a.residual + t * d;
    float partial = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += kThreads) partial += r[i] * w[i];
    const float pre = block_sum(partial, red_f);
    const float v = pre > 0.0f ? pre : 0.0f;
    // Whether an earlier step put j in the support (z_j != 0: one of its values was positive).
    const int32_t* latents = a.record_latent + t * a.stride;
    const float* values = a.record_value + t * a.stride;
    int held = 0;
    for (int64_t p = threadIdx.x; p < a.q; p += kThreads) held += latents[p] == j && values[p] > 0.0f ? 1 : 0;
    held = block_sum(held, red_i);
    const bool new_support = held == 0 && v != 0.0f;
    double sq = 0.0;
    for (int64_t i = threadIdx.x; i < d; i += kThreads) {
        r[i] -= v * w[i];
        sq += static_cast<double>(r[i]) * static_cast<double>(r[i]);
    }
    sq = block_sum(sq, red_d);
    if (threadIdx.x == 0) {
        const int64_t at = t * a.stride + a.q;
        a.record_latent[at] = j;
        a.record_pre[at] = pre;
        a.record_value[at] = v;
        a.steps[t] = static_cast<int32_t>(a.q + 1);
        a.best_value[t] = 0.0f;
        a.best_latent[t] = 0;
        const bool stop = a.q + 1 >= a.limit || (a.stop_on_duplicate && !new_support) ||
                          (a.residual_threshold > 0 && sqrt(sq) < static_cast<double>(a.residual_threshold));
        if (stop) a.running[t] = 0;
        else atomicAdd(a.still_running, 1);
    }
}

struct ListArgs {
    int64_t stride, cap;
    const int32_t* steps;
    const int32_t* record_latent;
    const float* record_value;
    uint8_t* record_first;
    float* list_u;
    int32_t *list_idx, *count;
};

// One block per token: its support as a list sorted by latent, z_j summed over j's steps in step order.
__global__ void __launch_bounds__(kThreads) pursuit_list_kernel(ListArgs a) {
    __shared__ int red_i[kThreads];
    const int64_t t = blockIdx.x;
    const int32_t n = a.steps[t];
    const int32_t* latents = a.record_latent + t * a.stride;
    const float* values = a.record_value + t * a.stride;
    uint8_t* first = a.record_first + t * a.stride;
    int mine = 0;
    for (int32_t q = threadIdx.x; q < n; q += kThreads) {
        bool is_first = values[q] > 0.0f;
        for (int32_t p = 0; p < q && is_first; ++p) is_first = !(latents[p] == latents[q] && values[p] > 0.0f);
        first[q] = is_first ? 1 : 0;
        mine += is_first ? 1 : 0;
    }
    const int total = block_sum(mine, red_i);  // synchronises: every flag is written
    for (int32_t q = threadIdx.x; q < n; q += kThreads) {
        if (!first[q]) continue;
        const int32_t j = latents[q];
        float z = 0.0f;
        for (int32_t p = q; p < n; ++p)
            if (latents[p] == j) z += values[p];
        int rank = 0;
        for (int32_t p = 0; p < n; ++p) rank += first[p] && latents[p] < j ? 1 : 0;
        a.list_u[t * a.cap + rank] = z;
        a.list_idx[t * a.cap + rank] = j;
    }
    if (threadIdx.x == 0) a.count[t] = total;
}

// latent_count[j] += the steps (of every token) that chose j.
__global__ void pursuit_count_kernel(int64_t T, int64_t stride, const int32_t* steps, const int32_t* record_latent,
                                     int32_t* latent_count) {
    for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < T * stride;
         e += int64_t(gridDim.x) * blockDim.x)
        if (e % stride < steps[e / stride]) atomicAdd(latent_count + record_latent[e], 1);
}

struct WalkArgs {
    int64_t t0, d, stride, base;  // first token of the group; base: its first entry
    const int32_t *steps, *offsets, *record_latent;
    const float *record_pre, *record_value;
    const float *W_dec, *dxhat;
    float *residual, *grad_residual;  // [T][d]; grad_residual zero on entry
    float* contributions;             // [entries of the group][d]
};

// One block per token of the group: the reverse walk over its steps (see the file comment).
__global__ void __launch_bounds__(kThreads) pursuit_walk_kernel(WalkArgs a) {
    __shared__ float red_f[kThreads];
    const int64_t t = a.t0 + blockIdx.x, d = a.d;
    const int32_t n = a.steps[t];
    const int64_t e0 = a.offsets[t] - a.base;
    float* r = a.residual + t * d;
    float* gr = a.grad_residual + t * d;
    const float* dx = a.dxhat + t * d;
    for (int32_t q = n - 1; q >= 0; --q) {
        const int64_t at = t * a.stride + q;
        const float* w = a.W_dec + int64_t(a.record_latent[at]) * d;
        const float pre = a.record_pre[at], v = a.record_value[at];
        // d loss/d v_q: through z_j (dxhat . w) and through r_{q+1} (-g_r . w).
        float partial = 0.0f;
        for (int64_t i = threadIdx.x; i < d; i += kThreads) partial += (dx[i] - gr[i]) * w[i];
        const float g_value = block_sum(partial, red_f);
        float* out = a.contributions + (e0 + q) * d;
        for (int64_t i = threadIdx.x; i < d; i += kThreads) {
            float c = v * (dx[i] - gr[i]);
            r[i] += v * w[i];  // now r_q
            if (pre > 0.0f) {  // else ReLU's flat side
                c += g_value * r[i];
                gr[i] += g_value * w[i];
            }
            out[i] = c;
        }
    }
    // r_0 = x - b_dec: b_dec's gradient from this token.
    for (int64_t i = threadIdx.x; i < d; i += kThreads) gr[i] = dx[i] - gr[i];
}

// The group's entries keyed by latent, entry index as value; group_count[j] += its entries.
__global__ void pursuit_keys_kernel(int64_t t0, int64_t stride, int64_t base, const int32_t* steps,
                                    const int32_t* offsets, const int32_t* record_latent, uint32_t* keys,
                                    int32_t* values, int32_t* group_count) {
    const int64_t t = t0 + blockIdx.x;
    const int32_t n = steps[t];
    const int64_t e0 = offsets[t] - base;
    for (int32_t q = threadIdx.x; q < n; q += kThreads) {
        const int32_t j = record_latent[t * stride + q];
        keys[e0 + q] = static_cast<uint32_t>(j);
        values[e0 + q] = static_cast<int32_t>(e0 + q);
        atomicAdd(group_count + j, 1);
    }
}

// One block per latent: gW_dec[j] += its rows of the group, in entry order.
__global__ void __launch_bounds__(kThreads) pursuit_reduce_kernel(int64_t d, const int32_t* begin,
                                                                  const int32_t* entries, const float* contributions,
                                                                  float* gW_dec) {
    const int64_t j = blockIdx.x;
    const int32_t first = begin[j], last = begin[j + 1];
    if (first == last) return;
    for (int64_t i = threadIdx.x; i < d; i += kThreads) {
        float sum = gW_dec[j * d + i];
        for (int32_t e = first; e < last; ++e) sum += contributions[int64_t(entries[e]) * d + i];
        gW_dec[j * d + i] = sum;
    }
}

// ---- host side -----------------------------------------------------------------------------------------------

void ensure_token_buffers(PursuitBuffers& b, cudaStream_t stream, int64_t T, int64_t steps, int64_t d, int64_t m) {
    if (b.tokens && T <= b.capacity_tokens && steps <= b.capacity_steps && m <= b.capacity_latents) return;
    T = std::max(T, b.capacity_tokens);
    steps = std::max(steps, b.capacity_steps);
    m = std::max(m, b.capacity_latents);
    NE_CUDA_CHECK(cudaStreamSynchronize(stream));  // kernels queued may still use the old buffers
    b.tokens.allocate([&](ArenaCarver& c) {
        b.residual = c.take<float>(T * d);
        b.grad_residual = c.take<float>(T * d);
        b.record_latent = c.take<int32_t>(T * steps);
        b.record_pre = c.take<float>(T * steps);
        b.record_value = c.take<float>(T * steps);
        b.record_first = c.take<uint8_t>(T * steps);
        b.steps = c.take<int32_t>(T + 1);
        b.offsets = c.take<int32_t>(T + 1);
        b.running = c.take<uint8_t>(T);
        b.active = c.take<int32_t>(T + 1);
        b.position = c.take<int32_t>(T + 1);
        b.gathered = c.take<float>(T * d);
        b.best_value = c.take<float>(T);
        b.best_latent = c.take<int32_t>(T);
        b.still_running = c.take<int32_t>(1);
        b.group_count = c.take<int32_t>(m + 1);
        b.group_begin = c.take<int32_t>(m + 1);
    });
    b.capacity_tokens = T;
    b.capacity_steps = steps;
    b.capacity_latents = m;
}

void ensure_entry_buffers(PursuitBuffers& b, cudaStream_t stream, int64_t entries, int64_t d) {
    if (b.entries && entries <= b.capacity_entries) return;
    entries = std::max(entries, b.capacity_entries);
    NE_CUDA_CHECK(cudaStreamSynchronize(stream));
    b.entries.allocate([&](ArenaCarver& c) {
        b.contributions = c.take<float>(entries * d);
        b.keys = c.take<uint32_t>(entries);
        b.keys_sorted = c.take<uint32_t>(entries);
        b.values = c.take<int32_t>(entries);
        b.values_sorted = c.take<int32_t>(entries);
    });
    b.capacity_entries = entries;
}

void ensure_temp(PursuitBuffers& b, cudaStream_t stream, size_t bytes) {
    if (bytes <= b.temp.bytes()) return;
    NE_CUDA_CHECK(cudaStreamSynchronize(stream));
    b.temp.allocate([&](ArenaCarver& c) { c.take<char>(static_cast<int64_t>(bytes)); });
}

// U [T][width] = R [T][d] W_dec[j0 .. j0 + width)^T (row-major on both sides: cuBLAS sees U^T = W_chunk R^T, W_chunk
// read transposed from its [width][d] rows).
void dots_gemm(const PursuitBatch& p, const float* R, int64_t T, int64_t j0, int64_t width) {
    const float one = 1.0f, zero = 0.0f;
    const int64_t d = p.spec->d;
    const bool bf16 = p.precision == NE_SAE_BF16;
    const void* A = bf16 ? static_cast<const void*>(p.W_dec_bf16 + j0 * d) : static_cast<const void*>(p.W_dec + j0 * d);
    const void* B = bf16 ? static_cast<const void*>(p.residual_bf16) : static_cast<const void*>(R);
    const cudaDataType_t type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t compute = p.precision == NE_SAE_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    NE_CUBLAS_CHECK(cublasGemmEx(p.blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(width), static_cast<int>(T),
                                 static_cast<int>(d), &one, A, type, static_cast<int>(d), B, type, static_cast<int>(d),
                                 &zero, p.U, CUDA_R_32F, static_cast<int>(width), compute, CUBLAS_GEMM_DEFAULT));
}

// b.active = the running tokens in token order (a scan of their flags).
void compact_running(PursuitBuffers& b, cudaStream_t stream, int64_t T) {
    pursuit_flags_kernel<<<grid_for(T + 1), kThreads, 0, stream>>>(T, b.running, b.active);
    NE_CUDA_CHECK_LAUNCH("pursuit_flags_kernel");
    size_t bytes = 0;
    NE_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, b.active, b.position, static_cast<int>(T + 1), stream));
    ensure_temp(b, stream, bytes);
    NE_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(b.temp.data(), bytes, b.active, b.position, static_cast<int>(T + 1),
                                                stream));
    pursuit_compact_kernel<<<grid_for(T), kThreads, 0, stream>>>(T, b.running, b.position, b.active);
    NE_CUDA_CHECK_LAUNCH("pursuit_compact_kernel");
}

}  // namespace

int64_t pursuit_step_bound(const SaeSpec& spec) {
    const int64_t limit = spec.pursuit_iterations();
    return spec.stop_on_duplicate_support ? std::min(limit, spec.m + 1) : limit;
}

int64_t pursuit_forward(PursuitBuffers& b, const PursuitBatch& p) {
    NE_NVTX_RANGE("sae.pursuit");
    const SaeSpec& spec = *p.spec;
    const int64_t T = spec.batch, d = spec.d, m = spec.m, bound = pursuit_step_bound(spec);
    ensure_token_buffers(b, p.stream, T, bound, d, m);
    NE_CUDA_CHECK(cudaMemcpyAsync(b.residual, p.xc, T * d * sizeof(float), cudaMemcpyDeviceToDevice, p.stream));
    pursuit_start_kernel<<<grid_for(T + 1), kThreads, 0, p.stream>>>(T, b.running, b.steps, b.best_value,
                                                                     b.best_latent);
    NE_CUDA_CHECK_LAUNCH("pursuit_start_kernel");
    const bool bf16 = p.precision == NE_SAE_BF16;
    if (bf16) {
        pursuit_bf16_kernel<<<grid_for(m * d), kThreads, 0, p.stream>>>(p.W_dec, m * d, p.W_dec_bf16);
        NE_CUDA_CHECK_LAUNCH("pursuit_bf16_kernel");
    }
    StepArgs a{};
    a.d = d;
    a.stride = b.capacity_steps;
    a.limit = spec.pursuit_iterations();
    a.stop_on_duplicate = spec.stop_on_duplicate_support;
    a.residual_threshold = spec.residual_threshold;
    a.W_dec = p.W_dec;
    a.residual = b.residual;
    a.running = b.running;
    a.best_value = b.best_value;
    a.best_latent = b.best_latent;
    a.record_latent = b.record_latent;
    a.record_pre = b.record_pre;
    a.record_value = b.record_value;
    a.steps = b.steps;
    a.still_running = b.still_running;
    int64_t step = 0, rows = T;  // rows: tokens in the GEMM (all, or the compacted running ones)
    const int32_t* active = nullptr;
    while (step < bound) {
        const float* R = b.residual;
        if (active != nullptr) {
            pursuit_gather_kernel<<<grid_for(rows * d), kThreads, 0, p.stream>>>(rows, d, active, b.residual,
                                                                                  b.gathered);
            NE_CUDA_CHECK_LAUNCH("pursuit_gather_kernel");
            R = b.gathered;
        }
        if (bf16) {
            pursuit_bf16_kernel<<<grid_for(rows * d), kThreads, 0, p.stream>>>(R, rows * d, p.residual_bf16);
            NE_CUDA_CHECK_LAUNCH("pursuit_bf16_kernel");
        }
        for (int64_t j0 = 0; j0 < m; j0 += p.chunk) {
            const int64_t width = std::min(p.chunk, m - j0);
            dots_gemm(p, R, rows, j0, width);
            pursuit_argmax_kernel<<<static_cast<unsigned>(rows), kThreads, 0, p.stream>>>(
                p.U, static_cast<int32_t>(width), j0, active, b.running, b.best_value, b.best_latent);
            NE_CUDA_CHECK_LAUNCH("pursuit_argmax_kernel");
        }
        NE_CUDA_CHECK(cudaMemsetAsync(b.still_running, 0, sizeof(int32_t), p.stream));
        a.q = step;
        a.active = active;
        pursuit_step_kernel<<<static_cast<unsigned>(rows), kThreads, 0, p.stream>>>(a);
        NE_CUDA_CHECK_LAUNCH("pursuit_step_kernel");
        ++step;
        if (step % kCheckEvery == 0 && step < bound) {
            int32_t running = 0;
            NE_CUDA_CHECK(cudaMemcpyAsync(&running, b.still_running, sizeof running, cudaMemcpyDeviceToHost, p.stream));
            NE_CUDA_CHECK(cudaStreamSynchronize(p.stream));
            if (running == 0) break;
            if (2 * int64_t(running) <= rows) {
                compact_running(b, p.stream, T);
                active = b.active;
                rows = running;
            }
        }
    }
    return step;
}

void pursuit_lists(PursuitBuffers& b, const PursuitBatch& p, int64_t cap, float* list_u, int32_t* list_idx,
                   int32_t* count) {
    NE_NVTX_RANGE("sae.pursuit_codes");
    ListArgs a{b.capacity_steps, cap, b.steps, b.record_latent, b.record_value, b.record_first, list_u, list_idx,
               count};
    pursuit_list_kernel<<<static_cast<unsigned>(p.spec->batch), kThreads, 0, p.stream>>>(a);
    NE_CUDA_CHECK_LAUNCH("pursuit_list_kernel");
}

const float* pursuit_backward(PursuitBuffers& b, const PursuitBatch& p, const float* dxhat, float* gW_dec,
                              int32_t* latent_count) {
    NE_NVTX_RANGE("sae.pursuit_backward");
    const SaeSpec& spec = *p.spec;
    const int64_t T = spec.batch, d = spec.d, m = spec.m, stride = b.capacity_steps;
    NE_CUDA_CHECK(cudaMemsetAsync(latent_count, 0, (m + 1) * sizeof(int32_t), p.stream));
    pursuit_count_kernel<<<grid_for(T * stride), kThreads, 0, p.stream>>>(T, stride, b.steps, b.record_latent,
                                                                          latent_count);
    NE_CUDA_CHECK_LAUNCH("pursuit_count_kernel");
    // Each token's first entry, on the host too: it cuts the tokens into groups.
    size_t bytes = 0;
    NE_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, b.steps, b.offsets, static_cast<int>(T + 1), p.stream));
    ensure_temp(b, p.stream, bytes);
    NE_CUDA_CHECK(
        cub::DeviceScan::ExclusiveSum(b.temp.data(), bytes, b.steps, b.offsets, static_cast<int>(T + 1), p.stream));
    std::vector<int32_t> offsets(T + 1);
    NE_CUDA_CHECK(cudaMemcpyAsync(offsets.data(), b.offsets, (T + 1) * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                  p.stream));
    NE_CUDA_CHECK(cudaStreamSynchronize(p.stream));
    const int64_t entries = offsets[T];
    int64_t rows = kContributionFloats / d;
    // NE_SAE_PURSUIT_ROWS bounds the rows per group (the tests use it to cut a small batch into several groups).
    if (const char* v = std::getenv("NE_SAE_PURSUIT_ROWS"); v != nullptr && std::atoll(v) > 0) rows = std::atoll(v);
    const int64_t group_entries = std::min(entries, std::max(stride, rows));
    ensure_entry_buffers(b, p.stream, group_entries, d);
    NE_CUDA_CHECK(cudaMemsetAsync(gW_dec, 0, m * d * sizeof(float), p.stream));
    NE_CUDA_CHECK(cudaMemsetAsync(b.grad_residual, 0, T * d * sizeof(float), p.stream));
    int end_bit = 1;
    while (end_bit < 32 && (int64_t(1) << end_bit) <= m) ++end_bit;
    for (int64_t t0 = 0; t0 < T;) {
        int64_t t1 = t0 + 1;  // one token's steps always fit (group_entries >= stride)
        while (t1 < T && offsets[t1 + 1] - offsets[t0] <= group_entries) ++t1;
        const int64_t base = offsets[t0], n = offsets[t1] - base;
        const unsigned tokens = static_cast<unsigned>(t1 - t0);
        WalkArgs w{t0, d, stride, base, b.steps, b.offsets, b.record_latent, b.record_pre, b.record_value,
                   p.W_dec, dxhat, b.residual, b.grad_residual, b.contributions};
        pursuit_walk_kernel<<<tokens, kThreads, 0, p.stream>>>(w);
        NE_CUDA_CHECK_LAUNCH("pursuit_walk_kernel");
        NE_CUDA_CHECK(cudaMemsetAsync(b.group_count, 0, (m + 1) * sizeof(int32_t), p.stream));
        pursuit_keys_kernel<<<tokens, kThreads, 0, p.stream>>>(t0, stride, base, b.steps, b.offsets, b.record_latent,
                                                               b.keys, b.values, b.group_count);
        NE_CUDA_CHECK_LAUNCH("pursuit_keys_kernel");
        bytes = 0;
        NE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, b.keys, b.keys_sorted, b.values,
                                                      b.values_sorted, static_cast<int>(n), 0, end_bit, p.stream));
        ensure_temp(b, p.stream, bytes);
        NE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(b.temp.data(), bytes, b.keys, b.keys_sorted, b.values,
                                                      b.values_sorted, static_cast<int>(n), 0, end_bit, p.stream));
        bytes = 0;
        NE_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, b.group_count, b.group_begin,
                                                    static_cast<int>(m + 1), p.stream));
        ensure_temp(b, p.stream, bytes);
        NE_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(b.temp.data(), bytes, b.group_count, b.group_begin,
                                                    static_cast<int>(m + 1), p.stream));
        pursuit_reduce_kernel<<<static_cast<unsigned>(m), kThreads, 0, p.stream>>>(d, b.group_begin, b.values_sorted,
                                                                                 b.contributions, gW_dec);
        NE_CUDA_CHECK_LAUNCH("pursuit_reduce_kernel");
        t0 = t1;
    }
    return b.grad_residual;
}

}  // namespace ne::cuda
