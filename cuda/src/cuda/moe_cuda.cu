// Mixture-of-experts training on the GPU: one thread block per instance runs whole optimizer steps with every
// parameter and gradient in shared memory, as the toy kernel does, and follows the CPU reference
// (cpu/moe_cpu.cpp) step for step:
//   pass 1, the whole batch: data X [B][n] (Philox, as on the CPU), router logits H, probabilities and
//           logsumexp per token, top-k choice; then capacity in token order (one thread: the order is the
//           definition), loads f_e and mean probabilities P_e;
//   pass 2, tiles of T tokens: expert forward for the kept slots, combine, loss; backward through experts,
//           gates, renormalisation, balance and z losses, softmax and noise.
// Every parameter gradient is summed by the one thread that owns the parameter, in token order: results are
// the same run after run.
#include <algorithm>
#include <memory>
#include <utility>
#include <string>

#include "core/nvtx.h"
#include "cuda/cuda_check.h"
#include "cuda/device_arena.h"
#include "cuda/moe_cuda.h"
#include "models/moe_common.h"
#include "models/optimizer.h"
#include "models/toy_common.h"

namespace ne::cuda {

// A MoE's device tensors, sliced from its arena; plain pointers, so the kernel takes them by value.
struct MoeDeviceTensors {
    float *W, *b, *gate, *noise, *bias;                 // [I][E][n][m], [I][E][n], [I][n][E] x2, [I][E]
    float *mW, *vW, *mb, *vb, *mgate, *vgate, *mnoise, *vnoise;
    float *importance, *probability, *l1;               // [I][n] x2, [I]
    float* out;                                         // [I][NE_MOE_EVAL_FIELDS + E] evaluation output
    // per-instance batch scratch
    float *X, *Xr, *H, *prob, *lse, *normal, *softplus_in;  // [I][B][n] x2, [I][B][E] x2, [I][B], [I][B][E] x2
    int32_t *chosen, *kept;                             // [I][B][K]
    FeatureRule* rules;                                 // [n]
    AdamStep* adam;                                     // [adam_capacity]
    ne_non_finite* non_finite;                          // [I], see MoeBackend::non_finite
};

}  // namespace ne::cuda

struct ne_cuda_moe {
    int32_t device;
    ne::MoeSpec spec;
    int64_t instances;
    uint64_t seed;
    int64_t first_instance;  // the random streams' index of instance 0
    int32_t tile;
    size_t shared_bytes;
    ne::cuda::DeviceArena arena;  // one allocation: the tensors below
    ne::cuda::MoeDeviceTensors t;
    int32_t has_rules;
    int64_t adam_capacity;
    cudaStream_t stream;
};

