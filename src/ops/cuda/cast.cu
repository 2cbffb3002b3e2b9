// cast_rows on CUDA: one block per source row (grid-strided), f32 -> f32/bf16, dense or scattered.
#include <type_traits>

#include "ops/cuda/common.cuh"
#include "ops/cuda/cuda_ops.h"

namespace skv::cuda {
namespace {

template <typename T>
__global__ void cast_rows_kernel(const float* __restrict__ src, T* __restrict__ dst, const int64_t* __restrict__ rows,
                                 int64_t n_rows, int64_t row, int64_t n_dst) {
  pdl_enter();
  for (int64_t i = blockIdx.x; i < n_rows; i += gridDim.x) {
    const int64_t r = rows != nullptr ? rows[i] : i;
    if (r < 0 || r >= n_dst) continue;  // skipped, never written out of bounds
    const float* s = src + i * row;
    T* d = dst + r * row;
    for (int64_t j = threadIdx.x; j < row; j += blockDim.x) {
      if constexpr (std::is_same_v<T, float>)
        d[j] = s[j];
      else
        d[j] = __float2bfloat16_rn(s[j]);
    }
  }
}

}  // namespace

void cast_rows(const CastRowsArgs& a) {
  OpContext ctx(a.src);
  const int64_t n = a.src.dim(0), row = a.src.dim(1), n_dst = a.dst.dim(0);
  const int64_t* rows = a.dst_rows.empty() ? nullptr : a.dst_rows.ptr<const int64_t>();
  const unsigned blocks = static_cast<unsigned>(n < 65535 ? n : 65535);
  const int threads = row >= 256 ? 256 : 128;
  if (a.dst.dtype == DType::kF32)
    launch_after_previous(cast_rows_kernel<float>, blocks, threads, 0, ctx.stream, a.src.ptr<const float>(),
                          a.dst.ptr<float>(), rows, n, row, n_dst);
  else
    launch_after_previous(cast_rows_kernel<__nv_bfloat16>, blocks, threads, 0, ctx.stream, a.src.ptr<const float>(),
                          a.dst.ptr<__nv_bfloat16>(), rows, n, row, n_dst);
  SKV_CUDA_CHECK_LAUNCH();
}

}  // namespace skv::cuda
