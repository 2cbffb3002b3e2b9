// ModelWeights: views of every weight tensor of a Llama-family model, in its file dtype (f32, f16 or bf16).
// The views point into memory-mapped safetensors files owned by the WeightStore that bound them.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace skv {

struct LayerWeights {
  TensorView attn_norm;  // [dim]
  TensorView wq;         // [n_q_heads*head_dim, dim]   (HF Linear layout: [out, in])
  TensorView wk;         // [n_kv_heads*head_dim, dim]
  TensorView wv;         // [n_kv_heads*head_dim, dim]
  TensorView bq;         // [n_q_heads*head_dim] or empty (attention_bias)
  TensorView bk;         // [n_kv_heads*head_dim] or empty
  TensorView bv;         // [n_kv_heads*head_dim] or empty
  TensorView wo;         // [dim, n_q_heads*head_dim]
  TensorView mlp_norm;   // [dim]
  TensorView w_gate;     // [hidden_dim, dim]
  TensorView w_up;       // [hidden_dim, dim]
  TensorView w_down;     // [dim, hidden_dim]
};

struct ModelWeights {
  TensorView embed;       // [vocab_size, dim]
  std::vector<LayerWeights> layers;
  TensorView final_norm;  // [dim]
  TensorView lm_head;     // [vocab_size, dim]; the same memory as embed when tied
};

}  // namespace skv
