// ne_context: the backend and device a set of models runs on.
#pragma once
#include "nativeengine.h"

struct ne_context {
    ne_backend backend;  // CPU or CUDA, resolved (never AUTO)
    int32_t device;      // CUDA ordinal; 0 for CPU
};

namespace ne {

ne_context* create_context(int32_t backend, int32_t device);
ne_device_info device_info(const ne_context& ctx);
int32_t cpu_threads();

}  // namespace ne
