// The NCCL device communicator (make_device_communicator in core/comm.h, cuda/nccl_comm.cu), bootstrapped over MPI,
// on two ranks with a GPU each: allreduce sum, max and min of floats, doubles and int64 on device buffers, allgather
// and broadcast of bytes, and the best-k merge of rows of (value, index) lists, against their definitions. Run
// without MPI it launches itself under mpirun -np 2; skipped (exit 77) without two CUDA devices, libnccl.so.2, the MPI
// plugin or mpirun.
#include <cuda_runtime.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "core/comm.h"
#include "core/cuda_devices.h"
#include "core/error.h"

namespace {

template <typename T>
T* to_device(const std::vector<T>& host) {
    T* device = nullptr;
    cudaMalloc(&device, host.size() * sizeof(T));
    cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
    return device;
}

template <typename T>
std::vector<T> to_host(const T* device, size_t count) {
    std::vector<T> host(count);
    cudaMemcpy(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
}

int run_rank() {
    ne::Communicator& world = ne::world();
    const int32_t rank = world.rank();
    cudaSetDevice(rank);
    auto nccl = ne::make_device_communicator(world, rank);
    CHECK(nccl->size() == 2 && nccl->rank() == rank);

    std::vector<float> f = {1.0f + rank, -2.0f * rank, 0.5f};
    float* df = to_device(f);
    nccl->allreduce(df, 3, NE_COMM_FLOAT, NE_COMM_SUM);
    CHECK((to_host(df, 3) == std::vector<float>{3.0f, -2.0f, 1.0f}));
    std::vector<double> g = {static_cast<double>(rank), -static_cast<double>(rank)};
    double* dg = to_device(g);
    nccl->allreduce(dg, 2, NE_COMM_DOUBLE, NE_COMM_MAX);
    CHECK((to_host(dg, 2) == std::vector<double>{1.0, 0.0}));
    std::vector<int64_t> h = {10 + rank};
    int64_t* dh = to_device(h);
    nccl->allreduce(dh, 1, NE_COMM_INT64, NE_COMM_MIN);
    CHECK(to_host(dh, 1)[0] == 10);

    std::vector<unsigned char> mine(5, static_cast<unsigned char>(rank + 1)), all(10);
    unsigned char* dm = to_device(mine);
    unsigned char* da = to_device(all);
    nccl->allgather(dm, 5, da);
    const auto gathered = to_host(da, 10);
    CHECK(gathered[0] == 1 && gathered[9] == 2);
    nccl->broadcast(dm, 5, 1);
    CHECK(to_host(dm, 5)[0] == 2);

    // Rank 0 holds latents {0, 2}, rank 1 {1, 3}; the merged best 3 rank by value, then the lower index.
    std::vector<ne::BestEntry> best = rank == 0 ? std::vector<ne::BestEntry>{{5.0f, 0}, {1.0f, 2}, {0.0f, -1}}
                                                : std::vector<ne::BestEntry>{{5.0f, 1}, {4.0f, 3}, {0.0f, -1}};
    ne::BestEntry* db = to_device(best);
    nccl->allreduce_best(db, 1, 3);
    const auto merged = to_host(db, 3);
    CHECK(merged[0].index == 0 && merged[1].index == 1 && merged[2].index == 3);
    for (void* p : {static_cast<void*>(df), static_cast<void*>(dg), static_cast<void*>(dh), static_cast<void*>(dm),
                    static_cast<void*>(da), static_cast<void*>(db)})
        cudaFree(p);
    CHECK(cudaGetLastError() == cudaSuccess);
    nccl.reset();
    int64_t failed = ne_test::failures;
    world.allreduce(&failed, 1, NE_COMM_INT64, NE_COMM_MAX);
    ne::mpi_finalize();
    return failed == 0 ? (rank == 0 ? ne_test::finish("test_nccl") : 0) : 1;
}

}  // namespace

int main(int argc, char** argv) {
    setenv("NE_PLUGIN_DIR", NE_BUILD_DIR, 0);
    try {
        if (argc == 2 && std::strcmp(argv[1], "--rank") == 0) return run_rank();
    } catch (const ne::Error& e) {
        std::printf("FAILED: %s\n", e.what());
        return 1;
    }
    if (!ne::CudaDevices::loaded() || ne::CudaDevices::count() < 2) {
        std::printf("ignored: NCCL's collectives need two CUDA devices (%d found; %s)\n", ne::CudaDevices::count(),
                    ne::CudaDevices::unavailable_reason());
        return ne_test::kSkipped;
    }
    const ne_mpi_info info = ne::mpi_info();
    if (!info.nccl_loaded || !info.plugin_loaded) {
        std::printf("ignored: %s\n", !info.nccl_loaded ? info.nccl : info.reason);
        return ne_test::kSkipped;
    }
    if (std::system("command -v mpirun > /dev/null") != 0) {
        std::printf("ignored: no mpirun on PATH\n");
        return ne_test::kSkipped;
    }
    char self[4096] = "";
    if (readlink("/proc/self/exe", self, sizeof self - 1) <= 0) return 1;
    const std::string command = "timeout 120 mpirun -np 2 --oversubscribe --allow-run-as-root " + std::string(self) + " --rank";
    const int status = std::system(command.c_str());
    CHECK(status == 0);
    return ne_test::finish("test_nccl (launcher)");
}
