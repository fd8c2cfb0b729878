// The synthetic sampler on the GPU, the twin of cpu/synth_cpu.cpp: the same per-sample definitions (models/synth.h,
// written once for both) evaluated from a device copy of the ground truth, so a sample's codes and x are the same
// bits on both backends (cuda/tests/test_synth_parity.cpp). This file is compiled with -fmad=false: synth.h writes
// every fused multiply-add it wants as fmaf, and nothing else may be contracted.
//
//  codes  one thread per sample: its factor draw g (scratch [count][r]), the features without a parent in ascending
//         order (fires, then magnitude; active when the magnitude is > 0), then the forest below the active ones,
//         walked over the sample's own list of active features (a breadth-first walk in place of the CPU's stack:
//         each child depends only on its parent's value and its own draws, so the order does not matter), and the
//         list sorted by feature. The list has `slots` entries per sample; a sample with more sets the overflow flag
//         and the draw runs again with twice the slots.
//  x      one block per sample: x_j = b_j + sum over its active features, ascending, of a_i W_ij by fmaf, as the CPU
//         sums it; then times scale (a plain multiply, as the host does).
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/nvtx.h"
#include "cuda/cuda_check.h"
#include "cuda/device_arena.h"
#include "cuda/synth_cuda.h"

struct ne_cuda_synth {
    int32_t device = 0;
    cudaStream_t stream = nullptr;
    ne::SynthView view{};      // device pointers into `truth`
    int32_t* top = nullptr;    // [top_count] features without a parent, ascending
    int64_t top_count = 0;
    ne::cuda::DeviceArena truth;
    // The draw's buffers, grown as needed.
    ne::cuda::DeviceArena buffers;
    int64_t capacity = 0;      // samples the buffers hold
    int32_t slots = 64;        // codes kept per sample
    float* g = nullptr;        // [capacity][r]
    int32_t* index = nullptr;  // [capacity][slots]
    float* value = nullptr;    // [capacity][slots]
    int32_t* active = nullptr; // [capacity]
    int32_t* overflow = nullptr;
    float* x = nullptr;        // [capacity][d]
    int64_t drawn = 0;         // samples of the last draw
};

