// The op set of the model, one Args struct + one function per op. Each function validates its arguments
// (naming the offending tensor), then dispatches on the device: cpu:: is the reference and the CPU backend;
// CUDA twins of the same names land with the CUDA backend.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/tensor.h"

namespace skv {

struct EmbeddingArgs {
  TensorView ids;    // [n_tokens] i32
  TensorView table;  // [vocab_size, dim] f32/f16/bf16
  TensorView out;    // [n_tokens, dim] f32
};
void embedding(const EmbeddingArgs& args);

struct RmsNormArgs {
  TensorView x;    // [n_tokens, dim] f32
  TensorView w;    // [dim] f32/f16/bf16
  TensorView out;  // [n_tokens, dim] f32 (may alias x)
  float eps = 1e-5f;
};
void rms_norm(const RmsNormArgs& args);

// out = x * w^T (+ bias): the projections. w keeps the HF Linear layout [out_features, in_features].
struct LinearArgs {
  TensorView x;     // [n_tokens, in_features] f32
  TensorView w;     // [out_features, in_features] f32 (the CPU backend converts f16/bf16 weights once at load)
  TensorView bias;  // [out_features] f32 or empty
  TensorView out;   // [n_tokens, out_features] f32
};
void linear(const LinearArgs& args);

// RoPE in Hugging Face's rotate-half layout: dimension i pairs with i + head_dim/2.
// inv_freq already carries llama3 scaling; linear scaling divides the positions (position_scale = 1/factor).
struct RopeArgs {
  TensorView x;          // [n_tokens, n_heads, head_dim] f32, rotated in place
  TensorView positions;  // [n_tokens] i64
  TensorView inv_freq;   // [head_dim / 2] f32
  double position_scale = 1.0;
};
void rope(const RopeArgs& args);

struct SwigluArgs {
  TensorView gate;  // [n_tokens, hidden_dim] f32
  TensorView up;    // [n_tokens, hidden_dim] f32
  TensorView out;   // [n_tokens, hidden_dim] f32 = silu(gate) * up (may alias gate)
};
void swiglu(const SwigluArgs& args);

struct AddArgs {
  TensorView a;    // [n, dim] f32
  TensorView b;    // [n, dim] f32
  TensorView out;  // [n, dim] f32 = a + b (may alias a)
};
void add(const AddArgs& args);

// Exact causal attention of a chunk of queries over keys [0, kv_len): query row i sits at position
// q_start + i and sees keys 0..q_start+i. GQA: query head h reads kv head h / (n_q_heads / n_kv_heads).
struct AttentionPrefillArgs {
  TensorView q;    // [n_q_tokens, n_q_heads, head_dim] f32
  TensorView k;    // [kv_len, n_kv_heads, head_dim] f32 (post-RoPE)
  TensorView v;    // [kv_len, n_kv_heads, head_dim] f32
  TensorView out;  // [n_q_tokens, n_q_heads, head_dim] f32
  int64_t q_start = 0;  // kv_len == q_start + n_q_tokens
  float scale = 0.0f;   // 0: 1/sqrt(head_dim)
};
void attention_prefill(const AttentionPrefillArgs& args);

// Exact attention of one query token over a set of keys (no mask): a decode step of one sequence.
struct AttentionDecodeArgs {
  TensorView q;    // [n_q_heads, head_dim] f32
  TensorView k;    // [kv_len, n_kv_heads, head_dim] f32
  TensorView v;    // [kv_len, n_kv_heads, head_dim] f32
  TensorView out;  // [n_q_heads, head_dim] f32
  float scale = 0.0f;
};
void attention_decode(const AttentionDecodeArgs& args);

}  // namespace skv
