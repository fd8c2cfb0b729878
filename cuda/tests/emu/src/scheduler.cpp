// Kernel execution: every block of a launch in turn, every thread of a block a fiber on the launching host thread.
//
// A thread runs until it reaches a barrier (__syncthreads), a warp collective whose lanes have not all arrived, or
// its end; then the next ready thread runs. The order is the schedule's: by thread index (forward), the reverse,
// or a fresh random permutation at every round (random:SEED); blocks run in the same kind of order. A thread thus
// sees every write its block made before the last barrier, plus, between barriers, the writes of the threads the
// schedule ran before it: a missing barrier or a race on shared memory gives results that depend on the schedule.
// Memory a block has not written yet (its shared memory, fresh device memory) holds the schedule's poison.
//
// A barrier completes when every thread of the block waits at one; a thread that ends while others wait is a
// divergent barrier, and threads that can no longer progress are a deadlock: both are reported and abort.
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>
#include <string>
#include <vector>

#include "internal.h"
#include "ne_emu/host.h"

#if NE_EMU_ASAN
#  include <sanitizer/asan_interface.h>
#  include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__) || defined(NE_EMU_UCONTEXT)
#  define NE_EMU_USE_UCONTEXT 1
#  include <ucontext.h>
#else
#  define NE_EMU_USE_UCONTEXT 0
#endif

// A fiber's first function: runs threads of the current block on the fiber's stack (see its definition).
extern "C" __attribute__((visibility("hidden"), noreturn)) void ne_emu_fiber_main(void* fiber);

