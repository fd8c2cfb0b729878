// The CPU backend's fast forward/backward: the same mathematics as toy_loss_and_grad (the per-sample reference
// in toy_cpu.cpp), reorganised so the compiler emits wide SIMD. W is transposed once per step to Wt [m][np]
// (np = n rounded up to the vector width), so every product runs along the feature axis; samples go in blocks
// of kBlock so each Wt row loaded from cache serves several samples. Padded features have zero importance
// and zero weights, so they contribute nothing. Sparse inputs and output gradients (low feature probability)
// go through lists of their nonzero entries instead, against a copy of W with rows padded to whole vectors.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "models/toy.h"

namespace ne {
namespace {

constexpr int64_t kBlock = 4;  // samples per block
constexpr int64_t kWidth = 8;  // features per vector chunk (one AVX register of floats)

// A chunk of kWidth features as one GCC/Clang vector value: the compiler maps it to the widest SIMD registers
// the target has (two SSE registers without AVX), with no intrinsics.
template <typename T>
struct ChunkOf;
template <>
struct ChunkOf<float> {
    typedef float type __attribute__((vector_size(kWidth * sizeof(float))));
};
template <>
struct ChunkOf<double> {
    typedef double type __attribute__((vector_size(kWidth * sizeof(double))));
};
template <typename T>
using Chunk = typename ChunkOf<T>::type;

template <typename T>
inline Chunk<T> load(const T* p) {
    Chunk<T> v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <typename T>
inline void store(T* p, Chunk<T> v) {
    std::memcpy(p, &v, sizeof v);
}

// n (features, or hidden units) rounded up to whole vector chunks.
inline int64_t padded(int64_t n) { return (n + kWidth - 1) / kWidth * kWidth; }

// out[s][k] = sum_i rows[s][i] * Wt[k][i] for the block's samples (out rows hp apart): a small GEMM along the
// feature axis.
template <typename T>
void block_times_W(const T* rows, const T* Wt, int64_t m, int64_t np, int64_t hp, T* out) {
    for (int64_t k = 0; k < m; ++k) {
        const T* wk = Wt + k * np;
        Chunk<T> acc[kBlock] = {};
        for (int64_t c = 0; c < np; c += kWidth) {
            const Chunk<T> w = load(wk + c);
            for (int64_t s = 0; s < kBlock; ++s) acc[s] += load(rows + s * np + c) * w;
        }
        for (int64_t s = 0; s < kBlock; ++s) {
            T sum = T(0);
            for (int64_t v = 0; v < kWidth; ++v) sum += acc[s][v];
            out[s * hp + k] = sum;
        }
    }
}

// out[s][k] = sum over the listed nonzero v[s][i] of v[s][i] * Wp[i][k], for s < rows: Wp rows are padded to
// hp, so whole vectors of hidden units accumulate in registers.
template <typename T>
void sparse_times_W(const T* v, const int32_t* index, const T* Wp, int64_t rows, int64_t np, int64_t hp, T* out) {
    for (int64_t s = 0; s < rows; ++s) {
        const int32_t* list = index + s * (np + 1);
        const T* vs = v + s * np;
        for (int64_t c = 0; c < hp; c += kWidth) {
            Chunk<T> acc = {};
            for (int32_t j = 1; j <= list[0]; ++j) acc += vs[list[j]] * load(Wp + list[j] * hp + c);
            store(out + s * hp + c, acc);
        }
    }
}

// Per sample s of a block: index[s * (np + 1)] = the count of nonzero v[s][i], then their indices. Entries
// from n to np are zero, so they are never listed.
template <typename T>
void list_nonzero(const T* v, int64_t rows, int64_t np, int32_t* index) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
        // 16 at a time: compare, then compress the indices of the nonzero ones. Each store writes a whole
        // vector, past the count; the workspace leaves room for the last one.
        const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (int64_t s = 0; s < rows; ++s) {
            int32_t* list = index + s * (np + 1) + 1;
            int32_t count = 0;
            for (int64_t c = 0; c < np; c += 16) {
                const __mmask16 inside = np - c >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (np - c)) - 1u);
                const __m512 chunk = _mm512_maskz_loadu_ps(inside, v + s * np + c);
                const __mmask16 nonzero = _mm512_mask_cmp_ps_mask(inside, chunk, _mm512_setzero_ps(), _CMP_NEQ_UQ);
                const __m512i indices = _mm512_add_epi32(lanes, _mm512_set1_epi32(static_cast<int32_t>(c)));
                _mm512_storeu_si512(list + count, _mm512_maskz_compress_epi32(nonzero, indices));
                count += __builtin_popcount(nonzero);
            }
            list[-1] = count;
        }
        return;
    }
