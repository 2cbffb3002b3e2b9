// llama2.c checkpoint -> config.json + model.safetensors. The checkpoint is read into memory once (tens of
// MB for the stories models); untouched tensors are written straight from it, only wq/wk are permuted.
#include "loader/llama2c.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/buffer.h"
#include "core/error.h"
#include "loader/safetensors.h"

namespace skv {
namespace {

constexpr uint32_t kVersionedMagic = 0x616b3432;  // "ak42": llama2.c's export.py version >= 1
constexpr int64_t kHeaderBytes = 7 * 4;

// llama2.c rotates pairs (2i, 2i+1) of each head by frequency i; HF rotates (i, i + d/2). Reordering each
// head's output rows as [even rows..., odd rows...] in both wq and wk makes the two agree; q.k is unchanged
// because q and k get the same permutation.
void permute_for_half_rope(const float* src, float* dst, int64_t n_heads, int64_t head_dim, int64_t cols) {
  const int64_t half = head_dim / 2;
  const size_t row_bytes = static_cast<size_t>(cols) * sizeof(float);
  for (int64_t h = 0; h < n_heads; ++h) {
    const float* s = src + h * head_dim * cols;
    float* d = dst + h * head_dim * cols;
    for (int64_t j = 0; j < half; ++j) {
      std::memcpy(d + j * cols, s + (2 * j) * cols, row_bytes);
      std::memcpy(d + (half + j) * cols, s + (2 * j + 1) * cols, row_bytes);
    }
  }
}

}  // namespace

void convert_llama2c_checkpoint(const std::filesystem::path& checkpoint_bin, const std::filesystem::path& out_dir) {
  namespace fs = std::filesystem;
  const std::string file = checkpoint_bin.string();
  std::error_code ec;
  if (!fs::is_regular_file(checkpoint_bin, ec)) throw Error(ErrorCode::kNotFound, file + ": no such file");
  const int64_t size = static_cast<int64_t>(fs::file_size(checkpoint_bin, ec));
  if (ec) throw Error(ErrorCode::kNotFound, file + ": cannot stat: " + ec.message());
  if (size < kHeaderBytes) {
    throw Error(ErrorCode::kParse, file + ": " + std::to_string(size) +
                                       " bytes, too short for the 28-byte llama2.c header (not a llama2.c checkpoint?)");
  }
  std::ifstream in(checkpoint_bin, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, file + ": cannot open");
  int32_t h[7];
  in.read(reinterpret_cast<char*>(h), sizeof h);
  if (!in) throw Error(ErrorCode::kParse, file + ": cannot read the header");
  uint32_t magic;
  std::memcpy(&magic, &h[0], sizeof magic);
  if (magic == kVersionedMagic) {
    throw Error(ErrorCode::kUnsupported,
                file + ": a versioned llama2.c export (magic \"ak42\"); only the legacy version-0 format is supported");
  }

  const int64_t dim = h[0], hidden = h[1], n_layers = h[2], n_heads = h[3], n_kv_heads = h[4];
  const bool tied = h[5] > 0;
  const int64_t vocab = h[5] < 0 ? -static_cast<int64_t>(h[5]) : h[5], seq_len = h[6];
  const std::string header_str = "header (dim " + std::to_string(dim) + ", hidden_dim " + std::to_string(hidden) +
                                 ", n_layers " + std::to_string(n_layers) + ", n_heads " + std::to_string(n_heads) +
                                 ", n_kv_heads " + std::to_string(n_kv_heads) + ", vocab_size " +
                                 std::to_string(h[5]) + ", seq_len " + std::to_string(seq_len) + ")";
  // Bounds keep the size arithmetic below far from overflow and reject random bytes early.
  auto in_range = [](int64_t v, int64_t hi) { return v > 0 && v <= hi; };
  if (!in_range(dim, 1 << 16) || !in_range(hidden, 1 << 18) || !in_range(n_layers, 1024) ||
      !in_range(n_heads, 1024) || !in_range(n_kv_heads, 1024) || !in_range(vocab, 1 << 22) ||
      !in_range(seq_len, 1 << 22) || dim % n_heads != 0 || n_heads % n_kv_heads != 0 || (dim / n_heads) % 2 != 0) {
    throw Error(ErrorCode::kParse, file + ": " + header_str +
                                       " is not a valid llama2.c header (sizes must be positive, dim divisible by "
                                       "n_heads, n_heads by n_kv_heads, head_dim even)");
  }
  const int64_t head_dim = dim / n_heads, kv_dim = n_kv_heads * head_dim;

  // Offsets, in floats, of each section after the header.
  int64_t cursor = 0;
  auto section = [&](int64_t n) {
    const int64_t at = cursor;
    cursor += n;
    return at;
  };
  const int64_t o_embed = section(vocab * dim);
  const int64_t o_rms_att = section(n_layers * dim);
  const int64_t o_wq = section(n_layers * dim * dim);
  const int64_t o_wk = section(n_layers * kv_dim * dim);
  const int64_t o_wv = section(n_layers * kv_dim * dim);
  const int64_t o_wo = section(n_layers * dim * dim);
  const int64_t o_rms_ffn = section(n_layers * dim);
  const int64_t o_w1 = section(n_layers * hidden * dim);
  const int64_t o_w2 = section(n_layers * dim * hidden);
  const int64_t o_w3 = section(n_layers * hidden * dim);
  const int64_t o_rms_final = section(dim);
  section(2 * seq_len * (head_dim / 2));  // freq_cis_real, freq_cis_imag: RoPE tables, recomputed at run time
  const int64_t o_wcls = tied ? o_embed : section(vocab * dim);
  const int64_t want = kHeaderBytes + cursor * 4;
  if (size != want) {
    throw Error(ErrorCode::kParse, file + ": " + header_str + " needs " + std::to_string(want) + " bytes, the file has " +
                                       std::to_string(size) +
                                       (size < want ? " (truncated?)" : " (not a legacy llama2.c checkpoint?)"));
  }

  HostBuffer weights(static_cast<size_t>(cursor) * sizeof(float));
  in.read(static_cast<char*>(weights.data()), static_cast<std::streamsize>(weights.bytes()));
  if (!in) throw Error(ErrorCode::kParse, file + ": read failed after the header");
  float* base = weights.ptr<float>();

  HostBuffer permuted(static_cast<size_t>(n_layers * (dim + kv_dim) * dim) * sizeof(float));
  float* pq = permuted.ptr<float>();
  float* pk = pq + n_layers * dim * dim;
  for (int64_t l = 0; l < n_layers; ++l) {
    permute_for_half_rope(base + o_wq + l * dim * dim, pq + l * dim * dim, n_heads, head_dim, dim);
    permute_for_half_rope(base + o_wk + l * kv_dim * dim, pk + l * kv_dim * dim, n_kv_heads, head_dim, dim);
  }

  std::vector<std::pair<std::string, TensorView>> tensors;
  auto add = [&](std::string name, float* p, Shape shape) {
    tensors.emplace_back(std::move(name), TensorView(p, DType::kF32, shape));
  };
  add("model.embed_tokens.weight", base + o_embed, {vocab, dim});
  for (int64_t l = 0; l < n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", base + o_rms_att + l * dim, {dim});
    add(p + "self_attn.q_proj.weight", pq + l * dim * dim, {dim, dim});
    add(p + "self_attn.k_proj.weight", pk + l * kv_dim * dim, {kv_dim, dim});
    add(p + "self_attn.v_proj.weight", base + o_wv + l * kv_dim * dim, {kv_dim, dim});
    add(p + "self_attn.o_proj.weight", base + o_wo + l * dim * dim, {dim, dim});
    add(p + "post_attention_layernorm.weight", base + o_rms_ffn + l * dim, {dim});
    add(p + "mlp.gate_proj.weight", base + o_w1 + l * hidden * dim, {hidden, dim});
    add(p + "mlp.up_proj.weight", base + o_w3 + l * hidden * dim, {hidden, dim});
    add(p + "mlp.down_proj.weight", base + o_w2 + l * dim * hidden, {dim, hidden});
  }
  add("model.norm.weight", base + o_rms_final, {dim});
  if (!tied) add("lm_head.weight", base + o_wcls, {vocab, dim});

  nlohmann::ordered_json config = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"vocab_size", vocab},
      {"hidden_size", dim},
      {"intermediate_size", hidden},
      {"num_hidden_layers", n_layers},
      {"num_attention_heads", n_heads},
      {"num_key_value_heads", n_kv_heads},
      {"head_dim", head_dim},
      {"hidden_act", "silu"},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"rope_scaling", nullptr},
      {"max_position_embeddings", seq_len},
      {"tie_word_embeddings", tied},
      {"attention_bias", false},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"torch_dtype", "float32"},
  };

  fs::create_directories(out_dir, ec);
  if (ec) throw Error(ErrorCode::kInvalidArgument, out_dir.string() + ": cannot create directory: " + ec.message());
  write_safetensors(out_dir / "model.safetensors", tensors);
  const fs::path config_path = out_dir / "config.json";
  std::ofstream out(config_path);
  out << config.dump(2) << "\n";
  out.close();
  if (!out) throw Error(ErrorCode::kResource, config_path.string() + ": write failed");
}

}  // namespace skv
