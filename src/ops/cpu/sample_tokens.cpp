// sample_tokens: Sampler::sample (src/engine/sampler.cpp) row by row, with the uniform draw supplied.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "ops/cpu/cpu_ops.h"

namespace skv::cpu {
namespace {

int32_t sample_row(const float* logits, size_t vocab, const TokenSamplingParams& p, std::vector<int32_t>& order,
                   std::vector<double>& probs) {
  if (p.temperature == 0.0f) {  // argmax, ties to the lowest id
    size_t best = 0;
    for (size_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return static_cast<int32_t>(best);
  }
  order.resize(vocab);
  std::iota(order.begin(), order.end(), 0);
  size_t keep = vocab;
  if (p.top_k > 0) keep = std::min(vocab, static_cast<size_t>(p.top_k));
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)] ||
           (logits[static_cast<size_t>(a)] == logits[static_cast<size_t>(b)] && a < b);
  };
  // The comparator is a total order (ties by id), so sort and partial_sort give the same candidates; a full
  // partial_sort is a heap sort, several times slower than sort.
  if (keep == vocab) {
    std::sort(order.begin(), order.end(), by_logit);
  } else {
    std::partial_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(keep), order.end(), by_logit);
  }
  order.resize(keep);
  const double max_logit = logits[static_cast<size_t>(order[0])];
  probs.resize(keep);
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((logits[static_cast<size_t>(order[i])] - max_logit) / p.temperature);
    total += probs[i];
  }
  if (p.top_p < 1.0f) {
    double mass = 0.0;
    size_t n = 0;
    while (n < keep) {
      mass += probs[n] / total;
      ++n;
      if (mass >= p.top_p) break;
    }
    keep = n;
    total = std::accumulate(probs.begin(), probs.begin() + static_cast<ptrdiff_t>(keep), 0.0);
  }
  // Sampler's std::uniform_real_distribution<double>(0, total) returns generate_canonical * total.
  const double u = p.uniform * total;
  double acc = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    acc += probs[i];
    if (u < acc) return order[i];
  }
  return order[keep - 1];
}

}  // namespace

void sample_tokens(const SampleTokensArgs& a) {
  const int64_t n_seqs = a.logits.dim(0);
  const auto vocab = static_cast<size_t>(a.logits.dim(1));
  std::vector<int32_t> order;
  std::vector<double> probs;
  for (int64_t i = 0; i < n_seqs; ++i)
    a.out.ptr<int32_t>()[i] = sample_row(a.logits.ptr<const float>() + static_cast<size_t>(i) * vocab, vocab,
                                         a.params[static_cast<size_t>(i)], order, probs);
}

}  // namespace skv::cpu
