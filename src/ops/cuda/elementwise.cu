// embedding, rms_norm, rope, split_qkv_rope, swiglu, add: memory-bound kernels, 16-byte accesses where the sizes allow.
#include <cmath>
#include <type_traits>

#include "ops/cuda/common.cuh"
#include "ops/cuda/cuda_ops.h"

namespace skv::cuda {
namespace {

// ---- embedding: one block per token; an id outside the vocabulary gives a NaN row (never an out-of-bounds read).

template <typename T>
__global__ void embedding_kernel(const int32_t* __restrict__ ids, const T* __restrict__ table,
                                 float* __restrict__ out, int64_t vocab, int64_t dim) {
  pdl_enter();
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  float* o = out + t * dim;
  if (id < 0 || id >= vocab) {
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) o[j] = __int_as_float(0x7fc00000);
    return;
  }
  const T* row = table + static_cast<int64_t>(id) * dim;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) o[j] = to_f32(row[j]);
}

// ---- rms_norm: one block per row; sum of squares in f32 per thread, then the block (x may alias out: each
// element is read and written by the same thread, and the sum completes before any write).

template <typename W, bool kVec4>
__global__ void rms_norm_kernel(const float* x, const W* __restrict__ w, float* out, int64_t dim, float eps) {
  pdl_enter();
  const int64_t row = blockIdx.x;
  const float* xr = x + row * dim;
  float* orow = out + row * dim;
  float ss = 0.0f;
  if constexpr (kVec4) {
    const auto* x4 = reinterpret_cast<const float4*>(xr);
    for (int64_t j = threadIdx.x; j < dim / 4; j += blockDim.x) {
      const float4 v = x4[j];
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  } else {
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) ss += xr[j] * xr[j];
  }
  ss = block_sum(ss);
  const float inv_rms = rsqrtf(ss / static_cast<float>(dim) + eps);
  if constexpr (kVec4) {
    const auto* x4 = reinterpret_cast<const float4*>(xr);
    auto* o4 = reinterpret_cast<float4*>(orow);
    for (int64_t j = threadIdx.x; j < dim / 4; j += blockDim.x) {
      float4 v = x4[j];
      v.x = v.x * inv_rms * to_f32(w[4 * j + 0]);
      v.y = v.y * inv_rms * to_f32(w[4 * j + 1]);
      v.z = v.z * inv_rms * to_f32(w[4 * j + 2]);
      v.w = v.w * inv_rms * to_f32(w[4 * j + 3]);
      o4[j] = v;
    }
  } else {
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) orow[j] = xr[j] * inv_rms * to_f32(w[j]);
  }
}

// cos and sin of RoPE's angle for the pair (i, i + half) at `position`: the angle in double (position * scale *
// inv_freq, as the CPU twin), rounded to float after sincos. Shared by rope and split_qkv_rope.
__device__ __forceinline__ void rope_cos_sin(int64_t position, float inv_freq, double position_scale, float& c,
                                             float& s) {
  const double angle = static_cast<double>(position) * position_scale * static_cast<double>(inv_freq);
  double sd, cd;
  sincos(angle, &sd, &cd);
  c = static_cast<float>(cd);
  s = static_cast<float>(sd);
}

// ---- rope: one thread per (token, i < half): rope_cos_sin, then every head of the token is rotated with the
// same cos/sin.

__global__ void rope_kernel(float* __restrict__ x, const int64_t* __restrict__ positions,
                            const float* __restrict__ inv_freq, double position_scale, int64_t n_tokens,
                            int64_t n_heads, int64_t head_dim) {
  pdl_enter();
  const int64_t half = head_dim / 2;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_tokens * half) return;
  const int64_t t = idx / half, i = idx % half;
  float c, s;
  rope_cos_sin(positions[t], inv_freq[i], position_scale, c, s);
  for (int64_t h = 0; h < n_heads; ++h) {
    float* xh = x + (t * n_heads + h) * head_dim;
    const float x0 = xh[i], x1 = xh[i + half];
    xh[i] = x0 * c - x1 * s;
    xh[i + half] = x1 * c + x0 * s;
  }
}

// ---- split_qkv_rope: one thread per (token, i < half), as rope_kernel; the thread moves elements i and
// i + half of every head: q and k rotated (k also copied unrotated to k_pre when given), v copied.

