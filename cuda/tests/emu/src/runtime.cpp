// The emulated CUDA runtime's host side: the device, device memory, streams and errors.
//
// Device memory is host memory in its own mapping per allocation:
//   [guard page][front slack ... | data, 256-byte aligned, ending on a 256-byte boundary | tail slack][guard page]
// Access past the rounded end or before the front slack faults at once on a guard page; the slack bytes hold a
// canary checked after every device operation (and poisoned for AddressSanitizer, which then reports the access
// itself). Outside device operations (kernels, copies, CUB, cuBLAS) every allocation is mapped PROT_NONE, so a
// host dereference of a device pointer faults too; a freed allocation stays PROT_NONE for a while, so a use after
// cudaFree faults. New memory is filled with the schedule's poison, so reading memory nobody wrote gives results
// that differ between schedules. A fault in any of these is reported by name (allocation, offset, kernel) before
// the process ends.
#include <execinfo.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cublas_v2.h>

#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "internal.h"
#include "ne_emu/host.h"

#if NE_EMU_ASAN
#  include <sanitizer/asan_interface.h>
#  include <sanitizer/common_interface_defs.h>
#endif

struct CUstream_st {
    uint64_t id;
    unsigned int flags;
};

namespace ne_emu {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kAlignment = 256;    // cudaMalloc's guarantee
constexpr size_t kFrontSlack = 64;    // at least this many canary bytes before the data
constexpr unsigned char kCanary = 0xcb;
constexpr size_t kQuarantineBytes = size_t(1) << 30;  // freed address space kept inaccessible
const char* const kDeviceName = "emulated CUDA device (CPU)";

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

struct Allocation {
    uint64_t id = 0;
    char* mapping = nullptr;  // the whole mapping, guard pages included
    size_t mapping_bytes = 0;
    char* access = nullptr;   // between the guard pages
    size_t access_bytes = 0;
    char* data = nullptr;     // what cudaMalloc returned
    size_t bytes = 0;         // what was asked for
    size_t rounded = 0;       // bytes rounded up to kAlignment
};

struct State {
    std::recursive_mutex lock;
    std::map<uintptr_t, Allocation> live;  // by data address
    std::deque<Allocation> freed;          // quarantine, oldest first
    size_t freed_bytes = 0, used_bytes = 0;
    uint64_t next_allocation = 1, next_stream = 1;
    std::set<cudaStream_t> streams;
    std::set<cublasHandle_t> blas;
    std::map<const void*, int> shared_limit;     // per kernel
    std::map<const void*, size_t> static_shared;  // per kernel: the most any of its blocks declared
    int access_depth = 0;                     // DeviceAccess nesting
    bool protect = true;                      // NE_EMU_PROTECT=0 leaves device memory readable by the host
    int devices = 1;                          // NE_EMU_DEVICES=0 emulates a machine without a device
    size_t total_bytes = size_t(16) << 30;    // NE_EMU_MEMORY_MB
    struct sigaction previous_segv {}, previous_bus{};
};

thread_local cudaError_t t_last_error = cudaSuccess;
thread_local int t_device = 0;

void install_fault_handler(State& s);

// After an AddressSanitizer report: which kernel, block, thread and schedule were running.
void name_running_kernel(const char*) {
    char kernel[512];
    describe_running_kernel(kernel, sizeof kernel);
    if (kernel[0]) report("the access above was made %s", kernel);
}

State& state() {
    static State* s = [] {
        auto* created = new State();  // never destroyed: fault reports may need it during exit
        if (const char* v = getenv("NE_EMU_PROTECT")) created->protect = strcmp(v, "0") != 0;
        if (const char* v = getenv("NE_EMU_DEVICES")) created->devices = atoi(v) > 0 ? 1 : 0;
        if (const char* v = getenv("NE_EMU_MEMORY_MB"); v != nullptr && atoll(v) > 0)
            created->total_bytes = static_cast<size_t>(atoll(v)) << 20;
        install_fault_handler(*created);
#if NE_EMU_ASAN
        __asan_set_error_report_callback(name_running_kernel);
#endif
        return created;
    }();
    return *s;
}

void set_protection(const Allocation& a, bool accessible) {
    if (mprotect(a.access, a.access_bytes, accessible ? PROT_READ | PROT_WRITE : PROT_NONE) != 0) {
        report("mprotect of device allocation #%llu failed", static_cast<unsigned long long>(a.id));
        abort();
    }
}

// The live allocation holding address, or null. Called from the fault handler too, so it takes no lock.
const Allocation* find_live(const State& s, const void* address) {
    const auto p = reinterpret_cast<uintptr_t>(address);
    auto inside = [p](const Allocation& a) {
        return p >= reinterpret_cast<uintptr_t>(a.mapping) && p < reinterpret_cast<uintptr_t>(a.mapping + a.mapping_bytes);
    };
    // Keyed by the data address, which lies inside the mapping: the allocation holding p has the last key <= p, or
    // the first key > p (p in its leading guard page or slack).
    auto it = s.live.upper_bound(p);
    if (it != s.live.end() && inside(it->second)) return &it->second;
    if (it == s.live.begin()) return nullptr;
    --it;
    return inside(it->second) ? &it->second : nullptr;
}

const Allocation* find_freed(const State& s, const void* address) {
    const char* p = static_cast<const char*>(address);
    for (const Allocation& a : s.freed)
        if (p >= a.mapping && p < a.mapping + a.mapping_bytes) return &a;
    return nullptr;
}

// Where address lies relative to allocation a, in words.
std::string locate(const Allocation& a, const void* address) {
    const char* p = static_cast<const char*>(address);
    char text[256];
    if (p >= a.data && p < a.data + a.bytes)
        snprintf(text, sizeof text, "offset %td of device allocation #%llu (%zu bytes at %p)", p - a.data,
                 static_cast<unsigned long long>(a.id), a.bytes, static_cast<void*>(a.data));
    else if (p >= a.data + a.bytes)
        snprintf(text, sizeof text, "%td bytes past the end of device allocation #%llu (%zu bytes at %p)",
                 p - (a.data + a.bytes), static_cast<unsigned long long>(a.id), a.bytes, static_cast<void*>(a.data));
    else
        snprintf(text, sizeof text, "%td bytes before device allocation #%llu (%zu bytes at %p)", a.data - p,
                 static_cast<unsigned long long>(a.id), a.bytes, static_cast<void*>(a.data));
    return text;
}

// The canary bytes of a: the first one overwritten, or null.
const char* broken_canary(const Allocation& a) {
    if (NE_EMU_ASAN) return nullptr;  // AddressSanitizer reports the access itself
    for (const char* p = a.access; p < a.data; ++p)
        if (static_cast<unsigned char>(*p) != kCanary) return p;
    for (const char* p = a.data + a.bytes; p < a.data + a.rounded; ++p)
        if (static_cast<unsigned char>(*p) != kCanary) return p;
    return nullptr;
}

void check_canaries(const State& s, const char* operation) {
    for (const auto& [key, a] : s.live)
        if (const char* p = broken_canary(a)) {
            char kernel[512];
            describe_running_kernel(kernel, sizeof kernel);
            report("out-of-bounds write found after %s: %s was overwritten%s%s", operation, locate(a, p).c_str(),
                   kernel[0] ? " " : "", kernel);
            abort();
        }
}

void fault_handler(int signal, siginfo_t* info, void* context) {
    State& s = state();
    const void* address = info->si_addr;
    char kernel[512], stack[256];
    describe_running_kernel(kernel, sizeof kernel);
    const char* where = kernel[0] ? kernel : "in host code";
    if (const Allocation* a = find_live(s, address)) {
        const char* p = static_cast<const char*>(address);
        if (p >= a->access && p < a->access + a->access_bytes)
            report("host code accessed device memory at %p, %s, outside any device operation (%s)", address,
                   locate(*a, address).c_str(), where);
        else
            report("out-of-bounds access at %p, %s (%s)", address, locate(*a, address).c_str(), where);
    } else if (const Allocation* f = find_freed(s, address)) {
        report("access at %p to freed device memory: %s, freed by cudaFree (%s)", address,
               locate(*f, address).c_str(), where);
    } else if (describe_stack_guard(address, stack, sizeof stack)) {
        report("%s (%s)", stack, where);
    } else {
        report("%s at %p (%s)", signal == SIGBUS ? "SIGBUS" : "SIGSEGV", address, where);
    }
    print_stack();
    // Hand the signal to whoever handled it before (AddressSanitizer, or the default action) as it recurs.
    sigaction(signal, signal == SIGBUS ? &s.previous_bus : &s.previous_segv, nullptr);
    (void)context;
}

void install_fault_handler(State& s) {
    struct sigaction action {};
    action.sa_sigaction = fault_handler;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &s.previous_segv);
    sigaction(SIGBUS, &action, &s.previous_bus);
    stack_t current{};
    if (sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE)) {
        stack_t alternate{};
        alternate.ss_size = 1 << 16;
        alternate.ss_sp = malloc(alternate.ss_size);
        sigaltstack(&alternate, nullptr);
    }
}

