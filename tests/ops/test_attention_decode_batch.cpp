// The CPU twins of the CUDA backend's new ops: attention_decode_batch against attention_decode per sequence,
// its validation, and sample_tokens against Sampler (the same seed gives the same tokens).
#include <algorithm>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "core/buffer.h"
#include "engine/sampler.h"
#include "ops/ops.h"
#include "testing/tensor_testing.h"

namespace skv {
namespace {

using testing::random_floats;
using testing::random_tensor;

TEST(AttentionDecodeBatch, MatchesAttentionDecodePerSequence) {
  for (auto [n_q_heads, n_kv_heads, head_dim] : {std::tuple<int64_t, int64_t, int64_t>{8, 2, 16}, {4, 4, 8}, {6, 1, 32}}) {
    const int64_t n_slots = 4, capacity = 300;
    auto k = random_tensor({n_slots, capacity, n_kv_heads, head_dim}, 1, -2, 2);
    auto v = random_tensor({n_slots, capacity, n_kv_heads, head_dim}, 2);
    std::vector<int32_t> slots{2, 0, 3}, lengths{1, 300, 129};
    const int64_t n_seqs = 3;
    auto q = random_tensor({n_seqs, n_q_heads, head_dim}, 3, -2, 2);
    HostBuffer out(DType::kF32, {n_seqs, n_q_heads, head_dim});
    attention_decode_batch({.q = q.view(), .k_cache = k.view(), .v_cache = v.view(),
                            .slots = TensorView(slots.data(), DType::kI32, {n_seqs}),
                            .lengths = TensorView(lengths.data(), DType::kI32, {n_seqs}), .out = out.view()});
    const int64_t slot_elems = capacity * n_kv_heads * head_dim;
    for (int64_t i = 0; i < n_seqs; ++i) {
      const int64_t len = lengths[static_cast<size_t>(i)], slot = slots[static_cast<size_t>(i)];
      HostBuffer want(DType::kF32, {n_q_heads, head_dim});
      attention_decode({.q = TensorView(q.ptr<float>() + i * n_q_heads * head_dim, DType::kF32, {n_q_heads, head_dim}),
                        .k = TensorView(k.ptr<float>() + slot * slot_elems, DType::kF32, {len, n_kv_heads, head_dim}),
                        .v = TensorView(v.ptr<float>() + slot * slot_elems, DType::kF32, {len, n_kv_heads, head_dim}),
                        .out = want.view()});
      EXPECT_TENSOR_NEAR(TensorView(out.ptr<float>() + i * n_q_heads * head_dim, DType::kF32, {n_q_heads, head_dim}),
                         want.view(), 0, 0)
          << "sequence " << i;
    }
  }
}

TEST(AttentionDecodeBatch, ValidationNamesTheProblem) {
  auto k = random_tensor({2, 10, 1, 4}, 4), v = random_tensor({2, 10, 1, 4}, 5);
  auto q = random_tensor({1, 2, 4}, 6);
  HostBuffer out(DType::kF32, {1, 2, 4});
  auto run = [&](int32_t slot, int32_t len) {
    attention_decode_batch({.q = q.view(), .k_cache = k.view(), .v_cache = v.view(),
                            .slots = TensorView(&slot, DType::kI32, {1}), .lengths = TensorView(&len, DType::kI32, {1}),
                            .out = out.view()});
  };
  EXPECT_NO_THROW(run(1, 10));
  try {
    run(2, 5);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "attention_decode_batch: slot 2 of sequence 0 is outside [0, 2)");
  }
  try {
    run(0, 11);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "attention_decode_batch: length 11 of sequence 0 is outside [1, 10]");
  }
  EXPECT_THROW(run(0, 0), Error);
}

TEST(SampleTokens, MatchesSamplerForTheSameSeed) {
  const size_t vocab = 500;
  struct P { float temperature; int64_t top_k; float top_p; };
  for (P p : {P{0.0f, 0, 1.0f}, P{0.8f, 0, 1.0f}, P{1.0f, 40, 1.0f}, P{1.2f, 0, 0.9f}, P{0.5f, 5, 0.5f}, P{3.0f, 1, 1.0f}}) {
    const uint64_t seed = 42;
    Sampler sampler({.temperature = p.temperature, .top_k = p.top_k, .top_p = p.top_p, .seed = seed});
    std::mt19937_64 rng(seed);
    for (int step = 0; step < 50; ++step) {
      auto logits = random_floats(vocab, 1000 + static_cast<uint64_t>(step), -3, 3);
      for (size_t j = 0; j < vocab; j += 7) logits[j] = 1.5f;  // ties
      const int32_t want = sampler.sample(logits);
      // Sampler draws from its generator only when sampling (temperature > 0).
      const double u = p.temperature > 0.0f ? std::generate_canonical<double, 53>(rng) : 0.0;
      const TokenSamplingParams tp{.temperature = p.temperature, .top_k = p.top_k, .top_p = p.top_p, .uniform = u};
      int32_t got = -1;
      sample_tokens({.logits = TensorView(logits.data(), DType::kF32, {1, static_cast<int64_t>(vocab)}),
                     .params = std::span<const TokenSamplingParams>(&tp, 1), .out = TensorView(&got, DType::kI32, {1})});
      EXPECT_EQ(got, want) << "temperature " << p.temperature << " step " << step;
    }
  }
}

TEST(SampleTokens, RejectsBadParameters) {
  std::vector<float> logits(10, 0.0f);
  int32_t out = 0;
  auto run = [&](TokenSamplingParams p) {
    sample_tokens({.logits = TensorView(logits.data(), DType::kF32, {1, 10}),
                   .params = std::span<const TokenSamplingParams>(&p, 1), .out = TensorView(&out, DType::kI32, {1})});
  };
  EXPECT_THROW(run({.temperature = -1.0f}), Error);
  EXPECT_THROW(run({.temperature = 1.0f, .top_p = 0.0f}), Error);
  EXPECT_THROW(run({.temperature = 1.0f, .uniform = 1.0}), Error);
  EXPECT_NO_THROW(run({.temperature = 1.0f, .uniform = 0.999}));
}

TEST(CudaDispatch, CpuBuildRejectsCudaTensorsByName) {
#ifndef SKV_WITH_CUDA
  float x = 1.0f;
  TensorView t(&x, DType::kF32, {1, 1}, DeviceId{DeviceKind::kCuda, 0});
  try {
    add({.a = t, .b = t, .out = t});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_STREQ(e.what(), "add: built without CUDA; reconfigure with -DSKV_CUDA=ON");
  }
#else
  GTEST_SKIP() << "CUDA build";
#endif
}

}  // namespace
}  // namespace skv
