#include "core/comm.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "core/cuda_devices.h"
#include "core/error.h"
#include "core/mpi_table.h"
#include "core/plugin.h"

namespace ne {

int64_t comm_type_bytes(int32_t type) {
    switch (type) {
        case NE_COMM_FLOAT: return 4;
        case NE_COMM_DOUBLE: return 8;
        case NE_COMM_INT64: return 8;
        case NE_COMM_UINT8: return 1;
        default:
            invalid("type is " + std::to_string(type) + "; valid: 0 (float), 1 (double), 2 (int64), 3 (uint8)");
    }
}

// ---- the counting front of every communicator ----------------------------------------------------------------

void Communicator::allreduce(void* buffer, int64_t count, int32_t type, int32_t op) {
    const int64_t bytes = count * comm_type_bytes(type);
    if (op < NE_COMM_SUM || op > NE_COMM_MIN) invalid("op is " + std::to_string(op) + "; valid: 0 (sum), 1 (max), 2 (min)");
    if (size() == 1 || count == 0) return;
    ++counters_.calls;
    counters_.allreduce_bytes += bytes;
    do_allreduce(buffer, count, type, op);
}

void Communicator::allgather(const void* send, int64_t bytes, void* receive) {
    if (size() == 1) {
        if (bytes > 0 && send != receive) std::memmove(receive, send, static_cast<size_t>(bytes));
        return;
    }
    ++counters_.calls;
    counters_.allgather_bytes += bytes;
    do_allgather(send, bytes, receive);
}

void Communicator::gather(const void* send, int64_t bytes, void* receive, int32_t root) {
    if (root < 0 || root >= size()) invalid("root is " + std::to_string(root) + "; valid: 0.." + std::to_string(size() - 1));
    if (size() == 1) {
        if (bytes > 0 && send != receive) std::memmove(receive, send, static_cast<size_t>(bytes));
        return;
    }
    ++counters_.calls;
    counters_.allgather_bytes += bytes;
    do_gather(send, bytes, receive, root);
}

void Communicator::broadcast(void* buffer, int64_t bytes, int32_t root) {
    if (root < 0 || root >= size()) invalid("root is " + std::to_string(root) + "; valid: 0.." + std::to_string(size() - 1));
    if (size() == 1 || bytes == 0) return;
    ++counters_.calls;
    counters_.broadcast_bytes += bytes;
    do_broadcast(buffer, bytes, root);
}

void Communicator::barrier() {
    if (size() == 1) return;
    ++counters_.calls;
    do_barrier();
}

void Communicator::allreduce_best(BestEntry* entries, int64_t rows, int64_t k) {
    if (size() == 1 || rows == 0 || k == 0) return;
    ++counters_.calls;
    counters_.best_bytes += rows * k * static_cast<int64_t>(sizeof(BestEntry));
    do_allreduce_best(entries, rows, k, sizeof(BestEntry));
}

void Communicator::allreduce_best(BestEntry64* entries, int64_t rows, int64_t k) {
    if (size() == 1 || rows == 0 || k == 0) return;
    ++counters_.calls;
    counters_.best_bytes += rows * k * static_cast<int64_t>(sizeof(BestEntry64));
    do_allreduce_best(entries, rows, k, sizeof(BestEntry64));
}

namespace {

// ---- one process: every collective is the identity ----------------------------------------------------------

class SingleProcess final : public Communicator {
public:
    int32_t rank() const override { return 0; }
    int32_t size() const override { return 1; }
    const char* transport() const override { return "single process"; }
    std::unique_ptr<Communicator> split(int32_t, int32_t) override { return std::make_unique<SingleProcess>(); }
    void abort(int32_t) override {}

protected:
    // Unreachable: the counting front handles size 1.
    void do_allreduce(void*, int64_t, int32_t, int32_t) override {}
    void do_allgather(const void*, int64_t, void*) override {}
    void do_gather(const void*, int64_t, void*, int32_t) override {}
    void do_broadcast(void*, int64_t, int32_t) override {}
    void do_barrier() override {}
    void do_allreduce_best(void*, int64_t, int64_t, int32_t) override {}
};

// ---- MPI, through the plugin ----------------------------------------------------------------------------------

template <class Entry, class... Args>
void call(Entry entry, Args... args) {
    char err[1024] = "";
    check_plugin(entry(args..., err, sizeof err), err);
}

class MpiCommunicator final : public Communicator {
public:
    MpiCommunicator(const ne_mpi_table& table, ne_mpi_comm* comm)
        : table_(table), comm_(comm), rank_(table.rank(comm)), size_(table.size(comm)) {}
    ~MpiCommunicator() override { table_.free(comm_); }

