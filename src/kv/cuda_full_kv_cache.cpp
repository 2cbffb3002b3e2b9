// CudaFullKvCache: bf16 or f32 slabs on the device, decode steps batched into one attention launch per layer.
#include "kv/cuda_full_kv_cache.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include "ops/ops.h"

namespace skv {

int64_t CudaFullKvCache::slab_bytes(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int64_t n_slots,
                                    int64_t capacity, DType kv_dtype) {
  return 2 * n_layers * n_slots * capacity * n_kv_heads * head_dim * static_cast<int64_t>(dtype_size(kv_dtype));
}

CudaFullKvCache::CudaFullKvCache(int64_t n_layers, int64_t n_q_heads, int64_t n_kv_heads, int64_t head_dim,
                                 int64_t n_slots, int64_t capacity, int device, DType kv_dtype)
    : n_layers_(n_layers), n_q_heads_(n_q_heads), n_kv_heads_(n_kv_heads), head_dim_(head_dim), n_slots_(n_slots),
      capacity_(capacity), device_(device), kv_dtype_(kv_dtype), instance_id_([] {
        static std::atomic<uint64_t> next{1};
        return next++;
      }()) {
  if (kv_dtype != DType::kBF16 && kv_dtype != DType::kF32)
    throw Error(ErrorCode::kInvalidArgument, std::string("the CUDA KV cache holds bf16 or f32 K/V, not ") +
                                                 dtype_name(kv_dtype));
  if (n_slots < 1 || capacity < 1)
    throw Error(ErrorCode::kInvalidArgument, "the CUDA KV cache needs at least one slot of at least one token");
  if (capacity > INT32_MAX)
    throw Error(ErrorCode::kResource, "the CUDA KV cache holds at most " + std::to_string(INT32_MAX) +
                                          " tokens per sequence, asked for " + std::to_string(capacity));
  const int64_t rows = n_slots * capacity, row = n_kv_heads * head_dim;
  const size_t layer_bytes = static_cast<size_t>(rows * row) * dtype_size(kv_dtype);
  try {
    k_.reserve(static_cast<size_t>(n_layers));
    v_.reserve(static_cast<size_t>(n_layers));
    for (int64_t l = 0; l < n_layers; ++l) {
      k_.emplace_back(layer_bytes, device);
      v_.emplace_back(layer_bytes, device);
    }
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kResource) throw;
    const int64_t total = slab_bytes(n_layers, n_kv_heads, head_dim, n_slots, capacity, kv_dtype);
    k_.clear();
    v_.clear();
    throw Error(ErrorCode::kResource, "the CUDA KV cache of " + std::to_string(n_slots) + " sequences x " +
                                          std::to_string(capacity) + " tokens in " + dtype_name(kv_dtype) + " needs " +
                                          std::to_string(total >> 20) +
                                          " MiB of device memory, which could not be allocated (" + e.what() + ")");
  }
  slot_used_.assign(static_cast<size_t>(n_slots), false);
  step_host_ = PinnedHostBuffer(static_cast<size_t>(n_slots) * 16);
  step_dev_ = DeviceBuffer(static_cast<size_t>(n_slots) * 16, device);
  {
    DeviceGuard guard(device);
    step_uploaded_ = std::make_unique<Event>();
  }
  // The decode partials of the largest step, reserved now so no step grows the scratch buffer (which would
  // synchronize and drop the model's CUDA graphs). The split plan is not monotone in the batch size nor in the
  // length bound, so take the maximum over every batch size and every length bound a step can use.
  int64_t floats = 0;
  for (int64_t n = 1; n <= n_slots; ++n)
    for (int64_t len = kLengthBucket;; len += kLengthBucket) {
      const int64_t bound = std::min(len, capacity);
      floats = std::max(floats, attention_decode_batch_workspace_floats(n, n_q_heads, n_kv_heads, head_dim, bound, device));
      if (bound == capacity) break;
    }
  if (floats > 0) reserve_scratch(ScratchSlot::kAttentionPartials, static_cast<size_t>(floats) * sizeof(float), device);
}

TensorView CudaFullKvCache::rows(const DeviceBuffer& slab) const {
  return slab.view(kv_dtype_, {n_slots_ * capacity_, n_kv_heads_ * head_dim_});
}

TensorView CudaFullKvCache::slab4(const DeviceBuffer& slab) const {
  return slab.view(kv_dtype_, {n_slots_, capacity_, n_kv_heads_, head_dim_});
}