#endif
    for (int64_t s = 0; s < rows; ++s) {
        int32_t* list = index + s * (np + 1) + 1;
        int32_t count = 0;
        for (int64_t i = 0; i < np; ++i) {
            list[count] = static_cast<int32_t>(i);
            count += v[s * np + i] != T(0);
        }
        list[-1] = count;
    }
}

// grad[k][i] += sum_s a[s][k] * v[s][i] over the block: over the nonzero v[s][i] listed in index (count, then
// indices, per sample) when sparse, else along the feature axis in vector chunks.
template <typename T>
void outer_product_add(T* grad, const T* a, const T* v, const int32_t* index, bool sparse, int64_t rows, int64_t m,
                       int64_t np, int64_t hp) {
    if (sparse) {
        for (int64_t s = 0; s < rows; ++s) {
            const int32_t* list = index + s * (np + 1);
            for (int32_t j = 1; j <= list[0]; ++j) {
                const int64_t i = list[j];
                const T vi = v[s * np + i];
                for (int64_t k = 0; k < m; ++k) grad[k * np + i] += a[s * hp + k] * vi;
            }
        }
        return;
    }
    for (int64_t k = 0; k < m; ++k) {
        T* gk = grad + k * np;
        for (int64_t c = 0; c < np; c += kWidth) {
            Chunk<T> acc = load(gk + c);
            for (int64_t s = 0; s < kBlock; ++s) acc += a[s * hp + k] * load(v + s * np + c);
            store(gk + c, acc);
        }
    }
}

}  // namespace

template <typename T>
void toy_workspace_prepare(ToyWorkspace<T>& workspace, int64_t n, int64_t m) {
    workspace.resize(n, padded(n), padded(m), kBlock);
}

