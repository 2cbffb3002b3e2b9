// attention_decode_batch: each sequence's decode step is attention_decode over keys [0, length) of its slot.
#include "ops/cpu/cpu_ops.h"

namespace skv::cpu {

void attention_decode_batch(const AttentionDecodeBatchArgs& a) {
  const int64_t n_seqs = a.q.dim(0), n_q_heads = a.q.dim(1), head_dim = a.q.dim(2);
  const int64_t capacity = a.k_cache.dim(1), n_kv_heads = a.k_cache.dim(2);
  const int64_t slot_elems = capacity * n_kv_heads * head_dim;
  const auto* slots = a.slots.ptr<const int32_t>();
  const auto* lengths = a.lengths.ptr<const int32_t>();
  for (int64_t i = 0; i < n_seqs; ++i) {
    const int64_t slot = slots[i], len = lengths[i];
    AttentionDecodeArgs d;
    d.q = TensorView(a.q.ptr<float>() + i * n_q_heads * head_dim, DType::kF32, {n_q_heads, head_dim});
    d.k = TensorView(a.k_cache.ptr<float>() + slot * slot_elems, DType::kF32, {len, n_kv_heads, head_dim});
    d.v = TensorView(a.v_cache.ptr<float>() + slot * slot_elems, DType::kF32, {len, n_kv_heads, head_dim});
    d.out = TensorView(a.out.ptr<float>() + i * n_q_heads * head_dim, DType::kF32, {n_q_heads, head_dim});
    d.scale = a.scale;
    cpu::attention_decode(d);  // the CPU twin itself, not the dispatching skv::attention_decode
  }
}

}  // namespace skv::cpu
