// The CPU backend's MoE kernel: moe_loss_and_grad (the per-token reference in moe_cpu.cpp) reorganised so that the
// experts' products are full-width vector FMAs, with every sum kept in the reference's order, so the results are
// the reference's to the bit (for finite values; a test compares them after training).
//
// Which order is kept where:
//  - Per token, sums over features or hidden units (the router's logits, a = W_e^T x, pre = b + W_e h, the gate
//    gradient, the hidden gradient) run in the lanes of a vector, one token per lane (cpu/lanes.h): the tokens
//    routed to one expert are grouped, in token order, into blocks of kLanes, and each lane does its own token's
//    chain in the reference's order. Adding a product whose input is zero, which the reference skips, adds an
//    exact zero to a sum that is never -0, so skipping it or not gives the same bits.
//  - Per parameter, sums over tokens (every weight gradient) keep token order: each token's contribution is
//    added to a row of the gradient, vectorised over features instead (the gradients are kept transposed, [m][n]
//    and [E][n], while the batch runs).
//  - The softmax, top-k, capacity and the router's backward are scalar per token, written as the reference
//    writes them (the same expressions, so the compiler contracts the same products into FMAs).
#include <algorithm>
#include <cmath>

#include "cpu/lanes.h"
#include "models/moe.h"
#include "models/moe_common.h"

