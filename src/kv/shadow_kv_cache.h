// ShadowKvCache: the ShadowKV attention policy (Sun et al., ICML 2025, arXiv 2410.21465, §3-4) on the CPU
// backend. This file is the exact specification the CUDA version is checked against, so it favours clarity.
//
// Per sequence and layer:
//  Prefill (§4.1). Exact K/V are kept until finish_prefill, so the prefill attention itself is exact. Then,
//  with S prompt tokens, chunk size c, L local chunks:
//   - the pre-RoPE keys of all KV heads, K [S, kv_dim], are factorized K ~ U * SV at rank
//     r = min(rank, kv_dim, S) (lowrank_factorize);
//   - the local window, the last L*c + (S mod c) tokens, stays exact (post-RoPE K and V); the first
//     S' = S - L*c - (S mod c) tokens form n_chunks = S'/c chunks (S' < 0: everything is local);
//   - landmarks: per KV head, the mean post-RoPE key of each chunk (landmark_means);
//   - outliers: per KV head, the O chunks whose keys are least similar to their landmark (outlier_chunks);
//     their exact K and V stay resident and they are never selected;
//   - the values of all chunks go to the HostValueStore (the offload store); U rows of the chunked part, SV
//     and the landmarks stay resident; the exact prompt K/V are freed.
//  Decode (§4.2), each step: the new token's K/V join the exact local window (nothing is ever dropped); the
//  chunks are scored (landmark_scores), the top k = sparse_budget/c per KV head selected (topk_chunks); chunks
//  selected in the previous step are still resident (select_reuse), only the missing ones are fetched: V from
//  the store (gather_chunks), K rebuilt from U and SV then rotated at its positions (rebuild_keys); attention
//  is exact over outliers + selected chunks + local window + generated tokens (attend_sparse).
//  When the budget covers the whole chunked part (sparse_budget >= S'), the sequence uses exact attention over
//  every token instead, and the cache records one notice (notice()).
//  Extensions (off by default): dense_layers keep exact attention in the listed layers; dense_capture chooses
//  them per sequence during its first decode steps (ShadowParams).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kv/host_value_store.h"
#include "kv/kv_cache.h"
#include "kv/shadow_params.h"

namespace skv {

// Diagnostics of one layer accumulated over decode steps (and sequences) in report mode.
struct LayerReport {
  int64_t steps = 0;               // (sequence, decode step) pairs measured (report mode only)
  double attended_mass = 0.0;      // sum over steps: exact attention mass on the attended keys (mean over query heads)
  double best_mass = 0.0;          // sum over steps: mass of the best set of as many keys (top exact weights)
  double output_error = 0.0;       // sum over steps: ||out - exact out|| / ||exact out|| over all query heads
  // sum over steps: the mass a perfect chunk selector would capture with the same budget -- per query head, the
  // top_k candidate chunks of highest exact mass plus what is always attended (outliers, local window, generated
  // tokens). attended < oracle: the landmarks picked the wrong chunks; oracle < best: the budget (or the chunk
  // granularity) is too small for the attention's spread.
  double chunk_oracle_mass = 0.0;
  int64_t top_key_queries = 0;     // (step, query head) pairs measured
  int64_t top_key_hits = 0;        // of those, the ones whose highest-weight key was attended
  int64_t selected_chunks = 0;     // chunk selections (per KV head) in steps that had a previous selection
  int64_t reused_chunks = 0;       // of those, chunks already resident from the previous step
  // ShadowParams::dense_capture (counted in every mode): sequences whose first decode steps measured this layer,
  // and of those, the ones where it switched to exact attention.
  int64_t calibrated_sequences = 0;
  int64_t exact_sequences = 0;

