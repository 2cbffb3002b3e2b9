// The CUDA side of device_util.h: cudaMemGetInfo and the random/constant fills, on the current stream.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "backend/device.h"
#include "model/device_util.h"

namespace skv {
namespace {

template <typename T>
__global__ void fill_uniform_kernel(T* p, uint64_t n, uint64_t seed, float scale) {
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    const float v = scale * (2.0f * hash_uniform(seed, i) - 1.0f);
    if constexpr (sizeof(T) == 4) p[i] = v;
    else p[i] = __float2bfloat16_rn(v);
  }
}

template <typename T>
__global__ void fill_constant_kernel(T* p, uint64_t n, float value) {
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    if constexpr (sizeof(T) == 4) p[i] = value;
    else p[i] = __float2bfloat16_rn(value);
  }
}

unsigned grid_for(uint64_t n) {
  const uint64_t b = (n + 255) / 256;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 8192 ? 8192 : b));
}

}  // namespace

DeviceMemoryInfo device_memory_info(int device) {
  DeviceGuard guard(device);
  size_t free_b = 0, total_b = 0;
  SKV_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return {static_cast<int64_t>(free_b), static_cast<int64_t>(total_b)};
}

namespace detail {

void fill_uniform_cuda(const TensorView& t, uint64_t seed, float scale) {
  DeviceGuard guard(t.device.index);
  const auto n = static_cast<uint64_t>(t.numel());
  if (n == 0) return;
  cudaStream_t s = current_stream(t.device.index);
  if (t.dtype == DType::kF32)
    fill_uniform_kernel<float><<<grid_for(n), 256, 0, s>>>(t.ptr<float>(), n, seed, scale);
  else
    fill_uniform_kernel<__nv_bfloat16><<<grid_for(n), 256, 0, s>>>(t.ptr<__nv_bfloat16>(), n, seed, scale);
  SKV_CUDA_CHECK(cudaGetLastError());
}

void fill_constant_cuda(const TensorView& t, float value) {
  DeviceGuard guard(t.device.index);
  const auto n = static_cast<uint64_t>(t.numel());
  if (n == 0) return;
  cudaStream_t s = current_stream(t.device.index);
  if (t.dtype == DType::kF32)
    fill_constant_kernel<float><<<grid_for(n), 256, 0, s>>>(t.ptr<float>(), n, value);
  else
    fill_constant_kernel<__nv_bfloat16><<<grid_for(n), 256, 0, s>>>(t.ptr<__nv_bfloat16>(), n, value);
  SKV_CUDA_CHECK(cudaGetLastError());
}

}  // namespace detail
}  // namespace skv
