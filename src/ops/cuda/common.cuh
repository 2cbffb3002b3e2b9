// Shared helpers of the CUDA ops: error checks, the current stream, programmatic dependent launch, bf16
// conversion, warp/block reductions and the tensor-core primitives (ldmatrix, mma.sync m16n8k16 bf16, cp.async).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <utility>

#include "backend/device.h"
#include "core/tensor.h"

// After every launch: the launch configuration error, if any, as an skv::Error.
#define SKV_CUDA_CHECK_LAUNCH() SKV_CUDA_CHECK(cudaGetLastError())

namespace skv::cuda {

// Makes the tensors' device current for the op and names its stream.
struct OpContext {
  explicit OpContext(const TensorView& t) : guard(t.device.index), stream(current_stream(t.device.index)) {}
  DeviceGuard guard;
  cudaStream_t stream;
};

inline unsigned blocks_for(int64_t n, int threads, int64_t cap = 65535LL * 32) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > cap) b = cap;
  return static_cast<unsigned>(b);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// The vectorized kernels need aligned base pointers (DeviceBuffer memory is 256-byte aligned; a view into it
// may not be): a misaligned view is an argument error, not a fault.
inline void require_aligned(const char* op, const char* name, const TensorView& t, uintptr_t bytes) {
  if (!t.empty() && (reinterpret_cast<uintptr_t>(t.data) % bytes) != 0)
    throw Error(ErrorCode::kInvalidArgument, std::string(op) + ": " + name + " must be " + std::to_string(bytes) +
                                                 "-byte aligned on CUDA");
}

// ---- programmatic dependent launch (PDL, sm_90)
//
// A decode step is a chain of ~400 short kernels (12 per layer at batch 1, 3-60 us each): between two of them
// the GPU drains one grid, then launches the next and waits for its first memory reads, a few microseconds of
// idle bandwidth per boundary. With PDL the next kernel's CTAs start while the previous kernel's last CTAs run;
// each does its independent work (a GEMV issues its first weight loads) and then waits for the previous grid
// to complete and flush its memory (wait_for_previous_grid) before it reads or writes anything that grid (or an
// earlier one) touches. Rules for a kernel launched with launch_after_previous():
//  - EVERY thread calls wait_for_previous_grid() before its first dependent global access, on every path, early
//    exits included (a grid whose CTAs never wait could complete before its predecessor, breaking the chain
//    for the kernel after it);
//  - it then calls allow_next_grid_launch(), so at most one grid waits ahead of the running one.
// Without PDL (older devices, set_programmatic_launch(false)) both instructions are no-ops and the launch is an
// ordinary one. Graph capture keeps the programmatic edges.

__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_next_grid_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// The first line of a kernel with nothing to do before its inputs are ready.
__device__ __forceinline__ void pdl_enter() {
  wait_for_previous_grid();
  allow_next_grid_launch();
}

// Launches `kernel` on `stream`, allowed to overlap the previous kernel in the stream when PDL is enabled for
// the current device (the kernel must follow the rules above). Checks the launch.
template <typename... Params, typename... Args>
void launch_after_previous(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream,
                           Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem_bytes;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = programmatic_launch_enabled(current_device()) ? 1 : 0;
  config.attrs = attribute;
  config.numAttrs = 1;
  SKV_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

// ---- element loads as float

template <typename T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <>
__device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }

// ---- reductions

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float s = lane < n_warps ? partial[lane] : 0.0f;
  return warp_sum(s);
}

// ---- tensor-core primitives (sm_80+)

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte cp.async global -> shared; src_bytes 0 writes zeros (used for rows past the end).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                                                  const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_addr(p)));
}

// d = a(16x16 bf16, row) * b(16x8 bf16, col) + d, f32 accumulators.
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as a bf16x2 register: lo in the low half (the lower column index).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// 2^x (ex2.approx: ~2 ulp; -inf gives 0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace skv::cuda
