// Sampling: argmax, or softmax(logits / T) restricted to the top-k, then to the top-p nucleus.
#include "engine/sampler.h"

#include <cmath>
#include <random>
#include <string>

#include "core/error.h"
#include "ops/ops.h"

namespace skv {

void validate_sampling_params(const SamplingParams& p) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature) || p.temperature > 100.0f)
    throw Error(ErrorCode::kInvalidArgument,
                "temperature must be in [0, 100], got " + std::to_string(p.temperature));
  if (p.top_k < 0) throw Error(ErrorCode::kInvalidArgument, "top-k must be >= 0, got " + std::to_string(p.top_k));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
    throw Error(ErrorCode::kInvalidArgument, "top-p must be in (0, 1], got " + std::to_string(p.top_p));
}

int32_t argmax(std::span<const float> logits) {
  SKV_ASSERT(!logits.empty());
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int32_t>(best);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  validate_sampling_params(params);
}

// The selection itself is the sample_tokens op (its CPU twin is the reference for the GPU one); the sampler
// owns the seeded generator and draws one uniform per sampled token, none for greedy.
int32_t Sampler::sample(std::span<const float> logits) {
  SKV_ASSERT(!logits.empty());
  TokenSamplingParams p{params_.temperature, params_.top_k, params_.top_p, 0.0};
  if (params_.temperature != 0.0f) p.uniform = std::generate_canonical<double, 53>(rng_);
  int32_t token = -1;
  sample_tokens({.logits = TensorView(const_cast<float*>(logits.data()), DType::kF32,
                                      {1, static_cast<int64_t>(logits.size())}),
                 .params = std::span<const TokenSamplingParams>(&p, 1),
                 .out = TensorView(&token, DType::kI32, {1})});
  return token;
}

}  // namespace skv
