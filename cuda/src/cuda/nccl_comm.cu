// Collectives on device memory through NCCL, the CUDA side of core/comm.h: NCCL is not a Debian package, so it is
// loaded with dlopen (libnccl.so.2) on first use and its few entry points are declared here (their C ABI has been
// stable since NCCL 2.0). MPI bootstraps it: the core broadcasts rank 0's unique id over the host communicator and
// each rank joins with ncclCommInitRank (core/comm.cpp, make_device_communicator). Every collective runs on the
// communicator's own stream and is synchronised before returning, as the host collectives block. The best-k merge,
// which NCCL cannot express as a reduction, is an allgather of every rank's lists and a merge kernel.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>

#include "core/comm.h"
#include "cuda/cuda_check.h"
#include "cuda/nccl_comm.h"

// ---- NCCL's C ABI, as nccl.h declares it ----------------------------------------------------------------------
// The communicator's type is NCCL's own, outside the anonymous namespace: ne_cuda_comm below holds one.
typedef struct ncclComm* ncclComm_t;

namespace {

struct ncclUniqueId {
    char internal[NE_NCCL_UNIQUE_ID_BYTES];
};
typedef int ncclResult_t;  // ncclSuccess = 0
enum : int { ncclUint8 = 1, ncclInt64 = 4, ncclFloat32 = 7, ncclFloat64 = 8 };
enum : int { ncclSum = 0, ncclMax = 2, ncclMin = 3 };

struct Nccl {
    ncclResult_t (*GetVersion)(int*);
    ncclResult_t (*GetUniqueId)(ncclUniqueId*);
    ncclResult_t (*CommInitRank)(ncclComm_t*, int, ncclUniqueId, int);
    ncclResult_t (*CommDestroy)(ncclComm_t);
    ncclResult_t (*AllReduce)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*AllGather)(const void*, void*, size_t, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*Broadcast)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t);
    const char* (*GetErrorString)(ncclResult_t);
    std::string reason;  // why NCCL is unavailable; "" when loaded
};

const Nccl& nccl() {
    static std::once_flag once;
    static Nccl lib{};
    std::call_once(once, [] {
        void* handle = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
        if (handle == nullptr) {
            const char* why = dlerror();
            lib.reason = std::string("libnccl.so.2 could not be loaded: ") + (why ? why : "not found");
            return;
        }
        auto bind = [&](auto& entry, const char* name) {
            entry = reinterpret_cast<std::remove_reference_t<decltype(entry)>>(dlsym(handle, name));
            if (entry == nullptr && lib.reason.empty()) lib.reason = std::string("libnccl.so.2 lacks ") + name;
        };
        bind(lib.GetVersion, "ncclGetVersion");
        bind(lib.GetUniqueId, "ncclGetUniqueId");
        bind(lib.CommInitRank, "ncclCommInitRank");
        bind(lib.CommDestroy, "ncclCommDestroy");
        bind(lib.AllReduce, "ncclAllReduce");
        bind(lib.AllGather, "ncclAllGather");
        bind(lib.Broadcast, "ncclBroadcast");
        bind(lib.GetErrorString, "ncclGetErrorString");
    });
    return lib;
}

const Nccl& loaded_nccl() {
    const Nccl& lib = nccl();
    if (!lib.reason.empty()) ne::fail(NE_ERR_BACKEND_UNAVAILABLE, lib.reason);
    return lib;
}

void nccl_check(ncclResult_t status, const char* call) {
    if (status != 0)
        ne::fail(NE_ERR_CUDA, std::string(call) + " failed: " + nccl().GetErrorString(status) + " (NCCL error " +
                                  std::to_string(status) + ")");
}
#define NE_NCCL_CHECK(call) nccl_check((call), #call)

int nccl_type(int32_t type) {
    switch (type) {
        case NE_COMM_FLOAT: return ncclFloat32;
        case NE_COMM_DOUBLE: return ncclFloat64;
        case NE_COMM_INT64: return ncclInt64;
        case NE_COMM_UINT8: return ncclUint8;
        default: ne::invalid("type is " + std::to_string(type) + "; valid: 0 (float), 1 (double), 2 (int64), 3 (uint8)");
    }
}

int nccl_op(int32_t op) {
    switch (op) {
        case NE_COMM_SUM: return ncclSum;
        case NE_COMM_MAX: return ncclMax;
        case NE_COMM_MIN: return ncclMin;
        default: ne::invalid("op is " + std::to_string(op) + "; valid: 0 (sum), 1 (max), 2 (min)");
    }
}

// Row r of lists [ranks][rows][k] merged over the ranks into out [rows][k] (one thread per row; the same merge as
// the MPI reduction, core/comm.h).
template <typename Entry>
__global__ void merge_rows_kernel(const Entry* lists, Entry* out, Entry* scratch, int64_t ranks, int64_t rows, int64_t k) {
    const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (r >= rows) return;
    Entry* into = out + r * k;
    for (int64_t q = 0; q < k; ++q) into[q] = lists[r * k + q];
    for (int64_t p = 1; p < ranks; ++p) {
        const Entry* from = lists + (p * rows + r) * k;
        Entry* tmp = scratch + r * k;
        int64_t a = 0, b = 0;
        for (int64_t q = 0; q < k; ++q) tmp[q] = ne::ranks_ahead(from[a], into[b]) ? from[a++] : into[b++];
        for (int64_t q = 0; q < k; ++q) into[q] = tmp[q];
    }
}

}  // namespace

