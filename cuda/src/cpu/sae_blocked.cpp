// The CPU backend's fast SAE step: the mathematics of sae_loss_and_grad (the per-token reference in
// sae_cpu.cpp), reorganised so its cost follows SCIENCE.md §3: a dense encoder GEMM, then work proportional to
// the active codes only.
//
//  1. Encoder with the selection fused in. W_enc lives in panels of kTile latents ([tiles][d][kTile], the layout
//     the CPU backend keeps it in, sae.h), so the GEMM reads it as it is. OpenMP runs over macro blocks of tokens
//     (as many as fit in a few hundred KiB, so they stay in L2 beside a panel), and each panel serves every token
//     of the block, kRows tokens at a time from a register tile of kRows x kTile accumulators. Each finished tile
//     of pre-activations goes straight into the tokens' slot lists: a vector comparison against the token's
//     current cut (the k-th best so far, or the per-latent threshold) finds the few latents that enter, then a
//     running top-k insertion buffer (topk, batchtopk candidates, AuxK among dead latents) or an append of the
//     codes above a cut (relu, jumprelu, batchtopk at inference) takes them. So [batch][m] is never stored: a
//     token keeps `cap` slots. When a token needs more (a threshold architecture with dense codes, or a batchtopk
//     token whose every candidate was kept) cap grows and the encoder runs again; the capacity is kept for the
//     next step.
//  2. Sparse decoder: x^_t = b_dec + sum over the token's slots of z W_dec[j], vectorised along d, the next
//     slot's W_dec row prefetched.
//  3. Sparse backward, latent by latent: the slots are bucketed by latent (counting sort, token order kept); for
//     each of its entries a latent computes d loss/d z (a dot of the token's d loss/d x^ with its W_dec row, which
//     stays in L1) and adds to its W_dec row's gradient, its encoder column's (a row of the panel's gradient block,
//     stored into the panel layout when the panel is done) and its bias, the rows of the next entries prefetched.
//     No two threads write the same gradient and every sum has a fixed order, so results do not depend on the
//     thread count.
// The encoder's GEMM (pack_panels, register_tile) is also the engine's plain GEMM, sgemm_blocked (ne_sgemm).
#include <omp.h>
#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "models/sae.h"

