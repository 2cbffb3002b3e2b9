// Validation and device dispatch for the ShadowKV ops (see shadow_ops.h). As in ops.cpp, every check names the
// offending tensor, so a shape mismatch from the cache or a later backend is an Error, never a memory bug.
#include "ops/shadow_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
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

void require_tensor(const char* op, const char* name, const TensorView& t, DType dtype, int rank) {
  require(!t.empty() && t.dtype == dtype && t.shape.rank == rank, op,
          std::string(name) + " must be a rank-" + std::to_string(rank) + " " + dtype_name(dtype) + " tensor, got " +
              (t.empty() ? std::string("none") : t.describe()));
}

void require_dims(const char* op, const char* name, const TensorView& t, Shape want) {
  require(t.shape == want, op, std::string(name) + " must be " + want.str() + ", got " + t.shape.str());
}

// Chunk indices must address existing chunks: the ops index memory with them.
void require_chunk_ids(const char* op, const char* name, const TensorView& ids, int64_t n_chunks, bool allow_empty) {
  const auto* p = ids.ptr<const int64_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    require((allow_empty && p[i] == -1) || (p[i] >= 0 && p[i] < n_chunks), op,
            std::string(name) + " holds chunk index " + std::to_string(p[i]) + " outside [0, " +
                std::to_string(n_chunks) + ")");
}

}  // namespace

void lowrank_factorize(const LowrankFactorizeArgs& a) {
  const char* op = "lowrank_factorize";
  require_cpu(op, {&a.k, &a.u, &a.sv, &a.singular_values});
  require_tensor(op, "k", a.k, DType::kF32, 2);
  require_tensor(op, "u", a.u, DType::kF32, 2);
  require_tensor(op, "sv", a.sv, DType::kF32, 2);
  const int64_t n = a.k.dim(0), d = a.k.dim(1), r = a.u.dim(1);
  require(n > 0 && d > 0, op, "k must be non-empty, got " + a.k.describe());
  require(r >= 1 && r <= n && r <= d, op,
          "rank (u's second dimension) must be in [1, min(n_tokens, kv_dim)] = [1, " + std::to_string(std::min(n, d)) +
              "], got " + std::to_string(r));
  require_dims(op, "u", a.u, {n, r});
  require_dims(op, "sv", a.sv, {r, d});
  if (!a.singular_values.empty()) {
    require_tensor(op, "singular_values", a.singular_values, DType::kF32, 1);
    require_dims(op, "singular_values", a.singular_values, {r});
  }
  cpu::lowrank_factorize(a);
}

void landmark_means(const LandmarkMeansArgs& a) {
  const char* op = "landmark_means";
  require_cpu(op, {&a.k, &a.landmarks});
  require_tensor(op, "k", a.k, DType::kF32, 3);
  require_tensor(op, "landmarks", a.landmarks, DType::kF32, 3);
  require(a.chunk_size >= 1, op, "chunk_size must be at least 1, got " + std::to_string(a.chunk_size));
  const int64_t h = a.k.dim(1), hd = a.k.dim(2), n_chunks = a.landmarks.dim(1);
  require(a.k.dim(0) == n_chunks * a.chunk_size, op,
          "k holds " + std::to_string(a.k.dim(0)) + " tokens, not n_chunks * chunk_size = " +
              std::to_string(n_chunks * a.chunk_size));
  require_dims(op, "landmarks", a.landmarks, {h, n_chunks, hd});
  cpu::landmark_means(a);
}

void outlier_chunks(const OutlierChunksArgs& a) {
  const char* op = "outlier_chunks";
  require_cpu(op, {&a.k, &a.landmarks, &a.min_cos, &a.outliers});
  require_tensor(op, "k", a.k, DType::kF32, 3);
  require_tensor(op, "landmarks", a.landmarks, DType::kF32, 3);
  require_tensor(op, "outliers", a.outliers, DType::kI64, 2);
  require(a.chunk_size >= 1, op, "chunk_size must be at least 1, got " + std::to_string(a.chunk_size));
  const int64_t h = a.k.dim(1), hd = a.k.dim(2), n_chunks = a.landmarks.dim(1);
  require(a.k.dim(0) == n_chunks * a.chunk_size, op,
          "k holds " + std::to_string(a.k.dim(0)) + " tokens, not n_chunks * chunk_size = " +
              std::to_string(n_chunks * a.chunk_size));
  require_dims(op, "landmarks", a.landmarks, {h, n_chunks, hd});
  require(a.outliers.dim(0) == h && a.outliers.dim(1) <= n_chunks, op,
          "outliers must be [" + std::to_string(h) + ", n_outliers <= " + std::to_string(n_chunks) + "], got " +
              a.outliers.shape.str());
  if (!a.min_cos.empty()) {
    require_tensor(op, "min_cos", a.min_cos, DType::kF32, 2);
    require_dims(op, "min_cos", a.min_cos, {h, n_chunks});
  }
  cpu::outlier_chunks(a);
}

