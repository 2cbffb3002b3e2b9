// softmax_exp.h: the CPU softmax's vectorizable exponential against double-precision exp.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "ops/cpu/softmax_exp.h"

namespace skv::cpu {
namespace {

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

// Every 61st float of [-87, 0] (about 18M of the 1.1G; the exhaustive sweep gave 8.53e-8 at -5.89113).
TEST(SoftmaxExp, WithinOneUlpOverTheSoftmaxRange) {
  const uint32_t lo = 0x80000000u, hi = 0xC2AE0000u;  // -0.0 .. -87.0
  double worst = 0.0;
  float worst_x = 0.0f;
  for (uint64_t b = lo; b <= hi; b += 61) {
    const float x = from_bits(static_cast<uint32_t>(b));
    const double want = std::exp(static_cast<double>(x));
    const double rel = std::fabs(static_cast<double>(exp_nonpositive(x)) - want) / want;
    if (rel > worst) worst = rel, worst_x = x;
  }
  EXPECT_LT(worst, 8.7e-8) << "at x = " << worst_x;
  for (float x : {-5.89113f, -1e-30f, -0.5f * 0.6931472f, 0.5f * -0.6931472f - 1e-7f, -86.99f}) {
    const double want = std::exp(static_cast<double>(x));
    EXPECT_LT(std::fabs(exp_nonpositive(x) - want) / want, 8.7e-8) << x;
  }
}

TEST(SoftmaxExp, EndsOfTheRange) {
  EXPECT_EQ(exp_nonpositive(0.0f), 1.0f);
  EXPECT_EQ(exp_nonpositive(-0.0f), 1.0f);
  const float floor = exp_nonpositive(-87.0f);
  EXPECT_NEAR(floor, std::exp(-87.0), 1e-7 * std::exp(-87.0));
  // Below -87: e^-87, never more (no weight or sum moves by more than 1.7e-38), never a NaN.
  for (float x : {-87.5f, -100.0f, -1e4f, -std::numeric_limits<float>::max(), -std::numeric_limits<float>::infinity()})
    EXPECT_EQ(exp_nonpositive(x), floor) << x;
}

TEST(SoftmaxExp, ShiftedRowAndItsSum) {
  // A softmax row as attention has it: scores with a spread of ~100, some ties with the max, an odd length.
  std::vector<float> s(1031);
  uint64_t state = 12345;
  for (float& v : s) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<float>(static_cast<double>(state >> 11) / 9007199254740992.0 * 100.0 - 60.0);
  }
  s[17] = s[900] = 40.0f;
  const std::vector<float> x = s;
  const float m = max_of(s.data(), static_cast<int64_t>(s.size()));
  EXPECT_EQ(m, 40.0f);
  const double sum = exp_shifted_sum(s.data(), static_cast<int64_t>(s.size()), m);
  double want_sum = 0.0;
  for (size_t j = 0; j < s.size(); ++j) {
    const double want = std::exp(static_cast<double>(x[j] - 40.0f));  // the shift in float, as the softmax does
    want_sum += want;
    EXPECT_LE(std::fabs(s[j] - want), 1e-7 * want + 2e-38) << j;
  }
  EXPECT_NEAR(sum, want_sum, 1e-7 * want_sum);
  EXPECT_EQ(max_of(s.data(), 0), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(exp_shifted_sum(s.data(), 0, 0.0f), 0.0);
}

}  // namespace
}  // namespace skv::cpu
