// attention_prefill and attention_decode(_batch) for what the tensor-core kernels do not take: any head_dim from 1
// to 256 and f32 or bf16 K/V. Plain SIMT kernels, no tensor cores: products, accumulation and the online softmax
// are f32 (expf of the score minus the running max, as the CPU twin), so with f32 K/V the outputs match the
// CPU's to f32 rounding. They serve small models (stories15M: head_dim 48) and the f32 KV cache.
//
// The core (attend_keys): a CTA of kThreads = 128 threads (4 warps) owns up to kRows = 16 query rows that read
// one KV head, and walks a range of keys in tiles of kTile = 32 keys. Per tile, four phases, each ended by
// __syncthreads:
//   1. load:    the tile's K and V rows -> shared memory as f32; warp w copies keys w, w + 4, ..., its lanes
//               consecutive dims (coalesced); keys past the range are zero-filled;
//   2. scores:  lane j of warp w computes s = scale * q_r . k_j for its rows r = w, w + 4, w + 8, w + 12 (one
//               read of k_j's dims serves the four rows; q_r is a broadcast), -inf past the row's limit;
//   3. softmax: warp w, row r = w + 4i: the tile max over the 32 lanes (one key each), m_new = max(m, tile max),
//               alpha = exp(m - m_new), p_j = exp(s_j - m_new), l = l * alpha + sum p (m, l in registers);
//   4. PV:      thread owns (row, dim) pairs: o = o * alpha + sum_j p_j v_j, o in shared memory.
// Shared memory, f32 unless said: Q [kRows][ld], K [kTile][ld], V [kTile][ld], O [kRows][head_dim],
// S [kRows][kTile + 1] (scores, then p), m, l, alpha [kRows], limit [kRows] i32; ld = head_dim rounded up to
// odd, so the 32 lanes of phase 2, reading dim d of 32 different K rows, hit 32 different banks. At head_dim 256:
// about 99 KB (1-2 CTAs per SM); at 48: 21 KB.
//
// Prefill (one CTA per (query tile, KV head, head unit), heaviest tiles first): the rows are (token, query head)
// pairs of one KV head's GQA group, packed as the tensor-core kernel does: hpc = min(group, kRows) heads x
// tpc = kRows / hpc tokens (a 6:1 group: 2 tokens x 6 heads), so each K/V tile serves the whole group. The keys
// run to the CTA's last token's position; each row's limit is its own position + 1 (causal).
// Decode (one CTA per (split, KV head x head unit, sequence), the split plan of decode_splits.h): the rows are
// the group's heads, all with limit = the split's end. The CTA writes its split's normalized output and
// log-sum-exp (natural log) into the partials workspace; the combine kernel (one CTA of head_dim threads, rounded
// up to a warp, per (query head, sequence)) takes their log-sum-exp-weighted mean. A sequence whose slot is
// outside [0, n_slots) or whose length is outside [1, capacity] (or past the splits) gets NaN, and its keys are
// never read.
#include <algorithm>
#include <cmath>

#include "ops/cuda/common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/decode_call.cuh"
#include "ops/cuda/decode_splits.h"

namespace skv::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kRows = kDecodeHeadsPerCta;  // 16: decode's heads per CTA, prefill's rows per CTA
constexpr int kRowsPerWarp = kRows / kWarps;
constexpr int kTile = 32;  // keys per tile: one per lane in phases 2 and 3
constexpr int kSStride = kTile + 1;
static_assert(kRows % kWarps == 0 && kDecodeSplitQuantum % kTile == 0);

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float nan_f32() { return __int_as_float(0x7fc00000); }

// The padded row of the Q, K and V tiles: head_dim rounded up to odd.
inline int padded_ld(int head_dim) { return head_dim | 1; }

// The CTA's shared memory, carved from the dynamic allocation (layout above).
struct Smem {
  float* q;      // [kRows][ld]
  float* k;      // [kTile][ld]
  float* v;      // [kTile][ld]
  float* o;      // [kRows][head_dim], unnormalized
  float* s;      // [kRows][kSStride]: scores, then p
  float* m;      // [kRows] running max (natural-log domain, scaled scores)
  float* l;      // [kRows] running sum of p
  float* alpha;  // [kRows] this tile's rescale of o
  int* limit;    // [kRows] keys [0, limit) are visible to the row (0: an unused row)
};