bool valid_stream(const State& s, cudaStream_t stream) {
    return stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread || s.streams.count(stream) > 0;
}

// Where a pointer range passed to a copy lies.
enum class Place { kDevice, kHost, kBad };

Place classify(const State& s, const char* call, const char* argument, const void* pointer, size_t bytes) {
    if (pointer == nullptr) {
        report("%s: %s is null", call, argument);
        return Place::kBad;
    }
    const char* p = static_cast<const char*>(pointer);
    if (const Allocation* a = find_live(s, p)) {
        if (p >= a->data && p + bytes <= a->data + a->bytes) return Place::kDevice;
        report("%s: %s [%p, +%zu) is not inside device allocation #%llu (%zu bytes at %p): %s", call, argument, pointer,
               bytes, static_cast<unsigned long long>(a->id), a->bytes, static_cast<void*>(a->data),
               locate(*a, p < a->data ? p : p + bytes - 1).c_str());
        return Place::kBad;
    }
    if (const Allocation* f = find_freed(s, p)) {
        report("%s: %s %p is freed device memory (%s)", call, argument, pointer, locate(*f, p).c_str());
        return Place::kBad;
    }
    // Host memory must not run into a device allocation either.
    auto it = s.live.lower_bound(reinterpret_cast<uintptr_t>(p));
    if (it != s.live.end() && reinterpret_cast<uintptr_t>(it->second.mapping) < reinterpret_cast<uintptr_t>(p + bytes)) {
        report("%s: %s [%p, +%zu) runs from host memory into device allocation #%llu", call, argument, pointer, bytes,
               static_cast<unsigned long long>(it->second.id));
        return Place::kBad;
    }
    return Place::kHost;
}

