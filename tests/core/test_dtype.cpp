// dtype conversions: bf16 and f16 round-trips, rounding to nearest even, special values.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "core/dtype.h"
#include "core/tensor.h"

namespace skv {
namespace {

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  // 1 + 2^-8 is exactly half-way between two bf16 values: rounds to the even one (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(DType, F16RoundTripsAndSpecials) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.333251953125f}) {
    EXPECT_EQ(f16_to_f32(f32_to_f16(v)), v) << v;
  }
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
}

TEST(Tensor, ContiguousViewsAndSlices) {
  float data[12];
  TensorView t(data, DType::kF32, {3, 4});
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.strides[0], 4);
  TensorView rows = t.slice_rows(1, 3);
  EXPECT_EQ(rows.ptr<float>(), data + 4);
  EXPECT_EQ(rows.shape, Shape({2, 4}));
  EXPECT_EQ(t.reshape({12}).numel(), 12);
  EXPECT_EQ(t.describe(), "[3, 4] f32");
}

}  // namespace
}  // namespace skv