  // Adds another report of the same layer (other sequences or runs).
  void merge(const LayerReport& o) {
    steps += o.steps;
    attended_mass += o.attended_mass;
    best_mass += o.best_mass;
    output_error += o.output_error;
    chunk_oracle_mass += o.chunk_oracle_mass;
    top_key_queries += o.top_key_queries;
    top_key_hits += o.top_key_hits;
    selected_chunks += o.selected_chunks;
    reused_chunks += o.reused_chunks;
    calibrated_sequences += o.calibrated_sequences;
    exact_sequences += o.exact_sequences;
  }
  double mean_attended_mass() const { return steps ? attended_mass / static_cast<double>(steps) : 0.0; }
  double mean_best_mass() const { return steps ? best_mass / static_cast<double>(steps) : 0.0; }
  double mean_chunk_oracle_mass() const { return steps ? chunk_oracle_mass / static_cast<double>(steps) : 0.0; }
  double top_key_hit_rate() const {
    return top_key_queries ? static_cast<double>(top_key_hits) / static_cast<double>(top_key_queries) : 0.0;
  }
  double mean_output_error() const { return steps ? output_error / static_cast<double>(steps) : 0.0; }
  // Share of selected chunks found resident; the first step of a sequence (nothing to reuse) is not counted.
  double hit_rate() const {
    return selected_chunks ? static_cast<double>(reused_chunks) / static_cast<double>(selected_chunks) : 0.0;
  }
};

// The sizes of a model the cache estimator needs.
struct KvSizes {
  int64_t n_layers = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
};

class ShadowKvCache final : public KvCache {
 public:
  // rope_inv_freq [head_dim/2] and rope_position_scale: the model's RoPE (rope_inv_freq(config),
  // rope_position_scale(config) from model/rope_frequencies.h), used to rotate rebuilt keys.
  // Throws Error(kInvalidArgument) for invalid params or sizes.
  ShadowKvCache(int64_t n_layers, int64_t n_q_heads, int64_t n_kv_heads, int64_t head_dim, ShadowParams params,
                std::vector<float> rope_inv_freq, double rope_position_scale = 1.0);

  void add_sequence(SeqId seq, int64_t max_tokens) override;
  void release(SeqId seq) override;
  bool has_sequence(SeqId seq) const override;
  int64_t length(SeqId seq) const override;
  void append_prefill(SeqId seq, int layer, TensorView k_pre_rope, TensorView k, TensorView v) override;
  PrefillKv prefill_kv(SeqId seq, int layer) const override;
  void finish_prefill(SeqId seq) override;
  void attend_decode(const DecodeBatch& batch, int layer, TensorView q, TensorView k, TensorView v,
                     TensorView out) override;
  // device_bytes: U, SV, landmarks, outlier K/V, local window + generated K/V, resident selected chunks, the
  // RoPE cos/sin table of the chunked positions (a CPU-side cache: head_dim floats per chunked token, shared by
  // the layers), and the exact copies while prefilling or in report mode; offloaded_bytes: the value stores.
  MemoryUse memory_use() const override;

  const ShadowParams& params() const { return params_; }

  // Report mode (--report): sequences finished afterwards also keep their exact post-RoPE K/V, and every decode
  // step measures, per layer, the captured attention mass, the best possible mass and the output error.
  // The reuse counters (selected_chunks, reused_chunks) are kept in every mode.
  // (ShadowParams::oracle_selection keeps the exact K/V as well, and measures too.)
  void enable_report(bool on) { report_ = on || params_.oracle_selection; }
  std::vector<LayerReport> report() const { return reports_; }

  // Empty until a sequence's budget covered its whole chunked prompt; then one line saying exact attention
  // was used instead (set once, for the first such sequence).
  const std::string& notice() const { return notice_; }

  // How a finished prompt was laid out (for tests, --report and info).
  struct Layout {
    int64_t prompt_tokens = 0;   // S
    int64_t chunked_tokens = 0;  // S' = n_chunks * chunk_size
    int64_t n_chunks = 0;
    int64_t n_outliers = 0;      // O, clipped to n_chunks
    int64_t top_k = 0;           // chunks selected per KV head, clipped to n_chunks - O
    int64_t rank = 0;            // r, clipped to kv_dim and S
    bool exact = false;          // the budget covers the chunked part: exact attention over every token
    // The first token kept exactly in the recent window: the local window's start, or 0 for an exact sequence.
    int64_t recent_start() const { return exact ? 0 : chunked_tokens; }
  };
  Layout layout(SeqId seq) const;
  static Layout plan(const ShadowParams& params, int64_t kv_dim, int64_t prompt_tokens);

  // Bytes of one sequence of n_tokens (all prompt) at `bytes_per_element` (4: this CPU backend, 2: bf16 on the
  // GPU): resident vs offloaded. The small index arrays are not counted.
  static MemoryUse estimate_bytes(const KvSizes& sizes, const ShadowParams& params, int64_t n_tokens,
                                  int64_t bytes_per_element);