namespace ne::cuda {
namespace {

constexpr int kThreads = 256;

struct MoeArgs {
    MoeSpec spec;
    int32_t n, m, E, K, B, T, S;  // S: padded row length of W in shared memory
    uint64_t seed;
    uint32_t first_instance;      // the random streams of block i are those of instance first_instance + i
    MoeDeviceTensors g;           // the instance's tensors
    const FeatureRule* rules;
    const AdamStep* adam;         // null: evaluate
    float bias_update;
    int32_t first_step, steps;
    Stream stream;
};

int32_t padded_stride(int64_t m) { return static_cast<int32_t>(m % 2 == 0 ? m + 1 : m); }

size_t shared_floats(const MoeSpec& s, int64_t T, int threads) {
    const int64_t n = s.n, m = s.m, E = s.experts, K = s.top_k, S = padded_stride(m);
    const int64_t params = 2 * E * n * S + 2 * E * n + 4 * n * E + E + 2 * n;
    const int64_t tile = T * (2 * n + 3 * K * m + K * n + 2 * K + n + 2 * E + 2);
    return static_cast<size_t>(params + tile + 2 * E + threads);
}

// Sum of one value per thread in a fixed order. Leaves the block synchronised.
__device__ double block_sum(double value, float* sred) {
    sred[threadIdx.x] = static_cast<float>(value);
    __syncthreads();
    double total = 0.0;
    for (int j = 0; j < blockDim.x; ++j) total += sred[j];
    __syncthreads();
    return total;
}

__global__ void __launch_bounds__(kThreads) moe_steps_kernel(MoeArgs a) {
    extern __shared__ float shared[];
    const int inst = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
    const uint32_t key = a.first_instance + static_cast<uint32_t>(inst);  // the instance's random streams
    const int n = a.n, m = a.m, E = a.E, K = a.K, B = a.B, T = a.T, S = a.S;
    const MoeSpec& spec = a.spec;
    const MoeDeviceTensors& g = a.g;
    const bool training = a.adam != nullptr;
    const bool hidden_relu = toy_hidden_relu(spec.expert_model);
    const bool noisy = training && spec.noise == NE_MOE_NOISE_NOISY_TOPK;
    const bool jittered = training && spec.noise == NE_MOE_NOISE_JITTER;

    // shared layout
    float* sW = shared;                 // [E][n][S]
    float* sgW = sW + E * n * S;        // [E][n][S]
    float* sb = sgW + E * n * S;        // [E][n]
    float* sgb = sb + E * n;            // [E][n]
    float* sG = sgb + E * n;            // [n][E] router
    float* sgG = sG + n * E;
    float* sN = sgG + n * E;            // [n][E] noise weights
    float* sgN = sN + n * E;
    float* sBias = sgN + n * E;         // [E]
    float* sImp = sBias + E;            // [n]
    float* sProbIn = sImp + n;          // [n] feature probabilities
    float* tX = sProbIn + n;            // [T][n]
    float* tXr = tX + T * n;            // [T][n]
    float* tA = tXr + T * n;            // [T][K][m]
    float* tH = tA + T * K * m;         // [T][K][m]
    float* tGh = tH + T * K * m;        // [T][K][m]
    float* tPre = tGh + T * K * m;      // [T][K][n]
    float* tGate = tPre + T * K * n;    // [T][K]
    float* tDgate = tGate + T * K;      // [T][K]
    float* tD = tDgate + T * K;         // [T][n]
    float* tDprob = tD + T * n;         // [T][E]
    float* tDH = tDprob + T * E;        // [T][E]
    float* tSum = tDH + T * E;          // [T] sum of the chosen probabilities
    float* tWeighted = tSum + T;        // [T]
    float* sLoad = tWeighted + T;       // [E]
    float* sP = sLoad + E;              // [E]
    float* sred = sP + E;               // [blockDim]; in training sred[0] flags a non-finite gradient

    // An instance that met a non-finite step takes no further updates (the block's choice is uniform).
    if (training && g.non_finite[inst].step != 0) return;

    const int64_t ow = static_cast<int64_t>(inst) * E * n * m, ob = static_cast<int64_t>(inst) * E * n;
    const int64_t og = static_cast<int64_t>(inst) * n * E, oi = static_cast<int64_t>(inst) * n;
    for (int e = tid; e < E * n * m; e += nt) sW[(e / m) * S + e % m] = g.W[ow + e];
    for (int e = tid; e < E * n; e += nt) sb[e] = g.b[ob + e];
    for (int e = tid; e < n * E; e += nt) {
        sG[e] = g.gate[og + e];
        sN[e] = g.noise[og + e];
    }
    for (int e = tid; e < E; e += nt) sBias[e] = g.bias[static_cast<int64_t>(inst) * E + e];
    for (int i = tid; i < n; i += nt) {
        sImp[i] = g.importance[oi + i];
        sProbIn[i] = g.probability[oi + i];
    }
    __syncthreads();

    float* X = g.X + static_cast<int64_t>(inst) * B * n;
    float* Xr = g.Xr + static_cast<int64_t>(inst) * B * n;
    float* H = g.H + static_cast<int64_t>(inst) * B * E;
    float* prob = g.prob + static_cast<int64_t>(inst) * B * E;
    float* lse = g.lse + static_cast<int64_t>(inst) * B;
    float* normal = g.normal + static_cast<int64_t>(inst) * B * E;
    float* sp = g.softplus_in + static_cast<int64_t>(inst) * B * E;
    int32_t* chosen = g.chosen + static_cast<int64_t>(inst) * B * K;
    int32_t* kept = g.kept + static_cast<int64_t>(inst) * B * K;

    const float l1 = g.l1[inst], l1_scale = l1 / static_cast<float>(B);
    const float scale = 2.0f / (static_cast<float>(B) * static_cast<float>(n));
    const int64_t capacity = moe_capacity(spec.capacity_factor, B, K, E);
    const bool signed_inputs = toy_signed_inputs(spec.expert_model);
    double task = 0, l1_norm = 0, balance_sum = 0, z_sum = 0, dropped_sum = 0;
    // Evaluation output of this instance; expert e's usage is summed there by the thread that owns e.
    float* usage = g.out + static_cast<int64_t>(inst) * (NE_MOE_EVAL_FIELDS + E);
    if (!training)
        for (int e = tid; e < E; e += nt) usage[NE_MOE_EVAL_FIELDS + e] = 0.0f;

    for (int s = 0; s < a.steps; ++s) {
        const uint32_t step = static_cast<uint32_t>(a.first_step + s);
        // ---- pass 1: data, router, choice --------------------------------------------------------------
        const int pairs = (n + 1) / 2;
        for (int e = tid; e < B * pairs; e += nt) {
            const int t = e / pairs, pair = e % pairs, i = 2 * pair;
            const bool second = i + 1 < n;
            float x0, x1;
            toy_feature_pair(a.seed, a.stream, step, key, t, pair, sProbIn[i], second ? sProbIn[i + 1] : 0.0f,
                             signed_inputs, x0, x1);
            X[t * n + i] = x0;
            if (second) X[t * n + i + 1] = x1;
        }
        __syncthreads();
        if (a.rules != nullptr) {
            for (int e = tid; e < B * n; e += nt) {
                const FeatureRule rule = a.rules[e % n];
                if (rule.kind == NE_FEATURES_INDEPENDENT) continue;
                X[e] = toy_set_feature(a.seed, a.stream, step, key, e / n, e % n, rule, sProbIn, signed_inputs);
            }
            __syncthreads();
        }
        for (int t = tid; t < B; t += nt) {
            float quad[4];
            for (int i = 0; i < n; i += 4) {
                if (jittered) moe_jitter_quad(a.seed, a.stream, step, key, t, i / 4, kMoeJitter, quad);
                for (int j = i; j < min(i + 4, n); ++j) Xr[t * n + j] = jittered ? X[t * n + j] * quad[j - i] : X[t * n + j];
            }
            if (noisy)
                for (int e = 0; e < E; e += 4) {
                    moe_normal_quad(a.seed, a.stream, step, key, t, e / 4, quad);
                    for (int j = e; j < min(e + 4, E); ++j) normal[t * E + j] = quad[j - e];
                }
            float top = -INFINITY;
            for (int e = 0; e < E; ++e) {
                float zs = 0.0f, ss = 0.0f;
                for (int i = 0; i < n; ++i) {
                    zs += Xr[t * n + i] * sG[i * E + e];
                    if (noisy) ss += Xr[t * n + i] * sN[i * E + e];
                }
                sp[t * E + e] = ss;
                const float h = noisy ? zs + normal[t * E + e] * moe_softplus(ss) : zs;
                H[t * E + e] = h;
                top = fmaxf(top, h);
            }
            float sum = 0.0f;
            for (int e = 0; e < E; ++e) sum += expf(H[t * E + e] - top);
            for (int e = 0; e < E; ++e) prob[t * E + e] = expf(H[t * E + e] - top) / sum;
            lse[t] = top + logf(sum);
            // top-k of H + bias by repeated selection; ties go to the lower index, as the CPU's stable sort
            for (int r = 0; r < K; ++r) {
                int best = -1;
                for (int e = 0; e < E; ++e) {
                    bool taken = false;
                    for (int q = 0; q < r; ++q) taken |= chosen[t * K + q] == e;
                    if (taken) continue;
                    if (best < 0 || H[t * E + e] + sBias[e] > H[t * E + best] + sBias[best]) best = e;
                }
                chosen[t * K + r] = best;
            }
        }
        __syncthreads();
        if (tid == 0) {
            // Capacity in token order: the definition, so one thread walks it. sP counts slots taken so far.
            for (int e = 0; e < E; ++e) sLoad[e] = sP[e] = 0.0f;
            int64_t dropped = 0;
            for (int t = 0; t < B; ++t)
                for (int r = 0; r < K; ++r) {
                    const int e = chosen[t * K + r];
                    sLoad[e] += 1.0f;
                    const bool room = static_cast<int64_t>(sP[e]) < capacity;
                    kept[t * K + r] = room ? 1 : 0;
                    if (room) sP[e] += 1.0f;
                    else ++dropped;
                }
            if (!training) dropped_sum += static_cast<double>(dropped) / static_cast<double>(B * K);
        }
        __syncthreads();
        for (int e = tid; e < E; e += nt) {
            float total = 0.0f;
            for (int t = 0; t < B; ++t) total += prob[t * E + e];
            sP[e] = total / static_cast<float>(B);  // mean router probability P_e
        }
        __syncthreads();
        if (!training) {
            if (tid == 0) {
                double balance = 0.0, zs = 0.0;
                for (int e = 0; e < E; ++e) balance += static_cast<double>(sLoad[e]) / (B * K) * sP[e];
                for (int t = 0; t < B; ++t) zs += static_cast<double>(lse[t]) * lse[t];
                balance_sum += static_cast<double>(spec.load_balance) * E * balance;
                z_sum += static_cast<double>(spec.z_loss) * zs / B;
            }
            for (int e = tid; e < E; e += nt) usage[NE_MOE_EVAL_FIELDS + e] += sLoad[e] / static_cast<float>(B);
        }
        if (training) {
            for (int e = tid; e < E * n * m; e += nt) sgW[(e / m) * S + e % m] = 0.0f;
            for (int e = tid; e < E * n; e += nt) sgb[e] = 0.0f;
            for (int e = tid; e < n * E; e += nt) sgG[e] = sgN[e] = 0.0f;
        }
        __syncthreads();

        // ---- pass 2: tiles ---------------------------------------------------------------------------------
        for (int t0 = 0; t0 < B; t0 += T) {
            const int rows = min(T, B - t0);
            for (int e = tid; e < rows * n; e += nt) {
                tX[e] = X[t0 * n + e];
                tXr[e] = Xr[t0 * n + e];
            }
            for (int t = tid; t < rows; t += nt) {
                float sum = 0.0f;
                for (int r = 0; r < K; ++r) sum += prob[(t0 + t) * E + chosen[(t0 + t) * K + r]];
                tSum[t] = sum;
                for (int r = 0; r < K; ++r) {
                    const float p = prob[(t0 + t) * E + chosen[(t0 + t) * K + r]];
                    tGate[t * K + r] = spec.renormalize ? p / sum : p;
                }
            }
            __syncthreads();
            // expert hidden activations of the kept slots
            for (int e = tid; e < rows * K * m; e += nt) {
                const int t = e / (K * m), r = (e / m) % K, j = e % m;
                float av = 0.0f;
                if (kept[(t0 + t) * K + r]) {
                    const float* We = sW + chosen[(t0 + t) * K + r] * n * S;
                    for (int i = 0; i < n; ++i) av += tX[t * n + i] * We[i * S + j];
                }
                tA[e] = av;
                const float h = hidden_relu ? fmaxf(av, 0.0f) : av;
                tH[e] = h;
                if (!training) l1_norm += static_cast<double>(fabsf(h));
            }
            __syncthreads();
            for (int e = tid; e < rows * K * n; e += nt) {
                const int t = e / (K * n), r = (e / n) % K, i = e % n;
                float pre = 0.0f;
                if (kept[(t0 + t) * K + r]) {
                    const int ex = chosen[(t0 + t) * K + r];
                    const float* wi = sW + (ex * n + i) * S;
                    pre = sb[ex * n + i];
                    for (int j = 0; j < m; ++j) pre += wi[j] * tH[(t * K + r) * m + j];
                }
                tPre[e] = pre;
            }
            __syncthreads();
            for (int e = tid; e < rows * n; e += nt) {
                const int t = e / n, i = e % n;
                float y = 0.0f;
                for (int r = 0; r < K; ++r)
                    if (kept[(t0 + t) * K + r]) y += tGate[t * K + r] * fmaxf(tPre[(t * K + r) * n + i], 0.0f);
                const float diff = y - tX[e];
                if (!training) task += static_cast<double>(sImp[i] * diff * diff);
                tD[e] = scale * sImp[i] * diff;
            }
            __syncthreads();
            if (training) {
                for (int e = tid; e < rows * K; e += nt) {
                    const int t = e / K, r = e % K;
                    float dg = 0.0f;
                    if (kept[(t0 + t) * K + r])
                        for (int i = 0; i < n; ++i) dg += tD[t * n + i] * fmaxf(tPre[e * n + i], 0.0f);
                    tDgate[e] = dg;
                }
                for (int e = tid; e < rows * K * m; e += nt) {
                    const int t = e / (K * m), r = (e / m) % K, j = e % m;
                    const float h = tH[e];
                    float gh = l1_scale * static_cast<float>((h > 0.0f) - (h < 0.0f));
                    if (kept[(t0 + t) * K + r]) {
                        const float* We = sW + chosen[(t0 + t) * K + r] * n * S;
                        for (int i = 0; i < n; ++i) {
                            const float dpre = tPre[(t * K + r) * n + i] > 0.0f ? tGate[t * K + r] * tD[t * n + i] : 0.0f;
                            gh += dpre * We[i * S + j];
                        }
                    } else {
                        gh = 0.0f;
                    }
                    tGh[e] = hidden_relu && !(tA[e] > 0.0f) ? 0.0f : gh;
                }
                __syncthreads();
                // expert weights: one owner per (expert, feature, hidden), tokens in order
                for (int e = tid; e < E * n * m; e += nt) {
                    const int ex = e / (n * m), i = (e / m) % n, j = e % m;
                    float acc = 0.0f;
                    for (int t = 0; t < rows; ++t)
                        for (int r = 0; r < K; ++r) {
                            if (!kept[(t0 + t) * K + r] || chosen[(t0 + t) * K + r] != ex) continue;
                            const float dpre = tPre[(t * K + r) * n + i] > 0.0f ? tGate[t * K + r] * tD[t * n + i] : 0.0f;
                            acc += dpre * tH[(t * K + r) * m + j] + tX[t * n + i] * tGh[(t * K + r) * m + j];
                        }
                    sgW[(ex * n + i) * S + j] += acc;
                }
                for (int e = tid; e < E * n; e += nt) {
                    const int ex = e / n, i = e % n;
                    float acc = 0.0f;
                    for (int t = 0; t < rows; ++t)
                        for (int r = 0; r < K; ++r) {
                            if (!kept[(t0 + t) * K + r] || chosen[(t0 + t) * K + r] != ex) continue;
                            acc += tPre[(t * K + r) * n + i] > 0.0f ? tGate[t * K + r] * tD[t * n + i] : 0.0f;
                        }
                    sgb[e] += acc;
                }
                // router: gates -> probabilities -> logits
                for (int t = tid; t < rows; t += nt) {
                    float weighted = 0.0f;
                    for (int r = 0; r < K; ++r) weighted += tDgate[t * K + r] * tGate[t * K + r];
                    tWeighted[t] = weighted;
                }
                __syncthreads();
                const float alpha_scale = spec.load_balance * static_cast<float>(E) / static_cast<float>(B);
                for (int e = tid; e < rows * E; e += nt) {
                    const int t = e / E, ex = e % E;
                    float dp = alpha_scale * sLoad[ex] / static_cast<float>(B * K);
                    for (int r = 0; r < K; ++r)
                        if (chosen[(t0 + t) * K + r] == ex)
                            dp += spec.renormalize ? (tDgate[t * K + r] - tWeighted[t]) / tSum[t] : tDgate[t * K + r];
                    tDprob[e] = dp;
                }
                __syncthreads();
                for (int t = tid; t < rows; t += nt) {
                    float dot = 0.0f;
                    for (int ex = 0; ex < E; ++ex) dot += prob[(t0 + t) * E + ex] * tDprob[t * E + ex];
                    tWeighted[t] = dot;  // reused: sum_e prob_e dprob_e
                }
                __syncthreads();
                for (int e = tid; e < rows * E; e += nt) {
                    const int t = e / E, ex = e % E;
                    const float p = prob[(t0 + t) * E + ex];
                    const float z_scale = 2.0f * spec.z_loss * lse[t0 + t] / static_cast<float>(B);
                    tDH[e] = p * (tDprob[e] - tWeighted[t]) + z_scale * p;
                }
                __syncthreads();
                for (int e = tid; e < n * E; e += nt) {
                    const int i = e / E, ex = e % E;
                    float acc = 0.0f, accn = 0.0f;
                    for (int t = 0; t < rows; ++t) {
                        const float dH = tDH[t * E + ex];
                        acc += tXr[t * n + i] * dH;
                        if (noisy)
                            accn += tXr[t * n + i] * dH * normal[(t0 + t) * E + ex] * moe_sigmoid(sp[(t0 + t) * E + ex]);
                    }
                    sgG[e] += acc;
                    sgN[e] += accn;
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
            for (int e = tid; e < E * n * m; e += nt) finite = finite && isfinite(sgW[(e / m) * S + e % m]);
            for (int e = tid; e < E * n; e += nt) finite = finite && isfinite(sgb[e]);
            for (int e = tid; e < n * E; e += nt) finite = finite && isfinite(sgG[e]) && isfinite(sgN[e]);
            if (!finite) sred[0] = 1.0f;
            __syncthreads();
            const int64_t number = static_cast<int64_t>(a.first_step) + s + 1;
            if (sred[0] != 0.0f) {
                if (tid == 0) g.non_finite[inst] = ne_non_finite{number, inst, NE_NON_FINITE_LOSS, 0};
                break;
            }
            const AdamStep hp = a.adam[s];
            for (int e = tid; e < E * n * m; e += nt) {
                const int j = (e / m) * S + e % m;
                adam_update(sW[j], sgW[j], g.mW[ow + e], g.vW[ow + e], hp);
                finite = finite && isfinite(sW[j]);
            }
            for (int e = tid; e < E * n; e += nt) {
                adam_update(sb[e], sgb[e], g.mb[ob + e], g.vb[ob + e], hp);
                finite = finite && isfinite(sb[e]);
            }
            for (int e = tid; e < n * E; e += nt) {
                adam_update(sG[e], sgG[e], g.mgate[og + e], g.vgate[og + e], hp);
                adam_update(sN[e], sgN[e], g.mnoise[og + e], g.vnoise[og + e], hp);
                finite = finite && isfinite(sG[e]) && isfinite(sN[e]);
            }
            if (a.bias_update > 0.0f)
                for (int e = tid; e < E; e += nt) {
                    const double gap = static_cast<double>(B * K) / E - sLoad[e];
                    sBias[e] += a.bias_update * static_cast<float>((gap > 0) - (gap < 0));
                }
            if (!finite) sred[1] = 1.0f;
            __syncthreads();
            if (sred[1] != 0.0f) {
                if (tid == 0) g.non_finite[inst] = ne_non_finite{number, inst, NE_NON_FINITE_PARAMETERS, 0};
                break;
            }
        }
    }

    if (training) {
        for (int e = tid; e < E * n * m; e += nt) g.W[ow + e] = sW[(e / m) * S + e % m];
        for (int e = tid; e < E * n; e += nt) g.b[ob + e] = sb[e];
        for (int e = tid; e < n * E; e += nt) {
            g.gate[og + e] = sG[e];
            g.noise[og + e] = sN[e];
        }
        for (int e = tid; e < E; e += nt) g.bias[static_cast<int64_t>(inst) * E + e] = sBias[e];
    } else {
        const double task_total = block_sum(task, sred);
        const double l1_total = block_sum(l1_norm, sred);
        float* o = usage;
        if (tid == 0) {
            const double steps = a.steps;
            o[0] = static_cast<float>(task_total / (static_cast<double>(B) * n * steps));
            o[1] = static_cast<float>(static_cast<double>(l1) * l1_total / (static_cast<double>(B) * steps));
            o[2] = static_cast<float>(balance_sum / steps);
            o[3] = static_cast<float>(z_sum / steps);
            o[4] = static_cast<float>(dropped_sum / steps);
        }
        for (int e = tid; e < E; e += nt) o[NE_MOE_EVAL_FIELDS + e] /= static_cast<float>(a.steps);
    }
}

void launch(const ne_cuda_moe& moe, const MoeArgs& args) {
    NE_CUDA_CHECK(cudaSetDevice(moe.device));
    moe_steps_kernel<<<static_cast<unsigned>(moe.instances), kThreads, moe.shared_bytes, moe.stream>>>(args);
    NE_CUDA_CHECK_LAUNCH("moe_steps_kernel");
}

MoeArgs make_args(const ne_cuda_moe& moe) {
    MoeArgs a{};
    a.spec = moe.spec;
    a.n = static_cast<int32_t>(moe.spec.n);
    a.m = static_cast<int32_t>(moe.spec.m);
    a.E = static_cast<int32_t>(moe.spec.experts);
    a.K = static_cast<int32_t>(moe.spec.top_k);
    a.B = static_cast<int32_t>(moe.spec.batch);
    a.T = moe.tile;
    a.S = padded_stride(moe.spec.m);
    a.seed = moe.seed;
    a.first_instance = static_cast<uint32_t>(moe.first_instance);
    a.g = moe.t;
    a.rules = moe.has_rules ? moe.t.rules : nullptr;
    return a;
}

// The tile (tokens per pass, at most 32) the fused kernel uses for this shape on this device, and its shared
// memory; throws NE_ERR_UNSUPPORTED when even one token does not fit.
std::pair<int32_t, size_t> plan_tile(int32_t device, const MoeSpec& spec, int64_t instances) {
    int optin = 0;
    NE_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    int64_t tile = std::min<int64_t>(32, spec.batch);
    while (tile > 1 && shared_floats(spec, tile, kThreads) * sizeof(float) > static_cast<size_t>(optin)) --tile;
    const size_t shared_bytes = shared_floats(spec, tile, kThreads) * sizeof(float);
    if (shared_bytes > static_cast<size_t>(optin))
        fail(NE_ERR_UNSUPPORTED, "n_experts * n_features * expert_hidden = " +
                                     std::to_string(spec.experts * spec.n * spec.m) +
                                     " is too large for the fused CUDA MoE kernel: it needs " +
                                     std::to_string(shared_bytes) + " bytes of shared memory per block, the device " +
                                     "offers " + std::to_string(optin) + "; use backend cpu");
    if (instances > 0x7fffffff) fail(NE_ERR_UNSUPPORTED, "n_instances exceeds the CUDA grid limit 2147483647");
    return {static_cast<int32_t>(tile), shared_bytes};
}

}  // namespace

int32_t moe_supports(int32_t device, const MoeSpec* spec, int64_t instances, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] { plan_tile(device, *spec, instances); });
}

int32_t moe_create(int32_t device, const MoeSpec* spec, int64_t instances, uint64_t seed, int64_t first_instance,
                   ne_cuda_moe** out, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(device));
        const auto [tile, shared_bytes] = plan_tile(device, *spec, instances);
        allow_max_dynamic_shared(moe_steps_kernel, device);

