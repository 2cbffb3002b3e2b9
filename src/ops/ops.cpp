// Validation and device dispatch for every op. Validation names the offending tensor: ops are reachable from
// model files (shapes) and from later user-facing layers, so a mismatch must never corrupt memory.
#include "ops/ops.h"

#include <string>

#include "ops/cpu/cpu_ops.h"

namespace skv {
namespace {

void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw Error(ErrorCode::kInvalidArgument, std::string(op) + ": " + what);
}

void require_cpu(const char* op, std::initializer_list<const TensorView*> tensors) {
  for (const TensorView* t : tensors) {
    if (t->empty()) continue;
    if (t->device.kind != DeviceKind::kCpu)
      throw Error(ErrorCode::kUnsupported, std::string(op) + ": CUDA tensors need the CUDA backend (not built yet)");
    require(t->is_contiguous(), op, "expects contiguous tensors, got " + t->describe());
  }
}

void require_f32(const char* op, const char* name, const TensorView& t, int rank) {
  require(t.dtype == DType::kF32 && t.shape.rank == rank, op,
          std::string(name) + " must be a rank-" + std::to_string(rank) + " f32 tensor, got " + t.describe());
}

bool is_float(DType d) { return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16; }

}  // namespace

void embedding(const EmbeddingArgs& a) {
  require_cpu("embedding", {&a.ids, &a.table, &a.out});
  require(a.ids.dtype == DType::kI32 && a.ids.shape.rank == 1, "embedding", "ids must be [n_tokens] i32");
  require(is_float(a.table.dtype) && a.table.shape.rank == 2, "embedding", "table must be [vocab, dim] float");
  require_f32("embedding", "out", a.out, 2);
  require(a.out.dim(0) == a.ids.dim(0) && a.out.dim(1) == a.table.dim(1), "embedding",
          "out " + a.out.describe() + " does not match ids and table");
  const auto* ids = a.ids.ptr<const int32_t>();
  for (int64_t i = 0; i < a.ids.dim(0); ++i)
    require(ids[i] >= 0 && ids[i] < a.table.dim(0), "embedding",
            "token id " + std::to_string(ids[i]) + " is outside the vocabulary [0, " + std::to_string(a.table.dim(0)) + ")");
  cpu::embedding(a);
}

void rms_norm(const RmsNormArgs& a) {
  require_cpu("rms_norm", {&a.x, &a.w, &a.out});
  require_f32("rms_norm", "x", a.x, 2);
  require_f32("rms_norm", "out", a.out, 2);
  require(a.out.shape == a.x.shape, "rms_norm", "out shape differs from x");
  require(is_float(a.w.dtype) && a.w.shape.rank == 1 && a.w.dim(0) == a.x.dim(1), "rms_norm",
          "w must be [" + std::to_string(a.x.dim(1)) + "], got " + a.w.describe());
  cpu::rms_norm(a);
}

void linear(const LinearArgs& a) {
  require_cpu("linear", {&a.x, &a.w, &a.bias, &a.out});
  require_f32("linear", "x", a.x, 2);
  require_f32("linear", "w", a.w, 2);
  require_f32("linear", "out", a.out, 2);
  require(a.w.dim(1) == a.x.dim(1), "linear", "w " + a.w.describe() + " does not take x " + a.x.describe());
  require(a.out.dim(0) == a.x.dim(0) && a.out.dim(1) == a.w.dim(0), "linear", "out " + a.out.describe() + " mismatch");
  if (!a.bias.empty()) {
    require_f32("linear", "bias", a.bias, 1);
    require(a.bias.dim(0) == a.w.dim(0), "linear", "bias " + a.bias.describe() + " mismatch");
  }
  cpu::linear(a);
}

void rope(const RopeArgs& a) {
  require_cpu("rope", {&a.x, &a.positions, &a.inv_freq});
  require_f32("rope", "x", a.x, 3);
  require(a.x.dim(2) % 2 == 0, "rope", "head_dim must be even, got " + std::to_string(a.x.dim(2)));
  require(a.positions.dtype == DType::kI64 && a.positions.shape.rank == 1 && a.positions.dim(0) == a.x.dim(0),
          "rope", "positions must be [n_tokens] i64");
  require_f32("rope", "inv_freq", a.inv_freq, 1);
  require(a.inv_freq.dim(0) == a.x.dim(2) / 2, "rope", "inv_freq must be [head_dim / 2]");
  cpu::rope(a);
}

void swiglu(const SwigluArgs& a) {
  require_cpu("swiglu", {&a.gate, &a.up, &a.out});
  require_f32("swiglu", "gate", a.gate, 2);
  require(a.up.shape == a.gate.shape && a.out.shape == a.gate.shape, "swiglu", "gate, up and out differ in shape");
  cpu::swiglu(a);
}

void add(const AddArgs& a) {
  require_cpu("add", {&a.a, &a.b, &a.out});
  require(a.a.dtype == DType::kF32 && a.b.dtype == DType::kF32 && a.out.dtype == DType::kF32, "add", "f32 only");
  require(a.a.shape == a.b.shape && a.out.shape == a.a.shape, "add", "shapes differ");
  cpu::add(a);
}

void attention_prefill(const AttentionPrefillArgs& a) {
  require_cpu("attention_prefill", {&a.q, &a.k, &a.v, &a.out});
  for (auto [name, t] : {std::pair{"q", &a.q}, {"k", &a.k}, {"v", &a.v}, {"out", &a.out}})
    require_f32("attention_prefill", name, *t, 3);
  require(a.k.shape == a.v.shape, "attention_prefill", "k and v differ in shape");
  require(a.out.shape == a.q.shape, "attention_prefill", "out differs from q in shape");
  require(a.q.dim(2) == a.k.dim(2), "attention_prefill", "q and k head_dim differ");
  require(a.k.dim(1) > 0 && a.q.dim(1) % a.k.dim(1) == 0, "attention_prefill",
          "n_q_heads must be a multiple of n_kv_heads");
  require(a.q_start >= 0 && a.q_start + a.q.dim(0) == a.k.dim(0), "attention_prefill",
          "kv_len must equal q_start + n_q_tokens");
  cpu::attention_prefill(a);
}

void attention_decode(const AttentionDecodeArgs& a) {
  require_cpu("attention_decode", {&a.q, &a.k, &a.v, &a.out});
  require_f32("attention_decode", "q", a.q, 2);
  require_f32("attention_decode", "out", a.out, 2);
  require_f32("attention_decode", "k", a.k, 3);
  require(a.k.shape == a.v.shape && a.k.dim(0) > 0, "attention_decode", "k and v must be equal, non-empty");
  require(a.out.shape == a.q.shape, "attention_decode", "out differs from q in shape");
  require(a.q.dim(1) == a.k.dim(2), "attention_decode", "q and k head_dim differ");
  require(a.k.dim(1) > 0 && a.q.dim(0) % a.k.dim(1) == 0, "attention_decode",
          "n_q_heads must be a multiple of n_kv_heads");
  cpu::attention_decode(a);
}

}  // namespace skv