namespace ne::cuda {
namespace {

constexpr int kCodeThreads = 128;
constexpr int kRowThreads = 128;

// Feature i's value before its parent acts on it: its magnitude when it fires, else 0.
__device__ float raw_value(const SynthView& v, int64_t i, const float* g, Stream stream, uint32_t step, uint32_t sample) {
    return synth_fires(v, i, g, stream, step, sample) ? synth_magnitude(v, i, stream, step, sample) : 0.0f;
}

__global__ void synth_codes_kernel(SynthView v, const int32_t* top, int64_t top_count, Stream stream, uint32_t step,
                                   uint32_t first, int64_t count, int32_t slots, float* g_all, int32_t* index_all,
                                   float* value_all, int32_t* active_all, int32_t* overflow) {
    const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (t >= count) return;
    const uint32_t sample = first + static_cast<uint32_t>(t);
    float* g = g_all + t * v.rank;
    synth_factor_draw(v, stream, step, sample, g);
    int32_t* index = index_all + t * slots;
    float* value = value_all + t * slots;
    int32_t active = 0;
    bool over = false;
    auto keep = [&](int32_t feature, float a) {
        if (active < slots) {
            index[active] = feature;
            value[active] = a;
            ++active;
        } else {
            over = true;
        }
    };
    for (int64_t j = 0; j < top_count; ++j) {
        const int32_t i = top[j];
        const float a = raw_value(v, i, g, stream, step, sample);
        if (a > 0.0f) keep(i, a);
    }
    for (int32_t k = 0; k < active; ++k) {  // the list grows as children are kept
        const int32_t P = index[k];
        const float value_P = value[k];
        const int64_t begin = v.child_begin[P], end = v.child_begin[P + 1];
        if (begin == end) continue;
        uint32_t firing = 0;
        for (int64_t c = begin; c < end; ++c) firing += raw_value(v, v.child[c], g, stream, step, sample) > 0.0f;
        int64_t chosen = -1;  // -1: every firing child stays
        if ((v.flags[P] & kSynthExclusive) && firing >= 2) chosen = synth_choice(v, P, firing, stream, step, sample);
        int64_t position = 0;
        for (int64_t c = begin; c < end; ++c) {
            const int32_t child = v.child[c];
            const float raw = raw_value(v, child, g, stream, step, sample);  // the same draws again
            if (!(raw > 0.0f)) continue;
            const bool kept = chosen < 0 || position == chosen;
            ++position;
            if (!kept) continue;
            const float a = synth_child_value(v, P, raw, value_P);
            if (a > 0.0f) keep(child, a);
        }
    }
    if (over) {
        *overflow = 1;
        return;
    }
    for (int32_t k = 1; k < active; ++k) {  // ascending by feature (insertion sort: short lists, mostly sorted)
        const int32_t feature = index[k];
        const float a = value[k];
        int32_t at = k;
        while (at > 0 && index[at - 1] > feature) {
            index[at] = index[at - 1];
            value[at] = value[at - 1];
            --at;
        }
        index[at] = feature;
        value[at] = a;
    }
    active_all[t] = active;
}

__global__ void synth_x_kernel(SynthView v, int32_t slots, const int32_t* index_all, const float* value_all,
                               const int32_t* active_all, float scale, float* x) {
    const int64_t t = blockIdx.x, d = v.d;
    const int32_t* index = index_all + t * slots;
    const float* value = value_all + t * slots;
    const int32_t active = active_all[t];
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
        float row = v.b[j];
        for (int32_t a = 0; a < active; ++a) row = fmaf(value[a], v.W[static_cast<int64_t>(index[a]) * d + j], row);
        x[t * d + j] = scale != 1.0f ? row * scale : row;
    }
}

template <typename T>
T* upload(ArenaCarver& carver, const T* host, int64_t count, std::vector<std::pair<const void*, std::pair<void*, size_t>>>& copies) {
    if (host == nullptr || count <= 0) return nullptr;
    T* device = carver.take<T>(count);
    if (device != nullptr) copies.push_back({host, {device, static_cast<size_t>(count) * sizeof(T)}});
    return device;
}

void ensure_buffers(ne_cuda_synth& s, int64_t count) {
    if (count <= s.capacity && s.index != nullptr) return;
    const int64_t capacity = std::max(count, s.capacity);
    const SynthView& v = s.view;
    s.buffers.allocate([&](ArenaCarver& c) {
        s.g = c.take<float>(capacity * v.rank);
        s.index = c.take<int32_t>(capacity * s.slots);
        s.value = c.take<float>(capacity * s.slots);
        s.active = c.take<int32_t>(capacity);
        s.overflow = c.take<int32_t>(1);
        s.x = c.take<float>(capacity * v.d);
    });
    s.capacity = capacity;
}

// Codes of the samples into the buffers (growing the slots until every sample fits), then x times scale.
void draw(ne_cuda_synth& s, cudaStream_t on, Stream stream, uint32_t step, uint32_t first, int64_t count, float scale,
          bool with_x) {
    NE_NVTX_RANGE("synth.draw");
    if (count < 1 || count > INT32_MAX || static_cast<int64_t>(first) + count > (int64_t{1} << 32))
        invalid("synth draw of " + std::to_string(count) + " samples from " + std::to_string(first) +
                ": valid: 1 .. 2^31-1 samples within one step's 2^32");
    NE_CUDA_CHECK(cudaSetDevice(s.device));
    ensure_buffers(s, count);
    while (true) {
        NE_CUDA_CHECK(cudaMemsetAsync(s.overflow, 0, sizeof(int32_t), on));
        const unsigned blocks = static_cast<unsigned>((count + kCodeThreads - 1) / kCodeThreads);
        synth_codes_kernel<<<blocks, kCodeThreads, 0, on>>>(s.view, s.top, s.top_count, stream, step, first, count,
                                                           s.slots, s.g, s.index, s.value, s.active, s.overflow);
        NE_CUDA_CHECK_LAUNCH("synth_codes_kernel");
        int32_t overflow = 0;
        NE_CUDA_CHECK(cudaMemcpyAsync(&overflow, s.overflow, sizeof overflow, cudaMemcpyDeviceToHost, on));
        NE_CUDA_CHECK(cudaStreamSynchronize(on));
        if (overflow == 0) break;
        if (s.slots >= s.view.n) invalid("synth draw: a sample overflowed slots for every feature (a bug)");
        s.slots = static_cast<int32_t>(std::min<int64_t>(2 * static_cast<int64_t>(s.slots), s.view.n));
        // The buffers are laid out for the slots: lay them out again.
        const int64_t capacity = s.capacity;
        s.capacity = 0;
        ensure_buffers(s, capacity);
    }
    if (with_x) {
        synth_x_kernel<<<static_cast<unsigned>(count), kRowThreads, 0, on>>>(s.view, s.slots, s.index, s.value, s.active,
                                                                            scale, s.x);
        NE_CUDA_CHECK_LAUNCH("synth_x_kernel");
    }
    s.drawn = count;
}

}  // namespace

