// An SAE split across MPI ranks against the same SAE in one process, through the C ABI. Run without MPI, the test
// launches itself under mpirun (one thread per rank) for each grid of L latent shards x G data-parallel groups:
// 2x1, 1x2, 3x1, 1x3 and 2x2; without mpirun it is skipped (exit 77). Under MPI every rank also trains the
// one-process reference itself, on the whole batch (G x its own), so nothing but the split model crosses the network.
//
// For every architecture (topk and batchtopk with AuxK on latents dead after two silent batches, relu, jumprelu; and
// matryoshka_batchtopk on the data-parallel grids, the only split it takes), with dense and touched-rows Adam:
//  - the shard's initial parameters are the reference's slice, bit for bit (each rank draws its part of the stream);
//  - each step's statistics match the reference (dead and L0 exactly: they count choices), and after each step an
//    evaluation batch fires exactly the same latents (the shard's fire counts equal the reference's slice): the
//    top-k, batchtopk, AuxK, ReLU and JumpReLU choices are the one process's;
//  - after the steps the parameters agree within |a - b| <= 1e-6 + 1e-5 |b|: the split sums the reconstructions,
//    b_dec's gradient and the data groups' gradients in another order, so values differ by rounding (measured: at
//    most 1e-7 after 10 steps), never by a choice. Adam's eps is 1e-3 here, as in test_sae_parity: with 1e-8 the
//    first steps move a latent whose gradient cancels to ~1e-9 by a fraction of lr that depends on that rounding
//    (seen: 3.6e-4 on one b_enc of batchtopk, whose choices were all the same);
//  - two runs on the same grid are bit-identical, a run restored from a mid-run state equals the unbroken one, and
//    b_dec (replicated on every rank) is the same on all of them;
//  - a value that is not finite on one part of the grid (a batch of one data group, a decoder row of one shard) is
//    reported at the same step on every rank (non_finite_case).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "nativeengine.h"

namespace {

constexpr int64_t kD = 24, kM = 96, kK = 4, kBatch = 24, kSteps = 10;
constexpr float kLr = 3e-3f;

const char* arch_name(int32_t a) {
    static const char* names[] = {"topk", "batchtopk", "relu", "jumprelu", "matryoshka"};
    return names[a];
}

void ok(ne_status status, const char* call) {
    if (status != NE_OK) {
        std::printf("FAILED %s: %s\n", call, ne_last_error());
        std::exit(1);
    }
}
#define OK(call) ok((call), #call)

// Tokens [tokens][d]: each a sum of three atoms of a fixed random dictionary with coefficients in [0.5, 1.5], plus
// a little noise; a function of (batch index) alone, so every rank makes the same global batch.
std::vector<float> batch_of(int64_t index, int64_t tokens) {
    static std::vector<float> atoms = [] {
        std::mt19937 rng(12345);
        std::normal_distribution<float> normal;
        std::vector<float> a(64 * kD);
        for (int64_t i = 0; i < 64; ++i) {
            double sq = 0;
            for (int64_t j = 0; j < kD; ++j) sq += std::pow(a[i * kD + j] = normal(rng), 2);
            for (int64_t j = 0; j < kD; ++j) a[i * kD + j] /= static_cast<float>(std::sqrt(sq));
        }
        return a;
    }();
    std::mt19937 rng(static_cast<uint32_t>(1000 + index));
    std::uniform_int_distribution<int> pick(0, 63);
    std::uniform_real_distribution<float> coefficient(0.5f, 1.5f);
    std::normal_distribution<float> noise(0.0f, 0.01f);
    std::vector<float> x(tokens * kD);
    for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t j = 0; j < kD; ++j) x[t * kD + j] = noise(rng);
        for (int a = 0; a < 3; ++a) {
            const int atom = pick(rng);
            const float c = coefficient(rng);
            for (int64_t j = 0; j < kD; ++j) x[t * kD + j] += c * atoms[atom * kD + j];
        }
    }
    return x;
}

