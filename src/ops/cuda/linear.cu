// linear: out[n, out] f32 = x[n, in] f32 . w[out, in]^T (+ bias), or out += ... (accumulate: the residual add).
//
// bf16 w: x is rounded to bf16 (the products are bf16 x bf16 with f32 accumulation on every path), then
//  - n <= kCudaGemvMaxTokens (decode; 4) with in % 8 == 0: a bandwidth-bound kernel reading x in f32 and rounding it in registers
//    (one launch, no scratch): each warp streams ROWS rows of w with 16-byte loads (evict-first), U steps of
//    loads in flight ahead of the math, the x rows come from L1/L2, f32 accumulation, warp-shuffle reduction,
//    bias and accumulate fused; launched with PDL (its first weights stream while the previous kernel ends);
//  - otherwise x is rounded into the backend's scratch (ScratchSlot::kLinearInput, grow-only; the planner
//    pre-sizes it with reserve_scratch to max_tokens * max_in_features * 2 bytes), then cublasGemmEx (bf16 A/B,
//    f32 C, CUBLAS_COMPUTE_32F, beta 1 to accumulate) and a bias kernel.
// f32 w: cublasGemmEx in f32 (no TF32) on x directly.
#include <cublas_v2.h>

#include <array>
#include <cstdlib>
#include <string>

#include "ops/cuda/common.cuh"
#include "ops/cuda/cuda_ops.h"

namespace skv::cuda {

int& gemv_shape_override() {
  // A tuning hook: bench_linear sets it; SKV_GEMV_SHAPE=k selects shape k for whole-model benchmarks.
  static int shape = [] {
    const char* e = std::getenv("SKV_GEMV_SHAPE");
    return e != nullptr ? std::atoi(e) : 0;
  }();
  return shape;
}

namespace {

#define SKV_CUBLAS_CHECK(expr)                                                                             \
  do {                                                                                                     \
    const cublasStatus_t st_ = (expr);                                                                     \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                                      \
      throw Error(st_ == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kResource : ErrorCode::kInternal,         \
                  std::string("cuBLAS error ") + cublasGetStatusName(st_) + " in " #expr " at " __FILE__ ":" + \
                      std::to_string(__LINE__));                                                          \
  } while (0)

// One cuBLAS handle per thread and device (handles are not thread-safe), created on first use.
cublasHandle_t cublas_handle(int device) {
  struct Handles {
    std::array<cublasHandle_t, 16> h{};
    ~Handles() {
      for (cublasHandle_t x : h)
        if (x != nullptr) (void)cublasDestroy(x);
    }
  };
  thread_local Handles handles;
  SKV_ASSERT(device >= 0 && device < 16);
  cublasHandle_t& h = handles.h[static_cast<size_t>(device)];
  if (h == nullptr) SKV_CUBLAS_CHECK(cublasCreate(&h));
  return h;
}

__global__ void cast_f32_to_bf16_kernel(const float* __restrict__ x, __nv_bfloat16* __restrict__ y, int64_t n,
                                        bool vec4) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vec4) {
    for (int64_t i = i0; i < n / 4; i += stride) {
      const float4 v = reinterpret_cast<const float4*>(x)[i];
      __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
      uint2 packed;
      packed.x = *reinterpret_cast<uint32_t*>(&lo);
      packed.y = *reinterpret_cast<uint32_t*>(&hi);
      reinterpret_cast<uint2*>(y)[i] = packed;
    }
  } else {
    for (int64_t i = i0; i < n; i += stride) y[i] = __float2bfloat16_rn(x[i]);
  }
}

__global__ void add_bias_kernel(float* __restrict__ out, const float* __restrict__ bias, int64_t n_rows,
                                int64_t cols) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_rows * cols; i += stride)
    out[i] += bias[i % cols];
}

