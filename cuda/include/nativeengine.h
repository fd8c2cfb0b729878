/*
 * nativeengine.h — the whole C ABI of libnativeengine.
 *
 * Rules every function follows:
 *  - returns ne_status (NE_OK = 0); on failure ne_last_error() holds a message, thread-local, that names the
 *    argument, value or CUDA call that failed. No C++ exception, abort or exit ever leaves the library.
 *  - handles are opaque; every create has a destroy that accepts NULL.
 *  - buffers cross as pointer + element count; the library copies to or from its own (possibly device)
 *    memory and never keeps a caller's pointer. Sizes and counts are 64-bit.
 *  - structs are blittable: fixed-width fields, int32_t flags, no bool. Each has a size query so a binding can
 *    check its mirror.
 */
#ifndef NATIVEENGINE_H
#define NATIVEENGINE_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  define NE_API __declspec(dllexport)
#else
#  define NE_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status and errors ------------------------------------------------------------------------------ */

/* Must stay in sync with NativeEngine.Interop.Status. */
typedef enum ne_status {
    NE_OK = 0,
    NE_ERR_INVALID_ARGUMENT = 1,   /* an argument is null, out of range or inconsistent */
    NE_ERR_OUT_OF_MEMORY = 2,      /* host or device allocation failed */
    NE_ERR_BACKEND_UNAVAILABLE = 3,/* the requested backend is not built, not loadable, or has no device */
    NE_ERR_CUDA = 4,               /* a CUDA runtime call or kernel launch failed */
    NE_ERR_UNSUPPORTED = 5,        /* valid request this backend cannot serve (e.g. too large for a kernel) */
    NE_ERR_INTERNAL = 6            /* a bug: an unexpected exception inside the library */
} ne_status;

/* Message of the last failed call on this thread ("" if none). Valid until the next call on this thread. */
NE_API const char* ne_last_error(void);
/* Static name of a status, e.g. "NE_ERR_INVALID_ARGUMENT". */
NE_API const char* ne_status_name(int32_t status);
/* Library version, "MAJOR.MINOR.PATCH". */
NE_API const char* ne_version(void);
/* Version of this ABI: raised whenever a function, struct or enum here changes. A binding built against another
 * version must not call the library (the C# binding checks it on load). */
#define NE_ABI_VERSION 7
NE_API int32_t ne_abi_version(void);

/* ---- backends and contexts -------------------------------------------------------------------------- */

/* Must stay in sync with NativeEngine.Interop.Backend. */
typedef enum ne_backend {
    NE_BACKEND_AUTO = 0,  /* CUDA when a device is present, else CPU */
    NE_BACKEND_CPU = 1,
    NE_BACKEND_CUDA = 2
} ne_backend;

typedef struct ne_runtime_info {
    int32_t cuda_compiled;      /* 1 when libnativeengine_cuda was found next to this library */
    int32_t cuda_loaded;        /* 1 when it loaded and initialised (loaded only where the CUDA driver reports a device) */
    int32_t cuda_device_count;  /* devices the CUDA runtime reports (0 without a driver or GPU) */
    int32_t cpu_threads;        /* OpenMP threads the CPU backend uses */
    int32_t nvtx;               /* 1 when NVTX ranges are compiled in (Nsight shows the "nativeengine" domain) */
    int32_t reserved;
} ne_runtime_info;

NE_API size_t ne_runtime_info_size(void);
NE_API ne_status ne_runtime_query(ne_runtime_info* out);
/* Why the CUDA backend is unusable ("" when it is usable): missing plugin, load error, no device. */
NE_API const char* ne_cuda_unavailable_reason(void);

typedef struct ne_device_info {
    int32_t backend;          /* ne_backend actually in use: CPU or CUDA, never AUTO */
    int32_t device_index;     /* CUDA ordinal; 0 for CPU */
    int64_t total_memory;     /* bytes: device memory, or host RAM for the CPU backend */
    int64_t free_memory;      /* bytes available now */
    int32_t compute_major;    /* CUDA compute capability; 0 for CPU */
    int32_t compute_minor;
    int32_t multiprocessors;  /* SMs, or CPU threads */
    int32_t reserved;
    char name[128];           /* NUL-terminated device or CPU model name */
} ne_device_info;

typedef struct ne_context ne_context;

NE_API size_t ne_device_info_size(void);
/* backend: ne_backend; device: CUDA ordinal (ignored for CPU). The NE_BACKEND environment variable
 * ("auto" | "cpu" | "cuda") overrides NE_BACKEND_AUTO only. */
NE_API ne_status ne_context_create(int32_t backend, int32_t device, ne_context** out);
NE_API ne_status ne_context_destroy(ne_context* ctx);
NE_API ne_status ne_context_device_info(const ne_context* ctx, ne_device_info* out);

/* ---- capabilities --------------------------------------------------------------------------------------- */

/* What a context's backend can run, asked up front instead of found by trying. A mask has bit (1 << value) set for
 * each value of its enum that the backend serves. */
typedef struct ne_capabilities {
    int32_t backend;            /* ne_backend of the context: CPU or CUDA */
    int32_t toy_models;         /* mask of ne_toy_model */
    int32_t moe_noise;          /* mask of ne_moe_noise */
    int32_t sae_architectures;  /* mask of ne_sae_architecture */
    int32_t sae_precisions;     /* mask of ne_sae_precision: the inputs the SAE encoder GEMM takes */
    int32_t sgemm;              /* 1: ne_sgemm runs on this context */
    int64_t max_shared_bytes;   /* CUDA: the shared memory one block of the fused toy and MoE kernels may use, which
                                   bounds n_features * n_hidden per instance; 0 on the CPU, which has no such bound */
    int64_t max_sae_slots;      /* the largest batch_size * (k + k_aux) an SAE step may hold (CUDA sorts them with
                                   32-bit indices); INT64_MAX on the CPU */
} ne_capabilities;

