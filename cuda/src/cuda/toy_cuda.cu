// Fused toy-model training on the GPU: one thread block per instance runs whole optimizer steps (data
// generation, forward, backward, AdamW) with the instance's weights and gradients in shared memory, and many
// steps per launch, so the host neither synchronises nor launches per step.
//
// Per step the batch goes through in tiles of T samples (T chosen to fit shared memory):
//   X [T][n]  features, drawn with the same Philox stream as the CPU backend
//   H [T][m]  = X W, then ReLU for hidden-ReLU models   (h = W^T x per sample)
//   D [T][n]  = d loss / d pre-activation of x' = W_out h + b   (W_out = W for tied models)
//   G [T][m]  = D W_out + l1 sign(H) / batch, masked by H > 0 for hidden-ReLU models   (d loss / d a)
//   gW_out[n][m] += D^T H,  gW[n][m] += X^T G  (tied models sum both into gW),  gb[n] += sum_t D
// Every sum runs in a fixed order owned by one thread: results are deterministic run to run.
#include <algorithm>
#include <memory>
#include <utility>
#include <string>
#include <vector>

#include "core/nvtx.h"
#include "cuda/cuda_check.h"
#include "cuda/device_arena.h"
#include "cuda/toy_cuda.h"
#include "models/optimizer.h"
#include "models/toy_common.h"

struct ne_cuda_toy {
    int32_t device;
    int32_t model;
    int64_t n, m, instances, batch;
    uint64_t seed;
    int64_t first_instance;  // the random streams' index of instance 0
    int32_t tile;         // samples per tile
    size_t shared_bytes;  // dynamic shared memory per block
    ne::cuda::DeviceArena arena;  // one allocation, sliced below
    float *W, *b, *mW, *vW, *mb, *vb, *importance, *probability, *l1, *loss, *penalty;
    float *W_out, *mW_out, *vW_out;  // untied models only, else null
    ne_non_finite* non_finite;       // [instances], see ToyBackend::non_finite
    ne::FeatureRule* rules;          // [n]
    int32_t has_rules;               // 0: every feature independent
    ne::AdamStep* adam;              // per-step constants of the current launch
    int64_t adam_capacity;
    cudaStream_t stream;
};

