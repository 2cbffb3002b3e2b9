// gather_chunks (arXiv 2410.21465 §4.2): the values of the slots' chunks, one contiguous copy per chunk from
// the chunk-major offload store.
#include <cstring>

#include "ops/cpu/cpu_ops.h"
#include "ops/shadow_ops.h"

namespace skv::cpu {

void gather_chunks(const GatherChunksArgs& a) {
  const int64_t n_kv = a.store.dim(0), n_chunks = a.store.dim(1), k = a.slots.dim(1);
  const int64_t block = a.store.dim(2) * a.store.dim(3);  // floats per chunk
  const float* store = a.store.ptr<const float>();
  float* out = a.out.ptr<float>();
  for (int64_t h = 0; h < n_kv; ++h)
    for (int64_t j = 0; j < k; ++j) {
      if (!a.fetch.empty() && !a.fetch.ptr<const uint8_t>()[h * k + j]) continue;
      const int64_t c = a.slots.ptr<const int64_t>()[h * k + j];
      std::memcpy(out + (h * k + j) * block, store + (h * n_chunks + c) * block,
                  static_cast<size_t>(block) * sizeof(float));
    }
}

}  // namespace skv::cpu
