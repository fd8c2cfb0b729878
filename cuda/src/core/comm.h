// Collectives between the processes of one run: the seam through which a model's step is split across ranks
// (latent-sharded and data-parallel SAEs, sweeps split by instance). A Communicator is one group of ranks; split()
// makes the rows and columns of a 2-D grid. Two implementations: a single process (every collective is the identity,
// nothing crosses), and MPI through the optional plugin libnativeengine_mpi (core/mpi_table.h), used when the
// process was launched by mpirun or srun. Collectives are blocking and must be called by every rank of the group in
// the same order. Every call counts the bytes this rank contributed (the payload), so a run can report its traffic
// against the communication model in README.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/hostdevice.h"
#include "nativeengine.h"

namespace ne {

// One entry of a best-k list: ranked by the larger value, then the lower index (the tie-breaking of a single
// process's top-k). index < 0 marks an empty entry, ranked behind every other.
struct BestEntry {
    float value;
    int32_t index;
};
// The same with a 64-bit index (batchtopk ranks flat indices token * d_sae + latent).
struct BestEntry64 {
    float value;
    int32_t reserved;
    int64_t index;
};
static_assert(sizeof(BestEntry) == 8 && sizeof(BestEntry64) == 16, "best-k entries cross the network as bytes");

NE_HD bool ranks_ahead(const BestEntry& a, const BestEntry& b) {
    if (a.index < 0) return false;
    if (b.index < 0) return true;
    return a.value > b.value || (a.value == b.value && a.index < b.index);
}
NE_HD bool ranks_ahead(const BestEntry64& a, const BestEntry64& b) {
    if (a.index < 0) return false;
    if (b.index < 0) return true;
    return a.value > b.value || (a.value == b.value && a.index < b.index);
}

// Merges two best-first lists of k entries into the k best of both, into `into` (the reduction of allreduce_best;
// associative and commutative, since the ranking is a total order on distinct indices). Inline, so the MPI plugin
// reduces with this very code.
template <typename Entry>
inline void merge_best(const Entry* from, Entry* into, int64_t k, Entry* scratch) {
    int64_t a = 0, b = 0;
    for (int64_t q = 0; q < k; ++q) scratch[q] = ranks_ahead(from[a], into[b]) ? from[a++] : into[b++];
    for (int64_t q = 0; q < k; ++q) into[q] = scratch[q];
}

class Communicator {
public:
    virtual ~Communicator() = default;

    virtual int32_t rank() const = 0;
    virtual int32_t size() const = 0;
    // "single process" or "mpi".
    virtual const char* transport() const = 0;

    // buffer [count] of `type` (ne_comm_type) becomes the element-wise `op` (ne_comm_op) over the ranks.
    void allreduce(void* buffer, int64_t count, int32_t type, int32_t op);
    void allreduce_sum(float* buffer, int64_t count) { allreduce(buffer, count, NE_COMM_FLOAT, NE_COMM_SUM); }
    void allreduce_sum(double* buffer, int64_t count) { allreduce(buffer, count, NE_COMM_DOUBLE, NE_COMM_SUM); }
    void allreduce_sum(int64_t* buffer, int64_t count) { allreduce(buffer, count, NE_COMM_INT64, NE_COMM_SUM); }
    // receive [size][bytes]: rank r's `bytes` bytes at r * bytes.
    void allgather(const void* send, int64_t bytes, void* receive);
    // receive [size][bytes] on root only (may be null elsewhere).
    void gather(const void* send, int64_t bytes, void* receive, int32_t root);
    void broadcast(void* buffer, int64_t bytes, int32_t root);
    void barrier();
    // entries [rows][k], each row best first: every row becomes the k best of that row over all ranks.
    void allreduce_best(BestEntry* entries, int64_t rows, int64_t k);
    void allreduce_best(BestEntry64* entries, int64_t rows, int64_t k);
    // The ranks passing the same color form a new group, ordered by key (then by rank here).
    virtual std::unique_ptr<Communicator> split(int32_t color, int32_t key) = 0;
    // Ends every process of the run (MPI_Abort); returns only in a single process.
    virtual void abort(int32_t code) = 0;

    // What this rank contributed so far: payload bytes by kind of collective, and calls.
    const ne_comm_counters& counters() const { return counters_; }

protected:
    virtual void do_allreduce(void* buffer, int64_t count, int32_t type, int32_t op) = 0;
    virtual void do_allgather(const void* send, int64_t bytes, void* receive) = 0;
    virtual void do_gather(const void* send, int64_t bytes, void* receive, int32_t root) = 0;
    virtual void do_broadcast(void* buffer, int64_t bytes, int32_t root) = 0;
    virtual void do_barrier() = 0;
    // entry_bytes: 8 (BestEntry) or 16 (BestEntry64).
    virtual void do_allreduce_best(void* entries, int64_t rows, int64_t k, int32_t entry_bytes) = 0;

private:
    ne_comm_counters counters_{};
};

// Bytes of one element of an ne_comm_type; throws on an unknown type.
int64_t comm_type_bytes(int32_t type);

// The world of this process: MPI's when launched under mpirun or srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK
// or SLURM_NTASKS set) and the MPI plugin loads, else a single process. NE_MPI=0 forces a single process.
// Initialises MPI on first call. Throws when launched under MPI but the plugin cannot start it.
Communicator& world();
std::unique_ptr<Communicator> single_process();

// A communicator over the same ranks whose buffers are device memory of CUDA device `device`: NCCL, loaded by the
// CUDA plugin, bootstrapped over `host` (rank 0's unique id broadcast). Throws NE_ERR_BACKEND_UNAVAILABLE, saying
// why, without the CUDA plugin, a device or libnccl.so.2. gather and split are not offered (NE_ERR_UNSUPPORTED).
std::unique_ptr<Communicator> make_device_communicator(Communicator& host, int32_t device);

// What `info` says about MPI (and NCCL) without starting MPI.
ne_mpi_info mpi_info();
// Finalises MPI when it was started (also run at exit); later collectives fail.
void mpi_finalize();

}  // namespace ne
