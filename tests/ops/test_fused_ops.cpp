// The fused ops of the forward pass against their unfused definitions on the CPU: linear with accumulate
// (= linear, then add), swiglu on packed [gate | up] rows (= swiglu on separate tensors), split_qkv_rope
// (= slicing the fused projection, then rope on q and k). The CUDA twins are tested against these in
// test_fused_ops_cuda.cpp.
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "core/buffer.h"
#include "ops/ops.h"
#include "testing/tensor_testing.h"

namespace skv {
namespace {

using testing::random_tensor;

TEST(FusedOps, LinearAccumulateAddsToOut) {
  for (int64_t n : {1, 5}) {
    const int64_t in = 37, out_f = 19;
    auto x = random_tensor({n, in}, 1 + static_cast<uint64_t>(n));
    auto w = random_tensor({out_f, in}, 2);
    auto b = random_tensor({out_f}, 3);
    auto y0 = random_tensor({n, out_f}, 4, -5, 5);
    HostBuffer plain(DType::kF32, {n, out_f}), want(DType::kF32, {n, out_f}), got(DType::kF32, {n, out_f});
    linear({.x = x.view(), .w = w.view(), .bias = b.view(), .out = plain.view()});
    add({.a = y0.view(), .b = plain.view(), .out = want.view()});
    std::memcpy(got.data(), y0.data(), got.bytes());
    linear({.x = x.view(), .w = w.view(), .bias = b.view(), .out = got.view(), .accumulate = true});
    EXPECT_TENSOR_NEAR(got.view(), want.view(), 1e-5, 1e-5) << "n " << n;
  }
  // out aliasing x is rejected (the product would read what it writes).
  auto sq = random_tensor({4, 4}, 5);
  auto w = random_tensor({4, 4}, 6);
  EXPECT_THROW(linear({.x = sq.view(), .w = w.view(), .out = sq.view(), .accumulate = true}), Error);
}

TEST(FusedOps, SwigluPackedEqualsSeparate) {
  for (int64_t rows : {1, 7})
    for (int64_t hidden : {1, 3, 64, 129}) {
      auto packed = random_tensor({rows, 2 * hidden}, 10 + static_cast<uint64_t>(rows * hidden), -4, 4);
      HostBuffer gate(DType::kF32, {rows, hidden}), up(DType::kF32, {rows, hidden});
      for (int64_t r = 0; r < rows; ++r) {
        std::memcpy(gate.ptr<float>() + r * hidden, packed.ptr<float>() + r * 2 * hidden, hidden * sizeof(float));
        std::memcpy(up.ptr<float>() + r * hidden, packed.ptr<float>() + r * 2 * hidden + hidden, hidden * sizeof(float));
      }
      HostBuffer want(DType::kF32, {rows, hidden}), got(DType::kF32, {rows, hidden});
      swiglu({.gate = gate.view(), .up = up.view(), .out = want.view()});
      swiglu({.gate = packed.view(), .out = got.view()});
      EXPECT_TENSOR_NEAR(got.view(), want.view(), 0, 0) << rows << "x" << hidden;
    }
  auto packed = random_tensor({3, 8}, 20);
  HostBuffer wrong(DType::kF32, {3, 5});
  EXPECT_THROW(swiglu({.gate = packed.view(), .out = wrong.view()}), Error);
  EXPECT_THROW(swiglu({.gate = packed.view(), .out = packed.view().reshape({6, 4})}), Error);
  // a partial overlap (out starting inside gate's second row) is refused too
  EXPECT_THROW(swiglu({.gate = packed.view(), .out = TensorView(packed.ptr<float>() + 8, DType::kF32, {2, 4})}), Error);
}

// split_qkv_rope against the definition: columns [0, hq*d) are q, then k, then v; q and k rotated by `rope`.
void check_split_qkv_rope(int64_t n, int64_t hq, int64_t hkv, int64_t d, bool with_k_pre, double scale) {
  const int64_t row = (hq + 2 * hkv) * d;
  auto qkv = random_tensor({n, row}, 30 + static_cast<uint64_t>(n * row));
  auto inv_freq = random_tensor({d / 2}, 31, 1e-4f, 1.0f);
  std::vector<int64_t> positions(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) positions[static_cast<size_t>(t)] = 131000 - 977 * t;  // long, unsorted
  const TensorView pos(positions.data(), DType::kI64, {n});
  HostBuffer q_want(DType::kF32, {n, hq, d}), k_want(DType::kF32, {n, hkv, d}), v_want(DType::kF32, {n, hkv, d});
  for (int64_t t = 0; t < n; ++t) {
    const float* src = qkv.ptr<float>() + t * row;
    std::memcpy(q_want.ptr<float>() + t * hq * d, src, hq * d * sizeof(float));
    std::memcpy(k_want.ptr<float>() + t * hkv * d, src + hq * d, hkv * d * sizeof(float));
    std::memcpy(v_want.ptr<float>() + t * hkv * d, src + (hq + hkv) * d, hkv * d * sizeof(float));
  }
  HostBuffer k_pre_want(DType::kF32, {n, hkv, d});
  std::memcpy(k_pre_want.data(), k_want.data(), k_want.bytes());
  rope({.x = q_want.view(), .positions = pos, .inv_freq = inv_freq.view(), .position_scale = scale});
  rope({.x = k_want.view(), .positions = pos, .inv_freq = inv_freq.view(), .position_scale = scale});
  HostBuffer q(DType::kF32, {n, hq, d}), k(DType::kF32, {n, hkv, d}), v(DType::kF32, {n, hkv, d}),
      k_pre(DType::kF32, {n, hkv, d});
  split_qkv_rope({.qkv = qkv.view(), .positions = pos, .inv_freq = inv_freq.view(), .position_scale = scale,
                  .q = q.view(), .k = k.view(), .v = v.view(), .k_pre = with_k_pre ? k_pre.view() : TensorView{}});
  EXPECT_TENSOR_NEAR(q.view(), q_want.view(), 0, 0);
  EXPECT_TENSOR_NEAR(k.view(), k_want.view(), 0, 0);
  EXPECT_TENSOR_NEAR(v.view(), v_want.view(), 0, 0);
  if (with_k_pre) {
    EXPECT_TENSOR_NEAR(k_pre.view(), k_pre_want.view(), 0, 0);
  }
}

TEST(FusedOps, SplitQkvRopeEqualsSliceThenRope) {
  check_split_qkv_rope(1, 4, 1, 8, true, 1.0);
  check_split_qkv_rope(7, 6, 6, 48, false, 1.0);   // MHA, head_dim 48 (stories15M)
  check_split_qkv_rope(33, 8, 2, 64, true, 0.25);  // GQA 4:1, linear scaling
  check_split_qkv_rope(3, 32, 8, 128, true, 1.0);  // Llama-3.1-8B's heads
}

TEST(FusedOps, SplitQkvRopeRejectsBadShapes) {
  auto qkv = random_tensor({2, (4 + 2) * 8}, 40);
  auto inv_freq = random_tensor({4}, 41);
  std::vector<int64_t> positions{0, 1};
  const TensorView pos(positions.data(), DType::kI64, {2});
  HostBuffer q(DType::kF32, {2, 4, 8}), k(DType::kF32, {2, 1, 8}), v(DType::kF32, {2, 1, 8});
  EXPECT_NO_THROW(split_qkv_rope({.qkv = qkv.view(), .positions = pos, .inv_freq = inv_freq.view(), .q = q.view(),
                                  .k = k.view(), .v = v.view()}));
  HostBuffer k2(DType::kF32, {2, 2, 8});  // 2 KV heads do not fit the 6-head qkv rows
  EXPECT_THROW(split_qkv_rope({.qkv = qkv.view(), .positions = pos, .inv_freq = inv_freq.view(), .q = q.view(),
                               .k = k2.view(), .v = k2.view()}),
               Error);
  HostBuffer v_bad(DType::kF32, {2, 1, 4});
  EXPECT_THROW(split_qkv_rope({.qkv = qkv.view(), .positions = pos, .inv_freq = inv_freq.view(), .q = q.view(),
                               .k = k.view(), .v = v_bad.view()}),
               Error);
  // outputs overlapping the input or each other
  EXPECT_THROW(split_qkv_rope({.qkv = qkv.view(), .positions = pos, .inv_freq = inv_freq.view(),
                               .q = TensorView(qkv.ptr<float>(), DType::kF32, {2, 4, 8}), .k = k.view(),
                               .v = v.view()}),
               Error);
  EXPECT_THROW(split_qkv_rope({.qkv = qkv.view(), .positions = pos, .inv_freq = inv_freq.view(), .q = q.view(),
                               .k = k.view(), .v = k.view()}),
               Error);
  auto bad_freq = random_tensor({3}, 42);
  EXPECT_THROW(split_qkv_rope({.qkv = qkv.view(), .positions = pos, .inv_freq = bad_freq.view(), .q = q.view(),
                               .k = k.view(), .v = v.view()}),
               Error);
}

}  // namespace
}  // namespace skv
