// The CPU backend's fast forward/backward: the same mathematics as toy_loss_and_grad (the per-sample reference
// in toy_cpu.cpp), reorganised so that every product is a full-width vector FMA. Samples go in blocks of
// kLanes, one sample per vector lane: a block's inputs are transposed to xt [n][kLanes], and then
//   a[k]  = sum_i W[i][k] xt[i]          (a broadcast weight times a vector of samples),
//   pre[i] = b[i] + sum_k W_out[i][k] h[k],
//   g[k]  = sum_i W_out[i][k] d[i],
// with no horizontal sums. Feature rows that are zero in every sample of a block (most of them at low feature
// probability) are skipped. The weight gradients sum over samples, so they accumulate per lane across a chunk
// of blocks, in register tiles of kRows features x kCols hidden units, and are reduced across lanes once per
// batch.
#include <algorithm>
#include <cmath>

#include "cpu/lanes.h"
#include "models/toy.h"

namespace ne {
namespace {

using namespace lanes;

constexpr int64_t kRows = 4;    // features per register tile
constexpr int64_t kCols = 4;    // hidden units per register tile
constexpr int64_t kChunk = 16;  // blocks whose activations are kept for one pass of the gradient tiles

// out[k] = sum over the listed rows i of Wp[i][k] * v[i], for k < mp (Wp rows mp apart, mp a multiple of kCols):
// a broadcast weight times a vector of samples, kCols hidden units at a time in registers.
template <typename T>
void rows_times_W(const T* v, const int32_t* rows, int32_t count, const T* Wp, int64_t mp, T* out) {
    for (int64_t k = 0; k < mp; k += kCols) {
        Lanes<T> acc[kCols] = {};
        for (int32_t j = 0; j < count; ++j) {
            const int64_t i = rows[j];
            const Lanes<T> vi = load(v + i * kLanes);
            for (int64_t c = 0; c < kCols; ++c) acc[c] += Wp[i * mp + k + c] * vi;
        }
        for (int64_t c = 0; c < kCols; ++c) store(out + (k + c) * kLanes, acc[c]);
    }
}

// acc[i][k] += sum over the chunk's blocks of a[i] * b[k] (+ a2[i] * b2[k] when a2 is given), per lane: a, a2
// are [blocks][n][kLanes], b, b2 [blocks][mp][kLanes], acc [n][mp][kLanes]. R features x kCols hidden units
// accumulate in registers over every block; blocks where the R rows of a (and a2) are all zero are skipped.
template <typename T, int64_t R>
void accumulate_tile(T* acc, const T* a, const T* a2, const T* b, const T* b2, const uint8_t* live, int64_t blocks,
                     int64_t n, int64_t mp, int64_t i, int64_t k) {
    Lanes<T> sum[R][kCols];
    for (int64_t r = 0; r < R; ++r)
        for (int64_t c = 0; c < kCols; ++c) sum[r][c] = load(acc + ((i + r) * mp + k + c) * kLanes);
    for (int64_t blk = 0; blk < blocks; ++blk) {
        bool any = false;
        for (int64_t r = 0; r < R; ++r) any |= live[blk * n + i + r] != 0;
        if (!any) continue;
        // Each vector is loaded once per block and used kCols (R) times from a register.
        const T* ab = a + (blk * n + i) * kLanes;
        const T* bb = b + (blk * mp + k) * kLanes;
        Lanes<T> bv[kCols];
        for (int64_t c = 0; c < kCols; ++c) bv[c] = load(bb + c * kLanes);
        for (int64_t r = 0; r < R; ++r) {
            const Lanes<T> ar = load(ab + r * kLanes);
            for (int64_t c = 0; c < kCols; ++c) sum[r][c] += ar * bv[c];
        }
        if (a2 == nullptr) continue;
        const T* a2b = a2 + (blk * n + i) * kLanes;
        const T* b2b = b2 + (blk * mp + k) * kLanes;
        for (int64_t c = 0; c < kCols; ++c) bv[c] = load(b2b + c * kLanes);
        for (int64_t r = 0; r < R; ++r) {
            const Lanes<T> ar = load(a2b + r * kLanes);
            for (int64_t c = 0; c < kCols; ++c) sum[r][c] += ar * bv[c];
        }
    }
    for (int64_t r = 0; r < R; ++r)
        for (int64_t c = 0; c < kCols; ++c) store(acc + ((i + r) * mp + k + c) * kLanes, sum[r][c]);
}

template <typename T>
void accumulate_outer(T* acc, const T* a, const T* a2, const T* b, const T* b2, const uint8_t* live, int64_t blocks,
                      int64_t n, int64_t mp) {
    for (int64_t k = 0; k < mp; k += kCols) {
        int64_t i = 0;
        for (; i + kRows <= n; i += kRows) accumulate_tile<T, kRows>(acc, a, a2, b, b2, live, blocks, n, mp, i, k);
        for (; i < n; ++i) accumulate_tile<T, 1>(acc, a, a2, b, b2, live, blocks, n, mp, i, k);
    }
}

// Decoder rows i .. i+R of one block: pre = b + W_out h, then the output, the loss and d (= d loss / d pre).
template <typename T, int64_t R>
void decode_rows(int64_t i, int64_t m, int64_t mp, const T* Wdp, const T* b, const T* importance, const T* xt,
                 const T* h, const Lanes<T>& valid, T scale, bool output_relu, bool signed_inputs, Lanes<T>& loss, T* d,
                 uint8_t* d_live) {
    Lanes<T> pre[R];
    for (int64_t r = 0; r < R; ++r) pre[r] = Lanes<T>{} + b[i + r];
    for (int64_t k = 0; k < m; ++k) {
        const Lanes<T> hk = load(h + k * kLanes);
        for (int64_t r = 0; r < R; ++r) pre[r] += Wdp[(i + r) * mp + k] * hk;
    }
    const Lanes<T> zero = {};
    for (int64_t r = 0; r < R; ++r) {
        const Lanes<T> output = output_relu ? (pre[r] > zero ? pre[r] : zero) : pre[r];
        const Lanes<T> input = load(xt + (i + r) * kLanes);
        const Lanes<T> target = signed_inputs ? (input < zero ? -input : input) : input;
        const Lanes<T> diff = output - target;
        // valid is 0 in lanes past the batch's end: they add nothing to the loss or the gradients.
        const Lanes<T> weighted = importance[i + r] * diff * valid;
        loss += weighted * diff;
        const Lanes<T> dr = scale * weighted;
        const Lanes<T> masked = output_relu ? (pre[r] > zero ? dr : zero) : dr;
        store(d + (i + r) * kLanes, masked);
        d_live[i + r] = any_nonzero<T>(masked);
    }
}

}  // namespace

template <typename T>
void toy_workspace_prepare(ToyWorkspace<T>& ws, int64_t n, int64_t m) {
    const int64_t mp = round_up(m, kCols);
    for (auto* v : {&ws.Wp, &ws.Wop}) v->resize(n * mp);
    for (auto* v : {&ws.gW, &ws.gW_out}) v->resize(n * mp * kLanes);
    ws.gb.resize(n * kLanes);
    for (auto* v : {&ws.x, &ws.d}) v->resize(kChunk * n * kLanes);
    for (auto* v : {&ws.h, &ws.g}) v->resize(kChunk * mp * kLanes);
    for (auto* v : {&ws.x_live, &ws.d_live}) v->resize(kChunk * n);
    for (auto* v : {&ws.x_rows, &ws.d_rows}) v->resize(n);
}

template <typename T>
ToyLoss toy_loss_and_grad_blocked(int32_t model, int64_t n, int64_t m, int64_t batch, ToyParams<T> p,
                                  const T* importance, T l1, const T* x, ToyGrads<T> grads, ToyWorkspace<T>& ws) {
    const bool hidden_relu = toy_hidden_relu(model), output_relu = toy_output_relu(model);
    const bool signed_inputs = toy_signed_inputs(model), untied = toy_untied(model);
    const bool gradients = grads.W != nullptr;
    const int64_t mp = round_up(m, kCols);
    toy_workspace_prepare(ws, n, m);  // no allocation when already sized
    // W (and W_out) with rows padded to mp; padded hidden units have zero weights, so zero activations.
    T* Wp = ws.Wp.data();
    T* Wdp = untied ? ws.Wop.data() : Wp;  // the decoder's weights
    for (auto* v : {&ws.Wp, &ws.Wop, &ws.gW, &ws.gW_out, &ws.gb}) std::fill(v->begin(), v->end(), T(0));
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < m; ++k) {
            Wp[i * mp + k] = p.W[i * m + k];
            if (untied) Wdp[i * mp + k] = p.W_out[i * m + k];
        }
    // Tied models collect both gradient terms in gW.
    T* gW = ws.gW.data();
    T* gWo = untied ? ws.gW_out.data() : gW;
    T* gb = ws.gb.data();
    const T scale = T(2) / (static_cast<T>(batch) * static_cast<T>(n));
    const T l1_scale = l1 / static_cast<T>(batch);
    const Lanes<T> zero = {}, one = zero + T(1);
    double task = 0.0, l1_norm = 0.0;

