// cast_rows on the CPU: the reference of the CUDA twin.
#include <cstring>
#include <string>

#include "ops/cpu/cpu_ops.h"

namespace skv::cpu {

void cast_rows(const CastRowsArgs& a) {
  const int64_t n = a.src.dim(0), row = a.src.dim(1), n_dst = a.dst.dim(0);
  const float* src = a.src.ptr<const float>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = a.dst_rows.empty() ? i : a.dst_rows.ptr<const int64_t>()[i];
    if (r < 0 || r >= n_dst)
      throw Error(ErrorCode::kInvalidArgument, "cast_rows: dst_rows[" + std::to_string(i) + "] = " + std::to_string(r) +
                                                   " is outside [0, " + std::to_string(n_dst) + ")");
    const float* s = src + i * row;
    if (a.dst.dtype == DType::kF32) {
      std::memcpy(a.dst.ptr<float>() + r * row, s, static_cast<size_t>(row) * sizeof(float));
    } else {
      uint16_t* d = a.dst.ptr<uint16_t>() + r * row;
      for (int64_t j = 0; j < row; ++j) d[j] = f32_to_bf16(s[j]);
    }
  }
}

}  // namespace skv::cpu
