// rms_norm: x * rsqrt(mean(x^2) + eps) * w, accumulated in double for a stable reference.
#include <cmath>
#include <vector>

#include "ops/cpu/cpu_ops.h"

namespace skv::cpu {

void rms_norm(const RmsNormArgs& a) {
  const int64_t n = a.x.dim(0), dim = a.x.dim(1);
  // f32 weights (what the model passes) are read in place; others are converted for this call.
  std::vector<float> converted;
  const float* w = a.w.ptr<const float>();
  if (a.w.dtype != DType::kF32) {
    converted.resize(static_cast<size_t>(dim));
    for (int64_t j = 0; j < dim; ++j) converted[static_cast<size_t>(j)] = load_as_f32(a.w, j);
    w = converted.data();
  }
#pragma omp parallel for schedule(static) if (n > 16)
  for (int64_t i = 0; i < n; ++i) {
    const float* x = a.x.ptr<const float>() + i * dim;
    float* out = a.out.ptr<float>() + i * dim;
    double sum_sq = 0.0;
    for (int64_t j = 0; j < dim; ++j) sum_sq += static_cast<double>(x[j]) * x[j];
    const float inv_rms = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(dim) + a.eps));
    for (int64_t j = 0; j < dim; ++j) out[j] = x[j] * inv_rms * w[j];
  }
}

}  // namespace skv::cpu