__device__ __forceinline__ void bf16x8_to_f32(const uint4& v, float (&f)[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ uint4 load_stream16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// x [N, in] f32 (rounded to bf16 as it is read), w [out, in] bf16 (in % 8 == 0), out [N, out] f32 (+= when
// accumulate). A CTA of W warps computes R consecutive output rows. The inputs are cut into steps of 256 (32
// lanes x 8 inputs, one 16-byte load per lane and row); step s belongs to warp s % W, so the W warps read W
// consecutive 512-byte pieces of each row at once. Each warp works in blocks of U of its steps: the next
// block's U x R loads are in flight while this block's math runs. Warp-shuffle sums, then (W > 1) a sum over
// the warps in shared memory; bias and accumulate fused. The first block's weights are loaded before waiting
// for the previous kernel (PDL, common.cuh): they do not depend on it, so they stream while it finishes.
template <int N, int R, int U, int W>
__global__ __launch_bounds__(W * 32) void gemv_small_n_kernel(const float* __restrict__ x,
                                                             const __nv_bfloat16* __restrict__ w,
                                                             const float* __restrict__ bias, float* __restrict__ out,
                                                             int in, int out_f, bool accumulate) {
  constexpr int kStep = 256;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int row0 = blockIdx.x * R;
  const int n_steps = (in + kStep - 1) / kStep;
  const int my_steps = warp < n_steps ? (n_steps - warp + W - 1) / W : 0;  // steps warp, warp + W, ...

  auto load_block = [&](int j0, uint4 (&wv)[U][R]) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int k = (warp + W * (j0 + u)) * kStep + lane * 8;
#pragma unroll
      for (int r = 0; r < R; ++r)
        wv[u][r] = (k < in && row0 + r < out_f) ? load_stream16(w + static_cast<int64_t>(row0 + r) * in + k)
                                                : make_uint4(0, 0, 0, 0);
    }
  };
  uint4 wcur[U][R];
  load_block(0, wcur);
  pdl_enter();  // x (and out, when accumulating) come from the kernels before

  float acc[R][N];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < N; ++t) acc[r][t] = 0.0f;

  for (int j0 = 0; j0 < my_steps; j0 += U) {
    uint4 wnext[U][R];
    const bool more = j0 + U < my_steps;
    if (more) load_block(j0 + U, wnext);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int k = (warp + W * (j0 + u)) * kStep + lane * 8;
      if (k >= in) break;
      float xf[N][8];
#pragma unroll
      for (int t = 0; t < N; ++t) {
        const float4* xp = reinterpret_cast<const float4*>(x + static_cast<int64_t>(t) * in + k);
        const float4 a = __ldg(xp), b = __ldg(xp + 1);
        xf[t][0] = round_bf16(a.x), xf[t][1] = round_bf16(a.y), xf[t][2] = round_bf16(a.z), xf[t][3] = round_bf16(a.w);
        xf[t][4] = round_bf16(b.x), xf[t][5] = round_bf16(b.y), xf[t][6] = round_bf16(b.z), xf[t][7] = round_bf16(b.w);
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float wf[8];
        bf16x8_to_f32(wcur[u][r], wf);
#pragma unroll
        for (int t = 0; t < N; ++t)
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[r][t] = fmaf(wf[e], xf[t][e], acc[r][t]);
      }
    }
    if (more) {
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int r = 0; r < R; ++r) wcur[u][r] = wnext[u][r];
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < N; ++t) acc[r][t] = warp_sum(acc[r][t]);

  auto write = [&](int r, int t, float v) {
    if (row0 + r >= out_f) return;
    float* o = out + static_cast<int64_t>(t) * out_f + row0 + r;
    *o = (accumulate ? *o : 0.0f) + v + (bias != nullptr ? bias[row0 + r] : 0.0f);
  };
  if constexpr (W == 1) {
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int t = 0; t < N; ++t) write(r, t, acc[r][t]);
    }
  } else {
    __shared__ float partial[W][R * N];
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int t = 0; t < N; ++t) partial[warp][r * N + t] = acc[r][t];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < R * N; i += W * 32) {
      float v = 0.0f;
#pragma unroll
      for (int q = 0; q < W; ++q) v += partial[q][i];
      write(i / N, i % N, v);
    }
  }
}

