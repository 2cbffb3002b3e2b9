// The op set of the model, one Args struct + one function per op. Each function validates its arguments
// (naming the offending tensor), then dispatches on the device: cpu:: is the reference and the CPU backend;
// cuda:: (src/ops/cuda, built with -DSKV_CUDA=ON) are the CUDA twins. All tensors of one call live on one device
// (exceptions are stated) and are contiguous. CUDA ops are asynchronous: they enqueue on the thread's current
// stream of that device (backend/device.h) and return.
//
// Dtypes on CUDA: activations f32 as on the CPU; weights bf16 (f32 accepted); the KV cache bf16 (f32 accepted:
// the exact mode, whose numbers match the CPU's).
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
  TensorView w;     // [out_features, in_features] f32 (the CPU backend converts f16/bf16 weights once at load);
                    // CUDA: bf16 (tensor cores, x rounded to bf16, f32 accumulation) or f32
  TensorView bias;  // [out_features] f32 or empty
  TensorView out;   // [n_tokens, out_features] f32
  // true: out += x * w^T (+ bias), the residual add fused into the projection (o_proj, down_proj); out must not
  // alias x.
  bool accumulate = false;
};
void linear(const LinearArgs& args);
// CUDA, bf16 w: up to this many tokens (and in_features % 8 == 0) take the bandwidth-bound GEMV kernel, more
// take cuBLAS (a cast of x to bf16, then a tensor-core GEMM: faster from 5 tokens on, bench_linear on an H200).
// Only the GEMV is captured in the decode step's CUDA graphs.
constexpr int64_t kCudaGemvMaxTokens = 4;

// RoPE in Hugging Face's rotate-half layout: dimension i pairs with i + head_dim/2.
// inv_freq already carries llama3 scaling; linear scaling divides the positions (position_scale = 1/factor).
struct RopeArgs {
  TensorView x;          // [n_tokens, n_heads, head_dim] f32, rotated in place
  TensorView positions;  // [n_tokens] i64
  TensorView inv_freq;   // [head_dim / 2] f32
  double position_scale = 1.0;
};
void rope(const RopeArgs& args);

// Two layouts: separate gate and up, or (up empty) one packed tensor per row [gate | up], which is what one
// linear over the concatenated [w_gate; w_up] produces.
struct SwigluArgs {
  TensorView gate;  // [n_tokens, hidden_dim] f32, or packed: [n_tokens, 2 * hidden_dim] f32 = [gate | up]
  TensorView up;    // [n_tokens, hidden_dim] f32, or empty (packed)
  TensorView out;   // [n_tokens, hidden_dim] f32 = silu(gate) * up (may alias gate unless packed)
};
void swiglu(const SwigluArgs& args);

// The attention inputs of a layer from one fused projection: qkv holds per token [q | k | v] (the output of a
// linear over the concatenated [w_q; w_k; w_v]); this splits it into contiguous per-head tensors, rotates q and
// k with RoPE exactly as `rope` does, and optionally keeps the keys before rotation (ShadowKV factorizes the
// pre-RoPE keys, paper section 3.2). One pass instead of three copies and two rope calls.
struct SplitQkvRopeArgs {
  TensorView qkv;        // [n_tokens, (n_q_heads + 2 * n_kv_heads) * head_dim] f32
  TensorView positions;  // [n_tokens] i64
  TensorView inv_freq;   // [head_dim / 2] f32
  double position_scale = 1.0;
  TensorView q;          // [n_tokens, n_q_heads, head_dim] f32, rotated
  TensorView k;          // [n_tokens, n_kv_heads, head_dim] f32, rotated
  TensorView v;          // [n_tokens, n_kv_heads, head_dim] f32
  TensorView k_pre;      // [n_tokens, n_kv_heads, head_dim] f32 before rotation, or empty (not written)
};
void split_qkv_rope(const SplitQkvRopeArgs& args);

struct AddArgs {
  TensorView a;    // [n, dim] f32
  TensorView b;    // [n, dim] f32
  TensorView out;  // [n, dim] f32 = a + b (may alias a)
};
void add(const AddArgs& args);

// Exact causal attention of a chunk of queries over keys [0, kv_len): query row i sits at position
// q_start + i and sees keys 0..q_start+i. GQA: query head h reads kv head h / (n_q_heads / n_kv_heads).
// CUDA: q f32 or bf16, k and v both bf16 or both f32 (the CUDA KV cache), head_dim 1..256. bf16 K/V at head_dim
// 64 or 128: the tensor-core kernel (q and P rounded to bf16, f32 accumulation and softmax); anything else: the
// generic SIMT kernel (f32 products, accumulation and softmax).
struct AttentionPrefillArgs {
  TensorView q;    // [n_q_tokens, n_q_heads, head_dim] f32 (CUDA: f32 or bf16)
  TensorView k;    // [kv_len, n_kv_heads, head_dim] f32 (post-RoPE) (CUDA: bf16 or f32)
  TensorView v;    // [kv_len, n_kv_heads, head_dim] f32 (CUDA: as k)
  TensorView out;  // [n_q_tokens, n_q_heads, head_dim] f32
  int64_t q_start = 0;  // kv_len == q_start + n_q_tokens
  float scale = 0.0f;   // 0: 1/sqrt(head_dim)
};
void attention_prefill(const AttentionPrefillArgs& args);

