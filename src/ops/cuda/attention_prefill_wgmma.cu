// attention_prefill, variants 5 and 6: the causal FlashAttention-2 scheme on Hopper's warpgroup MMA (wgmma, sm_90a).
//
// Same CTA work as the mma.sync variants (attention_prefill.cu): kPrefillBlockM = 128 query rows of one KV head,
// the rows (token, query head) pairs of the heads sharing it, so one K/V tile in shared memory serves the whole
// GQA group. Two warpgroups (8 warps, 256 threads); warpgroup w owns rows 64w..64w+63. Per K/V tile of
// kBlockN = 128 keys, each warpgroup:
//   S[64 x 128] = Q K^T   wgmma m64n128k16, Q and K from shared memory (K-major), D / 16 steps;
//   masks the causal diagonal, updates the online softmax in f32 (exp2, scale folded in), rescales O;
//   O[64 x D] += P V      wgmma m64nDk16, P from registers (bf16, S's accumulator fragment repacked in place),
//                          V from shared memory N-major (no transpose copy), kBlockN / 16 steps.
// Tensor-core work is issued asynchronously and waited per batch. K/V tiles land in the 128-byte swizzled layout
// wgmma reads (wgmma.cuh), zero-filled past kv_len; Q is converted to bf16 on load. CTAs are issued heaviest
// first. Two kernels (the variants bench_attention_prefill times), 1 CTA per SM, 225 KB of shared memory at
// D = 128 (Q, 3 stages of K and V):
//   variant 5: K/V by cp.async from every thread, a warpgroup's softmax of tile j overlapping its own P V of
//              tile j - 1;
//   variant 6: the same math fed by a TMA producer warpgroup through mbarriers (the default at D = 128).
// (A variant 4, 2 stages with S, softmax and P V in sequence, measured 44-46% of dense bf16 against 49% for 5
// and 77% for 6 on an H200 and was removed: bench/results/2026-11-26-h200-prefill-wgmma.md.)
#include <cstdint>

#include "ops/cuda/attention_prefill_params.cuh"
#include "ops/cuda/common.cuh"
#include "ops/cuda/tma.cuh"
#include "ops/cuda/wgmma.cuh"

namespace skv::cuda {
namespace {

constexpr int kBlockM = kPrefillBlockM;
constexpr int kBlockN = 128;
constexpr int kThreads = 256;  // 2 warpgroups x 64 rows

template <int D>
constexpr uint32_t q_tile_bytes() { return kBlockM * D * 2; }
template <int D>
constexpr uint32_t kv_tile_bytes() { return kBlockN * D * 2; }

// Q tile -> shared memory (bf16, swizzled); rows that are not stored are zeros.
template <int D, bool kQF32>
__device__ __forceinline__ void load_q_tile(const PrefillParams& p, const PrefillCta& cta, unsigned char* gQ) {
  constexpr int kChunks = D / 8;
  for (int i = threadIdx.x; i < kBlockM * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    *reinterpret_cast<uint4*>(gQ + sw128_offset(r, c, kBlockM)) = cta.q_chunk<D, kQF32>(p, r, c);
  }
}

// Rows [j * kBlockN, +kBlockN) of K or V (this CTA's KV head) -> a swizzled tile, by cp.async (zeros past kv_len).
template <int D>
__device__ __forceinline__ void load_kv_tile(const PrefillParams& p, const __nv_bfloat16* src, int kvh, int j,
                                             unsigned char* dst) {
  constexpr int kChunks = D / 8;
  const int64_t kv_row_stride = static_cast<int64_t>(p.n_kv_heads) * D;
  for (int i = threadIdx.x; i < kBlockN * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const int key = j * kBlockN + r;
    const bool in = key < p.kv_len;
    const int64_t off = (in ? key * kv_row_stride : 0) + static_cast<int64_t>(kvh) * D + c * 8;
    cp_async16(dst + sw128_offset(r, c, kBlockN), src + off, in ? 16 : 0);
  }
}

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
// S[64 x 128] = Q K^T for the warpgroup `wg` (issued, not waited).
template <int D>
__device__ __forceinline__ void issue_qk(float (&s)[kBlockN / 8][4], uint32_t sQ, uint32_t sK_tile, int wg) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const uint32_t a_at = sQ + (kk >> 2) * (kBlockM * 128) + wg * (64 * 128) + (kk & 3) * 32;
    const uint32_t b_at = sK_tile + (kk >> 2) * (kBlockN * 128) + (kk & 3) * 32;
    wgmma_m64n128k16_ss(s, sw128_desc(a_at, 16, 1024), sw128_desc(b_at, 16, 1024), kk > 0);
  }
}