NE_API size_t ne_capabilities_size(void);
NE_API ne_status ne_context_capabilities(const ne_context* ctx, ne_capabilities* out);

/* Each model family also answers, for one config, whether ctx can run it without creating it
 * (ne_context_supports_toy, _moe, _sae below). NE_OK: it can. NE_ERR_INVALID_ARGUMENT: the config is invalid on
 * every backend. NE_ERR_UNSUPPORTED: valid, but beyond this backend (a precision it lacks, a size past its
 * kernels' limits). Either way ne_last_error() names the field, its value and what would be valid. The create
 * functions make exactly these checks. */

/* ---- communicators: one run across several processes --------------------------------------------------- */

/* A run launched by mpirun or srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK or SLURM_NTASKS set) talks MPI through
 * the optional plugin libnativeengine_mpi (built when MPI is found; NE_MPI=0 turns it off). Otherwise the world is
 * this one process and every collective is the identity. Collectives block and must be called by every rank of the
 * communicator in the same order. */

/* Must stay in sync with NativeEngine.Interop.CommType and CommOp. */
typedef enum ne_comm_type { NE_COMM_FLOAT = 0, NE_COMM_DOUBLE = 1, NE_COMM_INT64 = 2, NE_COMM_UINT8 = 3 } ne_comm_type;
typedef enum ne_comm_op { NE_COMM_SUM = 0, NE_COMM_MAX = 1, NE_COMM_MIN = 2 } ne_comm_op;

typedef struct ne_mpi_info {
    int32_t plugin_found;   /* libnativeengine_mpi was built (MPI was found at build time) */
    int32_t plugin_loaded;  /* it loads: the MPI library is installed here */
    int32_t launched;       /* this process was started by mpirun or srun */
    int32_t initialized;    /* MPI runs in this process (started by this query when launched) */
    int32_t world_rank;     /* 0 when not initialized */
    int32_t world_size;     /* 1 when not initialized */
    char library[256];      /* the MPI library's version line; "" when the plugin does not load */
    char reason[256];       /* why MPI is not used; "" when initialized */
    int32_t nccl_loaded;    /* libnccl.so.2 loads in the CUDA backend (collectives on device memory) */
    int32_t reserved;
    char nccl[256];         /* "NCCL x.y.z", or why it is unavailable */
} ne_mpi_info;

/* What one rank contributed to a communicator's collectives so far (the payload, before the MPI algorithm's own
 * copies: a ring allreduce of n bytes sends about 2n(P-1)/P). */
typedef struct ne_comm_counters {
    int64_t calls;            /* collectives called */
    int64_t allreduce_bytes;  /* the buffer of each allreduce */
    int64_t allgather_bytes;  /* this rank's part of each allgather and gather */
    int64_t broadcast_bytes;  /* the buffer of each broadcast */
    int64_t best_bytes;       /* the lists of each best-k merge (the sharded top-k selections) */
} ne_comm_counters;

typedef struct ne_comm ne_comm;

NE_API size_t ne_mpi_info_size(void);
NE_API size_t ne_comm_counters_size(void);
/* Whether MPI was built and found, and when launched under it, this process's rank; whether NCCL loads. */
NE_API ne_status ne_mpi_query(ne_mpi_info* out);
/* The world (starting MPI on the first call when launched under it). NE_ERR_BACKEND_UNAVAILABLE when launched by an
 * MPI launcher but the plugin cannot start MPI. Each handle is destroyed on its own; the world stays. */
NE_API ne_status ne_comm_world(ne_comm** out);
/* The ranks passing the same color (>= 0) form one communicator, ordered by key. */
NE_API ne_status ne_comm_split(ne_comm* comm, int32_t color, int32_t key, ne_comm** out);
NE_API ne_status ne_comm_destroy(ne_comm* comm);
NE_API ne_status ne_comm_rank(const ne_comm* comm, int32_t* rank, int32_t* size);
/* buffer [count] of type (ne_comm_type) becomes the element-wise op (ne_comm_op) over the ranks. */
NE_API ne_status ne_comm_allreduce(ne_comm* comm, void* buffer, int64_t count, int32_t type, int32_t op);
/* receive [size][bytes]: each rank's send in rank order; receive_bytes must be size * bytes. */
NE_API ne_status ne_comm_allgather(ne_comm* comm, const void* send, int64_t bytes, void* receive, int64_t receive_bytes);
/* As allgather, to root only (receive may be NULL with receive_bytes 0 elsewhere). */
NE_API ne_status ne_comm_gather(ne_comm* comm, const void* send, int64_t bytes, void* receive, int64_t receive_bytes,
                                int32_t root);
NE_API ne_status ne_comm_broadcast(ne_comm* comm, void* buffer, int64_t bytes, int32_t root);
NE_API ne_status ne_comm_barrier(ne_comm* comm);
NE_API ne_status ne_comm_counters_get(const ne_comm* comm, ne_comm_counters* out);
/* Ends every process of the run with exit code `code` (MPI_Abort), so no rank waits for one that failed; returns
 * NE_OK without doing anything in a single process. */
NE_API ne_status ne_comm_abort(ne_comm* comm, int32_t code);
/* Finalises MPI when it was started (it also runs at exit); call after the last collective. */
NE_API ne_status ne_mpi_finalize(void);

/* ---- non-finite training values ----------------------------------------------------------------------- */