struct Params {
    std::vector<float> W_enc, b_enc, W_dec, b_dec, threshold;
};

Params params_of(const ne_sae* sae, int64_t m) {
    Params p{std::vector<float>(kD * m), std::vector<float>(m), std::vector<float>(m * kD), std::vector<float>(kD),
             std::vector<float>(m)};
    OK(ne_sae_get_params(sae, p.W_enc.data(), kD * m, p.b_enc.data(), m, p.W_dec.data(), m * kD, p.b_dec.data(), kD,
                         p.threshold.data(), m));
    return p;
}

std::vector<char> state_of(const ne_sae* sae) {
    int64_t bytes = 0;
    OK(ne_sae_state_size(sae, &bytes));
    std::vector<char> state(bytes);
    OK(ne_sae_get_state(sae, state.data(), bytes));
    return state;
}

// The reference's parameters cut to a shard's latents [first, first + m).
Params slice(const Params& whole, int64_t first, int64_t m) {
    Params p;
    for (int64_t i = 0; i < kD; ++i)
        p.W_enc.insert(p.W_enc.end(), whole.W_enc.begin() + i * kM + first, whole.W_enc.begin() + i * kM + first + m);
    p.b_enc.assign(whole.b_enc.begin() + first, whole.b_enc.begin() + first + m);
    p.W_dec.assign(whole.W_dec.begin() + first * kD, whole.W_dec.begin() + (first + m) * kD);
    p.b_dec = whole.b_dec;
    p.threshold.assign(whole.threshold.begin() + first, whole.threshold.begin() + first + m);
    return p;
}

bool same_bits(const Params& a, const Params& b) {
    auto eq = [](const std::vector<float>& x, const std::vector<float>& y) {
        return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
    };
    return eq(a.W_enc, b.W_enc) && eq(a.b_enc, b.b_enc) && eq(a.W_dec, b.W_dec) && eq(a.b_dec, b.b_dec) &&
           eq(a.threshold, b.threshold);
}

// The largest |a - b| - rtol |b| over every parameter (<= atol passes); rtol 0: the largest difference.
double excess(const Params& a, const Params& b, double rtol) {
    double worst = -1;
    auto scan = [&](const std::vector<float>& x, const std::vector<float>& y) {
        for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(x[i] - y[i]) - rtol * std::fabs(y[i]));
    };
    scan(a.W_enc, b.W_enc);
    scan(a.b_enc, b.b_enc);
    scan(a.W_dec, b.W_dec);
    scan(a.b_dec, b.b_dec);
    scan(a.threshold, b.threshold);
    return worst;
}

struct Grid {
    ne_comm* world;
    ne_comm* latents;  // the ranks of this rank's data group: one per latent shard
    ne_comm* data;     // the ranks of this rank's latent shard: one per data group
    int32_t rank, L, G, shard, group;
};

ne_sae_config config_of(int32_t arch, int32_t sparse, int64_t batch, int64_t all_tokens, int32_t level_auxk = 0) {
    ne_sae_config c{};
    c.architecture = arch;
    c.sparse_updates = sparse;
    c.d_in = kD;
    c.d_sae = kM;
    c.k = kK;
    c.batch_size = batch;
    c.dead_window = 2 * all_tokens;  // dead after two silent batches: AuxK works within the test
    c.l1_coefficient = 0.05f;
    c.l0_coefficient = 0.05f;
    c.auxk_alpha = 1.0f / 32;
    c.jump_bandwidth = 0.05f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-3f;  // see the file comment
    c.seed = 7;
    if (arch == NE_SAE_MATRYOSHKA_BATCHTOPK) {
        c.matryoshka_levels = 3;
        c.matryoshka_widths[0] = kM / 8;
        c.matryoshka_widths[1] = kM / 2;
        c.matryoshka_widths[2] = kM;
        c.matryoshka_aux_loss = level_auxk;
    }
    return c;
}

