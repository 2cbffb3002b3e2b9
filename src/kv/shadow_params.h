// ShadowParams: the knobs of the ShadowKV policy (Sun et al., ICML 2025, arXiv 2410.21465, §4 and Table 6),
// with the paper's defaults: sparse budget 2048 tokens, SVD rank 160, chunks of 8 tokens, 48 outlier chunks at
// budget 2048 (24 per 1024 tokens of budget), and a local window of 4 chunks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace skv {

struct ShadowParams {
  int64_t sparse_budget = 2048;  // tokens of selected chunks attended per KV head each decode step (a multiple of chunk_size)
  int64_t rank = 160;            // rank of the pre-RoPE key factorization (clipped to n_kv_heads*head_dim and the prompt length)
  int64_t chunk_size = 8;        // tokens per chunk (c)
  int64_t outlier_chunks = -1;   // chunks per KV head kept exact (O); -1: 24 * sparse_budget / 1024
  int64_t local_chunks = 4;      // most recent prompt chunks kept exact (L), besides the S mod c remainder
  // Layers that keep exact attention over every token (their K/V stay resident, nothing is selected): an
  // extension for layers whose attention is too diffuse for a sparse budget (--report shows which). Empty:
  // every layer is sparse, as in the paper.
  std::vector<int64_t> dense_layers;
  // Per-sequence choice of dense layers (an extension; 0 = off, as in the paper): each sparse layer keeps its
  // exact K/V through the sequence's first decode steps (dense_capture_steps), where it compares the attention
  // mass its landmark selection captures with what the best chunks of the same budget would (LayerReport's
  // attended vs chunk oracle, against exact attention); a layer capturing less than dense_capture x that keeps
  // exact attention over every token for the rest of the sequence (its K/V resident), the others drop their
  // exact copies. The queries of the first generated tokens are the ones that copy an answer, so the layers that
  // would lose it are caught on the steps that matter.
  double dense_capture = 0.0;
  // The decode steps measured by dense_capture: a layer turns exact at the first of them below the threshold,
  // and keeps the exact K/V until then (an answer is copied over several steps, not only the first).
  int64_t dense_capture_steps = 1;
  // Diagnostic, not a policy: select each step the chunks of highest EXACT attention mass (per KV head, the max
  // over its query heads) instead of scoring landmarks. It needs every exact key, so the cache keeps them (as in
  // report mode); it answers "would a perfect chunk selector at this budget be enough?".
  bool oracle_selection = false;

  // Throws Error(kInvalidArgument) naming the first invalid parameter.
  void validate() const;
  // The outlier count O after resolving -1 (before clipping to the number of chunks).
  int64_t resolved_outlier_chunks() const { return outlier_chunks >= 0 ? outlier_chunks : 24 * sparse_budget / 1024; }
  // Chunks selected per KV head each step: k = sparse_budget / chunk_size.
  int64_t top_k() const { return sparse_budget / chunk_size; }
  bool is_dense(int64_t layer) const {
    return std::find(dense_layers.begin(), dense_layers.end(), layer) != dense_layers.end();
  }
};

}  // namespace skv
