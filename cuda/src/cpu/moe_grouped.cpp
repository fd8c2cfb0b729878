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

constexpr int64_t kTile = 8;  // experts (router) or hidden units (experts) accumulated in registers at once

template <typename T>
void prepare(MoeWorkspace<T>& w, int64_t B, int64_t n, int64_t np, int64_t m, int64_t E, int64_t K) {
    const int64_t slots = B * K, blocks = (slots + kLanes - 1) / kLanes + E;
    for (auto* v : {&w.x, &w.xr, &w.d_rows}) v->resize(B * np);
    for (auto* v : {&w.z, &w.sp, &w.prob}) v->resize(B * E);
    for (auto* v : {&w.lse, &w.chosen_sum}) v->resize(B);
    for (auto* v : {&w.gate, &w.dgate}) v->resize(slots);
    w.chosen.resize(slots);
    w.kept.resize(slots);
    w.lane_of_slot.resize(slots);
    w.block_slots.resize(blocks * kLanes);
    w.block_expert.resize(blocks);
    for (auto* v : {&w.a, &w.h, &w.gh}) v->resize(blocks * m * kLanes);
    w.out.resize(blocks * n * kLanes);
    w.out_rows.resize(slots * np);
    w.gW.resize(E * m * np);
    for (auto* v : {&w.gb, &w.gW_gate, &w.gW_noise}) v->resize(E * np);
    for (auto* v : {&w.importance, &w.rows_tmp}) v->resize(np);
    for (auto* v : {&w.lanes_x, &w.lanes_d}) v->resize(n * kLanes);
    w.per_expert.resize(4 * E);
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
    MoeBatch result;
    result.load.assign(E, 0);

    // Inputs as rows padded with zeros: the experts' x and the router's xr.
    for (int64_t t = 0; t < B; ++t) {
        const T* xt = x + t * n;
        T* xp = w.x.data() + t * np;
        T* xrp = w.xr.data() + t * np;
        for (int64_t i = 0; i < np; ++i) {
            xp[i] = i < n ? xt[i] : T(0);
            xrp[i] = i < n ? (jittered ? xt[i] * jitter[t * n + i] : xt[i]) : T(0);
        }
    }
    for (int64_t i = 0; i < np; ++i) w.importance[i] = i < n ? importance[i] : T(0);

    // Routing, logits: kLanes tokens at a time, each lane summing its token's nonzero inputs in input order.
    for (int64_t t0 = 0; t0 < B; t0 += kLanes) {
        const int64_t count = std::min(kLanes, B - t0);
        const T* rows[kLanes];
        for (int64_t l = 0; l < kLanes; ++l) rows[l] = w.xr.data() + (t0 + std::min(l, count - 1)) * np;
        T* xt = w.lanes_x.data();
        transpose_rows(rows, count, n, xt);
        for (int64_t e0 = 0; e0 < E; e0 += kTile) {
            const int64_t tile = std::min(kTile, E - e0);
            Lanes<T> zacc[kTile] = {}, sacc[kTile] = {};
            for (int64_t i = 0; i < n; ++i) {
                const Lanes<T> xi = load(xt + i * kLanes);
                if (!any_nonzero<T>(xi)) continue;
                const T* gate_row = p.W_gate + i * E + e0;
                for (int64_t c = 0; c < tile; ++c) zacc[c] += xi * gate_row[c];
                if (noisy) {
                    const T* noise_row = p.W_noise + i * E + e0;
                    for (int64_t c = 0; c < tile; ++c) sacc[c] += xi * noise_row[c];
                }
            }
            for (int64_t c = 0; c < tile; ++c)
                for (int64_t l = 0; l < count; ++l) {
                    w.z[(t0 + l) * E + e0 + c] = zacc[c][l];
                    w.sp[(t0 + l) * E + e0 + c] = sacc[c][l];
                }
        }
    }

    // Routing, per token as the reference: probabilities, top-k of H + route_bias, capacity in token order.
    const int64_t capacity = moe_capacity(s.capacity_factor, B, K, E);
    std::fill(w.taken.begin(), w.taken.end(), 0);
    T* H = w.per_expert.data();
    for (int64_t t = 0; t < B; ++t) {
        const T* zt = w.z.data() + t * E;
        const T* spt = w.sp.data() + t * E;
        for (int64_t e = 0; e < E; ++e) H[e] = noisy ? zt[e] + normal[t * E + e] * moe_softplus(spt[e]) : zt[e];
        const T top = *std::max_element(H, H + E);
        T sum = T(0);
        T* probt = w.prob.data() + t * E;
        for (int64_t e = 0; e < E; ++e) {
            probt[e] = std::exp(H[e] - top);
            sum += probt[e];
        }
        for (int64_t e = 0; e < E; ++e) probt[e] /= sum;
        w.lse[t] = top + std::log(sum);
        std::fill(w.picked.begin(), w.picked.end(), 0);
        for (int64_t r = 0; r < K; ++r) {
            int64_t e = -1;
            for (int64_t c = 0; c < E; ++c)
                if (!w.picked[c] && (e < 0 || H[c] + p.route_bias[c] > H[e] + p.route_bias[e])) e = c;
            w.picked[e] = 1;
            w.chosen[t * K + r] = e;
            result.load[e] += 1;
            w.kept[t * K + r] = w.taken[e] < capacity;
            if (w.kept[t * K + r]) w.taken[e] += 1;
            else result.dropped += 1;
        }
        T chosen_sum = T(0);
        for (int64_t r = 0; r < K; ++r) chosen_sum += probt[w.chosen[t * K + r]];
        w.chosen_sum[t] = chosen_sum;
        for (int64_t r = 0; r < K; ++r)
            w.gate[t * K + r] = s.renormalize ? probt[w.chosen[t * K + r]] / chosen_sum : probt[w.chosen[t * K + r]];
    }

    // Auxiliary losses, as the reference.
    std::vector<T> f(E), P(E, T(0));
    for (int64_t e = 0; e < E; ++e) f[e] = static_cast<T>(result.load[e]) / static_cast<T>(B * K);
    for (int64_t t = 0; t < B; ++t)
        for (int64_t e = 0; e < E; ++e) P[e] += w.prob[t * E + e] / static_cast<T>(B);
    double balance = 0, zsum = 0;
    for (int64_t e = 0; e < E; ++e) balance += static_cast<double>(f[e] * P[e]);
    for (int64_t t = 0; t < B; ++t) zsum += static_cast<double>(w.lse[t] * w.lse[t]);
    result.balance = static_cast<double>(s.load_balance) * static_cast<double>(E) * balance;
    result.z = static_cast<double>(s.z_loss) * zsum / static_cast<double>(B);

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
        for (int64_t l = 0; l < kLanes; ++l) rows[l] = w.x.data() + block[std::min(l, count - 1)] / K * np;
        T* xt = w.lanes_x.data();
        transpose_rows(rows, count, n, xt);
        T* ab = w.a.data() + b * m * kLanes;
        T* hb = w.h.data() + b * m * kLanes;
        T* ob = w.out.data() + b * n * kLanes;
        for (int64_t j0 = 0; j0 < m; j0 += kTile) {
            const int64_t tile = std::min(kTile, m - j0);
            Lanes<T> acc[kTile] = {};
            for (int64_t i = 0; i < n; ++i) {
                const Lanes<T> xi = load(xt + i * kLanes);
                if (!any_nonzero<T>(xi)) continue;
                for (int64_t c = 0; c < tile; ++c) acc[c] += xi * We[i * m + j0 + c];
            }
            for (int64_t c = 0; c < tile; ++c) {
                store(ab + (j0 + c) * kLanes, acc[c]);
                store(hb + (j0 + c) * kLanes, hidden_relu ? (acc[c] < zero ? zero : acc[c]) : acc[c]);
            }
        }
        for (int64_t i = 0; i < n; ++i) {
            Lanes<T> pre = zero + be[i];
            for (int64_t j = 0; j < m; ++j) pre += We[i * m + j] * load(hb + j * kLanes);
            store(ob + i * kLanes, pre > zero ? pre : zero);
        }
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
        for (int64_t l = 0; l < kLanes; ++l) rows[l] = w.d_rows.data() + block[std::min(l, count - 1)] / K * np;
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
        for (int64_t j0 = 0; j0 < m; j0 += kTile) {
            const int64_t tile = std::min(kTile, m - j0);
            Lanes<T> acc[kTile];
            for (int64_t c = 0; c < tile; ++c) {
                const Lanes<T> hj = load(hb + (j0 + c) * kLanes);
                acc[c] = l1_scale * ((hj > zero ? one : zero) - (hj < zero ? one : zero));
            }
            for (int64_t i = 0; i < n; ++i) {
                const Lanes<T> di = load(dpre + i * kLanes);
                if (!any_nonzero<T>(di)) continue;
                for (int64_t c = 0; c < tile; ++c) acc[c] += di * We[i * m + j0 + c];
            }
            for (int64_t c = 0; c < tile; ++c) {
                const Lanes<T> aj = load(ab + (j0 + c) * kLanes);
                store(ghb + (j0 + c) * kLanes, hidden_relu ? (aj > zero ? acc[c] : zero) : acc[c]);
            }
        }
        // Weight gradients in token order: per token, the decoder's term d_pre h^T, then the encoder's x gh^T.
        T* gWe = w.gW.data() + e * m * np;
        T* gbe = w.gb.data() + e * np;
        for (int64_t l = 0; l < count; ++l) {
            const int64_t slot = block[l], t = slot / K;
            const T* orow = w.out_rows.data() + slot * np;
            const T* drow = w.d_rows.data() + t * np;
            const T* xrow = w.x.data() + t * np;
            const T gate_l = w.gate[slot];
            for (int64_t v = 0; v < vectors; ++v) {
                const Lanes<T> o = load(orow + v * kLanes), dv = load(drow + v * kLanes);
                const Lanes<T> dp = o > zero ? gate_l * dv : zero;
                store(gbe + v * kLanes, load(gbe + v * kLanes) + dp);
                for (int64_t j = 0; j < m; ++j) {
                    T* gw = gWe + j * np + v * kLanes;
                    store(gw, load(gw) + dp * hb[j * kLanes + l]);
                }
                const Lanes<T> xv = load(xrow + v * kLanes);
                for (int64_t j = 0; j < m; ++j) {
                    T* gw = gWe + j * np + v * kLanes;
                    store(gw, load(gw) + xv * ghb[j * kLanes + l]);
                }
            }
        }
    }

    // Router, backward, per token in token order as the reference; W_gate's (and W_noise's) rows, transposed.
    std::fill(w.gW_gate.begin(), w.gW_gate.end(), T(0));
    std::fill(w.gW_noise.begin(), w.gW_noise.end(), T(0));
    T* dprob = w.per_expert.data() + E;
    T* dH = w.per_expert.data() + 2 * E;
    T* dS = w.per_expert.data() + 3 * E;
    const T alpha_scale = static_cast<T>(s.load_balance) * static_cast<T>(E) / static_cast<T>(B);
    for (int64_t t = 0; t < B; ++t) {
        const T* probt = w.prob.data() + t * E;
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
            dS[e] = noisy ? dH[e] * normal[t * E + e] * moe_sigmoid(w.sp[t * E + e]) : T(0);
        }
        const T* xrow = w.xr.data() + t * np;
        for (int64_t v = 0; v < vectors; ++v) {
            const Lanes<T> xv = load(xrow + v * kLanes);
            if (!any_nonzero<T>(xv)) continue;
            for (int64_t e = 0; e < E; ++e) {
                T* gg = w.gW_gate.data() + e * np + v * kLanes;
                store(gg, load(gg) + xv * dH[e]);
            }
            if (noisy)
                for (int64_t e = 0; e < E; ++e) {
                    T* gn = w.gW_noise.data() + e * np + v * kLanes;
                    store(gn, load(gn) + xv * dS[e]);
                }
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