// Exact attention of one query token over a set of keys (no mask): a decode step of one sequence.
// CUDA: k and v both bf16 or both f32, head_dim 1..256 (the attention_decode_batch kernels with one sequence).
struct AttentionDecodeArgs {
  TensorView q;    // [n_q_heads, head_dim] f32
  TensorView k;    // [kv_len, n_kv_heads, head_dim] f32 (CUDA: bf16 or f32)
  TensorView v;    // [kv_len, n_kv_heads, head_dim] f32 (CUDA: as k)
  TensorView out;  // [n_q_heads, head_dim] f32
  float scale = 0.0f;
};
void attention_decode(const AttentionDecodeArgs& args);

// One decode step of a batch of sequences of different lengths over a slotted KV cache: sequence i attends with
// q[i] over keys [0, lengths[i]) of slot slots[i] (no mask). GQA as above.
// CUDA: split-KV flash decoding (one CTA per (sequence, KV head, split) serves the whole GQA group, then a
// log-sum-exp combine); head_dim 1..256, K/V both bf16 or both f32. bf16 K/V at head_dim 64 or 128: tensor cores
// (q rounded to bf16, f32 accumulation); anything else: the generic SIMT kernels (f32 products).
// The CPU twin validates slots and lengths; on CUDA they are device data the host does not read: a sequence
// whose slot is outside [0, n_slots) or whose length is outside [1, capacity] gets NaN outputs (never an
// out-of-bounds read).
struct AttentionDecodeBatchArgs {
  TensorView q;          // [n_seqs, n_q_heads, head_dim] f32
  TensorView k_cache;    // [n_slots, capacity, n_kv_heads, head_dim] f32 (CUDA: bf16 or f32)
  TensorView v_cache;    // [n_slots, capacity, n_kv_heads, head_dim] f32 (CUDA: as k_cache)
  TensorView slots;      // [n_seqs] i32: the cache slot of each sequence
  TensorView lengths;    // [n_seqs] i32: keys attended, 1..capacity
  TensorView out;        // [n_seqs, n_q_heads, head_dim] f32
  TensorView workspace;  // CUDA only, optional: f32 [attention_decode_batch_workspace_floats(...)] for the split
                         // partials; empty: the backend's scratch (ScratchSlot::kAttentionPartials)
  int64_t max_length = 0;  // an upper bound of lengths (sizes the splits); 0: capacity. CUDA: a sequence
                           // longer than max_length gets NaN outputs (the CPU twin rejects it)
  float scale = 0.0f;      // 0: 1/sqrt(head_dim)
};
void attention_decode_batch(const AttentionDecodeBatchArgs& args);
// The f32 elements of workspace the CUDA kernels need for these sizes, whichever kernel (tensor-core or generic)
// the K/V dtype picks (0 in a build without CUDA).
int64_t attention_decode_batch_workspace_floats(int64_t n_seqs, int64_t n_q_heads, int64_t n_kv_heads,
                                                int64_t head_dim, int64_t max_length, int device = 0);

// Per-sequence sampling parameters, with the uniform draw made by the caller on the host (from its seeded
// generator), so the CPU and CUDA twins pick the same token. Sampler draws
// std::generate_canonical<double, 53>(rng): the same number gives the same token as Sampler::sample.
struct TokenSamplingParams {
  float temperature = 0.0f;  // 0: greedy (argmax, ties to the lowest id); else in (0, 100]
  int64_t top_k = 0;         // 0: no limit
  float top_p = 1.0f;        // (0, 1]
  double uniform = 0.0;      // [0, 1)
};

// Picks one token per row with exactly Sampler's semantics (src/engine/sampler.cpp): candidates sorted by logit
// descending (ties: the lower id), the top_k first kept, p_i = exp((l_i - l_max) / T) in double, the nucleus
// cut where the running mass first reaches top_p, then the inverse CDF at uniform * (kept mass).
struct SampleTokensArgs {
  TensorView logits;                          // [n_seqs, vocab] f32
  std::span<const TokenSamplingParams> params;  // host memory, one per row
  TensorView out;                             // [n_seqs] i32, on the logits' device or on the CPU
};
void sample_tokens(const SampleTokensArgs& args);

}  // namespace skv

namespace skv {

// Copies rows of f32 values into a destination of f32 or bf16 (bf16: round to nearest even), optionally
// scattered: row i of src goes to row dst_rows[i] of dst, else to row i. The CUDA KV cache stores a prefill
// chunk (dense) and a decode step's new K/V of every sequence (scattered, one launch per layer) with it.
// CUDA: dst_rows is device data the host does not read: a row index outside [0, n_dst_rows) is skipped (never an
// out-of-bounds write); the CPU twin rejects it.
struct CastRowsArgs {
  TensorView src;       // [n_rows, row] f32
  TensorView dst;       // [n_dst_rows, row] f32 or bf16
  TensorView dst_rows;  // [n_rows] i64, or empty: then n_dst_rows >= n_rows and row i goes to row i
};
void cast_rows(const CastRowsArgs& args);

}  // namespace skv
