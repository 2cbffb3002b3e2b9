// attention_prefill and attention_decode: exact softmax attention, the reference for every sparse and GPU
// variant. Scores and softmax in f32 with the max subtracted (exponentials by softmax_exp.h); sums in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include <cblas.h>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/softmax_exp.h"

namespace skv::cpu {
namespace {

constexpr int64_t kBlock = 128;        // query rows per GEMM block of attention_prefill
constexpr int64_t kSmallPrefill = 16;  // fewer query rows than this: the row loop

inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// One query row of one head over keys [0, n_keys): k and v rows are `kv_stride` floats apart.
void attend_row(const float* q, const float* k, const float* v, int64_t n_keys, int64_t kv_stride, int64_t head_dim,
                float scale, float* scores, float* out) {
  for (int64_t j = 0; j < n_keys; ++j) scores[j] = dot(q, k + j * kv_stride, head_dim) * scale;
  const double denom = exp_shifted_sum(scores, n_keys, max_of(scores, n_keys));
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

// Blocked by query rows so both products are GEMMs (OpenBLAS): for each query head and block of kBlock query
// rows, scores = Q_blk K^T over the keys the block's last row sees, a causal row-wise softmax (f32 exp with
// the max subtracted, the denominator in double, as attend_row), then out = P V scaled by 1/denominator.
// O(n^2) work as before, but at GEMM speed: a 32K-token prompt is practical on a few cores.
void attention_prefill(const AttentionPrefillArgs& a) {
  const int64_t n_q = a.q.dim(0), n_q_heads = a.q.dim(1), head_dim = a.q.dim(2);
  const int64_t n_kv_heads = a.k.dim(1);
  const int64_t group = n_q_heads / n_kv_heads, kv_stride = n_kv_heads * head_dim, q_stride = n_q_heads * head_dim;
  const float scale = a.scale != 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
  if (n_q < kSmallPrefill) {  // a few rows (short chunks, tests): the row-by-row reference loop
#pragma omp parallel
    {
      std::vector<float> scores(static_cast<size_t>(a.k.dim(0)));
#pragma omp for collapse(2) schedule(dynamic, 4)
      for (int64_t i = 0; i < n_q; ++i) {
        for (int64_t h = 0; h < n_q_heads; ++h) {
          const int64_t kvh = h / group;
          attend_row(a.q.ptr<const float>() + (i * n_q_heads + h) * head_dim, a.k.ptr<const float>() + kvh * head_dim,
                     a.v.ptr<const float>() + kvh * head_dim, a.q_start + i + 1, kv_stride, head_dim, scale,
                     scores.data(), a.out.ptr<float>() + (i * n_q_heads + h) * head_dim);
        }
      }
    }
    return;
  }
  const int64_t max_keys = a.q_start + n_q;
  std::vector<float> scores(static_cast<size_t>(kBlock * max_keys));
  std::vector<float> inv_denom(static_cast<size_t>(kBlock));
  for (int64_t h = 0; h < n_q_heads; ++h) {
    const int64_t kvh = h / group;
    for (int64_t i0 = 0; i0 < n_q; i0 += kBlock) {
      const int64_t rows = std::min(kBlock, n_q - i0);
      const int64_t n_keys = a.q_start + i0 + rows;  // keys the block's last row sees
      const float* q = a.q.ptr<const float>() + (i0 * n_q_heads + h) * head_dim;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(n_keys),
                  static_cast<int>(head_dim), scale, q, static_cast<int>(q_stride), a.k.ptr<const float>() + kvh * head_dim,
                  static_cast<int>(kv_stride), 0.0f, scores.data(), static_cast<int>(n_keys));
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        float* s = scores.data() + r * n_keys;
        const int64_t visible = a.q_start + i0 + r + 1;
        const double denom = exp_shifted_sum(s, visible, max_of(s, visible));
        for (int64_t j = visible; j < n_keys; ++j) s[j] = 0.0f;
        inv_denom[static_cast<size_t>(r)] = static_cast<float>(1.0 / denom);
      }
      float* out = a.out.ptr<float>() + (i0 * n_q_heads + h) * head_dim;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(head_dim),
                  static_cast<int>(n_keys), 1.0f, scores.data(), static_cast<int>(n_keys),
                  a.v.ptr<const float>() + kvh * head_dim, static_cast<int>(kv_stride), 0.0f, out,
                  static_cast<int>(q_stride));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t d = 0; d < head_dim; ++d) out[r * q_stride + d] *= inv_denom[static_cast<size_t>(r)];
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
