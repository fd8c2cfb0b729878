// libnativeengine_mpi: MPI's collectives behind the plain C table of core/mpi_table.h. Built only when CMake finds
// MPI, and loaded by the core only when the process was launched by mpirun or srun, so libnativeengine itself never
// links MPI. Buffers larger than an MPI count (int) are sent in pieces.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/comm.h"
#include "core/mpi_table.h"
#include "nativeengine.h"

struct ne_mpi_comm {
    MPI_Comm comm;
    int32_t rank, size;
};

namespace {

constexpr int64_t kPiece = int64_t(1) << 30;  // bytes or elements per MPI call, below INT_MAX

void write_error(char* err, size_t size, const std::string& message) {
    if (err != nullptr && size > 0) std::snprintf(err, size, "%s", message.c_str());
}

int32_t check(int code, const char* call, char* err, size_t err_size) {
    if (code == MPI_SUCCESS) return NE_OK;
    char text[MPI_MAX_ERROR_STRING] = "";
    int length = 0;
    MPI_Error_string(code, text, &length);
    write_error(err, err_size, std::string(call) + " failed: " + text);
    return NE_ERR_INTERNAL;
}

#define NE_MPI_CALL(call)                                                    \
    do {                                                                     \
        const int32_t status_ = check((call), #call, err, err_size);        \
        if (status_ != NE_OK) return status_;                                \
    } while (0)

MPI_Datatype datatype(int32_t type) {
    switch (type) {
        case NE_COMM_FLOAT: return MPI_FLOAT;
        case NE_COMM_DOUBLE: return MPI_DOUBLE;
        case NE_COMM_INT64: return MPI_INT64_T;
        case NE_COMM_UINT8: return MPI_UINT8_T;
        default: return MPI_DATATYPE_NULL;
    }
}

MPI_Op operation(int32_t op) {
    switch (op) {
        case NE_COMM_SUM: return MPI_SUM;
        case NE_COMM_MAX: return MPI_MAX;
        case NE_COMM_MIN: return MPI_MIN;
        default: return MPI_OP_NULL;
    }
}

ne_mpi_comm* wrap(MPI_Comm comm) {
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    auto* c = new ne_mpi_comm{comm, 0, 1};
    MPI_Comm_rank(comm, &c->rank);
    MPI_Comm_size(comm, &c->size);
    return c;
}

// The reductions of the best-k merge: each element is one row of k entries (a contiguous type).
template <typename Entry>
void merge_rows(void* in, void* inout, int* rows, MPI_Datatype* type) {
    int row_bytes = 0;
    MPI_Type_size(*type, &row_bytes);
    const int64_t k = row_bytes / static_cast<int64_t>(sizeof(Entry));
    std::vector<Entry> scratch(k);
    auto* from = static_cast<const Entry*>(in);
    auto* into = static_cast<Entry*>(inout);
    for (int r = 0; r < *rows; ++r) ne::merge_best(from + r * k, into + r * k, k, scratch.data());
}

MPI_Op best_op(int32_t entry_bytes) {
    static MPI_Op op8 = MPI_OP_NULL, op16 = MPI_OP_NULL;
    if (op8 == MPI_OP_NULL) {
        MPI_Op_create(&merge_rows<ne::BestEntry>, 1, &op8);
        MPI_Op_create(&merge_rows<ne::BestEntry64>, 1, &op16);
    }
    return entry_bytes == 8 ? op8 : op16;
}

void library_version(char* out, size_t size) {
    char text[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int length = 0;
    MPI_Get_library_version(text, &length);
    std::string line(text, static_cast<size_t>(std::max(length, 0)));
    line = line.substr(0, line.find_first_of("\r\n"));
    if (out != nullptr && size > 0) std::snprintf(out, size, "%s", line.c_str());
}

int32_t init(ne_mpi_comm** world, char* err, size_t err_size) {
    int started = 0;
    MPI_Initialized(&started);
    if (!started) {
        int provided = 0;
        NE_MPI_CALL(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
        if (provided < MPI_THREAD_SERIALIZED) {
            write_error(err, err_size, "MPI_Init_thread provides thread level " + std::to_string(provided) +
                                           "; the engine needs MPI_THREAD_SERIALIZED");
            return NE_ERR_BACKEND_UNAVAILABLE;
        }
    }
    *world = wrap(MPI_COMM_WORLD);
    return NE_OK;
}

int32_t rank(const ne_mpi_comm* c) { return c->rank; }
int32_t size(const ne_mpi_comm* c) { return c->size; }

int32_t allreduce(ne_mpi_comm* c, void* buffer, int64_t count, int32_t type, int32_t op, char* err, size_t err_size) {
    const MPI_Datatype t = datatype(type);
    const MPI_Op o = operation(op);
    int bytes = 0;
    MPI_Type_size(t, &bytes);
    for (int64_t first = 0; first < count; first += kPiece) {
        const int n = static_cast<int>(std::min(kPiece, count - first));
        NE_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(buffer) + first * bytes, n, t, o, c->comm));
    }
    return NE_OK;
}

int32_t allgather(ne_mpi_comm* c, const void* send, int64_t bytes, void* receive, char* err, size_t err_size) {
    if (bytes <= kPiece) {
        NE_MPI_CALL(MPI_Allgather(send, static_cast<int>(bytes), MPI_BYTE, receive, static_cast<int>(bytes), MPI_BYTE,
                                  c->comm));
        return NE_OK;
    }
    std::vector<char> piece(static_cast<size_t>(kPiece) * c->size);
    for (int64_t first = 0; first < bytes; first += kPiece) {
        const int64_t n = std::min(kPiece, bytes - first);
        NE_MPI_CALL(MPI_Allgather(static_cast<const char*>(send) + first, static_cast<int>(n), MPI_BYTE, piece.data(),
                                  static_cast<int>(n), MPI_BYTE, c->comm));
        for (int r = 0; r < c->size; ++r)
            std::memcpy(static_cast<char*>(receive) + r * bytes + first, piece.data() + r * n, static_cast<size_t>(n));
    }
    return NE_OK;
}

int32_t gather(ne_mpi_comm* c, const void* send, int64_t bytes, void* receive, int32_t root, char* err,
               size_t err_size) {
    const bool here = c->rank == root;
    if (bytes <= kPiece) {
        NE_MPI_CALL(MPI_Gather(send, static_cast<int>(bytes), MPI_BYTE, receive, static_cast<int>(bytes), MPI_BYTE,
                               root, c->comm));
        return NE_OK;
    }
    std::vector<char> piece(here ? static_cast<size_t>(kPiece) * c->size : 0);
    for (int64_t first = 0; first < bytes; first += kPiece) {
        const int64_t n = std::min(kPiece, bytes - first);
        NE_MPI_CALL(MPI_Gather(static_cast<const char*>(send) + first, static_cast<int>(n), MPI_BYTE, piece.data(),
                               static_cast<int>(n), MPI_BYTE, root, c->comm));
        if (here)
            for (int r = 0; r < c->size; ++r)
                std::memcpy(static_cast<char*>(receive) + r * bytes + first, piece.data() + r * n,
                            static_cast<size_t>(n));
    }
    return NE_OK;
}

int32_t broadcast(ne_mpi_comm* c, void* buffer, int64_t bytes, int32_t root, char* err, size_t err_size) {
    for (int64_t first = 0; first < bytes; first += kPiece) {
        const int n = static_cast<int>(std::min(kPiece, bytes - first));
        NE_MPI_CALL(MPI_Bcast(static_cast<char*>(buffer) + first, n, MPI_BYTE, root, c->comm));
    }
    return NE_OK;
}

int32_t barrier(ne_mpi_comm* c, char* err, size_t err_size) {
    NE_MPI_CALL(MPI_Barrier(c->comm));
    return NE_OK;
}

int32_t allreduce_best(ne_mpi_comm* c, void* entries, int64_t rows, int64_t k, int32_t entry_bytes, char* err,
                       size_t err_size) {
    if (entry_bytes != 8 && entry_bytes != 16) {
        write_error(err, err_size, "entry_bytes is " + std::to_string(entry_bytes) + "; valid: 8, 16");
        return NE_ERR_INVALID_ARGUMENT;
    }
    const int64_t row_bytes = k * entry_bytes;
    if (row_bytes > INT_MAX) {
        write_error(err, err_size, "a best-k row of " + std::to_string(k) + " entries exceeds one MPI element");
        return NE_ERR_UNSUPPORTED;
    }
    MPI_Datatype row = MPI_DATATYPE_NULL;
    NE_MPI_CALL(MPI_Type_contiguous(static_cast<int>(row_bytes), MPI_BYTE, &row));
    NE_MPI_CALL(MPI_Type_commit(&row));
    const int64_t per_call = std::max<int64_t>(1, kPiece / row_bytes);
    int code = MPI_SUCCESS;
    for (int64_t first = 0; first < rows && code == MPI_SUCCESS; first += per_call) {
        const int n = static_cast<int>(std::min(per_call, rows - first));
        code = MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(entries) + first * row_bytes, n, row,
                             best_op(entry_bytes), c->comm);
    }
    MPI_Type_free(&row);
    NE_MPI_CALL(code);
    return NE_OK;
}

int32_t split(ne_mpi_comm* c, int32_t color, int32_t key, ne_mpi_comm** out, char* err, size_t err_size) {
    MPI_Comm part = MPI_COMM_NULL;
    NE_MPI_CALL(MPI_Comm_split(c->comm, color, key, &part));
    *out = wrap(part);
    return NE_OK;
}

void free_comm(ne_mpi_comm* c) {
    if (c == nullptr) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && c->comm != MPI_COMM_WORLD) MPI_Comm_free(&c->comm);
    delete c;
}

void abort_all(ne_mpi_comm* c, int32_t code) { MPI_Abort(c != nullptr ? c->comm : MPI_COMM_WORLD, code); }

void finalize() {
    int started = 0, finalized = 0;
    MPI_Initialized(&started);
    MPI_Finalized(&finalized);
    if (started && !finalized) MPI_Finalize();
}

const ne_mpi_table kTable = {
    NE_MPI_PLUGIN_ABI, library_version, init, rank, size, allreduce, allgather, gather, broadcast, barrier,
    allreduce_best, split, free_comm, abort_all, finalize,
};

}  // namespace

extern "C" NE_API const ne_mpi_table* ne_mpi_collectives(void) { return &kTable; }
