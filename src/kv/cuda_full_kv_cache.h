// CudaFullKvCache: exact K/V of every sequence on a CUDA device, for full attention on the GPU, in bf16 (the
// default: half the memory, the tensor-core attention kernels at head_dim 64/128) or f32 (the exact mode: with f32
// weights the GPU's numbers match the CPU backend's).
//
// Layout: per layer, one K slab and one V slab [n_slots, capacity, n_kv_heads, head_dim] kv_dtype, allocated once in
// the constructor (the planner sizes n_slots and capacity; nothing is allocated per step). A sequence owns one
// slot while it lives; its token t of layer l sits at row slot * capacity + t of that layer's slabs. One slab per
// layer (rather than per-sequence buffers) is what attention_decode_batch takes: the whole batch of a decode step
// attends in one launch per layer, with the slots and lengths as device arrays uploaded once per step.
//
// Prefill stores a chunk with cast_rows (f32 -> kv_dtype) at the sequence's rows; prefill_kv hands out kv_dtype
// device views, which attention_prefill on CUDA accepts. A decode step scatters each sequence's new K/V with one
// cast_rows per layer, then calls attention_decode_batch. begin_decode_step does the step's host work (validation,
// lengths, the index arrays uploaded with one stream-ordered copy from pinned memory), so attend_decode only
// enqueues kernels and the model may capture a step into a CUDA graph. Compiled in both builds: without CUDA the
// constructor throws the backend's "built without CUDA" error.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "backend/device.h"
#include "core/dtype.h"
#include "kv/kv_cache.h"

namespace skv {

class CudaFullKvCache final : public KvCache {
 public:
  // Reserves n_slots sequences of up to `capacity` tokens each on CUDA device `device`, K/V in kv_dtype (bf16 or
  // f32, else Error(kInvalidArgument)). Throws Error(kResource) with the numbers when the slabs cannot be allocated.
  CudaFullKvCache(int64_t n_layers, int64_t n_q_heads, int64_t n_kv_heads, int64_t head_dim, int64_t n_slots,
                  int64_t capacity, int device = 0, DType kv_dtype = DType::kBF16);

  void add_sequence(SeqId seq, int64_t max_tokens) override;
  void release(SeqId seq) override;
  bool has_sequence(SeqId seq) const override;
  int64_t length(SeqId seq) const override;
  void append_prefill(SeqId seq, int layer, TensorView k_pre_rope, TensorView k, TensorView v) override;
  PrefillKv prefill_kv(SeqId seq, int layer) const override;
  void finish_prefill(SeqId seq) override;
  // Capturable; the key is the step's length bound (max length rounded up to kLengthBucket, which sizes the
  // attention splits), so a graph is recaptured every kLengthBucket tokens of growth at most.
  DecodeStepInfo begin_decode_step(const DecodeBatch& batch) override;
  void attend_decode(const DecodeBatch& batch, int layer, TensorView q, TensorView k, TensorView v,
                     TensorView out) override;
  static constexpr int64_t kLengthBucket = 1024;
  // device_bytes: the slabs (allocated up front, whatever the number of live sequences).
  MemoryUse memory_use() const override;

  // Copies every cached token of `src` into `dst` (added, empty) with device copies: the benchmark prefills one
  // sequence and replicates it into the other slots.
  void copy_sequence(SeqId src, SeqId dst);

  int64_t n_slots() const { return n_slots_; }
  int64_t capacity() const { return capacity_; }
  DType kv_dtype() const { return kv_dtype_; }
  // Bytes of the slabs for these sizes (K and V, kv_dtype, every layer).
  static int64_t slab_bytes(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int64_t n_slots, int64_t capacity,
                            DType kv_dtype = DType::kBF16);

 private:
  struct Sequence {
    int64_t slot = 0;
    int64_t max_tokens = 0;
    std::vector<int64_t> layer_length;  // tokens stored per layer (all equal between steps)
  };
  Sequence& sequence(SeqId seq);
  const Sequence& sequence(SeqId seq) const;
  TensorView rows(const DeviceBuffer& slab) const;  // [n_slots * capacity, n_kv_heads * head_dim] kv_dtype
  TensorView slab4(const DeviceBuffer& slab) const;  // [n_slots, capacity, n_kv_heads, head_dim] kv_dtype

  int64_t n_layers_, n_q_heads_, n_kv_heads_, head_dim_, n_slots_, capacity_;
  int device_;
  DType kv_dtype_;
  uint64_t instance_id_;  // DecodeStepInfo::cache_id: unique per cache object
  std::vector<DeviceBuffer> k_, v_;  // per layer
  std::vector<bool> slot_used_;
  std::map<SeqId, Sequence> seqs_;
  // The step's index arrays: pinned host staging and one device buffer [rows i64 | slots i32 | lengths i32], sized
  // for n_slots sequences at construction; the event marks the upload, before staging is written again.
  PinnedHostBuffer step_host_;
  DeviceBuffer step_dev_;
  std::unique_ptr<Event> step_uploaded_;  // on the cache's device
  bool step_upload_pending_ = false;
  int64_t step_n_ = 0, step_max_length_ = 0;
  int64_t step_layers_left_ = 0;  // attend_decode calls still expected for the step begun last
};

}  // namespace skv
