// load_model / bind_weights on tiny synthetic model directories: every variant and every failure.
#include <cstring>

#include <gtest/gtest.h>

#include "loader/model_loader.h"
#include "loader/safetensors.h"
#include "loader_fixtures.h"

namespace skv {
namespace {

using testing::TempDir;
using testing::TinyModelOptions;

void expect_shapes(const LoadedModel& m) {
  const ModelConfig& c = m.config;
  EXPECT_EQ(m.weights.embed.shape, (Shape{c.vocab_size, c.dim}));
  EXPECT_EQ(m.weights.lm_head.shape, (Shape{c.vocab_size, c.dim}));
  EXPECT_EQ(m.weights.final_norm.shape, (Shape{c.dim}));
  ASSERT_EQ(m.weights.layers.size(), static_cast<size_t>(c.n_layers));
  for (const LayerWeights& l : m.weights.layers) {
    EXPECT_EQ(l.attn_norm.shape, (Shape{c.dim}));
    EXPECT_EQ(l.wq.shape, (Shape{c.q_dim(), c.dim}));
    EXPECT_EQ(l.wk.shape, (Shape{c.kv_dim(), c.dim}));
    EXPECT_EQ(l.wv.shape, (Shape{c.kv_dim(), c.dim}));
    EXPECT_EQ(l.wo.shape, (Shape{c.dim, c.q_dim()}));
    EXPECT_EQ(l.mlp_norm.shape, (Shape{c.dim}));
    EXPECT_EQ(l.w_gate.shape, (Shape{c.hidden_dim, c.dim}));
    EXPECT_EQ(l.w_up.shape, (Shape{c.hidden_dim, c.dim}));
    EXPECT_EQ(l.w_down.shape, (Shape{c.dim, c.hidden_dim}));
    EXPECT_EQ(l.bq.empty(), !c.attention_bias);
    if (c.attention_bias) {
      EXPECT_EQ(l.bq.shape, (Shape{c.q_dim()}));
      EXPECT_EQ(l.bk.shape, (Shape{c.kv_dim()}));
      EXPECT_EQ(l.bv.shape, (Shape{c.kv_dim()}));
    }
  }
}

TEST(ModelLoader, LoadsUntiedLlama) {
  TempDir dir;
  testing::write_tiny_model(dir.path(), testing::tiny_config());
  const LoadedModel m = load_model(dir.path());
  EXPECT_EQ(m.dir, dir.path());
  ASSERT_NE(m.store, nullptr);
  EXPECT_EQ(m.config.n_layers, 2);
  expect_shapes(m);
  EXPECT_NE(m.weights.lm_head.data, m.weights.embed.data);
  // The views are the file's bytes, in place.
  const SafetensorInfo* t = m.store->find("model.layers.1.mlp.down_proj.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(m.weights.layers[1].w_down.data, t->data);
  EXPECT_EQ(m.weights.layers[0].wq.dtype, DType::kF32);
}

TEST(ModelLoader, TiedUsesEmbeddingEvenWhenLmHeadIsPresent) {
  ModelConfig c = testing::tiny_config();
  c.tie_word_embeddings = true;
  for (bool write_lm_head : {true, false}) {
    TempDir dir;
    testing::write_tiny_model(dir.path(), c, {.write_lm_head = write_lm_head});
    const LoadedModel m = load_model(dir.path());
    EXPECT_TRUE(m.config.tie_word_embeddings);
    EXPECT_EQ(m.weights.lm_head.data, m.weights.embed.data) << "write_lm_head " << write_lm_head;
    expect_shapes(m);
  }
}

TEST(ModelLoader, UntiedWithoutLmHeadFails) {
  TempDir dir;
  testing::write_tiny_model(dir.path(), testing::tiny_config(), {.write_lm_head = false});
  EXPECT_SKV_ERROR(load_model(dir.path()), ErrorCode::kNotFound, "missing tensor 'lm_head.weight'",
                   "model.safetensors", "tie_word_embeddings false");
}

TEST(ModelLoader, Qwen2BiasesBf16AndMistralF16) {
  {
    TempDir dir;
    testing::write_tiny_model(dir.path(), testing::tiny_config(Architecture::kQwen2), {.dtype = DType::kBF16});
    const LoadedModel m = load_model(dir.path());
    EXPECT_EQ(m.config.arch, Architecture::kQwen2);
    EXPECT_TRUE(m.config.attention_bias);
    EXPECT_EQ(m.weights.layers[0].bq.dtype, DType::kBF16);
    expect_shapes(m);
  }
  {
    TempDir dir;
    testing::write_tiny_model(dir.path(), testing::tiny_config(Architecture::kMistral), {.dtype = DType::kF16});
    const LoadedModel m = load_model(dir.path());
    EXPECT_EQ(m.weights.embed.dtype, DType::kF16);
    expect_shapes(m);
  }
}

TEST(ModelLoader, QwenWithoutBiasFails) {
  TempDir dir;
  testing::write_tiny_model(dir.path(), testing::tiny_config(Architecture::kQwen2),
                            {.skip_tensor = "model.layers.1.self_attn.k_proj.bias"});
  EXPECT_SKV_ERROR(load_model(dir.path()), ErrorCode::kNotFound,
                   "missing tensor 'model.layers.1.self_attn.k_proj.bias' (looked in: model.safetensors)");
}

TEST(ModelLoader, Sharded) {
  TempDir dir;
  testing::write_tiny_model(dir.path(), testing::tiny_config(), {.shards = 2});
  const LoadedModel m = load_model(dir.path());
  EXPECT_EQ(m.store->files().size(), 2u);
  expect_shapes(m);
}

TEST(ModelLoader, StoreKeepsMappingsAlive) {
  TempDir dir;
  testing::write_tiny_model(dir.path(), testing::tiny_config());
  ModelWeights w;
  float first = 0;
  {
    LoadedModel m = load_model(dir.path());
    std::shared_ptr<WeightStore> keep = m.store;
    w = m.weights;
    first = m.weights.final_norm.ptr<float>()[0];
    m = LoadedModel{};
    EXPECT_EQ(w.final_norm.ptr<float>()[0], first);  // still mapped through `keep`
  }
}

TEST(ModelLoader, MissingDirectoryConfigAndWeights) {
  TempDir dir;
  EXPECT_SKV_ERROR(load_model(dir / "nowhere"), ErrorCode::kNotFound, "nowhere", "does not exist");
  testing::write_file(dir / "file", "x");
  EXPECT_SKV_ERROR(load_model(dir / "file"), ErrorCode::kInvalidArgument, "is not a directory");
  EXPECT_SKV_ERROR(load_model(dir.path()), ErrorCode::kNotFound, "has no config.json");
  testing::write_file(dir / "config.json", testing::to_hf_json(testing::tiny_config()).dump());
  EXPECT_SKV_ERROR(load_model(dir.path()), ErrorCode::kNotFound, "no weights", "model.safetensors");
}

TEST(ModelLoader, MalformedConfigAndUnknownArchitecture) {
  TempDir dir;
  testing::write_tiny_model(dir.path(), testing::tiny_config());
  testing::write_file(dir / "config.json", "{\"vocab_size\": 32,,}");
  EXPECT_SKV_ERROR(load_model(dir.path()), ErrorCode::kParse, "config.json", "malformed JSON");
  nlohmann::json j = testing::to_hf_json(testing::tiny_config());
  j["architectures"] = {"FalconForCausalLM"};
  testing::write_file(dir / "config.json", j.dump());
  EXPECT_SKV_ERROR(load_model(dir.path()), ErrorCode::kUnsupported, "config.json", "FalconForCausalLM",
                   "LlamaForCausalLM");
}

TEST(ModelLoader, MissingTensorIsNamed) {
  TempDir dir;
  testing::write_tiny_model(dir.path(), testing::tiny_config(), {.skip_tensor = "model.layers.1.mlp.up_proj.weight"});
  EXPECT_SKV_ERROR(load_model(dir.path()), ErrorCode::kNotFound,
                   "missing tensor 'model.layers.1.mlp.up_proj.weight' (looked in: model.safetensors)");
}

TEST(ModelLoader, WrongShapeIsNamed) {
  TempDir dir;
  testing::write_tiny_model(dir.path(), testing::tiny_config(),
                            {.misshape_tensor = "model.layers.0.self_attn.v_proj.weight"});
  EXPECT_SKV_ERROR(load_model(dir.path()), ErrorCode::kInvalidArgument,
                   "model.safetensors: 'model.layers.0.self_attn.v_proj.weight' is [9, 16] f32, expected [8, 16]");
}

TEST(ModelLoader, WrongDTypeIsNamed) {
  TempDir dir;
  const ModelConfig c = testing::tiny_config();
  testing::write_tiny_model(dir.path(), c);
  // Rewrite the file with the final norm stored as int32.
  std::vector<std::pair<std::string, TensorView>> tensors;
  std::vector<int32_t> ints(static_cast<size_t>(c.dim), 1);
  {
    SafetensorsFile f(dir / "model.safetensors");
    std::vector<HostBuffer> copies;
    for (const SafetensorInfo& t : f.tensors()) {
      if (t.name == "model.norm.weight") {
        tensors.emplace_back(t.name, TensorView(ints.data(), DType::kI32, {c.dim}));
        continue;
      }
      copies.emplace_back(t.nbytes);
      std::memcpy(copies.back().data(), t.data, t.nbytes);
      tensors.emplace_back(t.name, TensorView(copies.back().data(), t.dtype, t.shape));
    }
    write_safetensors(dir / "model.safetensors.tmp", tensors);
  }
  std::filesystem::rename(dir / "model.safetensors.tmp", dir / "model.safetensors");
  EXPECT_SKV_ERROR(load_model(dir.path()), ErrorCode::kUnsupported,
                   "model.safetensors: 'model.norm.weight' is [16] i32, expected [16] f32/f16/bf16");
}

TEST(ModelLoader, MoreLayersInFilesThanInConfig) {
  TempDir dir;
  ModelConfig c = testing::tiny_config();
  testing::write_tiny_model(dir.path(), c);
  c.n_layers = 1;
  testing::write_file(dir / "config.json", testing::to_hf_json(c).dump());
  EXPECT_SKV_ERROR(load_model(dir.path()), ErrorCode::kInvalidArgument, "'model.layers.1.input_layernorm.weight'",
                   "num_hidden_layers 1");
}

}  // namespace
}  // namespace skv