void landmark_scores(const LandmarkScoresArgs& a) {
  const char* op = "landmark_scores";
  require_cpu(op, {&a.q, &a.landmarks, &a.excluded, &a.scores});
  require_tensor(op, "q", a.q, DType::kF32, 2);
  require_tensor(op, "landmarks", a.landmarks, DType::kF32, 3);
  require_tensor(op, "scores", a.scores, DType::kF32, 2);
  const int64_t h = a.landmarks.dim(0), n_chunks = a.landmarks.dim(1);
  require(a.q.dim(1) == a.landmarks.dim(2), op, "q and landmarks head_dim differ");
  require(h > 0 && a.q.dim(0) % h == 0, op, "n_q_heads must be a multiple of n_kv_heads");
  require_dims(op, "scores", a.scores, {h, n_chunks});
  if (!a.excluded.empty()) {
    require_tensor(op, "excluded", a.excluded, DType::kU8, 2);
    require_dims(op, "excluded", a.excluded, {h, n_chunks});
  }
  cpu::landmark_scores(a);
}

void topk_chunks(const TopkChunksArgs& a) {
  const char* op = "topk_chunks";
  require_cpu(op, {&a.scores, &a.selected});
  require_tensor(op, "scores", a.scores, DType::kF32, 2);
  require_tensor(op, "selected", a.selected, DType::kI64, 2);
  require(a.selected.dim(0) == a.scores.dim(0), op, "selected and scores differ in n_kv_heads");
  const int64_t k = a.selected.dim(1);
  const float* s = a.scores.ptr<const float>();
  for (int64_t h = 0; h < a.scores.dim(0); ++h) {
    int64_t selectable = 0;
    for (int64_t c = 0; c < a.scores.dim(1); ++c)
      selectable += s[h * a.scores.dim(1) + c] > -std::numeric_limits<float>::infinity() ? 1 : 0;
    require(selectable >= k, op,
            "KV head " + std::to_string(h) + " has " + std::to_string(selectable) + " selectable chunks, k = " +
                std::to_string(k));
  }
  cpu::topk_chunks(a);
}

void select_reuse(const SelectReuseArgs& a) {
  const char* op = "select_reuse";
  require_cpu(op, {&a.selected, &a.slots, &a.fetch, &a.hits});
  require_tensor(op, "selected", a.selected, DType::kI64, 2);
  require_tensor(op, "slots", a.slots, DType::kI64, 2);
  require_tensor(op, "fetch", a.fetch, DType::kU8, 2);
  require_tensor(op, "hits", a.hits, DType::kI64, 1);
  require_dims(op, "slots", a.slots, a.selected.shape);
  require_dims(op, "fetch", a.fetch, a.selected.shape);
  require_dims(op, "hits", a.hits, {a.selected.dim(0)});
  const auto* sel = a.selected.ptr<const int64_t>();
  const int64_t k = a.selected.dim(1);
  for (int64_t i = 0; i < a.selected.numel(); ++i) {
    require(sel[i] >= 0, op, "selected holds a negative chunk index " + std::to_string(sel[i]));
    require(i % k == 0 || sel[i] > sel[i - 1], op, "selected must hold distinct chunk indices in ascending order");
  }
  const auto* slots = a.slots.ptr<const int64_t>();
  for (int64_t i = 0; i < a.slots.numel(); ++i)
    require(slots[i] >= -1, op, "slots holds an invalid chunk index " + std::to_string(slots[i]));
  cpu::select_reuse(a);
}

void gather_chunks(const GatherChunksArgs& a) {
  const char* op = "gather_chunks";
  require_cpu(op, {&a.store, &a.slots, &a.fetch, &a.out});
  require_tensor(op, "store", a.store, DType::kF32, 4);
  require_tensor(op, "slots", a.slots, DType::kI64, 2);
  require_tensor(op, "out", a.out, DType::kF32, 4);
  const int64_t h = a.store.dim(0), k = a.slots.dim(1);
  require_dims(op, "slots", a.slots, {h, k});
  require_dims(op, "out", a.out, {h, k, a.store.dim(2), a.store.dim(3)});
  if (!a.fetch.empty()) {
    require_tensor(op, "fetch", a.fetch, DType::kU8, 2);
    require_dims(op, "fetch", a.fetch, {h, k});
  }
  require_chunk_ids(op, "slots", a.slots, a.store.dim(1), false);
  cpu::gather_chunks(a);
}

