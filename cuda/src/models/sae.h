// Sparse autoencoders (dictionary learning, SCIENCE.md §3): the CPU kernels of one training step and their
// helpers, in the SAELens layout. The per-token reference (cpu/sae_cpu.cpp, templated so the gradient check runs
// it in double) is the specification; the fast path (cpu/sae_blocked.cpp) is what the CPU backend trains with.
//
// Definitions, for x [batch][d]:
//   u  = (x - b_dec) W_enc + b_enc                         pre-activations [batch][m]
//   z  = act(u)                                            codes, by architecture (below)
//   x^ = z W_dec + b_dec
//   mse      = (1/B) sum_t ||x_t - x^_t||^2                summed over d, averaged over the batch
//   fvu      = sum_t ||x_t - x^_t||^2 / sum_t ||x_t - mean_t(x)||^2   (reported, not trained on)
//   loss     = mse + sparsity + auxk
// Architectures:
//   topk       z_j = ReLU(u_j) on the k largest u_j of the token (ties: the lower latent index), else 0.
//   batchtopk  z = ReLU(u) on the k*B largest u of the whole batch (ties: the lower flat index t*m + j), else 0.
//              With SaeSpec::inference set, a fixed threshold replaces the batch selection:
//              z_j = u_j * [u_j > threshold] (threshold >= 0). The threshold is an exponential moving average of
//              each training batch's smallest kept positive code (SaeLoss::min_kept, see SaeThreshold).
//   matryoshka_batchtopk (Bussmann et al. 2025; SAELens's MatryoshkaBatchTopKTrainingSAE)
//              z as batchtopk (the same inference threshold). Nested widths w_0 < ... < w_{L-1} = m; level l's
//              reconstruction x^_l = sum_{j < w_l} z_j W_dec,j + b_dec (b_dec in every level, x^_{L-1} = x^), and
//              sparsity = sum_{l < L-1} (1/B) sum_t ||x_t - x^_l,t||^2 (the inner levels; the outer one is mse).
//              So d loss/d z_j = (2/B) (sum_{l: j < w_l} (x^_l - x)) . W_dec,j: latent j's decoder gradient is
//              the batchtopk one with the residual replaced by the sum of the residuals of the levels holding it.
//              One level (w_0 = m) is batchtopk exactly. AuxK as batchtopk, on the full residual x - x^; or, with
//              level_auxk (SAELens's use_matryoshka_aux_loss), one AuxK term per level (below).
//   matching_pursuit (SAELens's MatchingPursuitTrainingSAE; Costa et al. 2025) has no encoder: W_enc and b_enc
//              are kept but unused (their gradient is 0). Per token, r_0 = x - b_dec and z = 0; step q picks
//              j_q = argmax_j ReLU(r_q . W_dec,j) (the lowest j on a tie, so 0 when every dot is <= 0), takes
//              v_q = ReLU(r_q . W_dec,j_q), z_j_q += v_q, r_{q+1} = r_q - v_q W_dec,j_q; it stops after
//              max_iterations steps (0: d), or (stop_on_duplicate_support) after a step that adds no latent to the
//              support {j: z_j != 0}, or (residual_threshold > 0) once ||r_{q+1}|| < residual_threshold.
//              x^ = z W_dec + b_dec; loss = mse (no sparsity term, no AuxK). The gradient is that of the unrolled
//              pursuit with the choices j_q held fixed (autograd through v_q and r_q, ReLU' = [pre > 0]). With unit
//              decoder rows ||r_{q+1}||^2 = ||r_q||^2 - v_q^2: the residual never grows. Implemented per token in
//              cpu/sae_pursuit.cpp and, a step over the whole batch at a time, in cuda/sae_pursuit_cuda.cu.
//   relu       z = ReLU(u); sparsity = l1_coefficient * (1/B) sum_t sum_j z_tj ||W_dec,j|| (Bricken et al. 2023).
//   jumprelu   theta_j = exp(log_threshold_j); z_j = u_j * H(u_j - theta_j);
//              sparsity = l0_coefficient * (1/B) sum_t sum_j H(u_tj - theta_j) (Rajamanoharan et al. 2024).
//              Gradients with a rectangle kernel K(v) = [|v| < 1/2] of bandwidth eps = jump_bandwidth:
//                dz/du         = H(u - theta)                      (exact away from the jump)
//                dz/dtheta     = -(theta/eps) K((u - theta)/eps)   (straight-through, as the paper)
//                dH/dtheta     = -(1/eps)     K((u - theta)/eps)   (the L0 term trains theta only: dH/du = 0)
//                d/dlog_theta  = theta * d/dtheta                  (the parameter is log theta, so theta > 0)
// AuxK (topk and batchtopk, Gao et al. 2024): a latent is dead when tokens_since_fired_j >= dead_window. With
// e = x - x^ held constant (no gradient flows through it), the dead latents reconstruct it with their own top
// k_aux (k_aux' = min(k_aux, dead count)): z_aux = ReLU(u) on the k_aux' largest u_j among dead j, e^ = z_aux W_dec
// (no bias), and auxk = auxk_alpha * sum_t ||e_t - e^_t||^2 / sum_t ||e_t||^2 over the batch. Its gradient
// reaches W_enc[:, j], b_enc[j] and W_dec[j] of dead latents only (not b_dec, though u depends on it: the
// auxiliary task must not move the data's centre). Skipped (0) when no latent is dead or auxk_alpha is 0.
// Matryoshka's per-level AuxK (level_auxk): level l's dead latents (w_{l-1} <= j < w_l, w_{-1} = 0) reconstruct
// that level's residual e_l = x - x^_l (x^_{L-1} = x^) with their own top k_l = min(k_aux, dead_l) among them, and
// auxk = sum over the levels with a dead latent of auxk_alpha * min(dead_l / k_aux, 1) * sum_t ||e_l - e^_l||^2 /
// sum_t ||e_l||^2: each level revives its own dead latents on what the levels up to it leave unexplained, a
// level with few dead latents weighted down (k_aux the configured one, d/2 by default).
// Gradient rule: the loss functions write (=) every parameter gradient, except sae_auxk_loss_and_grad (+=).
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "core/comm.h"
#include "core/philox.h"
#include "models/optimizer.h"