namespace ne::cuda {
namespace {

struct ToyArgs {
    int32_t model, n, m, batch, tile, stride;  // stride: padded row length of W in shared memory
    uint64_t seed;
    uint32_t first_instance;  // the random streams of block i are those of instance first_instance + i
    float *W, *b, *mW, *vW, *mb, *vb;
    float *W_out, *mW_out, *vW_out;  // null for tied models
    const float *importance, *probability, *l1;
    const FeatureRule* rules;  // null when every feature is independent
    const AdamStep* adam;      // null: evaluate only (no update)
    int32_t first_step, steps;
    Stream stream;
    float *loss, *penalty;     // evaluation: [instances] means over the steps
    ne_non_finite* non_finite; // training: [instances] first non-finite step (step 0: none)
};

// Padded row length: an odd stride puts consecutive feature rows in different shared-memory banks.
int32_t padded_stride(int64_t m) { return static_cast<int32_t>(m % 2 == 0 ? m + 1 : m); }

size_t shared_floats(int32_t model, int64_t n, int64_t m, int64_t tile, int threads) {
    const int64_t stride = padded_stride(m);
    const int64_t weight_tensors = toy_untied(model) ? 4 : 2;  // W (+ W_out) and their gradients
    return static_cast<size_t>(weight_tensors * n * stride + 4 * n + 2 * tile * n + 2 * tile * m + threads);
}

constexpr int kThreads = 256;

// out[t][k] = sum_i rows[t][i] * W[i][k] for the tile's samples (a = W^T x, and W_out^T d), one output per thread.
__device__ __forceinline__ void rows_times_W(const float* rows, const float* sW, int count, int n, int m, int S,
                                             float* out) {
    for (int e = threadIdx.x; e < count * m; e += blockDim.x) {
        const int t = e / m, k = e % m;
        const float* r = rows + t * n;
        float sum = 0.0f;
        for (int i = 0; i < n; ++i) sum += r[i] * sW[i * S + k];
        out[e] = sum;
    }
}

// Sum of one value per thread, in a fixed order (deterministic). Leaves the block synchronised.
__device__ double block_sum(double value, float* sred) {
    sred[threadIdx.x] = static_cast<float>(value);
    __syncthreads();
    double total = 0.0;
    for (int j = 0; j < blockDim.x; ++j) total += sred[j];
    __syncthreads();
    return total;
}

__global__ void __launch_bounds__(kThreads) toy_steps_kernel(ToyArgs a) {
    extern __shared__ float shared[];
    const int inst = blockIdx.x, tid = threadIdx.x;
    const uint32_t key = a.first_instance + static_cast<uint32_t>(inst);  // the instance's random streams
    const int n = a.n, m = a.m, T = a.tile, S = a.stride;
    const int pairs = (n + 1) / 2;
    const bool untied = toy_untied(a.model), hidden_relu = toy_hidden_relu(a.model);
    const bool output_relu = toy_output_relu(a.model), signed_inputs = toy_signed_inputs(a.model);
    const bool training = a.adam != nullptr;

    float* sW = shared;                           // [n][S]
    float* sgW = sW + n * S;                      // [n][S]
    float* sWo = untied ? sgW + n * S : sW;       // [n][S] decode weights (W itself when tied)
    float* sgWo = untied ? sWo + n * S : sgW;     // [n][S]
    float* sb = (untied ? sgWo : sgW) + n * S;    // [n]
    float* sgb = sb + n;                          // [n]
    float* simp = sgb + n;                        // [n]
    float* sprob = simp + n;                      // [n]
    float* sX = sprob + n;                        // [T][n]
    float* sD = sX + T * n;                       // [T][n]
    float* sH = sD + T * n;                       // [T][m]
    float* sG = sH + T * m;                       // [T][m]
    float* sred = sG + T * m;                     // [blockDim]; in training sred[0] flags a non-finite gradient

    // An instance that met a non-finite step takes no further updates (the block's choice is uniform).
    if (training && a.non_finite[inst].step != 0) return;

    const int64_t wo = static_cast<int64_t>(inst) * n * m, bo = static_cast<int64_t>(inst) * n;
    for (int e = tid; e < n * m; e += blockDim.x) {
        sW[(e / m) * S + e % m] = a.W[wo + e];
        if (untied) sWo[(e / m) * S + e % m] = a.W_out[wo + e];
    }
    for (int i = tid; i < n; i += blockDim.x) {
        sb[i] = a.b[bo + i];
        simp[i] = a.importance[bo + i];
        sprob[i] = a.probability[bo + i];
    }
    __syncthreads();

    const float scale = 2.0f / (static_cast<float>(a.batch) * static_cast<float>(n));
    const float l1 = a.l1[inst], l1_scale = l1 / static_cast<float>(a.batch);
    double task = 0.0, l1_norm = 0.0;

    for (int s = 0; s < a.steps; ++s) {
        const uint32_t step = static_cast<uint32_t>(a.first_step + s);
        for (int e = tid; e < n * m; e += blockDim.x) {
            sgW[(e / m) * S + e % m] = 0.0f;
            if (untied) sgWo[(e / m) * S + e % m] = 0.0f;
        }
        for (int i = tid; i < n; i += blockDim.x) sgb[i] = 0.0f;

        for (int t0 = 0; t0 < a.batch; t0 += T) {
            const int rows = min(T, a.batch - t0);
            for (int e = tid; e < rows * pairs; e += blockDim.x) {
                const int t = e / pairs, pair = e % pairs, i = 2 * pair;
                const bool second = i + 1 < n;
                float x0, x1;
                toy_feature_pair(a.seed, a.stream, step, key, t0 + t, pair, sprob[i], second ? sprob[i + 1] : 0.0f,
                                 signed_inputs, x0, x1);
                sX[t * n + i] = x0;
                if (second) sX[t * n + i + 1] = x1;
            }
            if (a.rules != nullptr) {
                __syncthreads();
                for (int e = tid; e < rows * n; e += blockDim.x) {
                    const int t = e / n, i = e % n;
                    const FeatureRule rule = a.rules[i];
                    if (rule.kind == NE_FEATURES_INDEPENDENT) continue;
                    sX[e] = toy_set_feature(a.seed, a.stream, step, key, t0 + t, i, rule, sprob, signed_inputs);
                }
            }
            __syncthreads();
            rows_times_W(sX, sW, rows, n, m, S, sH);
            __syncthreads();
            for (int e = tid; e < rows * m; e += blockDim.x) {
                const float h = hidden_relu ? fmaxf(sH[e], 0.0f) : sH[e];
                sH[e] = h;
                if (!training) l1_norm += static_cast<double>(fabsf(h));
            }
            __syncthreads();
            for (int e = tid; e < rows * n; e += blockDim.x) {
                const int t = e / n, i = e % n;
                const float* h = sH + t * m;
                const float* w = sWo + i * S;
                float pre = sb[i];
                for (int k = 0; k < m; ++k) pre += w[k] * h[k];
                const bool active = !output_relu || pre > 0.0f;
                const float target = signed_inputs ? fabsf(sX[e]) : sX[e];
                const float diff = (active ? pre : 0.0f) - target;
                if (!training) task += static_cast<double>(simp[i] * diff * diff);
                sD[e] = active ? scale * simp[i] * diff : 0.0f;
            }
            __syncthreads();
            if (training) {
                rows_times_W(sD, sWo, rows, n, m, S, sG);
                __syncthreads();
                for (int e = tid; e < rows * m; e += blockDim.x) {
                    const float h = sH[e];
                    const float g = sG[e] + l1_scale * static_cast<float>((h > 0.0f) - (h < 0.0f));
                    sG[e] = hidden_relu && !(h > 0.0f) ? 0.0f : g;
                }
                __syncthreads();
                for (int e = tid; e < n * m; e += blockDim.x) {
                    const int i = e / m, k = e % m;
                    float decode = 0.0f, encode = 0.0f;
                    for (int t = 0; t < rows; ++t) {
                        decode += sD[t * n + i] * sH[t * m + k];
                        encode += sX[t * n + i] * sG[t * m + k];
                    }
                    if (untied) {
                        sgWo[i * S + k] += decode;
                        sgW[i * S + k] += encode;
                    } else {
                        sgW[i * S + k] += decode + encode;
                    }
                }
                for (int i = tid; i < n; i += blockDim.x) {
                    float acc = 0.0f;
                    for (int t = 0; t < rows; ++t) acc += sD[t * n + i];
                    sgb[i] += acc;
                }
            }
            __syncthreads();
        }

        if (training) {
            // A step whose gradient is not finite is not applied: the block stops with its last finite parameters
            // (flag sred[0]). Parameters that are not finite after an update stop it too (flag sred[1]).
            if (tid == 0) sred[0] = sred[1] = 0.0f;
            __syncthreads();
            bool finite = true;
            for (int e = tid; e < n * m; e += blockDim.x) {
                const int j = (e / m) * S + e % m;
                finite = finite && isfinite(sgW[j]) && (!untied || isfinite(sgWo[j]));
            }
            for (int i = tid; i < n; i += blockDim.x) finite = finite && isfinite(sgb[i]);
            if (!finite) sred[0] = 1.0f;
            __syncthreads();
            const int64_t number = static_cast<int64_t>(a.first_step) + s + 1;
            if (sred[0] != 0.0f) {
                if (tid == 0) a.non_finite[inst] = ne_non_finite{number, inst, NE_NON_FINITE_LOSS, 0};
                break;
            }
            const AdamStep hp = a.adam[s];
            for (int e = tid; e < n * m; e += blockDim.x) {
                const int j = (e / m) * S + e % m;
                adam_update(sW[j], sgW[j], a.mW[wo + e], a.vW[wo + e], hp);
                finite = finite && isfinite(sW[j]);
                if (untied) {
                    adam_update(sWo[j], sgWo[j], a.mW_out[wo + e], a.vW_out[wo + e], hp);
                    finite = finite && isfinite(sWo[j]);
                }
            }
            for (int i = tid; i < n; i += blockDim.x) {
                adam_update(sb[i], sgb[i], a.mb[bo + i], a.vb[bo + i], hp);
                finite = finite && isfinite(sb[i]);
            }
            if (!finite) sred[1] = 1.0f;
            __syncthreads();
            if (sred[1] != 0.0f) {
                if (tid == 0) a.non_finite[inst] = ne_non_finite{number, inst, NE_NON_FINITE_PARAMETERS, 0};
                break;
            }
        }
    }

    if (training) {
        for (int e = tid; e < n * m; e += blockDim.x) {
            a.W[wo + e] = sW[(e / m) * S + e % m];
            if (untied) a.W_out[wo + e] = sWo[(e / m) * S + e % m];
        }
        for (int i = tid; i < n; i += blockDim.x) a.b[bo + i] = sb[i];
    } else {
        // Means over the evaluated batches: block reductions of the per-thread sums.
        const double task_total = block_sum(task, sred);
        const double l1_total = block_sum(l1_norm, sred);
        if (tid == 0) {
            a.loss[inst] = static_cast<float>(task_total / (static_cast<double>(a.batch) * n * a.steps));
            a.penalty[inst] = static_cast<float>(static_cast<double>(l1) * l1_total /
                                                 (static_cast<double>(a.batch) * a.steps));
        }
    }
}

ToyArgs make_args(const ne_cuda_toy& toy) {
    ToyArgs a{};
    a.model = toy.model;
    a.n = static_cast<int32_t>(toy.n);
    a.m = static_cast<int32_t>(toy.m);
    a.batch = static_cast<int32_t>(toy.batch);
    a.tile = toy.tile;
    a.stride = padded_stride(toy.m);
    a.seed = toy.seed;
    a.first_instance = static_cast<uint32_t>(toy.first_instance);
    a.W = toy.W;
    a.b = toy.b;
    a.mW = toy.mW;
    a.vW = toy.vW;
    a.mb = toy.mb;
    a.vb = toy.vb;
    a.W_out = toy.W_out;
    a.mW_out = toy.mW_out;
    a.vW_out = toy.vW_out;
    a.importance = toy.importance;
    a.probability = toy.probability;
    a.l1 = toy.l1;
    a.rules = toy.has_rules ? toy.rules : nullptr;
    a.loss = toy.loss;
    a.penalty = toy.penalty;
    a.non_finite = toy.non_finite;
    return a;
}

void launch(const ne_cuda_toy& toy, const ToyArgs& args) {
    NE_CUDA_CHECK(cudaSetDevice(toy.device));
    toy_steps_kernel<<<static_cast<unsigned>(toy.instances), kThreads, toy.shared_bytes, toy.stream>>>(args);
    NE_CUDA_CHECK_LAUNCH("toy_steps_kernel");
}

// The tile (samples per pass, at most 64) the fused kernel uses for this shape on this device, and its shared
// memory; throws NE_ERR_UNSUPPORTED when even one sample does not fit.
std::pair<int32_t, size_t> plan_tile(int32_t device, const ToyShape& s) {
    int optin = 0;
    NE_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    int64_t tile = std::min<int64_t>(64, s.batch);
    while (tile > 1 && shared_floats(s.model, s.n, s.m, tile, kThreads) * sizeof(float) > static_cast<size_t>(optin))
        --tile;
    const size_t shared_bytes = shared_floats(s.model, s.n, s.m, tile, kThreads) * sizeof(float);
    if (shared_bytes > static_cast<size_t>(optin))
        fail(NE_ERR_UNSUPPORTED, "n_features * n_hidden = " + std::to_string(s.n * s.m) +
                                     " is too large for the fused CUDA toy kernel: it needs " +
                                     std::to_string(shared_bytes) + " bytes of shared memory per block, the device " +
                                     "offers " + std::to_string(optin) + "; use backend cpu");
    if (s.instances > 0x7fffffff) fail(NE_ERR_UNSUPPORTED, "n_instances exceeds the CUDA grid limit 2147483647");
    return {static_cast<int32_t>(tile), shared_bytes};
}

}  // namespace

int32_t toy_supports(int32_t device, const ToyShape* shape, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] { plan_tile(device, *shape); });
}