    int32_t rank() const override { return rank_; }
    int32_t size() const override { return size_; }
    const char* transport() const override { return "mpi"; }

    std::unique_ptr<Communicator> split(int32_t color, int32_t key) override {
        if (color < 0) invalid("color is " + std::to_string(color) + "; valid: >= 0");
        ne_mpi_comm* part = nullptr;
        call(table_.split, comm_, color, key, &part);
        return std::make_unique<MpiCommunicator>(table_, part);
    }
    void abort(int32_t code) override { table_.abort(comm_, code); }

protected:
    void do_allreduce(void* buffer, int64_t count, int32_t type, int32_t op) override {
        call(table_.allreduce, comm_, buffer, count, type, op);
    }
    void do_allgather(const void* send, int64_t bytes, void* receive) override {
        call(table_.allgather, comm_, send, bytes, receive);
    }
    void do_gather(const void* send, int64_t bytes, void* receive, int32_t root) override {
        call(table_.gather, comm_, send, bytes, receive, root);
    }
    void do_broadcast(void* buffer, int64_t bytes, int32_t root) override {
        call(table_.broadcast, comm_, buffer, bytes, root);
    }
    void do_barrier() override { call(table_.barrier, comm_); }
    void do_allreduce_best(void* entries, int64_t rows, int64_t k, int32_t entry_bytes) override {
        call(table_.allreduce_best, comm_, entries, rows, k, entry_bytes);
    }

private:
    const ne_mpi_table& table_;
    ne_mpi_comm* comm_;
    int32_t rank_, size_;
};

// ---- NCCL, through the CUDA plugin: device buffers ----------------------------------------------------------

class NcclCommunicator final : public Communicator {
public:
    NcclCommunicator(Communicator& host, int32_t device) : host_(host), table_(CudaDevices::table()) {
        char id[NE_NCCL_UNIQUE_ID_BYTES] = {};
        if (host.rank() == 0) call(table_.nccl_unique_id, static_cast<void*>(id));
        host.broadcast(id, sizeof id, 0);
        call(table_.nccl_create, device, host.rank(), host.size(), static_cast<const void*>(id), &comm_);
    }
    ~NcclCommunicator() override { table_.nccl_destroy(comm_); }

    int32_t rank() const override { return host_.rank(); }
    int32_t size() const override { return host_.size(); }
    const char* transport() const override { return "nccl"; }
    std::unique_ptr<Communicator> split(int32_t, int32_t) override {
        fail(NE_ERR_UNSUPPORTED, "a device communicator is not split: split the host communicator and make one from each part");
    }
    void abort(int32_t code) override { host_.abort(code); }

protected:
    void do_allreduce(void* buffer, int64_t count, int32_t type, int32_t op) override {
        call(table_.nccl_allreduce, comm_, buffer, count, type, op);
    }
    void do_allgather(const void* send, int64_t bytes, void* receive) override {
        call(table_.nccl_allgather, comm_, send, bytes, receive);
    }
    void do_gather(const void*, int64_t, void*, int32_t) override {
        fail(NE_ERR_UNSUPPORTED, "a device communicator has no gather: allgather, or gather on the host");
    }
    void do_broadcast(void* buffer, int64_t bytes, int32_t root) override {
        call(table_.nccl_broadcast, comm_, buffer, bytes, root);
    }
    void do_barrier() override { host_.barrier(); }
    void do_allreduce_best(void* entries, int64_t rows, int64_t k, int32_t entry_bytes) override {
        call(table_.nccl_allreduce_best, comm_, entries, rows, k, entry_bytes);
    }

private:
    Communicator& host_;
    const ne_cuda_device_table& table_;
    ne_cuda_comm* comm_ = nullptr;
};

// The launcher's variable that says this process is one of several, or "" when none is set.
std::string launch_variable() {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_NTASKS"}) {
        const char* value = std::getenv(name);
        if (value != nullptr && *value != '\0') return std::string(name) + "=" + value;
    }
    return "";
}

bool mpi_disabled() {
    const char* value = std::getenv("NE_MPI");
    return value != nullptr && (std::strcmp(value, "0") == 0 || std::strcmp(value, "off") == 0);
}

struct MpiPlugin {
    const ne_mpi_table* table = nullptr;
    bool found = false;
    std::string reason;  // why table is null
};

const MpiPlugin& mpi_plugin() {
    static std::once_flag once;
    static MpiPlugin state;
    std::call_once(once, [] {
        const Plugin& plugin = Plugin::get(NE_MPI_PLUGIN_FILE);
        state.found = plugin.found();
        if (!plugin.found()) {
            state.reason = "not built (no " + plugin.path() + "; install libopenmpi-dev and rebuild)";
            return;
        }
        if (!plugin.loaded()) {
            state.reason = plugin.reason();
            return;
        }
        auto entry = reinterpret_cast<ne_mpi_table_fn>(plugin.symbol(NE_MPI_ENTRY));
        const ne_mpi_table* table = entry != nullptr ? entry() : nullptr;
        if (table == nullptr || table->abi != NE_MPI_PLUGIN_ABI) {
            state.reason = plugin.path() + " was built for another plugin ABI than " +
                           std::to_string(NE_MPI_PLUGIN_ABI) + "; rebuild both libraries together";
            return;
        }
        state.table = table;
    });
    return state;
}

bool mpi_started = false;  // set once, under world_state's once_flag

struct World {
    std::unique_ptr<Communicator> comm;
    std::string error;  // why MPI could not start although launched under it
    bool mpi = false;
};

World& world_state() {
    static std::once_flag once;
    static World state;
    std::call_once(once, [] {
        const std::string launched = launch_variable();
        if (launched.empty() || mpi_disabled()) {
            state.comm = std::make_unique<SingleProcess>();
            return;
        }
        const MpiPlugin& plugin = mpi_plugin();
        if (plugin.table == nullptr) {
            state.error = "this process was launched by an MPI launcher (" + launched +
                          ") but the MPI plugin is unavailable: " + plugin.reason +
                          "; set NE_MPI=0 to run each process on its own";
            return;
        }
        ne_mpi_comm* comm = nullptr;
        char err[1024] = "";
        if (plugin.table->init(&comm, err, sizeof err) != NE_OK) {
            state.error = std::string("MPI did not start: ") + err;
            return;
        }
        state.comm = std::make_unique<MpiCommunicator>(*plugin.table, comm);
        state.mpi = true;
        mpi_started = true;
        std::atexit(mpi_finalize);
    });
    return state;
}

}  // namespace

