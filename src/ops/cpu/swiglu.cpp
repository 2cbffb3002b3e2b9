// swiglu: silu(gate) * up, the Llama MLP's gating; gate and up separate or packed per row as [gate | up].
#include <cmath>

#include "ops/cpu/cpu_ops.h"

namespace skv::cpu {

void swiglu(const SwigluArgs& a) {
  const bool packed = a.up.empty();
  const int64_t rows = a.out.dim(0), hidden = a.out.dim(1);
  const int64_t in_stride = packed ? 2 * hidden : hidden;  // floats between the rows of gate (and up)
  const float* g = a.gate.ptr<const float>();
  const float* u = packed ? g + hidden : a.up.ptr<const float>();
  float* out = a.out.ptr<float>();
#pragma omp parallel for schedule(static) if (rows * hidden > 65536)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < hidden; ++i) {
      const float gi = g[r * in_stride + i];
      out[r * hidden + i] = gi / (1.0f + std::exp(-gi)) * u[r * in_stride + i];
    }
}

}  // namespace skv::cpu
