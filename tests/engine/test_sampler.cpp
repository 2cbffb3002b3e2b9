// Sampler: greedy, seeded determinism, top-k/top-p restrictions, parameter validation.
#include <map>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "engine/sampler.h"

namespace skv {
namespace {

const std::vector<float> kLogits{1.0f, 3.0f, 2.5f, -1.0f, 3.0f, 0.0f};

TEST(Sampler, GreedyTakesTheFirstMaximum) {
  Sampler s({});
  EXPECT_EQ(s.sample(kLogits), 1);
}

TEST(Sampler, SameSeedSameTokens) {
  Sampler a({.temperature = 1.0f, .seed = 7}), b({.temperature = 1.0f, .seed = 7}), c({.temperature = 1.0f, .seed = 8});
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 64; ++i) {
    ta.push_back(a.sample(kLogits));
    tb.push_back(b.sample(kLogits));
    tc.push_back(c.sample(kLogits));
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
}

TEST(Sampler, TopKAndTopPRestrictTheCandidates) {
  Sampler k2({.temperature = 2.0f, .top_k = 2, .seed = 1});
  Sampler p({.temperature = 1.0f, .top_p = 0.5f, .seed = 2});  // tokens 1 and 4 hold ~0.71 together: top-2 only
  for (int i = 0; i < 500; ++i) {
    const int32_t t = k2.sample(kLogits);
    EXPECT_TRUE(t == 1 || t == 4) << t;
    const int32_t u = p.sample(kLogits);
    EXPECT_TRUE(u == 1 || u == 4) << u;
  }
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  Sampler s({.temperature = 1.0f, .seed = 3});
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[s.sample(kLogits)];
  double z = 0;
  for (float l : kLogits) z += std::exp(l);
  for (size_t i = 0; i < kLogits.size(); ++i) {
    const double p = std::exp(kLogits[i]) / z;
    EXPECT_NEAR(counts[static_cast<int32_t>(i)] / static_cast<double>(n), p, 0.015) << i;
  }
}

TEST(Sampler, RejectsOutOfRangeParameters) {
  auto message = [](SamplingParams p) {
    try {
      validate_sampling_params(p);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message({.temperature = -1.0f}), "temperature must be in [0, 100], got -1.000000");
  EXPECT_EQ(message({.top_k = -3}), "top-k must be >= 0, got -3");
  EXPECT_EQ(message({.top_p = 0.0f}), "top-p must be in (0, 1], got 0.000000");
  EXPECT_EQ(message({.top_p = 1.5f}), "top-p must be in (0, 1], got 1.500000");
}

}  // namespace
}  // namespace skv