const char* kind_name(cudaMemcpyKind kind) {
    switch (kind) {
        case cudaMemcpyHostToHost: return "cudaMemcpyHostToHost";
        case cudaMemcpyHostToDevice: return "cudaMemcpyHostToDevice";
        case cudaMemcpyDeviceToHost: return "cudaMemcpyDeviceToHost";
        case cudaMemcpyDeviceToDevice: return "cudaMemcpyDeviceToDevice";
        case cudaMemcpyDefault: return "cudaMemcpyDefault";
    }
    return "an unknown cudaMemcpyKind";
}

cudaError_t copy(const char* call, void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
    State& s = state();
    DeviceLock lock;
    if (!valid_stream(s, stream)) {
        report("%s: stream %p is not a live stream", call, static_cast<void*>(stream));
        return record(cudaErrorInvalidResourceHandle);
    }
    if (bytes == 0) return cudaSuccess;
    const Place to = classify(s, call, "dst", dst, bytes), from = classify(s, call, "src", src, bytes);
    if (to == Place::kBad || from == Place::kBad) return record(cudaErrorInvalidValue);
    const bool ok = kind == cudaMemcpyDefault ||
                    (kind == cudaMemcpyHostToHost && to == Place::kHost && from == Place::kHost) ||
                    (kind == cudaMemcpyHostToDevice && to == Place::kDevice && from == Place::kHost) ||
                    (kind == cudaMemcpyDeviceToHost && to == Place::kHost && from == Place::kDevice) ||
                    (kind == cudaMemcpyDeviceToDevice && to == Place::kDevice && from == Place::kDevice);
    if (!ok) {
        report("%s: %s, but dst is %s memory and src is %s memory", call, kind_name(kind),
               to == Place::kDevice ? "device" : "host", from == Place::kDevice ? "device" : "host");
        return record(kind > cudaMemcpyDefault ? cudaErrorInvalidMemcpyDirection : cudaErrorInvalidValue);
    }
    const char *d = static_cast<const char*>(dst), *r = static_cast<const char*>(src);
    if (d < r + bytes && r < d + bytes) {
        report("%s: dst and src overlap", call);
        return record(cudaErrorInvalidValue);
    }
    DeviceAccess access(call);
    memcpy(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t fill(const char* call, void* dst, int value, size_t bytes, cudaStream_t stream) {
    State& s = state();
    DeviceLock lock;
    if (!valid_stream(s, stream)) {
        report("%s: stream %p is not a live stream", call, static_cast<void*>(stream));
        return record(cudaErrorInvalidResourceHandle);
    }
    if (bytes == 0) return cudaSuccess;
    const Place place = classify(s, call, "devPtr", dst, bytes);
    if (place != Place::kDevice) {
        if (place == Place::kHost) report("%s: devPtr %p is not device memory", call, dst);
        return record(cudaErrorInvalidValue);
    }
    DeviceAccess access(call);
    memset(dst, value, bytes);
    return cudaSuccess;
}

cudaError_t check_device(int device) {
    const State& s = state();
    if (s.devices == 0) return record(cudaErrorNoDevice);
    if (device < 0 || device >= s.devices) return record(cudaErrorInvalidDevice);
    return cudaSuccess;
}

}  // namespace

// ---- shared with the other parts -------------------------------------------------------------------------------

void report(const char* format, ...) {
    char text[2048];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    fprintf(stderr, "NE_EMU: %s\n", text);
    fflush(stderr);
}

void print_stack() {
#if NE_EMU_ASAN
    __sanitizer_print_stack_trace();
#else
    void* frames[64];
    const int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
#endif
}

cudaError_t record(cudaError_t error) {
    if (error != cudaSuccess) t_last_error = error;
    return error;
}

Schedule current_schedule() {
    Schedule schedule;
    const char* v = getenv("NE_EMU_SCHEDULE");
    if (v == nullptr || *v == '\0' || strcmp(v, "forward") == 0) return schedule;
    if (strcmp(v, "reverse") == 0) {
        schedule.order = Schedule::Order::kReverse;
        return schedule;
    }
    if (strncmp(v, "random", 6) == 0 && (v[6] == '\0' || v[6] == ':')) {
        schedule.order = Schedule::Order::kRandom;
        schedule.seed = 1;
        if (v[6] == ':') {
            char* end = nullptr;
            schedule.seed = strtoull(v + 7, &end, 10);
            if (end == v + 7 || *end != '\0') {
                report("NE_EMU_SCHEDULE=%s: the seed must be a decimal integer (random:SEED)", v);
                abort();
            }
        }
        return schedule;
    }
    report("NE_EMU_SCHEDULE=%s is not a schedule: forward, reverse, random or random:SEED", v);
    abort();
}

const char* schedule_name(const Schedule& schedule, char* buffer, size_t size) {
    switch (schedule.order) {
        case Schedule::Order::kForward: snprintf(buffer, size, "forward"); break;
        case Schedule::Order::kReverse: snprintf(buffer, size, "reverse"); break;
        case Schedule::Order::kRandom:
            snprintf(buffer, size, "random:%llu", static_cast<unsigned long long>(schedule.seed));
            break;
    }
    return buffer;
}

int dynamic_shared_limit(const void* function) {
    State& s = state();
    auto it = s.shared_limit.find(function);
    return it == s.shared_limit.end() ? kSharedPerBlock : it->second;
}

size_t static_shared_bytes(const void* function) {
    State& s = state();
    auto it = s.static_shared.find(function);
    return it == s.static_shared.end() ? 0 : it->second;
}

void note_static_shared_bytes(const void* function, size_t bytes) {
    size_t& most = state().static_shared[function];
    most = bytes > most ? bytes : most;
}

void poison(void* pointer, size_t bytes) {
    static uint64_t fills = 0;
    const Schedule schedule = current_schedule();
    unsigned char* p = static_cast<unsigned char*>(pointer);
    switch (schedule.order) {
        case Schedule::Order::kForward: memset(p, 0xff, bytes); break;   // NaN, -1
        case Schedule::Order::kReverse: memset(p, 0x7f, bytes); break;   // 3.4e38, 2^31 - 1 - ...
        case Schedule::Order::kRandom: {
            uint64_t x = mix64(schedule.seed ^ mix64(++fills));
            for (size_t i = 0; i < bytes; ++i) {
                if (i % 8 == 0) x = mix64(x);
                p[i] = static_cast<unsigned char>(x >> (8 * (i % 8)));
            }
            break;
        }
    }
}

DeviceLock::DeviceLock() { state().lock.lock(); }
DeviceLock::~DeviceLock() { state().lock.unlock(); }

DeviceAccess::DeviceAccess(const char* operation) : operation_(operation) {
    State& s = state();
    s.lock.lock();
    if (s.access_depth++ == 0 && s.protect)
        for (const auto& [key, a] : s.live) set_protection(a, true);
}

DeviceAccess::~DeviceAccess() {
    State& s = state();
    check_canaries(s, operation_);
    if (--s.access_depth == 0 && s.protect)
        for (const auto& [key, a] : s.live) set_protection(a, false);
    s.lock.unlock();
}

bool check_device_range(const char* call, const char* argument, const void* pointer, size_t bytes) {
    State& s = state();
    DeviceLock lock;
    const Place place = classify(s, call, argument, pointer, bytes > 0 ? bytes : 1);
    if (place == Place::kHost) report("%s: %s %p is not device memory", call, argument, pointer);
    return place == Place::kDevice;
}

bool check_stream(const char* call, cudaStream_t stream) {
    State& s = state();
    DeviceLock lock;
    if (valid_stream(s, stream)) return true;
    report("%s: stream %p is not a live stream", call, static_cast<void*>(stream));
    return false;
}

// cuBLAS handles live here too, so that leaks and stale handles are found the same way as streams'.
bool register_blas(cublasHandle_t handle, bool add) {
    State& s = state();
    DeviceLock lock;
    if (add) return s.blas.insert(handle).second;
    return s.blas.erase(handle) > 0;
}

bool live_blas(cublasHandle_t handle) {
    State& s = state();
    DeviceLock lock;
    return s.blas.count(handle) > 0;
}

}  // namespace ne_emu