namespace ne {

class SynthBackend;  // models/synth_truth.h

enum SaeArchitecture : int32_t {
    kSaeTopK = 0,
    kSaeBatchTopK = 1,
    kSaeRelu = 2,
    kSaeJumpRelu = 3,
    kSaeMatryoshkaBatchTopK = 4,
    kSaeMatchingPursuit = 5
};
constexpr int kSaeMaxLevels = 8;  // NE_SAE_MAX_MATRYOSHKA_LEVELS

// The architectures that choose codes over the whole batch in training and by a threshold at inference.
inline bool sae_batch_selects(int32_t architecture) {
    return architecture == kSaeBatchTopK || architecture == kSaeMatryoshkaBatchTopK;
}
// The architectures with AuxK.
inline bool sae_has_auxk(int32_t architecture) {
    return architecture == kSaeTopK || sae_batch_selects(architecture);
}

// Everything that fixes the arithmetic of one batch, except the tensors.
struct SaeSpec {
    int32_t architecture = kSaeTopK;  // SaeArchitecture
    int64_t d = 0, m = 0, batch = 0;  // d_in, d_sae, tokens per batch
    int64_t k = 0;                    // topk, batchtopk: codes per token (batchtopk: on average)
    float l1_coefficient = 0;         // relu
    float l0_coefficient = 0;         // jumprelu
    float jump_bandwidth = 1e-3f;     // jumprelu: eps of the rectangle kernel
    float auxk_alpha = 1.0f / 32;     // topk, batchtopk; 0 disables AuxK
    int64_t k_aux = 0;                // AuxK codes per token; 0 means d/2
    int64_t dead_window = 10000000;   // tokens without firing after which a latent is dead
    int32_t inference = 0;            // batchtopk, matryoshka: 1 uses `threshold` instead of the batch selection
    float threshold = 0;              // their inference threshold
    int32_t levels = 0;               // matryoshka: nested levels (1..kSaeMaxLevels); 0 elsewhere
    int64_t widths[kSaeMaxLevels] = {};  // matryoshka: strictly increasing, widths[levels - 1] = m
    float residual_threshold = 1e-2f;    // matching_pursuit: stop below this residual norm (<= 0: never)
    int64_t max_iterations = 0;          // matching_pursuit: steps at most (0: d)
    int32_t stop_on_duplicate_support = 1;  // matching_pursuit: stop after a step that adds no latent
    int32_t level_auxk = 0;              // matryoshka: AuxK one term per level (above)
    int64_t pursuit_iterations() const { return max_iterations > 0 ? max_iterations : d; }
    int64_t aux_k() const { return k_aux > 0 ? k_aux : d / 2 > 0 ? d / 2 : 1; }
    // The inner levels (those besides the full reconstruction): levels - 1 for matryoshka, else 0.
    int inner_levels() const { return architecture == kSaeMatryoshkaBatchTopK && levels > 1 ? levels - 1 : 0; }
    // AuxK's terms: one per matryoshka level with level_auxk, else one over every latent.
    bool auxk_per_level() const { return architecture == kSaeMatryoshkaBatchTopK && level_auxk && levels >= 1; }
    int aux_levels() const { return auxk_per_level() ? levels : 1; }
    // The latents of AuxK term l: [aux_begin(l), aux_end(l)).
    int64_t aux_begin(int l) const { return auxk_per_level() && l > 0 ? widths[l - 1] : 0; }
    int64_t aux_end(int l) const { return auxk_per_level() ? widths[l] : m; }
    // AuxK term l's weight for `dead` dead latents among its own: min(dead / k_aux, 1) per level, else 1.
    double aux_weight(int64_t dead) const {
        return auxk_per_level() ? std::min(1.0, static_cast<double>(dead) / static_cast<double>(aux_k())) : 1.0;
    }
    // The first level holding latent j (inner_levels() for the full one only).
    int level_of(int64_t j) const {
        int l = 0;
        while (l < inner_levels() && j >= widths[l]) ++l;
        return l;
    }
};

// One SAE's parameters (SAELens layout) and their gradients. log_threshold is null unless jumprelu.
template <typename T>
struct SaeParams {
    const T* W_enc;          // [d][m], column j = latent j's encoder direction
    const T* b_enc;          // [m]
    const T* W_dec;          // [m][d], row j = latent j's atom
    const T* b_dec;          // [d]
    const T* log_threshold;  // [m] jumprelu: theta = exp(log_threshold)
};
template <typename T>
struct SaeGrads {
    T* W_enc;
    T* b_enc;
    T* W_dec;
    T* b_dec;
    T* log_threshold;  // null unless jumprelu
};

// Owning float tensors of one SAE: parameters, their gradients, or an Adam moment.
struct SaeTensors {
    std::vector<float> W_enc, b_enc, W_dec, b_dec, log_threshold;
    // Zero-filled; log_threshold only for jumprelu; W_enc [d][m], or in the encoder panels (below).
    void resize(const SaeSpec& spec, bool encoder_panels = false);
    SaeParams<float> params() const;
    SaeGrads<float> grads();
};

// The fast path's layout of W_enc: the latents in panels of sae_panel_width() columns (48 on a CPU with AVX-512,
// 24 otherwise), [panels][d][width], the last panel's columns past m zero. The encoder GEMM reads it as it is, so
// the CPU backend keeps W_enc, its gradient and its Adam moments this way and converts only when they cross the
// ABI (SAELens's [d][m]).
int64_t sae_panel_width();
int64_t sae_panel_elements(int64_t d, int64_t m);  // panels * d * width
void sae_encoder_to_panels(int64_t d, int64_t m, const float* W_enc, float* panels);
void sae_encoder_from_panels(int64_t d, int64_t m, const float* panels, float* W_enc);

// What one batch measured. The loss terms are those defined above; l0 is the mean count of nonzero codes per
// token; min_kept (batchtopk training) the smallest positive kept code, 0 when none; dead the dead latents.
struct SaeLoss {
    double mse = 0, sparsity = 0, auxk = 0, fvu = 0, l0 = 0, min_kept = 0;
    int64_t dead = 0;
    // Training: applied is false when the loss was not finite, so the backend skipped the update and left every
    // tensor as it was; parameters_finite is false when a decoder row's norm was not finite after the update.
    bool applied = true, parameters_finite = true;
    double total() const { return mse + sparsity + auxk; }
};

// Reference forward and backward over x [batch][d], one token at a time. since_fired [m] (null: no latent is
// dead) feeds AuxK. grads null: forward only. fire_count [m], when not null, receives the tokens of this batch in
// which each latent's code is nonzero; x_hat [batch][d], when not null, the reconstruction.
template <typename T>
SaeLoss sae_loss_and_grad(const SaeSpec& spec, SaeParams<T> params, const T* x, const int64_t* since_fired,
                          SaeGrads<T>* grads, int64_t* fire_count = nullptr, T* x_hat = nullptr);

// Matching pursuit (sae_pursuit.cpp; the CUDA backend's is cuda/sae_pursuit_cuda.cu). One step: the latent chosen, pre = r_q . W_dec,j and v = ReLU(pre).
template <typename T>
struct PursuitRecord {
    int64_t latent;
    T pre, value;
};
// Encodes one token x [d]: acts [m], residual [d] = the last r; steps (when not null) the steps taken;
// residual_norms (when not null) ||r_q|| after each step. Returns the steps taken.
template <typename T>
int64_t sae_pursuit_encode(const SaeSpec& spec, const T* W_dec, const T* b_dec, const T* x, T* acts, T* residual,
                           std::vector<PursuitRecord<T>>* steps = nullptr,
                           std::vector<double>* residual_norms = nullptr);
// The loss over x [batch][d] and (gW_dec not null) the gradients of W_dec and b_dec (=); fire_count [m] as in
// sae_loss_and_grad; selected [m] (when not null) = the steps that chose each latent (those whose rows have a
// gradient). sae_loss_and_grad and the fast path call it for matching_pursuit.
// since_fired [m] (null: none dead) gives the dead count only: matching pursuit has no AuxK.
template <typename T>
SaeLoss sae_pursuit_loss_and_grad(const SaeSpec& spec, const T* W_dec, const T* b_dec, const T* x,
                                  const int64_t* since_fired, T* gW_dec, T* gb_dec, int64_t* fire_count = nullptr,
                                  T* x_hat = nullptr, int64_t* selected = nullptr);

// The AuxK term alone for a given residual e [batch][d] and dead mask [m]: returns auxk and adds (+=) its
// gradients to W_enc, b_enc and W_dec (grads may be null). sae_loss_and_grad calls it with e = x - x^.
template <typename T>
double sae_auxk_loss_and_grad(const SaeSpec& spec, SaeParams<T> params, const T* x, const T* residual,
                              const uint8_t* dead, SaeGrads<T>* grads);

// How one step is split across ranks (the definitions above hold for the whole step; see ne_sae_create_sharded).
// The spec of a sharded SAE describes this rank's tensors: m = its latents, batch = its tokens.
struct SaeShard {
    Communicator* latents = nullptr;  // the ranks holding the other latents, for the same tokens; null: all here
    Communicator* data = nullptr;     // the ranks holding these latents, for other tokens (as many each); null: none
    int64_t first_latent = 0;         // this rank's latents are [first_latent, first_latent + m) of total_latents
    int64_t total_latents = 0;
    // Null communicators and those of one rank are equivalent: the step is then the one-process step, bit for bit.
    Communicator* latent_group() const { return latents != nullptr && latents->size() > 1 ? latents : nullptr; }
    Communicator* data_group() const { return data != nullptr && data->size() > 1 ? data : nullptr; }
};

// Scratch of the fast path, reused across steps so the parallel regions allocate nothing. Per token it keeps up
// to `cap` selected (or candidate) latents; cap grows between passes when a token needs more (relu, jumprelu,
// batchtopk), so the [batch][m] pre-activation matrix exists only when codes really are that dense.
struct SaeWorkspace {
    int64_t cap = 0;                           // slots per token
    std::vector<float> b_panels;               // b_enc padded to whole panels
    std::vector<float> xc, dxhat;              // [batch][d]: x - b_dec, d loss/d x^
    std::vector<float> dehat;                  // [aux levels][batch][d]: d loss/d e^ of each AuxK term
    std::vector<float> level_dx;               // matryoshka: [inner levels][batch][d] (sae_blocked.cpp)
    std::vector<float> level_e;                // per-level AuxK: [inner levels][batch][d], x - x^_l
    std::vector<int32_t> slot_idx, count;      // [batch][cap] latent, [batch] used slots
    std::vector<float> slot_u;                 // [batch][cap] pre-activation
    std::vector<int32_t> aux_idx, aux_count;   // [batch][aux_offset.back()] (term l at aux_offset[l]), [batch][terms]
    std::vector<float> aux_u;                  // as aux_idx
    std::vector<int64_t> aux_take, aux_offset; // AuxK term l keeps aux_take[l] latents per token; [terms + 1]
    std::vector<double> token_stats, aux_loss, aux_norm; // [batch][3] (squared error, sparsity, l0), [batch][terms]
    std::vector<int64_t> latent_begin, next;             // latent-major lists: [m+1], [m]
    std::vector<int64_t> entries, entry_token;           // [entries]: slot (main, then AuxK), its token
    std::vector<float> panel_grad, row_norm, enc_sum, cut; // [threads][width][d] a panel's encoder gradient, [m]
    std::vector<uint64_t> dead_bits;                     // [panels][terms] each panel's dead latents, by AuxK term
    std::vector<std::pair<float, int64_t>> candidates;   // batchtopk: (u, t*m + j)
    std::vector<BestEntry> best;                         // sharded: [batch][k] lists merged over the latent group
    std::vector<BestEntry64> batch_best;                 // sharded batchtopk: the step's k*batch best
};

// The same loss and gradients as sae_loss_and_grad<float>, computed by the blocked kernels the CPU backend
// trains with: an encoder GEMM with the selection fused into it (latent tiles, a running top-k per token), a
// sparse decoder and a sparse backward. W_enc and its gradient are in the encoder panels (sae_panel_width).
// OpenMP inside; deterministic and independent of the thread count.
// With a shard, the step is this rank's part of a split one: the codes are those of the whole step (best-k lists
// merged across the latent group, batchtopk's pivot and AuxK's dead latents global), x^ sums the group's partial
// reconstructions, the loss, fire_count and dead count are the whole step's, and the gradients are those of this
// rank's latents over its own tokens (b_dec's summed over the latent group, not yet over the data group).
SaeLoss sae_loss_and_grad_fast(const SaeSpec& spec, SaeParams<float> params, const float* x,
                               const int64_t* since_fired, SaeGrads<float>* grads, SaeWorkspace& workspace,
                               int64_t* fire_count = nullptr, float* x_hat = nullptr,
                               const SaeShard* shard = nullptr);

// C [M][N] = A [M][K] B [K][N], row-major floats, by the encoder GEMM of sae_loss_and_grad_fast alone (B packed
// into panels of latents, register tiles, OpenMP over blocks of rows of A): the same kernel, exposed so it can be
// checked and timed against a BLAS (ne_sgemm). panels is scratch, resized as needed.
void sgemm_blocked(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C,
                   std::vector<float>& panels);

// Latents whose parameters got a gradient in the last backward of the fast path (codes or AuxK codes this batch;
// a superset of the nonzero gradient rows): touched [m] for sae_adam_update's touched-rows mode.
void sae_touched_latents(const SaeWorkspace& workspace, int64_t m, uint8_t* touched);

// Throws invalid-argument naming the field unless the spec is usable: d, m, batch >= 1; k in 1..m for topk,
// batchtopk and matryoshka; matryoshka's widths strictly increasing from >= 1 to m; finite coefficients >= 0; jump_bandwidth > 0; dead_window >= 1; k_aux in 0..m.
void sae_check_spec(const SaeSpec& spec);

// tokens_since_fired [m] after a batch of `batch` tokens: 0 for latents that fired in it (fire_count > 0), else
// increased by batch. Firing is counted per batch, so a latent is dead after dead_window/batch silent batches.
void sae_update_since_fired(int64_t m, int64_t batch, const int64_t* fire_count, int64_t* since_fired);

// batchtopk's (and matryoshka's) inference threshold: the first batch sets it, later ones move it by (1 - decay) towards their
// min_kept.
struct SaeThreshold {
    double value = 0;
    int64_t updates = 0;
    void update(double min_kept, double decay = 0.99) {
        value = updates == 0 ? min_kept : decay * value + (1 - decay) * min_kept;
        ++updates;
    }
};

// Decoder rows to unit norm (rows of norm 0 are left as they are). Returns false when some row's norm was not
// finite (a cheap check of the parameters after an update).
template <typename T>
bool sae_normalize_decoder(int64_t m, int64_t d, T* W_dec);

// Removes from each decoder row's gradient its component along the row: g_j -= (g_j . w^_j) w^_j, w^ = w/||w||.
// Called before the optimizer, so a step moves the (unit) rows along their sphere to first order.
template <typename T>
void sae_project_decoder_grad(int64_t m, int64_t d, const T* W_dec, T* gW_dec);

// One Adam step over every parameter (models/optimizer.h's adam_update). touched [m] (null: dense) restricts W_enc
// columns, b_enc, W_dec rows and log_threshold to latents with touched_j != 0 (those with a gradient this step);
// b_dec is always updated. Dense is exact Adam: untouched rows still move on their momentum and decay their
// moments. Touched-only ("lazy Adam") skips that traffic (~28 bytes per parameter), which dominates at large m
// with few active latents per batch, at the price of stale moments and a different trajectory. encoder_panels:
// the four tensors' W_enc are in the encoder panels (their padding stays zero).
void sae_adam_update(const SaeSpec& spec, SaeTensors& params, const SaeTensors& grads, SaeTensors& moment1,
                     SaeTensors& moment2, const AdamStep& step, const uint8_t* touched = nullptr,
                     bool encoder_panels = false);

// What an SAE backend must do; SaeModel (models/sae_model.h) validates, counts steps and keeps the checkpoint
// layout, and delegates the rest. A backend owns the parameters, their Adam moments and the firing history where
// they are computed (host memory for the CPU, device memory for CUDA). Tensors cross as host views in SaeTensors
// order (log_threshold only for jumprelu), copied.
class SaeBackend {
public:
    virtual ~SaeBackend() = default;
    // A null tensor is left as it is.
    virtual void set_params(const SaeParams<float>& params) = 0;
    virtual void get_params(const SaeGrads<float>& params) const = 0;
    // Adam's two moments and tokens_since_fired [m]; null arguments set zeros.
    virtual void set_state(const SaeParams<float>* moment1, const SaeParams<float>* moment2,
                           const int64_t* since_fired) = 0;
    virtual void get_state(const SaeGrads<float>& moment1, const SaeGrads<float>& moment2,
                           int64_t* since_fired) const = 0;
    // One optimizer step on x [batch][d]: forward and backward (AuxK from the firing history), decoder-gradient
    // projection, Adam (touched latents only when sparse_updates), decoder renormalisation, firing history. When the
    // loss is not finite nothing after the forward pass runs (SaeLoss::applied).
    virtual SaeLoss train_step(const float* x, const AdamStep& step, bool sparse_updates) = 0;
    // Forward only on x [spec.batch][d] with this spec (shape and architecture the model's; batch, inference and
    // threshold may differ; no AuxK). x_hat [batch][d] and fire_count [m] (= the tokens each latent fired on) may
    // be null.
    virtual SaeLoss evaluate(const SaeSpec& spec, const float* x, float* x_hat, int64_t* fire_count) = 0;
    // The sparsity coefficients of the steps that follow (SaeSpec::l1_coefficient, l0_coefficient).
    virtual void set_sparsity_coefficients(float l1_coefficient, float l0_coefficient) = 0;
    // train_step on samples first .. first+batch-1 of synth's (stream, step) (first + batch <= 2^32), times scale,
    // drawn where this backend trains. False (nothing done) when this backend cannot take that synth's batches
    // where they are drawn; the caller then draws them on the host and calls train_step.
    virtual bool train_step_synth(const SynthBackend& /*synth*/, Stream /*stream*/, uint32_t /*step*/,
                                  uint32_t /*first*/, float /*scale*/, const AdamStep& /*step*/,
                                  bool /*sparse_updates*/, SaeLoss& /*loss*/) {
        return false;
    }
};

// The CPU backend: the fast path (sae_loss_and_grad_fast) in fp32. Parameters and state start at zero. With a
// shard, this rank's part of a split SAE: the data group's gradients are summed before the optimizer.
std::unique_ptr<SaeBackend> make_cpu_sae(const SaeSpec& spec, const SaeShard& shard = {});

// Initialisation: W_dec rows random unit vectors (normals from the Philox init stream, then normalised),
// W_enc = W_dec^T, b_enc = 0, b_dec = 0 (set it with one of the two functions below), log_threshold =
// log(initial_threshold) for jumprelu. first_latent: spec.m latents from this one of the whole dictionary, whose
// values they take (a shard's slice of the one-process init).
void sae_init(const SaeSpec& spec, uint64_t seed, SaeTensors& params, float initial_threshold = 1e-3f,
              int64_t first_latent = 0);

// The mean of n points x [n][d], accumulated in double.
std::vector<float> sae_data_mean(int64_t n, int64_t d, const float* x);

// The geometric median (argmin_c sum_t ||x_t - c||) of n points x [n][d] by Weiszfeld iterations from the mean,
// stopping after `iterations` or when a step moves less than tolerance * (1 + ||c||). A point closer than 1e-12
// to the current estimate is skipped for that iteration (its weight would be infinite).
std::vector<float> sae_geometric_median(int64_t n, int64_t d, const float* x, int iterations = 100,
                                        double tolerance = 1e-7);

}  // namespace ne
