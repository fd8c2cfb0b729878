// What the MPI plugin (libnativeengine_mpi, cuda/src/mpi/mpi_plugin.cpp, built when CMake finds MPI) exports: MPI's
// collectives behind plain C entries, so the core never links MPI and runs where it is not installed. The adapter
// that implements ne::Communicator with them is in core/comm.cpp. Every entry returns an ne_status and writes its
// message to err on failure; buffers are the caller's, never kept.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define NE_MPI_PLUGIN_ABI 1
#define NE_MPI_PLUGIN_FILE "libnativeengine_mpi.so"
#define NE_MPI_ENTRY "ne_mpi_collectives"

extern "C" {

typedef struct ne_mpi_comm ne_mpi_comm;

typedef struct ne_mpi_table {
    int32_t abi;  // NE_MPI_PLUGIN_ABI
    // The MPI library's own description (MPI_Get_library_version, callable before init).
    void (*library_version)(char* out, size_t size);
    // MPI_Init_thread (MPI_THREAD_SERIALIZED: one thread at a time calls MPI) and the world; errors return instead
    // of aborting on every communicator made here.
    int32_t (*init)(ne_mpi_comm** world, char* err, size_t err_size);
    int32_t (*rank)(const ne_mpi_comm* comm);
    int32_t (*size)(const ne_mpi_comm* comm);
    // type: ne_comm_type, op: ne_comm_op.
    int32_t (*allreduce)(ne_mpi_comm* comm, void* buffer, int64_t count, int32_t type, int32_t op, char* err,
                         size_t err_size);
    int32_t (*allgather)(ne_mpi_comm* comm, const void* send, int64_t bytes, void* receive, char* err,
                         size_t err_size);
    int32_t (*gather)(ne_mpi_comm* comm, const void* send, int64_t bytes, void* receive, int32_t root, char* err,
                      size_t err_size);
    int32_t (*broadcast)(ne_mpi_comm* comm, void* buffer, int64_t bytes, int32_t root, char* err, size_t err_size);
    int32_t (*barrier)(ne_mpi_comm* comm, char* err, size_t err_size);
    // entries [rows][k] of entry_bytes (8: ne::BestEntry, 16: ne::BestEntry64), reduced with ne::merge_best.
    int32_t (*allreduce_best)(ne_mpi_comm* comm, void* entries, int64_t rows, int64_t k, int32_t entry_bytes,
                              char* err, size_t err_size);
    int32_t (*split)(ne_mpi_comm* comm, int32_t color, int32_t key, ne_mpi_comm** out, char* err, size_t err_size);
    void (*free)(ne_mpi_comm* comm);  // after finalize, only the wrapper is freed
    void (*abort)(ne_mpi_comm* comm, int32_t code);
    void (*finalize)(void);
} ne_mpi_table;

typedef const ne_mpi_table* (*ne_mpi_table_fn)(void);
}
