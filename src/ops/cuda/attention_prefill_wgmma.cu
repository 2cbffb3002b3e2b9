// attention_prefill, variants 4-6: the causal FlashAttention-2 scheme on Hopper's warpgroup MMA (wgmma, sm_90a).
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
// first. Three kernels (the variants bench_attention_prefill times), 1 CTA per SM:
//   variant 4: K/V by cp.async from every thread, 2 stages, S -> softmax -> P V in sequence per warpgroup (the
//              other warpgroup's wgmma overlaps this one's softmax); 160 KB of shared memory at D = 128;
//   variant 5: 3 stages, and a warpgroup's softmax of tile j overlaps its own P V of tile j - 1; 225 KB;
//   variant 6: variant 5's math fed by a TMA producer warpgroup through mbarriers (the default at D = 128).
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
// + 1 KB: the dynamic shared memory base is aligned up to the 1024 bytes the swizzled atoms need.
template <int D, int kStages>
constexpr size_t wgmma_smem_bytes() { return q_tile_bytes<D>() + 2 * kStages * kv_tile_bytes<D>() + 1024; }

// The CTA's place in the grid and its rows (same packing as attention_prefill.cu).
struct CtaRows {
  int kvh, hunit, t0, t_end;
  int min_pos, n_tiles;  // the first row's position; K/V tiles up to the last valid row's position

  __device__ CtaRows(const PrefillParams& p) {
    const int units = p.n_kv_heads * p.head_units;
    const int tile = p.n_q_tiles - 1 - static_cast<int>(blockIdx.x / units);  // heaviest first
    const int unit = static_cast<int>(blockIdx.x % units);
    kvh = unit / p.head_units;
    hunit = unit % p.head_units;
    t0 = tile * p.tpc;
    t_end = min(t0 + p.tpc, p.n_q);
    min_pos = p.q_start + t0;
    const int n_keys = min(p.q_start + t_end, p.kv_len);
    n_tiles = (n_keys + kBlockN - 1) / kBlockN;
  }
  __device__ int token(const PrefillParams& p, int r) const { return t0 + r / p.hpc; }
  __device__ int head_in_group(const PrefillParams& p, int r) const { return hunit * p.hpc + r % p.hpc; }
  __device__ bool valid(const PrefillParams& p, int r) const {
    return r / p.hpc < p.tpc && token(p, r) < p.n_q && head_in_group(p, r) < p.group;
  }
  // The row's offset in q / out, in elements (valid rows only).
  template <int D>
  __device__ int64_t offset(const PrefillParams& p, int r) const {
    return (static_cast<int64_t>(token(p, r)) * p.n_q_heads + kvh * p.group + head_in_group(p, r)) * D;
  }
};

