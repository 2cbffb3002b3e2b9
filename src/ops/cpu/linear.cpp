// linear: out = x * w^T + bias (accumulate: out += ...) through OpenBLAS (sgemv for one row: decode is a
// matrix-vector product).
#include <cblas.h>

#include "ops/cpu/cpu_ops.h"

namespace skv::cpu {

void linear(const LinearArgs& a) {
  const int64_t n = a.x.dim(0), in = a.x.dim(1), out_features = a.w.dim(0);
  const float* x = a.x.ptr<const float>();
  const float* w = a.w.ptr<const float>();
  float* out = a.out.ptr<float>();
  const float beta = a.accumulate ? 1.0f : 0.0f;
  if (n == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(out_features), static_cast<int>(in), 1.0f, w,
                static_cast<int>(in), x, 1, beta, out, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(out_features),
                static_cast<int>(in), 1.0f, x, static_cast<int>(in), w, static_cast<int>(in), beta, out,
                static_cast<int>(out_features));
  }
  if (!a.bias.empty()) {
    const float* b = a.bias.ptr<const float>();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < out_features; ++j) out[i * out_features + j] += b[j];
  }
}

}  // namespace skv::cpu
