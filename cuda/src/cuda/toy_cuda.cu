// Fused toy-model training on the GPU: one thread block per instance runs whole optimizer steps (data
// generation, forward, backward, AdamW) with the instance's weights and gradients in shared memory, and many
// steps per launch, so the host neither synchronises nor launches per step.
//
// Per step the batch goes through in tiles of T samples (T chosen to fit shared memory):
//   X [T][n]  features, drawn with the same Philox stream as the CPU backend
//   H [T][m]  = X W                 (h = W^T x per sample)
//   D [T][n]  = d loss / d pre-activation of x' = W h + b
//   G [T][m]  = D W                 (d loss / d h)
//   gW[n][m] += D^T H + X^T G,  gb[n] += sum_t D
// Every sum runs in a fixed order owned by one thread: results are deterministic run to run.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/nvtx.h"
#include "cuda/cuda_check.h"
#include "cuda/toy_cuda.h"
#include "models/toy_common.h"

struct ne_cuda_toy {
    int32_t device;
    int32_t model;
    int64_t n, m, instances, batch;
    uint64_t seed;
    int32_t tile;         // samples per tile
    size_t shared_bytes;  // dynamic shared memory per block
    float* arena;         // one allocation, sliced below
    float *W, *b, *mW, *vW, *mb, *vb, *importance, *probability, *loss;
    ne::AdamStep* adam;   // per-step constants of the current launch
    int64_t adam_capacity;
    cudaStream_t stream;
};