/* Must stay in sync with NativeEngine.Interop.NonFiniteQuantity. */
typedef enum ne_non_finite_quantity {
    NE_NON_FINITE_NONE = 0,       /* every step so far was finite */
    NE_NON_FINITE_LOSS = 1,       /* the loss of a step's batch, or its gradient: the step was not applied */
    NE_NON_FINITE_PARAMETERS = 2  /* a parameter after an update (SAE: a decoder row's norm) */
} ne_non_finite_quantity;

/* Where training first met a value that is not finite (NaN or infinity). Every model checks each step before
 * applying it: a step whose loss or gradient is not finite is not applied, and that instance takes no further
 * updates, so the parameters read afterwards are those of its last finite step. */
typedef struct ne_non_finite {
    int64_t step;      /* 1-based number of the first such step (the count of steps including it); 0: none */
    int64_t instance;  /* the instance it happened to first (lowest index on a tie); 0 for an SAE */
    int32_t quantity;  /* ne_non_finite_quantity */
    int32_t reserved;
} ne_non_finite;

NE_API size_t ne_non_finite_size(void);

/* ---- toy models of superposition --------------------------------------------------------------------- */

/* Must stay in sync with NativeEngine.Interop.ToyModelKind. */
/* W is [n][m]: row i is feature i's direction in the m hidden dimensions; h are the hidden activations. */
typedef enum ne_toy_model {
    NE_TOY_LINEAR = 0,       /* h = W^T x, x' = W h + b */
    NE_TOY_RELU_OUTPUT = 1,  /* h = W^T x, x' = ReLU(W h + b) */
    NE_TOY_RELU_HIDDEN = 2,  /* h = ReLU(W^T x), x' = ReLU(W h + b): privileged basis, tied, no hidden bias */
    NE_TOY_ABS_VALUE = 3     /* h = ReLU(W^T x), x' = ReLU(W_out h + b), untied; x ~ U[-1,1) when present,
                                target |x| */
} ne_toy_model;

/* Must stay in sync with NativeEngine.Interop.FeatureSetKind. */
typedef enum ne_feature_set_kind {
    NE_FEATURES_INDEPENDENT = 0,   /* each feature fires on its own draw (no set) */
    NE_FEATURES_CORRELATED = 1,    /* the set's features fire together: one shared draw */
    NE_FEATURES_ANTICORRELATED = 2 /* when the set is on, exactly one member, chosen uniformly, fires */
} ne_feature_set_kind;

typedef enum ne_optimizer {
    NE_OPTIMIZER_ADAMW = 0,  /* decoupled weight decay (PyTorch AdamW) */
    NE_OPTIMIZER_ADAM = 1    /* weight decay added to the gradient (PyTorch Adam) */
} ne_optimizer;

typedef struct ne_toy_config {
    int32_t model;           /* ne_toy_model */
    int32_t optimizer;       /* ne_optimizer */
    int64_t n_features;      /* n >= 1 */
    int64_t n_hidden;        /* m >= 1 */
    int64_t n_instances;     /* independent models trained together, >= 1 */
    int64_t batch_size;      /* fresh samples per step, >= 1 */
    float lr;                /* > 0 */
    float weight_decay;      /* >= 0 */
    float beta1;             /* in [0, 1) */
    float beta2;             /* in [0, 1) */
    float eps;               /* > 0 */
    int32_t reserved;
    uint64_t seed;           /* keys the Philox streams of initialisation and data */
} ne_toy_config;

typedef struct ne_toy ne_toy;

NE_API size_t ne_toy_config_size(void);
NE_API ne_status ne_context_supports_toy(const ne_context* ctx, const ne_toy_config* config);
/* importance, feature_probability: [n_instances][n_features], row-major; counts must equal I*n.
 * Parameters start at the xavier-normal init over the (instances, n, m) tensor (W, and W_out for untied
 * models, from disjoint random streams), b = 0.
 * Training minimises the importance-weighted MSE (mean over batch and features) plus, per instance, the L1
 * penalty l1 * mean over the batch of ||h||_1 (0 unless set with ne_toy_set_l1). */
NE_API ne_status ne_toy_create(ne_context* ctx, const ne_toy_config* config,
                               const float* importance, int64_t importance_count,
                               const float* feature_probability, int64_t probability_count,
                               ne_toy** out);
/* A part of a batch of models split across ranks: its config->n_instances instances (with their importance and
 * feature_probability rows) are [first_instance, first_instance + n_instances) of total_instances, and train exactly
 * as those instances of the whole would: their initial parameters are the whole's slice (xavier over total_instances)
 * and their data streams the whole's. Instances are independent, so nothing crosses between parts. */
NE_API ne_status ne_toy_create_part(ne_context* ctx, const ne_toy_config* config, int64_t first_instance,
                                    int64_t total_instances, const float* importance, int64_t importance_count,
                                    const float* feature_probability, int64_t probability_count, ne_toy** out);
NE_API ne_status ne_toy_destroy(ne_toy* toy);
/* The L1 coefficient of each instance, l1: [n_instances], finite and >= 0. Takes effect from the next step. */
NE_API ne_status ne_toy_set_l1(ne_toy* toy, const float* l1, int64_t l1_count);
/* Groups features into sets. set_of_feature: [n_features], the set index of each feature or -1 for none;
 * set_kind: [set_count], an ne_feature_set_kind other than independent. Each set needs at least 2 members,
 * all with the same feature probability in every instance: the set is on with that probability. Changes
 * the data stream from the next step (and what ne_toy_sample_batch returns). */
NE_API ne_status ne_toy_set_feature_sets(ne_toy* toy, const int32_t* set_of_feature, int64_t feature_count,
                                         const int32_t* set_kind, int64_t set_count);