__global__ void split_qkv_rope_kernel(const float* __restrict__ qkv, const int64_t* __restrict__ positions,
                                      const float* __restrict__ inv_freq, double position_scale,
                                      float* __restrict__ q, float* __restrict__ k, float* __restrict__ v,
                                      float* __restrict__ k_pre, int64_t n_tokens, int n_q_heads, int n_kv_heads,
                                      int64_t head_dim) {
  pdl_enter();
  const int64_t half = head_dim / 2;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_tokens * half) return;
  const int64_t t = idx / half, i = idx % half;
  float c, s;
  rope_cos_sin(positions[t], inv_freq[i], position_scale, c, s);
  const float* src = qkv + t * (n_q_heads + 2 * n_kv_heads) * head_dim;
  for (int h = 0; h < n_q_heads + n_kv_heads; ++h) {
    const float x0 = src[h * head_dim + i], x1 = src[h * head_dim + i + half];
    float* dst = h < n_q_heads ? q + (t * n_q_heads + h) * head_dim : k + (t * n_kv_heads + h - n_q_heads) * head_dim;
    dst[i] = x0 * c - x1 * s;
    dst[i + half] = x1 * c + x0 * s;
    if (h >= n_q_heads && k_pre != nullptr) {
      float* pre = k_pre + (t * n_kv_heads + h - n_q_heads) * head_dim;
      pre[i] = x0;
      pre[i + half] = x1;
    }
  }
  const float* vs = src + (n_q_heads + n_kv_heads) * head_dim;
  for (int h = 0; h < n_kv_heads; ++h) {
    v[(t * n_kv_heads + h) * head_dim + i] = vs[h * head_dim + i];
    v[(t * n_kv_heads + h) * head_dim + i + half] = vs[h * head_dim + i + half];
  }
}

// ---- swiglu, add: grid-stride, float4 when every pointer is 16-byte aligned and n % 4 == 0.

__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

template <bool kVec4>
__global__ void swiglu_kernel(const float* g, const float* u, float* out, int64_t n) {
  pdl_enter();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  if constexpr (kVec4) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n / 4; i += stride) {
      const float4 a = reinterpret_cast<const float4*>(g)[i], b = reinterpret_cast<const float4*>(u)[i];
      reinterpret_cast<float4*>(out)[i] =
          make_float4(silu_mul(a.x, b.x), silu_mul(a.y, b.y), silu_mul(a.z, b.z), silu_mul(a.w, b.w));
    }
  } else {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
      out[i] = silu_mul(g[i], u[i]);
  }
}

// Packed [gate | up] rows of 2 * hidden floats; kVec4 when hidden % 4 == 0 and the pointers are aligned.
template <bool kVec4>
__global__ void swiglu_packed_kernel(const float* gu, float* out, int64_t rows, int64_t hidden) {
  pdl_enter();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  constexpr int kW = kVec4 ? 4 : 1;
  const int64_t per_row = hidden / kW;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * per_row; i += stride) {
    const int64_t r = i / per_row, j = (i % per_row) * kW;
    const float* g = gu + r * 2 * hidden + j;
    if constexpr (kVec4) {
      const float4 a = *reinterpret_cast<const float4*>(g), b = *reinterpret_cast<const float4*>(g + hidden);
      *reinterpret_cast<float4*>(out + r * hidden + j) =
          make_float4(silu_mul(a.x, b.x), silu_mul(a.y, b.y), silu_mul(a.z, b.z), silu_mul(a.w, b.w));
    } else {
      out[r * hidden + j] = silu_mul(g[0], g[hidden]);
    }
  }
}

template <bool kVec4>
__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  pdl_enter();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  if constexpr (kVec4) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n / 4; i += stride) {
      const float4 x = reinterpret_cast<const float4*>(a)[i], y = reinterpret_cast<const float4*>(b)[i];
      reinterpret_cast<float4*>(out)[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
    }
  } else {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
      out[i] = a[i] + b[i];
  }
}

constexpr int kThreads = 256;

unsigned elementwise_blocks(int64_t n) {
  // Enough blocks for every SM several times over; grid-stride covers the rest.
  return blocks_for(n, kThreads, 132LL * 16);
}

}  // namespace

void embedding(const EmbeddingArgs& a) {
  const int64_t n = a.ids.dim(0), vocab = a.table.dim(0), dim = a.table.dim(1);
  if (n == 0 || dim == 0) return;
  OpContext ctx(a.out);
  const auto* ids = a.ids.ptr<const int32_t>();
  float* out = a.out.ptr<float>();
  const unsigned blocks = static_cast<unsigned>(n);
  switch (a.table.dtype) {
    case DType::kF32:
      launch_after_previous(embedding_kernel<float>, blocks, kThreads, 0, ctx.stream, ids, a.table.ptr<const float>(), out, vocab, dim);
      break;
    case DType::kBF16:
      launch_after_previous(embedding_kernel<__nv_bfloat16>, blocks, kThreads, 0, ctx.stream, ids, a.table.ptr<const __nv_bfloat16>(), out, vocab, dim);
      break;
    case DType::kF16:
      launch_after_previous(embedding_kernel<__half>, blocks, kThreads, 0, ctx.stream, ids, a.table.ptr<const __half>(), out, vocab, dim);
      break;
    default: SKV_ASSERT_MSG(false, "embedding: table dtype");
  }
  SKV_CUDA_CHECK_LAUNCH();
}

