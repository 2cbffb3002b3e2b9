// Whole-model checks on the real stories15M: golden greedy tokens from llama2.c, batching sequences of
// different lengths gives the same tokens as running each alone, and chunked prefill equals one-shot prefill.
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "engine/engine.h"
#include "kv/full_kv_cache.h"
#include "loader/model_loader.h"
#include "model/llama_model.h"
#include "testing/engine_testing.h"
#include "testing/tensor_testing.h"

namespace skv {
namespace {

std::shared_ptr<const LoadedModel> stories15m() {
  static std::shared_ptr<const LoadedModel> model = [] {
    const std::filesystem::path dir = std::filesystem::path(SKV_MODELS_DIR) / "stories15M";
    if (!std::filesystem::exists(dir / "config.json"))
      ADD_FAILURE() << dir << " is missing: run scripts/setup.sh (it fetches and converts stories15M)";
    return std::make_shared<const LoadedModel>(load_model(dir));
  }();
  return model;
}

// Greedy generation of several requests submitted together; returns each one's tokens.
std::vector<std::vector<int32_t>> generate_greedy(LlamaModel& model, const std::vector<std::vector<int32_t>>& prompts,
                                                  int64_t max_new_tokens) {
  const ModelConfig& c = model.config();
  FullKvCache cache(c.n_layers, c.n_kv_heads, c.head_dim);
  auto out = testing::generate_greedy(model, cache, prompts, max_new_tokens);
  EXPECT_EQ(cache.memory_use().device_bytes, 0) << "finished sequences must release their cache";
  return out;
}

TEST(Stories15M, GreedyFromBosMatchesLlama2c) {
  std::ifstream in(std::filesystem::path(SKV_SHARED_DATA_DIR) / "stories15M-greedy-from-bos.txt");
  ASSERT_TRUE(in) << "missing ../shared/data/stories15M-greedy-from-bos.txt";
  std::vector<int32_t> golden;
  for (int32_t t; in >> t;) golden.push_back(t);
  ASSERT_EQ(golden.size(), 200u);
  LlamaModel model(stories15m());
  const auto got = generate_greedy(model, {{1}}, 200);
  EXPECT_EQ(got[0], golden);
}

TEST(Stories15M, BatchOfDifferentLengthsEqualsEachAlone) {
  LlamaModel model(stories15m());
  const std::vector<std::vector<int32_t>> prompts{{1}, {1, 9038, 2501, 263, 931}, {1, 365, 2354, 322, 670, 6114, 892}};
  const auto batched = generate_greedy(model, prompts, 40);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto alone = generate_greedy(model, {prompts[i]}, 40);
    EXPECT_EQ(batched[i], alone[0]) << "prompt " << i;
  }
}

TEST(Stories15M, ChunkedPrefillEqualsOneShot) {
  std::vector<int32_t> tokens{1};
  for (int i = 0; i < 100; ++i) tokens.push_back(300 + (i * 37) % 5000);
  LlamaModel one_shot(stories15m());
  LlamaModel chunked(stories15m(), ModelOptions{.prefill_chunk_tokens = 7});
  const auto a = one_shot.prompt_logits(tokens);
  const auto b = chunked.prompt_logits(tokens);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(testing::tensors_near(b.data(), a.data(), a.size(), 1e-4, 1e-4));
}

TEST(Stories15M, DecodeLogitsEqualPromptLogits) {
  // The last position's logits after prefill + decode steps equal those of one prefill over the same tokens.
  std::vector<int32_t> tokens{1, 9038, 2501, 263, 931, 29892, 727, 471};
  LlamaModel model(stories15m());
  const ModelConfig& c = model.config();
  const auto want = model.prompt_logits(tokens);
  FullKvCache cache(c.n_layers, c.n_kv_heads, c.head_dim);
  cache.add_sequence(3, static_cast<int64_t>(tokens.size()));
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  model.prefill(cache, 3, std::span(tokens).first(5), logits);
  for (size_t i = 5; i < tokens.size(); ++i) {
    DecodeBatch batch{{3}, {static_cast<int64_t>(i)}};
    model.decode(cache, batch, std::span(tokens).subspan(i, 1), logits);
  }
  EXPECT_TRUE(testing::tensors_near(logits.data(), want.data() + (tokens.size() - 1) * c.vocab_size,
                                    static_cast<size_t>(c.vocab_size), 1e-4, 1e-4));
}

}  // namespace
}  // namespace skv
