#include "core/cuda_devices.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <mutex>
#include <string>

#include "core/error.h"
#include "core/plugin.h"

namespace ne {
namespace {

struct DeviceState {
    const ne_cuda_device_table* table = nullptr;
    bool found = false;
    int32_t devices = 0;
    std::string reason;
};

// Why the CUDA driver offers no device, or "" when it offers one. Asked before the plugin is loaded: loading it
// maps cuBLAS (hundreds of MB) into the process, which on a machine with the toolkit but no GPU costs every run
// a good part of a second for nothing. The driver's own count (cuInit, cuDeviceGetCount) is what the CUDA runtime
// would report; the driver library stays loaded for the plugin.
std::string driver_unavailable() {
    void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (driver == nullptr) {
        const char* why = dlerror();
        return std::string("no CUDA driver (libcuda.so.1: ") + (why ? why : "not found") + ")";
    }
    using init_fn = int (*)(unsigned int);
    using count_fn = int (*)(int*);
    const auto init = reinterpret_cast<init_fn>(dlsym(driver, "cuInit"));
    const auto count = reinterpret_cast<count_fn>(dlsym(driver, "cuDeviceGetCount"));
    if (init == nullptr || count == nullptr) return "no CUDA driver (libcuda.so.1 exports no cuInit/cuDeviceGetCount)";
    if (const int status = init(0); status != 0)
        return "no CUDA device: the driver's cuInit returned " + std::to_string(status) +
               (status == 100 ? " (CUDA_ERROR_NO_DEVICE)" : "");
    int devices = 0;
    if (const int status = count(&devices); status != 0)
        return "no CUDA device: the driver's cuDeviceGetCount returned " + std::to_string(status);
    return devices > 0 ? "" : "no CUDA device: the driver reports 0 devices";
}

DeviceState load() {
    DeviceState state;
    const std::string path = plugin_directory() + "/" + NE_CUDA_PLUGIN_FILE;
    struct stat st{};
    if (stat(path.c_str(), &st) != 0) {
        state.reason = "the CUDA backend was not built (no " + path +
                       "); rebuild with a CUDA compiler present or -DNE_CUDA=ON";
        return state;
    }
    state.found = true;
    if (std::string why = driver_unavailable(); !why.empty()) {
        state.reason = why;
        return state;
    }
    const Plugin& plugin = Plugin::get(NE_CUDA_PLUGIN_FILE);
    if (!plugin.loaded()) {
        state.reason = plugin.reason();
        // The plugin links the CUDA runtime statically, but the driver and cuBLAS dynamically.
        if (state.reason.find("libcublas") != std::string::npos)
            state.reason += "; the CUDA backend needs cuBLAS (libcublas and libcublasLt) of the CUDA version it was "
                            "built with, from the CUDA toolkit or NVIDIA's cuBLAS package: install it or add its "
                            "folder to LD_LIBRARY_PATH";
        return state;
    }
    auto entry = reinterpret_cast<ne_cuda_devices_fn>(plugin.symbol(NE_CUDA_DEVICES_ENTRY));
    const ne_cuda_device_table* table = entry != nullptr ? entry() : nullptr;
    if (table == nullptr || table->abi != NE_CUDA_PLUGIN_ABI) {
        state.reason = plugin.path() + " was built for another plugin ABI than " + std::to_string(NE_CUDA_PLUGIN_ABI) +
                       "; rebuild both libraries together";
        return state;
    }
    char err[512] = "";
    if (table->device_count(&state.devices, err, sizeof err) != NE_OK) {
        state.reason = std::string("no CUDA device: ") + err;
        state.devices = 0;
    } else if (state.devices == 0) {
        state.reason = "no CUDA device: the CUDA runtime reports 0 devices";
    }
    state.table = table;
    return state;
}

const DeviceState& state() {
    static std::once_flag once;
    static DeviceState loaded;
    std::call_once(once, [] { loaded = load(); });
    return loaded;
}

}  // namespace

bool CudaDevices::found() { return state().found; }
bool CudaDevices::loaded() { return state().table != nullptr; }
int32_t CudaDevices::count() { return state().devices; }
const char* CudaDevices::unavailable_reason() { return state().reason.c_str(); }

const ne_cuda_device_table& CudaDevices::table() {
    if (!loaded()) fail(NE_ERR_BACKEND_UNAVAILABLE, unavailable_reason());
    return *state().table;
}

ne_device_info CudaDevices::info(int32_t device) {
    if (!loaded()) fail(NE_ERR_BACKEND_UNAVAILABLE, unavailable_reason());
    ne_device_info info{};
    char err[512] = "";
    check_plugin(state().table->device_info(device, &info, err, sizeof err), err);
    return info;
}

void check_plugin(int32_t status, const char* err) {
    if (status != NE_OK) fail(static_cast<ne_status>(status), err);
}

}  // namespace ne
