// attention_prefill and attention_decode: exact softmax attention, the reference for every sparse and GPU
// variant. Scores and softmax in f32 with the max subtracted; sums in double.
#include <cmath>
#include <limits>
#include <vector>

#include "ops/cpu/cpu_ops.h"

namespace skv::cpu {
namespace {

inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// One query row of one head over keys [0, n_keys): k and v rows are `kv_stride` floats apart.
void attend_row(const float* q, const float* k, const float* v, int64_t n_keys, int64_t kv_stride, int64_t head_dim,
                float scale, float* scores, float* out) {
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n_keys; ++j) {
    scores[j] = dot(q, k + j * kv_stride, head_dim) * scale;
    max_score = std::max(max_score, scores[j]);
  }
  double denom = 0.0;
  for (int64_t j = 0; j < n_keys; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    denom += scores[j];
  }
  const float inv = static_cast<float>(1.0 / denom);
  for (int64_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
  for (int64_t j = 0; j < n_keys; ++j) {
    const float p = scores[j] * inv;
    const float* vr = v + j * kv_stride;
#pragma omp simd
    for (int64_t d = 0; d < head_dim; ++d) out[d] += p * vr[d];
  }
}

}  // namespace

void attention_prefill(const AttentionPrefillArgs& a) {
  const int64_t n_q = a.q.dim(0), n_q_heads = a.q.dim(1), head_dim = a.q.dim(2);
  const int64_t kv_len = a.k.dim(0), n_kv_heads = a.k.dim(1);
  const int64_t group = n_q_heads / n_kv_heads, kv_stride = n_kv_heads * head_dim;
  const float scale = a.scale != 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(kv_len));
#pragma omp for collapse(2) schedule(dynamic, 4)
    for (int64_t i = 0; i < n_q; ++i) {
      for (int64_t h = 0; h < n_q_heads; ++h) {
        const int64_t kvh = h / group;
        const int64_t n_keys = a.q_start + i + 1;
        attend_row(a.q.ptr<const float>() + (i * n_q_heads + h) * head_dim,
                   a.k.ptr<const float>() + kvh * head_dim, a.v.ptr<const float>() + kvh * head_dim, n_keys,
                   kv_stride, head_dim, scale, scores.data(), a.out.ptr<float>() + (i * n_q_heads + h) * head_dim);
      }
    }
  }
}

void attention_decode(const AttentionDecodeArgs& a) {
  const int64_t n_q_heads = a.q.dim(0), head_dim = a.q.dim(1);
  const int64_t kv_len = a.k.dim(0), n_kv_heads = a.k.dim(1);
  const int64_t group = n_q_heads / n_kv_heads, kv_stride = n_kv_heads * head_dim;
  const float scale = a.scale != 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
#pragma omp parallel if (kv_len * n_q_heads > 16384)
  {
    std::vector<float> scores(static_cast<size_t>(kv_len));
#pragma omp for schedule(static)
    for (int64_t h = 0; h < n_q_heads; ++h) {
      const int64_t kvh = h / group;
      attend_row(a.q.ptr<const float>() + h * head_dim, a.k.ptr<const float>() + kvh * head_dim,
                 a.v.ptr<const float>() + kvh * head_dim, kv_len, kv_stride, head_dim, scale, scores.data(),
                 a.out.ptr<float>() + h * head_dim);
    }
  }
}

}  // namespace skv::cpu