int32_t synth_create(int32_t device, const SynthView* truth, const int32_t* top, int64_t top_count,
                     ne_cuda_synth** out, char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        const SynthView& h = *truth;
        NE_CUDA_CHECK(cudaSetDevice(device));
        std::unique_ptr<ne_cuda_synth, void (*)(ne_cuda_synth*)> synth(new ne_cuda_synth{}, synth_destroy);
        ne_cuda_synth& s = *synth;
        s.device = device;
        NE_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
        const int64_t n = h.n, d = h.d, r = h.rank, children = h.child_begin[n];
        std::vector<std::pair<const void*, std::pair<void*, size_t>>> copies;
        s.view = h;
        s.truth.allocate([&](ArenaCarver& c) {
            copies.clear();
            s.view.fire_probability = upload(c, h.fire_probability, n, copies);
            s.view.threshold = upload(c, h.threshold, r > 0 ? n : 0, copies);
            s.view.factor = upload(c, h.factor, n * r, copies);
            s.view.noise_scale = upload(c, h.noise_scale, n, copies);
            s.view.mean = upload(c, h.mean, n, copies);
            s.view.stddev = upload(c, h.stddev, n, copies);
            s.view.parent = upload(c, h.parent, n, copies);
            s.view.child_begin = upload(c, h.child_begin, n + 1, copies);
            s.view.child = upload(c, h.child, children, copies);
            s.view.flags = upload(c, h.flags, n, copies);
            s.view.W = upload(c, h.W, n * d, copies);
            s.view.b = upload(c, h.b, d, copies);
            s.top = upload(c, top, top_count, copies);
        });
        for (const auto& [host, target] : copies)
            NE_CUDA_CHECK(cudaMemcpyAsync(target.first, host, target.second, cudaMemcpyHostToDevice, s.stream));
        NE_CUDA_CHECK(cudaStreamSynchronize(s.stream));
        s.top_count = top_count;
        *out = synth.release();
    });
}

void synth_destroy(ne_cuda_synth* synth) {
    if (synth == nullptr) return;
    cudaSetDevice(synth->device);
    if (synth->stream != nullptr) cudaStreamSynchronize(synth->stream);
    synth->buffers.release();
    synth->truth.release();
    if (synth->stream != nullptr) cudaStreamDestroy(synth->stream);
    delete synth;
}

int32_t synth_draw(ne_cuda_synth* synth, uint32_t stream, uint32_t step, uint32_t first, int64_t count, int32_t* slots,
                   char* err, size_t err_size) {
    return plugin_call(err, err_size, [&] {
        draw(*synth, synth->stream, static_cast<Stream>(stream), step, first, count, 1.0f, true);
        *slots = synth->slots;
    });
}

int32_t synth_read(ne_cuda_synth* synth, float* x, int32_t* active, int32_t* index, float* value, char* err,
                   size_t err_size) {
    return plugin_call(err, err_size, [&] {
        ne_cuda_synth& s = *synth;
        NE_CUDA_CHECK(cudaSetDevice(s.device));
        const int64_t count = s.drawn;
        auto read = [&](void* host, const void* device, size_t bytes) {
            if (host != nullptr) NE_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, s.stream));
        };
        read(x, s.x, static_cast<size_t>(count * s.view.d) * sizeof(float));
        read(active, s.active, static_cast<size_t>(count) * sizeof(int32_t));
        read(index, s.index, static_cast<size_t>(count * s.slots) * sizeof(int32_t));
        read(value, s.value, static_cast<size_t>(count * s.slots) * sizeof(float));
        NE_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    });
}

int32_t synth_device(const ne_cuda_synth& synth) { return synth.device; }

const float* synth_draw_device(ne_cuda_synth& synth, cudaStream_t on, Stream stream, uint32_t step, uint32_t first,
                               int64_t count, float scale) {
    draw(synth, on, stream, step, first, count, scale, true);
    return synth.x;
}

}  // namespace ne::cuda