namespace ne {
namespace {

// The register tile is kRows tokens x kChunks vectors of accumulators, plus kChunks vectors of W_enc: 27 of
// AVX-512's 32 registers, 15 of AVX's 16.
#if defined(__AVX512F__)
constexpr int64_t kWidth = 16;  // floats per vector: one AVX-512 register
constexpr int64_t kRows = 8;    // tokens per register tile
#else
constexpr int64_t kWidth = 8;   // one AVX register (two SSE registers without AVX)
constexpr int64_t kRows = 4;
#endif
constexpr int64_t kChunks = 3;               // vectors per latent tile
constexpr int64_t kTile = kChunks * kWidth;  // latents per tile (a packed panel's width)
static_assert(kTile <= 64, "a tile's latents are one 64-bit mask");
// Rows of the left operand (tokens) that share one pass over the panels: as many as fill about this many bytes,
// so they stay in L2 beside the panel being read; more rows per pass means fewer passes over W from memory.
constexpr int64_t kMacroBytes = int64_t(384) << 10;
constexpr int64_t kMaxMacro = 512;
// Below this many encoder multiply-adds (batch * d * m) a step runs on one thread: starting and joining a
// dozen parallel regions costs more than the work, and far more on a machine whose cores are busy.
constexpr int64_t kParallelWork = int64_t(1) << 22;

typedef float Vec __attribute__((vector_size(kWidth * sizeof(float))));

inline Vec load(const float* p) {
    Vec v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

// sum_i a_i b_i in a fixed order: kWidth lanes, then the lanes, then the tail.
inline float dot(const float* a, const float* b, int64_t n) {
    Vec acc = {};
    int64_t i = 0;
    for (; i + kWidth <= n; i += kWidth) acc += load(a + i) * load(b + i);
    float sum = 0.0f;
    for (int64_t v = 0; v < kWidth; ++v) sum += acc[v];
    for (; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

// y += a x
inline void axpy(float a, const float* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + kWidth <= n; i += kWidth) store(y + i, load(y + i) + a * load(x + i));
    for (; i < n; ++i) y[i] += a * x[i];
}

// a . b (as dot) while y += z a (as axpy), reading a once.
inline float dot_and_axpy(const float* a, const float* b, float z, float* y, int64_t n) {
    Vec acc = {};
    int64_t i = 0;
    for (; i + kWidth <= n; i += kWidth) {
        const Vec va = load(a + i);
        acc += va * load(b + i);
        store(y + i, load(y + i) + z * va);
    }
    float sum = 0.0f;
    for (int64_t v = 0; v < kWidth; ++v) sum += acc[v];
    for (; i < n; ++i) {
        sum += a[i] * b[i];
        y[i] += z * a[i];
    }
    return sum;
}

// Asks for the n floats at p to be brought into the cache.
inline void prefetch(const float* p, int64_t n) {
    for (int64_t i = 0; i < n; i += 64 / sizeof(float)) __builtin_prefetch(p + i);
}

// One chunk of kWidth cuts: per latent, or the same for every latent.
#if defined(__AVX512F__)
inline __m512 cut_chunk(const float* cut, int64_t c) { return _mm512_loadu_ps(cut + c * kWidth); }
inline __m512 cut_chunk(float cut, int64_t) { return _mm512_set1_ps(cut); }
#elif defined(__AVX__)
inline __m256 cut_chunk(const float* cut, int64_t c) { return _mm256_loadu_ps(cut + c * kWidth); }
inline __m256 cut_chunk(float cut, int64_t) { return _mm256_set1_ps(cut); }
#else
inline float cut_at(const float* cut, int64_t c) { return cut[c]; }
inline float cut_at(float cut, int64_t) { return cut; }
#endif

// Bit c set where u[c] > the cut of c, c < kTile (false for NaN, as the scalar comparison).
template <typename Cut>
inline uint64_t above(const float* u, Cut cut) {
    uint64_t bits = 0;
#if defined(__AVX512F__)
    for (int64_t c = 0; c < kChunks; ++c)
        bits |= static_cast<uint64_t>(
                    _mm512_cmp_ps_mask(_mm512_loadu_ps(u + c * kWidth), cut_chunk(cut, c), _CMP_GT_OQ))
                << (c * kWidth);
#elif defined(__AVX__)
    for (int64_t c = 0; c < kChunks; ++c)
        bits |= static_cast<uint64_t>(static_cast<uint32_t>(
                    _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(u + c * kWidth), cut_chunk(cut, c), _CMP_GT_OQ))))
                << (c * kWidth);
#else
    for (int64_t c = 0; c < kTile; ++c) bits |= static_cast<uint64_t>(u[c] > cut_at(cut, c)) << c;
#endif
    return bits;
}

inline uint64_t low_bits(int64_t n) { return n >= 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1; }

// Keeps the best `cap` (value, latent) of a token in rank order (larger value first; latents arrive in increasing
// order, so an equal value ranks behind the ones already held: ties go to the lower index).
inline void insert_best(float v, int32_t j, float* val, int32_t* idx, int32_t& count, int64_t cap) {
#if defined(__AVX512F__)
    // Without a branch per entry: v's place is the count of entries at least v; the entries from there move up
    // one, a vector of 16 at a time from the top, each read from one float below where it goes.
    const int64_t n = count < cap ? count + 1 : cap;  // entries after
    const __m512 vv = _mm512_set1_ps(v);
    int64_t pos = 0;
    for (int64_t q = 0; q < count; q += 16) {
        const __mmask16 inside = static_cast<__mmask16>(low_bits(std::min<int64_t>(16, count - q)));
        pos += __builtin_popcount(
            _mm512_mask_cmp_ps_mask(inside, _mm512_maskz_loadu_ps(inside, val + q), vv, _CMP_GE_OQ));
    }
    for (int64_t q = (n - 1) / 16 * 16; q >= 0 && q + 16 > pos + 1; q -= 16) {
        const int64_t lo = std::max<int64_t>(pos + 1 - q, 0), hi = std::min<int64_t>(n - q, 16);
        const __mmask16 move = static_cast<__mmask16>(low_bits(hi) & ~low_bits(lo));
        _mm512_mask_storeu_ps(val + q, move, _mm512_maskz_loadu_ps(move, val + q - 1));
        _mm512_mask_storeu_epi32(idx + q, move, _mm512_maskz_loadu_epi32(move, idx + q - 1));
    }
    val[pos] = v;
    idx[pos] = j;
    count = static_cast<int32_t>(n);
#else
    int64_t pos = count < cap ? count++ : cap - 1;
    while (pos > 0 && val[pos - 1] < v) {
        val[pos] = val[pos - 1];
        idx[pos] = idx[pos - 1];
        --pos;
    }
    val[pos] = v;
    idx[pos] = j;
#endif
}

inline bool ranks_ahead(float va, int64_t ia, float vb, int64_t ib) { return va > vb || (va == vb && ia < ib); }

// The GEMM at the heart of the encoder (and of sgemm_blocked): tile = bias + x W_panel for `rows` <= kRows
// consecutive rows of x [.][d] and one packed panel [d][kTile] of W, from kRows x kChunks register accumulators.
// bias [kTile] may be null (zero). Rows past `rows` repeat the last one and are not stored.
inline void register_tile(const float* panel, const float* x, int64_t rows, int64_t d, const float* bias,
                          float (&tile)[kRows][kTile]) {
    const float* xr[kRows];
    for (int64_t r = 0; r < kRows; ++r) xr[r] = x + std::min(r, rows - 1) * d;
    Vec acc[kRows][kChunks];
    for (int64_t c = 0; c < kChunks; ++c) {
        const Vec b = bias != nullptr ? load(bias + c * kWidth) : Vec{};
        for (int64_t r = 0; r < kRows; ++r) acc[r][c] = b;
    }
    for (int64_t i = 0; i < d; ++i) {
        const float* wi = panel + i * kTile;
        Vec w[kChunks];
        for (int64_t c = 0; c < kChunks; ++c) w[c] = load(wi + c * kWidth);
        for (int64_t r = 0; r < kRows; ++r) {
            const float xv = xr[r][i];
            for (int64_t c = 0; c < kChunks; ++c) acc[r][c] += xv * w[c];
        }
    }
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < kChunks; ++c) store(&tile[r][c * kWidth], acc[r][c]);
}

// W [d][m] into panels of kTile latents, [tiles][d][kTile], the last one padded with zeros.
void pack_panels(const float* W, int64_t d, int64_t m, bool parallel, float* panels) {
    const int64_t tiles = (m + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t tp = 0; tp < tiles; ++tp)
        for (int64_t i = 0; i < d; ++i) {
            float* dst = panels + (tp * d + i) * kTile;
            const int64_t j0 = tp * kTile, valid = std::min(kTile, m - j0);
            std::copy(W + i * m + j0, W + i * m + j0 + valid, dst);
            std::fill(dst + valid, dst + kTile, 0.0f);
        }
}

// Rows of the left operand per pass over the panels (see kMacroBytes), a multiple of kRows; when parallel, as many
// blocks as make a multiple of the thread count, so no thread waits through a block of its own at the end.
int64_t macro_rows(int64_t rows, int64_t K, bool parallel) {
    const int64_t fit = std::max<int64_t>(kRows, std::min(kMaxMacro, kMacroBytes / (K * int64_t(sizeof(float)))));
    int64_t blocks = (rows + fit - 1) / fit;
    if (parallel) {
        const int64_t threads = omp_get_max_threads();
        blocks = (blocks + threads - 1) / threads * threads;
    }
    const int64_t macro = (rows + blocks - 1) / blocks;
    return (macro + kRows - 1) / kRows * kRows;
}

enum class Selection { kBest, kAboveCut };

// Pass 1: the encoder GEMM with the selection fused in (see the file comment). Fills the main slots of every
// token and, when `aux`, the AuxK slots among dead latents.
void encode(const SaeSpec& s, const float* W_panels, Selection selection, bool aux, bool parallel, SaeWorkspace& ws) {
    const int64_t d = s.d, m = s.m, B = s.batch, cap = ws.cap;
    const int terms = aux ? static_cast<int>(ws.aux_take.size()) : 0;
    const int64_t ka_all = aux ? ws.aux_offset[terms] : 0;
    const int64_t tiles = (m + kTile - 1) / kTile, macro = macro_rows(B, d, parallel), blocks = (B + macro - 1) / macro;
    const float* bpan = ws.b_panels.data();
    const float* xc = ws.xc.data();
    const float* cut = ws.cut.data();
    const uint64_t* dead_bits = ws.dead_bits.data();
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
    for (int64_t block = 0; block < blocks; ++block) {
        const int64_t t0 = block * macro, t1 = std::min(B, t0 + macro);
        for (int64_t t = t0; t < t1; ++t) {
            ws.count[t] = 0;
            for (int l = 0; l < terms; ++l) ws.aux_count[t * terms + l] = 0;
        }
        alignas(64) float tile[kRows][kTile];
        for (int64_t p = 0; p < tiles; ++p) {
            const float* wp = W_panels + p * d * kTile;
            const int64_t j0 = p * kTile;
            const uint64_t valid = low_bits(std::min(kTile, m - j0));
            for (int64_t tb = t0; tb < t1; tb += kRows) {
                const int64_t rows = std::min(kRows, t1 - tb);
                register_tile(wp, xc + tb * d, rows, d, bpan + j0, tile);
                for (int64_t r = 0; r < rows; ++r) {
                    const int64_t t = tb + r;
                    float* val = ws.slot_u.data() + t * cap;
                    int32_t* idx = ws.slot_idx.data() + t * cap;
                    int32_t& count = ws.count[t];
                    const float* u = tile[r];
                    // The vector comparison finds the latents that may enter; each is then checked against the
                    // cut as it stands (it rises as the buffer fills), in latent order as a scalar loop would.
                    if (selection == Selection::kBest) {
                        float floor = count == cap ? val[cap - 1] : -std::numeric_limits<float>::infinity();
                        for (uint64_t bits = above(u, floor) & valid; bits != 0; bits &= bits - 1) {
                            const int64_t c = __builtin_ctzll(bits);
                            if (!(u[c] > floor)) continue;
                            insert_best(u[c], static_cast<int32_t>(j0 + c), val, idx, count, cap);
                            if (count == cap) floor = val[cap - 1];
                        }
                    } else {
                        // Codes above the cut; a token past its capacity keeps counting, so the caller knows
                        // how much room the next pass needs.
                        for (uint64_t bits = above(u, cut + j0) & valid; bits != 0; bits &= bits - 1) {
                            const int64_t c = __builtin_ctzll(bits);
                            if (count < cap) {
                                val[count] = u[c];
                                idx[count] = static_cast<int32_t>(j0 + c);
                            }
                            ++count;
                        }
                    }
                    // AuxK: each term's running best among its dead latents of the panel.
                    for (int l = 0; l < terms; ++l) {
                        uint64_t bits = dead_bits[p * terms + l];
                        if (bits == 0) continue;
                        const int64_t ka = ws.aux_take[l];
                        float* aval = ws.aux_u.data() + t * ka_all + ws.aux_offset[l];
                        int32_t* aidx = ws.aux_idx.data() + t * ka_all + ws.aux_offset[l];
                        int32_t& acount = ws.aux_count[t * terms + l];
                        if (acount == ka) bits &= above(u, aval[ka - 1]);
                        for (; bits != 0; bits &= bits - 1) {
                            const int64_t c = __builtin_ctzll(bits);
                            if (acount == ka && !(u[c] > aval[ka - 1])) continue;
                            insert_best(u[c], static_cast<int32_t>(j0 + c), aval, aidx, acount, ka);
                        }
                    }
                }
            }
        }
    }
}

void resize_slots(SaeWorkspace& ws, int64_t B) {
    ws.slot_idx.resize(B * ws.cap);
    ws.slot_u.resize(B * ws.cap);
}

// A sharded step's per-token selection (topk codes, AuxK's dead latents): each token's `count` best local latents
// (val, idx [rows][cap], best first) become its part of the k best over the latent group: the lists are merged as
// global latent indices (first + local), then each rank keeps its own entries, still best first.
void merge_group_best(Communicator& group, int64_t rows, int64_t k, int64_t cap, int64_t first, int64_t m, float* val,
                      int32_t* idx, int32_t* count, std::vector<BestEntry>& best) {
    best.assign(rows * k, BestEntry{0.0f, -1});
    for (int64_t t = 0; t < rows; ++t)
        for (int64_t q = 0; q < std::min<int64_t>(count[t], k); ++q)
            best[t * k + q] = BestEntry{val[t * cap + q], static_cast<int32_t>(first + idx[t * cap + q])};
    group.allreduce_best(best.data(), rows, k);
    for (int64_t t = 0; t < rows; ++t) {
        int32_t kept = 0;
        for (int64_t q = 0; q < k; ++q) {
            const BestEntry e = best[t * k + q];
            if (e.index < first || e.index >= first + m) continue;
            val[t * cap + kept] = e.value;
            idx[t * cap + kept] = static_cast<int32_t>(e.index - first);
            ++kept;
        }
        count[t] = kept;
    }
}

// Whether any rank of the groups raised the flag.
bool any_rank(bool flag, Communicator* a, Communicator* b) {
    int64_t value = flag ? 1 : 0;
    for (Communicator* group : {a, b})
        if (group != nullptr) group->allreduce(&value, 1, NE_COMM_INT64, NE_COMM_MAX);
    return value != 0;
}

}  // namespace