        std::unique_ptr<ne_cuda_moe, void (*)(ne_cuda_moe*)> moe(new ne_cuda_moe{}, moe_destroy);
        moe->device = device;
        moe->spec = *spec;
        moe->instances = instances;
        moe->seed = seed;
        moe->first_instance = first_instance;
        moe->tile = tile;
        moe->shared_bytes = shared_bytes;
        moe->adam_capacity = 4096;
        const int64_t I = instances, n = spec->n, m = spec->m, E = spec->experts, K = spec->top_k, B = spec->batch;
        const int64_t w = I * E * n * m, bsz = I * E * n, gsz = I * n * E;
        MoeDeviceTensors& t = moe->t;
        moe->arena.allocate([&](ArenaCarver& c) {
            t.W = c.take<float>(w), t.mW = c.take<float>(w), t.vW = c.take<float>(w);
            t.b = c.take<float>(bsz), t.mb = c.take<float>(bsz), t.vb = c.take<float>(bsz);
            t.gate = c.take<float>(gsz), t.mgate = c.take<float>(gsz), t.vgate = c.take<float>(gsz);
            t.noise = c.take<float>(gsz), t.mnoise = c.take<float>(gsz), t.vnoise = c.take<float>(gsz);
            t.bias = c.take<float>(I * E);
            t.importance = c.take<float>(I * n), t.probability = c.take<float>(I * n);
            t.l1 = c.take<float>(I);
            t.out = c.take<float>(I * (NE_MOE_EVAL_FIELDS + E));
            t.X = c.take<float>(I * B * n), t.Xr = c.take<float>(I * B * n);
            t.H = c.take<float>(I * B * E), t.prob = c.take<float>(I * B * E), t.normal = c.take<float>(I * B * E);
            t.softplus_in = c.take<float>(I * B * E);
            t.lse = c.take<float>(I * B);
            t.chosen = c.take<int32_t>(I * B * K);
            t.kept = c.take<int32_t>(I * B * K);
            t.adam = c.take<AdamStep>(moe->adam_capacity);
            t.rules = c.take<FeatureRule>(n);
            t.non_finite = c.take<ne_non_finite>(I);
        });
        NE_CUDA_CHECK(cudaStreamCreateWithFlags(&moe->stream, cudaStreamNonBlocking));
        NE_CUDA_CHECK(cudaMemsetAsync(t.non_finite, 0, I * sizeof(ne_non_finite), moe->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(moe->stream));
        *out = moe.release();
    });
}