/* Runs `steps` optimizer steps (data generation, forward, backward, update) on the model's backend. */
NE_API ne_status ne_toy_train(ne_toy* toy, int64_t steps);
NE_API ne_status ne_toy_steps_done(const ne_toy* toy, int64_t* out);
/* The first step whose loss was not finite, if any (see ne_non_finite). */
NE_API ne_status ne_toy_non_finite(const ne_toy* toy, ne_non_finite* out);
/* Means per instance over `batches` fresh batches drawn from a stream disjoint from training's; no update.
 * loss: [n_instances], the importance-weighted MSE alone, so models trained with different l1 compare on
 * the task; penalty: [n_instances], the L1 term (count 0 to skip it). Their sum is what training
 * minimises. */
NE_API ne_status ne_toy_evaluate(ne_toy* toy, int64_t batches, float* loss, int64_t loss_count, float* penalty,
                                 int64_t penalty_count);
/* W: [n_instances][n_features][n_hidden] (row i is feature i's direction); b: [n_instances][n_features].
 * W_out: same shape, row i the weights from the hidden layer to output i; untied models (abs_value) only,
 * count 0 for the others (the pointer is then ignored). */
NE_API ne_status ne_toy_get_params(const ne_toy* toy, float* W, int64_t w_count, float* W_out, int64_t w_out_count,
                                   float* b, int64_t b_count);
/* Replaces the parameters (W_out as in ne_toy_get_params); the optimizer state is reset. */
NE_API ne_status ne_toy_set_params(ne_toy* toy, const float* W, int64_t w_count, const float* W_out,
                                   int64_t w_out_count, const float* b, int64_t b_count);
/* The batch training draws at `step` for one instance: x [batch_size][n_features]. Lets callers check the
 * data stream (identical on every backend). */
NE_API ne_status ne_toy_sample_batch(const ne_toy* toy, int64_t step, int64_t instance, float* x, int64_t x_count);

/* ---- mixture-of-experts toy models -------------------------------------------------------------------- */

/* Must stay in sync with NativeEngine.Interop.RouterNoise. */
typedef enum ne_moe_noise {
    NE_MOE_NOISE_NONE = 0,
    NE_MOE_NOISE_NOISY_TOPK = 1, /* H = x W_g + N(0,1) * softplus(x W_noise) (Shazeer et al. 2017), training only */
    NE_MOE_NOISE_JITTER = 2      /* the router sees x * U[1 - 0.01, 1 + 0.01] per element (Switch), training only */
} ne_moe_noise;

/* E experts, each a toy model of width expert_hidden (x' = ReLU(W_e h + b_e), h = W_e^T x or ReLU(W_e^T x));
 * a router g = softmax(H), H = x W_g (+ noise), picks top_k experts by H + route_bias; the output is
 * sum over the chosen experts of gate_e * expert_e(x), gate_e = g_e, or g_e / sum of the chosen g when
 * renormalize. Loss per instance: importance-weighted MSE (mean over batch and features)
 * + l1 * mean over the batch of the chosen experts' ||h||_1
 * + load_balance * E * sum_e f_e P_e   (f_e: fraction of routed slots, P_e: mean router probability)
 * + z_loss * mean over the batch of (logsumexp H)^2.
 * With capacity_factor > 0 an expert takes at most ceil(capacity_factor * batch * top_k / E) slots per
 * batch, in token order; the rest are dropped (no output, no gradient). bias_update u > 0 moves
 * route_bias_e by u * sign(mean load - load_e) after each step (balancing without an auxiliary loss). */
typedef struct ne_moe_config {
    int32_t expert_model;    /* NE_TOY_RELU_OUTPUT or NE_TOY_RELU_HIDDEN */
    int32_t optimizer;       /* ne_optimizer */
    int64_t n_features;      /* n >= 1 */
    int64_t expert_hidden;   /* m >= 1, per expert */
    int64_t n_experts;       /* E >= 1 */
    int64_t top_k;           /* 1 <= k <= E */
    int64_t n_instances;     /* >= 1 */
    int64_t batch_size;      /* >= 1 */
    float lr, weight_decay, beta1, beta2, eps;  /* as in ne_toy_config */
    int32_t renormalize;     /* 1: gates renormalised over the chosen experts */
    int32_t noise;           /* ne_moe_noise */
    float load_balance;      /* alpha >= 0 */
    float z_loss;            /* c >= 0 */
    float bias_update;       /* u >= 0 */
    float capacity_factor;   /* 0: dropless; else > 0 */
    int32_t reserved;
    uint64_t seed;
} ne_moe_config;

typedef struct ne_moe ne_moe;

/* Fields per instance of ne_moe_evaluate's output, in order, followed by the E usages. */
#define NE_MOE_EVAL_FIELDS 5 /* loss, l1_penalty, balance_loss, z_loss, dropped_fraction */

NE_API size_t ne_moe_config_size(void);
NE_API ne_status ne_context_supports_moe(const ne_context* ctx, const ne_moe_config* config);
/* importance, feature_probability: [n_instances][n_features]. W_e start xavier-normal like a toy model's,
 * W_g xavier-normal, W_noise and route_bias zero. */
NE_API ne_status ne_moe_create(ne_context* ctx, const ne_moe_config* config, const float* importance,
                               int64_t importance_count, const float* feature_probability, int64_t probability_count,
                               ne_moe** out);
/* A part of a batch of MoE models split across ranks, as ne_toy_create_part. */
NE_API ne_status ne_moe_create_part(ne_context* ctx, const ne_moe_config* config, int64_t first_instance,
                                    int64_t total_instances, const float* importance, int64_t importance_count,
                                    const float* feature_probability, int64_t probability_count, ne_moe** out);