namespace ne_emu {

uint3 thread_index{0, 0, 0}, block_index{0, 0, 0};
dim3 block_dim, grid_dim;

namespace {

constexpr size_t kPage = 4096;
#if NE_EMU_ASAN
constexpr size_t kStackBytes = 512 * 1024;  // AddressSanitizer's frames and reports are large
#else
constexpr size_t kStackBytes = 128 * 1024;
#endif

// ---- fibers ----------------------------------------------------------------------------------------------------

#if NE_EMU_USE_UCONTEXT
struct Context {
    ucontext_t context;
};
#else
struct Context {
    void* sp = nullptr;
};
// Saves the callee-saved registers, the SSE and x87 control words and the stack pointer of the running context in
// *save, and resumes the context whose stack pointer is next.
extern "C" __attribute__((visibility("hidden"))) void ne_emu_switch_context(void** save, void* next);
extern "C" __attribute__((visibility("hidden"))) void ne_emu_fiber_trampoline();
asm(R"(
    .text
    .globl ne_emu_switch_context
    .hidden ne_emu_switch_context
    .type ne_emu_switch_context, @function
ne_emu_switch_context:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size ne_emu_switch_context, .-ne_emu_switch_context

    .globl ne_emu_fiber_trampoline
    .hidden ne_emu_fiber_trampoline
    .type ne_emu_fiber_trampoline, @function
ne_emu_fiber_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    call ne_emu_fiber_main
    ud2
    .cfi_endproc
    .size ne_emu_fiber_trampoline, .-ne_emu_fiber_trampoline
)");
#endif

struct Fiber {
    char* mapping = nullptr;  // guard page, then the stack
    char* stack = nullptr;    // lowest usable address
    size_t size = 0;
    Context context;
    void* fake_stack = nullptr;  // AddressSanitizer's bookkeeping while switched out
};

#if NE_EMU_USE_UCONTEXT
void fiber_entry_ucontext(unsigned int high, unsigned int low) {
    ne_emu_fiber_main(reinterpret_cast<Fiber*>((static_cast<uintptr_t>(high) << 32) | low));
}
#endif

// Sets fiber up to start at ne_emu_fiber_main when next switched to.
void prepare(Fiber& fiber) {
#if NE_EMU_ASAN
    // The frames of the stack's last user are gone; clear what AddressSanitizer may still mark near the top.
    constexpr size_t kTop = 16 * 1024;
    __asan_unpoison_memory_region(fiber.stack + fiber.size - kTop, kTop);
#endif
#if NE_EMU_USE_UCONTEXT
    getcontext(&fiber.context.context);
    fiber.context.context.uc_stack.ss_sp = fiber.stack;
    fiber.context.context.uc_stack.ss_size = fiber.size;
    fiber.context.context.uc_link = nullptr;
    const auto address = reinterpret_cast<uintptr_t>(&fiber);
    makecontext(&fiber.context.context, reinterpret_cast<void (*)()>(fiber_entry_ucontext), 2,
                static_cast<unsigned int>(address >> 32), static_cast<unsigned int>(address & 0xffffffffu));
#else
    // The frame ne_emu_switch_context pops: control words, r15, r14, r13, r12 (= the fiber), rbx, rbp (0: the end
    // of the frame chain), and the trampoline as the return address; the trampoline then runs on an aligned stack.
    const uintptr_t top = reinterpret_cast<uintptr_t>(fiber.stack + fiber.size) & ~uintptr_t(15);
    uint64_t* frame = reinterpret_cast<uint64_t*>(top - 64);
    uint32_t mxcsr = 0;
    uint16_t x87 = 0;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(x87));
    frame[0] = static_cast<uint64_t>(mxcsr) | (static_cast<uint64_t>(x87) << 32);
    frame[1] = frame[2] = frame[3] = 0;
    frame[4] = reinterpret_cast<uint64_t>(&fiber);
    frame[5] = frame[6] = 0;
    frame[7] = reinterpret_cast<uint64_t>(&ne_emu_fiber_trampoline);
    fiber.context.sp = frame;
#endif
}

void jump(Context& from, Context& to) {
#if NE_EMU_USE_UCONTEXT
    swapcontext(&from.context, &to.context);
#else
    ne_emu_switch_context(&from.sp, to.sp);
#endif
}

void asan_start(void** fake_stack, const void* bottom, size_t size) {
#if NE_EMU_ASAN
    __sanitizer_start_switch_fiber(fake_stack, bottom, size);
#else
    (void)fake_stack, (void)bottom, (void)size;
#endif
}

void asan_finish(void* fake_stack, const void** bottom, size_t* size) {
#if NE_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake_stack, bottom, size);
#else
    (void)fake_stack, (void)bottom, (void)size;
#endif
}

// ---- blocks and launches -----------------------------------------------------------------------------------------

enum class State : uint8_t { kReady, kBarrier, kWarp, kExited };

struct Thread {
    uint3 index;
    State state;
    int fiber;             // the stack it runs on; -1 until it starts
    uint32_t collectives;  // warp collectives this thread has entered
};

// A warp collective in progress; two in flight at most (a lane can be one ahead of the slowest), by parity.
struct Warp {
    uint32_t arrived[2] = {0, 0};
    uint32_t mask[2] = {0, 0};
    WarpOp op[2] = {WarpOp::kSync, WarpOp::kSync};
    uint64_t value[2][32] = {};
};

struct SharedVariable {
    const void* site;
    void* memory;
    size_t bytes;
};

struct Block {
    uint3 index;
    int threads = 0;
    std::vector<Thread> thread;
    std::vector<Warp> warps;
    int at_barrier = 0, at_warp = 0, exited = 0;
    void* dynamic = nullptr;
    std::vector<SharedVariable> statics;
    size_t static_bytes = 0;
    std::vector<int> order;  // the threads of this round, in the schedule's order
    size_t next = 0;         // the next position in order
    std::vector<int> free_fibers;
};

// The launching host thread's stack, for AddressSanitizer's bookkeeping of switches back to the scheduler.
struct HostStack {
    const void* bottom = nullptr;
    size_t size = 0;
};

HostStack host_stack() {
    thread_local const HostStack stack = [] {
        HostStack h;
        pthread_attr_t attributes;
        if (pthread_getattr_np(pthread_self(), &attributes) == 0) {
            void* bottom = nullptr;
            size_t size = 0;
            if (pthread_attr_getstack(&attributes, &bottom, &size) == 0) h = HostStack{bottom, size};
            pthread_attr_destroy(&attributes);
        }
        return h;
    }();
    return stack;
}

struct Run {
    const KernelSite* site;
    ThreadEntry entry;
    void* context;
    size_t shared_bytes;
    Schedule schedule;
    uint64_t rng;
    Block block;       // the block running now; its storage serves every block of the launch
    int current = -1;  // the thread running now; -1: the scheduler
    Context scheduler;
    void* scheduler_fake = nullptr;
    HostStack host;
};

Run* g_run = nullptr;
std::vector<Fiber*>& g_fibers = *new std::vector<Fiber*>();  // reused by every launch; kept to the end
uint64_t g_launches = 0;

uint64_t next_random(Run& run) { return run.rng = mix64(run.rng); }

void ensure_fibers(int count) {
    while (static_cast<int>(g_fibers.size()) < count) {
        auto* fiber = new Fiber();
        const size_t bytes = kStackBytes + kPage;
        void* mapping = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mapping == MAP_FAILED) {
            report("could not map a stack for thread %zu of a block", g_fibers.size());
            abort();
        }
        fiber->mapping = static_cast<char*>(mapping);
        mprotect(fiber->mapping, kPage, PROT_NONE);  // the guard: a stack overflow faults
        fiber->stack = fiber->mapping + kPage;
        fiber->size = kStackBytes;
        g_fibers.push_back(fiber);
    }
}

