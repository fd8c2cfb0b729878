// The emulated CUDA driver: the two driver calls the core makes before it loads the CUDA plugin (cuInit and
// cuDeviceGetCount, core/cuda_devices.cpp), built as libcuda.so.1 beside the emulated core, which finds it first
// through its run path. It agrees with the emulated runtime: NE_EMU_DEVICES=0 is a machine without a device.
#include <stdlib.h>

namespace {

constexpr int kSuccess = 0;             // CUDA_SUCCESS
constexpr int kInvalidValue = 1;        // CUDA_ERROR_INVALID_VALUE
constexpr int kNotInitialized = 3;      // CUDA_ERROR_NOT_INITIALIZED
constexpr int kNoDevice = 100;          // CUDA_ERROR_NO_DEVICE

bool initialized = false;

int devices() {
    const char* v = getenv("NE_EMU_DEVICES");
    return v != nullptr && atoi(v) <= 0 ? 0 : 1;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int cuInit(unsigned int flags) {
    if (flags != 0) return kInvalidValue;
    if (devices() == 0) return kNoDevice;
    initialized = true;
    return kSuccess;
}

__attribute__((visibility("default"))) int cuDeviceGetCount(int* count) {
    if (!initialized) return kNotInitialized;
    if (count == nullptr) return kInvalidValue;
    *count = devices();
    return kSuccess;
}

}  // extern "C"
