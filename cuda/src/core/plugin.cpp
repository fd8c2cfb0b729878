#include "core/plugin.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <climits>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>

#include "nativeengine.h"

namespace ne {

std::string library_directory() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<const void*>(&ne_version), &info) == 0 || info.dli_fname == nullptr) return ".";
    char resolved[PATH_MAX];
    std::string path = realpath(info.dli_fname, resolved) != nullptr ? resolved : info.dli_fname;
    const auto slash = path.find_last_of('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string plugin_directory() {
    // NE_PLUGIN_DIR: plugins from another folder (a test linked to the core objects finds the build's).
    const char* folder = std::getenv("NE_PLUGIN_DIR");
    return folder != nullptr && *folder != '\0' ? std::string(folder) : library_directory();
}

const Plugin& Plugin::get(const std::string& file) {
    static std::mutex mutex;
    static std::map<std::string, std::unique_ptr<Plugin>> loaded;
    const std::lock_guard<std::mutex> lock(mutex);
    auto& plugin = loaded[file];
    if (plugin) return *plugin;
    plugin = std::make_unique<Plugin>();
    plugin->path_ = plugin_directory() + "/" + file;
    struct stat st{};
    if (stat(plugin->path_.c_str(), &st) != 0) {
        plugin->reason_ = "not built (no " + plugin->path_ + ")";
        return *plugin;
    }
    plugin->found_ = true;
    plugin->handle_ = dlopen(plugin->path_.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (plugin->handle_ == nullptr) {
        const char* why = dlerror();
        plugin->reason_ = "could not load " + plugin->path_ + ": " + (why ? why : "unknown dlopen error");
    }
    return *plugin;
}

void* Plugin::symbol(const char* name) const { return handle_ != nullptr ? dlsym(handle_, name) : nullptr; }

}  // namespace ne
