// rope: rotate-half RoPE (HF layout). Angles are computed in double: at 128K positions a float32 angle is
// off by ~1e-2 rad, which would make long-context logits drift from the mathematical definition.
#include <cmath>

#include "ops/cpu/cpu_ops.h"

namespace skv::cpu {

void rope(const RopeArgs& a) {
  const int64_t n = a.x.dim(0), n_heads = a.x.dim(1), head_dim = a.x.dim(2), half = head_dim / 2;
  const auto* pos = a.positions.ptr<const int64_t>();
  const float* inv_freq = a.inv_freq.ptr<const float>();
#pragma omp parallel for schedule(static) if (n > 16)
  for (int64_t t = 0; t < n; ++t) {
    const double p = static_cast<double>(pos[t]) * a.position_scale;
    for (int64_t i = 0; i < half; ++i) {
      const double angle = p * static_cast<double>(inv_freq[i]);
      const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
      for (int64_t h = 0; h < n_heads; ++h) {
        float* x = a.x.ptr<float>() + (t * n_heads + h) * head_dim;
        const float x0 = x[i], x1 = x[i + half];
        x[i] = x0 * c - x1 * s;
        x[i + half] = x1 * c + x0 * s;
      }
    }
  }
}

}  // namespace skv::cpu