int32_t toy_create(int32_t device, const ToyShape* shape, ne_cuda_toy** out, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(device));
        const auto [tile, shared_bytes] = plan_tile(device, *shape);
        allow_max_dynamic_shared(toy_steps_kernel, device);

        // Owned by a guard until complete, so a failure part-way frees what was already allocated.
        std::unique_ptr<ne_cuda_toy, void (*)(ne_cuda_toy*)> toy(new ne_cuda_toy{}, toy_destroy);
        toy->device = device;
        toy->model = shape->model;
        toy->n = shape->n;
        toy->m = shape->m;
        toy->instances = shape->instances;
        toy->batch = shape->batch;
        toy->seed = shape->seed;
        toy->first_instance = shape->first_instance;
        toy->tile = tile;
        toy->shared_bytes = shared_bytes;
        toy->adam_capacity = 4096;

        const bool untied = toy_untied(shape->model);
        const int64_t nm = toy->instances * toy->n * toy->m, in = toy->instances * toy->n, I = toy->instances;
        ne_cuda_toy& t = *toy;
        t.arena.allocate([&](ArenaCarver& c) {
            t.W = c.take<float>(nm);
            t.mW = c.take<float>(nm);
            t.vW = c.take<float>(nm);
            t.W_out = untied ? c.take<float>(nm) : nullptr;
            t.mW_out = untied ? c.take<float>(nm) : nullptr;
            t.vW_out = untied ? c.take<float>(nm) : nullptr;
            t.b = c.take<float>(in);
            t.mb = c.take<float>(in);
            t.vb = c.take<float>(in);
            t.importance = c.take<float>(in);
            t.probability = c.take<float>(in);
            t.l1 = c.take<float>(I);
            t.loss = c.take<float>(I);
            t.penalty = c.take<float>(I);
            t.adam = c.take<AdamStep>(t.adam_capacity);
            t.rules = c.take<FeatureRule>(t.n);
            t.non_finite = c.take<ne_non_finite>(I);
        });
        NE_CUDA_CHECK(cudaStreamCreateWithFlags(&toy->stream, cudaStreamNonBlocking));
        NE_CUDA_CHECK(cudaMemsetAsync(t.non_finite, 0, I * sizeof(ne_non_finite), toy->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(toy->stream));
        *out = toy.release();
    });
}