namespace ne::cuda {
namespace {

struct ToyArgs {
    int32_t model, n, m, batch, tile, stride;  // stride: padded row length of W in shared memory
    uint64_t seed;
    float *W, *b, *mW, *vW, *mb, *vb;
    const float *importance, *probability;
    const AdamStep* adam;   // null: evaluate only (no update)
    int32_t first_step, steps;
    Stream stream;
    float* loss;            // evaluation: [instances] mean loss over the steps
};

// Padded row length: an odd stride puts consecutive feature rows in different shared-memory banks.
int32_t padded_stride(int64_t m) { return static_cast<int32_t>(m % 2 == 0 ? m + 1 : m); }

size_t shared_floats(int64_t n, int64_t m, int64_t tile, int threads) {
    const int64_t stride = padded_stride(m);
    return static_cast<size_t>(2 * n * stride + 4 * n + 2 * tile * n + 2 * tile * m + threads);
}

constexpr int kThreads = 256;

// out[t][k] = sum_i rows[t][i] * W[i][k] for the tile's samples (h = W^T x, and g = W^T d), one output per thread.
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

__global__ void __launch_bounds__(kThreads) toy_steps_kernel(ToyArgs a) {
    extern __shared__ float shared[];
    const int inst = blockIdx.x, tid = threadIdx.x;
    const int n = a.n, m = a.m, T = a.tile, S = a.stride;
    const int pairs = (n + 1) / 2;
    const bool relu = a.model == NE_TOY_RELU_OUTPUT;

    float* sW = shared;              // [n][S]
    float* sgW = sW + n * S;         // [n][S]
    float* sb = sgW + n * S;         // [n]
    float* sgb = sb + n;             // [n]
    float* simp = sgb + n;           // [n]
    float* sprob = simp + n;         // [n]
    float* sX = sprob + n;           // [T][n]
    float* sD = sX + T * n;          // [T][n]
    float* sH = sD + T * n;          // [T][m]
    float* sG = sH + T * m;          // [T][m]
    float* sred = sG + T * m;        // [blockDim]

    float* W = a.W + static_cast<int64_t>(inst) * n * m;
    float* b = a.b + static_cast<int64_t>(inst) * n;
    for (int e = tid; e < n * m; e += blockDim.x) sW[(e / m) * S + e % m] = W[e];
    for (int i = tid; i < n; i += blockDim.x) {
        sb[i] = b[i];
        simp[i] = a.importance[static_cast<int64_t>(inst) * n + i];
        sprob[i] = a.probability[static_cast<int64_t>(inst) * n + i];
    }
    __syncthreads();

    const float scale = 2.0f / (static_cast<float>(a.batch) * static_cast<float>(n));
    double loss = 0.0;

    for (int s = 0; s < a.steps; ++s) {
        const uint32_t step = static_cast<uint32_t>(a.first_step + s);
        for (int e = tid; e < n * m; e += blockDim.x) sgW[(e / m) * S + e % m] = 0.0f;
        for (int i = tid; i < n; i += blockDim.x) sgb[i] = 0.0f;

        for (int t0 = 0; t0 < a.batch; t0 += T) {
            const int rows = min(T, a.batch - t0);
            for (int e = tid; e < rows * pairs; e += blockDim.x) {
                const int t = e / pairs, pair = e % pairs, i = 2 * pair;
                const bool second = i + 1 < n;
                float x0, x1;
                toy_feature_pair(a.seed, a.stream, step, inst, t0 + t, pair, sprob[i], second ? sprob[i + 1] : 0.0f,
                                 x0, x1);
                sX[t * n + i] = x0;
                if (second) sX[t * n + i + 1] = x1;
            }
            __syncthreads();
            rows_times_W(sX, sW, rows, n, m, S, sH);
            __syncthreads();
            for (int e = tid; e < rows * n; e += blockDim.x) {
                const int t = e / n, i = e % n;
                const float* h = sH + t * m;
                const float* w = sW + i * S;
                float pre = sb[i];
                for (int k = 0; k < m; ++k) pre += w[k] * h[k];
                const bool active = !relu || pre > 0.0f;
                const float diff = (active ? pre : 0.0f) - sX[e];
                if (a.adam == nullptr) loss += static_cast<double>(simp[i] * diff * diff);
                sD[e] = active ? scale * simp[i] * diff : 0.0f;
            }
            __syncthreads();
            if (a.adam != nullptr) {
                rows_times_W(sD, sW, rows, n, m, S, sG);
                __syncthreads();
                for (int e = tid; e < n * m; e += blockDim.x) {
                    const int i = e / m, k = e % m;
                    float acc = 0.0f;
                    for (int t = 0; t < rows; ++t) acc += sD[t * n + i] * sH[t * m + k] + sX[t * n + i] * sG[t * m + k];
                    sgW[i * S + k] += acc;
                }
                for (int i = tid; i < n; i += blockDim.x) {
                    float acc = 0.0f;
                    for (int t = 0; t < rows; ++t) acc += sD[t * n + i];
                    sgb[i] += acc;
                }
            }
            __syncthreads();
        }

        if (a.adam != nullptr) {
            const AdamStep hp = a.adam[s];
            float* mW = a.mW + static_cast<int64_t>(inst) * n * m;
            float* vW = a.vW + static_cast<int64_t>(inst) * n * m;
            for (int e = tid; e < n * m; e += blockDim.x) {
                const int j = (e / m) * S + e % m;
                adam_update(sW[j], sgW[j], mW[e], vW[e], hp);
            }
            float* mb = a.mb + static_cast<int64_t>(inst) * n;
            float* vb = a.vb + static_cast<int64_t>(inst) * n;
            for (int i = tid; i < n; i += blockDim.x) adam_update(sb[i], sgb[i], mb[i], vb[i], hp);
            __syncthreads();
        }
    }

    if (a.adam != nullptr) {
        for (int e = tid; e < n * m; e += blockDim.x) W[e] = sW[(e / m) * S + e % m];
        for (int i = tid; i < n; i += blockDim.x) b[i] = sb[i];
    } else {
        // Mean loss over the evaluated batches: block reduction of the per-thread sums.
        sred[tid] = static_cast<float>(loss);
        __syncthreads();
        if (tid == 0) {
            double total = 0.0;
            for (int j = 0; j < blockDim.x; ++j) total += sred[j];
            a.loss[inst] = static_cast<float>(total / (static_cast<double>(a.batch) * n * a.steps));
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
    a.W = toy.W;
    a.b = toy.b;
    a.mW = toy.mW;
    a.vW = toy.vW;
    a.mb = toy.mb;
    a.vb = toy.vb;
    a.importance = toy.importance;
    a.probability = toy.probability;
    a.loss = toy.loss;
    return a;
}

void launch(const ne_cuda_toy& toy, const ToyArgs& args) {
    NE_CUDA_CHECK(cudaSetDevice(toy.device));
    // Per launch, not per model: the attribute is per kernel, and models of different sizes may alternate.
    NE_CUDA_CHECK(cudaFuncSetAttribute(toy_steps_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(toy.shared_bytes)));
    toy_steps_kernel<<<static_cast<unsigned>(toy.instances), kThreads, toy.shared_bytes, toy.stream>>>(args);
    NE_CUDA_CHECK_LAUNCH("toy_steps_kernel");
}

}  // namespace

int32_t toy_create(int32_t device, int32_t model, int64_t n, int64_t m, int64_t instances, int64_t batch,
                   uint64_t seed, const float* importance, const float* probability, ne_cuda_toy** out, char* err,
                   size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(device));
        int optin = 0;
        NE_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
        // Largest tile (up to 64 samples) whose working set fits the block's shared memory.
        int64_t tile = std::min<int64_t>(64, batch);
        while (tile > 1 && shared_floats(n, m, tile, kThreads) * sizeof(float) > static_cast<size_t>(optin)) --tile;
        const size_t shared_bytes = shared_floats(n, m, tile, kThreads) * sizeof(float);
        if (shared_bytes > static_cast<size_t>(optin))
            fail(NE_ERR_UNSUPPORTED, "n_features * n_hidden = " + std::to_string(n * m) +
                                         " is too large for the fused CUDA toy kernel: it needs " +
                                         std::to_string(shared_bytes) + " bytes of shared memory per block, the device " +
                                         "offers " + std::to_string(optin) + "; use backend cpu");
        if (instances > 0x7fffffff) invalid("n_instances exceeds the CUDA grid limit 2147483647");

        // Owned by a guard until complete, so a failure part-way frees what was already allocated.
        std::unique_ptr<ne_cuda_toy, void (*)(ne_cuda_toy*)> toy(new ne_cuda_toy{}, toy_destroy);
        toy->device = device;
        toy->model = model;
        toy->n = n;
        toy->m = m;
        toy->instances = instances;
        toy->batch = batch;
        toy->seed = seed;
        toy->tile = static_cast<int32_t>(tile);
        toy->shared_bytes = shared_bytes;
        toy->adam_capacity = 4096;

        const int64_t nm = instances * n * m, in = instances * n;
        const int64_t adam_floats = (toy->adam_capacity * static_cast<int64_t>(sizeof(AdamStep)) + 3) / 4;
        const int64_t total = 3 * nm + 5 * in + instances + adam_floats;
        NE_CUDA_CHECK(cudaMalloc(&toy->arena, static_cast<size_t>(total) * sizeof(float)));
        float* p = toy->arena;
        auto take = [&](int64_t count) {
            float* slice = p;
            p += count;
            return slice;
        };
        toy->W = take(nm);
        toy->mW = take(nm);
        toy->vW = take(nm);
        toy->b = take(in);
        toy->mb = take(in);
        toy->vb = take(in);
        toy->importance = take(in);
        toy->probability = take(in);
        toy->loss = take(instances);
        toy->adam = reinterpret_cast<AdamStep*>(take(adam_floats));
        NE_CUDA_CHECK(cudaStreamCreateWithFlags(&toy->stream, cudaStreamNonBlocking));
        NE_CUDA_CHECK(cudaMemcpy(toy->importance, importance, in * sizeof(float), cudaMemcpyHostToDevice));
        NE_CUDA_CHECK(cudaMemcpy(toy->probability, probability, in * sizeof(float), cudaMemcpyHostToDevice));
        *out = toy.release();
    });
}

