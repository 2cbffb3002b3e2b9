// Hopper's tensor memory accelerator (TMA) and transaction barriers (mbarrier), sm_90: a 2D tensor map over a
// row-major bf16 matrix (host, tensor maps are built per call), the bulk tensor copy into shared memory that
// completes on an mbarrier, and the mbarrier operations a producer/consumer pipeline needs.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "ops/cuda/common.cuh"

namespace skv::cuda {

// A tensor map over `rows` x `cols` bf16 elements, row stride `row_stride` elements (a multiple of 8), read in
// boxes of box_rows x box_cols (box_cols * 2 <= 128 bytes) into the 128-byte swizzled layout (wgmma.cuh's
// sw128_offset: row r's 16-byte chunk c at r * 128 + ((c ^ (r % 8)) * 16)). Rows or columns past the end read
// as zeros. Throws if the driver has no TMA or refuses the shape.
CUtensorMap make_bf16_tensor_map_sw128(const void* base, int64_t rows, int64_t cols, int64_t row_stride,
                                       int box_rows, int box_cols);

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900

__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(arrivals) : "memory");
}
// Makes the initialized barriers visible to the other threads (and the async proxy); then a CTA barrier.
__device__ __forceinline__ void mbarrier_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
// One arrival that also announces `bytes` of transactions (bulk copies) the phase must wait for.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
// Waits until the phase of parity `parity` has completed.
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_addr(bar)), "r"(parity)
        : "memory");
  } while (!done);
}

// Box at (column x, row y) of the tensor map -> shared memory at dst (1024-byte aligned for the 128-byte
// swizzle); its bytes complete a transaction on `bar`.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int x, int y, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(smem_addr(bar))
      : "memory");
}

// Barrier `id` (1-15; 0 is __syncthreads) over `threads` threads (a multiple of 32).
template <int kId, int kThreadCount>
__device__ __forceinline__ void named_barrier_sync() {
  asm volatile("bar.sync %0, %1;\n" ::"n"(kId), "n"(kThreadCount) : "memory");
}

#endif  // sm_90

}  // namespace skv::cuda