NE_API ne_status ne_moe_destroy(ne_moe* moe);
/* As ne_toy_set_l1 and ne_toy_set_feature_sets. */
NE_API ne_status ne_moe_set_l1(ne_moe* moe, const float* l1, int64_t l1_count);
NE_API ne_status ne_moe_set_feature_sets(ne_moe* moe, const int32_t* set_of_feature, int64_t feature_count,
                                         const int32_t* set_kind, int64_t set_count);
NE_API ne_status ne_moe_train(ne_moe* moe, int64_t steps);
NE_API ne_status ne_moe_steps_done(const ne_moe* moe, int64_t* out);
/* As ne_toy_non_finite. */
NE_API ne_status ne_moe_non_finite(const ne_moe* moe, ne_non_finite* out);
/* Means over `batches` evaluation batches (no noise, no update). out: [n_instances][NE_MOE_EVAL_FIELDS + E]:
 * loss, l1_penalty, balance_loss, z_loss, dropped_fraction, then usage_e = fraction of tokens routed to
 * expert e (before dropping; sums to top_k). */
NE_API ne_status ne_moe_evaluate(ne_moe* moe, int64_t batches, float* out, int64_t out_count);
/* W: [n_instances][E][n][m] (row i of expert e: feature i's direction there); b: [n_instances][E][n];
 * W_gate, W_noise: [n_instances][n][E]; route_bias: [n_instances][E]. */
NE_API ne_status ne_moe_get_params(const ne_moe* moe, float* W, int64_t w_count, float* b, int64_t b_count,
                                   float* W_gate, int64_t gate_count, float* W_noise, int64_t noise_count,
                                   float* route_bias, int64_t bias_count);
/* Replaces the parameters; the optimizer state is reset. */
NE_API ne_status ne_moe_set_params(ne_moe* moe, const float* W, int64_t w_count, const float* b, int64_t b_count,
                                   const float* W_gate, int64_t gate_count, const float* W_noise, int64_t noise_count,
                                   const float* route_bias, int64_t bias_count);

/* ---- sparse autoencoders (dictionary learning on activations) ---------------------------------------- */

/* Must stay in sync with NativeEngine.Interop.SaeArchitecture. */
typedef enum ne_sae_architecture {
    NE_SAE_TOPK = 0,       /* z = ReLU of the k largest pre-activations per token (Gao et al. 2024) */
    NE_SAE_BATCHTOPK = 1,  /* the k * batch largest over the batch; a threshold at inference */
    NE_SAE_RELU = 2,       /* z = ReLU(u), loss + l1_coefficient * sum_j z_j ||W_dec,j|| (Bricken et al. 2023) */
    NE_SAE_JUMPRELU = 3,   /* z = u * H(u - theta), learned theta by a straight-through estimator, L0 penalty */
    NE_SAE_MATRYOSHKA_BATCHTOPK = 4, /* batchtopk codes; the loss adds the reconstruction of every nested prefix of
                                        latents (matryoshka_widths, Bussmann et al. 2025); a threshold at inference */
    NE_SAE_MATCHING_PURSUIT = 5      /* no encoder: z by greedy matching pursuit on the decoder rows (Costa et al.
                                        2025); W_enc and b_enc are unused; one process */
} ne_sae_architecture;

/* The most nested widths of a matryoshka SAE (ne_sae_config.matryoshka_widths). */
#define NE_SAE_MAX_MATRYOSHKA_LEVELS 8

/* Must stay in sync with NativeEngine.Interop.SaePrecision. The inputs of the encoder GEMM u = (x - b_dec) W_enc;
 * accumulation, every other computation and the master weights stay fp32. tf32 and bf16 need the CUDA backend. */
typedef enum ne_sae_precision {
    NE_SAE_FP32 = 0,
    NE_SAE_TF32 = 1,  /* tensor cores round the inputs to tf32 (10-bit mantissa) */
    NE_SAE_BF16 = 2   /* bf16 copies of x - b_dec and W_enc (8-bit mantissa) */
} ne_sae_precision;

/* Encoder u = (x - b_dec) W_enc + b_enc, decoder x^ = z W_dec + b_dec (SAELens layout: W_enc [d_in][d_sae],
 * W_dec [d_sae][d_in]). Loss per batch: mean over tokens of ||x - x^||^2, plus the architecture's sparsity term,
 * plus auxk_alpha * AuxK (top-k_aux of the latents dead for dead_window tokens reconstructing the residual,
 * normalised by the residual's norm; topk, batchtopk and matryoshka_batchtopk). Adam; decoder rows unit-norm after
 * each step with the gradient component parallel to each row removed before it. */
