// attend_sparse (arXiv 2410.21465 §4.2): exact attention of the decode query over the union of the attended
// key sets (one softmax over all segments), with attention_decode's numerics.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/softmax_exp.h"
#include "ops/shadow_ops.h"

namespace skv::cpu {

void attend_sparse(const AttendSparseArgs& a) {
  const int64_t n_q_heads = a.q.dim(0), hd = a.q.dim(1);
  int64_t n_kv = 0, n_keys = 0;
  for (const SparseKvSegment& s : a.segments) {
    if (s.length > 0) n_kv = s.k.dim(0);
    n_keys += s.length;
  }
  const int64_t group = n_q_heads / n_kv;
  const float scale = a.scale != 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel if (n_keys * n_q_heads > 16384)
  {
    std::vector<float> scores(static_cast<size_t>(n_keys));
#pragma omp for schedule(static)
    for (int64_t h = 0; h < n_q_heads; ++h) {
      const int64_t g = h / group;
      const float* q = a.q.ptr<const float>() + h * hd;
      int64_t j = 0;
      for (const SparseKvSegment& s : a.segments) {
        const float* k = s.length > 0 ? s.k.ptr<const float>() + g * s.k.dim(1) * hd : nullptr;
        for (int64_t t = 0; t < s.length; ++t, ++j) {
          const float* kr = k + t * hd;
          float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
          for (int64_t d = 0; d < hd; ++d) dot += q[d] * kr[d];
          scores[static_cast<size_t>(j)] = dot * scale;
        }
      }
      const double denom = exp_shifted_sum(scores.data(), n_keys, max_of(scores.data(), n_keys));
      const float inv = static_cast<float>(1.0 / denom);
      float* out = a.out.ptr<float>() + h * hd;
      for (int64_t d = 0; d < hd; ++d) out[d] = 0.0f;
      j = 0;
      for (const SparseKvSegment& s : a.segments) {
        const float* v = s.length > 0 ? s.v.ptr<const float>() + g * s.v.dim(1) * hd : nullptr;
        for (int64_t t = 0; t < s.length; ++t, ++j) {
          const float p = scores[static_cast<size_t>(j)] * inv;
          const float* vr = v + t * hd;
#pragma omp simd
          for (int64_t d = 0; d < hd; ++d) out[d] += p * vr[d];
        }
      }
    }
  }
}

}  // namespace skv::cpu
