// What the emulated libraries (CUB's device-wide algorithms, cuBLAS) need from the emulated runtime: access to
// device memory from the host while they run, range checks on the pointers they are given, and their diagnostics.
#pragma once
#include <stddef.h>

#include <cuda_runtime.h>

namespace ne_emu {

// While one exists, device memory is accessible to host code (it is protected from the host otherwise, so that a
// host dereference of a device pointer faults). Its end checks every allocation's guard bytes.
class DeviceAccess {
public:
    explicit DeviceAccess(const char* operation);
    ~DeviceAccess();
    DeviceAccess(const DeviceAccess&) = delete;
    DeviceAccess& operator=(const DeviceAccess&) = delete;

private:
    const char* operation_;
};

// True when [pointer, pointer + bytes) lies inside one live device allocation; otherwise prints why, naming the
// call and the argument, and returns false.
bool check_device_range(const char* call, const char* argument, const void* pointer, size_t bytes);

// True when stream is a live stream (or a default stream); otherwise prints why and returns false.
bool check_stream(const char* call, cudaStream_t stream);

// Fills memory nobody has written yet with the schedule's poison (uninitialised reads then differ by schedule).
void poison(void* pointer, size_t bytes);

// Prints a diagnostic line "NE_EMU: ..." to stderr.
void report(const char* format, ...) __attribute__((format(printf, 1, 2)));

// The stream operations run in issue order on the calling thread; this serialises them across host threads.
class DeviceLock {
public:
    DeviceLock();
    ~DeviceLock();
    DeviceLock(const DeviceLock&) = delete;
    DeviceLock& operator=(const DeviceLock&) = delete;
};

}  // namespace ne_emu