Communicator& world() {
    World& state = world_state();
    if (!state.comm) fail(NE_ERR_BACKEND_UNAVAILABLE, state.error);
    return *state.comm;
}

std::unique_ptr<Communicator> single_process() { return std::make_unique<SingleProcess>(); }

std::unique_ptr<Communicator> make_device_communicator(Communicator& host, int32_t device) {
    if (!CudaDevices::loaded() || CudaDevices::count() == 0)
        fail(NE_ERR_BACKEND_UNAVAILABLE, std::string("NCCL needs the CUDA backend: ") + CudaDevices::unavailable_reason());
    if (device < 0 || device >= CudaDevices::count())
        invalid("device is " + std::to_string(device) + "; valid: 0.." + std::to_string(CudaDevices::count() - 1));
    return std::make_unique<NcclCommunicator>(host, device);
}

ne_mpi_info mpi_info() {
    ne_mpi_info info{};
    const MpiPlugin& plugin = mpi_plugin();
    info.plugin_found = plugin.found ? 1 : 0;
    info.plugin_loaded = plugin.table != nullptr ? 1 : 0;
    info.launched = launch_variable().empty() ? 0 : 1;
    info.world_size = 1;
    if (plugin.table != nullptr) plugin.table->library_version(info.library, sizeof info.library);
    std::string reason;
    if (plugin.table == nullptr) reason = "the MPI plugin is " + plugin.reason;
    else if (mpi_disabled()) reason = "NE_MPI=0";
    else if (!info.launched) reason = "not launched by mpirun or srun";
    if (reason.empty()) {
        World& state = world_state();
        if (state.mpi) {
            info.initialized = 1;
            info.world_rank = state.comm->rank();
            info.world_size = state.comm->size();
        } else {
            reason = state.error;
        }
    }
    std::strncpy(info.reason, reason.c_str(), sizeof info.reason - 1);
    std::string nccl;
    if (!CudaDevices::loaded()) {
        nccl = std::string("needs the CUDA backend: ") + CudaDevices::unavailable_reason();
    } else {
        int32_t version = 0;
        char err[512] = "";
        if (CudaDevices::table().nccl_version(&version, err, sizeof err) == NE_OK) {
            info.nccl_loaded = 1;
            nccl = "NCCL " + std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
                   std::to_string(version % 100);
        } else {
            nccl = err;
        }
    }
    std::strncpy(info.nccl, nccl.c_str(), sizeof info.nccl - 1);
    return info;
}

void mpi_finalize() {
    if (mpi_started) mpi_plugin().table->finalize();
}

}  // namespace ne
