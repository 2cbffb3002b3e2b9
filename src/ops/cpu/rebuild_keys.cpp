// rebuild_keys (arXiv 2410.21465 §4.2): pre-RoPE keys of the fetched chunks rebuilt from the low-rank factors
// (U rows of the chunk times SV's columns of the KV head, one GEMM per head over all its fetched chunks), then
// rotated by the model's RoPE op at the tokens' original positions.
#include <vector>

#include <cblas.h>

#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"
#include "ops/shadow_ops.h"

namespace skv::cpu {

void rebuild_keys(const RebuildKeysArgs& a) {
  const int64_t n_kv = a.out.dim(0), k = a.out.dim(1), cs = a.out.dim(2), hd = a.out.dim(3);
  const int64_t r = a.u.dim(1), kv_dim = a.sv.dim(1);
  const float* u = a.u.ptr<const float>();
  const float* sv = a.sv.ptr<const float>();
  std::vector<int64_t> todo;
  std::vector<float> u_rows, keys;
  std::vector<int64_t> positions;
  for (int64_t h = 0; h < n_kv; ++h) {
    todo.clear();
    for (int64_t j = 0; j < k; ++j)
      if (a.fetch.empty() || a.fetch.ptr<const uint8_t>()[h * k + j]) todo.push_back(j);
    if (todo.empty()) continue;
    const int64_t m = static_cast<int64_t>(todo.size()) * cs;  // rows to rebuild
    u_rows.resize(static_cast<size_t>(m * r));
    keys.resize(static_cast<size_t>(m * hd));
    positions.resize(static_cast<size_t>(m));
    for (size_t i = 0; i < todo.size(); ++i) {
      const int64_t c = a.slots.ptr<const int64_t>()[h * k + todo[i]];
      std::copy(u + c * cs * r, u + (c + 1) * cs * r, u_rows.begin() + static_cast<int64_t>(i) * cs * r);
      for (int64_t t = 0; t < cs; ++t)
        positions[i * static_cast<size_t>(cs) + static_cast<size_t>(t)] = a.first_position + c * cs + t;
    }
    // keys [m, hd] = u_rows [m, r] * SV[:, h*hd : (h+1)*hd] (ldb = kv_dim)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(hd),
                static_cast<int>(r), 1.0f, u_rows.data(), static_cast<int>(r), sv + h * hd, static_cast<int>(kv_dim),
                0.0f, keys.data(), static_cast<int>(hd));
    if (a.rope_table.empty()) {
      skv::rope({.x = TensorView(keys.data(), DType::kF32, {m, 1, hd}),
                 .positions = TensorView(positions.data(), DType::kI64, {m}),
                 .inv_freq = a.inv_freq,
                 .position_scale = a.position_scale});
    } else {  // the same rotation as cpu::rope, its (cos, sin) read from the table
      const int64_t half = hd / 2;
      for (int64_t row = 0; row < m; ++row) {
        const float* cs_row = a.rope_table.ptr<const float>() + (positions[static_cast<size_t>(row)] - a.first_position) * half * 2;
        float* x = keys.data() + row * hd;
        for (int64_t i = 0; i < half; ++i) {
          const float c = cs_row[2 * i], s = cs_row[2 * i + 1];
          const float x0 = x[i], x1 = x[i + half];
          x[i] = x0 * c - x1 * s;
          x[i + half] = x1 * c + x0 * s;
        }
      }
    }
    for (size_t i = 0; i < todo.size(); ++i)
      std::copy(keys.begin() + static_cast<int64_t>(i) * cs * hd, keys.begin() + static_cast<int64_t>(i + 1) * cs * hd,
                a.out.ptr<float>() + (h * k + todo[i]) * cs * hd);
  }
}

}  // namespace skv::cpu
