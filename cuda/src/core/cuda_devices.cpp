#include "core/cuda_devices.h"

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

DeviceState load() {
    DeviceState state;
    const Plugin& plugin = Plugin::get(NE_CUDA_PLUGIN_FILE);
    state.found = plugin.found();
    if (!plugin.found()) {
        state.reason = "the CUDA backend was not built (no " + plugin.path() +
                       "); rebuild with a CUDA compiler present or -DNE_CUDA=ON";
        return state;
    }
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