typedef struct ne_sae_config {
    int32_t architecture;    /* ne_sae_architecture */
    int32_t sparse_updates;  /* 1: Adam updates only the latents with a gradient in the step (those that fired, AuxK's
                                dead latents, jumprelu's latents within half a bandwidth of their threshold; b_dec
                                always) */
    int64_t d_in;            /* d >= 1 */
    int64_t d_sae;           /* m >= 1 */
    int64_t k;               /* topk, batchtopk, matryoshka_batchtopk: 1..d_sae */
    int64_t k_aux;           /* AuxK codes per token; 0 = d_in / 2 */
    int64_t batch_size;      /* tokens per step */
    int64_t dead_window;     /* tokens without firing after which a latent is dead */
    float l1_coefficient;    /* relu */
    float l0_coefficient;    /* jumprelu */
    float auxk_alpha;        /* 0 disables AuxK */
    float jump_bandwidth;    /* jumprelu: width of the straight-through rectangle (1e-3 typical) */
    float beta1, beta2, eps; /* Adam */
    int32_t reserved;
    uint64_t seed;           /* keys the decoder's initialisation */
    int32_t precision;       /* ne_sae_precision; the CPU backend takes only NE_SAE_FP32 */
    int32_t reserved2;
    /* ABI 6. matryoshka_batchtopk: the levels' widths w_0 < w_1 < ... < w_{L-1} = d_sae (L = matryoshka_levels,
       1..NE_SAE_MAX_MATRYOSHKA_LEVELS); each inner level l < L-1 adds mean_t ||x - x^_l||^2 with
       x^_l = sum_{j < w_l} z_j W_dec,j + b_dec to the loss (reported as the stats' sparsity). 0 elsewhere. */
    int64_t matryoshka_widths[NE_SAE_MAX_MATRYOSHKA_LEVELS];
    int32_t matryoshka_levels;
    /* ABI 7. matryoshka_batchtopk: 1 gives AuxK one term per level (SAELens's use_matryoshka_aux_loss): level l's
       dead latents (those in w_{l-1}..w_l - 1) reconstruct x - x^_l with their own top min(k_aux, dead in the level),
       the term scaled by min(dead in the level / k_aux, 1); 0: one AuxK over every dead latent on x - x^. */
    int32_t matryoshka_aux_loss;
    /* ABI 6. matching_pursuit, per token from r = x - b_dec: pick the decoder row j of largest ReLU(r . W_dec,j)
       (lowest j on a tie), z_j += that value, r -= it times the row; stop after max_iterations steps (0: d_in),
       after a step that adds no latent to the support (stop_on_duplicate_support = 1), or once ||r|| <
       residual_threshold (> 0; <= 0: never). SAELens's defaults: 1e-2, 0 (d_in), 1. */
    float residual_threshold;
    int32_t max_iterations;
    int32_t stop_on_duplicate_support;
    int32_t reserved4;
} ne_sae_config;

/* What one step or evaluation measured (means over its tokens). */
typedef struct ne_sae_stats {
    double mse;       /* mean over tokens of ||x - x^||^2 */
    double sparsity;  /* the L1 (relu) or L0 (jumprelu) term, the inner levels' mse (matryoshka); 0 for topk */
    double auxk;      /* the AuxK term (already times auxk_alpha) */
    double fvu;       /* sum ||x - x^||^2 / sum ||x - mean x||^2 over the batch */
    double l0;        /* mean active latents per token */
    int64_t dead;     /* latents dead (no firing for dead_window tokens) */
    int64_t steps;    /* optimizer steps done */
} ne_sae_stats;

typedef struct ne_sae ne_sae;

NE_API size_t ne_sae_config_size(void);
NE_API size_t ne_sae_stats_size(void);
NE_API ne_status ne_context_supports_sae(const ne_context* ctx, const ne_sae_config* config);
/* Decoder rows random unit vectors, W_enc = W_dec^T, b_enc = 0, b_dec = 0 (see ne_sae_init_decoder_bias). */
NE_API ne_status ne_sae_create(ne_context* ctx, const ne_sae_config* config, ne_sae** out);
NE_API ne_status ne_sae_destroy(ne_sae* sae);
/* An SAE split across ranks, in a grid of two communicators (either may be NULL: one rank along it).
 * latents (L ranks): rank r holds latents [r * d_sae / L, (r + 1) * d_sae / L) (its W_enc columns, b_enc, W_dec rows,
 * thresholds, their Adam moments and firing history); every rank of it passes the same tokens. Codes are chosen
 * exactly as one process would (the global top-k, ties to the lower latent index; batchtopk and AuxK over all
 * latents), partial reconstructions are summed, and each rank computes the gradients of its own latents.
 * data (G ranks): each passes its own batch_size tokens per step; a step averages over G * batch_size tokens, and
 * the gradients are summed over it before the optimizer (only the latents that fired, with sparse_updates).
 * config.d_sae is the whole dictionary (divisible by L); parameters start as the slice of the one-process init.
 * Parameters, moments, firing history and fire counts in every other function are this rank's part (d_sae / L
 * latents); stats are of the whole step. Every rank of both must call train_step, evaluate and
 * init_decoder_bias together (init_decoder_bias on the same sample). The communicators must outlive the SAE. */
NE_API ne_status ne_sae_create_sharded(ne_context* ctx, const ne_sae_config* config, ne_comm* latents, ne_comm* data,
                                       ne_sae** out);
/* This rank's latents: [first, first + count) of d_sae. */
NE_API ne_status ne_sae_shard(const ne_sae* sae, int64_t* first, int64_t* count);
/* b_dec from a sample x [tokens][d_in]: method 0 = the mean, 1 = the geometric median (Weiszfeld). */
NE_API ne_status ne_sae_init_decoder_bias(ne_sae* sae, const float* x, int64_t x_count, int32_t method);
/* One optimizer step on x [batch_size][d_in] at learning rate lr (the caller owns the schedule). stats may be NULL.
 * A step whose loss is not finite is not applied (parameters, state and step count stay as they were) and is
 * recorded for ne_sae_non_finite; so is a decoder row whose norm is not finite after an update. */
NE_API ne_status ne_sae_train_step(ne_sae* sae, const float* x, int64_t x_count, float lr, ne_sae_stats* stats);
/* Replaces the sparsity coefficient, l1_coefficient (relu) or l0_coefficient (jumprelu), for the steps after this call
 * (ABI 6): the caller's schedule or controller (e.g. one that tunes it towards a target L0). It is not part of the
 * state (ne_sae_get_state): a caller that resumes sets it again. NE_ERR_INVALID_ARGUMENT for another architecture or a
 * value that is not finite and >= 0. */