 private:
  struct Layer {
    int64_t n_tokens = 0;          // tokens cached (prompt + generated)
    // Prefill: exact copies, token-major; k/v also kept after finish_prefill in report mode.
    std::vector<float> k_pre;      // [S, kv_dim] pre-RoPE
    std::vector<float> k, v;       // [n_tokens, n_kv_heads, head_dim] post-RoPE
    // After finish_prefill (sparse sequences).
    std::vector<float> u;          // [chunked_tokens, rank]
    std::vector<float> sv;         // [rank, kv_dim]
    std::vector<float> landmarks;  // [n_kv_heads, n_chunks, head_dim]
    std::vector<uint8_t> is_outlier;  // [n_kv_heads, n_chunks]
    std::vector<int64_t> outliers;    // [n_kv_heads, n_outliers] ascending
    std::vector<float> outlier_k, outlier_v;  // [n_kv_heads, n_outliers * chunk_size, head_dim]
    HostValueStore values;                    // [n_kv_heads, n_chunks, chunk_size, head_dim]
    std::vector<int64_t> slots;               // [n_kv_heads, top_k]: chunk resident in each slot, -1 = none
    std::vector<float> slot_k, slot_v;        // [n_kv_heads, top_k * chunk_size, head_dim]
    bool has_previous_selection = false;
    // The exact recent tokens: local window + generated (every token for an exact sequence), head-major.
    std::vector<float> recent_k, recent_v;    // [n_kv_heads, recent_capacity, head_dim]
    int64_t recent_len = 0;
    int64_t recent_capacity = 0;  // capacity - the first recent token (0 for an exact layer)
    bool exact = false;           // exact attention over every token: an exact sequence or a dense layer
    int64_t calibration_steps = 0;  // dense_capture: decode steps still to measure (exact k/v kept until 0)
  };
  struct Sequence {
    int64_t capacity = 0;
    bool finished_prefill = false;
    Layout layout;
    std::vector<float> rope_table;  // [chunked_tokens, head_dim/2, 2] (cos, sin) for rebuilt keys, all layers
    std::vector<Layer> layers;
  };
  Sequence& sequence(SeqId seq);
  const Sequence& sequence(SeqId seq) const;
  void build_layer(Sequence& s, Layer& l, int64_t layer);
  // The recent segment (recent_k/v, head-major, room up to the capacity) from the exact k/v, tokens [first, n).
  void fill_recent(const Sequence& s, Layer& l, int64_t first);
  // Exact attention of q over the recent segment alone (an exact layer's every token) into out.
  void attend_recent(Layer& l, const float* q, float* out);
  void decode_one(Sequence& s, Layer& l, const float* q, const float* k, const float* v, float* out,
                  LayerReport& stats, bool measured);
  void measure(const Sequence& s, const Layer& l, const float* q, const float* out, LayerReport& r);
  // dense_capture, at each of the layer's first decode steps, given this step's measure(): below the threshold
  // the layer turns exact (make_exact) and this step's output is recomputed exactly; returns whether it did.
  bool calibrate(Sequence& s, Layer& l, const float* q, float* out, const LayerReport& step, LayerReport& stats);
  // Turns a sparse layer into an exact one from its exact k/v (every token, head-major in the recent segment)
  // and frees its sparse structures.
  void make_exact(Sequence& s, Layer& l);
  // ShadowParams::oracle_selection: scores_[h, chunk] = the exact attention mass of the chunk's tokens, max over
  // KV head h's query heads (outliers -inf).
  void oracle_scores(const Sequence& s, const Layer& l, const float* q);

  int64_t n_layers_, n_q_heads_, n_kv_heads_, head_dim_;
  ShadowParams params_;
  std::vector<float> inv_freq_;
  double position_scale_;
  bool report_ = false;
  std::vector<LayerReport> reports_;
  std::string notice_;
  std::map<SeqId, Sequence> seqs_;
  // Per-step scratch, reused across layers and sequences.
  std::vector<float> scores_;
  std::vector<int64_t> selected_, hits_;
  std::vector<uint8_t> fetch_;
};

}  // namespace skv
