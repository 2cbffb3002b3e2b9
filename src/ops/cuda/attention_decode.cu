// attention_decode_batch (and attention_decode, its one-sequence case): split-KV flash decoding.
//
// Kernel 1, one CTA per (split, KV head [x head unit], sequence): the CTA's query rows are the GQA group of the
// KV head (up to 16 heads, zero-padded to the m16 of mma.sync), so every K/V element of the split is read from
// memory once per step for the whole group. K/V tiles of kBlockN = 64 keys stream through a kStages-deep
// cp.async pipeline (16-byte copies, rows past the sequence zero-filled); each of the 4 warps takes 16 keys of
// a tile: S = Q K^T and O += P V on tensor cores (bf16 in, f32 accumulators) with its own online softmax; the
// warps merge through shared memory and the CTA writes the split's normalized output and its log-sum-exp.
// Kernel 2 (combine), one CTA per (query head, sequence): the log-sum-exp-weighted mean of the splits.
//
// The splits are sized from max_length so that the grid fills the GPU about twice at batch 1 (8 KV heads at
// 32K: 64 splits of 512 keys; decode_splits.h, shared with the generic kernel); CTAs whose split starts past
// their sequence's length exit at once. Only bf16 K/V at head_dim 64 or 128 run here: the entry points hand
// anything else to the generic kernels (attention_generic.cu).
#include <algorithm>
#include <cmath>
#include <utility>

#include "ops/cuda/common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/decode_call.cuh"
#include "ops/cuda/decode_splits.h"

