// landmark_means (arXiv 2410.21465 §4.1): landmark of chunk c of KV head h = mean of its post-RoPE keys.
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/shadow_ops.h"

namespace skv::cpu {

void landmark_means(const LandmarkMeansArgs& a) {
  const int64_t n_heads = a.k.dim(1), hd = a.k.dim(2), n_chunks = a.landmarks.dim(1), cs = a.chunk_size;
  const float* k = a.k.ptr<const float>();
  float* out = a.landmarks.ptr<float>();
  std::vector<double> sum(static_cast<size_t>(hd));
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t c = 0; c < n_chunks; ++c) {
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int64_t i = 0; i < cs; ++i) {
        const float* row = k + ((c * cs + i) * n_heads + h) * hd;
        for (int64_t d = 0; d < hd; ++d) sum[static_cast<size_t>(d)] += row[d];
      }
      for (int64_t d = 0; d < hd; ++d)
        out[(h * n_chunks + c) * hd + d] = static_cast<float>(sum[static_cast<size_t>(d)] / static_cast<double>(cs));
    }
}

}  // namespace skv::cpu
