// How the split-KV decode kernels cut a decode step into CTAs, shared by the tensor-core kernel
// (attention_decode.cu) and the generic one (attention_generic.cu), so that both fill the same partials workspace
// ([n_seqs, n_q_heads, n_splits, head_dim] outputs, then [n_seqs, n_q_heads, n_splits] log-sum-exps) and
// attention_decode_batch_workspace_floats holds for either.
//
// A CTA serves up to kDecodeHeadsPerCta query heads of one KV head's GQA group (head_units CTAs per KV head when
// the group is larger) and one split of the keys; split lengths are multiples of kDecodeSplitQuantum keys. The
// tensor-core kernel fits 2 CTAs per SM (its 3-stage pipeline's shared memory), so 2 x SMs CTAs are one wave.
// Small grids (at most 1/8 of a wave of (sequence, KV head) units: batch <= 4 at 8 KV heads) get ONE wave of
// long splits; larger ones about two waves, as before. Measured on an H200 (bench/results/
// 2026-11-26-h200-decode-graphs.md, bench_attention_decode's sweep): batch 1, 32K, 8 KV heads: 32 splits of 1024
// keys (256 CTAs) 64% of streaming read vs 49% with 64 splits of 512 (two waves); 128K: 84% vs 79%; batch 8:
// two waves 87-88%, one wave 73-79%.
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

// The CTAs a plan aims for, over the whole grid: 0 = the default (2 CTAs per SM x 2 waves). Benchmarks set it to
// sweep the split sizes (bench_attention_decode); nothing else does.
inline int64_t& decode_split_target_ctas_override() {
  static int64_t ctas = 0;
  return ctas;
}

inline DecodeSplitPlan plan_decode_splits(int64_t n_seqs, int64_t n_q_heads, int64_t n_kv_heads, int64_t max_length,
                                          int device) {
  DecodeSplitPlan plan;
  const int64_t group = n_kv_heads > 0 ? n_q_heads / n_kv_heads : 1;
  plan.heads_per_cta = static_cast<int>(std::clamp<int64_t>(group, 1, kDecodeHeadsPerCta));
  plan.head_units = static_cast<int>((group + plan.heads_per_cta - 1) / plan.heads_per_cta);
  const int64_t sms = device_properties(device).multiprocessors;
  const int64_t units = std::max<int64_t>(1, n_seqs * n_kv_heads * plan.head_units);
  const int64_t wave = sms * 2;  // CTAs resident at once
  const int64_t override_ctas = decode_split_target_ctas_override();
  const bool one_wave = override_ctas == 0 && units * 8 <= wave;
  const int64_t target_ctas = override_ctas > 0 ? override_ctas : one_wave ? wave : 2 * wave;
  const int64_t max_len = std::max<int64_t>(1, max_length);
  const int64_t max_splits = (max_len + kDecodeSplitQuantum - 1) / kDecodeSplitQuantum;
  // One wave: at most `wave` CTAs (floor); else at least the target (ceil).
  const int64_t want =
      std::clamp<int64_t>(one_wave ? target_ctas / units : (target_ctas + units - 1) / units, 1, max_splits);
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