using namespace ne_emu;

// ---- the runtime API ---------------------------------------------------------------------------------------------

cudaError_t cudaGetDeviceCount(int* count) {
    if (count == nullptr) return record(cudaErrorInvalidValue);
    *count = state().devices;
    return state().devices == 0 ? record(cudaErrorNoDevice) : cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    if (const cudaError_t e = check_device(device); e != cudaSuccess) return e;
    t_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
    if (device == nullptr) return record(cudaErrorInvalidValue);
    *device = t_device;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
    if (prop == nullptr) return record(cudaErrorInvalidValue);
    if (const cudaError_t e = check_device(device); e != cudaSuccess) return e;
    *prop = cudaDeviceProp{};
    snprintf(prop->name, sizeof prop->name, "%s", kDeviceName);
    prop->totalGlobalMem = state().total_bytes;
    prop->sharedMemPerBlock = kSharedPerBlock;
    prop->sharedMemPerBlockOptin = kSharedOptin;
    prop->sharedMemPerMultiprocessor = 228 * 1024;
    prop->regsPerBlock = 65536;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = kMaxThreadsPerBlock;
    prop->maxThreadsPerMultiProcessor = 2048;
    prop->l2CacheSize = 50 * 1024 * 1024;
    prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 0x7fffffff;
    prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = 1;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
    if (value == nullptr) return record(cudaErrorInvalidValue);
    if (const cudaError_t e = check_device(device); e != cudaSuccess) return e;
    switch (attr) {
        case cudaDevAttrMaxThreadsPerBlock: *value = kMaxThreadsPerBlock; break;
        case cudaDevAttrMaxSharedMemoryPerBlock: *value = kSharedPerBlock; break;
        case cudaDevAttrWarpSize: *value = 32; break;
        case cudaDevAttrMultiProcessorCount: *value = 1; break;
        case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
        case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
        case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = kSharedOptin; break;
        default:
            report("cudaDeviceGetAttribute: attribute %d is not emulated", static_cast<int>(attr));
            return record(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
    DeviceLock lock;  // every stream has finished its work when it was issued
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
    State& s = state();
    DeviceLock lock;
    if (free_bytes == nullptr || total_bytes == nullptr) return record(cudaErrorInvalidValue);
    *total_bytes = s.total_bytes;
    *free_bytes = s.total_bytes - s.used_bytes;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void** pointer, size_t bytes) {
    State& s = state();
    DeviceLock lock;
    if (pointer == nullptr) return record(cudaErrorInvalidValue);
    *pointer = nullptr;
    if (s.devices == 0) return record(cudaErrorNoDevice);
    if (bytes == 0) return cudaSuccess;
    if (bytes > s.total_bytes - s.used_bytes) {
        report("cudaMalloc of %zu bytes: the emulated device has %zu of %zu bytes free (NE_EMU_MEMORY_MB)", bytes,
               s.total_bytes - s.used_bytes, s.total_bytes);
        return record(cudaErrorMemoryAllocation);
    }
    Allocation a;
    a.id = s.next_allocation++;
    a.bytes = bytes;
    a.rounded = round_up(bytes, kAlignment);
    a.access_bytes = round_up(a.rounded + kFrontSlack, kPage);
    a.mapping_bytes = a.access_bytes + 2 * kPage;
    void* mapping = mmap(nullptr, a.mapping_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapping == MAP_FAILED) return record(cudaErrorMemoryAllocation);
    a.mapping = static_cast<char*>(mapping);
    a.access = a.mapping + kPage;
    a.data = a.access + a.access_bytes - a.rounded;
    set_protection(a, true);
    memset(a.access, kCanary, a.access_bytes);
    ne_emu::poison(a.data, a.bytes);
#if NE_EMU_ASAN
    // The functions, not the ASAN_* macros: this file is not instrumented itself, and the macros are empty then.
    __asan_poison_memory_region(a.access, static_cast<size_t>(a.data - a.access));
    __asan_poison_memory_region(a.data + a.bytes, a.rounded - a.bytes);
#endif
    if (s.protect && s.access_depth == 0) set_protection(a, false);
    s.live[reinterpret_cast<uintptr_t>(a.data)] = a;
    s.used_bytes += bytes;
    *pointer = a.data;
    return cudaSuccess;
}

cudaError_t cudaFree(void* pointer) {
    State& s = state();
    DeviceLock lock;
    if (pointer == nullptr) return cudaSuccess;
    auto it = s.live.find(reinterpret_cast<uintptr_t>(pointer));
    if (it == s.live.end()) {
        if (const Allocation* f = find_freed(s, pointer))
            report("cudaFree(%p): already freed (%s)", pointer, locate(*f, pointer).c_str());
        else if (const Allocation* a = find_live(s, pointer))
            report("cudaFree(%p): not the start of an allocation (%s)", pointer, locate(*a, pointer).c_str());
        else
            report("cudaFree(%p): not device memory", pointer);
        return record(cudaErrorInvalidValue);
    }
    Allocation a = it->second;
    if (s.protect && s.access_depth == 0) set_protection(a, true);
    if (const char* p = broken_canary(a)) {
        report("out-of-bounds write found at cudaFree: %s was overwritten", locate(a, p).c_str());
        abort();
    }
#if NE_EMU_ASAN
    __asan_unpoison_memory_region(a.access, a.access_bytes);
#endif
    // Drop the pages but keep the addresses reserved and inaccessible for a while.
    if (mmap(a.access, a.access_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) ==
        MAP_FAILED) {
        report("cudaFree(%p): could not release the pages", pointer);
        abort();
    }
    s.live.erase(it);
    s.used_bytes -= a.bytes;
    s.freed.push_back(a);
    s.freed_bytes += a.mapping_bytes;
    while (s.freed_bytes > kQuarantineBytes) {
        const Allocation& old = s.freed.front();
        munmap(old.mapping, old.mapping_bytes);
        s.freed_bytes -= old.mapping_bytes;
        s.freed.pop_front();
    }
    return cudaSuccess;
}

// Stream-ordered allocation: the emulator runs each stream's work as it is issued, so in stream order is now.
cudaError_t cudaMallocAsync(void** pointer, size_t bytes, cudaStream_t stream) {
    if (!check_stream("cudaMallocAsync", stream)) return record(cudaErrorInvalidResourceHandle);
    return cudaMalloc(pointer, bytes);
}

cudaError_t cudaFreeAsync(void* pointer, cudaStream_t stream) {
    if (!check_stream("cudaFreeAsync", stream)) return record(cudaErrorInvalidResourceHandle);
    return cudaFree(pointer);
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    return copy("cudaMemcpy", dst, src, bytes, kind, nullptr);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
    return copy("cudaMemcpyAsync", dst, src, bytes, kind, stream);
}

cudaError_t cudaMemset(void* dst, int value, size_t bytes) { return fill("cudaMemset", dst, value, bytes, nullptr); }

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
    return fill("cudaMemsetAsync", dst, value, bytes, stream);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
    State& s = state();
    DeviceLock lock;
    if (stream == nullptr || (flags & ~cudaStreamNonBlocking) != 0) return record(cudaErrorInvalidValue);
    if (s.devices == 0) return record(cudaErrorNoDevice);
    *stream = new CUstream_st{s.next_stream++, flags};
    s.streams.insert(*stream);
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    State& s = state();
    DeviceLock lock;
    if (s.streams.erase(stream) == 0) {
        report("cudaStreamDestroy(%p): not a live stream", static_cast<void*>(stream));
        return record(cudaErrorInvalidResourceHandle);
    }
    delete stream;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    State& s = state();
    DeviceLock lock;
    if (!valid_stream(s, stream)) {
        report("cudaStreamSynchronize(%p): not a live stream", static_cast<void*>(stream));
        return record(cudaErrorInvalidResourceHandle);
    }
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* function, cudaFuncAttribute attr, int value) {
    State& s = state();
    DeviceLock lock;
    if (function == nullptr) return record(cudaErrorInvalidValue);
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) {
        report("cudaFuncSetAttribute: attribute %d is not emulated", static_cast<int>(attr));
        return record(cudaErrorInvalidValue);
    }
    if (value < 0 || value > kSharedOptin) {
        report("cudaFuncSetAttribute: MaxDynamicSharedMemorySize %d is outside [0, %d]", value, kSharedOptin);
        return record(cudaErrorInvalidValue);
    }
    s.shared_limit[function] = value;
    return cudaSuccess;
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attributes, const void* function) {
    DeviceLock lock;
    if (attributes == nullptr || function == nullptr) return record(cudaErrorInvalidValue);
    *attributes = cudaFuncAttributes{};
    attributes->sharedSizeBytes = static_shared_bytes(function);
    attributes->maxThreadsPerBlock = kMaxThreadsPerBlock;
    attributes->maxDynamicSharedSizeBytes = dynamic_shared_limit(function);
    attributes->ptxVersion = attributes->binaryVersion = 90;
    return cudaSuccess;
}