// O[64 x D] += P V (issued, not waited): P as register A fragments, the V tile N-major.
template <int D>
__device__ __forceinline__ void issue_pv(float (&o)[D / 8][4], const uint32_t (&a)[kBlockN / 16][4], uint32_t sV_tile) {
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    const uint64_t b = sw128_desc(sV_tile + kk * (16 * 128), kBlockN * 128, 1024);
    if constexpr (D == 128) wgmma_m64n128k16_rs_bt(o, a[kk], b, 1);
    else wgmma_m64n64k16_rs_bt(o, a[kk], b, 1);
  }
}

#endif  // sm_90a

// Masks tile j (only where it crosses some row's diagonal; keys past kv_len are past every valid row's
// position, so this also masks the zero-filled tail), then the online softmax step in the scaled log2 domain:
// s becomes P, m and the per-thread partial l are updated, alpha[h] is the factor O's row h must be scaled by.
__device__ __forceinline__ void softmax_step(float (&s)[kBlockN / 8][4], float (&m)[2], float (&l)[2],
                                             float (&alpha)[2], const int (&pos)[2], int j, int min_pos,
                                             float scale_log2) {
  const int tig = threadIdx.x & 3;
  if ((j + 1) * kBlockN - 1 > min_pos) {
#pragma unroll
    for (int nt = 0; nt < kBlockN / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = j * kBlockN + nt * 8 + tig * 2 + (e & 1);
        if (key > pos[e >> 1]) s[nt][e] = -INFINITY;
      }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float mx = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kBlockN / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * h], s[nt][2 * h + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m[h], mx * scale_log2);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // a row with nothing visible yet
    alpha[h] = fast_exp2(m[h] - m_use);
    m[h] = m_new;
    float rowsum = 0.0f;
#pragma unroll
    for (int nt = 0; nt < kBlockN / 8; ++nt) {
      const float p0 = fast_exp2(fmaf(s[nt][2 * h], scale_log2, -m_use));
      const float p1 = fast_exp2(fmaf(s[nt][2 * h + 1], scale_log2, -m_use));
      s[nt][2 * h] = p0;
      s[nt][2 * h + 1] = p1;
      rowsum += p0 + p1;
    }
    l[h] = l[h] * alpha[h] + rowsum;
  }
}

template <int D>
__device__ __forceinline__ void rescale(float (&o)[D / 8][4], const float (&alpha)[2]) {
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[dt][e] *= alpha[e >> 1];
}

// P (f32 accumulator fragment) -> bf16 A fragments, one per 16-key step.
__device__ __forceinline__ void pack_p(const float (&s)[kBlockN / 8][4], uint32_t (&a)[kBlockN / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    a[kk][0] = pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
    a[kk][1] = pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
    a[kk][2] = pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    a[kk][3] = pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
  }
}

// O / l -> out (f32), valid rows only.
template <int D>
__device__ __forceinline__ void store_rows(const PrefillParams& p, const PrefillCta& cta, const float (&o)[D / 8][4],
                                           const float (&l)[2]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tig = lane & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float sum = l[h];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    const int r = warp * 16 + g + 8 * h;
    if (!cta.valid(p, r)) continue;
    float* dst = p.out + cta.offset<D>(p, r);
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
      *reinterpret_cast<float2*>(dst + dt * 8 + tig * 2) = make_float2(o[dt][2 * h] * inv, o[dt][2 * h + 1] * inv);
  }
}

// Positions of this thread's two rows (g and g + 8 of its warp's 16).
__device__ __forceinline__ void row_positions(const PrefillParams& p, const PrefillCta& cta, int (&pos)[2]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int h = 0; h < 2; ++h) pos[h] = cta.position(p, warp * 16 + (lane >> 2) + 8 * h);
}

