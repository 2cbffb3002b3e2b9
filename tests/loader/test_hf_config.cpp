// config.json parsing: real-world Llama/Mistral/Qwen2 configs, and a rejection for every kind of bad value.
#include <gtest/gtest.h>

#include "loader/hf_config.h"
#include "loader_fixtures.h"

namespace skv {
namespace {

using nlohmann::json;

// Meta-Llama-3.1-8B's config.json (the keys that matter; "rope_type" spelling).
json llama31_8b() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 128256})");
}

json mistral_7b() {
  return json::parse(R"({
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "vocab_size": 32000})");
}

json qwen2_05b() {
  return json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu",
    "hidden_size": 896, "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24,
    "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true,
    "torch_dtype": "bfloat16", "use_sliding_window": false, "vocab_size": 151936})");
}

TEST(HfConfig, Llama31WithLlama3RopeScaling) {
  const ModelConfig c = parse_hf_config(llama31_8b(), "config.json");
  EXPECT_EQ(c.arch, Architecture::kLlama);
  EXPECT_STREQ(architecture_name(c.arch), "LlamaForCausalLM");
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.dim, 4096);
  EXPECT_EQ(c.hidden_dim, 14336);
  EXPECT_EQ(c.n_layers, 32);
  EXPECT_EQ(c.n_q_heads, 32);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.group_size(), 4);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
  EXPECT_EQ(c.bos_token_ids, std::vector<int32_t>({128000}));
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>({128001, 128008, 128009}));
  EXPECT_EQ(c.parameter_count(), 8030261248);  // the published 8.03B
}

TEST(HfConfig, Transformers5RopeParameters) {
  // transformers 5 drops the top-level rope_theta and rope_scaling for one rope_parameters object.
  json j = llama31_8b();
  const json scaling = j["rope_scaling"];
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j["rope_parameters"] = scaling;
  j["rope_parameters"]["rope_theta"] = 500000.0;
  const ModelConfig c = parse_hf_config(j, "config.json");
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);

  json plain = qwen2_05b();
  plain.erase("rope_theta");
  plain["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000.0}};
  const ModelConfig q = parse_hf_config(plain, "config.json");
  EXPECT_DOUBLE_EQ(q.rope_theta, 1000000.0);
  EXPECT_EQ(q.rope_scaling.type, RopeScalingType::kNone);

  j["rope_parameters"]["rope_type"] = "yarn";
  try {
    parse_hf_config(j, "config.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rope_parameters.rope_type"), std::string::npos) << e.what();
  }
}

TEST(HfConfig, Llama2LinearScalingNullScalingAndDefaults) {
  json j = llama31_8b();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  ModelConfig c = parse_hf_config(j, "config.json");
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);

  j["rope_scaling"] = nullptr;
  j.erase("num_key_value_heads");  // Llama-2-7B style: MHA by default
  j.erase("rope_theta");
  j["eos_token_id"] = 2;
  j["attention_bias"] = true;
  c = parse_hf_config(j, "config.json");
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_EQ(c.n_kv_heads, 32);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>({2}));
  EXPECT_TRUE(c.attention_bias);

  j.erase("rope_scaling");
  j.erase("tie_word_embeddings");
  j.erase("bos_token_id");
  j.erase("torch_dtype");
  c = parse_hf_config(j, "config.json");
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_TRUE(c.bos_token_ids.empty());
  EXPECT_EQ(c.torch_dtype, DType::kF32);
}

TEST(HfConfig, Mistral) {
  const ModelConfig c = parse_hf_config(mistral_7b(), "config.json");
  EXPECT_EQ(c.arch, Architecture::kMistral);
  EXPECT_STREQ(architecture_name(c.arch), "MistralForCausalLM");
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.parameter_count(), 7241732096);  // Mistral-7B-v0.1
  json j = mistral_7b();
  j["sliding_window"] = nullptr;
  EXPECT_EQ(parse_hf_config(j, "config.json").sliding_window, 0);
}

TEST(HfConfig, Qwen2HasBiasAndTiedEmbeddings) {
  const ModelConfig c = parse_hf_config(qwen2_05b(), "config.json");
  EXPECT_EQ(c.arch, Architecture::kQwen2);
  EXPECT_STREQ(architecture_name(c.arch), "Qwen2ForCausalLM");
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.sliding_window, 0);  // use_sliding_window is false
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.parameter_count(), 494032768);  // Qwen2-0.5B
}

TEST(HfConfig, HeadDimPresentOrNull) {
  json j = mistral_7b();  // Mistral-Nemo style: head_dim * heads != hidden_size
  j["hidden_size"] = 5120;
  j["head_dim"] = 128;
  ModelConfig c = parse_hf_config(j, "config.json");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.q_dim(), 4096);
  EXPECT_EQ(c.kv_dim(), 1024);
  j["head_dim"] = nullptr;
  c = parse_hf_config(j, "config.json");
  EXPECT_EQ(c.head_dim, 160);
}

TEST(HfConfig, ModelTypeFallback) {
  json j = qwen2_05b();
  j.erase("architectures");
  EXPECT_EQ(parse_hf_config(j, "config.json").arch, Architecture::kQwen2);
}

