// The arena (core/arena.h) on host memory: slices aligned and disjoint; with NE_ARENA_GUARD=1 a guard after every
// slice, which holds while writes stay inside their slices and breaks, naming the slice, its offset and size, on a
// write one element past a slice's end or one before the next slice's start; releasing an arena with a broken guard
// aborts with the same message. Without NE_ARENA_GUARD the layout is exactly the unguarded one.
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "check.h"
#include "core/arena.h"

namespace {

struct HostAllocator {
    static void* allocate(size_t bytes) {
        void* p = std::malloc(bytes);
        if (p == nullptr) throw std::bad_alloc();
        return p;
    }
    static void release(void* p) { std::free(p); }
    static void write(void* arena_memory, const void* host, size_t bytes) { std::memcpy(arena_memory, host, bytes); }
    static void read(void* host, const void* arena_memory, size_t bytes) { std::memcpy(host, arena_memory, bytes); }
};

using HostArena = ne::Arena<HostAllocator>;

// Three tensors of awkward sizes, as a model lays them out.
struct Tensors {
    float* a = nullptr;     // 100 floats
    int32_t* b = nullptr;   // 3 ints
    double* c = nullptr;    // 65 doubles
    size_t bytes = 0;

    void allocate(HostArena& arena) {
        bytes = arena.allocate([&](ne::ArenaCarver& carver) {
            a = carver.take<float>(100);
            b = carver.take<int32_t>(3);
            c = carver.take<double>(65);
        });
    }
};

void guard_mode(bool on) {
    if (on) setenv("NE_ARENA_GUARD", "1", 1);
    else unsetenv("NE_ARENA_GUARD");
}

// The NE_ERR_INTERNAL message verify_guards throws, or "" when it does not throw.
std::string verify_message(const HostArena& arena) {
    try {
        arena.verify_guards();
    } catch (const ne::Error& e) {
        CHECK(e.status() == NE_ERR_INTERNAL);
        return e.what();
    }
    return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

void unguarded_layout() {
    guard_mode(false);
    HostArena arena;
    Tensors t;
    t.allocate(arena);
    CHECK(!arena.guarded());
    // 100 floats, 3 ints at 512, 65 doubles at 768: the layout without guards is unchanged.
    CHECK(reinterpret_cast<char*>(t.b) - reinterpret_cast<char*>(t.a) == 512);
    CHECK(reinterpret_cast<char*>(t.c) - reinterpret_cast<char*>(t.a) == 768);
    CHECK(t.bytes == 768 + 65 * sizeof(double));
    t.a[100] = 1.0f;  // inside the padding, and nobody looks: the guards are off
    CHECK(verify_message(arena).empty());
}

void guarded_layout() {
    guard_mode(true);
    HostArena arena;
    Tensors t;
    t.allocate(arena);
    CHECK(arena.guarded());
    const auto offset = [&](const void* p) { return static_cast<size_t>(static_cast<const char*>(p) - static_cast<char*>(arena.data())); };
    // Each slice aligned, followed by at least kGuardBytes before the next.
    CHECK(offset(t.a) == 0);
    CHECK(offset(t.b) % ne::ArenaCarver::kAlignment == 0 && offset(t.b) >= 400 + HostArena::kGuardBytes);
    CHECK(offset(t.c) % ne::ArenaCarver::kAlignment == 0 && offset(t.c) >= offset(t.b) + 12 + HostArena::kGuardBytes);
    // bytes() spans the slices, not the guard after the last one.
    CHECK(t.bytes == arena.bytes() && t.bytes == offset(t.c) + 65 * sizeof(double));
    // Writes inside every slice leave the guards alone.
    for (int j = 0; j < 100; ++j) t.a[j] = -1.0f;
    for (int j = 0; j < 3; ++j) t.b[j] = -1;
    for (int j = 0; j < 65; ++j) t.c[j] = -1.0;
    CHECK(verify_message(arena).empty());

    // One element past slice 0.
    const float saved = t.a[100];
    t.a[100] = 0.0f;
    const std::string overrun = verify_message(arena);
    std::printf("one float past slice 0: %s\n", overrun.c_str());
    CHECK(contains(overrun, "slice 0 of 3 (offset 0, 400 bytes"));
    CHECK(contains(overrun, "bytes 0..3 (of 368) after the end"));  // 400 + 368 = 768, slice 1
    t.a[100] = saved;
    CHECK(verify_message(arena).empty());

    // One element past the last slice (its guard lies past bytes()).
    t.c[65] = 0.0;
    const std::string last = verify_message(arena);
    std::printf("one double past slice 2: %s\n", last.c_str());
    CHECK(contains(last, "slice 2 of 3 (offset " + std::to_string(offset(t.c)) + ", 520 bytes"));
    // Put the guard back as it was, byte by byte.
    std::memset(&t.c[65], HostArena::kGuardByte, sizeof(double));
    CHECK(verify_message(arena).empty());

    // One element before slice 1 lands in slice 0's guard (the whole gap up to slice 1), at its far end.
    t.b[-1] = 7;
    const std::string underrun = verify_message(arena);
    std::printf("one int before slice 1: %s\n", underrun.c_str());
    CHECK(contains(underrun, "slice 0 of 3") && contains(underrun, "before the start of slice 1"));
    const size_t gap = offset(t.b) - 400;
    CHECK(contains(underrun, "bytes " + std::to_string(gap - 4) + ".." + std::to_string(gap - 1) + " (of " +
                                 std::to_string(gap) + ")"));
    std::memset(&t.b[-1], HostArena::kGuardByte, sizeof(int32_t));
    CHECK(verify_message(arena).empty());

    // A memset of the whole span clears the guards; write_guards lays them again.
    std::memset(arena.data(), 0, arena.bytes());
    CHECK(!verify_message(arena).empty());
    arena.write_guards();
    CHECK(verify_message(arena).empty());

    // Reallocating checks the old guards first (throws, keeps the arena), then lays fresh ones.
    t.b[3] = 1;
    bool threw = false;
    try {
        t.allocate(arena);
    } catch (const ne::Error& e) {
        threw = e.status() == NE_ERR_INTERNAL && contains(e.what(), "slice 1 of 3");
    }
    CHECK(threw);
    std::memset(&t.b[3], HostArena::kGuardByte, sizeof(int32_t));
    t.allocate(arena);
    CHECK(verify_message(arena).empty());
}

// An arena destroyed with a broken guard aborts with the message: in a child process, its stderr read back.
void broken_guard_at_release() {
    guard_mode(true);
    int pipe_fds[2];
    CHECK(pipe(pipe_fds) == 0);
    const pid_t child = fork();
    if (child == 0) {
        dup2(pipe_fds[1], STDERR_FILENO);
        close(pipe_fds[0]);
        {
            HostArena arena;
            Tensors t;
            t.allocate(arena);
            t.b[3] = 1;  // one past slice 1
        }  // the destructor finds it
        std::_Exit(0);
    }
    close(pipe_fds[1]);
    std::string output;
    char buffer[1024];
    ssize_t n;
    while ((n = read(pipe_fds[0], buffer, sizeof buffer)) > 0) output.append(buffer, static_cast<size_t>(n));
    close(pipe_fds[0]);
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child);
    std::printf("release with a broken guard: %s", output.c_str());
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(contains(output, "arena guard broken") && contains(output, "slice 1 of 3"));
}

}  // namespace

int main() {
    unguarded_layout();
    guarded_layout();
    broken_guard_at_release();
    return ne_test::finish("test_arena");
}
