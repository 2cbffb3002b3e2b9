// rms_norm: x * rsqrt(mean(x^2) + eps) * w, accumulated in double for a stable reference.
#include <cmath>
#include <vector>

#include "ops/cpu/cpu_ops.h"

namespace skv::cpu {

void rms_norm(const RmsNormArgs& a) {
  const int64_t n = a.x.dim(0), dim = a.x.dim(1);
  std::vector<float> w(static_cast<size_t>(dim));
  for (int64_t j = 0; j < dim; ++j) w[static_cast<size_t>(j)] = load_as_f32(a.w, j);
#pragma omp parallel for schedule(static) if (n > 16)
  for (int64_t i = 0; i < n; ++i) {
    const float* x = a.x.ptr<const float>() + i * dim;
    float* out = a.out.ptr<float>() + i * dim;
    double sum_sq = 0.0;
    for (int64_t j = 0; j < dim; ++j) sum_sq += static_cast<double>(x[j]) * x[j];
    const float inv_rms = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(dim) + a.eps));
    for (int64_t j = 0; j < dim; ++j) out[j] = x[j] * inv_rms * w[static_cast<size_t>(j)];
  }
}

}  // namespace skv::cpu