namespace skv::cuda {
namespace {

constexpr int kBlockN = 64;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kStages = 3;
static_assert(kDecodeSplitQuantum % kBlockN == 0, "splits must be whole tiles");

// The sequences, plan and partials (decode_call.cuh), the bf16 cache and the softmax scale in log2 units.
struct DecodeParams : DecodeSequences {
  const __nv_bfloat16* k;  // [n_slots, capacity, n_kv_heads, D]
  const __nv_bfloat16* v;  // [n_slots, capacity, n_kv_heads, D]
  float scale_log2;        // partial_lse is in this log2 domain
};

template <int D>
constexpr size_t decode_smem_bytes() {
  const size_t pipeline = static_cast<size_t>(kStages) * 2 * kBlockN * (D + 8) * 2;
  const size_t merge = static_cast<size_t>(kWarps) * 16 * (D + 2) * 4;
  return std::max(pipeline, merge);
}

template <int D>
__global__ void __launch_bounds__(kThreads) decode_split_kernel(const DecodeParams p) {
  pdl_enter();  // q, the cache (its newest row) and the lengths come from the kernels and copies before
  constexpr int kStride = D + 8;
  constexpr int kChunks = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* sK = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [kStages][kBlockN][kStride]
  __nv_bfloat16* sV = sK + kStages * kBlockN * kStride;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, tig = lane & 3;
  const int split = blockIdx.x, seq = blockIdx.z;
  const int kvh = blockIdx.y / p.head_units, hunit = blockIdx.y % p.head_units;
  const int head0 = kvh * p.group + hunit * p.hpc;                 // first query head of the CTA
  const int n_rows = min(p.hpc, p.group - hunit * p.hpc);          // query heads of the CTA
  const int64_t part_row0 = static_cast<int64_t>(seq) * p.n_q_heads + head0;  // (seq, head0) row of partials

  int slot, len;
  const bool valid = sequence_valid(p, seq, slot, len);
  const int start = split * p.split_len;
  const int end = valid ? min(len, start + p.split_len) : 0;
  if (start >= end) {  // nothing to attend in this split (the combine skips -inf)
    if (tid < n_rows) p.partial_lse[(part_row0 + tid) * p.n_splits + split] = -INFINITY;
    return;
  }

  const int64_t key_stride = static_cast<int64_t>(p.n_kv_heads) * D;
  const __nv_bfloat16* kbase = p.k + static_cast<int64_t>(slot) * p.capacity * key_stride + static_cast<int64_t>(kvh) * D;
  const __nv_bfloat16* vbase = p.v + static_cast<int64_t>(slot) * p.capacity * key_stride + static_cast<int64_t>(kvh) * D;
  const int n_tiles = (end - start + kBlockN - 1) / kBlockN;

  auto load_tile = [&](int t, int stage) {
    __nv_bfloat16* dk = sK + stage * kBlockN * kStride;
    __nv_bfloat16* dv = sV + stage * kBlockN * kStride;
#pragma unroll
    for (int i = tid; i < kBlockN * kChunks; i += kThreads) {
      const int r = i / kChunks, c = i % kChunks;
      const int key = start + t * kBlockN + r;
      const bool in = key < end;
      const int64_t off = (in ? key * key_stride : 0) + c * 8;
      cp_async16(dk + r * kStride + c * 8, kbase + off, in ? 16 : 0);
      cp_async16(dv + r * kStride + c * 8, vbase + off, in ? 16 : 0);
    }
  };

  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[dt][e] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < n_tiles) load_tile(t, t);
    cp_async_commit();
  }
  // Q rows (the group's heads) as bf16 A fragments, straight from global memory, while the first tiles load.
  uint32_t qa[D / 16][4];
  {
    const float* q0 = p.q + part_row0 * D;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = g + 8 * (e & 1), c = kk * 16 + tig * 2 + 8 * (e >> 1);
        float2 v = make_float2(0.0f, 0.0f);
        if (r < n_rows) v = *reinterpret_cast<const float2*>(q0 + static_cast<int64_t>(r) * D + c);
        qa[kk][e] = pack_bf16x2(v.x, v.y);
      }
    }
  }

  for (int t = 0; t < n_tiles; ++t) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile t visible to all; every warp is done with tile t - 1
    {
      const int next = t + kStages - 1;
      if (next < n_tiles) load_tile(next, next % kStages);
      cp_async_commit();
    }
    const __nv_bfloat16* tK = sK + (t % kStages) * kBlockN * kStride + warp * 16 * kStride;
    const __nv_bfloat16* tV = sV + (t % kStages) * kBlockN * kStride + warp * 16 * kStride;
    const int key0 = start + t * kBlockN + warp * 16;  // this warp's 16 keys
    if (key0 < end) {
      float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4(b0, b1, b2, b3, tK + ((lane & 7) + (lane >> 4) * 8) * kStride + kk * 16 + ((lane >> 3) & 1) * 8);
        mma_bf16_16816(s[0], qa[kk], b0, b1);
        mma_bf16_16816(s[1], qa[kk], b2, b3);
      }
      if (key0 + 16 > end) {
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (key0 + nt * 8 + tig * 2 + (e & 1) >= end) s[nt][e] = -INFINITY;
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float mx = fmaxf(fmaxf(s[0][2 * h], s[0][2 * h + 1]), fmaxf(s[1][2 * h], s[1][2 * h + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m[h], mx * p.scale_log2);
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        const float alpha = fast_exp2(m[h] - m_use);
        m[h] = m_new;
        float rowsum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
          const float p0 = fast_exp2(fmaf(s[nt][2 * h], p.scale_log2, -m_use));
          const float p1 = fast_exp2(fmaf(s[nt][2 * h + 1], p.scale_log2, -m_use));
          s[nt][2 * h] = p0;
          s[nt][2 * h + 1] = p1;
          rowsum += p0 + p1;
        }
        l[h] = l[h] * alpha + rowsum;
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) {
          o[dt][2 * h] *= alpha;
          o[dt][2 * h + 1] *= alpha;
        }
      }
      uint32_t pa[4];
      pa[0] = pack_bf16x2(s[0][0], s[0][1]);
      pa[1] = pack_bf16x2(s[0][2], s[0][3]);
      pa[2] = pack_bf16x2(s[1][0], s[1][1]);
      pa[3] = pack_bf16x2(s[1][2], s[1][3]);
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4_trans(b0, b1, b2, b3, tV + ((lane & 7) + ((lane >> 3) & 1) * 8) * kStride + dp * 16 + (lane >> 4) * 8);
        mma_bf16_16816(o[2 * dp], pa, b0, b1);
        mma_bf16_16816(o[2 * dp + 1], pa, b2, b3);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the pipeline buffers become the merge area

  // ---- merge the warps: sm_o [kWarps][16][D], then m and l [kWarps][16] each.
  float* sm_o = reinterpret_cast<float*>(smem_raw);
  float* sm_m = sm_o + kWarps * 16 * D;
  float* sm_l = sm_m + kWarps * 16;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float sum = l[h];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int r = g + 8 * h;
    if (tig == 0) {
      sm_m[warp * 16 + r] = m[h];
      sm_l[warp * 16 + r] = sum;
    }
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
      *reinterpret_cast<float2*>(sm_o + (warp * 16 + r) * D + dt * 8 + tig * 2) = make_float2(o[dt][2 * h], o[dt][2 * h + 1]);
  }
  __syncthreads();
  for (int i = tid; i < n_rows * D; i += kThreads) {
    const int r = i / D, d = i % D;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm_m[w * 16 + r]);
    float L = 0.0f, O = 0.0f;
    if (mx != -INFINITY) {
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float f = fast_exp2(sm_m[w * 16 + r] - mx);
        L += sm_l[w * 16 + r] * f;
        O += sm_o[(w * 16 + r) * D + d] * f;
      }
    }
    const int64_t prow = (part_row0 + r) * p.n_splits + split;
    p.partial_o[prow * D + d] = L > 0.0f ? O / L : 0.0f;
    if (d == 0) p.partial_lse[prow] = L > 0.0f ? mx + log2f(L) : -INFINITY;
  }
}

