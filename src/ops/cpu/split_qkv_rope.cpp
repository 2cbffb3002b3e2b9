// split_qkv_rope: one fused projection's [q | k | v] rows into per-head q, k, v (and the pre-RoPE k), with the
// rotation of `rope` (cpu/rope.cpp: angles in double, rotate-half layout).
#include <cmath>
#include <cstring>

#include "ops/cpu/cpu_ops.h"

namespace skv::cpu {

void split_qkv_rope(const SplitQkvRopeArgs& a) {
  const int64_t n = a.q.dim(0), hq = a.q.dim(1), d = a.q.dim(2), hkv = a.k.dim(1), half = d / 2;
  const int64_t row = (hq + 2 * hkv) * d;
  const float* qkv = a.qkv.ptr<const float>();
  const auto* pos = a.positions.ptr<const int64_t>();
  const float* inv_freq = a.inv_freq.ptr<const float>();
  float* k_pre = a.k_pre.empty() ? nullptr : a.k_pre.ptr<float>();
#pragma omp parallel for schedule(static) if (n > 16)
  for (int64_t t = 0; t < n; ++t) {
    const float* src = qkv + t * row;
    float* q = a.q.ptr<float>() + t * hq * d;
    float* k = a.k.ptr<float>() + t * hkv * d;
    std::memcpy(q, src, static_cast<size_t>(hq * d) * sizeof(float));
    std::memcpy(k, src + hq * d, static_cast<size_t>(hkv * d) * sizeof(float));
    std::memcpy(a.v.ptr<float>() + t * hkv * d, src + (hq + hkv) * d, static_cast<size_t>(hkv * d) * sizeof(float));
    if (k_pre != nullptr) std::memcpy(k_pre + t * hkv * d, k, static_cast<size_t>(hkv * d) * sizeof(float));
    const double p = static_cast<double>(pos[t]) * a.position_scale;
    for (int64_t i = 0; i < half; ++i) {
      const double angle = p * static_cast<double>(inv_freq[i]);
      const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
      for (int64_t h = 0; h < hq + hkv; ++h) {
        float* x = h < hq ? q + h * d : k + (h - hq) * d;
        const float x0 = x[i], x1 = x[i + half];
        x[i] = x0 * c - x1 * s;
        x[i + half] = x1 * c + x0 * s;
      }
    }
  }
}

}  // namespace skv::cpu
