// One allocation per model, sliced into its tensors (as llm.c does): a layout function names every tensor once
// and runs twice, first to measure, then to hand out slices of the allocation. Every slice starts on a 256-byte
// boundary (what cudaMalloc guarantees, and what vector loads want). Header-only, so the CUDA plugin uses the
// same arena with its own allocator (cuda/device_arena.h).
//
// Guards (NE_ARENA_GUARD=1 when the arena is allocated; off by default, and then they cost nothing): a fixed
// pattern in the whole gap after every slice (at least kGuardBytes, up to the next slice's aligned start). An
// overrun from one slice into the next stays inside the one allocation, where neither compute-sanitizer nor the
// emulated tier's per-allocation guards can see it; the pattern can, and an underrun of the next slice too.
// verify_guards() reads them back (the models call it after every call that launches kernels) and throws
// NE_ERR_INTERNAL naming the slice; releasing the arena checks them too and, since a destructor cannot report an
// error, prints the same message and aborts.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace ne {

// Where one slice lies in its arena.
struct ArenaSlice {
    size_t offset, bytes;
};

class ArenaCarver {
public:
    static constexpr size_t kAlignment = 256;

    // guard_bytes after every slice; slices (if not null) receives each slice's place.
    explicit ArenaCarver(char* base, size_t guard_bytes = 0, std::vector<ArenaSlice>* slices = nullptr)
        : base_(base), guard_bytes_(guard_bytes), slices_(slices) {}

    // A slice of count elements of T (count <= 0: an empty slice); null while measuring.
    template <typename T>
    T* take(int64_t count) {
        offset_ = (offset_ + kAlignment - 1) / kAlignment * kAlignment;
        T* slice = base_ != nullptr ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
        const size_t bytes = static_cast<size_t>(std::max<int64_t>(count, 0)) * sizeof(T);
        if (slices_ != nullptr) slices_->push_back(ArenaSlice{offset_, bytes});
        offset_ += bytes + guard_bytes_;
        return slice;
    }
    size_t size() const { return offset_; }

private:
    char* base_;
    size_t guard_bytes_;
    std::vector<ArenaSlice>* slices_;
    size_t offset_ = 0;
};

// An allocation laid out by a layout function void(ArenaCarver&). Allocator provides
// static void* allocate(size_t bytes) (throwing on failure), static void release(void*) (accepting null), and, for
// the guards, static void write(void* arena_memory, const void* host, size_t bytes) and
// static void read(void* host, const void* arena_memory, size_t bytes), both complete when they return.
template <class Allocator>
class Arena {
public:
    static constexpr size_t kGuardBytes = ArenaCarver::kAlignment;
    static constexpr unsigned char kGuardByte = 0xA5;

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
            std::swap(slices_, other.slices_);
        }
        return *this;
    }

    // Whether NE_ARENA_GUARD asks for guards (read at every allocate).
    static bool guards_requested() {
        const char* v = std::getenv("NE_ARENA_GUARD");
        return v != nullptr && v[0] == '1';
    }

    // Frees what the arena held (after checking its guards), then allocates and slices anew; returns bytes().
    template <class Layout>
    size_t allocate(Layout&& layout) {
        verify_guards();
        release();
        const size_t guard = guards_requested() ? kGuardBytes : 0;
        ArenaCarver measure(nullptr, guard);
        layout(measure);
        const size_t bytes = std::max<size_t>(measure.size(), ArenaCarver::kAlignment);
        base_ = static_cast<char*>(Allocator::allocate(bytes));
        bytes_ = bytes;
        std::vector<ArenaSlice> slices;
        ArenaCarver carve(base_, guard, guard > 0 ? &slices : nullptr);
        layout(carve);
        slices_ = std::move(slices);
        write_guards();
        return this->bytes();
    }

    // Writes the guard pattern after every slice: at allocation, and again after anything that filled the whole
    // allocation (a memset of data() over bytes()). Nothing without guards.
    void write_guards() {
        for (size_t k = 0; k < slices_.size(); ++k) {
            const std::vector<unsigned char> pattern(guard_bytes(k), kGuardByte);
            Allocator::write(base_ + slices_[k].offset + slices_[k].bytes, pattern.data(), pattern.size());
        }
    }

    // Throws NE_ERR_INTERNAL when a guard has changed: a kernel or copy wrote past the end of a slice (or before
    // the start of the next). Nothing without guards.
    void verify_guards() const {
        const std::string broken = broken_guard();
        if (!broken.empty()) fail(NE_ERR_INTERNAL, broken);
    }

    void release() {
        if (base_ != nullptr && !slices_.empty()) {
            std::string broken;
            try {
                broken = broken_guard();
            } catch (const std::exception& e) {
                std::fprintf(stderr, "nativeengine: arena guards not checked at release: %s\n", e.what());
            }
            if (!broken.empty()) {
                std::fprintf(stderr, "nativeengine: %s\n", broken.c_str());
                std::abort();
            }
        }
        Allocator::release(base_);
        base_ = nullptr;
        bytes_ = 0;
        slices_.clear();
    }

    void* data() const { return base_; }
    // The bytes from data() the layout owns: the whole allocation without guards, up to the end of the last slice
    // with them (so a single-slice arena offers exactly what its slice asked for either way).
    size_t bytes() const { return slices_.empty() ? bytes_ : slices_.back().offset + slices_.back().bytes; }
    bool guarded() const { return !slices_.empty(); }
    explicit operator bool() const { return base_ != nullptr; }

private:
    // The guard after slice k: the whole gap to the next slice, kGuardBytes after the last.
    size_t guard_bytes(size_t k) const {
        const size_t end = slices_[k].offset + slices_[k].bytes;
        return k + 1 < slices_.size() ? slices_[k + 1].offset - end : kGuardBytes;
    }

    // "" when every guard holds its pattern, else what changed where. A small arena is read in one copy, a large
    // one guard by guard.
    std::string broken_guard() const {
        if (base_ == nullptr || slices_.empty()) return "";
        constexpr size_t kWholeRead = size_t(16) << 20;
        std::vector<unsigned char> whole, part;
        if (bytes_ <= kWholeRead) {
            whole.resize(bytes_);
            Allocator::read(whole.data(), base_, bytes_);
        }
        for (size_t k = 0; k < slices_.size(); ++k) {
            const ArenaSlice& s = slices_[k];
            const size_t size = guard_bytes(k);
            const unsigned char* seen = whole.data() + s.offset + s.bytes;
            if (whole.empty()) {
                part.resize(size);
                Allocator::read(part.data(), base_ + s.offset + s.bytes, size);
                seen = part.data();
            }
            size_t first = size, last = 0;
            for (size_t j = 0; j < size; ++j)
                if (seen[j] != kGuardByte) first = std::min(first, j), last = j;
            if (first == size) continue;
            return "arena guard broken (NE_ARENA_GUARD): bytes " + std::to_string(first) + ".." + std::to_string(last) +
                   " (of " + std::to_string(size) + ") after the end of slice " + std::to_string(k) + " of " +
                   std::to_string(slices_.size()) + " (offset " + std::to_string(s.offset) + ", " +
                   std::to_string(s.bytes) + " bytes, arena of " + std::to_string(bytes_) +
                   " bytes) changed: a write past the end of slice " + std::to_string(k) +
                   (k + 1 < slices_.size() ? " or before the start of slice " + std::to_string(k + 1) : "");
        }
        return "";
    }

    char* base_ = nullptr;
    size_t bytes_ = 0;
    std::vector<ArenaSlice> slices_;  // empty without guards
};

}  // namespace ne