Thread& current_thread(const char* what) {
    if (g_run == nullptr || g_run->current < 0) {
        report("%s called outside a kernel", what);
        print_stack();
        abort();
    }
    return g_run->block.thread[g_run->current];
}

// The next thread of this round's order that is ready to run, or -1 when the round is over.
int next_ready(Run& run) {
    Block& block = run.block;
    while (block.next < block.order.size()) {
        const int t = block.order[block.next++];
        if (block.thread[t].state == State::kReady) return t;
    }
    return -1;
}

// Leaves the running context, saved in from, for thread t (started on a free stack if it has none yet), or for the
// scheduler when t < 0. fake: AddressSanitizer's fake stack slot of the context left, null when it ends for good.
// Inlined, so that a thread that ends switches away from ne_emu_fiber_main's own frame: the stack's next user then
// finds no abandoned frame (and no stale AddressSanitizer shadow) below it.
__attribute__((always_inline)) inline void switch_to(Run& run, Context& from, void** fake, int t) {
    if (t < 0) {
        run.current = -1;
        asan_start(fake, run.host.bottom, run.host.size);
        jump(from, run.scheduler);
        return;
    }
    Block& block = run.block;
    Thread& thread = block.thread[t];
    if (thread.fiber < 0) {
        thread.fiber = block.free_fibers.back();
        block.free_fibers.pop_back();
        prepare(*g_fibers[thread.fiber]);
    }
    run.current = t;
    thread_index = thread.index;
    Fiber& target = *g_fibers[thread.fiber];
    asan_start(fake, target.stack, target.size);
    jump(from, target.context);
}

// The running thread waits (its state says for what): the next ready thread of the round runs, or the scheduler
// when there is none. Returns when this thread is resumed.
void wait_here(Run& run) {
    Fiber& fiber = *g_fibers[run.block.thread[run.current].fiber];
    switch_to(run, fiber.context, &fiber.fake_stack, next_ready(run));
    asan_finish(fiber.fake_stack, nullptr, nullptr);
}

std::string describe_waits(const Block& block) {
    std::string text;
    int listed = 0;
    for (int w = 0; w < static_cast<int>(block.warps.size()); ++w) {
        const Warp& warp = block.warps[w];
        for (int k = 0; k < 2; ++k) {
            if (warp.arrived[k] == 0 || listed++ >= 4) continue;
            char line[200];
            snprintf(line, sizeof line, "; warp %d: lanes 0x%08x of mask 0x%08x arrived at a warp collective", w,
                     warp.arrived[k], warp.mask[k]);
            text += line;
        }
    }
    return text;
}

