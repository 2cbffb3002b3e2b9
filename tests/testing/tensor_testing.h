// Test helpers: random tensors and EXPECT_TENSOR_NEAR (every element within atol + rtol*|want|).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/buffer.h"
#include "core/tensor.h"

namespace skv::testing {

// Uniform values in [lo, hi) from a seeded generator; never all zeros.
std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f);
HostBuffer random_tensor(Shape shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f);

// Compares element-wise; fails on NaN/Inf in either, on a size mismatch, and on an all-zero reference.
// Reports the worst element and its flat index.
::testing::AssertionResult tensors_near(const float* got, const float* want, size_t n, double atol, double rtol);
::testing::AssertionResult tensors_near(const TensorView& got, const TensorView& want, double atol, double rtol);

// Relative L2 error ||got - want|| / ||want||.
double relative_l2_error(const float* got, const float* want, size_t n);

}  // namespace skv::testing

#define EXPECT_TENSOR_NEAR(got, want, atol, rtol) EXPECT_TRUE(::skv::testing::tensors_near((got), (want), (atol), (rtol)))
#define ASSERT_TENSOR_NEAR(got, want, atol, rtol) ASSERT_TRUE(::skv::testing::tensors_near((got), (want), (atol), (rtol)))