// The kernel's shape: (R rows, U steps per block, W warps) per CTA. kGemvShapes[0] is the default; the others are
// the tuning sweep of bench_linear (gemv_shape_override).
struct GemvShape {
  int rows, unroll, warps;
};
// Chosen on an H200 (bench/results/2026-11-26-h200-decode-gemv.md; whole Llama-3.1-8B decode step at 32K):
// n = 1: 2 rows x 8 warps, 2 steps in flight (qkv 73%, o 68%, gate_up 95%, down 82% of streaming read; the
// step 0.79 -> 0.81 of its bound); n = 4: 4 rows x 4 warps, 1 step (57-73%; step 0.69 -> 0.76). From 5 tokens
// on cuBLAS's tensor cores win (kCudaGemvMaxTokens): this kernel's scalar FMAs become the limit.
constexpr GemvShape kGemvShapesSmallN[] = {{2, 2, 8}, {2, 4, 4}, {4, 2, 4}, {1, 4, 4}, {2, 1, 1}};  // n < 4
constexpr GemvShape kGemvShapesLargeN[] = {{4, 1, 4}, {1, 2, 8}, {2, 2, 4}, {1, 4, 4}, {2, 2, 1}};  // n >= 4

template <int N, int V>
void launch_gemv_shape(const float* x, const __nv_bfloat16* w, const float* bias, float* out, int in, int out_f,
                       bool accumulate, cudaStream_t stream) {
  constexpr GemvShape s = N >= 4 ? kGemvShapesLargeN[V] : kGemvShapesSmallN[V];
  const unsigned blocks = static_cast<unsigned>((out_f + s.rows - 1) / s.rows);
  launch_after_previous(gemv_small_n_kernel<N, s.rows, s.unroll, s.warps>, blocks, s.warps * 32, 0, stream, x, w,
                        bias, out, in, out_f, accumulate);
}

template <int N>
void launch_gemv(const float* x, const __nv_bfloat16* w, const float* bias, float* out, int in, int out_f,
                 bool accumulate, cudaStream_t stream) {
  switch (gemv_shape_override()) {
    case 1: launch_gemv_shape<N, 1>(x, w, bias, out, in, out_f, accumulate, stream); break;
    case 2: launch_gemv_shape<N, 2>(x, w, bias, out, in, out_f, accumulate, stream); break;
    case 3: launch_gemv_shape<N, 3>(x, w, bias, out, in, out_f, accumulate, stream); break;
    case 4: launch_gemv_shape<N, 4>(x, w, bias, out, in, out_f, accumulate, stream); break;
    default: launch_gemv_shape<N, 0>(x, w, bias, out, in, out_f, accumulate, stream); break;
  }
}

void gemv_small_n(int n, const float* x, const __nv_bfloat16* w, const float* bias, float* out, int in, int out_f,
                  bool accumulate, cudaStream_t stream) {
  switch (n) {
    case 1: launch_gemv<1>(x, w, bias, out, in, out_f, accumulate, stream); break;
    case 2: launch_gemv<2>(x, w, bias, out, in, out_f, accumulate, stream); break;
    case 3: launch_gemv<3>(x, w, bias, out, in, out_f, accumulate, stream); break;
    case 4: launch_gemv<4>(x, w, bias, out, in, out_f, accumulate, stream); break;
    case 5: launch_gemv<5>(x, w, bias, out, in, out_f, accumulate, stream); break;
    case 6: launch_gemv<6>(x, w, bias, out, in, out_f, accumulate, stream); break;
    case 7: launch_gemv<7>(x, w, bias, out, in, out_f, accumulate, stream); break;
    case 8: launch_gemv<8>(x, w, bias, out, in, out_f, accumulate, stream); break;
    default: SKV_ASSERT_MSG(false, "gemv_small_n: n must be 1..8");
  }
  SKV_CUDA_CHECK_LAUNCH();
}

}  // namespace