// Shared memory of a kernel with kStageCount K and V stages: Q, the K ring, the V ring, 1024-byte aligned (the
// swizzled atoms), then kStageCount "full" and kStageCount "empty" mbarriers (variant 6). Generic pointers for stores
// and copies, shared-window addresses for descriptors.
template <int D, int kStageCount>
struct WgmmaSmem {
  static constexpr uint32_t kTile = kv_tile_bytes<D>();
  static constexpr size_t kBytes = q_tile_bytes<D>() + 2 * kStageCount * kTile + 2 * kStageCount * 8 + 1024;
  unsigned char *gQ, *gK, *gV;  // [D / 64 atoms][128 rows][128 B]; [kStageCount][D / 64 atoms][128 keys][128 B] x 2
  uint32_t sQ, sK, sV;
  uint64_t *full, *empty;

  __device__ explicit WgmmaSmem(unsigned char* raw_ptr) {
    const uint32_t raw = smem_addr(raw_ptr);
    const uint32_t pad = (1024u - (raw & 1023u)) & 1023u;
    gQ = raw_ptr + pad;
    gK = gQ + q_tile_bytes<D>();
    gV = gK + kStageCount * kTile;
    sQ = raw + pad;
    sK = sQ + q_tile_bytes<D>();
    sV = sK + kStageCount * kTile;
    full = reinterpret_cast<uint64_t*>(gV + kStageCount * kTile);
    empty = full + kStageCount;
  }
  __device__ unsigned char* k_stage(int st) const { return gK + st * kTile; }
  __device__ unsigned char* v_stage(int st) const { return gV + st * kTile; }
  __device__ uint32_t k_tile(int st) const { return sK + st * kTile; }
  __device__ uint32_t v_tile(int st) const { return sV + st * kTile; }
};

template <int D>
__device__ __forceinline__ void zero(float (&o)[D / 8][4]) {
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[dt][e] = 0.0f;
}

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
// One tile of variants 5 and 6 once its K and V are in shared memory: S_j = Q K_j^T and O += P_{j-1} V_{j-1}
// issued, S_j waited, softmax of S_j while P_{j-1} V_{j-1} runs, then that waited, O rescaled and P_j packed
// into a_prev (only now: the wgmma in flight read those registers).
template <int D>
__device__ __forceinline__ void overlapped_tile(float (&o)[D / 8][4], uint32_t (&a_prev)[kBlockN / 16][4],
                                                float (&m)[2], float (&l)[2], const int (&pos)[2], int j,
                                                int min_pos, float scale_log2, uint32_t sQ, uint32_t k_tile,
                                                uint32_t v_prev_tile) {
  const int wg = threadIdx.x >> 7;
  float s[kBlockN / 8][4];
  wgmma_fence();
  issue_qk<D>(s, sQ, k_tile, wg);
  wgmma_commit();
  if (j > 0) {
    issue_pv<D>(o, a_prev, v_prev_tile);
    wgmma_commit();
    wgmma_wait<1>();  // S_j (groups complete in order)
  } else {
    wgmma_wait<0>();
  }
  wgmma_fence_registers(s);
  float alpha[2];
  softmax_step(s, m, l, alpha, pos, j, min_pos, scale_log2);
  wgmma_wait<0>();  // P_{j-1} V_{j-1}
  wgmma_fence_registers(o);
  wgmma_fence_registers(a_prev);
  rescale<D>(o, alpha);
  pack_p(s, a_prev);
}

// After the last tile: O += P_{n-1} V_{n-1}, waited.
template <int D>
__device__ __forceinline__ void last_pv(float (&o)[D / 8][4], const uint32_t (&a_prev)[kBlockN / 16][4],
                                        uint32_t v_tile) {
  wgmma_fence();
  issue_pv<D>(o, a_prev, v_tile);
  wgmma_commit();
  wgmma_wait<0>();
  wgmma_fence_registers(o);
}
#endif  // sm_90a

// Variant 5: three K and three V stages by cp.async from every thread, one CTA barrier per tile, and
// FlashAttention-3's intra-warpgroup overlap (overlapped_tile): at tile j a warpgroup runs tile j's softmax (in
// f32) while the tensor cores still work on P_{j-1} V_{j-1}. K_{j+2} and V_{j+1} are loaded during tile j (K two
// tiles ahead, V one: V_{j-1} is still being read). P_j is rounded to bf16 into the A registers only after
// P_{j-1} V_{j-1} is done: ptxas treats a wgmma's register operands as free once it is issued (the PTX ISA leaves
// them undefined until the wait), and packing P_j earlier gave wrong results from the third tile on (the SASS
// wrote the in-flight A registers).
constexpr int kStages = 3;

