// One allocation per model, sliced into its tensors (as llm.c does): a layout function names every tensor once
// and runs twice, first to measure, then to hand out slices of the allocation. Every slice starts on a 256-byte
// boundary (what cudaMalloc guarantees, and what vector loads want). Header-only, so the CUDA plugin uses the
// same arena with its own allocator (cuda/device_arena.h).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace ne {

class ArenaCarver {
public:
    static constexpr size_t kAlignment = 256;

    explicit ArenaCarver(char* base) : base_(base) {}

    // A slice of count elements of T (count <= 0: an empty slice); null while measuring.
    template <typename T>
    T* take(int64_t count) {
        offset_ = (offset_ + kAlignment - 1) / kAlignment * kAlignment;
        T* slice = base_ != nullptr ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
        offset_ += static_cast<size_t>(std::max<int64_t>(count, 0)) * sizeof(T);
        return slice;
    }
    size_t size() const { return offset_; }

private:
    char* base_;
    size_t offset_ = 0;
};

// An allocation laid out by a layout function void(ArenaCarver&). Allocator provides
// static void* allocate(size_t bytes) (throwing on failure) and static void release(void*) (accepting null).
template <class Allocator>
class Arena {
public:
    Arena() = default;
    ~Arena() { release(); }
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;
    Arena(Arena&& other) noexcept { *this = std::move(other); }
    Arena& operator=(Arena&& other) noexcept {
        if (this != &other) {
            release();
            std::swap(base_, other.base_);
            std::swap(bytes_, other.bytes_);
        }
        return *this;
    }

    // Frees what the arena held, then allocates and slices anew; returns the bytes allocated.
    template <class Layout>
    size_t allocate(Layout&& layout) {
        release();
        ArenaCarver measure(nullptr);
        layout(measure);
        const size_t bytes = std::max<size_t>(measure.size(), ArenaCarver::kAlignment);
        base_ = static_cast<char*>(Allocator::allocate(bytes));
        bytes_ = bytes;
        ArenaCarver carve(base_);
        layout(carve);
        return bytes_;
    }

    void release() {
        Allocator::release(base_);
        base_ = nullptr;
        bytes_ = 0;
    }

    void* data() const { return base_; }
    size_t bytes() const { return bytes_; }
    explicit operator bool() const { return base_ != nullptr; }

private:
    char* base_ = nullptr;
    size_t bytes_ = 0;
};

}  // namespace ne
