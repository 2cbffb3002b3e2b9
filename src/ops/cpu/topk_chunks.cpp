// topk_chunks (arXiv 2410.21465 §4.2): the k best-scoring chunks of each KV head, ties to the lower index.
#include <algorithm>
#include <numeric>
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/shadow_ops.h"

namespace skv::cpu {

void topk_chunks(const TopkChunksArgs& a) {
  const int64_t n_kv = a.scores.dim(0), n_chunks = a.scores.dim(1), k = a.selected.dim(1);
  std::vector<int64_t> order(static_cast<size_t>(n_chunks));
  for (int64_t h = 0; h < n_kv; ++h) {
    const float* s = a.scores.ptr<const float>() + h * n_chunks;
    std::iota(order.begin(), order.end(), int64_t{0});
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [s](int64_t x, int64_t y) { return s[x] > s[y] || (s[x] == s[y] && x < y); });
    std::sort(order.begin(), order.begin() + k);
    std::copy(order.begin(), order.begin() + k, a.selected.ptr<int64_t>() + h * k);
  }
}

}  // namespace skv::cpu
