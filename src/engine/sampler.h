// Sampler: picks the next token from logits. Greedy (temperature 0), or temperature + top-k + top-p from a
// seeded generator, so a given seed always gives the same tokens.
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace skv {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy (argmax, ties to the lowest id)
  int64_t top_k = 0;         // 0: no limit
  float top_p = 1.0f;        // nucleus: the smallest set of most likely tokens whose mass reaches top_p
  uint64_t seed = 0;
};

// Throws Error(kInvalidArgument) naming the parameter when a value is out of range.
void validate_sampling_params(const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  int32_t sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

int32_t argmax(std::span<const float> logits);

}  // namespace skv