inline size_t smem_bytes(int head_dim) {
  const size_t ld = static_cast<size_t>(padded_ld(head_dim));
  const size_t floats =
      kRows * ld + 2 * kTile * ld + static_cast<size_t>(kRows) * head_dim + kRows * kSStride + 3 * kRows;
  return floats * sizeof(float) + kRows * sizeof(int);
}

__device__ __forceinline__ Smem carve(float* base, int head_dim, int ld) {
  Smem sm;
  sm.q = base;
  sm.k = sm.q + kRows * ld;
  sm.v = sm.k + kTile * ld;
  sm.o = sm.v + kTile * ld;
  sm.s = sm.o + kRows * head_dim;
  sm.m = sm.s + kRows * kSStride;
  sm.l = sm.m + kRows;
  sm.alpha = sm.l + kRows;
  sm.limit = reinterpret_cast<int*>(sm.alpha + kRows);
  return sm;
}

// Attends rows [0, n_rows) of sm.q over keys [k_begin, k_end) of one KV head: key t's dims are
// kbase[t * key_stride + d] (vbase likewise). sm.q, sm.limit must be set and sm.o zeroed (rows past n_rows: q 0,
// limit 0) before the call; on return (after a __syncthreads) sm.o holds sum_j p_j v_j, sm.m the max scaled
// score and sm.l sum_j p_j of every row, with p_j = exp(s_j - m).
template <typename TKV>
__device__ void attend_keys(const Smem& sm, const TKV* __restrict__ kbase, const TKV* __restrict__ vbase,
                            int64_t key_stride, int k_begin, int k_end, int head_dim, int ld, float scale,
                            int n_rows) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  float m[kRowsPerWarp], l[kRowsPerWarp];  // rows warp + kWarps * i, replicated over the warp's lanes
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) m[i] = -INFINITY, l[i] = 0.0f;
  const bool warp_has_rows = warp < n_rows;

  for (int key0 = k_begin; key0 < k_end; key0 += kTile) {
    // 1. load K and V rows [key0, key0 + kTile) as f32; zeros past k_end
    for (int j = warp; j < kTile; j += kWarps) {
      const int key = key0 + j;
      float* dk = sm.k + j * ld;
      float* dv = sm.v + j * ld;
      if (key < k_end) {
        const TKV* sk = kbase + static_cast<int64_t>(key) * key_stride;
        const TKV* sv = vbase + static_cast<int64_t>(key) * key_stride;
        for (int d = lane; d < head_dim; d += 32) {
          dk[d] = to_f32(sk[d]);
          dv[d] = to_f32(sv[d]);
        }
      } else {
        for (int d = lane; d < head_dim; d += 32) dk[d] = dv[d] = 0.0f;
      }
    }
    __syncthreads();

    // 2. scores of this warp's rows against key key0 + lane
    if (warp_has_rows) {
      float acc[kRowsPerWarp];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) acc[i] = 0.0f;
      const float* kr = sm.k + lane * ld;
      for (int d = 0; d < head_dim; ++d) {
        const float kd = kr[d];
#pragma unroll
        for (int i = 0; i < kRowsPerWarp; ++i) acc[i] = fmaf(sm.q[(warp + i * kWarps) * ld + d], kd, acc[i]);
      }
      const int key = key0 + lane;
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const int r = warp + i * kWarps;
        if (r < n_rows) sm.s[r * kSStride + lane] = key < k_end && key < sm.limit[r] ? acc[i] * scale : -INFINITY;
      }
    }
    __syncthreads();

    // 3. online softmax, one warp per row
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int r = warp + i * kWarps;
      if (r >= n_rows) break;  // warp-uniform
      const float s = sm.s[r * kSStride + lane];
      const float m_new = fmaxf(m[i], warp_max(s));
      float alpha = 1.0f, p = 0.0f;
      if (m_new != -INFINITY) {  // else nothing visible to the row yet
        alpha = expf(m[i] - m_new);
        p = expf(s - m_new);
      }
      l[i] = l[i] * alpha + warp_sum(p);
      m[i] = m_new;
      sm.s[r * kSStride + lane] = p;
      if (lane == 0) sm.alpha[r] = alpha;
    }
    __syncthreads();

    // 4. o = o * alpha + P V
    for (int idx = tid; idx < n_rows * head_dim; idx += kThreads) {
      const int r = idx / head_dim, d = idx - r * head_dim;
      const float* p = sm.s + r * kSStride;
      float acc = 0.0f;
#pragma unroll 8
      for (int j = 0; j < kTile; ++j) acc = fmaf(p[j], sm.v[j * ld + d], acc);
      sm.o[idx] = fmaf(sm.o[idx], sm.alpha[r], acc);
    }
    __syncthreads();  // K, V and S are overwritten by the next tile
  }
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int r = warp + i * kWarps;
    if (r < n_rows && lane == 0) {
      sm.m[r] = m[i];
      sm.l[r] = l[i];
    }
  }
  __syncthreads();
}