void toy_destroy(ne_cuda_toy* toy) {
    if (toy == nullptr) return;
    cudaSetDevice(toy->device);
    if (toy->stream != nullptr) cudaStreamDestroy(toy->stream);
    delete toy;  // the arena checks its guards (NE_ARENA_GUARD) and frees its allocation
}

int32_t toy_set_data(ne_cuda_toy* toy, const float* importance, const float* probability, const float* l1,
                     const FeatureRule* rules, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(toy->device));
        const int64_t in = toy->instances * toy->n;
        NE_CUDA_CHECK(cudaMemcpyAsync(toy->importance, importance, in * sizeof(float), cudaMemcpyHostToDevice,
                                      toy->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(toy->probability, probability, in * sizeof(float), cudaMemcpyHostToDevice,
                                      toy->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(toy->l1, l1, toy->instances * sizeof(float), cudaMemcpyHostToDevice,
                                      toy->stream));
        toy->has_rules = rules != nullptr ? 1 : 0;
        if (rules != nullptr)
            NE_CUDA_CHECK(cudaMemcpyAsync(toy->rules, rules, toy->n * sizeof(FeatureRule), cudaMemcpyHostToDevice,
                                          toy->stream));
        // The host arrays are the caller's: finish the copies before returning.
        NE_CUDA_CHECK(cudaStreamSynchronize(toy->stream));
        verify_guards(toy->stream, toy->arena);
    });
}

