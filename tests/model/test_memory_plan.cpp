// The memory planner on Llama-3.1-8B's published config (no weights needed), and the device-generic model's
// CPU-build behaviour: a CUDA model or cache is a clear "built without CUDA" error.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "kv/shadow_kv_factory.h"
#include "model/llama_model.h"
#include "model/memory_plan.h"

namespace skv {
namespace {

ModelConfig llama31_8b() {
  ModelConfig c;
  c.vocab_size = 128256;
  c.dim = 4096;
  c.hidden_dim = 14336;
  c.n_layers = 32;
  c.n_q_heads = 32;
  c.n_kv_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 131072;
  return c;
}

TEST(MemoryPlan, Llama31_8bAt128k) {
  const ModelConfig c = llama31_8b();
  EXPECT_EQ(c.parameter_count(), 8030261248);
  const int64_t w = model_weight_bytes(c, DType::kBF16);
  EXPECT_NEAR(static_cast<double>(w) / 1e9, 16.06, 0.005);
  EXPECT_EQ(kv_bytes_per_sequence(c, 131072), int64_t{16} << 30);  // 16 GiB
  MemoryPlanRequest r;
  r.context = 131072;
  r.batch = 0;
  r.memory_bytes = int64_t{80} << 30;
  const MemoryPlan p = plan_memory(c, r);
  EXPECT_EQ(p.weight_bytes, w);
  // 80 GiB - 1.6 GiB margin - 14.96 GiB weights - workspace: 3 sequences of 16 GiB.
  EXPECT_EQ(p.max_batch, 3);
  EXPECT_EQ(p.batch, 3);
  EXPECT_TRUE(p.fits());
  EXPECT_GT(p.workspace_bytes, 0);
  EXPECT_LT(p.workspace_bytes, int64_t{1} << 30);
  r.batch = 4;
  const MemoryPlan q = plan_memory(c, r);
  EXPECT_FALSE(q.fits());
  try {
    require_fits(q);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResource);
    const std::string m = e.what();
    EXPECT_NE(m.find("4 sequence(s) of 131072 tokens"), std::string::npos) << m;
    EXPECT_NE(m.find("at most 3"), std::string::npos) << m;
  }
  // f32 matrices double the weights.
  EXPECT_NEAR(static_cast<double>(model_weight_bytes(c, DType::kF32)) / static_cast<double>(w), 2.0, 1e-3);
}

// The f32 KV cache (the exact mode) counts 4 bytes per element: twice bf16's, so one sequence fewer fits.
TEST(MemoryPlan, F32KvCacheCountsFourBytesPerElement) {
  const ModelConfig c = llama31_8b();
  EXPECT_EQ(kv_bytes_per_sequence(c, 131072, DType::kF32), int64_t{32} << 30);  // 32 GiB
  EXPECT_EQ(kv_bytes_per_sequence(c, 1000, DType::kF32), 2 * kv_bytes_per_sequence(c, 1000, DType::kBF16));
  MemoryPlanRequest r;
  r.context = 131072;
  r.batch = 0;
  r.memory_bytes = int64_t{80} << 30;
  r.kv_dtype = DType::kF32;
  const MemoryPlan p = plan_memory(c, r);
  EXPECT_EQ(p.kv_bytes_per_sequence, int64_t{32} << 30);
  // 80 GiB - 1.6 GiB margin - 14.96 GiB weights - workspace: 1 sequence of 32 GiB (3 of 16 GiB in bf16).
  EXPECT_EQ(p.max_batch, 1);
  EXPECT_EQ(p.kv_bytes, int64_t{32} << 30);
  r.kv_dtype = DType::kF16;
  EXPECT_THROW(plan_memory(c, r), Error);
}

TEST(MemoryPlan, LargestBatchIsFoundQuicklyForHugeMemory) {
  // A tiny context and a huge memory: the largest batch is in the millions, found by a binary search (a walk
  // down one batch at a time did not finish).
  const ModelConfig c = llama31_8b();
  MemoryPlanRequest r;
  r.context = 1;
  r.batch = 0;
  r.memory_bytes = int64_t{100000} << 30;
  const MemoryPlan p = plan_memory(c, r);
  EXPECT_GT(p.max_batch, 1000000);
  EXPECT_TRUE(p.fits());
  r.batch = p.max_batch + 1;
  EXPECT_FALSE(plan_memory(c, r).fits());
}

TEST(MemoryPlan, NothingFits) {
  MemoryPlanRequest r;
  r.context = 131072;
  r.batch = 0;
  r.memory_bytes = int64_t{16} << 30;
  const MemoryPlan p = plan_memory(llama31_8b(), r);
  EXPECT_EQ(p.max_batch, 0);
  EXPECT_FALSE(p.fits());
  EXPECT_THROW(require_fits(p), Error);
}

TEST(DeviceModel, CudaIsAClearErrorWithoutCuda) {
#ifdef SKV_WITH_CUDA
  GTEST_SKIP() << "a CUDA build";
#else
  ModelConfig c = llama31_8b();
  c.n_layers = 1;
  c.vocab_size = 64;
  c.dim = 64;
  c.hidden_dim = 128;
  c.n_q_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 32;
  ModelOptions o;
  o.device = {DeviceKind::kCuda, 0};
  try {
    LlamaModel::with_random_weights(c, o, 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
  AttentionOptions a;
  a.device = {DeviceKind::kCuda, 0};
  a.max_tokens = 16;
  KvCacheShape shape{1, 2, 1, 32, {}, 1.0};
  try {
    make_kv_cache(shape, a);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
  a.kind = AttentionKind::kShadowKv;
  try {
    make_kv_cache(shape, a);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--attention shadowkv runs on the CPU backend only for now"), std::string::npos);
  }
#endif
}

TEST(DeviceModel, RandomWeightsOnCpuAreFinite) {
  ModelConfig c = llama31_8b();
  c.n_layers = 2;
  c.vocab_size = 97;
  c.dim = 64;
  c.hidden_dim = 160;
  c.n_q_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  auto model = LlamaModel::with_random_weights(c, {}, 7);
  const std::vector<int32_t> tokens{1, 5, 9, 96, 0};
  const auto logits = model->prompt_logits(tokens);
  ASSERT_EQ(logits.size(), tokens.size() * 97);
  double ss = 0;
  for (float v : logits) {
    ASSERT_TRUE(std::isfinite(v));
    ss += static_cast<double>(v) * v;
  }
  EXPECT_GT(ss, 0.0);
}

}  // namespace
}  // namespace skv