SaeLoss sae_loss_and_grad_fast(const SaeSpec& s, SaeParams<float> p, const float* x, const int64_t* since_fired,
                               SaeGrads<float>* g, SaeWorkspace& ws, int64_t* fire_count, float* x_hat,
                               const SaeShard* shard) {
    const int64_t d = s.d, m = s.m, B = s.batch;
    if (s.architecture == kSaeMatchingPursuit) {
        // No encoder and no blocked kernel: the per-token pursuit (sae_pursuit.cpp), one process only (SaeModel).
        if (shard != nullptr && (shard->latent_group() != nullptr || shard->data_group() != nullptr))
            invalid("matching_pursuit cannot be split across ranks");
        std::vector<int64_t> selected(m);
        const SaeLoss loss =
            sae_pursuit_loss_and_grad<float>(s, p.W_dec, p.b_dec, x, since_fired, g != nullptr ? g->W_dec : nullptr,
                                             g != nullptr ? g->b_dec : nullptr, fire_count, x_hat, selected.data());
        if (g != nullptr) {
            std::fill(g->W_enc, g->W_enc + sae_panel_elements(d, m), 0.0f);
            std::fill(g->b_enc, g->b_enc + m, 0.0f);
        }
        // The latents with a gradient, for sae_touched_latents: those some step chose.
        ws.latent_begin.assign(m + 1, 0);
        for (int64_t j = 0; j < m; ++j) ws.latent_begin[j + 1] = ws.latent_begin[j] + selected[j];
        return loss;
    }
    // A sharded step (sae.h): the latent group holds the other latents of these tokens, the data group the other
    // tokens of these latents. Without either, every line below is the one-process step.
    Communicator* lat = shard != nullptr ? shard->latent_group() : nullptr;
    Communicator* dat = shard != nullptr ? shard->data_group() : nullptr;
    const int64_t j0 = lat != nullptr ? shard->first_latent : 0;      // this rank's first latent
    const int64_t M = lat != nullptr ? shard->total_latents : m;      // latents of the whole step
    const int64_t t0 = dat != nullptr ? B * dat->rank() : 0;          // this rank's first token
    const int64_t B_all = dat != nullptr ? B * dat->size() : B;       // tokens of the whole step
    const bool carries_bias = lat == nullptr || lat->rank() == 0;     // b_dec enters x^ (and its gradient) once
    const int32_t arch = s.architecture;
    const bool jump = arch == kSaeJumpRelu, relu = arch == kSaeRelu;
    const bool batch_select = sae_batch_selects(arch) && !s.inference;
    const Selection selection = arch == kSaeTopK || batch_select ? Selection::kBest : Selection::kAboveCut;
    const int64_t tiles = (m + kTile - 1) / kTile;
    const float eps = s.jump_bandwidth;
    const bool parallel = B * d * m >= kParallelWork;
    SaeLoss loss;

    // Dead latents (AuxK), by AuxK term, and the per-latent cut of the threshold architectures.
    const int terms = s.aux_levels();
    ws.dead_bits.assign(tiles * terms, 0);
    std::vector<int64_t> term_dead(terms, 0);
    if (since_fired != nullptr)
        for (int64_t j = 0; j < m; ++j)
            if (since_fired[j] >= s.dead_window) {
                const int l = terms > 1 ? s.level_of(j) : 0;
                ws.dead_bits[(j / kTile) * terms + l] |= uint64_t(1) << (j % kTile);
                ++term_dead[l];
                ++loss.dead;
            }
    if (lat != nullptr) lat->allreduce_sum(&loss.dead, 1);
    if (terms == 1) term_dead[0] = loss.dead;
    const bool aux = sae_has_auxk(arch) && loss.dead > 0 && s.auxk_alpha != 0;
    // Matryoshka's inner levels (sae.h); a split across latents is refused for it (SaeModel), so rows are whole here.
    const int inner = s.inner_levels();
    if (inner > 0 && lat != nullptr) invalid("matryoshka_batchtopk cannot be split across latent shards");
    // AuxK's slots per token: term l's min(k_aux, its dead latents) at aux_offset[l]; ka in all.
    ws.aux_take.assign(terms, 0);
    ws.aux_offset.assign(terms + 1, 0);
    for (int l = 0; l < terms; ++l) {
        ws.aux_take[l] = aux ? std::min(s.aux_k(), term_dead[l]) : 0;
        ws.aux_offset[l + 1] = ws.aux_offset[l] + ws.aux_take[l];
    }
    const int64_t ka = ws.aux_offset[terms];
    const bool level_aux = aux && terms > 1;  // matryoshka's AuxK per level: needs each level's residual
    ws.cut.assign(tiles * kTile, 0.0f);  // whole panels, read a vector at a time
    std::vector<float> theta;  // jumprelu's exp(log_threshold), also in ws.cut shifted by eps/2
    if (selection == Selection::kAboveCut)
        for (int64_t j = 0; j < m; ++j)
            ws.cut[j] = jump ? std::exp(p.log_threshold[j]) - eps / 2 : relu ? 0.0f : s.threshold;
    if (jump) {
        theta.resize(m);
        for (int64_t j = 0; j < m; ++j) theta[j] = std::exp(p.log_threshold[j]);
    }

    // The bias in whole panels, and the inputs centred.
    ws.b_panels.assign(tiles * kTile, 0.0f);
    std::copy(p.b_enc, p.b_enc + m, ws.b_panels.begin());
    ws.xc.resize(B * d);
    ws.dxhat.resize(B * d);
    ws.token_stats.resize(B * 3);
    ws.count.resize(B);
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t t = 0; t < B; ++t)
        for (int64_t i = 0; i < d; ++i) ws.xc[t * d + i] = x[t * d + i] - p.b_dec[i];
    if (aux) {
        ws.aux_idx.resize(B * ka);
        ws.aux_u.resize(B * ka);
        ws.aux_count.resize(B * terms);
        ws.dehat.resize(static_cast<size_t>(terms) * B * d);
        ws.aux_loss.resize(B * terms);
        ws.aux_norm.resize(B * terms);
    }
    if (level_aux) ws.level_e.resize(static_cast<size_t>(inner) * B * d);

    // 1. Encoder and selection; runs again with more slots while some token needs them.
    if (arch == kSaeTopK) ws.cap = s.k;
    else ws.cap = std::min(m, std::max(ws.cap, batch_select ? 4 * s.k : std::max<int64_t>(2 * s.k, 32)));
    for (;;) {
        resize_slots(ws, B);
        encode(s, p.W_enc, selection, aux, parallel, ws);
        const int64_t cap = ws.cap;
        if (selection == Selection::kAboveCut) {
            const int64_t need = *std::max_element(ws.count.begin(), ws.count.end());
            if (need <= cap) break;
            ws.cap = std::min(m, (need + 7) / 8 * 8);
            continue;
        }
        if (!batch_select) break;
        // batchtopk: the k*B best of all candidates; exact unless some token kept all its `cap` candidates
        // (it may hold more of the best), in which case it gets twice the room. Candidates are ranked by their
        // flat index in the whole step (token * d_sae + latent), so a sharded step chooses as one process does.
        const int64_t keep = s.k * B_all;
        ws.candidates.resize(B * cap);
        for (int64_t t = 0; t < B; ++t)
            for (int64_t q = 0; q < cap; ++q)
                ws.candidates[t * cap + q] = {ws.slot_u[t * cap + q], (t0 + t) * M + j0 + ws.slot_idx[t * cap + q]};
        auto ahead = [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
            return ranks_ahead(a.first, a.second, b.first, b.second);
        };
        std::pair<float, int64_t> pivot;
        if (lat == nullptr && dat == nullptr) {
            std::nth_element(ws.candidates.begin(), ws.candidates.begin() + (keep - 1), ws.candidates.end(), ahead);
            pivot = ws.candidates[keep - 1];
        } else {
            // This rank's keep best, merged over the grid into the step's keep best: the last is the pivot.
            const int64_t mine = std::min<int64_t>(keep, B * cap);
            std::partial_sort(ws.candidates.begin(), ws.candidates.begin() + mine, ws.candidates.end(), ahead);
            ws.batch_best.assign(keep, BestEntry64{0.0f, 0, -1});
            for (int64_t q = 0; q < mine; ++q)
                ws.batch_best[q] = BestEntry64{ws.candidates[q].first, 0, ws.candidates[q].second};
            for (Communicator* group : {lat, dat})
                if (group != nullptr) group->allreduce_best(ws.batch_best.data(), 1, keep);
            pivot = {ws.batch_best[keep - 1].value, ws.batch_best[keep - 1].index};
        }
        bool saturated = false;
        for (int64_t t = 0; t < B && cap < m; ++t) {
            const std::pair<float, int64_t> last{ws.slot_u[t * cap + cap - 1],
                                                 (t0 + t) * M + j0 + ws.slot_idx[t * cap + cap - 1]};
            saturated = saturated || !ahead(pivot, last);
        }
        if (lat != nullptr || dat != nullptr) saturated = any_rank(saturated, lat, dat);
        if (saturated) {
            ws.cap = std::min(m, 2 * cap);
            continue;
        }
        double min_kept = 0;
        for (int64_t t = 0; t < B; ++t) {
            int32_t kept = 0;
            for (int64_t q = 0; q < cap; ++q) {
                const float v = ws.slot_u[t * cap + q];
                if (ahead(pivot, {v, (t0 + t) * M + j0 + ws.slot_idx[t * cap + q]})) continue;
                ws.slot_u[t * cap + kept] = v;
                ws.slot_idx[t * cap + kept] = ws.slot_idx[t * cap + q];
                ++kept;
                if (v > 0 && (min_kept == 0 || v < min_kept)) min_kept = v;
            }
            ws.count[t] = kept;
        }
        if (lat != nullptr || dat != nullptr) {
            double smallest = min_kept > 0 ? min_kept : std::numeric_limits<double>::infinity();
            for (Communicator* group : {lat, dat})
                if (group != nullptr) group->allreduce(&smallest, 1, NE_COMM_DOUBLE, NE_COMM_MIN);
            min_kept = std::isinf(smallest) ? 0.0 : smallest;
        }
        loss.min_kept = min_kept;
        break;
    }
    const int64_t cap = ws.cap;
    // A sharded step's topk codes and AuxK candidates: the best over every latent of the step.
    if (lat != nullptr && arch == kSaeTopK)
        merge_group_best(*lat, B, s.k, cap, j0, m, ws.slot_u.data(), ws.slot_idx.data(), ws.count.data(), ws.best);
    if (lat != nullptr && aux)
        merge_group_best(*lat, B, ka, ka, j0, m, ws.aux_u.data(), ws.aux_idx.data(), ws.aux_count.data(), ws.best);
    auto code = [&](float u, int64_t j) { return jump ? (u > theta[j] ? u : 0.0f) : (u > 0.0f ? u : 0.0f); };

    // 2. Decoder: x^, the squared error and d loss/d x^ = 2 (x^ - x) / B, one token at a time.
    if (relu) {
        ws.row_norm.resize(m);
#pragma omp parallel for schedule(static) if (parallel)
        for (int64_t j = 0; j < m; ++j) ws.row_norm[j] = std::sqrt(dot(p.W_dec + j * d, p.W_dec + j * d, d));
    }
    const float scale = 2.0f / static_cast<float>(B_all);
    // Matryoshka: level_dx [inner][B][d], row (l, t) = scale * sum_{l' >= l} (x^_l' - x_t) over the inner levels
    // from l on and the full one (whose term is dxhat): what a latent first held by level l sees. Returns the
    // inner levels' squared error of token t. Needs token t's dxhat.
    if (inner > 0) ws.level_dx.resize(static_cast<size_t>(inner) * B * d);
    auto inner_levels = [&](int64_t t) {
        double sq = 0;
        for (int l = inner - 1; l >= 0; --l) {
            float* row = ws.level_dx.data() + (l * B + t) * d;
            std::copy(p.b_dec, p.b_dec + d, row);
            for (int64_t q = 0; q < ws.count[t]; ++q) {
                const int64_t j = ws.slot_idx[t * cap + q];
                if (j >= s.widths[l]) continue;
                const float z = code(ws.slot_u[t * cap + q], j);
                if (z != 0.0f) axpy(z, p.W_dec + j * d, row, d);
            }
            const float* next = l + 1 < inner ? ws.level_dx.data() + ((l + 1) * B + t) * d : ws.dxhat.data() + t * d;
            float* e = level_aux ? ws.level_e.data() + (l * B + t) * d : nullptr;
            for (int64_t i = 0; i < d; ++i) {
                const float r = row[i] - x[t * d + i];
                sq += static_cast<double>(r * r);
                if (e != nullptr) e[i] = -r;
                row[i] = next[i] + scale * r;
            }
        }
        return sq;
    };
    // Token t's x^ is complete in row: its squared error and d loss/d x^ in place.
    auto residual = [&](int64_t t, float* row) {
        if (x_hat != nullptr) std::copy(row, row + d, x_hat + t * d);
        double sq = 0;
        for (int64_t i = 0; i < d; ++i) {
            const float r = row[i] - x[t * d + i];
            sq += static_cast<double>(r * r);
            row[i] = scale * r;
        }
        ws.token_stats[t * 3 + 0] = sq;
    };
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t t = 0; t < B; ++t) {
        float* row = ws.dxhat.data() + t * d;
        if (carries_bias) std::copy(p.b_dec, p.b_dec + d, row);
        else std::fill(row, row + d, 0.0f);
        double sparsity = 0, l0 = 0;
        for (int64_t q = 0; q < ws.count[t]; ++q) {
            const int64_t j = ws.slot_idx[t * cap + q];
            if (q + 1 < ws.count[t]) prefetch(p.W_dec + ws.slot_idx[t * cap + q + 1] * d, d);
            const float z = code(ws.slot_u[t * cap + q], j);
            if (jump && ws.slot_u[t * cap + q] > theta[j]) sparsity += 1;
            if (z == 0.0f) continue;
            axpy(z, p.W_dec + j * d, row, d);
            l0 += 1;
            if (relu) sparsity += static_cast<double>(z * ws.row_norm[j]);
        }
        ws.token_stats[t * 3 + 1] = sparsity;
        ws.token_stats[t * 3 + 2] = l0;
        if (lat == nullptr) residual(t, row);
        if (inner > 0) ws.token_stats[t * 3 + 1] = inner_levels(t);
    }
    if (lat != nullptr) {
        // The rows hold this rank's partial reconstructions: their sum over the latent group is x^.
        lat->allreduce_sum(ws.dxhat.data(), B * d);
#pragma omp parallel for schedule(static) if (parallel)
        for (int64_t t = 0; t < B; ++t) residual(t, ws.dxhat.data() + t * d);
    }
    double sse = 0, sparsity = 0, l0 = 0;
    for (int64_t t = 0; t < B; ++t) {
        sse += ws.token_stats[t * 3 + 0];
        sparsity += ws.token_stats[t * 3 + 1];
        l0 += ws.token_stats[t * 3 + 2];
    }
    if (lat != nullptr) {  // sparsity and l0 of this rank's latents; the squared error is the group's already
        double part[2] = {sparsity, l0};
        lat->allreduce_sum(part, 2);
        sparsity = part[0];
        l0 = part[1];
    }
    if (dat != nullptr) {
        double sums[3] = {sse, sparsity, l0};
        dat->allreduce_sum(sums, 3);
        sse = sums[0];
        sparsity = sums[1];
        l0 = sums[2];
    }
    std::vector<double> mean(d, 0.0);
    for (int64_t t = 0; t < B; ++t)
        for (int64_t i = 0; i < d; ++i) mean[i] += static_cast<double>(x[t * d + i]);
    if (dat != nullptr) dat->allreduce_sum(mean.data(), d);
    double variance = 0;
    for (int64_t i = 0; i < d; ++i) mean[i] /= static_cast<double>(B_all);
    for (int64_t t = 0; t < B; ++t)
        for (int64_t i = 0; i < d; ++i) {
            const double c = static_cast<double>(x[t * d + i]) - mean[i];
            variance += c * c;
        }
    if (dat != nullptr) dat->allreduce_sum(&variance, 1);
    loss.mse = sse / static_cast<double>(B_all);
    loss.fvu = variance > 0 ? sse / variance : 0.0;
    loss.l0 = l0 / static_cast<double>(B_all);
    const double coefficient = relu ? s.l1_coefficient : jump ? s.l0_coefficient : inner > 0 ? 1.0 : 0.0;
    loss.sparsity = coefficient * sparsity / static_cast<double>(B_all);
    if (fire_count != nullptr) {
        std::fill(fire_count, fire_count + m, int64_t(0));
        for (int64_t t = 0; t < B; ++t)
            for (int64_t q = 0; q < ws.count[t]; ++q) {
                const int64_t j = ws.slot_idx[t * cap + q];
                fire_count[j] += code(ws.slot_u[t * cap + q], j) != 0.0f;
            }
        if (dat != nullptr) dat->allreduce_sum(fire_count, m);
    }

    // AuxK: the dead latents' reconstruction of e = x - x^ = -(B/2) dxhat (per level: e_l = x - x^_l, level_e);
    // dehat row (l, t) = d auxk / d e^ of term l.
    if (aux && lat == nullptr) {
#pragma omp parallel for schedule(static) if (parallel)
        for (int64_t t = 0; t < B; ++t)
            for (int l = 0; l < terms; ++l) {
                float* diff = ws.dehat.data() + (l * B + t) * d;
                const int64_t at = t * ka + ws.aux_offset[l], n = ws.aux_count[t * terms + l];
                if (ws.aux_take[l] == 0) {
                    ws.aux_loss[t * terms + l] = ws.aux_norm[t * terms + l] = 0;
                    continue;
                }
                double norm = 0;
                if (l < inner && level_aux) {
                    const float* e = ws.level_e.data() + (l * B + t) * d;
                    for (int64_t i = 0; i < d; ++i) {
                        diff[i] = e[i];
                        norm += static_cast<double>(diff[i] * diff[i]);
                    }
                } else {
                    for (int64_t i = 0; i < d; ++i) {
                        diff[i] = -ws.dxhat[t * d + i] / scale;  // e = x - x^ = -dxhat / scale
                        norm += static_cast<double>(diff[i] * diff[i]);
                    }
                }
                for (int64_t q = 0; q < n; ++q) {
                    if (q + 1 < n) prefetch(p.W_dec + ws.aux_idx[at + q + 1] * d, d);
                    const float u = ws.aux_u[at + q];
                    if (u > 0.0f) axpy(-u, p.W_dec + ws.aux_idx[at + q] * d, diff, d);
                }
                double sq = 0;
                for (int64_t i = 0; i < d; ++i) sq += static_cast<double>(diff[i] * diff[i]);
                ws.aux_loss[t * terms + l] = sq;
                ws.aux_norm[t * terms + l] = norm;
            }
    } else if (aux) {  // split across latents: one term (matryoshka is refused there)
        // e^ is the sum of the latent group's partial reconstructions by their dead latents.
#pragma omp parallel for schedule(static) if (parallel)
        for (int64_t t = 0; t < B; ++t) {
            float* part = ws.dehat.data() + t * d;
            std::fill(part, part + d, 0.0f);
            for (int64_t q = 0; q < ws.aux_count[t]; ++q) {
                const float u = ws.aux_u[t * ka + q];
                if (u > 0.0f) axpy(u, p.W_dec + ws.aux_idx[t * ka + q] * d, part, d);
            }
        }
        lat->allreduce_sum(ws.dehat.data(), B * d);
#pragma omp parallel for schedule(static) if (parallel)
        for (int64_t t = 0; t < B; ++t) {
            float* diff = ws.dehat.data() + t * d;
            double norm = 0, sq = 0;
            for (int64_t i = 0; i < d; ++i) {
                const float e = -ws.dxhat[t * d + i] / scale;
                norm += static_cast<double>(e * e);
                diff[i] = e - diff[i];
                sq += static_cast<double>(diff[i] * diff[i]);
            }
            ws.aux_loss[t] = sq;
            ws.aux_norm[t] = norm;
        }
    }
    if (aux) {
        std::vector<double> sums(2 * terms, 0.0);  // per term: sum_t ||e - e^||^2, sum_t ||e||^2
        for (int64_t t = 0; t < B; ++t)
            for (int l = 0; l < terms; ++l) {
                sums[2 * l] += ws.aux_loss[t * terms + l];
                sums[2 * l + 1] += ws.aux_norm[t * terms + l];
            }
        if (dat != nullptr) dat->allreduce_sum(sums.data(), 2 * terms);
        for (int l = 0; l < terms; ++l) {
            if (ws.aux_take[l] == 0) continue;
            const double num = sums[2 * l], den = sums[2 * l + 1];
            if (den > 0) {
                const float alpha = static_cast<float>(s.auxk_alpha * s.aux_weight(term_dead[l]));
                loss.auxk += alpha * num / den;
                const float aux_scale = static_cast<float>(-2.0 * alpha / den);
                float* rows = ws.dehat.data() + static_cast<size_t>(l) * B * d;
#pragma omp parallel for schedule(static) if (parallel)
                for (int64_t q = 0; q < B * d; ++q) rows[q] *= aux_scale;
            } else {
                for (int64_t t = 0; t < B; ++t) ws.aux_count[t * terms + l] = 0;
            }
        }
    }
    if (g == nullptr) return loss;

    // 3. Backward. Bucket the slots by latent: main slots in token order, then AuxK slots in token order.
    ws.latent_begin.assign(m + 1, 0);
    for (int64_t t = 0; t < B; ++t) {
        for (int64_t q = 0; q < ws.count[t]; ++q) ++ws.latent_begin[ws.slot_idx[t * cap + q] + 1];
        if (aux)
            for (int l = 0; l < terms; ++l)
                for (int64_t q = 0; q < ws.aux_count[t * terms + l]; ++q)
                    ++ws.latent_begin[ws.aux_idx[t * ka + ws.aux_offset[l] + q] + 1];
    }
    for (int64_t j = 0; j < m; ++j) ws.latent_begin[j + 1] += ws.latent_begin[j];
    const int64_t entries = ws.latent_begin[m];
    ws.entries.resize(entries);
    ws.entry_token.resize(entries);
    ws.next.assign(ws.latent_begin.begin(), ws.latent_begin.end() - 1);
    for (int64_t t = 0; t < B; ++t)
        for (int64_t q = 0; q < ws.count[t]; ++q) {
            const int64_t e = ws.next[ws.slot_idx[t * cap + q]]++;
            ws.entries[e] = t * cap + q;
            ws.entry_token[e] = t;
        }
    if (aux)
        for (int64_t t = 0; t < B; ++t)
            for (int l = 0; l < terms; ++l)
                for (int64_t q = 0; q < ws.aux_count[t * terms + l]; ++q) {
                    const int64_t slot = t * ka + ws.aux_offset[l] + q;
                    const int64_t e = ws.next[ws.aux_idx[slot]]++;
                    ws.entries[e] = B * cap + slot;
                    ws.entry_token[e] = t;
                }

    // Each latent's gradients from its own entries, a panel of latents at a time: d loss/d z of an entry is its
    // token's d loss/d x^ (or d loss/d e^) dotted with the latent's W_dec row; the encoder column's gradient is
    // summed as a row of the panel's block [kTile][d], then stored into the panel layout.
    const int threads = parallel ? omp_get_max_threads() : 1;
    ws.panel_grad.resize(static_cast<size_t>(threads) * kTile * d);
    ws.enc_sum.resize(m);
    const float l1 = s.l1_coefficient / static_cast<float>(B_all);
    const float l0_term = s.l0_coefficient / (static_cast<float>(B_all) * eps);
    // Entries ahead whose rows are asked for while one is summed: the rows come from all over the batch, so each
    // would otherwise wait on memory.
    constexpr int64_t kAhead = 4;
    // d loss/d e^ of token t as latent j's AuxK term sees it.
    auto aux_row = [&](int64_t j, int64_t t) {
        return ws.dehat.data() + ((terms > 1 ? s.level_of(j) : 0) * B + t) * d;
    };
    auto prefetch_entry = [&](int64_t e) {
        const int64_t t = ws.entry_token[e], entry = ws.entries[e];
        prefetch(ws.xc.data() + t * d, d);
        prefetch(entry < B * cap ? ws.dxhat.data() + t * d : aux_row(ws.aux_idx[entry - B * cap], t), d);
    };
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (parallel)
    for (int64_t tp = 0; tp < tiles; ++tp) {
        float* block = ws.panel_grad.data() + static_cast<size_t>(omp_get_thread_num()) * kTile * d;
        std::fill(block, block + kTile * d, 0.0f);
        const int64_t j0 = tp * kTile, valid = std::min(kTile, m - j0);
        for (int64_t e = ws.latent_begin[j0]; e < std::min(entries, ws.latent_begin[j0] + kAhead); ++e)
            prefetch_entry(e);
        for (int64_t j = j0; j < j0 + valid; ++j) {
            const float* wdec = p.W_dec + j * d;
            float* gdec = g->W_dec + j * d;
            float* genc = block + (j - j0) * d;
            std::fill(gdec, gdec + d, 0.0f);
            float gb = 0, enc_sum = 0, zsum = 0, glog = 0;
            for (int64_t e = ws.latent_begin[j]; e < ws.latent_begin[j + 1]; ++e) {
                if (e + kAhead < entries) prefetch_entry(e + kAhead);
                const int64_t entry = ws.entries[e], t = ws.entry_token[e];
                const float* xct = ws.xc.data() + t * d;
                if (entry < B * cap) {
                    const float u = ws.slot_u[entry], z = code(u, j);
                    if (z == 0.0f && !jump) continue;  // ReLU's flat side: no gradient
                    const float* dx = inner > 0 && s.level_of(j) < inner
                                          ? ws.level_dx.data() + (s.level_of(j) * B + t) * d
                                          : ws.dxhat.data() + t * d;
                    float dz = z != 0.0f ? dot_and_axpy(dx, wdec, z, gdec, d) : dot(dx, wdec, d);
                    if (relu) dz += l1 * ws.row_norm[j];
                    if (jump && std::abs(u - theta[j]) < eps / 2)
                        glog += theta[j] * (-(theta[j] / eps) * dz - l0_term);
                    if (z == 0.0f) continue;
                    axpy(dz, xct, genc, d);
                    zsum += z;
                    gb += dz;
                    enc_sum += dz;
                } else {
                    const float u = ws.aux_u[entry - B * cap];
                    if (!(u > 0.0f)) continue;
                    const float dz = dot_and_axpy(aux_row(j, t), wdec, u, gdec, d);
                    axpy(dz, xct, genc, d);
                    gb += dz;
                }
            }
            if (relu && zsum != 0.0f) axpy(l1 * zsum / ws.row_norm[j], wdec, gdec, d);
            g->b_enc[j] = gb;
            ws.enc_sum[j] = enc_sum;
            if (jump) g->log_threshold[j] = glog;
        }
        // The block [kTile][d] into the panel [d][kTile]; columns past m stay zero.
        float* panel = g->W_enc + tp * d * kTile;
        for (int64_t i = 0; i < d; ++i)
            for (int64_t c = 0; c < kTile; ++c) panel[i * kTile + c] = block[c * d + i];
    }
    // b_dec: the decoder's sum_t dxhat_t minus the encoder input's W_enc (sum_t du_t) (main codes only); each row
    // of W_enc times sum_t du_t summed as dot would (kWidth lanes in latent order, then the lanes, then the tail),
    // read from the panels a block of rows at a time.
    std::fill(g->b_dec, g->b_dec + d, 0.0f);
    if (carries_bias)
        for (int64_t t = 0; t < B; ++t)  // level 0's row holds every level's term (matryoshka)
            axpy(1.0f, (inner > 0 ? ws.level_dx.data() : ws.dxhat.data()) + t * d, g->b_dec, d);
    constexpr int64_t kRowBlock = 16;
    const int64_t whole = m / kWidth * kWidth;  // latents summed in lanes; the rest is the tail
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i0 = 0; i0 < d; i0 += kRowBlock) {
        const int64_t i1 = std::min(d, i0 + kRowBlock);
        Vec acc[kRowBlock] = {};
        for (int64_t tp = 0; tp < tiles; ++tp)
            for (int64_t c = 0; c < kChunks && tp * kTile + (c + 1) * kWidth <= whole; ++c) {
                const Vec sums = load(ws.enc_sum.data() + tp * kTile + c * kWidth);
                const float* column = p.W_enc + tp * d * kTile + c * kWidth;
                for (int64_t i = i0; i < i1; ++i) acc[i - i0] += load(column + i * kTile) * sums;
            }
        for (int64_t i = i0; i < i1; ++i) {
            float sum = 0.0f;
            for (int64_t v = 0; v < kWidth; ++v) sum += acc[i - i0][v];
            for (int64_t j = whole; j < m; ++j)
                sum += p.W_enc[(j / kTile * d + i) * kTile + j % kTile] * ws.enc_sum[j];
            g->b_dec[i] -= sum;
        }
    }
    if (lat != nullptr) lat->allreduce_sum(g->b_dec, d);
    return loss;
}