void toy_destroy(ne_cuda_toy* toy) {
    if (toy == nullptr) return;
    cudaSetDevice(toy->device);
    if (toy->stream != nullptr) cudaStreamDestroy(toy->stream);
    cudaFree(toy->arena);
    delete toy;
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
    });
}

int32_t toy_evaluate(ne_cuda_toy* toy, int64_t batches, float* loss, char* err, size_t err_size) {
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
        NE_CUDA_CHECK(cudaStreamSynchronize(toy->stream));
    });
}

int32_t toy_get_params(ne_cuda_toy* toy, float* W, float* b, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(toy->device));
        const int64_t nm = toy->instances * toy->n * toy->m, in = toy->instances * toy->n;
        NE_CUDA_CHECK(cudaMemcpyAsync(W, toy->W, nm * sizeof(float), cudaMemcpyDeviceToHost, toy->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(b, toy->b, in * sizeof(float), cudaMemcpyDeviceToHost, toy->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(toy->stream));
    });
}

int32_t toy_set_params(ne_cuda_toy* toy, const float* W, const float* b, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(toy->device));
        const int64_t nm = toy->instances * toy->n * toy->m, in = toy->instances * toy->n;
        NE_CUDA_CHECK(cudaMemcpyAsync(toy->W, W, nm * sizeof(float), cudaMemcpyHostToDevice, toy->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(toy->b, b, in * sizeof(float), cudaMemcpyHostToDevice, toy->stream));
        // The optimizer state restarts with new parameters.
        NE_CUDA_CHECK(cudaMemsetAsync(toy->mW, 0, 2 * nm * sizeof(float), toy->stream));
        NE_CUDA_CHECK(cudaMemsetAsync(toy->mb, 0, 2 * in * sizeof(float), toy->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(toy->stream));
    });
}

}  // namespace ne::cuda
