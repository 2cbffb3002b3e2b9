// What the two split-KV decode kernels (attention_decode.cu on tensor cores, attention_generic.cu in SIMT) share:
// the kernel parameters that describe the sequences, the split plan and the partials (DecodeSequences, which
// each kernel's own parameters extend), the validity test of a sequence, and the host-side set-up of one call
// from either op's arguments (make_decode_call: sizes, the plan of decode_splits.h, the partials in the caller's
// workspace or the backend's scratch, the grids).
#pragma once

#include <cmath>
#include <cstdint>

#include "backend/device.h"
#include "core/error.h"
#include "ops/cuda/decode_splits.h"
#include "ops/ops.h"

namespace skv::cuda {

struct DecodeSequences {
  const float* q;          // [n_seqs, n_q_heads, D]
  const int32_t* slots;    // [n_seqs]; nullptr: slot = sequence index
  const int32_t* lengths;  // [n_seqs]; nullptr: fixed_len
  float* partial_o;        // [n_seqs, n_q_heads, n_splits, D]
  float* partial_lse;      // [n_seqs, n_q_heads, n_splits] (the kernel's log domain)
  float* out;              // [n_seqs, n_q_heads, D]
  int n_q_heads, n_kv_heads, group, hpc, head_units;
  int n_slots;
  int64_t capacity;
  int fixed_len;
  int n_splits, split_len;
};

// The slot and length of sequence seq; false (its outputs are NaN, its keys never read) when the slot is outside
// [0, n_slots) or the length outside [1, capacity].
__device__ __forceinline__ bool sequence_valid(const DecodeSequences& p, int seq, int& slot, int& len) {
  slot = p.slots != nullptr ? p.slots[seq] : seq;
  len = p.lengths != nullptr ? p.lengths[seq] : p.fixed_len;
  return slot >= 0 && slot < p.n_slots && len >= 1 && static_cast<int64_t>(len) <= p.capacity;
}

struct DecodeCall {
  DecodeSequences seqs;
  const void* k;  // the first element of slot 0: [n_slots, capacity, n_kv_heads, head_dim], kv_dtype
  const void* v;  // as k
  DType kv_dtype;
  int64_t head_dim;
  float scale;        // resolved: the op's scale, or 1 / sqrt(head_dim)
  dim3 split_grid;    // (n_splits, n_kv_heads * head_units, n_seqs)
  dim3 combine_grid;  // (n_q_heads, n_seqs)
};

namespace detail {

inline DecodeCall make_decode_call(const float* q, const void* k, const void* v, DType kv_dtype, const int32_t* slots,
                                   const int32_t* lengths, float* out, const TensorView& workspace, int64_t n_seqs,
                                   int64_t n_q_heads, int64_t n_kv_heads, int64_t head_dim, int64_t n_slots,
                                   int64_t capacity, int64_t fixed_len, int64_t max_length, float scale, int device) {
  SKV_ASSERT_MSG(capacity <= INT32_MAX && n_slots <= INT32_MAX && n_seqs <= 65535 && n_q_heads <= 65535,
                 "attention_decode: sizes");
  DecodeCall c{};
  DecodeSequences& s = c.seqs;
  s.q = q;
  s.slots = slots;
  s.lengths = lengths;
  s.out = out;
  s.n_q_heads = static_cast<int>(n_q_heads);
  s.n_kv_heads = static_cast<int>(n_kv_heads);
  s.group = static_cast<int>(n_q_heads / n_kv_heads);
  const DecodeSplitPlan plan = plan_decode_splits(n_seqs, n_q_heads, n_kv_heads, max_length, device);
  s.hpc = plan.heads_per_cta;
  s.head_units = plan.head_units;
  s.n_slots = static_cast<int>(n_slots);
  s.capacity = capacity;
  s.fixed_len = static_cast<int>(fixed_len);
  s.n_splits = plan.n_splits;
  s.split_len = plan.split_len;
  const int64_t need = decode_partials_floats(n_seqs, n_q_heads, head_dim, plan);
  float* partials = nullptr;
  if (workspace.empty()) {
    partials = static_cast<float*>(scratch(ScratchSlot::kAttentionPartials, static_cast<size_t>(need) * sizeof(float), device));
  } else {
    SKV_ASSERT_MSG(workspace.dim(0) >= need, "attention_decode_batch: workspace too small");
    partials = workspace.ptr<float>();
  }
  s.partial_o = partials;
  s.partial_lse = partials + n_seqs * n_q_heads * plan.n_splits * head_dim;
  c.k = k;
  c.v = v;
  c.kv_dtype = kv_dtype;
  c.head_dim = head_dim;
  c.scale = scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
  c.split_grid = dim3(static_cast<unsigned>(plan.n_splits), static_cast<unsigned>(n_kv_heads * plan.head_units),
                      static_cast<unsigned>(n_seqs));
  c.combine_grid = dim3(static_cast<unsigned>(n_q_heads), static_cast<unsigned>(n_seqs));
  return c;
}

}  // namespace detail

// attention_decode_batch: the sequences' slots and lengths in the cache, splits sized by max_length.
inline DecodeCall make_decode_call(const AttentionDecodeBatchArgs& a) {
  const int64_t capacity = a.k_cache.dim(1);
  return detail::make_decode_call(a.q.ptr<const float>(), a.k_cache.data, a.v_cache.data, a.k_cache.dtype,
                                  a.slots.ptr<const int32_t>(), a.lengths.ptr<const int32_t>(), a.out.ptr<float>(),
                                  a.workspace, a.q.dim(0), a.q.dim(1), a.k_cache.dim(2), a.q.dim(2),
                                  a.k_cache.dim(0), capacity, capacity, a.max_length > 0 ? a.max_length : capacity,
                                  a.scale, a.out.device.index);
}

// attention_decode: one sequence, every row of k and v.
inline DecodeCall make_decode_call(const AttentionDecodeArgs& a) {
  const int64_t kv_len = a.k.dim(0);
  return detail::make_decode_call(a.q.ptr<const float>(), a.k.data, a.v.data, a.k.dtype, nullptr, nullptr,
                                  a.out.ptr<float>(), TensorView(), 1, a.q.dim(0), a.k.dim(1), a.q.dim(1), 1, kv_len,
                                  kv_len, kv_len, a.scale, a.out.device.index);
}

}  // namespace skv::cuda
