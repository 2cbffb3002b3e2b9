// KvCache: all the model knows of the attention policy. FullKvCache keeps every K and V exactly; the ShadowKV
// policy (arXiv 2410.21465) keeps a low-rank shadow of K and offloads V. Per-sequence state lives here,
// keyed by SeqId, so sequences can join and leave a batch between steps.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace skv {

using SeqId = int64_t;

// One decode step: a new token for each of these sequences, at these positions.
struct DecodeBatch {
  std::vector<SeqId> seqs;
  std::vector<int64_t> positions;  // position of the new token (== tokens already cached for it)
  int64_t size() const { return static_cast<int64_t>(seqs.size()); }
};

struct MemoryUse {
  int64_t device_bytes = 0;      // resident: on the compute device (host memory for the CPU backend)
  int64_t offloaded_bytes = 0;   // in the host offload store (pinned memory for the CUDA backend)
};

// Exact K/V of a sequence's prompt so far, as the prefill attention needs them.
struct PrefillKv {
  TensorView k;  // [n_tokens, n_kv_heads, head_dim] f32, post-RoPE
  TensorView v;  // [n_tokens, n_kv_heads, head_dim] f32
};

class KvCache {
 public:
  virtual ~KvCache() = default;

  // Admits a sequence that will hold at most max_tokens tokens (prompt + generated); reserves its memory.
  // Throws Error(kResource) naming the numbers when it cannot be held.
  virtual void add_sequence(SeqId seq, int64_t max_tokens) = 0;
  virtual void release(SeqId seq) = 0;
  virtual bool has_sequence(SeqId seq) const = 0;
  // Tokens cached for the sequence (after every layer of a step has run).
  virtual int64_t length(SeqId seq) const = 0;

  // Prefill, layer by layer, possibly in several chunks: the exact K/V of the next tokens of the prompt.
  // k_pre_rope, k, v: [n_tokens, n_kv_heads, head_dim] f32.
  virtual void append_prefill(SeqId seq, int layer, TensorView k_pre_rope, TensorView k, TensorView v) = 0;
  // Every K/V of the prompt appended so far for this layer (the chunk just appended included).
  virtual PrefillKv prefill_kv(SeqId seq, int layer) const = 0;
  // The prompt is complete: a compressing policy builds its structures here.
  virtual void finish_prefill(SeqId seq) = 0;

  // What begin_decode_step tells the model about the step's attend_decode calls.
  struct DecodeStepInfo {
    // true: attend_decode only enqueues device work on the current stream (no host reads of device data, no
    // synchronization, no allocation, no host state change), so a CUDA graph may capture the step's layers and
    // replay them for a later step with the same key.
    bool capturable = false;
    // Equal (cache_id, key) pairs (for the same batch size) mean identical launches: same kernels, grids and
    // device addresses. cache_id names the cache instance (never reused, unlike its address).
    uint64_t cache_id = 0;
    uint64_t key = 0;
  };
  // Called by the model once per decode step, before attend_decode of layer 0: validates the batch, does the
  // step's host bookkeeping and enqueues the uploads of its per-step device data. The default does nothing (the
  // cache does its bookkeeping in attend_decode; not capturable).
  virtual DecodeStepInfo begin_decode_step(const DecodeBatch& batch) {
    (void)batch;
    return {};
  }

  // One decode step of one layer for a batch: appends each sequence's new k, v and attends with q.
  // q, out: [n_seqs, n_q_heads, head_dim]; k, v: [n_seqs, n_kv_heads, head_dim]; all f32, post-RoPE.
  virtual void attend_decode(const DecodeBatch& batch, int layer, TensorView q, TensorView k, TensorView v,
                             TensorView out) = 0;

  virtual MemoryUse memory_use() const = 0;
};

}  // namespace skv
