// The causal prefill attention kernels' shared launch description (attention_prefill.cu: mma.sync variants;
// attention_prefill_wgmma.cu: the wgmma kernel). Both give a CTA kPrefillBlockM = 128 query rows of one KV head,
// packed as (token, query head) pairs of the heads that share it (see attention_prefill.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace skv::cuda {

constexpr int kPrefillBlockM = 128;

struct PrefillParams {
  const void* q;             // [n_q][n_q_heads][D] f32 or bf16
  const __nv_bfloat16* k;    // [kv_len][n_kv_heads][D]
  const __nv_bfloat16* v;    // [kv_len][n_kv_heads][D]
  float* out;                // [n_q][n_q_heads][D]
  int n_q, kv_len, q_start;
  int n_q_heads, n_kv_heads, group;
  int hpc, tpc, head_units;  // heads per CTA, tokens per CTA, CTAs per KV head (ceil(group / hpc))
  int n_q_tiles;
  float scale_log2;
};

// The wgmma kernels (head_dim 64 or 128, sm_90a; attention_prefill_wgmma.cu), variant 4, 5 or 6, `blocks` CTAs
// in the order of the mma.sync kernels' grid.
void launch_prefill_wgmma(const PrefillParams& p, int head_dim, bool q_f32, int variant, unsigned blocks,
                          cudaStream_t stream);

}  // namespace skv::cuda