template <int D, bool kQF32>
__global__ void __launch_bounds__(kThreads, 1) prefill_wgmma_overlap_kernel(const PrefillParams p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(D == 64 || D == 128, "head_dim 64 or 128");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const WgmmaSmem<D, kStages> sm(smem_raw);
  const PrefillCta cta(p);
  const int n = cta.tiles(kBlockN);
  load_q_tile<D, kQF32>(p, cta, sm.gQ);
  int pos[2];
  row_positions(p, cta, pos);
  float o[D / 8][4];  // O[64 x D] accumulator fragment of the warpgroup
  zero<D>(o);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  uint32_t a_prev[kBlockN / 16][4];  // P_{j-1}, read by the wgmma in flight during tile j

  // Groups of cp.async: {K_0, V_0}, {K_1}, then per tile j {K_{j+2}, V_{j+1}}; at tile j everything up to
  // tile j - 2's group is needed (K_j, V_{j-1}): at most one group pending. The last P V needs them all.
  load_kv_tile<D>(p, p.k, cta.kvh, 0, sm.k_stage(0));
  load_kv_tile<D>(p, p.v, cta.kvh, 0, sm.v_stage(0));
  cp_async_commit();
  if (n > 1) load_kv_tile<D>(p, p.k, cta.kvh, 1, sm.k_stage(1));
  cp_async_commit();
  for (int j = 0; j < n; ++j) {
    cp_async_wait<1>();
    fence_proxy_async_shared();  // this thread's Q stores and K/V copies, before any wgmma reads them
    __syncthreads();             // everyone's copies landed; everyone finished tile j - 1 (its wgmma included)
    if (j + 2 < n) load_kv_tile<D>(p, p.k, cta.kvh, j + 2, sm.k_stage((j + 2) % kStages));  // K_{j-1}'s stage
    if (j + 1 < n) load_kv_tile<D>(p, p.v, cta.kvh, j + 1, sm.v_stage((j + 1) % kStages));  // V_{j-2}'s stage
    cp_async_commit();
    overlapped_tile<D>(o, a_prev, m, l, pos, j, cta.min_pos, p.scale_log2, sm.sQ, sm.k_tile(j % kStages),
                       sm.v_tile((j + kStages - 1) % kStages));
  }
  cp_async_wait<0>();  // V_{n-1} (tile n - 2's group)
  fence_proxy_async_shared();
  __syncthreads();
  if (n > 0) last_pv<D>(o, a_prev, sm.v_tile((n - 1) % kStages));
  store_rows<D>(p, cta, o, l);
#else
  // Built for another architecture than sm_90a (the build makes sm_90a code only, see CMakeLists.txt).
  if (threadIdx.x == 0 && blockIdx.x == 0) __trap();
#endif
}

// Variant 6: variant 5's math, warp-specialized. A third warpgroup is the producer: one of its threads issues
// the K and V tiles as TMA boxes (64 columns x 128 keys, the swizzled layout directly; zeros past kv_len) into
// a ring of 3 stages, each with a "full" transaction barrier (the consumers wait on it) and an "empty" barrier
// (each consumer warp arrives once the wgmma reading the stage is done; the producer waits on it before
// reusing it). No CTA-wide barrier in the loop: the two consumer warpgroups drift apart, one's softmax
// overlapping the other's wgmma, and no consumer thread spends issue slots on copies. The launch budget is
// 168 registers a thread (384 threads); the producer gives back to 24 and the consumers take 240.
constexpr int kTmaThreads = kThreads + 128;

