// FullKvCache: exact attention over every cached token.
#include "kv/full_kv_cache.h"

#include <algorithm>
#include <string>

#include "ops/ops.h"

namespace skv {

FullKvCache::FullKvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim)
    : n_layers_(n_layers), n_kv_heads_(n_kv_heads), head_dim_(head_dim) {}

int64_t FullKvCache::bytes_per_sequence(int64_t n_tokens) const {
  return 2 * n_layers_ * n_kv_heads_ * head_dim_ * n_tokens * static_cast<int64_t>(sizeof(float));
}

void FullKvCache::add_sequence(SeqId seq, int64_t max_tokens) {
  if (seqs_.count(seq)) throw Error(ErrorCode::kInvalidArgument, "sequence " + std::to_string(seq) + " already exists");
  if (max_tokens <= 0) throw Error(ErrorCode::kInvalidArgument, "a sequence needs room for at least one token");
  Sequence s;
  s.capacity = max_tokens;
  s.layers.resize(static_cast<size_t>(n_layers_));
  const size_t row = static_cast<size_t>(n_kv_heads_ * head_dim_);
  try {
    for (auto& l : s.layers) {
      l.k.reserve(static_cast<size_t>(max_tokens) * row);
      l.v.reserve(static_cast<size_t>(max_tokens) * row);
    }
  } catch (const std::bad_alloc&) {
    throw Error(ErrorCode::kResource, "the KV cache of a sequence of " + std::to_string(max_tokens) + " tokens needs " +
                                          std::to_string(bytes_per_sequence(max_tokens) >> 20) +
                                          " MiB of host memory, which could not be allocated");
  }
  seqs_.emplace(seq, std::move(s));
}

void FullKvCache::release(SeqId seq) { seqs_.erase(seq); }

bool FullKvCache::has_sequence(SeqId seq) const { return seqs_.count(seq) != 0; }

FullKvCache::Sequence& FullKvCache::sequence(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) throw Error(ErrorCode::kInvalidArgument, "unknown sequence " + std::to_string(seq));
  return it->second;
}

const FullKvCache::Sequence& FullKvCache::sequence(SeqId seq) const {
  return const_cast<FullKvCache*>(this)->sequence(seq);
}

int64_t FullKvCache::length(SeqId seq) const { return sequence(seq).layers[0].length; }

void FullKvCache::append(Sequence& s, int layer, const float* k, const float* v, int64_t n_tokens, SeqId seq) {
  SKV_ASSERT(layer >= 0 && layer < n_layers_);
  LayerKv& l = s.layers[static_cast<size_t>(layer)];
  if (l.length + n_tokens > s.capacity)
    throw Error(ErrorCode::kResource, "sequence " + std::to_string(seq) + " exceeds its reserved " +
                                          std::to_string(s.capacity) + " tokens");
  const size_t n = static_cast<size_t>(n_tokens * n_kv_heads_ * head_dim_);
  l.k.insert(l.k.end(), k, k + n);
  l.v.insert(l.v.end(), v, v + n);
  l.length += n_tokens;
}

void FullKvCache::append_prefill(SeqId seq, int layer, TensorView /*k_pre_rope*/, TensorView k, TensorView v) {
  SKV_ASSERT(k.shape == v.shape && k.dim(1) == n_kv_heads_ && k.dim(2) == head_dim_);
  append(sequence(seq), layer, k.ptr<const float>(), v.ptr<const float>(), k.dim(0), seq);
}

PrefillKv FullKvCache::prefill_kv(SeqId seq, int layer) const {
  const LayerKv& l = sequence(seq).layers[static_cast<size_t>(layer)];
  const Shape shape{l.length, n_kv_heads_, head_dim_};
  return {TensorView(const_cast<float*>(l.k.data()), DType::kF32, shape),
          TensorView(const_cast<float*>(l.v.data()), DType::kF32, shape)};
}

void FullKvCache::finish_prefill(SeqId /*seq*/) {}

void FullKvCache::attend_decode(const DecodeBatch& batch, int layer, TensorView q, TensorView k, TensorView v,
                                TensorView out) {
  const int64_t n_q_heads = q.dim(1);
  const int64_t kv_row = n_kv_heads_ * head_dim_;
  for (int64_t b = 0; b < batch.size(); ++b) {
    Sequence& s = sequence(batch.seqs[static_cast<size_t>(b)]);
    LayerKv& l = s.layers[static_cast<size_t>(layer)];
    SKV_ASSERT_MSG(l.length == batch.positions[static_cast<size_t>(b)], "decode position out of step with the cache");
    append(s, layer, k.ptr<const float>() + b * kv_row, v.ptr<const float>() + b * kv_row, 1,
           batch.seqs[static_cast<size_t>(b)]);
    const Shape kv_shape{l.length, n_kv_heads_, head_dim_};
    attention_decode({.q = TensorView(q.ptr<float>() + b * n_q_heads * head_dim_, DType::kF32, {n_q_heads, head_dim_}),
                      .k = TensorView(l.k.data(), DType::kF32, kv_shape),
                      .v = TensorView(l.v.data(), DType::kF32, kv_shape),
                      .out = TensorView(out.ptr<float>() + b * n_q_heads * head_dim_, DType::kF32, {n_q_heads, head_dim_})});
  }
}

MemoryUse FullKvCache::memory_use() const {
  MemoryUse use;
  for (const auto& [id, s] : seqs_) use.device_bytes += bytes_per_sequence(s.capacity);
  return use;
}

}  // namespace skv
