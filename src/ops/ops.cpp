// Validation and device dispatch for every op. Validation names the offending tensor: ops are reachable from
// model files (shapes) and from later user-facing layers, so a mismatch must never corrupt memory.
#include "ops/ops.h"

#include <cmath>
#include <string>

#include "ops/cpu/cpu_ops.h"
#ifdef SKV_WITH_CUDA
#include "ops/cuda/cuda_ops.h"
#endif

namespace skv {
namespace {

void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw Error(ErrorCode::kInvalidArgument, std::string(op) + ": " + what);
}

// The device of the call: every non-empty tensor must be on it and contiguous.
DeviceId common_device(const char* op, std::initializer_list<const TensorView*> tensors) {
  DeviceId device{};
  bool first = true;
  for (const TensorView* t : tensors) {
    if (t->empty()) continue;
    require(t->is_contiguous(), op, "expects contiguous tensors, got " + t->describe());
    if (first) {
      device = t->device;
      first = false;
    } else {
      require(t->device == device, op, "tensors are on different devices");
    }
  }
  return device;
}

bool on_cuda(DeviceId d) { return d.kind == DeviceKind::kCuda; }

void require_f32(const char* op, const char* name, const TensorView& t, int rank) {
  require(t.dtype == DType::kF32 && t.shape.rank == rank, op,
          std::string(name) + " must be a rank-" + std::to_string(rank) + " f32 tensor, got " + t.describe());
}

void require_dtype(const char* op, const char* name, const TensorView& t, DType dtype, int rank) {
  require(t.dtype == dtype && t.shape.rank == rank, op,
          std::string(name) + " must be a rank-" + std::to_string(rank) + " " + dtype_name(dtype) + " tensor, got " +
              t.describe());
}

bool is_float(DType d) { return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16; }

// Whether two tensors share any byte (an output an op must not write while reading the other).
bool overlaps(const TensorView& p, const TensorView& q) {
  if (p.empty() || q.empty()) return false;
  const auto* p0 = static_cast<const char*>(p.data);
  const auto* q0 = static_cast<const char*>(q.data);
  return p0 < q0 + q.nbytes() && q0 < p0 + p.nbytes();
}

// The CUDA attention kernels: K and V both bf16 or both f32, head_dim 1..256 (ops/cuda/cuda_ops.h picks the
// tensor-core or the generic kernel).
constexpr int64_t kCudaMaxHeadDim = 256;

void require_cuda_kv(const char* op, const char* k_name, const TensorView& k, const char* v_name, const TensorView& v,
                     int rank) {
  require((k.dtype == DType::kBF16 || k.dtype == DType::kF32) && k.shape.rank == rank, op,
          std::string(k_name) + " must be a rank-" + std::to_string(rank) + " bf16 or f32 tensor on CUDA, got " +
              k.describe());
  require(v.dtype == k.dtype && v.shape.rank == rank, op,
          std::string(v_name) + " must be a rank-" + std::to_string(rank) + " " + dtype_name(k.dtype) + " tensor (as " +
              k_name + "), got " + v.describe());
}

void require_cuda_head_dim(const char* op, int64_t head_dim) {
  require(head_dim >= 1 && head_dim <= kCudaMaxHeadDim, op,
          "the CUDA attention kernels take head_dim 1.." + std::to_string(kCudaMaxHeadDim) + ", got " +
              std::to_string(head_dim));
}

[[maybe_unused]] [[noreturn]] void no_cuda(const char* op) {
  throw Error(ErrorCode::kUnsupported, std::string(op) + ": built without CUDA; reconfigure with -DSKV_CUDA=ON");
}

}  // namespace

// cuda::op in a CUDA build, else the "built without CUDA" error; cpu::op for CPU tensors.
#ifdef SKV_WITH_CUDA
#define SKV_DISPATCH(op, device, args) \
  do {                                  \
    if (on_cuda(device))                \
      cuda::op(args);                   \
    else                                \
      cpu::op(args);                    \
  } while (0)