void CudaFullKvCache::add_sequence(SeqId seq, int64_t max_tokens) {
  if (seqs_.count(seq)) throw Error(ErrorCode::kInvalidArgument, "sequence " + std::to_string(seq) + " already exists");
  if (max_tokens <= 0) throw Error(ErrorCode::kInvalidArgument, "a sequence needs room for at least one token");
  if (max_tokens > capacity_)
    throw Error(ErrorCode::kResource, "a sequence of " + std::to_string(max_tokens) +
                                          " tokens exceeds the CUDA KV cache's " + std::to_string(capacity_) +
                                          " tokens per sequence");
  const auto it = std::find(slot_used_.begin(), slot_used_.end(), false);
  if (it == slot_used_.end())
    throw Error(ErrorCode::kResource, "the CUDA KV cache holds " + std::to_string(n_slots_) +
                                          " sequences and all are in use");
  *it = true;
  Sequence s;
  s.slot = it - slot_used_.begin();
  s.max_tokens = max_tokens;
  s.layer_length.assign(static_cast<size_t>(n_layers_), 0);
  seqs_.emplace(seq, std::move(s));
}

void CudaFullKvCache::release(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  slot_used_[static_cast<size_t>(it->second.slot)] = false;
  seqs_.erase(it);
}

bool CudaFullKvCache::has_sequence(SeqId seq) const { return seqs_.count(seq) != 0; }

CudaFullKvCache::Sequence& CudaFullKvCache::sequence(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) throw Error(ErrorCode::kInvalidArgument, "unknown sequence " + std::to_string(seq));
  return it->second;
}

const CudaFullKvCache::Sequence& CudaFullKvCache::sequence(SeqId seq) const {
  return const_cast<CudaFullKvCache*>(this)->sequence(seq);
}

int64_t CudaFullKvCache::length(SeqId seq) const { return sequence(seq).layer_length[0]; }

void CudaFullKvCache::append_prefill(SeqId seq, int layer, TensorView /*k_pre_rope*/, TensorView k, TensorView v) {
  SKV_ASSERT(layer >= 0 && layer < n_layers_);
  SKV_ASSERT(k.shape == v.shape && k.dim(1) == n_kv_heads_ && k.dim(2) == head_dim_);
  Sequence& s = sequence(seq);
  int64_t& len = s.layer_length[static_cast<size_t>(layer)];
  const int64_t n = k.dim(0);
  if (len + n > s.max_tokens)
    throw Error(ErrorCode::kResource, "sequence " + std::to_string(seq) + " exceeds its reserved " +
                                          std::to_string(s.max_tokens) + " tokens");
  const int64_t base = s.slot * capacity_ + len, row = n_kv_heads_ * head_dim_;
  const size_t l = static_cast<size_t>(layer);
  cast_rows({.src = k.reshape({n, row}), .dst = rows(k_[l]).slice_rows(base, base + n)});
  cast_rows({.src = v.reshape({n, row}), .dst = rows(v_[l]).slice_rows(base, base + n)});
  len += n;
}

PrefillKv CudaFullKvCache::prefill_kv(SeqId seq, int layer) const {
  const Sequence& s = sequence(seq);
  const int64_t len = s.layer_length[static_cast<size_t>(layer)];
  const int64_t base = s.slot * capacity_;
  const Shape shape{len, n_kv_heads_, head_dim_};
  const size_t l = static_cast<size_t>(layer);
  return {rows(k_[l]).slice_rows(base, base + len).reshape(shape),
          rows(v_[l]).slice_rows(base, base + len).reshape(shape)};
}

void CudaFullKvCache::finish_prefill(SeqId /*seq*/) {}

