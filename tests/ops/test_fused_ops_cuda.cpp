// The CUDA twins of the fused ops (linear with accumulate on every path, packed swiglu, split_qkv_rope) against
// the CPU on fresh random inputs and awkward shapes. Outputs are poisoned with NaN first. Skipped without a
// CUDA device.
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ops/cuda/cuda_ops.h"
#include "ops/ops.h"
#include "testing/cuda_testing.h"

namespace skv {
namespace {

using testing::finite_and_close_l2;
using testing::random_tensor;
using testing::rounded_bf16;
using testing::to_device;
using testing::to_host;

TEST(FusedOpsCuda, LinearAccumulateMatchesCpu) {
  SKV_REQUIRE_CUDA_OR_SKIP();
  struct Case { int64_t n, in, out; };
  for (Case c : {Case{1, 64, 33}, Case{3, 136, 7}, Case{8, 4096, 1024}, Case{9, 256, 300}, Case{2, 14336, 64},
                 Case{1, 1, 5}}) {
    auto x = random_tensor({c.n, c.in}, 50 + static_cast<uint64_t>(c.n * c.in));
    auto w = random_tensor({c.out, c.in}, 51 + static_cast<uint64_t>(c.out));
    auto b = random_tensor({c.out}, 52);
    auto y0 = random_tensor({c.n, c.out}, 53, -3, 3);
    const HostBuffer w_rounded = rounded_bf16(w);
    for (bool bf16 : {true, false}) {
      HostBuffer want(DType::kF32, {c.n, c.out});
      std::memcpy(want.data(), y0.data(), want.bytes());
      linear({.x = x.view(), .w = bf16 ? w_rounded.view() : w.view(), .bias = b.view(), .out = want.view(),
              .accumulate = true});
      DeviceBuffer dx = to_device(x), dw = to_device(w, bf16 ? DType::kBF16 : DType::kF32), db = to_device(b);
      for (int path : bf16 ? std::vector<int>{0, 1, 2} : std::vector<int>{0}) {
        DeviceBuffer dout = to_device(y0);
        cuda::linear_with_path({.x = dx.view(), .w = dw.view(), .bias = db.view(), .out = dout.view(),
                                .accumulate = true},
                               path);
        const std::string what = std::to_string(c.n) + "x" + std::to_string(c.in) + "->" + std::to_string(c.out) +
                                 (bf16 ? " bf16 path " + std::to_string(path) : " f32");
        EXPECT_TRUE(finite_and_close_l2(to_host(dout.view()), want, bf16 ? 1e-2 : 1e-5)) << what;
      }
    }
  }
}

TEST(FusedOpsCuda, SwigluPackedMatchesCpu) {
  SKV_REQUIRE_CUDA_OR_SKIP();
  for (int64_t rows : {1, 3, 130})
    for (int64_t hidden : {1, 3, 64, 14336}) {
      auto packed = random_tensor({rows, 2 * hidden}, 60 + static_cast<uint64_t>(rows + hidden), -6, 6);
      HostBuffer want(DType::kF32, {rows, hidden});
      swiglu({.gate = packed.view(), .out = want.view()});
      DeviceBuffer dp = to_device(packed), dout(DType::kF32, {rows, hidden});
      testing::poison_nan(dout.view());
      swiglu({.gate = dp.view(), .out = dout.view()});
      EXPECT_TENSOR_NEAR(to_host(dout.view()).view(), want.view(), 1e-6, 1e-5) << rows << "x" << hidden;
    }
}

TEST(FusedOpsCuda, SplitQkvRopeMatchesCpu) {
  SKV_REQUIRE_CUDA_OR_SKIP();
  struct Case { int64_t n, hq, hkv, d; double scale; };
  for (Case c : {Case{1, 32, 8, 128, 1.0}, Case{5, 6, 6, 48, 1.0}, Case{130, 8, 2, 64, 0.25}, Case{2, 4, 1, 2, 1.0}}) {
    const int64_t row = (c.hq + 2 * c.hkv) * c.d;
    auto qkv = random_tensor({c.n, row}, 70 + static_cast<uint64_t>(c.n * row));
    auto inv_freq = random_tensor({c.d / 2}, 71, 1e-4f, 1.0f);
    std::vector<int64_t> positions(static_cast<size_t>(c.n));
    for (int64_t t = 0; t < c.n; ++t) positions[static_cast<size_t>(t)] = 120000 + 13 * t;
    const TensorView pos(positions.data(), DType::kI64, {c.n});
    HostBuffer q(DType::kF32, {c.n, c.hq, c.d}), k(DType::kF32, {c.n, c.hkv, c.d}), v(DType::kF32, {c.n, c.hkv, c.d}),
        kp(DType::kF32, {c.n, c.hkv, c.d});
    split_qkv_rope({.qkv = qkv.view(), .positions = pos, .inv_freq = inv_freq.view(), .position_scale = c.scale,
                    .q = q.view(), .k = k.view(), .v = v.view(), .k_pre = kp.view()});
    DeviceBuffer dqkv = to_device(qkv), dfreq = to_device(inv_freq);
    DeviceBuffer dpos = testing::ints_to_device(positions, DType::kI64);
    DeviceBuffer dq(DType::kF32, {c.n, c.hq, c.d}), dk(DType::kF32, {c.n, c.hkv, c.d}),
        dv(DType::kF32, {c.n, c.hkv, c.d}), dkp(DType::kF32, {c.n, c.hkv, c.d});
    for (const DeviceBuffer* b : {&dq, &dk, &dv, &dkp}) testing::poison_nan(b->view());
    split_qkv_rope({.qkv = dqkv.view(), .positions = dpos.view(), .inv_freq = dfreq.view(), .position_scale = c.scale,
                    .q = dq.view(), .k = dk.view(), .v = dv.view(), .k_pre = dkp.view()});
    const std::string what = std::to_string(c.n) + " tokens, " + std::to_string(c.hq) + "/" + std::to_string(c.hkv) +
                             " heads x " + std::to_string(c.d);
    // The angle is computed in double on both sides; cos/sin and the products in f32.
    EXPECT_TENSOR_NEAR(to_host(dq.view()).view(), q.view(), 1e-5, 1e-5) << what;
    EXPECT_TENSOR_NEAR(to_host(dk.view()).view(), k.view(), 1e-5, 1e-5) << what;
    EXPECT_TENSOR_NEAR(to_host(dv.view()).view(), v.view(), 0, 0) << what;
    EXPECT_TENSOR_NEAR(to_host(dkp.view()).view(), kp.view(), 0, 0) << what;
    // Without k_pre nothing else changes.
    DeviceBuffer dq2(DType::kF32, {c.n, c.hq, c.d});
    split_qkv_rope({.qkv = dqkv.view(), .positions = dpos.view(), .inv_freq = dfreq.view(), .position_scale = c.scale,
                    .q = dq2.view(), .k = dk.view(), .v = dv.view()});
    EXPECT_TENSOR_NEAR(to_host(dq2.view()).view(), q.view(), 1e-5, 1e-5) << what << " without k_pre";
  }
}

}  // namespace
}  // namespace skv