#else
#define SKV_DISPATCH(op, device, args) \
  do {                                  \
    if (on_cuda(device))                \
      no_cuda(#op);                     \
    else                                \
      cpu::op(args);                    \
  } while (0)
#endif

void embedding(const EmbeddingArgs& a) {
  const DeviceId dev = common_device("embedding", {&a.ids, &a.table, &a.out});
  require(a.ids.dtype == DType::kI32 && a.ids.shape.rank == 1, "embedding", "ids must be [n_tokens] i32");
  require(is_float(a.table.dtype) && a.table.shape.rank == 2, "embedding", "table must be [vocab, dim] float");
  require_f32("embedding", "out", a.out, 2);
  require(a.out.dim(0) == a.ids.dim(0) && a.out.dim(1) == a.table.dim(1), "embedding",
          "out " + a.out.describe() + " does not match ids and table");
  if (!on_cuda(dev)) {  // on CUDA the ids are device data: the kernel writes a NaN row for an id out of range
    const auto* ids = a.ids.ptr<const int32_t>();
    for (int64_t i = 0; i < a.ids.dim(0); ++i)
      require(ids[i] >= 0 && ids[i] < a.table.dim(0), "embedding",
              "token id " + std::to_string(ids[i]) + " is outside the vocabulary [0, " + std::to_string(a.table.dim(0)) + ")");
  }
  SKV_DISPATCH(embedding, dev, a);
}

void rms_norm(const RmsNormArgs& a) {
  const DeviceId dev = common_device("rms_norm", {&a.x, &a.w, &a.out});
  require_f32("rms_norm", "x", a.x, 2);
  require_f32("rms_norm", "out", a.out, 2);
  require(a.out.shape == a.x.shape, "rms_norm", "out shape differs from x");
  require(is_float(a.w.dtype) && a.w.shape.rank == 1 && a.w.dim(0) == a.x.dim(1), "rms_norm",
          "w must be [" + std::to_string(a.x.dim(1)) + "], got " + a.w.describe());
  SKV_DISPATCH(rms_norm, dev, a);
}

void linear(const LinearArgs& a) {
  const DeviceId dev = common_device("linear", {&a.x, &a.w, &a.bias, &a.out});
  require_f32("linear", "x", a.x, 2);
  if (on_cuda(dev))
    require((a.w.dtype == DType::kBF16 || a.w.dtype == DType::kF32) && a.w.shape.rank == 2, "linear",
            "w must be a rank-2 bf16 or f32 tensor, got " + a.w.describe());
  else
    require_f32("linear", "w", a.w, 2);
  require_f32("linear", "out", a.out, 2);
  require(a.w.dim(1) == a.x.dim(1), "linear", "w " + a.w.describe() + " does not take x " + a.x.describe());
  require(a.out.dim(0) == a.x.dim(0) && a.out.dim(1) == a.w.dim(0), "linear", "out " + a.out.describe() + " mismatch");
  if (!a.bias.empty()) {
    require_f32("linear", "bias", a.bias, 1);
    require(a.bias.dim(0) == a.w.dim(0), "linear", "bias " + a.bias.describe() + " mismatch");
  }
  if (a.accumulate) require(!overlaps(a.out, a.x), "linear", "accumulate: out must not alias x");
  SKV_DISPATCH(linear, dev, a);
}

void rope(const RopeArgs& a) {
  const DeviceId dev = common_device("rope", {&a.x, &a.positions, &a.inv_freq});
  require_f32("rope", "x", a.x, 3);
  require(a.x.dim(2) % 2 == 0, "rope", "head_dim must be even, got " + std::to_string(a.x.dim(2)));
  require(a.positions.dtype == DType::kI64 && a.positions.shape.rank == 1 && a.positions.dim(0) == a.x.dim(0),
          "rope", "positions must be [n_tokens] i64");
  require_f32("rope", "inv_freq", a.inv_freq, 1);
  require(a.inv_freq.dim(0) == a.x.dim(2) / 2, "rope", "inv_freq must be [head_dim / 2]");
  SKV_DISPATCH(rope, dev, a);
}

void swiglu(const SwigluArgs& a) {
  const DeviceId dev = common_device("swiglu", {&a.gate, &a.up, &a.out});
  require_f32("swiglu", "gate", a.gate, 2);
  require_f32("swiglu", "out", a.out, 2);
  if (a.up.empty()) {  // packed [gate | up]
    require(a.gate.dim(1) % 2 == 0 && a.out.dim(0) == a.gate.dim(0) && a.out.dim(1) * 2 == a.gate.dim(1), "swiglu",
            "packed: gate must be [n, 2 * hidden] and out [n, hidden], got " + a.gate.describe() + " and " +
                a.out.describe());
    require(!overlaps(a.out, a.gate), "swiglu", "packed: out must not overlap gate");
  } else {
    require(a.up.dtype == DType::kF32, "swiglu", "f32 only");
    require(a.up.shape == a.gate.shape && a.out.shape == a.gate.shape, "swiglu", "gate, up and out differ in shape");
  }
  SKV_DISPATCH(swiglu, dev, a);
}

void split_qkv_rope(const SplitQkvRopeArgs& a) {
  const char* op = "split_qkv_rope";
  const DeviceId dev = common_device(op, {&a.qkv, &a.positions, &a.inv_freq, &a.q, &a.k, &a.v, &a.k_pre});
  require_f32(op, "qkv", a.qkv, 2);
  require_f32(op, "q", a.q, 3);
  require_f32(op, "k", a.k, 3);
  const int64_t n = a.q.dim(0), hq = a.q.dim(1), d = a.q.dim(2), hkv = a.k.dim(1);
  require(d % 2 == 0, op, "head_dim must be even, got " + std::to_string(d));
  require(a.k.dim(0) == n && a.k.dim(2) == d, op, "k " + a.k.describe() + " does not match q " + a.q.describe());
  require(a.v.dtype == DType::kF32 && a.v.shape == a.k.shape, op, "v must be f32 shaped like k, got " + a.v.describe());
  if (!a.k_pre.empty())
    require(a.k_pre.dtype == DType::kF32 && a.k_pre.shape == a.k.shape, op,
            "k_pre must be f32 shaped like k, got " + a.k_pre.describe());
  require(a.qkv.dim(0) == n && a.qkv.dim(1) == (hq + 2 * hkv) * d, op,
          "qkv must be [n_tokens, (n_q_heads + 2 * n_kv_heads) * head_dim], got " + a.qkv.describe());
  require(a.positions.dtype == DType::kI64 && a.positions.shape.rank == 1 && a.positions.dim(0) == n, op,
          "positions must be [n_tokens] i64");
  require_f32(op, "inv_freq", a.inv_freq, 1);
  require(a.inv_freq.dim(0) == d / 2, op, "inv_freq must be [head_dim / 2]");
  for (const TensorView* t : {&a.q, &a.k, &a.v, &a.k_pre})
    require(!overlaps(*t, a.qkv), op, "the outputs must not overlap qkv");
  require(!overlaps(a.q, a.k) && !overlaps(a.q, a.v) && !overlaps(a.k, a.v) && !overlaps(a.k_pre, a.k) &&
              !overlaps(a.k_pre, a.v) && !overlaps(a.k_pre, a.q),
          op, "q, k, v and k_pre must not overlap");
  SKV_DISPATCH(split_qkv_rope, dev, a);
}

void add(const AddArgs& a) {
  const DeviceId dev = common_device("add", {&a.a, &a.b, &a.out});
  require(a.a.dtype == DType::kF32 && a.b.dtype == DType::kF32 && a.out.dtype == DType::kF32, "add", "f32 only");
  require(a.a.shape == a.b.shape && a.out.shape == a.a.shape, "add", "shapes differ");
  SKV_DISPATCH(add, dev, a);
}

void attention_prefill(const AttentionPrefillArgs& a) {
  const DeviceId dev = common_device("attention_prefill", {&a.q, &a.k, &a.v, &a.out});
  if (on_cuda(dev)) {
    require((a.q.dtype == DType::kF32 || a.q.dtype == DType::kBF16) && a.q.shape.rank == 3, "attention_prefill",
            "q must be a rank-3 f32 or bf16 tensor on CUDA, got " + a.q.describe());
    require_cuda_kv("attention_prefill", "k", a.k, "v", a.v, 3);
    require_f32("attention_prefill", "out", a.out, 3);
    require_cuda_head_dim("attention_prefill", a.q.dim(2));
  } else {
    for (auto [name, t] : {std::pair{"q", &a.q}, {"k", &a.k}, {"v", &a.v}, {"out", &a.out}})
      require_f32("attention_prefill", name, *t, 3);
  }
  require(a.k.shape == a.v.shape, "attention_prefill", "k and v differ in shape");
  require(a.out.shape == a.q.shape, "attention_prefill", "out differs from q in shape");
  require(a.q.dim(2) == a.k.dim(2), "attention_prefill", "q and k head_dim differ");
  require(a.k.dim(1) > 0 && a.q.dim(1) % a.k.dim(1) == 0, "attention_prefill",
          "n_q_heads must be a multiple of n_kv_heads");
  require(a.q_start >= 0 && a.q_start + a.q.dim(0) == a.k.dim(0), "attention_prefill",
          "kv_len must equal q_start + n_q_tokens");
  SKV_DISPATCH(attention_prefill, dev, a);
}

void attention_decode(const AttentionDecodeArgs& a) {
  const DeviceId dev = common_device("attention_decode", {&a.q, &a.k, &a.v, &a.out});
  require_f32("attention_decode", "q", a.q, 2);
  require_f32("attention_decode", "out", a.out, 2);
  if (on_cuda(dev)) {
    require_cuda_kv("attention_decode", "k", a.k, "v", a.v, 3);
    require_cuda_head_dim("attention_decode", a.q.dim(1));
  } else {
    require_f32("attention_decode", "k", a.k, 3);
    require_f32("attention_decode", "v", a.v, 3);
  }
  require(a.k.shape == a.v.shape && a.k.dim(0) > 0, "attention_decode", "k and v must be equal, non-empty");
  require(a.out.shape == a.q.shape, "attention_decode", "out differs from q in shape");
  require(a.q.dim(1) == a.k.dim(2), "attention_decode", "q and k head_dim differ");
  require(a.k.dim(1) > 0 && a.q.dim(0) % a.k.dim(1) == 0, "attention_decode",
          "n_q_heads must be a multiple of n_kv_heads");
  SKV_DISPATCH(attention_decode, dev, a);
}

void attention_decode_batch(const AttentionDecodeBatchArgs& a) {
  const char* op = "attention_decode_batch";
  const DeviceId dev = common_device(op, {&a.q, &a.k_cache, &a.v_cache, &a.slots, &a.lengths, &a.out, &a.workspace});
  require_f32(op, "q", a.q, 3);
  require_f32(op, "out", a.out, 3);
  require(a.out.shape == a.q.shape, op, "out differs from q in shape");
  if (on_cuda(dev)) {
    require_cuda_kv(op, "k_cache", a.k_cache, "v_cache", a.v_cache, 4);
  } else {
    require_f32(op, "k_cache", a.k_cache, 4);
    require_f32(op, "v_cache", a.v_cache, 4);
  }
  require(a.k_cache.shape == a.v_cache.shape, op, "k_cache and v_cache differ in shape");
  const int64_t n_seqs = a.q.dim(0), n_q_heads = a.q.dim(1), head_dim = a.q.dim(2);
  const int64_t n_slots = a.k_cache.dim(0), capacity = a.k_cache.dim(1), n_kv_heads = a.k_cache.dim(2);
  require(a.k_cache.dim(3) == head_dim, op, "q and k_cache head_dim differ");
  require(n_kv_heads > 0 && n_q_heads % n_kv_heads == 0, op, "n_q_heads must be a multiple of n_kv_heads");
  require(n_slots > 0 && capacity > 0, op, "the cache is empty: " + a.k_cache.describe());
  require_dtype(op, "slots", a.slots, DType::kI32, 1);
  require_dtype(op, "lengths", a.lengths, DType::kI32, 1);
  require(a.slots.dim(0) == n_seqs && a.lengths.dim(0) == n_seqs, op, "slots and lengths must be [n_seqs]");
  require(a.max_length >= 0 && a.max_length <= capacity, op,
          "max_length " + std::to_string(a.max_length) + " is outside [0, capacity " + std::to_string(capacity) + "]");
  if (on_cuda(dev)) {
    require_cuda_head_dim(op, head_dim);
    if (!a.workspace.empty()) {
      require_f32(op, "workspace", a.workspace, 1);
      const int64_t need = attention_decode_batch_workspace_floats(
          n_seqs, n_q_heads, n_kv_heads, head_dim, a.max_length > 0 ? a.max_length : capacity, dev.index);
      require(a.workspace.dim(0) >= need, op,
              "workspace needs " + std::to_string(need) + " f32 elements, got " + a.workspace.describe());
    }
  } else {
    require(a.workspace.empty(), op, "workspace is for the CUDA kernels only");
    const auto* slots = a.slots.ptr<const int32_t>();
    const auto* lengths = a.lengths.ptr<const int32_t>();
    const int64_t max_len = a.max_length > 0 ? a.max_length : capacity;
    for (int64_t i = 0; i < n_seqs; ++i) {
      require(slots[i] >= 0 && slots[i] < n_slots, op,
              "slot " + std::to_string(slots[i]) + " of sequence " + std::to_string(i) + " is outside [0, " +
                  std::to_string(n_slots) + ")");
      require(lengths[i] >= 1 && lengths[i] <= max_len, op,
              "length " + std::to_string(lengths[i]) + " of sequence " + std::to_string(i) + " is outside [1, " +
                  std::to_string(max_len) + "]");
    }
  }
  if (n_seqs == 0) return;
  SKV_DISPATCH(attention_decode_batch, dev, a);
}

int64_t attention_decode_batch_workspace_floats(int64_t n_seqs, int64_t n_q_heads, int64_t n_kv_heads,
                                                int64_t head_dim, int64_t max_length, int device) {
#ifdef SKV_WITH_CUDA
  return cuda::attention_decode_batch_workspace_floats(n_seqs, n_q_heads, n_kv_heads, head_dim, max_length, device);
#else
  (void)n_seqs, (void)n_q_heads, (void)n_kv_heads, (void)head_dim, (void)max_length, (void)device;
  return 0;
#endif
}

void sample_tokens(const SampleTokensArgs& a) {
  const char* op = "sample_tokens";
  require(a.logits.is_contiguous() && a.out.is_contiguous(), op, "expects contiguous tensors");
  require_f32(op, "logits", a.logits, 2);
  require_dtype(op, "out", a.out, DType::kI32, 1);
  const int64_t n_seqs = a.logits.dim(0), vocab = a.logits.dim(1);
  require(vocab > 0, op, "logits " + a.logits.describe() + " has no vocabulary");
  require(a.out.dim(0) == n_seqs, op, "out must be [" + std::to_string(n_seqs) + "], got " + a.out.describe());
  require(static_cast<int64_t>(a.params.size()) == n_seqs, op,
          "params has " + std::to_string(a.params.size()) + " entries for " + std::to_string(n_seqs) + " rows");
  require(a.out.device == a.logits.device || a.out.device.kind == DeviceKind::kCpu, op,
          "out must be on the logits' device or on the CPU");
  for (size_t i = 0; i < a.params.size(); ++i) {
    const TokenSamplingParams& p = a.params[i];
    const std::string row = " (row " + std::to_string(i) + ")";
    require(p.temperature >= 0.0f && std::isfinite(p.temperature) && p.temperature <= 100.0f, op,
            "temperature must be in [0, 100], got " + std::to_string(p.temperature) + row);
    require(p.top_k >= 0, op, "top_k must be >= 0, got " + std::to_string(p.top_k) + row);
    require(p.top_p > 0.0f && p.top_p <= 1.0f, op, "top_p must be in (0, 1], got " + std::to_string(p.top_p) + row);
    require(p.uniform >= 0.0 && p.uniform < 1.0, op, "uniform must be in [0, 1), got " + std::to_string(p.uniform) + row);
  }
  if (n_seqs == 0) return;
  SKV_DISPATCH(sample_tokens, a.logits.device, a);
}

}  // namespace skv

