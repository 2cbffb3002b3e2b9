// embedding: rows of the token table, converted to f32.
#include "core/dtype.h"
#include "ops/cpu/cpu_ops.h"

namespace skv::cpu {

float load_as_f32(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::kF32: return t.ptr<const float>()[i];
    case DType::kBF16: return bf16_to_f32(t.ptr<const uint16_t>()[i]);
    case DType::kF16: return f16_to_f32(t.ptr<const uint16_t>()[i]);
    default: SKV_ASSERT_MSG(false, "load_as_f32 on a non-float tensor");
  }
  return 0.0f;
}

void embedding(const EmbeddingArgs& a) {
  const int64_t n = a.ids.dim(0), dim = a.table.dim(1);
  const auto* ids = a.ids.ptr<const int32_t>();
  const size_t row_bytes = static_cast<size_t>(dim) * dtype_size(a.table.dtype);
  for (int64_t i = 0; i < n; ++i) {
    const char* row = static_cast<const char*>(a.table.data) + static_cast<size_t>(ids[i]) * row_bytes;
    convert_to_f32(row, a.table.dtype, a.out.ptr<float>() + i * dim, static_cast<size_t>(dim));
  }
}

}  // namespace skv::cpu
