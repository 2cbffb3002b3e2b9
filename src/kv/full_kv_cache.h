// FullKvCache: every K and V of every sequence kept exactly (f32 on the CPU backend); decode attends over all.
#pragma once

#include <map>
#include <vector>

#include "kv/kv_cache.h"

namespace skv {

class FullKvCache final : public KvCache {
 public:
  FullKvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim);

  void add_sequence(SeqId seq, int64_t max_tokens) override;
  void release(SeqId seq) override;
  bool has_sequence(SeqId seq) const override;
  int64_t length(SeqId seq) const override;
  void append_prefill(SeqId seq, int layer, TensorView k_pre_rope, TensorView k, TensorView v) override;
  PrefillKv prefill_kv(SeqId seq, int layer) const override;
  void finish_prefill(SeqId seq) override;
  void attend_decode(const DecodeBatch& batch, int layer, TensorView q, TensorView k, TensorView v,
                     TensorView out) override;
  MemoryUse memory_use() const override;

  // Bytes one sequence of n_tokens needs.
  int64_t bytes_per_sequence(int64_t n_tokens) const;

 private:
  struct LayerKv {
    std::vector<float> k;  // [capacity, n_kv_heads, head_dim], the first `length` rows used
    std::vector<float> v;  // [capacity, n_kv_heads, head_dim]
    int64_t length = 0;
  };
  struct Sequence {
    int64_t capacity = 0;
    std::vector<LayerKv> layers;
  };
  Sequence& sequence(SeqId seq);
  const Sequence& sequence(SeqId seq) const;
  void append(Sequence& s, int layer, const float* k, const float* v, int64_t n_tokens, SeqId seq);

  int64_t n_layers_, n_kv_heads_, head_dim_;
  std::map<SeqId, Sequence> seqs_;
};

}  // namespace skv