namespace skv {

void cast_rows(const CastRowsArgs& a) {
  const DeviceId dev = common_device("cast_rows", {&a.src, &a.dst, &a.dst_rows});
  require(a.src.dtype == DType::kF32 && a.src.shape.rank == 2, "cast_rows",
          "src must be a rank-2 f32 tensor, got " + a.src.describe());
  require((a.dst.dtype == DType::kF32 || a.dst.dtype == DType::kBF16) && a.dst.shape.rank == 2, "cast_rows",
          "dst must be a rank-2 f32 or bf16 tensor, got " + a.dst.describe());
  require(a.dst.dim(1) == a.src.dim(1), "cast_rows", "src and dst rows differ: " + a.src.describe() + " vs " +
                                                         a.dst.describe());
  if (a.dst_rows.empty()) {
    require(a.dst.dim(0) >= a.src.dim(0), "cast_rows", "dst has fewer rows than src");
  } else {
    require(a.dst_rows.dtype == DType::kI64 && a.dst_rows.shape.rank == 1 && a.dst_rows.dim(0) == a.src.dim(0),
            "cast_rows", "dst_rows must be [n_rows] i64, got " + a.dst_rows.describe());
  }
  if (a.src.numel() == 0) return;
  SKV_DISPATCH(cast_rows, dev, a);
}

}  // namespace skv