NE_API ne_status ne_sae_set_sparsity_coefficient(ne_sae* sae, float coefficient);
/* The first step whose loss or updated parameters were not finite, if any (see ne_non_finite). */
NE_API ne_status ne_sae_non_finite(const ne_sae* sae, ne_non_finite* out);
/* Forward only on x [tokens][d_in] (any token count): stats, and when not NULL x_hat [tokens][d_in] and
 * fire_count [d_sae] (+= the tokens on which each latent fired). */
NE_API ne_status ne_sae_evaluate(ne_sae* sae, const float* x, int64_t x_count, float* x_hat, int64_t x_hat_count,
                                 int64_t* fire_count, int64_t fire_count_count, ne_sae_stats* stats);
/* W_enc [d_in][d_sae], b_enc [d_sae], W_dec [d_sae][d_in], b_dec [d_in]; threshold [d_sae] for jumprelu (theta)
 * and batchtopk and matryoshka_batchtopk (one value repeated: the inference threshold), count 0 to skip. */
NE_API ne_status ne_sae_get_params(const ne_sae* sae, float* W_enc, int64_t enc_count, float* b_enc,
                                   int64_t b_enc_count, float* W_dec, int64_t dec_count, float* b_dec,
                                   int64_t b_dec_count, float* threshold, int64_t threshold_count);
/* Replaces the parameters (threshold as in ne_sae_get_params: theta for jumprelu, the inference threshold for
 * batchtopk, count 0 to skip) and resets the optimizer state and firing history: for evaluating a dictionary
 * trained elsewhere, or starting from one. */
NE_API ne_status ne_sae_set_params(ne_sae* sae, const float* W_enc, int64_t enc_count, const float* b_enc,
                                   int64_t b_enc_count, const float* W_dec, int64_t dec_count, const float* b_dec,
                                   int64_t b_dec_count, const float* threshold, int64_t threshold_count);
/* Everything training carries besides the parameters (Adam moments, step count, firing history, batchtopk
 * threshold), as opaque bytes: a checkpoint stores them so a resumed run continues bit-identically. */
NE_API ne_status ne_sae_state_size(const ne_sae* sae, int64_t* bytes);
NE_API ne_status ne_sae_get_state(const ne_sae* sae, void* state, int64_t bytes);
/* Parameters and state together, as written by ne_sae_get_params (threshold included for jumprelu) and
 * ne_sae_get_state. */
NE_API ne_status ne_sae_restore(ne_sae* sae, const float* W_enc, int64_t enc_count, const float* b_enc,
                                int64_t b_enc_count, const float* W_dec, int64_t dec_count, const float* b_dec,
                                int64_t b_dec_count, const float* threshold, int64_t threshold_count, const void* state,
                                int64_t bytes);

/* ---- synthetic activations with a known ground truth (ABI 5) -------------------------------------------- */

/* x = sum_i a_i W_i + b: n_features unit directions W [n][d], a bias b [d], and sparse non-negative codes a drawn
 * per sample (docs/synthsaebench.md). Two families share one sampler: SynthSAEBench (SAELens' benchmark: Zipfian
 * firing, a forest of features whose children are gated by their parent and may exclude each other, a low-rank
 * Gaussian copula, relu(normal) magnitudes, an orthogonalised dictionary, a bias) and the set of Sharkey et al.
 * (2022) (p_i = min(1, c decay^i) with sum p = active_mean, optional copula, U(0, 1] magnitudes, Gaussian unit rows,
 * no bias). The ground truth is built once from the config (on the host); every sample is a pure function of
 * (seed, stream, sample index), so any range of samples can be drawn again, alone, in any order. */

/* Must stay in sync with NativeEngine.Interop.SynthKind. */
typedef enum ne_synth_kind {
    NE_SYNTH_SAEBENCH = 0,
    NE_SYNTH_SHARKEY = 1
} ne_synth_kind;

/* Must stay in sync with NativeEngine.Interop.SynthPreset. */
typedef enum ne_synth_preset {
    NE_SYNTH_PRESET_16K = 0  /* SynthSAEBench-16k: 16,384 features in 768 dimensions (docs/synthsaebench.md) */
} ne_synth_preset;

/* Must stay in sync with NativeEngine.Interop.SynthStream. Disjoint streams of samples. */
typedef enum ne_synth_stream {
    NE_SYNTH_STREAM_TRAIN = 0,    /* what training draws */
    NE_SYNTH_STREAM_EVALUATE = 1  /* fresh samples for measuring, never met in training */
} ne_synth_stream;