// ---- prefill

struct PrefillParams {
  const void* q;   // [n_q, n_q_heads, D] f32 or bf16
  const void* k;   // [kv_len, n_kv_heads, D] f32 or bf16
  const void* v;   // [kv_len, n_kv_heads, D] as k
  float* out;      // [n_q, n_q_heads, D]
  int n_q, kv_len, q_start;
  int n_q_heads, n_kv_heads, group;
  int hpc, tpc, head_units;  // heads per CTA, tokens per CTA, CTAs per KV head (ceil(group / hpc))
  int n_q_tiles;
  int head_dim, ld;
  float scale;
};

template <typename TQ, typename TKV>
__global__ void __launch_bounds__(kThreads) prefill_generic_kernel(const PrefillParams p) {
  extern __shared__ float smem_f[];
  const int D = p.head_dim, ld = p.ld;
  const Smem sm = carve(smem_f, D, ld);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int units = p.n_kv_heads * p.head_units;
  const int tile = p.n_q_tiles - 1 - static_cast<int>(blockIdx.x / units);  // heaviest first
  const int unit = static_cast<int>(blockIdx.x % units);
  const int kvh = unit / p.head_units, hunit = unit % p.head_units;
  const int t0 = tile * p.tpc;  // first token of the CTA
  // Valid rows are a prefix: tokens [t0, t0 + n_tok) x heads [hunit * hpc, + n_heads) of the group, row r being
  // token t0 + r / hpc, head hunit * hpc + r % hpc (n_heads < hpc only when the group spans several units, and
  // then tpc = 1).
  const int n_tok = min(p.tpc, p.n_q - t0);
  const int n_heads = min(p.hpc, p.group - hunit * p.hpc);
  const int n_rows = n_tok * n_heads;
  const TQ* q = static_cast<const TQ*>(p.q);

  for (int r = warp; r < kRows; r += kWarps) {
    const int token = t0 + r / p.hpc;
    const int64_t qrow = (static_cast<int64_t>(token) * p.n_q_heads + kvh * p.group + hunit * p.hpc + r % p.hpc) * D;
    for (int d = lane; d < ld; d += 32) sm.q[r * ld + d] = r < n_rows && d < D ? to_f32(q[qrow + d]) : 0.0f;
    for (int d = lane; d < D; d += 32) sm.o[r * D + d] = 0.0f;
    if (lane == 0) sm.limit[r] = r < n_rows ? p.q_start + token + 1 : 0;
  }
  const int n_keys = min(p.q_start + t0 + n_tok, p.kv_len);  // the last row's position + 1
  const int64_t key_stride = static_cast<int64_t>(p.n_kv_heads) * D;
  attend_keys<TKV>(sm, static_cast<const TKV*>(p.k) + static_cast<int64_t>(kvh) * D,
                   static_cast<const TKV*>(p.v) + static_cast<int64_t>(kvh) * D, key_stride, 0, n_keys, D, ld, p.scale,
                   n_rows);

  for (int idx = tid; idx < n_rows * D; idx += kThreads) {
    const int r = idx / D, d = idx - r * D;
    const int token = t0 + r / p.hpc;
    const int64_t orow = (static_cast<int64_t>(token) * p.n_q_heads + kvh * p.group + hunit * p.hpc + r % p.hpc) * D;
    const float l = sm.l[r];  // >= 1: key 0 is visible to every row
    p.out[orow + d] = l > 0.0f ? sm.o[idx] / l : nan_f32();
  }
}

template <typename TQ, typename TKV>
void launch_prefill(const PrefillParams& p, unsigned blocks, cudaStream_t stream) {
  const size_t smem = smem_bytes(p.head_dim);
  auto kernel = prefill_generic_kernel<TQ, TKV>;
  SKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  kernel<<<blocks, kThreads, smem, stream>>>(p);
  SKV_CUDA_CHECK_LAUNCH();
}