template <int D, bool kQF32>
__global__ void __launch_bounds__(kTmaThreads, 1)
    prefill_wgmma_tma_kernel(const PrefillParams p, const __grid_constant__ CUtensorMap k_map,
                             const __grid_constant__ CUtensorMap v_map) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(D == 64 || D == 128, "head_dim 64 or 128");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const WgmmaSmem<D, kStages> sm(smem_raw);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const PrefillCta cta(p);
  const int n = cta.tiles(kBlockN);
  if (threadIdx.x == 0) {
    for (int st = 0; st < kStages; ++st) {
      mbarrier_init(&sm.full[st], 1);
      mbarrier_init(&sm.empty[st], kThreads / 32);
    }
    mbarrier_init_fence();
  }
  __syncthreads();

  if (warp >= kThreads / 32) {  // the producer warpgroup
    warpgroup_registers_decrease<24>();
    if (warp == kThreads / 32 && lane == 0) {
      for (int t = 0; t < n; ++t) {
        const int st = t % kStages;
        if (t >= kStages) mbarrier_wait(&sm.empty[st], static_cast<uint32_t>(t / kStages - 1) & 1u);
        mbarrier_arrive_expect_tx(&sm.full[st], 2 * sm.kTile);
#pragma unroll
        for (int atom = 0; atom < D / 64; ++atom) {
          const int x = cta.kvh * D + atom * 64;
          tma_load_2d(sm.k_stage(st) + atom * (kBlockN * 128), &k_map, x, t * kBlockN, &sm.full[st]);
          tma_load_2d(sm.v_stage(st) + atom * (kBlockN * 128), &v_map, x, t * kBlockN, &sm.full[st]);
        }
      }
    }
    return;
  }

  warpgroup_registers_increase<240>();
  load_q_tile<D, kQF32>(p, cta, sm.gQ);
  fence_proxy_async_shared();
  named_barrier_sync<1, kThreads>();  // the consumers' Q stores, before any wgmma reads Q
  int pos[2];
  row_positions(p, cta, pos);
  float o[D / 8][4];  // O[64 x D] accumulator fragment of the warpgroup
  zero<D>(o);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  uint32_t a_prev[kBlockN / 16][4];  // P_{j-1}, read by the wgmma in flight during tile j

  for (int j = 0; j < n; ++j) {
    const int st = j % kStages, prev = (j + kStages - 1) % kStages;
    mbarrier_wait(&sm.full[st], static_cast<uint32_t>(j / kStages) & 1u);
    overlapped_tile<D>(o, a_prev, m, l, pos, j, cta.min_pos, p.scale_log2, sm.sQ, sm.k_tile(st), sm.v_tile(prev));
    if (j > 0 && lane == 0) mbarrier_arrive(&sm.empty[prev]);  // tile j - 1's K and V are read
  }
  if (n > 0) last_pv<D>(o, a_prev, sm.v_tile((n - 1) % kStages));
  store_rows<D>(p, cta, o, l);
#else
  if (threadIdx.x == 0 && blockIdx.x == 0) __trap();
#endif
}

template <int D, bool kQF32>
void launch(const PrefillParams& p, int variant, unsigned blocks, cudaStream_t stream) {
  constexpr size_t smem = WgmmaSmem<D, kStages>::kBytes;
  if (variant == 6) {
    const int64_t row = static_cast<int64_t>(p.n_kv_heads) * D;
    const CUtensorMap k_map = make_bf16_tensor_map_sw128(p.k, p.kv_len, row, row, kBlockN, 64);
    const CUtensorMap v_map = make_bf16_tensor_map_sw128(p.v, p.kv_len, row, row, kBlockN, 64);
    auto kernel = prefill_wgmma_tma_kernel<D, kQF32>;
    SKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    kernel<<<blocks, kTmaThreads, smem, stream>>>(p, k_map, v_map);
  } else {
    auto kernel = prefill_wgmma_overlap_kernel<D, kQF32>;
    SKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    kernel<<<blocks, kThreads, smem, stream>>>(p);
  }
  SKV_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_prefill_wgmma(const PrefillParams& p, int head_dim, bool q_f32, int variant, unsigned blocks,
                          cudaStream_t stream) {
  SKV_ASSERT(variant == 5 || variant == 6);
  if (head_dim == 64) {
    if (q_f32) launch<64, true>(p, variant, blocks, stream);
    else launch<64, false>(p, variant, blocks, stream);
  } else {
    SKV_ASSERT(head_dim == 128);
    if (q_f32) launch<128, true>(p, variant, blocks, stream);
    else launch<128, false>(p, variant, blocks, stream);
  }
}

}  // namespace skv::cuda