namespace ne {
namespace {

using namespace lanes;

// acc[c] += v[i] * W[i][c0 + c] for c < C, summed over the rows i in order: one token per lane, a broadcast
// weight times a vector of tokens. Rows zero in every lane are skipped (an exact zero added to a sum that is never
// -0 changes nothing). C is known at compile time, so the sums stay in registers. v: [rows][kLanes], W: [rows]
// [stride], acc: [..][kLanes].
template <int C, typename T>
inline void accumulate_columns(const T* v, int64_t rows, const T* W, int64_t stride, int64_t c0, T* acc) {
    Lanes<T> sum[C];
    for (int c = 0; c < C; ++c) sum[c] = load(acc + (c0 + c) * kLanes);
    for (int64_t i = 0; i < rows; ++i) {
        const Lanes<T> vi = load(v + i * kLanes);
        if (!any_nonzero<T>(vi)) continue;
        const T* w = W + i * stride + c0;
        for (int c = 0; c < C; ++c) sum[c] += vi * w[c];
    }
    for (int c = 0; c < C; ++c) store(acc + (c0 + c) * kLanes, sum[c]);
}

// The same for every column of W [rows][cols], eight, four, two and one at a time.
template <typename T>
void accumulate_all_columns(const T* v, int64_t rows, const T* W, int64_t cols, T* acc) {
    int64_t c0 = 0;
    for (; c0 + 8 <= cols; c0 += 8) accumulate_columns<8>(v, rows, W, cols, c0, acc);
    if (c0 + 4 <= cols) accumulate_columns<4>(v, rows, W, cols, c0, acc), c0 += 4;
    if (c0 + 2 <= cols) accumulate_columns<2>(v, rows, W, cols, c0, acc), c0 += 2;
    if (c0 < cols) accumulate_columns<1>(v, rows, W, cols, c0, acc);
}

// Row c of G, for C rows c0 .. c0+C in registers, += A[l] * S[l][c] (then A2[l] * S2[l][c]) for l = 0 .. count-1
// in order: one vector of features of a weight gradient, summed over tokens in token order. A, A2: [count]
// [kLanes]; S, S2 at l * s_token + c * s_col; G rows g_stride apart.
template <int C, bool Second, typename T>
inline void accumulate_tokens(T* G, int64_t g_stride, int64_t c0, const T* A, const T* A2, const T* S, const T* S2,
                              int64_t s_token, int64_t s_col, int64_t count) {
    Lanes<T> acc[C];
    for (int c = 0; c < C; ++c) acc[c] = load(G + (c0 + c) * g_stride);
    for (int64_t l = 0; l < count; ++l) {
        const Lanes<T> a = load(A + l * kLanes);
        for (int c = 0; c < C; ++c) acc[c] += a * S[l * s_token + (c0 + c) * s_col];
        if constexpr (Second) {
            const Lanes<T> a2 = load(A2 + l * kLanes);
            for (int c = 0; c < C; ++c) acc[c] += a2 * S2[l * s_token + (c0 + c) * s_col];
        }
    }
    for (int c = 0; c < C; ++c) store(G + (c0 + c) * g_stride, acc[c]);
}

// The same for every row c < rows of G, eight, four, two and one at a time.
template <bool Second, typename T>
void accumulate_all_tokens(T* G, int64_t g_stride, int64_t rows, const T* A, const T* A2, const T* S, const T* S2,
                           int64_t s_token, int64_t s_col, int64_t count) {
    int64_t c0 = 0;
    for (; c0 + 8 <= rows; c0 += 8) accumulate_tokens<8, Second>(G, g_stride, c0, A, A2, S, S2, s_token, s_col, count);
    if (c0 + 4 <= rows)
        accumulate_tokens<4, Second>(G, g_stride, c0, A, A2, S, S2, s_token, s_col, count), c0 += 4;
    if (c0 + 2 <= rows)
        accumulate_tokens<2, Second>(G, g_stride, c0, A, A2, S, S2, s_token, s_col, count), c0 += 2;
    if (c0 < rows) accumulate_tokens<1, Second>(G, g_stride, c0, A, A2, S, S2, s_token, s_col, count);
}

// out[i] = relu(b[i] + sum_j W[i][j] h[j]) for rows i .. i+R, the sum over j in order; R independent chains.
template <int R, typename T>
inline void decode_rows(int64_t i, int64_t m, const T* W, const T* b, const T* h, T* out) {
    const Lanes<T> zero = {};
    Lanes<T> pre[R];
    for (int r = 0; r < R; ++r) pre[r] = zero + b[i + r];
    for (int64_t j = 0; j < m; ++j) {
        const Lanes<T> hj = load(h + j * kLanes);
        for (int r = 0; r < R; ++r) pre[r] += W[(i + r) * m + j] * hj;
    }
    for (int r = 0; r < R; ++r) store(out + (i + r) * kLanes, pre[r] > zero ? pre[r] : zero);
}

template <typename T>
void prepare(MoeWorkspace<T>& w, int64_t B, int64_t n, int64_t np, int64_t m, int64_t E, int64_t K) {
    const int64_t slots = B * K, blocks = (slots + kLanes - 1) / kLanes + E;
    for (auto* v : {&w.x, &w.xr, &w.d_rows}) v->resize(B * np);
    const int64_t padded = round_up(B, kLanes);
    for (auto* v : {&w.z, &w.sp, &w.H, &w.prob}) v->resize(padded * E);
    for (auto* v : {&w.lse, &w.chosen_sum}) v->resize(padded);
    w.prob_rows.resize(B * E);
    w.router_rows.resize(E);
    for (auto* v : {&w.dH_rows, &w.dS_rows}) v->resize(B * E);
    w.token_vectors.resize(2 * kLanes * kLanes);
    for (auto* v : {&w.gate, &w.dgate}) v->resize(slots);
    w.chosen.resize(slots);
    w.kept.resize(slots);
    w.lane_of_slot.resize(slots);
    w.block_slots.resize(blocks * kLanes);
    w.block_tokens.resize(blocks * kLanes);
    w.block_expert.resize(blocks);
    for (auto* v : {&w.a, &w.h, &w.gh}) v->resize(blocks * m * kLanes);
    w.out.resize(blocks * n * kLanes);
    w.out_rows.resize(slots * np);
    w.gW.resize(E * m * np);
    for (auto* v : {&w.gb, &w.gW_gate, &w.gW_noise}) v->resize(E * np);
    for (auto* v : {&w.importance, &w.rows_tmp}) v->resize(np);
    for (auto* v : {&w.lanes_x, &w.lanes_d}) v->resize(n * kLanes);
    for (auto* v : {&w.taken, &w.first_block, &w.cursor}) v->resize(E + 1);
    w.picked.resize(E);
}

}  // namespace

template <typename T>
MoeBatch moe_loss_and_grad_grouped(const MoeSpec& s, MoeParams<T> p, const T* importance, T l1, const T* x,
                                   const T* normal, const T* jitter, MoeGrads<T>* g, MoeWorkspace<T>& w, T* output,
                                   bool losses) {
    const int64_t n = s.n, m = s.m, E = s.experts, K = s.top_k, B = s.batch;
    const int64_t np = round_up(n, kLanes), vectors = np / kLanes;
    const bool hidden_relu = toy_hidden_relu(s.expert_model);
    const bool noisy = normal != nullptr, jittered = jitter != nullptr;
    prepare(w, B, n, np, m, E, K);
    const Lanes<T> zero = {}, one = zero + T(1);
    std::fill(w.chosen_sum.begin(), w.chosen_sum.end(), T(1));  // lanes past the batch divide by 1
    MoeBatch result;
    result.load.assign(E, 0);

    // Inputs as rows padded with zeros: the experts' x and the router's xr.
    for (int64_t t = 0; t < B; ++t) {
        const T* xt = x + t * n;
        T* xp = w.x.data() + t * np;
        T* xrp = w.xr.data() + t * np;
        std::copy(xt, xt + n, xp);
        std::fill(xp + n, xp + np, T(0));
        if (jittered)
            for (int64_t i = 0; i < n; ++i) xrp[i] = xt[i] * jitter[t * n + i];
        else
            std::copy(xt, xt + n, xrp);
        std::fill(xrp + n, xrp + np, T(0));
    }
    for (int64_t i = 0; i < np; ++i) w.importance[i] = i < n ? importance[i] : T(0);

    // Routing, kLanes tokens at a time in natural order, each lane doing its own token's arithmetic as the
    // reference does: logits over the nonzero inputs in input order, H, the softmax and lse. The router's values
    // live in blocks [B / kLanes][E][kLanes]; exp, log, softplus run per lane (the reference's scalar calls).
    auto at = [&](int64_t t, int64_t e) { return t / kLanes * E * kLanes + e * kLanes + t % kLanes; };
    for (int64_t t0 = 0; t0 < B; t0 += kLanes) {
        const int64_t count = std::min(kLanes, B - t0);
        const T* rows[kLanes];
        for (int64_t l = 0; l < kLanes; ++l) rows[l] = w.xr.data() + (t0 + std::min(l, count - 1)) * np;
        T* xt = w.lanes_x.data();
        transpose_rows(rows, count, n, xt);
        T* zb = w.z.data() + at(t0, 0);
        T* spb = w.sp.data() + at(t0, 0);
        T* Hb = w.H.data() + at(t0, 0);
        T* pb = w.prob.data() + at(t0, 0);
        std::fill(zb, zb + E * kLanes, T(0));
        accumulate_all_columns(xt, n, p.W_gate, E, zb);
        if (noisy) {
            std::fill(spb, spb + E * kLanes, T(0));
            accumulate_all_columns(xt, n, p.W_noise, E, spb);
        }
        for (int64_t e = 0; e < E; ++e) {
            Lanes<T> He = load(zb + e * kLanes);
            if (noisy) {
                Lanes<T> softplus = zero, noise = zero;
                for (int64_t l = 0; l < count; ++l) {
                    softplus[l] = moe_softplus(spb[e * kLanes + l]);
                    noise[l] = normal[(t0 + l) * E + e];
                }
                He = He + noise * softplus;
            }
            store(Hb + e * kLanes, He);
        }
        // std::max_element's maximum: the first of equal ones.
        Lanes<T> top = load(Hb);
        for (int64_t e = 1; e < E; ++e) {
            const Lanes<T> He = load(Hb + e * kLanes);
            top = top < He ? He : top;
        }
        Lanes<T> sum = zero;
        for (int64_t e = 0; e < E; ++e) {
            Lanes<T> pe = load(Hb + e * kLanes) - top;
            for (int64_t l = 0; l < kLanes; ++l) pe[l] = std::exp(pe[l]);
            store(pb + e * kLanes, pe);
            sum += pe;
        }
        for (int64_t e = 0; e < E; ++e) {
            const Lanes<T> pe = load(pb + e * kLanes) / sum;
            store(pb + e * kLanes, pe);
            for (int64_t l = 0; l < count; ++l) w.prob_rows[(t0 + l) * E + e] = pe[l];
        }
        Lanes<T> log_sum;
        for (int64_t l = 0; l < kLanes; ++l) log_sum[l] = std::log(sum[l]);
        store(w.lse.data() + t0, top + log_sum);
    }

    // Routing, per token in token order: top-k of H + route_bias (ties to the lower index), capacity, gates.
    const int64_t capacity = moe_capacity(s.capacity_factor, B, K, E);
    std::fill(w.taken.begin(), w.taken.end(), 0);
    for (int64_t t = 0; t < B; ++t) {
        const T* Ht = w.H.data() + at(t, 0);
        const T* probt = w.prob.data() + at(t, 0);
        std::fill(w.picked.begin(), w.picked.end(), 0);
        for (int64_t r = 0; r < K; ++r) {
            int64_t e = -1;
            for (int64_t c = 0; c < E; ++c)
                if (!w.picked[c] &&
                    (e < 0 || Ht[c * kLanes] + p.route_bias[c] > Ht[e * kLanes] + p.route_bias[e]))
                    e = c;
            w.picked[e] = 1;
            w.chosen[t * K + r] = e;
            result.load[e] += 1;
            w.kept[t * K + r] = w.taken[e] < capacity;
            if (w.kept[t * K + r]) w.taken[e] += 1;
            else result.dropped += 1;
        }
        T chosen_sum = T(0);
        for (int64_t r = 0; r < K; ++r) chosen_sum += probt[w.chosen[t * K + r] * kLanes];
        w.chosen_sum[t] = chosen_sum;
        for (int64_t r = 0; r < K; ++r) {
            const T pr = probt[w.chosen[t * K + r] * kLanes];
            w.gate[t * K + r] = s.renormalize ? pr / chosen_sum : pr;
        }
    }

    // Auxiliary losses, as the reference (their gradients need only f).
    std::vector<T> f(E);
    for (int64_t e = 0; e < E; ++e) f[e] = static_cast<T>(result.load[e]) / static_cast<T>(B * K);
    if (losses) {
        std::vector<T> P(E, T(0));
        for (int64_t t = 0; t < B; ++t)
            for (int64_t e = 0; e < E; ++e) P[e] += w.prob[at(t, e)] / static_cast<T>(B);
        double balance = 0, zsum = 0;
        for (int64_t e = 0; e < E; ++e) balance += static_cast<double>(f[e] * P[e]);
        for (int64_t t = 0; t < B; ++t) zsum += static_cast<double>(w.lse[t] * w.lse[t]);
        result.balance = static_cast<double>(s.load_balance) * static_cast<double>(E) * balance;
        result.z = static_cast<double>(s.z_loss) * zsum / static_cast<double>(B);
    }

    // Group the kept slots by expert, in token order, into blocks of kLanes.
    int64_t* first_block = w.first_block.data();
    std::fill(w.taken.begin(), w.taken.end(), 0);  // now: kept slots per expert
    for (int64_t slot = 0; slot < B * K; ++slot)
        if (w.kept[slot]) w.taken[w.chosen[slot]] += 1;
    first_block[0] = 0;
    for (int64_t e = 0; e < E; ++e) first_block[e + 1] = first_block[e] + (w.taken[e] + kLanes - 1) / kLanes;
    const int64_t blocks = first_block[E];
    std::fill(w.block_slots.begin(), w.block_slots.begin() + blocks * kLanes, -1);
    for (int64_t e = 0; e < E; ++e)
        for (int64_t b = first_block[e]; b < first_block[e + 1]; ++b) w.block_expert[b] = static_cast<int32_t>(e);
    std::fill(w.cursor.begin(), w.cursor.end(), 0);
    for (int64_t slot = 0; slot < B * K; ++slot) {
        if (!w.kept[slot]) {
            w.lane_of_slot[slot] = -1;
            continue;
        }
        const int64_t e = w.chosen[slot], position = w.cursor[e]++;
        const int64_t lane = (first_block[e] + position / kLanes) * kLanes + position % kLanes;
        w.block_slots[lane] = static_cast<int32_t>(slot);
        w.block_tokens[lane] = static_cast<int32_t>(slot / K);
        w.lane_of_slot[slot] = static_cast<int32_t>(lane);
    }
    auto block_count = [&](int64_t b) {
        int64_t count = 0;
        while (count < kLanes && w.block_slots[b * kLanes + count] >= 0) ++count;
        return count;
    };

    // Experts, forward: per block of one expert's tokens, a = W_e^T x, h, pre = b_e + W_e h, out = relu(pre).
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t e = w.block_expert[b], count = block_count(b);
        const int32_t* block = w.block_slots.data() + b * kLanes;
        const T* We = p.W + e * n * m;
        const T* be = p.b + e * n;
        const T* rows[kLanes];
        for (int64_t l = 0; l < kLanes; ++l) rows[l] = w.x.data() + w.block_tokens[b * kLanes + std::min(l, count - 1)] * np;
        T* xt = w.lanes_x.data();
        transpose_rows(rows, count, n, xt);
        T* ab = w.a.data() + b * m * kLanes;
        T* hb = w.h.data() + b * m * kLanes;
        T* ob = w.out.data() + b * n * kLanes;
        std::fill(ab, ab + m * kLanes, T(0));
        accumulate_all_columns(xt, n, We, m, ab);
        for (int64_t j = 0; j < m; ++j) {
            const Lanes<T> aj = load(ab + j * kLanes);
            store(hb + j * kLanes, hidden_relu ? (aj < zero ? zero : aj) : aj);
        }
        int64_t i = 0;
        for (; i + 4 <= n; i += 4) decode_rows<4>(i, m, We, be, hb, ob);
        for (; i < n; ++i) decode_rows<1>(i, m, We, be, hb, ob);
        T* out_rows[kLanes];
        for (int64_t l = 0; l < count; ++l) out_rows[l] = w.out_rows.data() + block[l] * np;
        transpose_to_rows(ob, count, n, out_rows);
    }

