#include "core/cuda_plugin.h"

#include <dlfcn.h>

#include <climits>
#include <cstdlib>
#include <mutex>
#include <string>
#include <sys/stat.h>

#include "core/error.h"

namespace ne {
namespace {

struct PluginState {
    const ne_cuda_plugin* plugin = nullptr;
    bool found = false;
    int32_t devices = 0;
    std::string reason;
};

std::string library_directory() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<const void*>(&ne_version), &info) == 0 || info.dli_fname == nullptr) return ".";
    char resolved[PATH_MAX];
    std::string path = realpath(info.dli_fname, resolved) != nullptr ? resolved : info.dli_fname;
    const auto slash = path.find_last_of('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}

PluginState load() {
    PluginState state;
    const std::string path = library_directory() + "/libnativeengine_cuda.so";
    struct stat st{};
    if (stat(path.c_str(), &st) != 0) {
        state.reason = "the CUDA backend was not built (no " + path +
                       "); rebuild with a CUDA compiler present or -DNE_CUDA=ON";
        return state;
    }
    state.found = true;
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        const char* why = dlerror();
        state.reason = "could not load " + path + ": " + (why ? why : "unknown dlopen error");
        return state;
    }
    auto entry = reinterpret_cast<ne_cuda_plugin_get_fn>(dlsym(handle, NE_CUDA_PLUGIN_ENTRY));
    if (entry == nullptr) {
        state.reason = path + " has no symbol " NE_CUDA_PLUGIN_ENTRY;
        return state;
    }
    const ne_cuda_plugin* plugin = entry();
    if (plugin == nullptr || plugin->abi != NE_CUDA_PLUGIN_ABI) {
        state.reason = path + " was built for another plugin ABI than " + std::to_string(NE_CUDA_PLUGIN_ABI) +
                       "; rebuild both libraries together";
        return state;
    }
    char err[512] = "";
    if (plugin->device_count(&state.devices, err, sizeof err) != NE_OK) {
        state.reason = std::string("no CUDA device: ") + err;
        state.devices = 0;
    } else if (state.devices == 0) {
        state.reason = "no CUDA device: the CUDA runtime reports 0 devices";
    }
    state.plugin = plugin;  // kept loaded for the life of the process
    return state;
}

const PluginState& state() {
    static std::once_flag once;
    static PluginState loaded;
    std::call_once(once, [] { loaded = load(); });
    return loaded;
}

}  // namespace

const ne_cuda_plugin* CudaPlugin::get() { return state().plugin; }
bool CudaPlugin::found() { return state().found; }
int32_t CudaPlugin::device_count() { return state().devices; }
const char* CudaPlugin::unavailable_reason() { return state().reason.c_str(); }

void check_plugin(int32_t status, const char* err) {
    if (status != NE_OK) fail(static_cast<ne_status>(status), err);
}

}  // namespace ne