void sgemm_blocked(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C,
                   std::vector<float>& panels) {
    const bool parallel = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) >= kParallelWork;
    const int64_t tiles = (N + kTile - 1) / kTile, macro = macro_rows(M, K, parallel), blocks = (M + macro - 1) / macro;
    panels.resize(sae_panel_elements(K, N));
    pack_panels(B, K, N, parallel, panels.data());
    const float* packed = panels.data();
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
    for (int64_t block = 0; block < blocks; ++block) {
        const int64_t r0 = block * macro, r1 = std::min(M, r0 + macro);
        alignas(64) float tile[kRows][kTile];
        for (int64_t p = 0; p < tiles; ++p) {
            const int64_t j0 = p * kTile, valid = std::min(kTile, N - j0);
            for (int64_t rb = r0; rb < r1; rb += kRows) {
                const int64_t rows = std::min(kRows, r1 - rb);
                register_tile(packed + p * K * kTile, A + rb * K, rows, K, nullptr, tile);
                for (int64_t r = 0; r < rows; ++r) std::copy(tile[r], tile[r] + valid, C + (rb + r) * N + j0);
            }
        }
    }
}

int64_t sae_panel_width() { return kTile; }

int64_t sae_panel_elements(int64_t d, int64_t m) { return (m + kTile - 1) / kTile * d * kTile; }

void sae_encoder_to_panels(int64_t d, int64_t m, const float* W_enc, float* panels) {
    pack_panels(W_enc, d, m, d * m >= kParallelWork, panels);
}

void sae_encoder_from_panels(int64_t d, int64_t m, const float* panels, float* W_enc) {
    const int64_t tiles = (m + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (d * m >= kParallelWork)
    for (int64_t tp = 0; tp < tiles; ++tp)
        for (int64_t i = 0; i < d; ++i) {
            const float* src = panels + (tp * d + i) * kTile;
            const int64_t j0 = tp * kTile, valid = std::min(kTile, m - j0);
            std::copy(src, src + valid, W_enc + i * m + j0);
        }
}

void sae_touched_latents(const SaeWorkspace& ws, int64_t m, uint8_t* touched) {
    for (int64_t j = 0; j < m; ++j) touched[j] = ws.latent_begin[j + 1] > ws.latent_begin[j];
}

}  // namespace ne