// Q tile -> shared memory (bf16, swizzled); rows that are not stored are zeros.
template <int D, bool kQF32>
__device__ __forceinline__ void load_q_tile(const PrefillParams& p, const CtaRows& cta, unsigned char* gQ) {
  constexpr int kChunks = D / 8;
  for (int i = threadIdx.x; i < kBlockM * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    uint4 packed = make_uint4(0, 0, 0, 0);
    if (cta.valid(p, r)) {
      const int64_t off = cta.offset<D>(p, r) + c * 8;
      if constexpr (kQF32) {
        const float4 a = *reinterpret_cast<const float4*>(static_cast<const float*>(p.q) + off);
        const float4 b = *reinterpret_cast<const float4*>(static_cast<const float*>(p.q) + off + 4);
        packed = make_uint4(pack_bf16x2(a.x, a.y), pack_bf16x2(a.z, a.w), pack_bf16x2(b.x, b.y), pack_bf16x2(b.z, b.w));
      } else {
        packed = *reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(p.q) + off);
      }
    }
    *reinterpret_cast<uint4*>(gQ + sw128_offset(r, c, kBlockM)) = packed;
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
__device__ __forceinline__ void store_rows(const PrefillParams& p, const CtaRows& cta, const float (&o)[D / 8][4],
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

// Positions of this thread's two rows (g and g + 8 of its warp's 16); rows past the CTA's tokens take the
// first row's position (their results are dropped).
__device__ __forceinline__ void row_positions(const PrefillParams& p, const CtaRows& cta, int (&pos)[2]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = warp * 16 + (lane >> 2) + 8 * h;
    pos[h] = r / p.hpc < p.tpc ? p.q_start + cta.token(p, r) : cta.min_pos;
  }
}

// Variant 4: two K/V stages; per tile S, softmax, PV in sequence within a warpgroup (the other warpgroup's
// wgmma overlaps this one's softmax), two barriers per tile.
template <int D, bool kQF32>
__global__ void __launch_bounds__(kThreads, 1) prefill_wgmma_kernel(const PrefillParams p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(D == 64 || D == 128, "head_dim 64 or 128");
  constexpr uint32_t kTile = kv_tile_bytes<D>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t raw = smem_addr(smem_raw);
  const uint32_t pad = (1024u - (raw & 1023u)) & 1023u;
  unsigned char* gQ = smem_raw + pad;              // [D / 64 atoms][128 rows][128 B]
  unsigned char* gK = gQ + q_tile_bytes<D>();      // [2 stages][D / 64 atoms][128 keys][128 B]
  unsigned char* gV = gK + 2 * kTile;              // [2 stages][D / 64 atoms][128 keys][128 B]
  const uint32_t sQ = raw + pad, sK = sQ + q_tile_bytes<D>(), sV = sK + 2 * kTile;  // the same, shared addresses
  const int wg = threadIdx.x >> 7;
  const CtaRows cta(p);
  load_q_tile<D, kQF32>(p, cta, gQ);
  int pos[2];
  row_positions(p, cta, pos);

  float o[D / 8][4];  // O[64 x D] accumulator fragment of the warpgroup
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[dt][e] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  load_kv_tile<D>(p, p.k, cta.kvh, 0, gK);
  load_kv_tile<D>(p, p.v, cta.kvh, 0, gV);
  cp_async_commit();
  for (int j = 0; j < cta.n_tiles; ++j) {
    const int stage = j & 1;
    if (j + 1 < cta.n_tiles) {  // that stage's readers finished at the last barrier
      load_kv_tile<D>(p, p.k, cta.kvh, j + 1, gK + (stage ^ 1) * kTile);
      load_kv_tile<D>(p, p.v, cta.kvh, j + 1, gV + (stage ^ 1) * kTile);
    }
    cp_async_commit();
    cp_async_wait<1>();
    fence_proxy_async_shared();  // this thread's Q stores and K/V copies, before any wgmma reads them
    __syncthreads();

    float s[kBlockN / 8][4];
    wgmma_fence();
    issue_qk<D>(s, sQ, sK + stage * kTile, wg);
    wgmma_commit();
    wgmma_wait<0>();
    wgmma_fence_registers(s);
    float alpha[2];
    softmax_step(s, m, l, alpha, pos, j, cta.min_pos, p.scale_log2);
    rescale<D>(o, alpha);
    uint32_t a[kBlockN / 16][4];
    pack_p(s, a);
    wgmma_fence();
    issue_pv<D>(o, a, sV + stage * kTile);
    wgmma_commit();
    wgmma_wait<0>();
    wgmma_fence_registers(o);
    __syncthreads();  // the stage is overwritten by the next iteration's prefetch
  }
  cp_async_wait<0>();
  store_rows<D>(p, cta, o, l);
#else
  // Built for another architecture than sm_90a (the build makes sm_90a code only, see CMakeLists.txt).
  if (threadIdx.x == 0 && blockIdx.x == 0) __trap();
#endif
}

// Variant 5: three K and three V stages, one barrier per tile, and FlashAttention-3's intra-warpgroup overlap:
// at tile j a warpgroup issues S_j = Q K_j^T and then O += P_{j-1} V_{j-1}, waits for S_j only, and runs tile
// j's softmax (in f32) while the tensor cores still work on P_{j-1} V_{j-1}. K_{j+2} and V_{j+1} are loaded
// during tile j (K two tiles ahead, V one: V_{j-1} is still being read). P_j is rounded to bf16 into the A
// registers only after P_{j-1} V_{j-1} is done: ptxas treats a wgmma's register operands as free once it is
// issued (the PTX ISA leaves them undefined until the wait), and packing P_j earlier gave wrong results from
// the third tile on (the SASS wrote the in-flight A registers).
template <int D, bool kQF32>
__global__ void __launch_bounds__(kThreads, 1) prefill_wgmma_overlap_kernel(const PrefillParams p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(D == 64 || D == 128, "head_dim 64 or 128");
  constexpr uint32_t kTile = kv_tile_bytes<D>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t raw = smem_addr(smem_raw);
  const uint32_t pad = (1024u - (raw & 1023u)) & 1023u;
  unsigned char* gQ = smem_raw + pad;              // [D / 64 atoms][128 rows][128 B]
  unsigned char* gK = gQ + q_tile_bytes<D>();      // [3 stages][D / 64 atoms][128 keys][128 B]
  unsigned char* gV = gK + 3 * kTile;              // [3 stages][D / 64 atoms][128 keys][128 B]
  const uint32_t sQ = raw + pad, sK = sQ + q_tile_bytes<D>(), sV = sK + 3 * kTile;  // the same, shared addresses
  const int wg = threadIdx.x >> 7;
  const CtaRows cta(p);
  const int n = cta.n_tiles;
  load_q_tile<D, kQF32>(p, cta, gQ);
  int pos[2];
  row_positions(p, cta, pos);

  float o[D / 8][4];  // O[64 x D] accumulator fragment of the warpgroup
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[dt][e] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  uint32_t a_prev[kBlockN / 16][4];  // P_{j-1}, read by the wgmma in flight during tile j

  // Groups of cp.async: {K_0, V_0}, {K_1}, then per tile j {K_{j+2}, V_{j+1}}; at tile j everything up to
  // tile j - 2's group is needed (K_j, V_{j-1}): at most one group pending. The last P V needs them all.
  load_kv_tile<D>(p, p.k, cta.kvh, 0, gK);
  load_kv_tile<D>(p, p.v, cta.kvh, 0, gV);
  cp_async_commit();
  if (n > 1) load_kv_tile<D>(p, p.k, cta.kvh, 1, gK + kTile);
  cp_async_commit();
  for (int j = 0; j < n; ++j) {
    cp_async_wait<1>();
    fence_proxy_async_shared();  // this thread's Q stores and K/V copies, before any wgmma reads them
    __syncthreads();             // everyone's copies landed; everyone finished tile j - 1 (its wgmma included)
    if (j + 2 < n) load_kv_tile<D>(p, p.k, cta.kvh, j + 2, gK + ((j + 2) % 3) * kTile);  // K_{j-1}'s stage
    if (j + 1 < n) load_kv_tile<D>(p, p.v, cta.kvh, j + 1, gV + ((j + 1) % 3) * kTile);  // V_{j-2}'s stage
    cp_async_commit();

    float s[kBlockN / 8][4];
    wgmma_fence();
    issue_qk<D>(s, sQ, sK + (j % 3) * kTile, wg);
    wgmma_commit();
    if (j > 0) {
      issue_pv<D>(o, a_prev, sV + ((j + 2) % 3) * kTile);  // V_{j-1}
      wgmma_commit();
      wgmma_wait<1>();  // S_j (groups complete in order)
    } else {
      wgmma_wait<0>();
    }
    wgmma_fence_registers(s);
    float alpha[2];
    softmax_step(s, m, l, alpha, pos, j, cta.min_pos, p.scale_log2);
    wgmma_wait<0>();  // P_{j-1} V_{j-1}
    wgmma_fence_registers(o);
    wgmma_fence_registers(a_prev);
    rescale<D>(o, alpha);
    pack_p(s, a_prev);  // only now: the wgmma in flight above read these registers
  }
  cp_async_wait<0>();  // V_{n-1} (tile n - 2's group)
  fence_proxy_async_shared();
  __syncthreads();
  if (n > 0) {
    wgmma_fence();
    issue_pv<D>(o, a_prev, sV + ((n + 2) % 3) * kTile);  // V_{n-1}
    wgmma_commit();
    wgmma_wait<0>();
    wgmma_fence_registers(o);
  }
  store_rows<D>(p, cta, o, l);
#else
  if (threadIdx.x == 0 && blockIdx.x == 0) __trap();
#endif
}

// Variant 6: variant 5's schedule, warp-specialized. A third warpgroup is the producer: one of its threads issues
// the K and V tiles as TMA boxes (64 columns x 128 keys, the swizzled layout directly; zeros past kv_len) into
// a ring of 3 stages, each with a "full" transaction barrier (the consumers wait on it) and an "empty" barrier
// (each consumer warp arrives once the wgmma reading the stage is done; the producer waits on it before
// reusing it). No CTA-wide barrier in the loop: the two consumer warpgroups drift apart, one's softmax
// overlapping the other's wgmma, and no consumer thread spends issue slots on copies. The launch budget is
// 168 registers a thread (384 threads); the producer gives back to 24 and the consumers take 240.
constexpr int kTmaThreads = kThreads + 128;
constexpr int kTmaStages = 3;

template <int D, bool kQF32>
__global__ void __launch_bounds__(kTmaThreads, 1)
    prefill_wgmma_tma_kernel(const PrefillParams p, const __grid_constant__ CUtensorMap k_map,
                             const __grid_constant__ CUtensorMap v_map) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(D == 64 || D == 128, "head_dim 64 or 128");
  constexpr uint32_t kTile = kv_tile_bytes<D>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t raw = smem_addr(smem_raw);
  const uint32_t pad = (1024u - (raw & 1023u)) & 1023u;
  unsigned char* gQ = smem_raw + pad;                         // [D / 64 atoms][128 rows][128 B]
  unsigned char* gK = gQ + q_tile_bytes<D>();                 // [3 stages][D / 64 atoms][128 keys][128 B]
  unsigned char* gV = gK + kTmaStages * kTile;                // [3 stages][D / 64 atoms][128 keys][128 B]
  auto* full = reinterpret_cast<uint64_t*>(gV + kTmaStages * kTile);  // [3]: the stage's bytes landed
  uint64_t* empty = full + kTmaStages;                                 // [3]: the 8 consumer warps are done with it
  const uint32_t sQ = raw + pad, sK = sQ + q_tile_bytes<D>(), sV = sK + kTmaStages * kTile;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const CtaRows cta(p);
  const int n = cta.n_tiles;
  if (threadIdx.x == 0) {
    for (int st = 0; st < kTmaStages; ++st) {
      mbarrier_init(&full[st], 1);
      mbarrier_init(&empty[st], kThreads / 32);
    }
    mbarrier_init_fence();
  }
  __syncthreads();

  if (warp >= kThreads / 32) {  // the producer warpgroup
    warpgroup_registers_decrease<24>();
    if (warp == kThreads / 32 && lane == 0) {
      for (int t = 0; t < n; ++t) {
        const int st = t % kTmaStages;
        if (t >= kTmaStages) mbarrier_wait(&empty[st], static_cast<uint32_t>(t / kTmaStages - 1) & 1u);
        mbarrier_arrive_expect_tx(&full[st], 2 * kTile);
#pragma unroll
        for (int atom = 0; atom < D / 64; ++atom) {
          const int x = cta.kvh * D + atom * 64;
          tma_load_2d(gK + st * kTile + atom * (kBlockN * 128), &k_map, x, t * kBlockN, &full[st]);
          tma_load_2d(gV + st * kTile + atom * (kBlockN * 128), &v_map, x, t * kBlockN, &full[st]);
        }
      }
    }
    return;
  }

  warpgroup_registers_increase<240>();
  const int wg = warp >> 2;
  load_q_tile<D, kQF32>(p, cta, gQ);
  fence_proxy_async_shared();
  named_barrier_sync<1, kThreads>();  // the consumers' Q stores, before any wgmma reads Q
  int pos[2];
  row_positions(p, cta, pos);
  float o[D / 8][4];  // O[64 x D] accumulator fragment of the warpgroup
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[dt][e] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  uint32_t a_prev[kBlockN / 16][4];  // P_{j-1}, read by the wgmma in flight during tile j

  for (int j = 0; j < n; ++j) {
    const int st = j % kTmaStages, prev = (j + kTmaStages - 1) % kTmaStages;
    mbarrier_wait(&full[st], static_cast<uint32_t>(j / kTmaStages) & 1u);
    float s[kBlockN / 8][4];
    wgmma_fence();
    issue_qk<D>(s, sQ, sK + st * kTile, wg);
    wgmma_commit();
    if (j > 0) {
      issue_pv<D>(o, a_prev, sV + prev * kTile);  // V_{j-1}
      wgmma_commit();
      wgmma_wait<1>();  // S_j (groups complete in order)
    } else {
      wgmma_wait<0>();
    }
    wgmma_fence_registers(s);
    float alpha[2];
    softmax_step(s, m, l, alpha, pos, j, cta.min_pos, p.scale_log2);
    wgmma_wait<0>();  // P_{j-1} V_{j-1}
    wgmma_fence_registers(o);
    wgmma_fence_registers(a_prev);
    if (j > 0 && lane == 0) mbarrier_arrive(&empty[prev]);  // tile j - 1's K and V are read
    rescale<D>(o, alpha);
    pack_p(s, a_prev);  // only now: the wgmma in flight above read these registers
  }
  if (n > 0) {
    wgmma_fence();
    issue_pv<D>(o, a_prev, sV + ((n - 1) % kTmaStages) * kTile);  // V_{n-1}
    wgmma_commit();
    wgmma_wait<0>();
    wgmma_fence_registers(o);
  }
  store_rows<D>(p, cta, o, l);
#else
  if (threadIdx.x == 0 && blockIdx.x == 0) __trap();
#endif
}

