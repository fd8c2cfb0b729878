// The one place a model's backend is chosen. From the context: the CPU implementation (cpu/), or the CUDA one,
// which lives in the plugin (cuda/) and is reached through the adapters in backends.cpp. Model classes ask here
// and never branch on the backend themselves.
#pragma once
#include <memory>

#include "models/moe.h"
#include "models/sae.h"
#include "models/synth_truth.h"
#include "models/toy.h"
#include "nativeengine.h"

struct ne_context;

namespace ne {

ne_capabilities capabilities(const ne_context& ctx);

// Throw NE_ERR_UNSUPPORTED, naming the field, its value and the limit, when the context's backend cannot run the
// model. Nothing is allocated. The make_* functions below run the same checks.
void check_toy_supported(const ne_context& ctx, const ToyShape& shape);
void check_moe_supported(const ne_context& ctx, const MoeSpec& spec, int64_t instances);
void check_sae_supported(const ne_context& ctx, const SaeSpec& spec, int32_t precision);

std::unique_ptr<ToyBackend> make_toy_backend(const ne_context& ctx, const ToyShape& shape, const ToyData& data);
std::unique_ptr<MoeBackend> make_moe_backend(const ne_context& ctx, const MoeSpec& spec, const ToyShape& shape,
                                             const ToyData& data);
// The sampler of a synthetic generator's truth (which must outlive it): CPU, or the CUDA twin on the context's device.
std::unique_ptr<SynthBackend> make_synth_backend(const ne_context& ctx, const SynthTruth& truth);
// precision: ne_sae_precision of the encoder GEMM. shard: this rank's part of a split SAE (the CPU backend only).
std::unique_ptr<SaeBackend> make_sae_backend(const ne_context& ctx, const SaeSpec& spec, int32_t precision,
                                             const SaeShard& shard = {});

}  // namespace ne