// Trains a shard from its initial parameters; when `at` is in [0, steps) its parameters and state at that step
// are copied out before the step.
void train_shard(ne_sae* sae, const Grid& g, int64_t from, int64_t to) {
    for (int64_t s = from; s < to; ++s) {
        const std::vector<float> x = batch_of(s, kBatch * g.G);
        OK(ne_sae_train_step(sae, x.data() + g.group * kBatch * kD, kBatch * kD, kLr, nullptr));
    }
}

void run_case(ne_context* ctx, const Grid& g, int32_t arch, int32_t sparse, int32_t level_auxk = 0) {
    const int64_t all = kBatch * g.G;
    ne_sae_config reference_config = config_of(arch, sparse, all, all, level_auxk);
    ne_sae_config shard_config = config_of(arch, sparse, kBatch, all, level_auxk);
    ne_sae *reference = nullptr, *shard = nullptr;
    OK(ne_sae_create(ctx, &reference_config, &reference));
    OK(ne_sae_create_sharded(ctx, &shard_config, g.latents, g.data, &shard));
    int64_t first = 0, m = 0;
    OK(ne_sae_shard(shard, &first, &m));
    CHECK(m == kM / g.L && first == g.shard * m);

    CHECK(same_bits(params_of(shard, m), slice(params_of(reference, kM), first, m)));
    const std::vector<float> sample = batch_of(-1, all);
    OK(ne_sae_init_decoder_bias(reference, sample.data(), all * kD, 1));
    OK(ne_sae_init_decoder_bias(shard, sample.data(), all * kD, 1));

    int64_t choices = 0, mismatched = 0, dead_seen = 0;
    bool stats_agree = true;
    for (int64_t s = 0; s < kSteps; ++s) {
        const std::vector<float> x = batch_of(s, all);
        ne_sae_stats a{}, b{};
        OK(ne_sae_train_step(reference, x.data(), all * kD, kLr, &a));
        OK(ne_sae_train_step(shard, x.data() + g.group * kBatch * kD, kBatch * kD, kLr, &b));
        stats_agree = stats_agree && b.dead == a.dead && b.l0 == a.l0 && ne_test::close(b.mse, a.mse, 1e-6, 1e-4) &&
                      ne_test::close(b.fvu, a.fvu, 1e-6, 1e-4) && ne_test::close(b.auxk, a.auxk, 1e-7, 1e-3) &&
                      ne_test::close(b.sparsity, a.sparsity, 1e-7, 1e-4) && b.steps == a.steps;
        dead_seen = std::max(dead_seen, a.dead);

        const std::vector<float> probe = batch_of(1000 + s, all);
        std::vector<int64_t> fire_all(kM, 0), fire(m, 0);
        OK(ne_sae_evaluate(reference, probe.data(), all * kD, nullptr, 0, fire_all.data(), kM, &a));
        OK(ne_sae_evaluate(shard, probe.data() + g.group * kBatch * kD, kBatch * kD, nullptr, 0, fire.data(), m, &b));
        for (int64_t j = 0; j < m; ++j) {
            choices += fire_all[first + j];
            mismatched += fire[j] != fire_all[first + j];
        }
        stats_agree = stats_agree && b.l0 == a.l0 && ne_test::close(b.mse, a.mse, 1e-6, 1e-4);
    }
    const Params whole = params_of(reference, kM), mine = params_of(shard, m);
    const double worst_here = excess(mine, slice(whole, first, m), 1e-5);
    // What rank 0 prints covers every rank: choices over the latent shards, the rest over the world.
    double worst = excess(mine, slice(whole, first, m), 0);
    int64_t counts[2] = {mismatched, dead_seen};
    OK(ne_comm_allreduce(g.latents, &choices, 1, NE_COMM_INT64, NE_COMM_SUM));
    OK(ne_comm_allreduce(g.world, &worst, 1, NE_COMM_DOUBLE, NE_COMM_MAX));
    OK(ne_comm_allreduce(g.world, counts, 2, NE_COMM_INT64, NE_COMM_MAX));
    mismatched = counts[0];
    dead_seen = counts[1];
    if (g.rank == 0)
        std::printf("  %dx%d %-9s %s%s: %lld codes fired on the probes, %lld latents' counts differ; parameters "
                    "differ by at most %.1e; dead latents up to %lld\n",
                    g.L, g.G, arch_name(arch), sparse ? "sparse" : "dense ", level_auxk ? " (AuxK per level)" : "",
                    static_cast<long long>(choices),
                    static_cast<long long>(mismatched), worst, static_cast<long long>(dead_seen));
    CHECK(stats_agree);
    CHECK(mismatched == 0);
    CHECK(choices > 0);
    CHECK(worst_here <= 1e-6);
    if (arch != NE_SAE_RELU && arch != NE_SAE_JUMPRELU) CHECK(dead_seen > 0);  // AuxK was exercised

    // b_dec is replicated: the same bits on every rank.
    int32_t world_size = 0, world_rank = 0;
    OK(ne_comm_rank(g.world, &world_rank, &world_size));
    std::vector<float> every(kD * world_size);
    OK(ne_comm_allgather(g.world, mine.b_dec.data(), kD * 4, every.data(), kD * 4 * world_size));
    for (int32_t r = 1; r < world_size; ++r) CHECK(std::memcmp(every.data(), every.data() + r * kD, kD * 4) == 0);

    // A second run is bit-identical, and so is a third restored from the second's state half-way.
    ne_sae *again = nullptr, *resumed = nullptr;
    OK(ne_sae_create_sharded(ctx, &shard_config, g.latents, g.data, &again));
    OK(ne_sae_init_decoder_bias(again, sample.data(), all * kD, 1));
    train_shard(again, g, 0, kSteps / 2);
    const Params half = params_of(again, m);
    const std::vector<char> state = state_of(again);
    train_shard(again, g, kSteps / 2, kSteps);
    CHECK(same_bits(params_of(again, m), mine));
    CHECK(state_of(again) == state_of(shard));
    OK(ne_sae_create_sharded(ctx, &shard_config, g.latents, g.data, &resumed));
    const bool jump = arch == NE_SAE_JUMPRELU;
    OK(ne_sae_restore(resumed, half.W_enc.data(), kD * m, half.b_enc.data(), m, half.W_dec.data(), m * kD,
                      half.b_dec.data(), kD, jump ? half.threshold.data() : nullptr, jump ? m : 0, state.data(),
                      static_cast<int64_t>(state.size())));
    train_shard(resumed, g, kSteps / 2, kSteps);
    CHECK(same_bits(params_of(resumed, m), mine));

    for (ne_sae* sae : {reference, shard, again, resumed}) ne_sae_destroy(sae);
}

