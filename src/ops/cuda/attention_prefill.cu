// attention_prefill: fused causal attention (FlashAttention-2 scheme) on tensor cores.
//
// A CTA owns kBlockM = 128 query rows of one KV head. GQA packing: the rows are (token, query head) pairs of the
// heads that share the KV head (row r = token r / hpc, head r % hpc, hpc = min(group, 128) heads per CTA), so
// each K/V tile loaded into shared memory serves the whole group: at Llama-3-8B's 4:1, 32 tokens x 4 heads.
// Warps split the rows (kMTiles m16 tiles each); per K/V tile of kBlockN = 64 keys a warp computes
// S = Q K^T with mma.sync m16n8k16 (bf16 in, f32 accumulators), masks (causal, only on tiles that cross the
// diagonal), updates the online softmax in f32 (exp2 with the scale folded in), and accumulates O += P V with P
// rounded to bf16 straight from the S registers. K/V tiles are double-buffered with cp.async (rows past kv_len
// are zero-filled); Q is converted to bf16 on load (f32 or bf16 input). Shared-memory rows are padded by 16
// bytes, so ldmatrix is free of bank conflicts. CTAs are issued heaviest first (the last query tiles).
// Only bf16 K/V at head_dim 64 or 128 run here: attention_prefill hands anything else to the generic kernel
// (attention_generic.cu).
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "ops/cuda/attention_prefill_params.cuh"
#include "ops/cuda/common.cuh"
#include "ops/cuda/cuda_ops.h"

namespace skv::cuda {
namespace {

constexpr int kBlockM = kPrefillBlockM;
constexpr int kBlockN = 64;

template <int D, int kMTiles>
constexpr int prefill_threads() { return kBlockM / (16 * kMTiles) * 32; }

template <int D>
constexpr size_t prefill_smem_bytes() { return static_cast<size_t>(kBlockM + 4 * kBlockN) * (D + 8) * 2; }

template <int D, int kMTiles, bool kQF32, int kMinBlocks>
__global__ void __launch_bounds__(prefill_threads<D, kMTiles>(), kMinBlocks) prefill_kernel(const PrefillParams p) {
  constexpr int kThreads = prefill_threads<D, kMTiles>();
  constexpr int kStride = D + 8;  // padded smem row, in bf16
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* sQ = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* sK = sQ + kBlockM * kStride;       // [2][kBlockN][kStride]
  __nv_bfloat16* sV = sK + 2 * kBlockN * kStride;   // [2][kBlockN][kStride]

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, tig = lane & 3;
  const PrefillCta cta(p);
  const int kvh = cta.kvh, min_pos = cta.min_pos, n_tiles = cta.tiles(kBlockN);

  // ---- Q tile -> smem (bf16)
  for (int i = tid; i < kBlockM * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    *reinterpret_cast<uint4*>(sQ + r * kStride + c * 8) = cta.q_chunk<D, kQF32>(p, r, c);
  }
  const int64_t kv_row_stride = static_cast<int64_t>(p.n_kv_heads) * D;

  auto load_kv = [&](int j, int stage) {
    __nv_bfloat16* dk = sK + stage * kBlockN * kStride;
    __nv_bfloat16* dv = sV + stage * kBlockN * kStride;
    for (int i = tid; i < kBlockN * kChunks; i += kThreads) {
      const int r = i / kChunks, c = i % kChunks;
      const int key = j * kBlockN + r;
      const bool in = key < p.kv_len;
      const int64_t off = (in ? key * kv_row_stride : 0) + static_cast<int64_t>(kvh) * D + c * 8;
      cp_async16(dk + r * kStride + c * 8, p.k + off, in ? 16 : 0);
      cp_async16(dv + r * kStride + c * 8, p.v + off, in ? 16 : 0);
    }
  };

  // Positions of the two rows each thread holds per m-tile (rows g and g + 8 of the tile).
  int pos[kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) pos[mt][h] = cta.position(p, (warp * kMTiles + mt) * 16 + g + 8 * h);

  float o[kMTiles][D / 8][4];
  float m[kMTiles][2], l[kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][dt][e] = 0.0f;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.0f;
  }

