// How the split-KV decode kernels cut a decode step into CTAs, shared by the tensor-core kernel
// (attention_decode.cu) and the generic one (attention_generic.cu), so that both fill the same partials workspace
// ([n_seqs, n_q_heads, n_splits, head_dim] outputs, then [n_seqs, n_q_heads, n_splits] log-sum-exps) and
// attention_decode_batch_workspace_floats holds for either.
//
// A CTA serves up to kDecodeHeadsPerCta query heads of one KV head's GQA group (head_units CTAs per KV head when
// the group is larger) and one split of the keys. The splits are sized from max_length so that the grid fills the
// GPU about twice at batch 1 (8 KV heads at 32K: 64 splits of 512 keys); split lengths are multiples of
// kDecodeSplitQuantum keys.
#pragma once

#include <algorithm>
#include <cstdint>

#include "backend/device.h"

namespace skv::cuda {

constexpr int kDecodeHeadsPerCta = 16;
constexpr int kDecodeSplitQuantum = 64;

struct DecodeSplitPlan {
  int heads_per_cta = 1;  // min(group, kDecodeHeadsPerCta)
  int head_units = 1;     // CTAs per KV head: ceil(group / heads_per_cta)
  int n_splits = 1;
  int split_len = kDecodeSplitQuantum;
};

inline DecodeSplitPlan plan_decode_splits(int64_t n_seqs, int64_t n_q_heads, int64_t n_kv_heads, int64_t max_length,
                                          int device) {
  DecodeSplitPlan plan;
  const int64_t group = n_kv_heads > 0 ? n_q_heads / n_kv_heads : 1;
  plan.heads_per_cta = static_cast<int>(std::clamp<int64_t>(group, 1, kDecodeHeadsPerCta));
  plan.head_units = static_cast<int>((group + plan.heads_per_cta - 1) / plan.heads_per_cta);
  const int64_t sms = device_properties(device).multiprocessors;
  const int64_t units = std::max<int64_t>(1, n_seqs * n_kv_heads * plan.head_units);
  const int64_t target_ctas = sms * 2 /* CTAs per SM */ * 2 /* waves */;
  const int64_t max_len = std::max<int64_t>(1, max_length);
  const int64_t max_splits = (max_len + kDecodeSplitQuantum - 1) / kDecodeSplitQuantum;
  const int64_t want = std::clamp<int64_t>((target_ctas + units - 1) / units, 1, max_splits);
  int64_t split_len = (max_len + want - 1) / want;
  split_len = (split_len + kDecodeSplitQuantum - 1) / kDecodeSplitQuantum * kDecodeSplitQuantum;
  plan.split_len = static_cast<int>(split_len);
  plan.n_splits = static_cast<int>((max_len + split_len - 1) / split_len);
  return plan;
}

// f32 elements of the partials workspace for a plan.
inline int64_t decode_partials_floats(int64_t n_seqs, int64_t n_q_heads, int64_t head_dim,
                                      const DecodeSplitPlan& plan) {
  return n_seqs * n_q_heads * plan.n_splits * (head_dim + 1);
}

}  // namespace skv::cuda
