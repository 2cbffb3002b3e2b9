// ModelConfig helpers declared in model_config.h: architecture names and the parameter count.
#include "loader/model_config.h"

namespace skv {

const char* architecture_name(Architecture arch) {
  switch (arch) {
    case Architecture::kLlama: return "LlamaForCausalLM";
    case Architecture::kMistral: return "MistralForCausalLM";
    case Architecture::kQwen2: return "Qwen2ForCausalLM";
  }
  return "?";
}

int64_t ModelConfig::parameter_count() const {
  const int64_t attn = q_dim() * dim + 2 * kv_dim() * dim + dim * q_dim() +
                       (attention_bias ? q_dim() + 2 * kv_dim() : 0);
  const int64_t mlp = 3 * hidden_dim * dim;
  const int64_t per_layer = attn + mlp + 2 * dim;  // + attention and MLP RMSNorm weights
  const int64_t embed = vocab_size * dim;
  return embed + (tie_word_embeddings ? 0 : embed) + n_layers * per_layer + dim /* final norm */;
}

}  // namespace skv