    // Per token: combine the kept experts in rank order, the loss and d = d loss / d y.
    const T scale = T(2) / (static_cast<T>(B) * static_cast<T>(n));
    const T l1_scale = l1 / static_cast<T>(B);
    double task = 0, l1_norm = 0;
    for (int64_t t = 0; t < B; ++t) {
        const T* xp = w.x.data() + t * np;
        T* dt = w.d_rows.data() + t * np;
        for (int64_t v = 0; v < vectors; ++v) {
            Lanes<T> y = zero;
            for (int64_t r = 0; r < K; ++r)
                if (w.kept[t * K + r]) y += w.gate[t * K + r] * load(w.out_rows.data() + (t * K + r) * np + v * kLanes);
            const Lanes<T> diff = y - load(xp + v * kLanes);
            store(dt + v * kLanes, scale * load(w.importance.data() + v * kLanes) * diff);
            if (losses) store(w.rows_tmp.data() + v * kLanes, diff);
            if (output != nullptr)
                for (int64_t l = 0; l < kLanes && v * kLanes + l < n; ++l) output[t * n + v * kLanes + l] = y[l];
        }
        if (!losses) continue;
        for (int64_t i = 0; i < n; ++i) {
            const T diff = w.rows_tmp[i];
            task += static_cast<double>(importance[i] * diff * diff);
        }
        for (int64_t r = 0; r < K; ++r) {
            const int64_t lane = w.lane_of_slot[t * K + r];
            if (lane < 0) continue;
            const T* hb = w.h.data() + lane / kLanes * m * kLanes + lane % kLanes;
            for (int64_t j = 0; j < m; ++j) l1_norm += static_cast<double>(std::abs(hb[j * kLanes]));
        }
    }
    if (losses) {
        result.task = task / (static_cast<double>(B) * static_cast<double>(n));
        result.l1 = static_cast<double>(l1) * l1_norm / static_cast<double>(B);
    }
    if (g == nullptr) return result;