int32_t toy_train(ne_cuda_toy* toy, int64_t first_step, const AdamStep* adam, int64_t steps, char* err,
                  size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_NVTX_RANGE("toy.train");
        if (steps > toy->adam_capacity)
            invalid("steps per call " + std::to_string(steps) + " exceeds " + std::to_string(toy->adam_capacity));
        if (steps == 0) return;
        NE_CUDA_CHECK(cudaSetDevice(toy->device));
        NE_CUDA_CHECK(cudaMemcpyAsync(toy->adam, adam, steps * sizeof(AdamStep), cudaMemcpyHostToDevice, toy->stream));
        ToyArgs args = make_args(*toy);
        args.adam = toy->adam;
        args.first_step = static_cast<int32_t>(first_step);
        args.steps = static_cast<int32_t>(steps);
        args.stream = Stream::kTrain;
        launch(*toy, args);
        // One synchronisation per call (not per step): `adam` is the caller's buffer, and errors surface here.
        NE_CUDA_CHECK(cudaStreamSynchronize(toy->stream));
        verify_guards(toy->stream, toy->arena);
    });
}

int32_t toy_evaluate(ne_cuda_toy* toy, int64_t batches, float* loss, float* penalty, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_NVTX_RANGE("toy.evaluate");
        ToyArgs args = make_args(*toy);
        args.adam = nullptr;
        args.first_step = 0;
        args.steps = static_cast<int32_t>(batches);
        args.stream = Stream::kEvaluate;
        launch(*toy, args);
        NE_CUDA_CHECK(cudaMemcpyAsync(loss, toy->loss, toy->instances * sizeof(float), cudaMemcpyDeviceToHost,
                                      toy->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(penalty, toy->penalty, toy->instances * sizeof(float), cudaMemcpyDeviceToHost,
                                      toy->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(toy->stream));
        verify_guards(toy->stream, toy->arena);
    });
}