void rms_norm(const RmsNormArgs& a) {
  const int64_t n = a.x.dim(0), dim = a.x.dim(1);
  if (n == 0 || dim == 0) return;
  OpContext ctx(a.out);
  const bool vec4 = dim % 4 == 0 && aligned16(a.x.data) && aligned16(a.out.data);
  const int threads = dim >= 4096 ? 512 : 256;
  const unsigned blocks = static_cast<unsigned>(n);
  auto launch = [&](auto w) {
    using W = std::remove_cv_t<std::remove_pointer_t<decltype(w)>>;
    launch_after_previous(vec4 ? rms_norm_kernel<W, true> : rms_norm_kernel<W, false>, blocks, threads, 0, ctx.stream,
                          a.x.ptr<const float>(), w, a.out.ptr<float>(), dim, a.eps);
  };
  switch (a.w.dtype) {
    case DType::kF32: launch(a.w.ptr<const float>()); break;
    case DType::kBF16: launch(a.w.ptr<const __nv_bfloat16>()); break;
    case DType::kF16: launch(a.w.ptr<const __half>()); break;
    default: SKV_ASSERT_MSG(false, "rms_norm: w dtype");
  }
  SKV_CUDA_CHECK_LAUNCH();
}

void rope(const RopeArgs& a) {
  const int64_t n = a.x.dim(0), n_heads = a.x.dim(1), head_dim = a.x.dim(2);
  const int64_t work = n * (head_dim / 2);
  if (work == 0 || n_heads == 0) return;
  OpContext ctx(a.x);
  launch_after_previous(rope_kernel, blocks_for(work, kThreads, INT32_MAX), kThreads, 0, ctx.stream,
      a.x.ptr<float>(), a.positions.ptr<const int64_t>(), a.inv_freq.ptr<const float>(), a.position_scale, n, n_heads,
      head_dim);
  SKV_CUDA_CHECK_LAUNCH();
}

void split_qkv_rope(const SplitQkvRopeArgs& a) {
  const int64_t n = a.q.dim(0), head_dim = a.q.dim(2);
  const int64_t work = n * (head_dim / 2);
  if (work == 0) return;
  OpContext ctx(a.q);
  launch_after_previous(split_qkv_rope_kernel, blocks_for(work, kThreads, INT32_MAX), kThreads, 0, ctx.stream,
      a.qkv.ptr<const float>(), a.positions.ptr<const int64_t>(), a.inv_freq.ptr<const float>(), a.position_scale,
      a.q.ptr<float>(), a.k.ptr<float>(), a.v.ptr<float>(), a.k_pre.empty() ? nullptr : a.k_pre.ptr<float>(), n,
      static_cast<int>(a.q.dim(1)), static_cast<int>(a.k.dim(1)), head_dim);
  SKV_CUDA_CHECK_LAUNCH();
}

void swiglu(const SwigluArgs& a) {
  if (a.up.empty()) {  // packed [gate | up]
    const int64_t rows = a.out.dim(0), hidden = a.out.dim(1);
    if (rows * hidden == 0) return;
    OpContext ctx(a.out);
    const bool vec4 = hidden % 4 == 0 && aligned16(a.gate.data) && aligned16(a.out.data);
    if (vec4)
      launch_after_previous(swiglu_packed_kernel<true>, elementwise_blocks(rows * hidden / 4), kThreads, 0, ctx.stream,
          a.gate.ptr<const float>(), a.out.ptr<float>(), rows, hidden);
    else
      launch_after_previous(swiglu_packed_kernel<false>, elementwise_blocks(rows * hidden), kThreads, 0, ctx.stream,
          a.gate.ptr<const float>(), a.out.ptr<float>(), rows, hidden);
    SKV_CUDA_CHECK_LAUNCH();
    return;
  }
  const int64_t n = a.gate.numel();
  if (n == 0) return;
  OpContext ctx(a.out);
  const bool vec4 = n % 4 == 0 && aligned16(a.gate.data) && aligned16(a.up.data) && aligned16(a.out.data);
  if (vec4)
    launch_after_previous(swiglu_kernel<true>, elementwise_blocks(n / 4), kThreads, 0, ctx.stream,
        a.gate.ptr<const float>(), a.up.ptr<const float>(), a.out.ptr<float>(), n);
  else
    launch_after_previous(swiglu_kernel<false>, elementwise_blocks(n), kThreads, 0, ctx.stream,
        a.gate.ptr<const float>(), a.up.ptr<const float>(), a.out.ptr<float>(), n);
  SKV_CUDA_CHECK_LAUNCH();
}

void add(const AddArgs& a) {
  const int64_t n = a.a.numel();
  if (n == 0) return;
  OpContext ctx(a.out);
  const bool vec4 = n % 4 == 0 && aligned16(a.a.data) && aligned16(a.b.data) && aligned16(a.out.data);
  if (vec4)
    launch_after_previous(add_kernel<true>, elementwise_blocks(n / 4), kThreads, 0, ctx.stream, a.a.ptr<const float>(),
                                                                            a.b.ptr<const float>(), a.out.ptr<float>(), n);
  else
    launch_after_previous(add_kernel<false>, elementwise_blocks(n), kThreads, 0, ctx.stream, a.a.ptr<const float>(),
                                                                         a.b.ptr<const float>(), a.out.ptr<float>(), n);
  SKV_CUDA_CHECK_LAUNCH();
}

}  // namespace skv::cuda
