// landmark_bounds (after Quest, Tang et al., ICML 2024; not in arXiv 2410.21465): per KV head and chunk, the
// per-dimension minimum and maximum of the chunk's post-RoPE keys.
#include <algorithm>

#include "ops/cpu/cpu_ops.h"
#include "ops/shadow_ops.h"

namespace skv::cpu {

void landmark_bounds(const LandmarkBoundsArgs& a) {
  const int64_t n_heads = a.k.dim(1), hd = a.k.dim(2), n_chunks = a.lower.dim(1), cs = a.chunk_size;
  const float* k = a.k.ptr<const float>();
  float* lo = a.lower.ptr<float>();
  float* hi = a.upper.ptr<float>();
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t c = 0; c < n_chunks; ++c) {
      float* l = lo + (h * n_chunks + c) * hd;
      float* u = hi + (h * n_chunks + c) * hd;
      const float* first = k + ((c * cs) * n_heads + h) * hd;
      std::copy_n(first, hd, l);
      std::copy_n(first, hd, u);
      for (int64_t i = 1; i < cs; ++i) {
        const float* row = k + ((c * cs + i) * n_heads + h) * hd;
        for (int64_t d = 0; d < hd; ++d) {
          l[d] = std::min(l[d], row[d]);
          u[d] = std::max(u[d], row[d]);
        }
      }
    }
}

}  // namespace skv::cpu