// What ne_sae_non_finite reports, the same on every rank of the world (the first rank's, checked against the others').
ne_non_finite agreed_non_finite(const ne_sae* sae, const Grid& g) {
    ne_non_finite mine{};
    OK(ne_sae_non_finite(sae, &mine));
    int32_t size = 0, rank = 0;
    OK(ne_comm_rank(g.world, &rank, &size));
    const int64_t fields[2] = {mine.step, mine.quantity};
    std::vector<int64_t> every(2 * size);
    OK(ne_comm_allgather(g.world, fields, sizeof fields, every.data(), static_cast<int64_t>(every.size() * 8)));
    for (int32_t r = 1; r < size; ++r) CHECK(every[2 * r] == every[0] && every[2 * r + 1] == every[1]);
    return mine;
}

// A value that is not finite on one part of the grid stops every rank at the same step:
//  - a batch holding NaN in the last data group only: every rank skips that step (its parameters stay as they were)
//    and reports it as the step's loss; the next finite batch trains on every rank again;
//  - a decoder row that the update leaves infinite on the last latent shard only (a ReLU latent that never fires,
//    so the loss stays finite): every rank reports the step's parameters.
void non_finite_case(ne_context* ctx, const Grid& g) {
    const int64_t all = kBatch * g.G;
    ne_sae_config c = config_of(NE_SAE_RELU, 0, kBatch, all);
    ne_sae* sae = nullptr;
    OK(ne_sae_create_sharded(ctx, &c, g.latents, g.data, &sae));
    int64_t first = 0, m = 0;
    OK(ne_sae_shard(sae, &first, &m));
    const std::vector<float> sample = batch_of(-1, all);
    OK(ne_sae_init_decoder_bias(sae, sample.data(), all * kD, 1));
    train_shard(sae, g, 0, 2);
    const Params before = params_of(sae, m);
    std::vector<float> x = batch_of(2, all);
    x[(g.G - 1) * kBatch * kD + 5] = std::nanf("");
    ne_sae_stats stats{};
    OK(ne_sae_train_step(sae, x.data() + g.group * kBatch * kD, kBatch * kD, kLr, &stats));
    const ne_non_finite loss = agreed_non_finite(sae, g);
    CHECK(loss.step == 3 && loss.quantity == NE_NON_FINITE_LOSS && stats.steps == 2);
    CHECK(same_bits(params_of(sae, m), before));
    x = batch_of(3, all);
    OK(ne_sae_train_step(sae, x.data() + g.group * kBatch * kD, kBatch * kD, kLr, &stats));
    CHECK(stats.steps == 3);

    // A fresh start from the trained parameters, with latent 0 of the last shard silenced and its decoder row infinite.
    Params p = params_of(sae, m);
    if (g.shard == g.L - 1) {
        for (int64_t i = 0; i < kD; ++i) p.W_enc[i * m] = 0.0f;
        p.b_enc[0] = -1.0f;
        p.W_dec[0] = INFINITY;
    }
    const std::vector<char> state = state_of(sae);
    OK(ne_sae_restore(sae, p.W_enc.data(), kD * m, p.b_enc.data(), m, p.W_dec.data(), m * kD, p.b_dec.data(), kD, nullptr,
                      0, state.data(), static_cast<int64_t>(state.size())));
    x = batch_of(4, all);
    OK(ne_sae_train_step(sae, x.data() + g.group * kBatch * kD, kBatch * kD, kLr, &stats));
    const ne_non_finite parameters = agreed_non_finite(sae, g);
    CHECK(std::isfinite(stats.mse) && stats.steps == 4);
    CHECK(parameters.step == 4 && parameters.quantity == NE_NON_FINITE_PARAMETERS);
    if (g.rank == 0)
        std::printf("  %dx%d non-finite: a NaN batch in the last data group stops every rank at step %lld (%s); an infinite "
                    "decoder row on the last shard at step %lld (%s)\n",
                    g.L, g.G, static_cast<long long>(loss.step), loss.quantity == NE_NON_FINITE_LOSS ? "loss" : "?",
                    static_cast<long long>(parameters.step),
                    parameters.quantity == NE_NON_FINITE_PARAMETERS ? "parameters" : "?");
    ne_sae_destroy(sae);
}

