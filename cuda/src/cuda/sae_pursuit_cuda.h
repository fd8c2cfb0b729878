// Matching pursuit (models/sae.h's matching_pursuit) on the GPU: the CUDA twin of cpu/sae_pursuit.cpp, called by
// sae_cuda.cu's step, evaluation and encode paths. See sae_pursuit_cuda.cu for the design.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include "cuda/device_arena.h"
#include "models/sae.h"

namespace ne::cuda {

// The pursuit's device buffers, grown to the largest batch seen and kept across batches.
struct PursuitBuffers {
    DeviceArena tokens;   // per token: residual, step records, argmax, backward's d loss/d r
    DeviceArena entries;  // backward: one contribution row per (token, step), and their sort by latent
    DeviceArena temp;     // CUB's scratch
    int64_t capacity_tokens = 0, capacity_steps = 0, capacity_entries = 0, capacity_latents = 0;
    float* residual = nullptr;      // [T][d] r after the last step (the backward walks it back to r_0)
    float* grad_residual = nullptr; // [T][d] backward: d loss/d r, then d loss/d x^ - d loss/d r_0 (b_dec's rows)
    int32_t* record_latent = nullptr;  // [T][steps] the step records
    float *record_pre = nullptr, *record_value = nullptr;
    uint8_t* record_first = nullptr;   // [T][steps] lists: the step that first put its latent in the support
    int32_t* steps = nullptr;          // [T + 1] steps taken (the extra 0 closes the scan)
    int32_t* offsets = nullptr;        // [T + 1] exclusive scan of steps: each token's first entry
    uint8_t* running = nullptr;        // [T]
    int32_t* active = nullptr;         // [T + 1] the tokens in the step's GEMM once compacted (scan flags before)
    int32_t* position = nullptr;       // [T + 1] their scan
    float* gathered = nullptr;         // [T][d] the residuals of the active tokens
    float* best_value = nullptr;       // [T] the step's argmax so far (over the chunks done)
    int32_t* best_latent = nullptr;
    int32_t* still_running = nullptr;  // [1] tokens that did not stop at the last step
    int32_t *group_count = nullptr, *group_begin = nullptr;  // [m + 1] entries per latent in a group of tokens
    float* contributions = nullptr;    // [entries][d]
    uint32_t *keys = nullptr, *keys_sorted = nullptr;
    int32_t *values = nullptr, *values_sorted = nullptr;
};

// One batch as the pursuit sees it: the model's tensors and scratch that sae_cuda.cu owns.
struct PursuitBatch {
    cudaStream_t stream;
    cublasHandle_t blas;
    int32_t precision;            // ne_sae_precision of the dots' GEMM
    const SaeSpec* spec;          // d, m, batch (the tokens) and the stopping rules
    int64_t chunk;                // latents per dots GEMM (U holds batch * chunk floats)
    const float* W_dec;           // [m][d]
    const float* xc;              // [T][d] x - b_dec = r_0
    float* U;                     // [T][chunk] scratch: the dots of one chunk of latents
    __nv_bfloat16* W_dec_bf16;    // bf16 precision: [m][d] scratch
    __nv_bfloat16* residual_bf16; // bf16 precision: [T][d] scratch
};

// The steps a token may take at most (the records per token): max_iterations (0: d), and with
// stop_on_duplicate_support at most m + 1 (every step but the last adds a latent).
int64_t pursuit_step_bound(const SaeSpec& spec);

// Runs every token's pursuit; returns the steps the host ran (>= the longest token's).
int64_t pursuit_forward(PursuitBuffers& b, const PursuitBatch& p);

// Each token's codes after pursuit_forward as a list sorted by latent (the layout sae_cuda.cu's decoder reads):
// list_u [T][cap] the codes z_j (> 0), list_idx the latents, count [T]; cap >= the largest support.
void pursuit_lists(PursuitBuffers& b, const PursuitBatch& p, int64_t cap, float* list_u, int32_t* list_idx,
                   int32_t* count);

// The backward of the unrolled pursuit after pursuit_forward, given dxhat = d loss/d x^ [T][d]: gW_dec (=),
// latent_count [m] = the steps that chose each latent (those with a gradient: the touched rows of sparse Adam).
// Returns b_dec's gradient by token [T][d] (d loss/d x^ - d loss/d r_0), for the caller's fixed-order column sum.
// Consumes the forward's residual.
const float* pursuit_backward(PursuitBuffers& b, const PursuitBatch& p, const float* dxhat, float* gW_dec,
                              int32_t* latent_count);

}  // namespace ne::cuda