    const int64_t blocks = (batch + kLanes - 1) / kLanes;
    for (int64_t chunk0 = 0; chunk0 < blocks; chunk0 += kChunk) {
        const int64_t chunk_blocks = std::min(kChunk, blocks - chunk0);
        for (int64_t cb = 0; cb < chunk_blocks; ++cb) {
            const int64_t t0 = (chunk0 + cb) * kLanes, rows = std::min(kLanes, batch - t0);
            T* xt = ws.x.data() + cb * n * kLanes;
            T* d = ws.d.data() + cb * n * kLanes;
            T* h = ws.h.data() + cb * mp * kLanes;
            T* g = ws.g.data() + cb * mp * kLanes;
            uint8_t* x_live = ws.x_live.data() + cb * n;
            uint8_t* d_live = ws.d_live.data() + cb * n;
            Lanes<T> valid = one;
            for (int64_t l = rows; l < kLanes; ++l) valid[l] = T(0);

            transpose_block(x + t0 * n, rows, n, xt);
            int32_t x_count = 0;
            for (int64_t i = 0; i < n; ++i) {
                x_live[i] = any_nonzero<T>(load(xt + i * kLanes));
                if (x_live[i]) ws.x_rows[x_count++] = static_cast<int32_t>(i);
            }
            // a = W^T x over the rows some sample of the block uses; then h, and the penalty's |h|.
            rows_times_W(xt, ws.x_rows.data(), x_count, Wp, mp, h);
            Lanes<T> block_l1 = zero;
            for (int64_t k = 0; k < m; ++k) {
                Lanes<T> hk = load(h + k * kLanes);
                if (hidden_relu) hk = hk > zero ? hk : zero;
                store(h + k * kLanes, hk);
                block_l1 += hk < zero ? -hk : hk;
            }
            l1_norm += static_cast<double>(lane_sum<T>(block_l1));
            // x' and d, kRows decoder rows at a time.
            Lanes<T> block_loss = zero;
            int64_t i = 0;
            for (; i + kRows <= n; i += kRows)
                decode_rows<T, kRows>(i, m, mp, Wdp, p.b, importance, xt, h, valid, scale, output_relu, signed_inputs,
                                      block_loss, d, d_live);
            for (; i < n; ++i)
                decode_rows<T, 1>(i, m, mp, Wdp, p.b, importance, xt, h, valid, scale, output_relu, signed_inputs,
                                  block_loss, d, d_live);
            task += static_cast<double>(lane_sum<T>(block_loss));
            if (!gradients) continue;
            // g = d loss / d a: W_out^T d over the rows with some nonzero d, plus the penalty's subgradient,
            // through the hidden ReLU.
            int32_t d_count = 0;
            for (int64_t r = 0; r < n; ++r) {
                if (d_live[r]) ws.d_rows[d_count++] = static_cast<int32_t>(r);
                store(gb + r * kLanes, load(gb + r * kLanes) + load(d + r * kLanes));
            }
            rows_times_W(d, ws.d_rows.data(), d_count, Wdp, mp, g);
            for (int64_t k = 0; k < m; ++k) {
                const Lanes<T> hk = load(h + k * kLanes);
                const Lanes<T> sign = (hk > zero ? one : zero) - (hk < zero ? one : zero);
                Lanes<T> gk = load(g + k * kLanes) + l1_scale * sign;
                if (hidden_relu) gk = hk > zero ? gk : zero;
                store(g + k * kLanes, gk);
            }
        }
        // Weight gradients of the chunk: gW_out[i][k] += d_i h_k (decoding), gW[i][k] += x_i g_k (encoding).
        // Tied models add both to gW in one pass.
        if (!gradients) continue;
        if (untied) {
            accumulate_outer<T>(gW, ws.x.data(), nullptr, ws.g.data(), nullptr, ws.x_live.data(), chunk_blocks, n, mp);
            accumulate_outer<T>(gWo, ws.d.data(), nullptr, ws.h.data(), nullptr, ws.d_live.data(), chunk_blocks, n,
                                mp);
        } else {
            // A block's row is skipped only when both its x and its d are zero.
            for (int64_t e = 0; e < chunk_blocks * n; ++e) ws.x_live[e] |= ws.d_live[e];
            accumulate_outer<T>(gW, ws.x.data(), ws.d.data(), ws.g.data(), ws.h.data(), ws.x_live.data(), chunk_blocks,
                                n, mp);
        }
    }
    for (int64_t i = 0; gradients && i < n; ++i) {
        grads.b[i] = lane_sum<T>(load(gb + i * kLanes));
        for (int64_t k = 0; k < m; ++k) {
            grads.W[i * m + k] = lane_sum<T>(load(gW + (i * mp + k) * kLanes));
            if (untied) grads.W_out[i * m + k] = lane_sum<T>(load(gWo + (i * mp + k) * kLanes));
        }
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
