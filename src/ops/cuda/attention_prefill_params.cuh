// The causal prefill attention kernels' shared launch description (attention_prefill.cu: mma.sync variants;
// attention_prefill_wgmma.cu: the wgmma kernel). Both give a CTA kPrefillBlockM = 128 query rows of one KV head,
// packed as (token, query head) pairs of the heads that share it (see attention_prefill.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ops/cuda/common.cuh"

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

// A CTA's place in the grid and its rows: CTAs are issued heaviest first (the last query tiles); row r of the
// CTA is token t0 + r / hpc, query head hunit * hpc + r % hpc of the group of KV head kvh. Rows past the CTA's
// tokens, the prompt or the group are computed and dropped.
struct PrefillCta {
  int kvh, hunit, t0, t_end;
  int min_pos;  // the first row's position
  int n_keys;   // keys up to the last valid row's position

  __device__ explicit PrefillCta(const PrefillParams& p) {
    const int units = p.n_kv_heads * p.head_units;
    const int tile = p.n_q_tiles - 1 - static_cast<int>(blockIdx.x / units);
    const int unit = static_cast<int>(blockIdx.x % units);
    kvh = unit / p.head_units;
    hunit = unit % p.head_units;
    t0 = tile * p.tpc;
    t_end = min(t0 + p.tpc, p.n_q);
    min_pos = p.q_start + t0;
    n_keys = min(p.q_start + t_end, p.kv_len);
  }
  __device__ int tiles(int block_n) const { return (n_keys + block_n - 1) / block_n; }
  __device__ int token(const PrefillParams& p, int r) const { return t0 + r / p.hpc; }
  __device__ int head_in_group(const PrefillParams& p, int r) const { return hunit * p.hpc + r % p.hpc; }
  __device__ bool valid(const PrefillParams& p, int r) const {
    return r / p.hpc < p.tpc && token(p, r) < p.n_q && head_in_group(p, r) < p.group;
  }
  // Row r's position for the causal mask (rows past the CTA's tokens: the first row's).
  __device__ int position(const PrefillParams& p, int r) const {
    return r / p.hpc < p.tpc ? p.q_start + token(p, r) : min_pos;
  }
  // The row's offset in q / out, in elements (valid rows only).
  template <int D>
  __device__ int64_t offset(const PrefillParams& p, int r) const {
    return (static_cast<int64_t>(token(p, r)) * p.n_q_heads + kvh * p.group + head_in_group(p, r)) * D;
  }
  // Columns 8c..8c+7 of row r's query as bf16 (q f32 is rounded), zeros for a row that is not stored.
  template <int D, bool kQF32>
  __device__ uint4 q_chunk(const PrefillParams& p, int r, int c) const {
    if (!valid(p, r)) return make_uint4(0, 0, 0, 0);
    const int64_t off = offset<D>(p, r) + c * 8;
    if constexpr (kQF32) {
      const float4 a = *reinterpret_cast<const float4*>(static_cast<const float*>(p.q) + off);
      const float4 b = *reinterpret_cast<const float4*>(static_cast<const float*>(p.q) + off + 4);
      return make_uint4(pack_bf16x2(a.x, a.y), pack_bf16x2(a.z, a.w), pack_bf16x2(b.x, b.y), pack_bf16x2(b.z, b.w));
    } else {
      return *reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(p.q) + off);
    }
  }
};

// The wgmma kernels (head_dim 64 or 128, sm_90a; attention_prefill_wgmma.cu), variant 5 or 6, `blocks` CTAs in
// the order of the mma.sync kernels' grid.
void launch_prefill_wgmma(const PrefillParams& p, int head_dim, bool q_f32, int variant, unsigned blocks,
                          cudaStream_t stream);

}  // namespace skv::cuda