template <typename T>
ToyLoss toy_loss_and_grad_blocked(int32_t model, int64_t n, int64_t m, int64_t batch, ToyParams<T> p,
                                  const T* importance, T l1, const T* x, ToyGrads<T> g, ToyWorkspace<T>& ws) {
    const bool hidden_relu = toy_hidden_relu(model), output_relu = toy_output_relu(model);
    const bool signed_inputs = toy_signed_inputs(model), untied = toy_untied(model);
    const int64_t np = padded(n), hp = padded(m);
    toy_workspace_prepare(ws, n, m);  // no allocation when already sized
    T* Wt = ws.Wt.data();
    T* gWt = ws.gWt.data();
    // Tied models decode with W itself and collect both gradient terms in gWt.
    T* Wot = untied ? ws.Wot.data() : Wt;
    T* gWot = untied ? ws.gWot.data() : gWt;
    T* bp = ws.b.data();
    T* ip = ws.importance.data();
    T* X = ws.x.data();
    T* D = ws.d.data();
    T* H = ws.h.data();
    T* G = ws.g.data();
    // W with rows padded to hp, for the sparse products (the decoder's too when untied).
    T* Wp = ws.Wp.data();
    T* Wdp = untied ? ws.Wop.data() : Wp;
    for (auto* v : {&ws.Wt, &ws.Wot, &ws.gWt, &ws.gWot, &ws.Wp, &ws.Wop, &ws.b, &ws.gb, &ws.importance, &ws.h, &ws.g})
        std::fill(v->begin(), v->end(), T(0));
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t k = 0; k < m; ++k) Wt[k * np + i] = Wp[i * hp + k] = p.W[i * m + k];
        if (untied)
            for (int64_t k = 0; k < m; ++k) Wot[k * np + i] = Wdp[i * hp + k] = p.W_out[i * m + k];
        bp[i] = p.b[i];
        ip[i] = importance[i];
    }
    T* gbp = ws.gb.data();
    const T scale = T(2) / (static_cast<T>(batch) * static_cast<T>(n));
    const T l1_scale = l1 / static_cast<T>(batch);
    const Chunk<T> zero = {};
    double task = 0.0, l1_norm = 0.0;
    std::vector<int32_t>& x_index = ws.x_index;
    std::vector<int32_t>& d_index = ws.d_index;

    for (int64_t t0 = 0; t0 < batch; t0 += kBlock) {
        const int64_t rows = std::min(kBlock, batch - t0);
        std::fill(ws.x.begin(), ws.x.end(), T(0));
        int64_t nonzero = 0;
        for (int64_t s = 0; s < rows; ++s)
            for (int64_t i = 0; i < n; ++i) {
                const T v = x[(t0 + s) * n + i];
                X[s * np + i] = v;
                nonzero += v != T(0);
            }
        const bool sparse_x = nonzero * 4 < rows * n;
        if (sparse_x) list_nonzero(X, rows, np, x_index.data());
        // a = W^T x. Sparse inputs (low feature probability) are cheaper as a sum of the few active rows of W.
        // Rows past the batch's end are zero, so their h, d and g are zero too; so are the hidden paddings.
        if (sparse_x) {
            std::fill(H + rows * hp, H + kBlock * hp, T(0));
            sparse_times_W(X, x_index.data(), Wp, rows, np, hp, H);
        } else {
            block_times_W(X, Wt, m, np, hp, H);
        }
        for (int64_t e = 0; e < kBlock * hp; ++e) {
            if (hidden_relu && H[e] < T(0)) H[e] = T(0);
            l1_norm += static_cast<double>(std::abs(H[e]));
        }
        // x' = W_out h + b (ReLU); d = d loss / d pre-activation; rows past the batch's end get d = 0.
        Chunk<T> block_loss = zero;
        for (int64_t c = 0; c < np; c += kWidth) {
            Chunk<T> acc[kBlock];
            for (int64_t s = 0; s < kBlock; ++s) acc[s] = load(bp + c);
            for (int64_t k = 0; k < m; ++k) {
                const Chunk<T> w = load(Wot + k * np + c);
                for (int64_t s = 0; s < kBlock; ++s) acc[s] += H[s * hp + k] * w;
            }
            const Chunk<T> importance_c = load(ip + c);
            for (int64_t s = 0; s < kBlock; ++s) {
                if (s >= rows) {
                    store(D + s * np + c, zero);
                    continue;
                }
                const Chunk<T> pre = acc[s];
                const Chunk<T> output = output_relu ? (pre > zero ? pre : zero) : pre;
                const Chunk<T> input = load(X + s * np + c);
                const Chunk<T> target = signed_inputs ? (input < zero ? -input : input) : input;
                const Chunk<T> diff = output - target;
                const Chunk<T> weighted = importance_c * diff;
                block_loss += weighted * diff;
                const Chunk<T> d = scale * weighted;
                store(D + s * np + c, output_relu ? (pre > zero ? d : zero) : d);
            }
        }
        for (int64_t v = 0; v < kWidth; ++v) task += static_cast<double>(block_loss[v]);
        // With sparse inputs most outputs sit below their ReLU, so d is mostly zero too: then the products with
        // d run over its nonzero entries only (listed per sample), and likewise those with x.
        // The scattered updates below touch m cache lines per entry, so d must be sparser than x to win.
        int64_t d_nonzero = 0;
        for (int64_t e = 0; e < rows * np; ++e) d_nonzero += D[e] != T(0);
        const bool sparse_d = d_nonzero * 8 < rows * n;
        if (sparse_d) list_nonzero(D, rows, np, d_index.data());
        // g = d loss / d a: W_out^T d plus the penalty's subgradient, through the hidden ReLU.
        if (sparse_d) {
            std::fill(G + rows * hp, G + kBlock * hp, T(0));
            sparse_times_W(D, d_index.data(), Wdp, rows, np, hp, G);
        } else {
            block_times_W(D, Wot, m, np, hp, G);
        }
        for (int64_t e = 0; e < kBlock * hp; ++e) {
            const T h = H[e];
            G[e] += l1_scale * static_cast<T>((h > T(0)) - (h < T(0)));
            if (hidden_relu && !(h > T(0))) G[e] = T(0);
        }
        // gWot[k] += h_k d (decoding) and gWt[k] += g_k x (encoding), summed over the block; tied models add both
        // to gWt (gWot aliases it). Dense-dense blocks take one fused vector pass.
        if (!sparse_d && !sparse_x) {
            for (int64_t k = 0; k < m; ++k) {
                T* gk = gWt + k * np;
                T* gok = gWot + k * np;
                for (int64_t c = 0; c < np; c += kWidth) {
                    if (untied) {
                        Chunk<T> acc = load(gk + c), acc_out = load(gok + c);
                        for (int64_t s = 0; s < kBlock; ++s) {
                            acc_out += H[s * hp + k] * load(D + s * np + c);
                            acc += G[s * hp + k] * load(X + s * np + c);
                        }
                        store(gk + c, acc);
                        store(gok + c, acc_out);
                    } else {
                        Chunk<T> acc = load(gk + c);
                        for (int64_t s = 0; s < kBlock; ++s)
                            acc += H[s * hp + k] * load(D + s * np + c) + G[s * hp + k] * load(X + s * np + c);
                        store(gk + c, acc);
                    }
                }
            }
        } else {
            outer_product_add(gWot, H, D, d_index.data(), sparse_d, rows, m, np, hp);
            outer_product_add(gWt, G, X, x_index.data(), sparse_x, rows, m, np, hp);
        }
        if (sparse_d) {
            for (int64_t s = 0; s < rows; ++s) {
                const int32_t* list = d_index.data() + s * (np + 1);
                for (int32_t j = 1; j <= list[0]; ++j) gbp[list[j]] += D[s * np + list[j]];
            }
        } else {
            for (int64_t c = 0; c < np; c += kWidth) {
                Chunk<T> acc = load(gbp + c);
                for (int64_t s = 0; s < kBlock; ++s) acc += load(D + s * np + c);
                store(gbp + c, acc);
            }
        }
    }
    for (int64_t i = 0; i < n; ++i) {
        g.b[i] = gbp[i];
        for (int64_t k = 0; k < m; ++k) g.W[i * m + k] = gWt[k * np + i];
        if (untied)
            for (int64_t k = 0; k < m; ++k) g.W_out[i * m + k] = gWot[k * np + i];
    }
    return ToyLoss{task / (static_cast<double>(batch) * static_cast<double>(n)),
                   static_cast<double>(l1) * l1_norm / static_cast<double>(batch)};
}

template void toy_workspace_prepare<float>(ToyWorkspace<float>&, int64_t, int64_t);
template void toy_workspace_prepare<double>(ToyWorkspace<double>&, int64_t, int64_t);
template ToyLoss toy_loss_and_grad_blocked<float>(int32_t, int64_t, int64_t, int64_t, ToyParams<float>,
                                                  const float*, float, const float*, ToyGrads<float>,
                                                  ToyWorkspace<float>&);
template ToyLoss toy_loss_and_grad_blocked<double>(int32_t, int64_t, int64_t, int64_t, ToyParams<double>,
                                                   const double*, double, const double*, ToyGrads<double>,
                                                   ToyWorkspace<double>&);

}  // namespace ne