int run_grid(int32_t L, int32_t G) {
    Grid g{};
    g.L = L;
    g.G = G;
    OK(ne_comm_world(&g.world));
    int32_t size = 0;
    OK(ne_comm_rank(g.world, &g.rank, &size));
    if (size != L * G) {
        std::printf("FAILED: launched with %d ranks for a %dx%d grid\n", size, L, G);
        return 1;
    }
    g.group = g.rank / L;
    g.shard = g.rank % L;
    OK(ne_comm_split(g.world, g.group, g.shard, &g.latents));
    OK(ne_comm_split(g.world, g.shard, g.group, &g.data));
    ne_context* ctx = nullptr;
    OK(ne_context_create(NE_BACKEND_CPU, 0, &ctx));
    for (int32_t arch : {NE_SAE_TOPK, NE_SAE_BATCHTOPK, NE_SAE_RELU, NE_SAE_JUMPRELU})
        for (int32_t sparse : {0, 1}) run_case(ctx, g, arch, sparse);
    // matryoshka_batchtopk splits across data groups only; matching_pursuit runs in one process.
    if (L == 1) {
        for (int32_t sparse : {0, 1}) run_case(ctx, g, NE_SAE_MATRYOSHKA_BATCHTOPK, sparse);
        run_case(ctx, g, NE_SAE_MATRYOSHKA_BATCHTOPK, 1, 1);  // AuxK per level: its terms summed over the data ranks
    }
    for (int32_t arch : {NE_SAE_MATRYOSHKA_BATCHTOPK, NE_SAE_MATCHING_PURSUIT}) {
        if (arch == NE_SAE_MATRYOSHKA_BATCHTOPK && L == 1) continue;
        ne_sae_config c = config_of(arch, 0, kBatch, kBatch * G);
        ne_sae* refused = nullptr;
        CHECK(ne_sae_create_sharded(ctx, &c, g.latents, g.data, &refused) == NE_ERR_INVALID_ARGUMENT);
        CHECK(std::strstr(ne_last_error(), arch == NE_SAE_MATCHING_PURSUIT ? "one process" : "latent shards") != nullptr);
    }
    non_finite_case(ctx, g);
    ne_context_destroy(ctx);
    ne_comm_destroy(g.latents);
    ne_comm_destroy(g.data);

    // Any rank's failure fails the job: its exit code reaches mpirun.
    int64_t failed = ne_test::failures;
    OK(ne_comm_allreduce(g.world, &failed, 1, NE_COMM_INT64, NE_COMM_MAX));
    ne_comm_destroy(g.world);
    OK(ne_mpi_finalize());
    if (g.rank != 0) return ne_test::failures == 0 ? 0 : 1;
    return failed == 0 ? ne_test::finish("test_distributed") : 1;
}