  load_kv(0, 0);
  cp_async_commit();
  for (int j = 0; j < n_tiles; ++j) {
    const int stage = j & 1;
    if (j + 1 < n_tiles) load_kv(j + 1, stage ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const __nv_bfloat16* tK = sK + stage * kBlockN * kStride;
    const __nv_bfloat16* tV = sV + stage * kBlockN * kStride;

    // S = Q K^T
    float s[kMTiles][kBlockN / 8][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int nt = 0; nt < kBlockN / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
        ldmatrix_x4(a[mt][0], a[mt][1], a[mt][2], a[mt][3],
                    sQ + ((warp * kMTiles + mt) * 16 + (lane & 15)) * kStride + kk * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int np = 0; np < kBlockN / 16; ++np) {
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4(b0, b1, b2, b3, tK + (np * 16 + (lane & 7) + (lane >> 4) * 8) * kStride + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          mma_bf16_16816(s[mt][2 * np], a[mt], b0, b1);
          mma_bf16_16816(s[mt][2 * np + 1], a[mt], b2, b3);
        }
      }
    }

    // Causal mask, only where the tile crosses the diagonal of some row (keys past kv_len are past every
    // valid row's position, so this also masks the zero-filled tail).
    if ((j + 1) * kBlockN - 1 > min_pos) {
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < kBlockN / 8; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = j * kBlockN + nt * 8 + tig * 2 + (e & 1);
            if (key > pos[mt][e >> 1]) s[mt][nt][e] = -INFINITY;
          }
    }

    // Online softmax (scaled log2 domain); l stays a per-thread partial until the end.
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kBlockN / 8; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * h], s[mt][nt][2 * h + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m[mt][h], mx * p.scale_log2);
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // a row with nothing visible yet
        const float alpha = fast_exp2(m[mt][h] - m_use);
        m[mt][h] = m_new;
        float rowsum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < kBlockN / 8; ++nt) {
          const float p0 = fast_exp2(fmaf(s[mt][nt][2 * h], p.scale_log2, -m_use));
          const float p1 = fast_exp2(fmaf(s[mt][nt][2 * h + 1], p.scale_log2, -m_use));
          s[mt][nt][2 * h] = p0;
          s[mt][nt][2 * h + 1] = p1;
          rowsum += p0 + p1;
        }
        l[mt][h] = l[mt][h] * alpha + rowsum;
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) {
          o[mt][dt][2 * h] *= alpha;
          o[mt][dt][2 * h + 1] *= alpha;
        }
      }
    }

    // O += P V
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      uint32_t a[kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        a[mt][0] = pack_bf16x2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        a[mt][1] = pack_bf16x2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        a[mt][2] = pack_bf16x2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        a[mt][3] = pack_bf16x2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4_trans(b0, b1, b2, b3,
                          tV + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kStride + dp * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          mma_bf16_16816(o[mt][2 * dp], a[mt], b0, b1);
          mma_bf16_16816(o[mt][2 * dp + 1], a[mt], b2, b3);
        }
      }
    }
    __syncthreads();  // the stage is overwritten by the next iteration's prefetch
  }
  cp_async_wait<0>();

  // ---- normalize and store (f32)
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float sum = l[mt][h];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
      const int r = (warp * kMTiles + mt) * 16 + g + 8 * h;
      if (!cta.valid(p, r)) continue;
      float* dst = p.out + cta.offset<D>(p, r);
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt)
        *reinterpret_cast<float2*>(dst + dt * 8 + tig * 2) = make_float2(o[mt][dt][2 * h] * inv, o[mt][dt][2 * h + 1] * inv);
    }
  }
}

template <int D, int kMTiles, bool kQF32, int kMinBlocks>
void launch_prefill(const PrefillParams& p, unsigned blocks, cudaStream_t stream) {
  constexpr size_t smem = prefill_smem_bytes<D>();
  auto kernel = prefill_kernel<D, kMTiles, kQF32, kMinBlocks>;
  SKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  kernel<<<blocks, prefill_threads<D, kMTiles>(), smem, stream>>>(p);
  SKV_CUDA_CHECK_LAUNCH();
}

// variant 1: 8 warps x 16 rows; variant 2: 4 warps x 32 rows; variant 3: as 1, registers capped for 2 CTAs/SM.
template <int D, bool kQF32>
void launch_prefill_variant(const PrefillParams& p, unsigned blocks, int variant, cudaStream_t stream) {
  if (variant == 2)
    launch_prefill<D, 2, kQF32, 1>(p, blocks, stream);
  else if (variant == 3)
    launch_prefill<D, 1, kQF32, 2>(p, blocks, stream);
  else
    launch_prefill<D, 1, kQF32, 1>(p, blocks, stream);
}

}  // namespace