void run_block(Run& run, uint3 index, dim3 threads_per_block) {
    Block& block = run.block;
    block.index = index;
    block.threads = static_cast<int>(threads_per_block.x * threads_per_block.y * threads_per_block.z);
    block.thread.resize(block.threads);
    block.warps.assign((block.threads + 31) / 32, Warp{});
    block.free_fibers.clear();
    for (int t = block.threads - 1; t >= 0; --t) block.free_fibers.push_back(t);
    const unsigned x = threads_per_block.x, y = threads_per_block.y;
    for (int t = 0; t < block.threads; ++t) {
        const unsigned u = static_cast<unsigned>(t);
        block.thread[t] = Thread{uint3{u % x, (u / x) % y, u / (x * y)}, State::kReady, -1, 0};
    }
    block.at_barrier = block.at_warp = block.exited = 0;
    block.statics.clear();
    block.static_bytes = 0;
    if (posix_memalign(&block.dynamic, 16, run.shared_bytes) != 0) {
        report("out of host memory for a block's shared memory");
        abort();
    }
    poison(block.dynamic, run.shared_bytes);
    block_index = index;

    for (;;) {
        block.order.clear();
        block.next = 0;
        for (int t = 0; t < block.threads; ++t)
            if (block.thread[t].state == State::kReady) block.order.push_back(t);
        if (run.schedule.order == Schedule::Order::kReverse) {
            std::reverse(block.order.begin(), block.order.end());
        } else if (run.schedule.order == Schedule::Order::kRandom) {
            for (size_t i = block.order.size(); i > 1; --i)
                std::swap(block.order[i - 1], block.order[next_random(run) % i]);
        }
        if (block.order.empty()) {
            if (block.exited == block.threads) break;
            if (block.at_barrier > 0 && block.at_barrier + block.exited == block.threads) {
                if (block.exited > 0)
                    kernel_fault("divergent __syncthreads(): %d thread(s) wait at a barrier that %d thread(s) of the "
                                 "block never reach (they have ended)",
                                 block.at_barrier, block.exited);
                for (Thread& t : block.thread) t.state = State::kReady;
                block.at_barrier = 0;
                continue;
            }
            kernel_fault("deadlock: %d thread(s) wait at __syncthreads(), %d at warp collectives, %d have ended%s",
                         block.at_barrier, block.at_warp, block.exited, describe_waits(block).c_str());
        }
        switch_to(run, run.scheduler, &run.scheduler_fake, next_ready(run));
        asan_finish(run.scheduler_fake, nullptr, nullptr);
    }

    free(block.dynamic);
    block.dynamic = nullptr;
    for (SharedVariable& v : block.statics) free(v.memory);
    block.statics.clear();
}

}  // namespace

}  // namespace ne_emu

// Runs threads of the current block on one stack: the kernel as the thread the scheduler chose; when it ends, the
// next thread of the round directly if that one has not started yet (it takes over this stack), else a switch to
// the next ready thread or to the scheduler, and this stack is free.
extern "C" void ne_emu_fiber_main(void* f) {
    using namespace ne_emu;
    Fiber* fiber = static_cast<Fiber*>(f);
    Run& run = *g_run;
    asan_finish(nullptr, nullptr, nullptr);
    for (;;) {
        run.entry(run.context);
        Block& block = run.block;
        Thread& done = block.thread[run.current];
        const int stack = done.fiber;
        done.state = State::kExited;
        done.fiber = -1;
        ++block.exited;
        const int t = next_ready(run);
        if (t >= 0 && block.thread[t].fiber < 0) {
            block.thread[t].fiber = stack;
            run.current = t;
            thread_index = block.thread[t].index;
            continue;
        }
        block.free_fibers.push_back(stack);
        switch_to(run, fiber->context, nullptr, t);
        __builtin_unreachable();
    }
}