// One CTA of D threads per (query head, sequence). It moves a few kilobytes from L2, so its time is round trips:
// each round issues all its loads at once -- a warp reads 32 splits' log-sum-exps one per lane and reduces
// their max and weights with shuffles, then each thread reads its column of those 32 splits' outputs in one
// unrolled burst (two rounds at up to 32 splits, where a loop over the splits waited for ~16).
template <int D>
__global__ void __launch_bounds__(D) decode_combine_kernel(const DecodeParams p) {
  pdl_enter();
  const int head = blockIdx.x, seq = blockIdx.y, d = threadIdx.x, lane = d & 31;
  const int64_t row = static_cast<int64_t>(seq) * p.n_q_heads + head;
  float* out = p.out + row * D;
  int slot, len;
  // A length past the splits (max_length was too small) would silently drop keys: NaN instead.
  if (!sequence_valid(p, seq, slot, len) || static_cast<int64_t>(len) > static_cast<int64_t>(p.n_splits) * p.split_len) {
    out[d] = __int_as_float(0x7fc00000);
    return;
  }
  const float* lse = p.partial_lse + row * p.n_splits;
  const float* po = p.partial_o + row * p.n_splits * D + d;  // [split] of this thread's column, stride D
  // Splits from `used` on start past the sequence: their outputs were never written (only lse = -inf).
  const int used = min(p.n_splits, (len + p.split_len - 1) / p.split_len);
  float mx = -INFINITY;
  for (int s = lane; s < used; s += 32) mx = fmaxf(mx, lse[s]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float W = 0.0f, acc = 0.0f;
  if (mx != -INFINITY) {
    for (int s0 = 0; s0 < used; s0 += 32) {
      const float ls = s0 + lane < used ? lse[s0 + lane] : -INFINITY;
      const float w = ls == -INFINITY ? 0.0f : fast_exp2(ls - mx);  // the weight of split s0 + lane
      float v[32];
#pragma unroll
      for (int j = 0; j < 32; ++j) v[j] = s0 + j < used ? po[static_cast<int64_t>(s0 + j) * D] : 0.0f;
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        const float wj = __shfl_sync(0xffffffffu, w, j);
        W += wj;
        acc += wj * v[j];
      }
    }
  }
  out[d] = W > 0.0f ? acc / W : __int_as_float(0x7fc00000);
}

void run_decode(const DecodeCall& c, cudaStream_t stream) {
  DecodeParams p{};
  static_cast<DecodeSequences&>(p) = c.seqs;
  p.k = static_cast<const __nv_bfloat16*>(c.k);
  p.v = static_cast<const __nv_bfloat16*>(c.v);
  p.scale_log2 = c.scale * 1.4426950408889634f;
  if (c.head_dim == 64) {
    constexpr size_t smem = decode_smem_bytes<64>();
    SKV_CUDA_CHECK(cudaFuncSetAttribute(decode_split_kernel<64>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    launch_after_previous(decode_split_kernel<64>, c.split_grid, kThreads, smem, stream, p);
    launch_after_previous(decode_combine_kernel<64>, c.combine_grid, 64, 0, stream, p);
  } else {
    SKV_ASSERT(c.head_dim == 128);
    constexpr size_t smem = decode_smem_bytes<128>();
    SKV_CUDA_CHECK(cudaFuncSetAttribute(decode_split_kernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    launch_after_previous(decode_split_kernel<128>, c.split_grid, kThreads, smem, stream, p);
    launch_after_previous(decode_combine_kernel<128>, c.combine_grid, 128, 0, stream, p);
  }
}

}  // namespace

int64_t attention_decode_batch_workspace_floats(int64_t n_seqs, int64_t n_q_heads, int64_t n_kv_heads,
                                                int64_t head_dim, int64_t max_length, int device) {
  // The same plan and partials layout for the tensor-core and the generic kernels (decode_splits.h).
  if (n_kv_heads <= 0) return 0;
  return decode_partials_floats(n_seqs, n_q_heads, head_dim,
                                plan_decode_splits(n_seqs, n_q_heads, n_kv_heads, max_length, device));
}

void attention_decode_batch(const AttentionDecodeBatchArgs& a) {
  if (!tensor_core_attention(a.k_cache.dtype, a.q.dim(2))) return attention_decode_batch_generic(a);
  for (auto [name, t] : {std::pair{"q", &a.q}, {"k_cache", &a.k_cache}, {"v_cache", &a.v_cache}, {"out", &a.out},
                         {"workspace", &a.workspace}})
    require_aligned("attention_decode_batch", name, *t, 16);
  OpContext ctx(a.out);
  run_decode(make_decode_call(a), ctx.stream);
}

void attention_decode(const AttentionDecodeArgs& a) {
  if (!tensor_core_attention(a.k.dtype, a.q.dim(1))) return attention_decode_generic(a);
  for (auto [name, t] : {std::pair{"q", &a.q}, {"k", &a.k}, {"v", &a.v}, {"out", &a.out}})
    require_aligned("attention_decode", name, *t, 16);
  OpContext ctx(a.out);
  run_decode(make_decode_call(a), ctx.stream);
}

}  // namespace skv::cuda
