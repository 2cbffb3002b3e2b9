// swiglu: silu(gate) * up, the Llama MLP's gating.
#include <cmath>

#include "ops/cpu/cpu_ops.h"

namespace skv::cpu {

void swiglu(const SwigluArgs& a) {
  const int64_t n = a.gate.numel();
  const float* g = a.gate.ptr<const float>();
  const float* u = a.up.ptr<const float>();
  float* out = a.out.ptr<float>();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

}  // namespace skv::cpu