namespace ne_emu {

void run_launch(const KernelSite& site, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                ThreadEntry entry, void* context) {
    DeviceLock lock;
    if (g_run != nullptr)
        kernel_fault("launch of %s from device code (dynamic parallelism is not emulated)", site.name);
    auto fail = [&](cudaError_t error, const char* format, auto... args) {
        char text[512];
        snprintf(text, sizeof text, format, args...);
        report("launch of %s (%s:%d): %s", site.name, site.file, site.line, text);
        record(error);
    };
    if (!check_stream(site.name, stream)) return fail(cudaErrorInvalidResourceHandle, "invalid stream");
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
        return fail(cudaErrorInvalidConfiguration, "grid (%u, %u, %u) is outside the device's limits", grid.x,
                    grid.y, grid.z);
    const uint64_t threads = uint64_t(block.x) * block.y * block.z;
    if (threads == 0 || threads > kMaxThreadsPerBlock || block.x > 1024 || block.y > 1024 || block.z > 64)
        return fail(cudaErrorInvalidConfiguration, "block (%u, %u, %u) is outside the device's limits", block.x,
                    block.y, block.z);
    const int limit = dynamic_shared_limit(site.function);
    if (shared_bytes > static_cast<size_t>(limit))
        return fail(cudaErrorInvalidValue,
                    "%zu bytes of dynamic shared memory, above the kernel's limit of %d "
                    "(cudaFuncAttributeMaxDynamicSharedMemorySize)",
                    shared_bytes, limit);

    Run run;
    run.site = &site;
    run.entry = entry;
    run.context = context;
    run.shared_bytes = shared_bytes;
    run.schedule = current_schedule();
    run.rng = mix64(run.schedule.seed ^ mix64(++g_launches));
    run.host = host_stack();
    ensure_fibers(static_cast<int>(threads));
    grid_dim = grid;
    block_dim = block;
    DeviceAccess access(site.name);
    g_run = &run;
    const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z;
    auto block_at = [&](uint64_t b) {
        return uint3{static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                     static_cast<unsigned>(b / (uint64_t(grid.x) * grid.y))};
    };
    if (run.schedule.order == Schedule::Order::kRandom) {
        std::vector<uint64_t> order(blocks);
        for (uint64_t b = 0; b < blocks; ++b) order[b] = b;
        for (uint64_t i = blocks; i > 1; --i) std::swap(order[i - 1], order[next_random(run) % i]);
        for (uint64_t b : order) run_block(run, block_at(b), block);
    } else {
        const bool reverse = run.schedule.order == Schedule::Order::kReverse;
        for (uint64_t i = 0; i < blocks; ++i) run_block(run, block_at(reverse ? blocks - 1 - i : i), block);
    }
    g_run = nullptr;
}

void syncthreads() {
    Thread& thread = current_thread("__syncthreads()");
    thread.state = State::kBarrier;
    ++g_run->block.at_barrier;
    wait_here(*g_run);
}

void syncwarp(unsigned int mask) { warp_collective(mask, WarpOp::kSync, 0, 0, 32); }

uint64_t warp_collective(unsigned int mask, WarpOp op, uint64_t value, int argument, int width) {
    Thread& thread = current_thread("a warp collective");
    Block& block = g_run->block;
    const int linear = g_run->current, lane = linear % 32, w = linear / 32;
    const int lanes = std::min(32, block.threads - 32 * w);  // a block's last warp may be partial
    const uint32_t present = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
    if (!(mask >> lane & 1u)) kernel_fault("warp collective with mask 0x%08x, which leaves out its own lane %d", mask, lane);
    if (mask & ~present)
        kernel_fault("warp collective with mask 0x%08x names lanes the warp does not have (0x%08x)", mask, present);
    if (width < 1 || width > 32 || (width & (width - 1)) != 0)
        kernel_fault("warp shuffle with width %d (a power of two up to 32)", width);
    Warp& warp = block.warps[w];
    const int k = static_cast<int>(thread.collectives++ & 1u);
    if (warp.arrived[k] == 0) {
        warp.mask[k] = mask;
        warp.op[k] = op;
    } else if (warp.mask[k] != mask || warp.op[k] != op) {
        kernel_fault("lanes of warp %d disagree at a warp collective: mask 0x%08x (op %d) against 0x%08x (op %d)", w,
                     mask, static_cast<int>(op), warp.mask[k], static_cast<int>(warp.op[k]));
    }
    warp.value[k][lane] = value;
    warp.arrived[k] |= 1u << lane;
    if (warp.arrived[k] != mask) {
        thread.state = State::kWarp;
        ++block.at_warp;
        wait_here(*g_run);
    } else {
        warp.arrived[k] = 0;
        for (int l = 0; l < 32; ++l) {
            if (l == lane || !(mask >> l & 1u)) continue;
            block.thread[32 * w + l].state = State::kReady;
            --block.at_warp;
        }
    }
    const uint64_t* values = warp.value[k];
    const int segment = lane / width * width;
    int source = lane;
    switch (op) {
        case WarpOp::kShuffleIndex: source = segment + ((argument % width) + width) % width; break;
        case WarpOp::kShuffleUp: source = lane - argument >= segment ? lane - argument : lane; break;
        case WarpOp::kShuffleDown: source = lane + argument < segment + width ? lane + argument : lane; break;
        case WarpOp::kShuffleXor: source = (lane ^ argument) < segment + width ? lane ^ argument : lane; break;
        case WarpOp::kBallot:
        case WarpOp::kAny:
        case WarpOp::kAll: {
            uint32_t ballot = 0;
            for (int l = 0; l < 32; ++l)
                if ((mask >> l & 1u) && values[l] != 0) ballot |= 1u << l;
            if (op == WarpOp::kBallot) return ballot;
            return op == WarpOp::kAny ? ballot != 0 : ballot == mask;
        }
        case WarpOp::kSync: return 0;
    }
    if (source < 0 || source >= 32 || !(mask >> source & 1u))
        kernel_fault("warp shuffle of lane %d reads lane %d, which is not in the mask 0x%08x", lane, source, mask);
    return values[source];
}

void* dynamic_shared() {
    current_thread("extern __shared__ memory");
    return g_run->block.dynamic;
}

void* static_shared(const void* site, size_t bytes, size_t alignment) {
    current_thread("a __shared__ variable");
    Block& block = g_run->block;
    for (const SharedVariable& v : block.statics)
        if (v.site == site) return v.memory;
    void* memory = nullptr;
    if (posix_memalign(&memory, std::max<size_t>(alignment, 64), bytes) != 0) {
        report("out of host memory for a __shared__ variable");
        abort();
    }
    poison(memory, bytes);
    block.statics.push_back(SharedVariable{site, memory, bytes});
    block.static_bytes += bytes;
    note_static_shared_bytes(g_run->site->function, block.static_bytes);
    if (block.static_bytes > static_cast<size_t>(kSharedPerBlock))
        kernel_fault("%zu bytes of static __shared__ memory, above the %d a block may declare", block.static_bytes,
                     kSharedPerBlock);
    if (block.static_bytes + g_run->shared_bytes > static_cast<size_t>(kSharedOptin))
        kernel_fault("%zu bytes of static and %zu of dynamic shared memory, above the device's %d per block",
                     block.static_bytes, g_run->shared_bytes, kSharedOptin);
    return memory;
}

void kernel_fault(const char* format, ...) {
    char text[1024], where[512];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    describe_running_kernel(where, sizeof where);
    report("fault %s: %s", where[0] ? where : "in host code", text);
    print_stack();
    abort();
}

void describe_running_kernel(char* buffer, size_t size) {
    buffer[0] = '\0';
    if (g_run == nullptr) return;
    char schedule[64];
    schedule_name(g_run->schedule, schedule, sizeof schedule);
    if (g_run->current >= 0)
        snprintf(buffer, size, "in kernel %s (%s:%d), block (%u, %u, %u), thread (%u, %u, %u), schedule %s",
                 g_run->site->name, g_run->site->file, g_run->site->line, block_index.x, block_index.y, block_index.z,
                 thread_index.x, thread_index.y, thread_index.z, schedule);
    else
        snprintf(buffer, size, "in kernel %s (%s:%d), block (%u, %u, %u), schedule %s", g_run->site->name,
                 g_run->site->file, g_run->site->line, block_index.x, block_index.y, block_index.z, schedule);
}

bool describe_stack_guard(const void* address, char* buffer, size_t size) {
    const char* p = static_cast<const char*>(address);
    for (size_t i = 0; i < g_fibers.size(); ++i)
        if (p >= g_fibers[i]->mapping && p < g_fibers[i]->stack) {
            snprintf(buffer, size, "stack overflow of the emulated thread %zu of the block (%zu-byte stacks)", i,
                     kStackBytes);
            return true;
        }
    return false;
}

}  // namespace ne_emu