struct ne_cuda_comm {
    int32_t device, rank, size;
    ncclComm_t comm;
    cudaStream_t stream;
};

namespace ne::cuda {

int32_t nccl_version(int32_t* version, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        int v = 0;
        NE_NCCL_CHECK(loaded_nccl().GetVersion(&v));
        *version = v;
    });
}

int32_t nccl_unique_id(void* id, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        ncclUniqueId unique{};
        NE_NCCL_CHECK(loaded_nccl().GetUniqueId(&unique));
        std::memcpy(id, unique.internal, sizeof unique.internal);
    });
}

void nccl_destroy(ne_cuda_comm* c) {
    if (c == nullptr) return;
    if (c->comm != nullptr) nccl().CommDestroy(c->comm);
    if (c->stream != nullptr) cudaStreamDestroy(c->stream);
    delete c;
}

int32_t nccl_create(int32_t device, int32_t rank, int32_t size, const void* id, ne_cuda_comm** out, char* err,
                    size_t err_size) {
    return plugin_call(err, err_size, [&] {
        const Nccl& lib = loaded_nccl();
        NE_CUDA_CHECK(cudaSetDevice(device));
        std::unique_ptr<ne_cuda_comm, void (*)(ne_cuda_comm*)> c(new ne_cuda_comm{device, rank, size, nullptr, nullptr},
                                                                 nccl_destroy);
        NE_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
        ncclUniqueId unique{};
        std::memcpy(unique.internal, id, sizeof unique.internal);
        NE_NCCL_CHECK(lib.CommInitRank(&c->comm, size, unique, rank));
        *out = c.release();
    });
}

int32_t nccl_allreduce(ne_cuda_comm* c, void* buffer, int64_t count, int32_t type, int32_t op, char* err,
                       size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(c->device));
        NE_NCCL_CHECK(loaded_nccl().AllReduce(buffer, buffer, static_cast<size_t>(count), nccl_type(type), nccl_op(op),
                                              c->comm, c->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    });
}

int32_t nccl_allgather(ne_cuda_comm* c, const void* send, int64_t bytes, void* receive, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(c->device));
        NE_NCCL_CHECK(loaded_nccl().AllGather(send, receive, static_cast<size_t>(bytes), ncclUint8, c->comm, c->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    });
}

int32_t nccl_broadcast(ne_cuda_comm* c, void* buffer, int64_t bytes, int32_t root, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        NE_CUDA_CHECK(cudaSetDevice(c->device));
        NE_NCCL_CHECK(loaded_nccl().Broadcast(buffer, buffer, static_cast<size_t>(bytes), ncclUint8, root, c->comm,
                                              c->stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    });
}

int32_t nccl_allreduce_best(ne_cuda_comm* c, void* entries, int64_t rows, int64_t k, int32_t entry_bytes, char* err,
                            size_t err_size) {
    return plugin_call(err, err_size, [&] {
        if (entry_bytes != 8 && entry_bytes != 16) invalid("entry_bytes is " + std::to_string(entry_bytes) + "; valid: 8, 16");
        NE_CUDA_CHECK(cudaSetDevice(c->device));
        const int64_t bytes = rows * k * entry_bytes;
        void* scratch = nullptr;  // [size][rows][k] the gathered lists, then [rows][k] the merge's scratch
        NE_CUDA_CHECK(cudaMallocAsync(&scratch, static_cast<size_t>(bytes) * (c->size + 1), c->stream));
        char* lists = static_cast<char*>(scratch);
        const Nccl& lib = loaded_nccl();
        const ncclResult_t status = lib.AllGather(entries, lists, static_cast<size_t>(bytes), ncclUint8, c->comm, c->stream);
        if (status == 0) {
            const int threads = 128;
            const auto blocks = static_cast<unsigned>((rows + threads - 1) / threads);
            if (entry_bytes == 8)
                merge_rows_kernel<BestEntry><<<blocks, threads, 0, c->stream>>>(
                    reinterpret_cast<const BestEntry*>(lists), static_cast<BestEntry*>(entries),
                    reinterpret_cast<BestEntry*>(lists + bytes * c->size), c->size, rows, k);
            else
                merge_rows_kernel<BestEntry64><<<blocks, threads, 0, c->stream>>>(
                    reinterpret_cast<const BestEntry64*>(lists), static_cast<BestEntry64*>(entries),
                    reinterpret_cast<BestEntry64*>(lists + bytes * c->size), c->size, rows, k);
        }
        const cudaError_t launch = cudaGetLastError();
        cudaFreeAsync(scratch, c->stream);
        NE_NCCL_CHECK(status);
        NE_CUDA_CHECK(launch);
        NE_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    });
}

}  // namespace ne::cuda
