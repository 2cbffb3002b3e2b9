// Test helpers for CUDA twins: host <-> device copies in any float dtype, NaN poisoning (so an element a kernel
// did not write shows), and a relative-L2 comparison that also requires every element to be finite. Needs a
// CUDA build to run; compiles in both (the device functions throw "built without CUDA" otherwise).
#pragma once

#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "backend/device.h"
#include "core/buffer.h"
#include "testing/tensor_testing.h"

namespace skv::testing {

// Skips without a device, unless SKV_REQUIRE_CUDA is set (scripts/gpu_check.sh): then a missing device fails.
#define SKV_REQUIRE_CUDA_OR_SKIP()                                                                      \
  do {                                                                                                  \
    if (!::skv::cuda_available()) {                                                                     \
      if (std::getenv("SKV_REQUIRE_CUDA") != nullptr) FAIL() << "SKV_REQUIRE_CUDA is set but no CUDA device"; \
      GTEST_SKIP() << "no CUDA device";                                                                 \
    }                                                                                                   \
  } while (0)

// A device copy of f32 host data in dtype dt (f32, bf16 or f16).
inline DeviceBuffer to_device(const float* data, Shape shape, DType dt = DType::kF32) {
  const auto n = static_cast<size_t>(shape.numel());
  DeviceBuffer d(dt, shape);
  if (dt == DType::kF32) {
    copy_to_device(d.view(), TensorView(const_cast<float*>(data), DType::kF32, shape));
  } else {
    std::vector<uint16_t> bits(n);
    for (size_t i = 0; i < n; ++i) bits[i] = dt == DType::kBF16 ? f32_to_bf16(data[i]) : f32_to_f16(data[i]);
    copy_to_device(d.view(), TensorView(bits.data(), dt, shape));
  }
  return d;
}
inline DeviceBuffer to_device(const HostBuffer& h, DType dt = DType::kF32) {
  return to_device(h.ptr<float>(), h.view().shape, dt);
}

template <typename T>
DeviceBuffer ints_to_device(const std::vector<T>& v, DType dt) {
  DeviceBuffer d(dt, {static_cast<int64_t>(v.size())});
  copy_to_device(d.view(), TensorView(const_cast<T*>(v.data()), dt, {static_cast<int64_t>(v.size())}));
  return d;
}

// f32 values rounded through bf16 (what a CPU twin gets when the GPU gets bf16).
inline HostBuffer rounded_bf16(const HostBuffer& h) {
  HostBuffer r(DType::kF32, h.view().shape);
  for (int64_t i = 0; i < h.view().numel(); ++i) r.ptr<float>()[i] = bf16_to_f32(f32_to_bf16(h.ptr<float>()[i]));
  return r;
}

// Fills a device f32 tensor with NaN.
inline void poison_nan(const TensorView& d) {
  std::vector<float> nan(static_cast<size_t>(d.numel()), std::numeric_limits<float>::quiet_NaN());
  copy_to_device(d, TensorView(nan.data(), DType::kF32, d.shape));
}

// Waits for the device, then copies an f32 device tensor back.
inline HostBuffer to_host(const TensorView& d) {
  HostBuffer h(DType::kF32, d.shape);
  synchronize_device(d.device.index);
  copy_to_host(h.view(), d);
  return h;
}

// Every element finite (the kernel wrote it) and the relative L2 error within tol.
inline ::testing::AssertionResult finite_and_close_l2(const HostBuffer& got, const HostBuffer& want, double tol) {
  const TensorView g = got.view(), w = want.view();
  if (!(g.shape == w.shape)) return ::testing::AssertionFailure() << "shapes differ";
  const auto n = static_cast<size_t>(g.numel());
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(got.ptr<float>()[i]))
      return ::testing::AssertionFailure() << "element " << i << " is " << got.ptr<float>()[i] << " (not written?)";
  const double err = relative_l2_error(got.ptr<float>(), want.ptr<float>(), n);
  if (!(err <= tol)) return ::testing::AssertionFailure() << "relative L2 error " << err << " > " << tol;
  return ::testing::AssertionSuccess() << "relative L2 error " << err;
}

}  // namespace skv::testing