// ---- decode

// The sequences, plan and partials (decode_call.cuh), the cache as stored (f32 or bf16) and the tile geometry.
struct DecodeParams : DecodeSequences {
  const void* k;  // [n_slots, capacity, n_kv_heads, D] f32 or bf16
  const void* v;  // [n_slots, capacity, n_kv_heads, D] as k
  int head_dim, ld;
  float scale;    // partial_lse is in natural log of scaled scores
};

template <typename TKV>
__global__ void __launch_bounds__(kThreads) decode_generic_split_kernel(const DecodeParams p) {
  pdl_enter();
  extern __shared__ float smem_f[];
  const int D = p.head_dim, ld = p.ld;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int split = blockIdx.x, seq = blockIdx.z;
  const int kvh = blockIdx.y / p.head_units, hunit = blockIdx.y % p.head_units;
  const int head0 = kvh * p.group + hunit * p.hpc;         // first query head of the CTA
  const int n_rows = min(p.hpc, p.group - hunit * p.hpc);  // query heads of the CTA
  const int64_t part_row0 = static_cast<int64_t>(seq) * p.n_q_heads + head0;  // (seq, head0) row of partials

  int slot, len;
  const bool valid = sequence_valid(p, seq, slot, len);
  const int start = split * p.split_len;
  const int end = valid ? min(len, start + p.split_len) : 0;
  if (start >= end) {  // nothing to attend in this split (the combine skips -inf)
    if (tid < n_rows) p.partial_lse[(part_row0 + tid) * p.n_splits + split] = -INFINITY;
    return;
  }

  const Smem sm = carve(smem_f, D, ld);
  for (int r = warp; r < kRows; r += kWarps) {
    const float* qr = p.q + (part_row0 + r) * D;
    for (int d = lane; d < ld; d += 32) sm.q[r * ld + d] = r < n_rows && d < D ? qr[d] : 0.0f;
    for (int d = lane; d < D; d += 32) sm.o[r * D + d] = 0.0f;
    if (lane == 0) sm.limit[r] = r < n_rows ? end : 0;
  }
  const int64_t key_stride = static_cast<int64_t>(p.n_kv_heads) * D;
  const int64_t base = static_cast<int64_t>(slot) * p.capacity * key_stride + static_cast<int64_t>(kvh) * D;
  attend_keys<TKV>(sm, static_cast<const TKV*>(p.k) + base, static_cast<const TKV*>(p.v) + base, key_stride, start,
                   end, D, ld, p.scale, n_rows);

  for (int idx = tid; idx < n_rows * D; idx += kThreads) {
    const int r = idx / D, d = idx - r * D;
    const float l = sm.l[r];  // >= 1: the split holds at least one key
    const int64_t prow = (part_row0 + r) * p.n_splits + split;
    p.partial_o[prow * D + d] = l > 0.0f ? sm.o[idx] / l : 0.0f;
    if (d == 0) p.partial_lse[prow] = l > 0.0f ? sm.m[r] + logf(l) : -INFINITY;
  }
}

// One CTA of head_dim threads (rounded up to a warp) per (query head, sequence).
__global__ void decode_generic_combine_kernel(const DecodeParams p) {
  pdl_enter();
  const int head = blockIdx.x, seq = blockIdx.y, d = threadIdx.x;
  if (d >= p.head_dim) return;
  const int64_t row = static_cast<int64_t>(seq) * p.n_q_heads + head;
  float* out = p.out + row * p.head_dim;
  int slot, len;
  // A length past the splits (max_length was too small) would silently drop keys: NaN instead.
  if (!sequence_valid(p, seq, slot, len) ||
      static_cast<int64_t>(len) > static_cast<int64_t>(p.n_splits) * p.split_len) {
    out[d] = nan_f32();
    return;
  }
  const float* lse = p.partial_lse + row * p.n_splits;
  const int used = min(p.n_splits, (len + p.split_len - 1) / p.split_len);
  float mx = -INFINITY;
  for (int s = 0; s < used; ++s) mx = fmaxf(mx, lse[s]);
  float w_sum = 0.0f, acc = 0.0f;
  if (mx != -INFINITY) {
    for (int s = 0; s < used; ++s) {
      if (lse[s] == -INFINITY) continue;
      const float w = expf(lse[s] - mx);
      w_sum += w;
      acc = fmaf(w, p.partial_o[(row * p.n_splits + s) * p.head_dim + d], acc);
    }
  }
  out[d] = w_sum > 0.0f ? acc / w_sum : nan_f32();
}