typedef struct ne_synth_config {
    int32_t kind;               /* ne_synth_kind */
    int32_t correlation_rank;   /* r >= 0 of the copula; 0: features fire independently */
    int64_t n_features;         /* 1 .. 2^31-1 */
    int64_t d;                  /* >= 1 */
    uint64_t seed;              /* keys the ground truth and the samples */
    double zipf_exponent;       /* SAEBENCH: p_i = p_min + (p_max - p_min) ((i+1)^-a - n^-a) / (1 - n^-a), a > 0 */
    double p_min, p_max;        /* SAEBENCH: 0 < p_min < p_max <= 1 */
    double decay;               /* SHARKEY: in (0, 1] */
    double active_mean;         /* SHARKEY: in (0, n_features] */
    int64_t root_nodes;         /* SAEBENCH forest: roots (0: none), features 0 .. R-1, then breadth-first */
    int32_t branching_min;      /* children per parent, uniform in [min, max], min >= 2 */
    int32_t branching_max;
    int32_t max_depth;          /* roots at depth 0, leaves at max_depth >= 1 */
    int32_t me_min_depth;       /* parents at depths [min, max] may have mutually exclusive children */
    int32_t me_max_depth;       /* -1: no limit */
    int32_t compensate;         /* 1: base probabilities raised to offset gating and exclusion */
    int32_t scale_children;     /* 1: a child's value is scaled by its parent's value over the parent's mean */
    int32_t reserved;
    double me_portion;          /* share of eligible parents whose children exclude each other, [0, 1] */
    double correlation_scale;   /* SAEBENCH: copula factor F = scale * N(0, 1), >= 0 */
    double mean_start, mean_end;/* SAEBENCH magnitude mean, linear in the index from feature 0 to n-1, > 0 */
    double std_mean, std_std;   /* SAEBENCH magnitude standard deviation |N(std_mean, std_std^2)| per feature */
    double bias_norm;           /* SAEBENCH: norm of the random bias b (0: none) */
    double ortho_lr;            /* SAEBENCH: Adam lr of the dictionary's orthogonalisation */
    int32_t ortho_steps;        /* SAEBENCH: its steps (0: Gaussian unit rows) */
    int32_t ortho_chunk;        /* rows of the Gram matrix held at once, >= 1 (memory only: no effect on results) */
} ne_synth_config;

typedef struct ne_synth ne_synth;

NE_API size_t ne_synth_config_size(void);
/* Every field of a preset. */
NE_API ne_status ne_synth_preset_config(int32_t preset, ne_synth_config* out);
/* NE_OK when the config is valid; else NE_ERR_INVALID_ARGUMENT naming the field, its value and what is valid. */
NE_API ne_status ne_synth_check(const ne_synth_config* config);
/* Builds the ground truth. W [n_features][d] and b [d], when given (counts n*d and d), are the dictionary and bias
 * (as ne_synth_get_truth returned them, e.g. read back from a file), so the orthogonalisation, O(ortho_steps n^2 d),
 * is not run again; both NULL with counts 0: built from the seed. Samples are drawn on the host for every backend
 * (identical on all: the ground truth is one set of bytes). */
NE_API ne_status ne_synth_create(ne_context* ctx, const ne_synth_config* config, const float* W, int64_t w_count,
                                 const float* b, int64_t b_count, ne_synth** out);
NE_API ne_status ne_synth_destroy(ne_synth* synth);
/* Samples first_sample .. first_sample + count - 1 (first_sample >= 0, count >= 1, below 2^62) of a stream:
 * x [count][d] and dense codes [count][n_features]; either may be NULL with count 0. */
NE_API ne_status ne_synth_sample(const ne_synth* synth, int32_t stream, int64_t first_sample, int64_t count, float* x,
                                 int64_t x_count, float* codes, int64_t codes_count);
/* The same samples' codes, sparse: sample t's active features (code > 0, ascending) are
 * index[row_begin[t] .. row_begin[t+1]) with their values. row_begin [count + 1] is always written and *total set to
 * row_begin[count]; index and value [capacity] are written only when total <= capacity (else call again with a
 * larger capacity). x [count][d] may be NULL with count 0. */
NE_API ne_status ne_synth_sample_sparse(const ne_synth* synth, int32_t stream, int64_t first_sample, int64_t count,
                                        float* x, int64_t x_count, int64_t* row_begin, int64_t row_begin_count,
                                        int32_t* index, float* value, int64_t capacity, int64_t* total);
/* The ground truth, each output NULL with count 0 to skip: W [n][d] (unit rows), b [d], probability [n] (the target
 * firing probability p_i), fire_probability [n] (p'_i after compensation, clamped to 1), parent [n] (-1: a root or a
 * feature in no tree), flags [n] (bit 0: i's children exclude each other, bit 1: i scales its children),
 * mean, stddev [n] (magnitudes; SHARKEY: 0.5 and 1/sqrt(12), its U(0, 1] law's moments). */
NE_API ne_status ne_synth_get_truth(const ne_synth* synth, float* W, int64_t w_count, float* b, int64_t b_count,
                                    float* probability, int64_t probability_count, float* fire_probability,
                                    int64_t fire_probability_count, int32_t* parent, int64_t parent_count,
                                    int32_t* flags, int64_t flags_count, float* mean, int64_t mean_count,
                                    float* stddev, int64_t stddev_count);
/* One ne_sae_train_step on samples first_sample .. first_sample + batch_size - 1 of the synth's training stream,
 * each multiplied by scale (> 0), drawn where the SAE trains: the batch never passes through the caller. The synth's
 * d must equal the SAE's d_in. */
NE_API ne_status ne_sae_train_step_synth(ne_sae* sae, const ne_synth* synth, int64_t first_sample, float scale,
                                         float lr, ne_sae_stats* stats);

/* ---- the CPU GEMM ------------------------------------------------------------------------------------- */

/* C [m][n] = A [m][k] B [k][n], row-major floats, by the blocked kernel of the CPU SAE encoder (B packed into
 * panels, register tiles, OpenMP over blocks of rows of A): the engine's one GEMM, exposed so it can be checked
 * and timed against a BLAS (`bench` measures the machine's peak with it). CPU contexts only (NE_ERR_UNSUPPORTED
 * on a CUDA context: see ne_capabilities.sgemm); m, n, k >= 1; counts must be m*k, k*n and m*n. C is overwritten. */
NE_API ne_status ne_sgemm(ne_context* ctx, int64_t m, int64_t n, int64_t k, const float* A, int64_t a_count,
                          const float* B, int64_t b_count, float* C, int64_t c_count);

#ifdef __cplusplus
}
#endif

#endif /* NATIVEENGINE_H */
