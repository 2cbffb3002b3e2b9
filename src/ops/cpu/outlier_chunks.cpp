// outlier_chunks (arXiv 2410.21465 §4.1): chunks whose keys are least well represented by their landmark.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/shadow_ops.h"

namespace skv::cpu {

void outlier_chunks(const OutlierChunksArgs& a) {
  const int64_t n_heads = a.k.dim(1), hd = a.k.dim(2), n_chunks = a.landmarks.dim(1), cs = a.chunk_size;
  const int64_t n_out = a.outliers.dim(1);
  const float* k = a.k.ptr<const float>();
  const float* lm = a.landmarks.ptr<const float>();
  std::vector<double> min_cos(static_cast<size_t>(n_chunks));
  std::vector<int64_t> order(static_cast<size_t>(n_chunks));
  for (int64_t h = 0; h < n_heads; ++h) {
    // min over the chunk's keys of cos(key, landmark)
    for (int64_t c = 0; c < n_chunks; ++c) {
      const float* l = lm + (h * n_chunks + c) * hd;
      double ll = 0.0;
      for (int64_t d = 0; d < hd; ++d) ll += static_cast<double>(l[d]) * l[d];
      double lowest = 0.0;
      for (int64_t i = 0; i < cs; ++i) {
        const float* row = k + ((c * cs + i) * n_heads + h) * hd;
        double dot = 0.0, kk = 0.0;
        for (int64_t d = 0; d < hd; ++d) {
          dot += static_cast<double>(row[d]) * l[d];
          kk += static_cast<double>(row[d]) * row[d];
        }
        const double cos = (kk > 0.0 && ll > 0.0) ? dot / std::sqrt(kk * ll) : 0.0;
        lowest = i == 0 ? cos : std::min(lowest, cos);
      }
      min_cos[static_cast<size_t>(c)] = lowest;
      if (!a.min_cos.empty()) a.min_cos.ptr<float>()[h * n_chunks + c] = static_cast<float>(lowest);
    }
    // the n_out smallest, ties by the lower index, written in ascending chunk order
    std::iota(order.begin(), order.end(), int64_t{0});
    std::partial_sort(order.begin(), order.begin() + n_out, order.end(), [&](int64_t x, int64_t y) {
      const double cx = min_cos[static_cast<size_t>(x)], cy = min_cos[static_cast<size_t>(y)];
      return cx < cy || (cx == cy && x < y);
    });
    std::sort(order.begin(), order.begin() + n_out);
    std::copy(order.begin(), order.begin() + n_out, a.outliers.ptr<int64_t>() + h * n_out);
  }
}

}  // namespace skv::cpu
