// Device helpers of the model layer: free/total device memory (the planner's input) and deterministic random
// weights generated where they live (so an 8B model never needs a host copy). CPU builds: device_memory_info and
// fills of CUDA tensors throw "built without CUDA".
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace skv {

struct DeviceMemoryInfo {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
};
// cudaMemGetInfo of `device`.
DeviceMemoryInfo device_memory_info(int device = 0);

// Fills an f32 or bf16 tensor (CPU or CUDA) with uniform values in [-scale, scale), a pure function of
// (seed, element index): the CPU and CUDA fills of one seed agree (up to bf16 rounding).
void fill_uniform(const TensorView& t, uint64_t seed, float scale);
// Fills an f32 or bf16 tensor with one value.
void fill_constant(const TensorView& t, float value);

#ifdef __CUDACC__
#define SKV_HOST_DEVICE __host__ __device__
#else
#define SKV_HOST_DEVICE
#endif

// The hash both fills use (the CPU loop and the CUDA kernel call this one function, so they cannot drift):
// a uniform float in [0, 1) from (seed, i).
SKV_HOST_DEVICE inline float hash_uniform(uint64_t seed, uint64_t i) {
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ (seed * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<float>(x >> 40) * (1.0f / 16777216.0f);
}

}  // namespace skv
