// HostValueStore: token-major values scattered once into chunk-major blocks.
#include "kv/host_value_store.h"

#include <cstring>
#include <string>

namespace skv {

HostValueStore::HostValueStore(int64_t n_kv_heads, int64_t n_chunks, int64_t chunk_size, int64_t head_dim)
    : n_kv_heads_(n_kv_heads), n_chunks_(n_chunks), chunk_size_(chunk_size), head_dim_(head_dim) {
  SKV_ASSERT(n_kv_heads > 0 && n_chunks >= 0 && chunk_size > 0 && head_dim > 0);
  if (n_chunks > 0) buf_ = HostBuffer(DType::kF32, {n_kv_heads, n_chunks, chunk_size, head_dim});
}

void HostValueStore::store(TensorView v) {
  if (v.dtype != DType::kF32 || v.shape.rank != 3 || v.dim(0) != n_chunks_ * chunk_size_ || v.dim(1) != n_kv_heads_ ||
      v.dim(2) != head_dim_)
    throw Error(ErrorCode::kInvalidArgument, "HostValueStore::store: v must be [" +
                                                 std::to_string(n_chunks_ * chunk_size_) + ", " +
                                                 std::to_string(n_kv_heads_) + ", " + std::to_string(head_dim_) +
                                                 "] f32, got " + v.describe());
  const float* src = v.ptr<const float>();
  float* dst = buf_.ptr<float>();
  const size_t row = static_cast<size_t>(head_dim_) * sizeof(float);
  for (int64_t t = 0; t < n_chunks_ * chunk_size_; ++t)
    for (int64_t h = 0; h < n_kv_heads_; ++h)
      std::memcpy(dst + ((h * n_chunks_ + t / chunk_size_) * chunk_size_ + t % chunk_size_) * head_dim_,
                  src + (t * n_kv_heads_ + h) * head_dim_, row);
}

TensorView HostValueStore::view() const {
  if (n_chunks_ == 0) return TensorView();
  return TensorView(buf_.data(), DType::kF32, {n_kv_heads_, n_chunks_, chunk_size_, head_dim_});
}

const float* HostValueStore::chunk(int64_t head, int64_t chunk) const {
  SKV_ASSERT(head >= 0 && head < n_kv_heads_ && chunk >= 0 && chunk < n_chunks_);
  return buf_.ptr<const float>() + (head * n_chunks_ + chunk) * chunk_size_ * head_dim_;
}

}  // namespace skv
