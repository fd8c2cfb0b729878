#include "core/context.h"

#include <omp.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "core/cuda_devices.h"
#include "core/error.h"

namespace ne {
namespace {

int32_t backend_from_environment() {
    const char* value = std::getenv("NE_BACKEND");
    if (value == nullptr || *value == '\0') return NE_BACKEND_AUTO;
    const std::string s = value;
    if (s == "auto") return NE_BACKEND_AUTO;
    if (s == "cpu") return NE_BACKEND_CPU;
    if (s == "cuda") return NE_BACKEND_CUDA;
    invalid("environment variable NE_BACKEND is \"" + s + "\"; valid values are auto, cpu, cuda");
}

std::string cpu_model_name() {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line)) {
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
        }
    }
    return "CPU";
}

int64_t meminfo_bytes(const char* key) {
    std::ifstream meminfo("/proc/meminfo");
    std::string name;
    int64_t kib = 0;
    std::string unit;
    while (meminfo >> name >> kib >> unit) {
        if (name == key) return kib * 1024;
    }
    return 0;
}

}  // namespace

int32_t cpu_threads() { return omp_get_max_threads(); }

ne_context* create_context(int32_t backend, int32_t device) {
    if (backend < NE_BACKEND_AUTO || backend > NE_BACKEND_CUDA)
        invalid("backend " + std::to_string(backend) + " is not one of auto (0), cpu (1), cuda (2)");
    if (backend == NE_BACKEND_AUTO) backend = backend_from_environment();
    if (backend == NE_BACKEND_AUTO)
        backend = CudaDevices::loaded() && CudaDevices::count() > 0 ? NE_BACKEND_CUDA : NE_BACKEND_CPU;
    if (backend == NE_BACKEND_CUDA) {
        if (!CudaDevices::loaded() || CudaDevices::count() == 0)
            fail(NE_ERR_BACKEND_UNAVAILABLE,
                 std::string("backend cuda requested but unavailable: ") + CudaDevices::unavailable_reason() +
                     "; use backend cpu or auto");
        if (device < 0 || device >= CudaDevices::count())
            invalid("device " + std::to_string(device) + " out of range: " + std::to_string(CudaDevices::count()) +
                    " CUDA device(s), valid 0.." + std::to_string(CudaDevices::count() - 1));
    } else {
        device = 0;
    }
    return new ne_context{static_cast<ne_backend>(backend), device};
}

ne_device_info device_info(const ne_context& ctx) {
    ne_device_info info{};
    if (ctx.backend == NE_BACKEND_CUDA) return CudaDevices::info(ctx.device);
    info.backend = NE_BACKEND_CPU;
    info.total_memory = meminfo_bytes("MemTotal:");
    info.free_memory = meminfo_bytes("MemAvailable:");
    info.multiprocessors = cpu_threads();
    std::strncpy(info.name, cpu_model_name().c_str(), sizeof info.name - 1);
    return info;
}

}  // namespace ne