void moe_destroy(ne_cuda_moe* moe) {
    if (moe == nullptr) return;
    cudaSetDevice(moe->device);
    if (moe->stream != nullptr) cudaStreamDestroy(moe->stream);
    delete moe;  // the arena checks its guards (NE_ARENA_GUARD) and frees its allocation
}

int32_t moe_set_data(ne_cuda_moe* moe, const float* importance, const float* probability, const float* l1,
                     const FeatureRule* rules, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(moe->device));
        const int64_t in = moe->instances * moe->spec.n;
        NE_CUDA_CHECK(cudaMemcpyAsync(moe->t.importance, importance, in * sizeof(float), cudaMemcpyHostToDevice, moe->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(moe->t.probability, probability, in * sizeof(float), cudaMemcpyHostToDevice, moe->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(moe->t.l1, l1, moe->instances * sizeof(float), cudaMemcpyHostToDevice, moe->stream));
        moe->has_rules = rules != nullptr ? 1 : 0;
        if (rules != nullptr)
            NE_CUDA_CHECK(cudaMemcpyAsync(moe->t.rules, rules, moe->spec.n * sizeof(FeatureRule), cudaMemcpyHostToDevice,
                                          moe->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(moe->stream));
        verify_guards(moe->stream, moe->arena);
    });
}