void linear_with_path(const LinearArgs& a, int path) {
  const int64_t n = a.x.dim(0), in = a.x.dim(1), out_f = a.w.dim(0);
  if (n == 0 || out_f == 0) return;
  SKV_ASSERT_MSG(n <= INT32_MAX && in <= INT32_MAX && out_f <= INT32_MAX, "linear: sizes beyond int32");
  OpContext ctx(a.out);
  const int device = a.out.device.index;
  float* out = a.out.ptr<float>();
  const float* bias = a.bias.empty() ? nullptr : a.bias.ptr<const float>();
  if (in == 0) {  // an empty sum: out = bias (or 0), or out += bias
    if (!a.accumulate)
      SKV_CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(n * out_f) * sizeof(float), ctx.stream));
    if (bias != nullptr) {
      add_bias_kernel<<<blocks_for(n * out_f, 256, 132LL * 16), 256, 0, ctx.stream>>>(out, bias, n, out_f);
      SKV_CUDA_CHECK_LAUNCH();
    }
    return;
  }
  cublasHandle_t handle = nullptr;
  const float alpha = 1.0f, beta = a.accumulate ? 1.0f : 0.0f;
  if (a.w.dtype == DType::kF32) {
    handle = cublas_handle(device);
    SKV_CUBLAS_CHECK(cublasSetStream(handle, ctx.stream));
    SKV_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out_f), static_cast<int>(n),
                                  static_cast<int>(in), &alpha, a.w.data, CUDA_R_32F, static_cast<int>(in), a.x.data,
                                  CUDA_R_32F, static_cast<int>(in), &beta, out, CUDA_R_32F, static_cast<int>(out_f),
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  } else {
    SKV_ASSERT(a.w.dtype == DType::kBF16);
    const bool small_ok = n <= 8 && in % 8 == 0 && aligned16(a.w.data) && aligned16(a.x.data);
    const bool use_small = small_ok && ((path == 0 && n <= kCudaGemvMaxTokens) || path == 2);
    if (use_small) {
      gemv_small_n(static_cast<int>(n), a.x.ptr<const float>(), a.w.ptr<const __nv_bfloat16>(), bias, out,
                   static_cast<int>(in), static_cast<int>(out_f), a.accumulate, ctx.stream);
      return;  // bias and accumulate fused
    }
    auto* xb = static_cast<__nv_bfloat16*>(
        scratch(ScratchSlot::kLinearInput, static_cast<size_t>(n * in) * sizeof(__nv_bfloat16), device));
    cast_f32_to_bf16_kernel<<<blocks_for(n * in / 4 + 1, 256, 132LL * 8), 256, 0, ctx.stream>>>(
        a.x.ptr<const float>(), xb, n * in, (n * in) % 4 == 0 && aligned16(a.x.data));
    SKV_CUDA_CHECK_LAUNCH();
    handle = cublas_handle(device);
    SKV_CUBLAS_CHECK(cublasSetStream(handle, ctx.stream));
    SKV_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out_f), static_cast<int>(n),
                                  static_cast<int>(in), &alpha, a.w.data, CUDA_R_16BF, static_cast<int>(in), xb,
                                  CUDA_R_16BF, static_cast<int>(in), &beta, out, CUDA_R_32F, static_cast<int>(out_f),
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  if (bias != nullptr) {
    add_bias_kernel<<<blocks_for(n * out_f, 256, 132LL * 16), 256, 0, ctx.stream>>>(out, bias, n, out_f);
    SKV_CUDA_CHECK_LAUNCH();
  }
}

void linear(const LinearArgs& a) { linear_with_path(a, 0); }

}  // namespace skv::cuda
