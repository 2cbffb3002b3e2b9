// ModelConfig: everything the engine needs to know about a Llama-family architecture, read from config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace skv {

enum class Architecture { kLlama, kMistral, kQwen2 };
const char* architecture_name(Architecture arch);  // "LlamaForCausalLM", ...

enum class RopeScalingType { kNone, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;                      // linear and llama3
  double low_freq_factor = 1.0;             // llama3
  double high_freq_factor = 4.0;            // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  int64_t vocab_size = 0;
  int64_t dim = 0;           // hidden_size
  int64_t hidden_dim = 0;    // intermediate_size (MLP)
  int64_t n_layers = 0;
  int64_t n_q_heads = 0;     // num_attention_heads
  int64_t n_kv_heads = 0;    // num_key_value_heads (defaults to n_q_heads)
  int64_t head_dim = 0;      // head_dim when present, else dim / n_q_heads
  double norm_eps = 1e-5;    // rms_norm_eps
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2; Llama's attention_bias)
  int64_t sliding_window = 0;   // Mistral's, recorded only: 0 = none
  DType torch_dtype = DType::kF32;  // informational; the tensors' own dtypes are what is loaded
  std::vector<int32_t> bos_token_ids;  // from config.json (may be empty)
  std::vector<int32_t> eos_token_ids;

  int64_t q_dim() const { return n_q_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  int64_t group_size() const { return n_q_heads / n_kv_heads; }
  // Parameters in the weight tensors (the tied lm_head counted once).
  int64_t parameter_count() const;
  // Bytes of exact K and V for one sequence of n_tokens at `bytes_per_element`.
  int64_t kv_cache_bytes(int64_t n_tokens, int64_t bytes_per_element) const {
    return 2 * n_layers * kv_dim() * n_tokens * bytes_per_element;
  }
};

}  // namespace skv