int32_t moe_train(ne_cuda_moe* moe, int64_t first_step, const AdamStep* adam, int64_t steps, float bias_update,
                  char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_NVTX_RANGE("moe.train");
        if (steps > moe->adam_capacity)
            invalid("steps per call " + std::to_string(steps) + " exceeds " + std::to_string(moe->adam_capacity));
        if (steps == 0) return;
        NE_CUDA_CHECK(cudaSetDevice(moe->device));
        NE_CUDA_CHECK(cudaMemcpyAsync(moe->t.adam, adam, steps * sizeof(AdamStep), cudaMemcpyHostToDevice, moe->stream));
        MoeArgs args = make_args(*moe);
        args.adam = moe->t.adam;
        args.bias_update = bias_update;
        args.first_step = static_cast<int32_t>(first_step);
        args.steps = static_cast<int32_t>(steps);
        args.stream = Stream::kTrain;
        launch(*moe, args);
        NE_CUDA_CHECK(cudaStreamSynchronize(moe->stream));
        verify_guards(moe->stream, moe->arena);
    });
}

int32_t moe_evaluate(ne_cuda_moe* moe, int64_t batches, float* out, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_NVTX_RANGE("moe.evaluate");
        MoeArgs args = make_args(*moe);
        args.adam = nullptr;
        args.first_step = 0;
        args.steps = static_cast<int32_t>(batches);
        args.stream = Stream::kEvaluate;
        launch(*moe, args);
        NE_CUDA_CHECK(cudaMemcpyAsync(out, moe->t.out, moe->instances * (NE_MOE_EVAL_FIELDS + moe->spec.experts) * sizeof(float),
                                      cudaMemcpyDeviceToHost, moe->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(moe->stream));
        verify_guards(moe->stream, moe->arena);
    });
}