template <typename TKV>
void launch_decode(const DecodeParams& p, dim3 grid, dim3 combine_grid, cudaStream_t stream) {
  const size_t smem = smem_bytes(p.head_dim);
  auto kernel = decode_generic_split_kernel<TKV>;
  SKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  launch_after_previous(kernel, grid, kThreads, smem, stream, p);
  const unsigned combine_threads = static_cast<unsigned>((p.head_dim + 31) / 32 * 32);
  launch_after_previous(decode_generic_combine_kernel, combine_grid, combine_threads, 0, stream, p);
}

void run_decode(const DecodeCall& c, cudaStream_t stream) {
  SKV_ASSERT(c.head_dim >= 1 && c.head_dim <= kGenericMaxHeadDim);
  DecodeParams p{};
  static_cast<DecodeSequences&>(p) = c.seqs;
  p.k = c.k;
  p.v = c.v;
  p.head_dim = static_cast<int>(c.head_dim);
  p.ld = padded_ld(p.head_dim);
  p.scale = c.scale;
  if (c.kv_dtype == DType::kF32)
    launch_decode<float>(p, c.split_grid, c.combine_grid, stream);
  else
    launch_decode<__nv_bfloat16>(p, c.split_grid, c.combine_grid, stream);
}

}  // namespace

void attention_prefill_generic(const AttentionPrefillArgs& a) {
  const int64_t n_q = a.q.dim(0), n_q_heads = a.q.dim(1), head_dim = a.q.dim(2);
  const int64_t kv_len = a.k.dim(0), n_kv_heads = a.k.dim(1);
  if (n_q == 0 || n_q_heads == 0) return;
  SKV_ASSERT_MSG(kv_len <= INT32_MAX / 2 && n_q_heads * head_dim <= INT32_MAX, "attention_prefill (generic): sizes");
  SKV_ASSERT(head_dim >= 1 && head_dim <= kGenericMaxHeadDim);
  OpContext ctx(a.out);
  PrefillParams p{};
  p.q = a.q.data;
  p.k = a.k.data;
  p.v = a.v.data;
  p.out = a.out.ptr<float>();
  p.n_q = static_cast<int>(n_q);
  p.kv_len = static_cast<int>(kv_len);
  p.q_start = static_cast<int>(a.q_start);
  p.n_q_heads = static_cast<int>(n_q_heads);
  p.n_kv_heads = static_cast<int>(n_kv_heads);
  p.group = static_cast<int>(n_q_heads / n_kv_heads);
  p.hpc = std::min(p.group, kRows);
  p.tpc = kRows / p.hpc;
  p.head_units = (p.group + p.hpc - 1) / p.hpc;
  p.n_q_tiles = static_cast<int>((n_q + p.tpc - 1) / p.tpc);
  p.head_dim = static_cast<int>(head_dim);
  p.ld = padded_ld(p.head_dim);
  p.scale = a.scale != 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t blocks = static_cast<int64_t>(p.n_q_tiles) * n_kv_heads * p.head_units;
  SKV_ASSERT_MSG(blocks <= INT32_MAX, "attention_prefill (generic): grid too large");
  const auto nb = static_cast<unsigned>(blocks);
  const bool q_f32 = a.q.dtype == DType::kF32, kv_f32 = a.k.dtype == DType::kF32;
  if (q_f32 && kv_f32) launch_prefill<float, float>(p, nb, ctx.stream);
  else if (q_f32) launch_prefill<float, __nv_bfloat16>(p, nb, ctx.stream);
  else if (kv_f32) launch_prefill<__nv_bfloat16, float>(p, nb, ctx.stream);
  else launch_prefill<__nv_bfloat16, __nv_bfloat16>(p, nb, ctx.stream);
}

void attention_decode_batch_generic(const AttentionDecodeBatchArgs& a) {
  OpContext ctx(a.out);
  run_decode(make_decode_call(a), ctx.stream);
}

void attention_decode_generic(const AttentionDecodeArgs& a) {
  OpContext ctx(a.out);
  run_decode(make_decode_call(a), ctx.stream);
}

}  // namespace skv::cuda
