// Sampling: argmax, or softmax(logits / T) restricted to the top-k, then to the top-p nucleus.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"

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

int32_t Sampler::sample(std::span<const float> logits) {
  if (params_.temperature == 0.0f) return argmax(logits);
  const size_t vocab = logits.size();
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  size_t keep = vocab;
  if (params_.top_k > 0) keep = std::min(vocab, static_cast<size_t>(params_.top_k));
  // Highest logits first, ties to the lower id, so the candidate set is deterministic.
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)] ||
           (logits[static_cast<size_t>(a)] == logits[static_cast<size_t>(b)] && a < b);
  };
  std::partial_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(keep), order.end(), by_logit);
  order.resize(keep);
  const double max_logit = logits[static_cast<size_t>(order[0])];
  std::vector<double> probs(keep);
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((logits[static_cast<size_t>(order[i])] - max_logit) / params_.temperature);
    total += probs[i];
  }
  if (params_.top_p < 1.0f) {
    double mass = 0.0;
    size_t n = 0;
    while (n < keep) {
      mass += probs[n] / total;
      ++n;
      if (mass >= params_.top_p) break;
    }
    keep = n;
    total = std::accumulate(probs.begin(), probs.begin() + static_cast<ptrdiff_t>(keep), 0.0);
  }
  // Inverse CDF on a uniform draw in [0, total).
  const double u = std::uniform_real_distribution<double>(0.0, total)(rng_);
  double acc = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    acc += probs[i];
    if (u < acc) return order[i];
  }
  return order[keep - 1];
}

}  // namespace skv
