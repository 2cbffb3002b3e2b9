// Loader test fixtures: temp dirs, raw safetensors bytes, tiny model directories.
#include "loader_fixtures.h"

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>

#include "loader/safetensors.h"
#include "testing/tensor_testing.h"

namespace skv::testing {

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = "skv_loader_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  if (info) name += std::string("_") + info->name();
  path_ = std::filesystem::temp_directory_path() / name;
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

void write_raw_safetensors(const std::filesystem::path& path, const std::string& header, const std::string& data) {
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  write_file(path, bytes + header + data);
}

::testing::AssertionResult throws_error(const std::function<void()>& fn, ErrorCode code,
                                        const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (e.code() != code) {
      return ::testing::AssertionFailure() << "error code " << error_code_name(e.code()) << ", expected "
                                           << error_code_name(code) << "; message: " << msg;
    }
    for (const std::string& n : needles)
      if (msg.find(n) == std::string::npos)
        return ::testing::AssertionFailure() << "message lacks \"" << n << "\": " << msg;
    if (msg.find('\n') != std::string::npos)
      return ::testing::AssertionFailure() << "message is not one line: " << msg;
    return ::testing::AssertionSuccess() << msg;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-skv exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

ModelConfig tiny_config(Architecture arch) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 32;
  c.dim = 16;
  c.hidden_dim = 24;
  c.n_layers = 2;
  c.n_q_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 4;
  c.norm_eps = 1e-5;
  c.max_position_embeddings = 64;
  c.attention_bias = arch == Architecture::kQwen2;
  c.bos_token_ids = {1};
  c.eos_token_ids = {2};
  return c;
}

nlohmann::json to_hf_json(const ModelConfig& c) {
  return {{"architectures", {architecture_name(c.arch)}},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.dim},
          {"intermediate_size", c.hidden_dim},
          {"num_hidden_layers", c.n_layers},
          {"num_attention_heads", c.n_q_heads},
          {"num_key_value_heads", c.n_kv_heads},
          {"rms_norm_eps", c.norm_eps},
          {"rope_theta", c.rope_theta},
          {"max_position_embeddings", c.max_position_embeddings},
          {"tie_word_embeddings", c.tie_word_embeddings},
          {"attention_bias", c.attention_bias},
          {"torch_dtype", "float32"},
          {"bos_token_id", 1},
          {"eos_token_id", 2}};
}

void write_tiny_model(const std::filesystem::path& dir, const ModelConfig& c, const TinyModelOptions& opt) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << to_hf_json(c).dump(2);

  std::vector<std::pair<std::string, Shape>> specs;
  specs.push_back({"model.embed_tokens.weight", {c.vocab_size, c.dim}});
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    specs.push_back({p + "input_layernorm.weight", {c.dim}});
    specs.push_back({p + "self_attn.q_proj.weight", {c.q_dim(), c.dim}});
    specs.push_back({p + "self_attn.k_proj.weight", {c.kv_dim(), c.dim}});
    specs.push_back({p + "self_attn.v_proj.weight", {c.kv_dim(), c.dim}});
    if (c.attention_bias) {
      specs.push_back({p + "self_attn.q_proj.bias", {c.q_dim()}});
      specs.push_back({p + "self_attn.k_proj.bias", {c.kv_dim()}});
      specs.push_back({p + "self_attn.v_proj.bias", {c.kv_dim()}});
    }
    specs.push_back({p + "self_attn.o_proj.weight", {c.dim, c.q_dim()}});
    specs.push_back({p + "post_attention_layernorm.weight", {c.dim}});
    specs.push_back({p + "mlp.gate_proj.weight", {c.hidden_dim, c.dim}});
    specs.push_back({p + "mlp.up_proj.weight", {c.hidden_dim, c.dim}});
    specs.push_back({p + "mlp.down_proj.weight", {c.dim, c.hidden_dim}});
  }
  specs.push_back({"model.norm.weight", {c.dim}});
  if (opt.write_lm_head) specs.push_back({"lm_head.weight", {c.vocab_size, c.dim}});

  std::vector<HostBuffer> buffers;
  std::vector<std::vector<std::pair<std::string, TensorView>>> shards(static_cast<size_t>(opt.shards));
  uint64_t seed = 1;
  for (size_t i = 0; i < specs.size(); ++i) {
    auto [name, shape] = specs[i];
    if (name == opt.skip_tensor) continue;
    if (name == opt.misshape_tensor) shape.dims[0] += 1;
    HostBuffer f32 = random_tensor(shape, seed++);
    if (opt.dtype == DType::kF32) {
      buffers.push_back(std::move(f32));
    } else {
      HostBuffer b(opt.dtype, shape);
      for (int64_t k = 0; k < shape.numel(); ++k) {
        const float v = f32.ptr<float>()[k];
        b.ptr<uint16_t>()[k] = opt.dtype == DType::kBF16 ? f32_to_bf16(v) : f32_to_f16(v);
      }
      buffers.push_back(std::move(b));
    }
    shards[i % shards.size()].emplace_back(name, buffers.back().view(opt.dtype, shape));
  }
  if (opt.shards == 1) {
    write_safetensors(dir / "model.safetensors", shards[0]);
    return;
  }
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    write_safetensors(dir / name, shards[s]);
    for (const auto& [tensor, view] : shards[s]) index["weight_map"][tensor] = name;
  }
  std::ofstream(dir / "model.safetensors.index.json") << index.dump(2);
}

}  // namespace skv::testing
