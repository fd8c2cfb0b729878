// CUDA twin of the synthetic sampler: entry points of the plugin's model table (models/cuda_table.h), and the
// device draw the SAE's step takes its batch from.
#pragma once
#include <cuda_runtime.h>

#include "models/cuda_table.h"

namespace ne::cuda {

int32_t synth_create(int32_t device, const SynthView* truth, const int32_t* top, int64_t top_count,
                     ne_cuda_synth** out, char* err, size_t err_size);
void synth_destroy(ne_cuda_synth* synth);
int32_t synth_draw(ne_cuda_synth* synth, uint32_t stream, uint32_t step, uint32_t first, int64_t count, int32_t* slots,
                   char* err, size_t err_size);
int32_t synth_read(ne_cuda_synth* synth, float* x, int32_t* active, int32_t* index, float* value, char* err,
                   size_t err_size);

// The device a synth lives on.
int32_t synth_device(const ne_cuda_synth& synth);

// Draws samples first .. first+count-1 of (stream, step), x times scale, on `on` (the caller's stream, which it
// then synchronises with as it would after a copy); returns the device x [count][d], valid until the next draw.
const float* synth_draw_device(ne_cuda_synth& synth, cudaStream_t on, Stream stream, uint32_t step, uint32_t first,
                               int64_t count, float scale);

}  // namespace ne::cuda
