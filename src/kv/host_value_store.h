// HostValueStore: the offloaded values of ShadowKV (arXiv 2410.21465, §4.2: "the value cache is offloaded to
// the CPU"). Chunk-major, so that one chunk of one KV head is one contiguous block and fetching a selected
// chunk is one copy: [n_kv_heads, n_chunks, chunk_size, head_dim] f32. On the CPU backend this is ordinary
// host memory; the CUDA backend will back the same layout with pinned memory so chunks stream to the GPU.
#pragma once

#include <cstdint>

#include "core/buffer.h"
#include "core/tensor.h"

namespace skv {

class HostValueStore {
 public:
  HostValueStore() = default;
  HostValueStore(int64_t n_kv_heads, int64_t n_chunks, int64_t chunk_size, int64_t head_dim);

  // Scatters token-major values v [n_chunks * chunk_size, n_kv_heads, head_dim] f32 into the chunk-major layout.
  void store(TensorView v);

  // The whole store: [n_kv_heads, n_chunks, chunk_size, head_dim] f32 (empty view when it holds no chunk).
  TensorView view() const;
  // Chunk `chunk` of KV head `head`: chunk_size * head_dim contiguous floats.
  const float* chunk(int64_t head, int64_t chunk) const;

  int64_t n_chunks() const { return n_chunks_; }
  int64_t bytes() const { return static_cast<int64_t>(buf_.bytes()); }

 private:
  HostBuffer buf_;
  int64_t n_kv_heads_ = 0, n_chunks_ = 0, chunk_size_ = 0, head_dim_ = 0;
};

}  // namespace skv
