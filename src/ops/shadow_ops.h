// The ShadowKV op set (Sun et al., ICML 2025, arXiv 2410.21465), one Args struct + one function per op, with
// the same discipline as ops.h: the function validates (naming the offending tensor), then dispatches to the
// cpu:: reference. Each op is one step of the algorithm; the section of the paper it implements is cited.
//
// Layout conventions: "kv_dim" = n_kv_heads * head_dim. Token-major tensors are [n_tokens, n_kv_heads,
// head_dim] as the model produces them; per-head structures are head-major [n_kv_heads, ...]. Chunk c of the
// chunked prompt holds tokens [c * chunk_size, (c + 1) * chunk_size). Chunk sets are i64 chunk indices in
// ascending order.
#pragma once

#include <cstdint>
#include <span>

#include "core/tensor.h"

namespace skv {

// §3.1, §4.1 (prefill): truncated SVD of the pre-RoPE keys of all KV heads together, K ~ U * SV.
// Method: the Gram matrix K^T K in float64 and LAPACK's symmetric eigensolver (dsyevd) give the top-`rank`
// right singular vectors V_r [kv_dim, rank]; then U = K * V_r (float64, stored f32) and SV = V_r^T, so
// U * SV = K V_r V_r^T is the orthogonal projection of K's rows on the top right-singular subspace: the
// optimal rank-r approximation (Eckart-Young). Sigma is folded into U rather than SV (U = U_svd * Sigma,
// SV = V^T), which avoids dividing by small singular values. Each eigenvector's sign is fixed so that its
// largest-magnitude component is positive (the first such on ties): the factors are canonical.
struct LowrankFactorizeArgs {
  TensorView k;                // [n_tokens, kv_dim] f32: pre-RoPE keys
  TensorView u;                // [n_tokens, rank] f32, out
  TensorView sv;               // [rank, kv_dim] f32, out (orthonormal rows)
  TensorView singular_values;  // [rank] f32, out, descending; or empty
};
void lowrank_factorize(const LowrankFactorizeArgs& args);

// §4.1 (landmarks): the mean of the post-RoPE keys of each chunk, per KV head (accumulated in float64).
struct LandmarkMeansArgs {
  TensorView k;          // [n_chunks * chunk_size, n_kv_heads, head_dim] f32: post-RoPE keys of the chunked prompt
  TensorView landmarks;  // [n_kv_heads, n_chunks, head_dim] f32, out
  int64_t chunk_size = 0;
};
void landmark_means(const LandmarkMeansArgs& args);

// §4.1 (outliers): per KV head, min_cos[c] = the lowest cosine similarity between a key of chunk c and c's
// landmark (float64; a zero-norm key or landmark has similarity 0); the n_outliers chunks of smallest min_cos
// (ties: the lower chunk index) are the outliers, kept exact and never selected.
struct OutlierChunksArgs {
  TensorView k;          // [n_chunks * chunk_size, n_kv_heads, head_dim] f32: post-RoPE keys
  TensorView landmarks;  // [n_kv_heads, n_chunks, head_dim] f32
  TensorView min_cos;    // [n_kv_heads, n_chunks] f32, out; or empty
  TensorView outliers;   // [n_kv_heads, n_outliers] i64, out: ascending chunk indices (n_outliers <= n_chunks)
  int64_t chunk_size = 0;
};
void outlier_chunks(const OutlierChunksArgs& args);

// §4.2 (decode, chunk scores): for each query head, softmax over the candidate (non-excluded) landmarks of its
// KV head of q . landmark * scale (float64); a KV head's score of a chunk is the max over its GQA group of
// query heads. Excluded chunks score -inf.
struct LandmarkScoresArgs {
  TensorView q;          // [n_q_heads, head_dim] f32: post-RoPE query of the decode token
  TensorView landmarks;  // [n_kv_heads, n_chunks, head_dim] f32
  TensorView excluded;   // [n_kv_heads, n_chunks] u8: 1 = not a candidate (an outlier); or empty
  TensorView scores;     // [n_kv_heads, n_chunks] f32, out
  float scale = 0.0f;    // 0: 1/sqrt(head_dim)
};
void landmark_scores(const LandmarkScoresArgs& args);

// §4.2 (selection): per KV head the k chunks of highest score (ties: the lower chunk index), written in
// ascending chunk order. -inf never counts as selectable: each head needs at least k finite scores.
struct TopkChunksArgs {
  TensorView scores;    // [n_kv_heads, n_chunks] f32
  TensorView selected;  // [n_kv_heads, k] i64, out: ascending chunk indices
};
void topk_chunks(const TopkChunksArgs& args);

// §4.2 (cache reuse across steps, "temporal locality"): `slots` lists the chunk resident in each of the k
// slots of a KV head (the previous step's selection; -1 = empty). A selected chunk already resident keeps its
// slot (a hit); the missing chunks, in ascending order, take the freed slots in ascending slot order, marked
// in `fetch`. Afterwards `slots` holds exactly this step's selection.
struct SelectReuseArgs {
  TensorView selected;  // [n_kv_heads, k] i64: this step's chunks (distinct)
  TensorView slots;     // [n_kv_heads, k] i64, in/out
  TensorView fetch;     // [n_kv_heads, k] u8, out: 1 = the slot's chunk must be fetched
  TensorView hits;      // [n_kv_heads] i64, out: selected chunks already resident
};
void select_reuse(const SelectReuseArgs& args);

// §4.2 (value fetch): copies the values of the slots' chunks from the offload store (HostValueStore layout).
struct GatherChunksArgs {
  TensorView store;  // [n_kv_heads, n_chunks, chunk_size, head_dim] f32
  TensorView slots;  // [n_kv_heads, k] i64: chunk of each slot
  TensorView fetch;  // [n_kv_heads, k] u8: copy only where 1; or empty: every slot
  TensorView out;    // [n_kv_heads, k, chunk_size, head_dim] f32, out
};
void gather_chunks(const GatherChunksArgs& args);

// §4.2 (key reconstruction): K of each slot's chunk rebuilt as U[rows of the chunk] * SV[:, that head's
// columns], then RoPE at the tokens' original positions first_position + row: the model's rope op, or, when
// rope_table is given, the same rotation with its cos/sin precomputed (rope_cos_sin_table: bit-identical, and
// it spares the CPU one double sincos per rebuilt token and frequency).
struct RebuildKeysArgs {
  TensorView u;         // [n_tokens, rank] f32: U rows of the chunked prompt
  TensorView sv;        // [rank, n_kv_heads * head_dim] f32
  TensorView slots;     // [n_kv_heads, k] i64
  TensorView fetch;     // [n_kv_heads, k] u8: rebuild only where 1; or empty: every slot
  TensorView out;       // [n_kv_heads, k, chunk_size, head_dim] f32, out: post-RoPE keys
  TensorView inv_freq;  // [head_dim / 2] f32
  double position_scale = 1.0;
  int64_t first_position = 0;  // position of U's row 0
  TensorView rope_table;       // [n_tokens, head_dim / 2, 2] f32 (cos, sin) of U's rows, or empty
};
void rebuild_keys(const RebuildKeysArgs& args);

// The (cos, sin) pairs the rope op uses for positions first_position + [0, n_tokens): angle in double, rounded
// to f32, exactly as cpu::rope computes them.
void rope_cos_sin_table(TensorView table /* [n_tokens, head_dim / 2, 2] f32, out */, TensorView inv_freq /* [head_dim / 2] */,
                        double position_scale, int64_t first_position);

// §4.2 (sparse attention): exact softmax attention of one query token over the union of several key sets
// (outliers, selected chunks, local window + generated tokens), one softmax across all of them. GQA: query
// head h reads KV head h / (n_q_heads / n_kv_heads). Numerics as attention_decode: f32 scores with the max
// subtracted, the denominator in float64.
struct SparseKvSegment {
  TensorView k;         // [n_kv_heads, capacity, head_dim] f32 (post-RoPE)
  TensorView v;         // [n_kv_heads, capacity, head_dim] f32
  int64_t length = 0;   // rows [0, length) of each head are attended
};
struct AttendSparseArgs {
  TensorView q;                              // [n_q_heads, head_dim] f32
  std::span<const SparseKvSegment> segments;  // at least one key in all
  TensorView out;                            // [n_q_heads, head_dim] f32
  float scale = 0.0f;                        // 0: 1/sqrt(head_dim)
};
void attend_sparse(const AttendSparseArgs& args);

}  // namespace skv