void rebuild_keys(const RebuildKeysArgs& a) {
  const char* op = "rebuild_keys";
  require_cpu(op, {&a.u, &a.sv, &a.slots, &a.fetch, &a.out, &a.inv_freq});
  require_tensor(op, "u", a.u, DType::kF32, 2);
  require_tensor(op, "sv", a.sv, DType::kF32, 2);
  require_tensor(op, "slots", a.slots, DType::kI64, 2);
  require_tensor(op, "out", a.out, DType::kF32, 4);
  require_tensor(op, "inv_freq", a.inv_freq, DType::kF32, 1);
  const int64_t h = a.out.dim(0), k = a.out.dim(1), cs = a.out.dim(2), hd = a.out.dim(3);
  require(a.u.dim(1) == a.sv.dim(0), op, "u " + a.u.shape.str() + " and sv " + a.sv.shape.str() + " differ in rank");
  require(a.sv.dim(1) == h * hd, op, "sv must have n_kv_heads * head_dim = " + std::to_string(h * hd) + " columns, got " +
                                         a.sv.shape.str());
  require(hd % 2 == 0, op, "head_dim must be even, got " + std::to_string(hd));
  require_dims(op, "inv_freq", a.inv_freq, {hd / 2});
  require_dims(op, "slots", a.slots, {h, k});
  if (!a.fetch.empty()) {
    require_tensor(op, "fetch", a.fetch, DType::kU8, 2);
    require_dims(op, "fetch", a.fetch, {h, k});
  }
  require(cs >= 1 && a.u.dim(0) % cs == 0, op, "u's rows must be whole chunks of " + std::to_string(cs));
  require(a.first_position >= 0, op, "first_position must be >= 0");
  if (!a.rope_table.empty()) {
    require_tensor(op, "rope_table", a.rope_table, DType::kF32, 3);
    require_dims(op, "rope_table", a.rope_table, {a.u.dim(0), hd / 2, 2});
  }
  require_chunk_ids(op, "slots", a.slots, a.u.dim(0) / cs, false);
  cpu::rebuild_keys(a);
}

void rope_cos_sin_table(TensorView table, TensorView inv_freq, double position_scale, int64_t first_position) {
  const char* op = "rope_cos_sin_table";
  require_cpu(op, {&table, &inv_freq});
  require_tensor(op, "table", table, DType::kF32, 3);
  require_tensor(op, "inv_freq", inv_freq, DType::kF32, 1);
  require(table.dim(2) == 2 && table.dim(1) == inv_freq.dim(0), op,
          "table must be [n_tokens, " + std::to_string(inv_freq.dim(0)) + ", 2], got " + table.shape.str());
  const float* inv = inv_freq.ptr<const float>();
  float* t = table.ptr<float>();
  const int64_t half = inv_freq.dim(0);
  for (int64_t r = 0; r < table.dim(0); ++r) {
    const double p = static_cast<double>(first_position + r) * position_scale;  // as cpu::rope
    for (int64_t i = 0; i < half; ++i) {
      const double angle = p * static_cast<double>(inv[i]);
      t[(r * half + i) * 2] = static_cast<float>(std::cos(angle));
      t[(r * half + i) * 2 + 1] = static_cast<float>(std::sin(angle));
    }
  }
}

void attend_sparse(const AttendSparseArgs& a) {
  const char* op = "attend_sparse";
  require_cpu(op, {&a.q, &a.out});
  require_tensor(op, "q", a.q, DType::kF32, 2);
  require_tensor(op, "out", a.out, DType::kF32, 2);
  require_dims(op, "out", a.out, a.q.shape);
  require(!a.segments.empty(), op, "needs at least one segment");
  int64_t n_kv = 0;  // from the first non-empty segment
  for (const SparseKvSegment& s : a.segments)
    if (s.length > 0 && n_kv == 0 && s.k.shape.rank == 3) n_kv = s.k.dim(0);
  int64_t n_keys = 0;
  for (size_t i = 0; i < a.segments.size(); ++i) {
    const SparseKvSegment& s = a.segments[i];
    const std::string name = "segment " + std::to_string(i);
    require(s.length >= 0, op, name + " has a negative length");
    if (s.length == 0) continue;
    require_cpu(op, {&s.k, &s.v});
    require_tensor(op, (name + " k").c_str(), s.k, DType::kF32, 3);
    require_dims(op, (name + " v").c_str(), s.v, s.k.shape);
    require(s.v.dtype == DType::kF32, op, name + " v must be f32");
    require(s.k.dim(0) == n_kv && s.k.dim(2) == a.q.dim(1), op,
            name + " k must be [" + std::to_string(n_kv) + ", capacity, " + std::to_string(a.q.dim(1)) + "], got " +
                s.k.shape.str());
    require(s.length <= s.k.dim(1), op, name + " length exceeds its capacity");
    n_keys += s.length;
  }
  require(n_keys > 0, op, "needs at least one key");
  require(n_kv > 0 && a.q.dim(0) % n_kv == 0, op, "n_q_heads must be a multiple of n_kv_heads");
  cpu::attend_sparse(a);
}

}  // namespace skv