std::string find_mpirun() {
    const char* path = std::getenv("PATH");
    std::string dirs = path != nullptr ? path : "";
    size_t start = 0;
    while (start <= dirs.size()) {
        const size_t end = std::min(dirs.find(':', start), dirs.size());
        const std::string candidate = dirs.substr(start, end - start) + "/mpirun";
        if (end > start && access(candidate.c_str(), X_OK) == 0) return candidate;
        start = end + 1;
    }
    return "";
}

int drive() {
    char self[4096] = "";
    if (readlink("/proc/self/exe", self, sizeof self - 1) <= 0) std::strcpy(self, "test_distributed");
    ne_mpi_info info{};
    OK(ne_mpi_query(&info));
    if (!info.plugin_loaded) {
        std::printf("ignored: the MPI plugin is not available: %s\n", info.reason);
        return ne_test::kSkipped;
    }
    const std::string mpirun = find_mpirun();
    if (mpirun.empty()) {
        std::printf("ignored: no mpirun on PATH (install openmpi-bin)\n");
        return ne_test::kSkipped;
    }
    std::printf("%s; %s\n", info.library, mpirun.c_str());
    for (auto [L, G] : {std::pair{2, 1}, {1, 2}, {3, 1}, {1, 3}, {2, 2}}) {
        std::printf("grid %d latent shards x %d data groups:\n", L, G);
        std::fflush(stdout);
        const std::string command = "OMP_NUM_THREADS=1 timeout 300 " + mpirun + " -np " + std::to_string(L * G) +
                                    " --oversubscribe --allow-run-as-root " + std::string(self) + " --grid " + std::to_string(L) +
                                    " " + std::to_string(G);
        const int status = std::system(command.c_str());
        if (status != 0) std::printf("FAILED: %s exited with status %d\n", command.c_str(), status);
        CHECK(status == 0);
    }
    return ne_test::finish("test_distributed");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 4 && std::strcmp(argv[1], "--grid") == 0) return run_grid(std::atoi(argv[2]), std::atoi(argv[3]));
    return drive();
}
