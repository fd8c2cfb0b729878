// Optional parts of the engine live in plugin libraries beside libnativeengine (the CUDA backend, collectives),
// loaded at run time when present, as ggml loads its backends: one build runs on machines without CUDA or MPI.
// This is the generic loader; what a plugin exports is defined by its users (core/cuda_devices.h,
// models/cuda_table.h).
#pragma once
#include <string>

namespace ne {

class Plugin {
public:
    // The plugin `file` (e.g. "libnativeengine_cuda.so") from the directory of libnativeengine (or NE_PLUGIN_DIR when
    // set), loaded once per
    // process on first use (thread-safe) and kept loaded. Never throws: a plugin that is absent or fails to load
    // is reported by found() and reason().
    static const Plugin& get(const std::string& file);

    bool found() const { return found_; }          // the file exists
    bool loaded() const { return handle_ != nullptr; }
    const std::string& reason() const { return reason_; }  // why it is not loaded; "" when it is
    const std::string& path() const { return path_; }
    // The exported symbol, or nullptr (also when not loaded).
    void* symbol(const char* name) const;

private:
    std::string path_, reason_;
    bool found_ = false;
    void* handle_ = nullptr;
};

// The directory libnativeengine was loaded from.
std::string library_directory();
// Where plugins are looked for: NE_PLUGIN_DIR when set, else library_directory().
std::string plugin_directory();

}  // namespace ne