int32_t toy_get_params(ne_cuda_toy* toy, float* W, float* W_out, float* b, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(toy->device));
        const int64_t nm = toy->instances * toy->n * toy->m, in = toy->instances * toy->n;
        NE_CUDA_CHECK(cudaMemcpyAsync(W, toy->W, nm * sizeof(float), cudaMemcpyDeviceToHost, toy->stream));
        if (toy->W_out != nullptr)
            NE_CUDA_CHECK(cudaMemcpyAsync(W_out, toy->W_out, nm * sizeof(float), cudaMemcpyDeviceToHost, toy->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(b, toy->b, in * sizeof(float), cudaMemcpyDeviceToHost, toy->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(toy->stream));
    });
}

int32_t toy_set_params(ne_cuda_toy* toy, const float* W, const float* W_out, const float* b, char* err,
                       size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(toy->device));
        const int64_t nm = toy->instances * toy->n * toy->m, in = toy->instances * toy->n;
        NE_CUDA_CHECK(cudaMemcpyAsync(toy->W, W, nm * sizeof(float), cudaMemcpyHostToDevice, toy->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(toy->b, b, in * sizeof(float), cudaMemcpyHostToDevice, toy->stream));
        // The optimizer state restarts with new parameters.
        for (float* moment : {toy->mW, toy->vW})
            NE_CUDA_CHECK(cudaMemsetAsync(moment, 0, nm * sizeof(float), toy->stream));
        for (float* moment : {toy->mb, toy->vb})
            NE_CUDA_CHECK(cudaMemsetAsync(moment, 0, in * sizeof(float), toy->stream));
        if (toy->W_out != nullptr) {
            NE_CUDA_CHECK(cudaMemcpyAsync(toy->W_out, W_out, nm * sizeof(float), cudaMemcpyHostToDevice, toy->stream));
            for (float* moment : {toy->mW_out, toy->vW_out})
                NE_CUDA_CHECK(cudaMemsetAsync(moment, 0, nm * sizeof(float), toy->stream));
        }
        NE_CUDA_CHECK(cudaMemsetAsync(toy->non_finite, 0, toy->instances * sizeof(ne_non_finite), toy->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(toy->stream));
        verify_guards(toy->stream, toy->arena);
    });
}

int32_t toy_non_finite(ne_cuda_toy* toy, ne_non_finite* per_instance, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(toy->device));
        NE_CUDA_CHECK(cudaMemcpyAsync(per_instance, toy->non_finite, toy->instances * sizeof(ne_non_finite),
                                      cudaMemcpyDeviceToHost, toy->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(toy->stream));
    });
}

}  // namespace ne::cuda
