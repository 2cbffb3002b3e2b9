// WeightStore: single-file and sharded directories, checked get(), and index/shard mismatches.
#include <fstream>

#include <gtest/gtest.h>

#include "loader/weight_store.h"
#include "loader_fixtures.h"

namespace skv {
namespace {

using testing::TempDir;

TEST(WeightStore, SingleFileFindAndGet) {
  TempDir dir;
  const ModelConfig c = testing::tiny_config();
  testing::write_tiny_model(dir.path(), c);
  WeightStore store(dir.path());
  EXPECT_EQ(store.files().size(), 1u);
  EXPECT_EQ(store.file_list(), "model.safetensors");
  EXPECT_EQ(store.file_of("model.norm.weight"), "model.safetensors");
  EXPECT_EQ(store.file_of("nope"), "");
  EXPECT_EQ(store.find("nope"), nullptr);
  ASSERT_NE(store.find("model.norm.weight"), nullptr);
  const TensorView v = store.get("model.layers.1.self_attn.k_proj.weight", {c.kv_dim(), c.dim});
  EXPECT_EQ(v.shape, (Shape{8, 16}));
  EXPECT_EQ(v.dtype, DType::kF32);
  EXPECT_EQ(store.tensor_count(), store.tensor_names().size());
}

TEST(WeightStore, GetReportsShapeDTypeAndMissing) {
  TempDir dir;
  testing::write_tiny_model(dir.path(), testing::tiny_config());
  WeightStore store(dir.path());
  EXPECT_SKV_ERROR(store.get("model.layers.0.mlp.up_proj.weight", {16, 24}), ErrorCode::kInvalidArgument,
                   "model.safetensors: 'model.layers.0.mlp.up_proj.weight' is [24, 16] f32, expected [16, 24] "
                   "f32/f16/bf16");
  EXPECT_SKV_ERROR(store.get("model.norm.weight", {16}, {DType::kBF16}), ErrorCode::kUnsupported,
                   "model.safetensors: 'model.norm.weight' is [16] f32, expected [16] bf16");
  EXPECT_SKV_ERROR(store.get("model.layers.9.mlp.up_proj.weight", {24, 16}), ErrorCode::kNotFound,
                   "missing tensor 'model.layers.9.mlp.up_proj.weight' (looked in: model.safetensors)");
}

TEST(WeightStore, ShardedIndex) {
  TempDir dir;
  const ModelConfig c = testing::tiny_config();
  testing::write_tiny_model(dir.path(), c, {.shards = 3});
  WeightStore store(dir.path());
  ASSERT_EQ(store.files().size(), 3u);
  EXPECT_EQ(store.file_list(),
            "model-00001-of-00003.safetensors, model-00002-of-00003.safetensors, model-00003-of-00003.safetensors");
  // write_tiny_model deals tensors round-robin: the embedding is first, so in shard 1; the next in shard 2.
  EXPECT_EQ(store.file_of("model.embed_tokens.weight"), "model-00001-of-00003.safetensors");
  EXPECT_EQ(store.file_of("model.layers.0.input_layernorm.weight"), "model-00002-of-00003.safetensors");
  EXPECT_NO_THROW(store.get("model.embed_tokens.weight", {c.vocab_size, c.dim}));
  EXPECT_NO_THROW(store.get("lm_head.weight", {c.vocab_size, c.dim}));
  EXPECT_SKV_ERROR(store.get("nope", {1}), ErrorCode::kNotFound, "missing tensor 'nope'",
                   "model-00001-of-00003.safetensors, model-00002-of-00003.safetensors, "
                   "model-00003-of-00003.safetensors");
}

TEST(WeightStore, MissingShard) {
  TempDir dir;
  testing::write_tiny_model(dir.path(), testing::tiny_config(), {.shards = 2});
  std::filesystem::remove(dir / "model-00002-of-00002.safetensors");
  EXPECT_SKV_ERROR(WeightStore(dir.path()), ErrorCode::kNotFound, "model.safetensors.index.json",
                   "lists shard 'model-00002-of-00002.safetensors', which is missing");
}

TEST(WeightStore, TensorNotWhereIndexSays) {
  TempDir dir;
  testing::write_tiny_model(dir.path(), testing::tiny_config(), {.shards = 2});
  nlohmann::json index = nlohmann::json::parse(std::ifstream(dir / "model.safetensors.index.json"));
  index["weight_map"]["model.embed_tokens.weight"] = "model-00002-of-00002.safetensors";
  std::ofstream(dir / "model.safetensors.index.json") << index.dump();
  EXPECT_SKV_ERROR(WeightStore(dir.path()), ErrorCode::kParse, "model.safetensors.index.json",
                   "'model.embed_tokens.weight' should be in 'model-00002-of-00002.safetensors'",
                   "it is in 'model-00001-of-00002.safetensors'");
}

TEST(WeightStore, BadIndexAndNoWeights) {
  TempDir dir;
  EXPECT_SKV_ERROR(WeightStore(dir.path()), ErrorCode::kNotFound, "no weights", "model.safetensors",
                   "model.safetensors.index.json");
  testing::write_file(dir / "model.safetensors.index.json", "{\"weight_map\": ");
  EXPECT_SKV_ERROR(WeightStore(dir.path()), ErrorCode::kParse, "model.safetensors.index.json", "malformed JSON");
  testing::write_file(dir / "model.safetensors.index.json", "{\"metadata\": {}}");
  EXPECT_SKV_ERROR(WeightStore(dir.path()), ErrorCode::kParse, "model.safetensors.index.json", "'weight_map'");
  testing::write_file(dir / "model.safetensors.index.json", "{\"weight_map\": {\"w\": \"../evil.safetensors\"}}");
  EXPECT_SKV_ERROR(WeightStore(dir.path()), ErrorCode::kParse, "weight_map['w']", "expected a file name");
}

}  // namespace
}  // namespace skv