KvCache::DecodeStepInfo CudaFullKvCache::begin_decode_step(const DecodeBatch& batch) {
  const int64_t n = batch.size();
  if (n == 0) return {};
  if (n > n_slots_) throw Error(ErrorCode::kResource, "a decode batch of " + std::to_string(n) +
                                                          " sequences exceeds the cache's " + std::to_string(n_slots_));
  step_layers_left_ = 0;  // until this step is validated and uploaded
  if (step_upload_pending_) step_uploaded_->synchronize();  // the previous step's copy has read the staging
  auto* rows_h = reinterpret_cast<int64_t*>(step_host_.ptr<unsigned char>());
  auto* slots_h = reinterpret_cast<int32_t*>(step_host_.ptr<unsigned char>() + n * 8);
  auto* lengths_h = reinterpret_cast<int32_t*>(step_host_.ptr<unsigned char>() + n * 12);
  int64_t max_length = 0;
  for (int64_t b = 0; b < n; ++b) {  // validate the whole batch before changing anything
    const SeqId id = batch.seqs[static_cast<size_t>(b)];
    const Sequence& s = sequence(id);
    const int64_t pos = batch.positions[static_cast<size_t>(b)];
    SKV_ASSERT_MSG(s.layer_length[0] == pos, "decode position out of step with the cache");
    if (pos + 1 > s.max_tokens)
      throw Error(ErrorCode::kResource, "sequence " + std::to_string(id) + " exceeds its reserved " +
                                            std::to_string(s.max_tokens) + " tokens");
    rows_h[b] = s.slot * capacity_ + pos;
    slots_h[b] = static_cast<int32_t>(s.slot);
    lengths_h[b] = static_cast<int32_t>(pos + 1);
    max_length = std::max(max_length, pos + 1);
  }
  const StreamHandle stream = current_stream(device_);
  const int64_t bytes = n * 16;
  copy_to_device_async(step_dev_.view(DType::kU8, {bytes}), TensorView(step_host_.data(), DType::kU8, {bytes}), stream);
  step_uploaded_->record(stream);
  step_upload_pending_ = true;
  // The step appends one token to every layer of every sequence (attend_decode stores them on the device).
  for (const SeqId id : batch.seqs)
    for (int64_t& len : sequence(id).layer_length) ++len;
  step_n_ = n;
  step_layers_left_ = n_layers_;
  step_max_length_ = std::min(capacity_, (max_length + kLengthBucket - 1) / kLengthBucket * kLengthBucket);
  return {.capturable = true, .cache_id = instance_id_, .key = static_cast<uint64_t>(step_max_length_)};
}

void CudaFullKvCache::attend_decode(const DecodeBatch& batch, int layer, TensorView q, TensorView k, TensorView v,
                                    TensorView out) {
  SKV_ASSERT(layer >= 0 && layer < n_layers_);
  const int64_t n = batch.size();
  if (n == 0) return;
  SKV_ASSERT_MSG(step_n_ == n && step_layers_left_ > 0, "attend_decode: begin_decode_step was not called for this step");
  --step_layers_left_;
  const auto* base = static_cast<unsigned char*>(step_dev_.data());
  const DeviceId dev{DeviceKind::kCuda, device_};
  const TensorView rows_d(const_cast<unsigned char*>(base), DType::kI64, {n}, dev);
  const TensorView slots_d(const_cast<unsigned char*>(base + n * 8), DType::kI32, {n}, dev);
  const TensorView lengths_d(const_cast<unsigned char*>(base + n * 12), DType::kI32, {n}, dev);
  const size_t l = static_cast<size_t>(layer);
  const int64_t row = n_kv_heads_ * head_dim_;
  cast_rows({.src = k.reshape({n, row}), .dst = rows(k_[l]), .dst_rows = rows_d});
  cast_rows({.src = v.reshape({n, row}), .dst = rows(v_[l]), .dst_rows = rows_d});
  attention_decode_batch({.q = q, .k_cache = slab4(k_[l]), .v_cache = slab4(v_[l]), .slots = slots_d,
                          .lengths = lengths_d, .out = out, .max_length = step_max_length_});
}

MemoryUse CudaFullKvCache::memory_use() const {
  MemoryUse use;
  use.device_bytes = slab_bytes(n_layers_, n_kv_heads_, head_dim_, n_slots_, capacity_, kv_dtype_);
  return use;
}

void CudaFullKvCache::copy_sequence(SeqId src, SeqId dst) {
  const Sequence& s = sequence(src);
  Sequence& d = sequence(dst);
  const int64_t row = n_kv_heads_ * head_dim_;
  for (size_t l = 0; l < static_cast<size_t>(n_layers_); ++l) {
    const int64_t len = s.layer_length[l];
    if (len > d.max_tokens)
      throw Error(ErrorCode::kResource, "copy_sequence: " + std::to_string(len) + " tokens exceed sequence " +
                                            std::to_string(dst) + "'s reserved " + std::to_string(d.max_tokens));
    const int64_t sb = s.slot * capacity_, db = d.slot * capacity_;
    (void)row;
    copy(rows(k_[l]).slice_rows(db, db + len), rows(k_[l]).slice_rows(sb, sb + len), current_stream(device_));
    copy(rows(v_[l]).slice_rows(db, db + len), rows(v_[l]).slice_rows(sb, sb + len), current_stream(device_));
    d.layer_length[l] = len;
  }
}

}  // namespace skv