void attention_prefill_with_variant(const AttentionPrefillArgs& a, int variant) {
  if (variant != 1 && variant != 2 && variant != 3 && variant != 5 && variant != 6)
    throw Error(ErrorCode::kInvalidArgument, "attention_prefill_with_variant: no variant " + std::to_string(variant) +
                                                 " (1-3: mma.sync, 5-6: wgmma)");
  const int64_t n_q = a.q.dim(0), n_q_heads = a.q.dim(1), head_dim = a.q.dim(2);
  if (!tensor_core_attention(a.k.dtype, head_dim))
    throw Error(ErrorCode::kInvalidArgument, "attention_prefill_with_variant: the tensor-core kernel takes bf16 K/V "
                                             "at head_dim 64 or 128, got " + a.k.describe());
  const int64_t kv_len = a.k.dim(0), n_kv_heads = a.k.dim(1);
  if (n_q == 0 || n_q_heads == 0) return;
  SKV_ASSERT_MSG(kv_len <= INT32_MAX / 2 && n_q_heads * head_dim <= INT32_MAX, "attention_prefill: sizes");
  for (auto [name, t] : {std::pair{"q", &a.q}, {"k", &a.k}, {"v", &a.v}, {"out", &a.out}})
    require_aligned("attention_prefill", name, *t, 16);
  OpContext ctx(a.out);
  PrefillParams p{};
  p.q = a.q.data;
  p.k = a.k.ptr<const __nv_bfloat16>();
  p.v = a.v.ptr<const __nv_bfloat16>();
  p.out = a.out.ptr<float>();
  p.n_q = static_cast<int>(n_q);
  p.kv_len = static_cast<int>(kv_len);
  p.q_start = static_cast<int>(a.q_start);
  p.n_q_heads = static_cast<int>(n_q_heads);
  p.n_kv_heads = static_cast<int>(n_kv_heads);
  p.group = static_cast<int>(n_q_heads / n_kv_heads);
  p.hpc = std::min(p.group, kBlockM);
  p.tpc = kBlockM / p.hpc;
  p.head_units = (p.group + p.hpc - 1) / p.hpc;
  p.n_q_tiles = static_cast<int>((n_q + p.tpc - 1) / p.tpc);
  const float scale = a.scale != 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
  p.scale_log2 = scale * 1.4426950408889634f;
  const int64_t blocks = static_cast<int64_t>(p.n_q_tiles) * n_kv_heads * p.head_units;
  SKV_ASSERT_MSG(blocks <= INT32_MAX, "attention_prefill: grid too large");
  const bool qf32 = a.q.dtype == DType::kF32;
  const auto nb = static_cast<unsigned>(blocks);
  if (variant == 5 || variant == 6)
    return launch_prefill_wgmma(p, static_cast<int>(head_dim), qf32, variant, nb, ctx.stream);
  if (head_dim == 64) {
    if (qf32) launch_prefill_variant<64, true>(p, nb, variant, ctx.stream);
    else launch_prefill_variant<64, false>(p, nb, variant, ctx.stream);
  } else {
    SKV_ASSERT(head_dim == 128);
    if (qf32) launch_prefill_variant<128, true>(p, nb, variant, ctx.stream);
    else launch_prefill_variant<128, false>(p, nb, variant, ctx.stream);
  }
}

// head_dim 128: variant 6, the warp-specialized wgmma kernel (attention_prefill_wgmma.cu): on an H200 a causal
// 32K prefill at 77-79% of dense bf16, against 41% for variant 2, the mma.sync kernel before it
// (bench/results/2026-11-26-h200-prefill-wgmma.md). head_dim 64: variant 3, 8 warps x 16 rows capped at 128
// registers (no spills), 2 CTAs/SM. bench_attention_prefill times every variant; test_ops_cuda checks every
// variant against the CPU and float64. Anything else (f32 K/V, other head_dims): the generic kernel.
void attention_prefill(const AttentionPrefillArgs& a) {
  if (!tensor_core_attention(a.k.dtype, a.q.dim(2))) return attention_prefill_generic(a);
  attention_prefill_with_variant(a, a.q.dim(2) == 64 ? 3 : 6);
}

}  // namespace skv::cuda