int32_t moe_get_params(ne_cuda_moe* moe, float* W, float* b, float* W_gate, float* W_noise, float* route_bias,
                       char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(moe->device));
        const MoeSizes sizes(moe->spec);
        const int64_t I = moe->instances;
        NE_CUDA_CHECK(cudaMemcpyAsync(W, moe->t.W, I * sizes.W * sizeof(float), cudaMemcpyDeviceToHost, moe->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(b, moe->t.b, I * sizes.b * sizeof(float), cudaMemcpyDeviceToHost, moe->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(W_gate, moe->t.gate, I * sizes.gate * sizeof(float), cudaMemcpyDeviceToHost, moe->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(W_noise, moe->t.noise, I * sizes.gate * sizeof(float), cudaMemcpyDeviceToHost, moe->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(route_bias, moe->t.bias, I * sizes.bias * sizeof(float), cudaMemcpyDeviceToHost, moe->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(moe->stream));
    });
}

int32_t moe_set_params(ne_cuda_moe* moe, const float* W, const float* b, const float* W_gate, const float* W_noise,
                       const float* route_bias, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(moe->device));
        const MoeSizes sizes(moe->spec);
        const int64_t I = moe->instances;
        NE_CUDA_CHECK(cudaMemcpyAsync(moe->t.W, W, I * sizes.W * sizeof(float), cudaMemcpyHostToDevice, moe->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(moe->t.b, b, I * sizes.b * sizeof(float), cudaMemcpyHostToDevice, moe->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(moe->t.gate, W_gate, I * sizes.gate * sizeof(float), cudaMemcpyHostToDevice, moe->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(moe->t.noise, W_noise, I * sizes.gate * sizeof(float), cudaMemcpyHostToDevice, moe->stream));
        NE_CUDA_CHECK(cudaMemcpyAsync(moe->t.bias, route_bias, I * sizes.bias * sizeof(float), cudaMemcpyHostToDevice, moe->stream));
        // The optimizer state restarts with new parameters.
        const MoeDeviceTensors& t = moe->t;
        const std::pair<float*, int64_t> moments[] = {{t.mW, sizes.W},      {t.vW, sizes.W},     {t.mb, sizes.b},
                                                      {t.vb, sizes.b},      {t.mgate, sizes.gate}, {t.vgate, sizes.gate},
                                                      {t.mnoise, sizes.gate}, {t.vnoise, sizes.gate}};
        for (const auto& [moment, count] : moments)
            NE_CUDA_CHECK(cudaMemsetAsync(moment, 0, I * count * sizeof(float), moe->stream));
        NE_CUDA_CHECK(cudaMemsetAsync(t.non_finite, 0, I * sizeof(ne_non_finite), moe->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(moe->stream));
        verify_guards(moe->stream, moe->arena);
    });
}

int32_t moe_non_finite(ne_cuda_moe* moe, ne_non_finite* per_instance, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(moe->device));
        NE_CUDA_CHECK(cudaMemcpyAsync(per_instance, moe->t.non_finite, moe->instances * sizeof(ne_non_finite),
                                      cudaMemcpyDeviceToHost, moe->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(moe->stream));
    });
}

}  // namespace ne::cuda