    // Experts, backward: per block, the gate gradient <d, out>, dpre, the hidden gradient; then, token by token,
    // the weight gradients' rows.
    std::fill(w.gW.begin(), w.gW.end(), T(0));
    std::fill(w.gb.begin(), w.gb.end(), T(0));
    std::fill(w.dgate.begin(), w.dgate.end(), T(0));
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t e = w.block_expert[b], count = block_count(b);
        const int32_t* block = w.block_slots.data() + b * kLanes;
        const T* We = p.W + e * n * m;
        const T* rows[kLanes];
        for (int64_t l = 0; l < kLanes; ++l)
            rows[l] = w.d_rows.data() + w.block_tokens[b * kLanes + std::min(l, count - 1)] * np;
        T* dt = w.lanes_x.data();
        transpose_rows(rows, count, n, dt);
        const T* ab = w.a.data() + b * m * kLanes;
        const T* hb = w.h.data() + b * m * kLanes;
        const T* ob = w.out.data() + b * n * kLanes;
        T* ghb = w.gh.data() + b * m * kLanes;
        T* dpre = w.lanes_d.data();
        Lanes<T> gate = zero, dgate = zero;
        for (int64_t l = 0; l < count; ++l) gate[l] = w.gate[block[l]];
        for (int64_t i = 0; i < n; ++i) {
            const Lanes<T> di = load(dt + i * kLanes), oi = load(ob + i * kLanes);
            dgate += di * oi;
            store(dpre + i * kLanes, oi > zero ? gate * di : zero);
        }
        for (int64_t l = 0; l < count; ++l) w.dgate[block[l]] = dgate[l];
        for (int64_t j = 0; j < m; ++j) {
            const Lanes<T> hj = load(hb + j * kLanes);
            store(ghb + j * kLanes, l1_scale * ((hj > zero ? one : zero) - (hj < zero ? one : zero)));
        }
        accumulate_all_columns(dpre, n, We, m, ghb);
        if (hidden_relu)
            for (int64_t j = 0; j < m; ++j) {
                const Lanes<T> aj = load(ab + j * kLanes);
                store(ghb + j * kLanes, aj > zero ? load(ghb + j * kLanes) : zero);
            }
        // Weight gradients in token order: per token, the decoder's term d_pre h^T, then the encoder's x gh^T,
        // one vector of features at a time with the gradient's rows in registers across the block's tokens.
        T* gWe = w.gW.data() + e * m * np;
        T* gbe = w.gb.data() + e * np;
        T* dps = w.token_vectors.data();            // [kLanes][kLanes] d_pre of each token
        T* xs = dps + kLanes * kLanes;              // [kLanes][kLanes] x of each token
        for (int64_t v = 0; v < vectors; ++v) {
            Lanes<T> gb = load(gbe + v * kLanes);
            for (int64_t l = 0; l < count; ++l) {
                const int64_t slot = block[l], t = w.block_tokens[b * kLanes + l];
                const Lanes<T> o = load(w.out_rows.data() + slot * np + v * kLanes);
                const Lanes<T> dv = load(w.d_rows.data() + t * np + v * kLanes);
                const Lanes<T> dp = o > zero ? w.gate[slot] * dv : zero;
                gb += dp;
                store(dps + l * kLanes, dp);
                store(xs + l * kLanes, load(w.x.data() + t * np + v * kLanes));
            }
            store(gbe + v * kLanes, gb);
            accumulate_all_tokens<true>(gWe + v * kLanes, np, m, dps, xs, hb, ghb, 1, kLanes, count);
        }
    }

    // Router, backward, per token in token order, written as the reference's loops over experts are: those are
    // sums the compiler may vectorise (the vector part's products then rounded before an in-order add, the
    // remainder's contracted into FMAs), so the same loops over the same contiguous rows give the same bits where
    // one token per lane would not. Then W_gate's (and W_noise's) rows, transposed.
    std::fill(w.gW_gate.begin(), w.gW_gate.end(), T(0));
    std::fill(w.gW_noise.begin(), w.gW_noise.end(), T(0));
    T* dprob = w.router_rows.data();  // [E] one token's d loss / d prob
    const T alpha_scale = static_cast<T>(s.load_balance) * static_cast<T>(E) / static_cast<T>(B);
    for (int64_t t0 = 0; t0 < B; t0 += kLanes) {
        const int64_t count = std::min(kLanes, B - t0);
        for (int64_t t = t0; t < t0 + count; ++t) {
            T* dH = w.dH_rows.data() + t * E;
            T* dS = w.dS_rows.data() + t * E;
            const T* probt = w.prob_rows.data() + t * E;
            const T* gate = w.gate.data() + t * K;
            const T* dgate = w.dgate.data() + t * K;
            const int64_t* chosen = w.chosen.data() + t * K;
            const T chosen_sum = w.chosen_sum[t];
            std::fill(dprob, dprob + E, T(0));
            if (s.renormalize) {
                T weighted = T(0);
                for (int64_t r = 0; r < K; ++r) weighted += dgate[r] * gate[r];
                for (int64_t r = 0; r < K; ++r) dprob[chosen[r]] += (dgate[r] - weighted) / chosen_sum;
            } else {
                for (int64_t r = 0; r < K; ++r) dprob[chosen[r]] += dgate[r];
            }
            for (int64_t e = 0; e < E; ++e) dprob[e] += alpha_scale * f[e];
            T dot = T(0);
            for (int64_t e = 0; e < E; ++e) dot += probt[e] * dprob[e];
            const T z_scale = T(2) * static_cast<T>(s.z_loss) * w.lse[t] / static_cast<T>(B);
            for (int64_t e = 0; e < E; ++e) {
                dH[e] = probt[e] * (dprob[e] - dot) + z_scale * probt[e];
                dS[e] = noisy ? dH[e] * normal[t * E + e] * moe_sigmoid(w.sp[at(t, e)]) : T(0);
            }
        }
        // W_gate[i][e] += xr_i dH_e (W_noise: dS_e), token by token.
        T* xs = w.token_vectors.data();
        for (int64_t v = 0; v < vectors; ++v) {
            for (int64_t l = 0; l < count; ++l) store(xs + l * kLanes, load(w.xr.data() + (t0 + l) * np + v * kLanes));
            accumulate_all_tokens<false>(w.gW_gate.data() + v * kLanes, np, E, xs, xs, w.dH_rows.data() + t0 * E,
                                         w.dH_rows.data(), E, 1, count);
            if (noisy)
                accumulate_all_tokens<false>(w.gW_noise.data() + v * kLanes, np, E, xs, xs, w.dS_rows.data() + t0 * E,
                                             w.dS_rows.data(), E, 1, count);
        }
    }

    // Back to the reference's layouts.
    for (int64_t e = 0; e < E; ++e)
        for (int64_t i = 0; i < n; ++i) {
            for (int64_t j = 0; j < m; ++j) g->W[(e * n + i) * m + j] = w.gW[(e * m + j) * np + i];
            g->b[e * n + i] = w.gb[e * np + i];
            g->W_gate[i * E + e] = w.gW_gate[e * np + i];
            g->W_noise[i * E + e] = w.gW_noise[e * np + i];
        }
    return result;
}

template MoeBatch moe_loss_and_grad_grouped<float>(const MoeSpec&, MoeParams<float>, const float*, float,
                                                   const float*, const float*, const float*, MoeGrads<float>*,
                                                   MoeWorkspace<float>&, float*, bool);
template MoeBatch moe_loss_and_grad_grouped<double>(const MoeSpec&, MoeParams<double>, const double*, double,
                                                    const double*, const double*, const double*, MoeGrads<double>*,
                                                    MoeWorkspace<double>&, double*, bool);

}  // namespace ne