// The API level emulated: CUDA 11.8's, the toolkit the engine's CUDA code is built with on Debian.
cudaError_t cudaRuntimeGetVersion(int* version) {
    if (version == nullptr) return record(cudaErrorInvalidValue);
    *version = 11080;
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* version) {
    if (version == nullptr) return record(cudaErrorInvalidValue);
    *version = state().devices == 0 ? 0 : 11080;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    const cudaError_t e = t_last_error;
    t_last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return t_last_error; }

const char* cudaGetErrorName(cudaError_t error) {
    switch (error) {
#define NE_EMU_NAME(e) \
    case e: return #e;
        NE_EMU_NAME(cudaSuccess)
        NE_EMU_NAME(cudaErrorInvalidValue)
        NE_EMU_NAME(cudaErrorMemoryAllocation)
        NE_EMU_NAME(cudaErrorInitializationError)
        NE_EMU_NAME(cudaErrorInvalidConfiguration)
        NE_EMU_NAME(cudaErrorInvalidMemcpyDirection)
        NE_EMU_NAME(cudaErrorInsufficientDriver)
        NE_EMU_NAME(cudaErrorNoDevice)
        NE_EMU_NAME(cudaErrorInvalidDevice)
        NE_EMU_NAME(cudaErrorInvalidResourceHandle)
        NE_EMU_NAME(cudaErrorIllegalAddress)
        NE_EMU_NAME(cudaErrorLaunchOutOfResources)
        NE_EMU_NAME(cudaErrorLaunchFailure)
        NE_EMU_NAME(cudaErrorNotSupported)
        NE_EMU_NAME(cudaErrorUnknown)
#undef NE_EMU_NAME
    }
    return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
    switch (error) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInitializationError: return "initialization error";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
        case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
        case cudaErrorNoDevice: return "no CUDA-capable device is detected (emulated: NE_EMU_DEVICES=0)";
        case cudaErrorInvalidDevice: return "invalid device ordinal";
        case cudaErrorInvalidResourceHandle: return "invalid resource handle";
        case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
        case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
        case cudaErrorLaunchFailure: return "unspecified launch failure";
        case cudaErrorNotSupported: return "operation not supported";
        default: return "unknown error";
    }
}

namespace ne_emu {
namespace {

// At exit: whatever was never freed or destroyed. NE_EMU_LEAKS=fail makes it a failure (the emulated tests set it).
struct LeakCheck {
    ~LeakCheck() {
        State& s = state();
        const size_t allocations = s.live.size(), streams = s.streams.size(), blas = s.blas.size();
        if (allocations + streams + blas == 0) return;
        report("at exit: %zu device allocation(s) (%zu bytes), %zu stream(s) and %zu cuBLAS handle(s) were never "
               "released",
               allocations, s.used_bytes, streams, blas);
        for (const auto& [key, a] : s.live)
            report("  allocation #%llu: %zu bytes at %p", static_cast<unsigned long long>(a.id), a.bytes,
                   static_cast<void*>(a.data));
        const char* v = getenv("NE_EMU_LEAKS");
        if (v != nullptr && strcmp(v, "fail") == 0) _exit(1);
    }
} leak_check;

}  // namespace
}  // namespace ne_emu