template <int D, bool kQF32>
void launch(const PrefillParams& p, int variant, unsigned blocks, cudaStream_t stream) {
  if (variant == 6) {
    constexpr size_t smem = q_tile_bytes<D>() + 2 * kTmaStages * kv_tile_bytes<D>() + 2 * kTmaStages * 8 + 1024;
    const int64_t row = static_cast<int64_t>(p.n_kv_heads) * D;
    const CUtensorMap k_map = make_bf16_tensor_map_sw128(p.k, p.kv_len, row, row, kBlockN, 64);
    const CUtensorMap v_map = make_bf16_tensor_map_sw128(p.v, p.kv_len, row, row, kBlockN, 64);
    auto kernel = prefill_wgmma_tma_kernel<D, kQF32>;
    SKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    kernel<<<blocks, kTmaThreads, smem, stream>>>(p, k_map, v_map);
    SKV_CUDA_CHECK_LAUNCH();
    return;
  }
  const bool overlap = variant == 5;
  const size_t smem = overlap ? wgmma_smem_bytes<D, 3>() : wgmma_smem_bytes<D, 2>();
  auto kernel = overlap ? prefill_wgmma_overlap_kernel<D, kQF32> : prefill_wgmma_kernel<D, kQF32>;
  SKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  kernel<<<blocks, kThreads, smem, stream>>>(p);
  SKV_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_prefill_wgmma(const PrefillParams& p, int head_dim, bool q_f32, int variant, unsigned blocks,
                          cudaStream_t stream) {
  SKV_ASSERT(variant >= 4 && variant <= 6);
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