TEST(HfConfig, RejectsUnknownArchitecture) {
  json j = llama31_8b();
  j["architectures"] = {"GPT2LMHeadModel"};
  EXPECT_SKV_ERROR(parse_hf_config(j, "m/config.json"), ErrorCode::kUnsupported, "m/config.json", "'architectures'",
                   "GPT2LMHeadModel", "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM");
  j.erase("architectures");
  j.erase("model_type");
  EXPECT_SKV_ERROR(parse_hf_config(j, "m/config.json"), ErrorCode::kNotFound, "m/config.json",
                   "missing required key 'architectures'");
}

TEST(HfConfig, RejectsMissingKeys) {
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads"}) {
    json j = llama31_8b();
    j.erase(key);
    EXPECT_SKV_ERROR(parse_hf_config(j, "config.json"), ErrorCode::kNotFound,
                     std::string("config.json: missing required key '") + key + "'");
  }
  json j = llama31_8b();
  j["rope_scaling"].erase("low_freq_factor");
  EXPECT_SKV_ERROR(parse_hf_config(j, "config.json"), ErrorCode::kNotFound,
                   "missing required key 'rope_scaling.low_freq_factor'");
}

TEST(HfConfig, RejectsBadValues) {
  auto expect_bad = [](const char* key, json value, ErrorCode code, const std::string& needle) {
    json j = llama31_8b();
    j[key] = std::move(value);
    EXPECT_SKV_ERROR(parse_hf_config(j, "config.json"), code, "config.json", needle);
  };
  expect_bad("hidden_size", 0, ErrorCode::kInvalidArgument, "'hidden_size' is 0, expected an integer in [1, ");
  expect_bad("vocab_size", -5, ErrorCode::kInvalidArgument, "'vocab_size' is -5");
  expect_bad("num_hidden_layers", 100000, ErrorCode::kInvalidArgument, "'num_hidden_layers' is 100000");
  expect_bad("intermediate_size", "big", ErrorCode::kInvalidArgument, "'intermediate_size' is \"big\"");
  expect_bad("num_attention_heads", 32.5, ErrorCode::kInvalidArgument, "'num_attention_heads' is 32.5");
  expect_bad("num_attention_heads", 31, ErrorCode::kInvalidArgument,
             "'hidden_size' 4096 is not divisible by 'num_attention_heads' 31");
  expect_bad("num_key_value_heads", 3, ErrorCode::kInvalidArgument,
             "'num_attention_heads' 32 is not a multiple of 'num_key_value_heads' 3");
  expect_bad("num_key_value_heads", 0, ErrorCode::kInvalidArgument, "'num_key_value_heads' is 0");
  expect_bad("rms_norm_eps", 0.0, ErrorCode::kInvalidArgument, "'rms_norm_eps' is 0.0");
  expect_bad("rope_theta", -1.0, ErrorCode::kInvalidArgument, "'rope_theta' is -1.0");
  expect_bad("max_position_embeddings", int64_t{1} << 40, ErrorCode::kInvalidArgument, "'max_position_embeddings'");
  expect_bad("head_dim", 127, ErrorCode::kInvalidArgument, "odd");
  expect_bad("tie_word_embeddings", "yes", ErrorCode::kInvalidArgument, "'tie_word_embeddings' is \"yes\"");
  expect_bad("eos_token_id", json::array({1, -2}), ErrorCode::kInvalidArgument, "'eos_token_id' is [1,-2]");
  expect_bad("torch_dtype", "float8_e4m3fn", ErrorCode::kUnsupported, "'torch_dtype' is \"float8_e4m3fn\"");
  expect_bad("hidden_act", "gelu", ErrorCode::kUnsupported, "'hidden_act' is \"gelu\"");
  expect_bad("mlp_bias", true, ErrorCode::kUnsupported, "'mlp_bias'");
  expect_bad("rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}, ErrorCode::kUnsupported,
             "'rope_scaling.rope_type' is \"yarn\", supported: default, linear, llama3");
  expect_bad("rope_scaling", {{"type", "linear"}, {"factor", -2.0}}, ErrorCode::kInvalidArgument,
             "'rope_scaling.factor' is -2.0");
  expect_bad("rope_scaling", 3, ErrorCode::kInvalidArgument, "'rope_scaling' is 3, expected an object or null");
  expect_bad("rope_scaling",
             {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 4.0}, {"high_freq_factor", 4.0},
              {"original_max_position_embeddings", 8192}},
             ErrorCode::kInvalidArgument, "'rope_scaling.high_freq_factor' is 4.0");
}

TEST(HfConfig, LoadFromFile) {
  testing::TempDir dir;
  EXPECT_SKV_ERROR(load_hf_config(dir / "config.json"), ErrorCode::kNotFound, "config.json", "no such file");
  testing::write_file(dir / "config.json", "{\"architectures\": [\"LlamaForCausalLM\"],");
  EXPECT_SKV_ERROR(load_hf_config(dir / "config.json"), ErrorCode::kParse, "config.json", "malformed JSON");
  testing::write_file(dir / "config.json", llama31_8b().dump());
  EXPECT_EQ(load_hf_config(dir / "config.json").vocab_size, 128256);
}

}  // namespace
}  // namespace skv
