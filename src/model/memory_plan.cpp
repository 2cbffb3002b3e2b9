// The memory planner.
#include "model/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include "core/error.h"

namespace skv {

int64_t model_weight_bytes(const ModelConfig& c, DType matrix_dtype) {
  const int64_t m = static_cast<int64_t>(dtype_size(matrix_dtype));
  const int64_t per_layer_matrices = c.q_dim() * c.dim + 2 * c.kv_dim() * c.dim + c.dim * c.q_dim() + 3 * c.hidden_dim * c.dim;
  const int64_t per_layer_f32 = 2 * c.dim + (c.attention_bias ? c.q_dim() + 2 * c.kv_dim() : 0);
  const int64_t embed = c.vocab_size * c.dim * (c.tie_word_embeddings ? 1 : 2);
  return m * (embed + c.n_layers * per_layer_matrices) + 4 * (c.n_layers * per_layer_f32 + c.dim);
}

int64_t kv_bytes_per_sequence(const ModelConfig& c, int64_t n_tokens, DType kv_dtype) {
  return c.kv_cache_bytes(n_tokens, static_cast<int64_t>(dtype_size(kv_dtype)));
}

int64_t workspace_bytes(const ModelConfig& c, int64_t prefill_chunk, int64_t batch, int64_t context) {
  const int64_t rows = std::max(prefill_chunk, batch);
  const int64_t activations =
      rows * (4 * (2 * c.dim + 3 * c.q_dim() + 5 * c.kv_dim() + 3 * c.hidden_dim) + 4 + 8);
  const int64_t linear_x = rows * std::max({c.dim, c.hidden_dim, c.q_dim()}) * 2;
  const int64_t logits = std::max<int64_t>(batch, 1) * c.vocab_size * 4;
  // Split-KV decode partials: src/ops/cuda/decode_splits.h aims at one wave (2 CTAs per SM) for small batches and
  // two waves otherwise, so with up to 132 SMs a batch never takes more than ceil(528 / (batch * n_kv_heads))
  // splits: an upper bound that needs no GPU (plan --memory-gib runs anywhere).
  const int64_t b = std::max<int64_t>(batch, 1);
  const int64_t max_splits = std::max<int64_t>(1, (context + 63) / 64);
  const int64_t splits = std::min(max_splits, std::max<int64_t>(1, (528 + b * c.n_kv_heads - 1) / (b * c.n_kv_heads)));
  const int64_t partials = b * c.n_q_heads * splits * (c.head_dim + 1) * 4;
  return activations + linear_x + logits + partials;
}

int64_t default_margin_bytes(int64_t memory_bytes) {
  return std::max<int64_t>(int64_t{3} << 29, memory_bytes / 50);
}

MemoryPlan plan_memory(const ModelConfig& c, const MemoryPlanRequest& r) {
  if (r.context < 1) throw Error(ErrorCode::kInvalidArgument, "the context must be at least 1 token");
  if (r.batch < 0) throw Error(ErrorCode::kInvalidArgument, "the batch must be at least 1 (or 0: as many as fit)");
  if (r.kv_dtype != DType::kBF16 && r.kv_dtype != DType::kF32)
    throw Error(ErrorCode::kInvalidArgument, std::string("the CUDA KV cache is bf16 or f32, not ") + dtype_name(r.kv_dtype));
  MemoryPlan p;
  p.context = r.context;
  p.memory_bytes = r.memory_bytes;
  p.margin_bytes = r.margin_bytes >= 0 ? r.margin_bytes : default_margin_bytes(r.memory_bytes);
  p.weight_bytes = model_weight_bytes(c, r.weight_dtype);
  p.kv_bytes_per_sequence = kv_bytes_per_sequence(c, r.context, r.kv_dtype);
  const int64_t usable = r.memory_bytes - p.margin_bytes;
  auto total = [&](int64_t batch) {
    return p.weight_bytes + batch * p.kv_bytes_per_sequence + workspace_bytes(c, r.prefill_chunk, batch, r.context);
  };
  // The largest batch: the KV bound first, then a binary search for the largest batch whose workspace fits
  // too (a step-by-step walk down took billions of steps for a small model and a large memory), then a short
  // walk down in case the attention partials make total() not quite monotone.
  int64_t b = 0;
  if (usable > p.weight_bytes && p.kv_bytes_per_sequence > 0) b = (usable - p.weight_bytes) / p.kv_bytes_per_sequence;
  if (b > 0 && total(b) > usable) {
    int64_t lo = 0, hi = b;  // total(lo) fits (or lo == 0), total(hi) does not
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      (total(mid) <= usable ? lo : hi) = mid;
    }
    b = lo;
  }
  while (b > 0 && total(b) > usable) --b;
  p.max_batch = b;
  p.batch = r.batch == 0 ? p.max_batch : r.batch;
  p.kv_bytes = p.batch * p.kv_bytes_per_sequence;
  p.workspace_bytes = workspace_bytes(c, r.prefill_chunk, std::max<int64_t>(p.batch, 1), r.context);
  p.total_bytes = p.weight_bytes + p.kv_bytes + p.workspace_bytes;
  return p;
}

void require_fits(const MemoryPlan& p) {
  if (p.fits()) return;
  throw Error(ErrorCode::kResource,
              std::to_string(p.batch) + " sequence(s) of " + std::to_string(p.context) + " tokens need " +
                  format_gib(p.total_bytes) + " (weights " + format_gib(p.weight_bytes) + " + KV cache " +
                  format_gib(p.kv_bytes) + " + workspace " + format_gib(p.workspace_bytes) + ") but " +
                  format_gib(p.memory_bytes) + " of device memory is available, less a margin of " +
                  format_gib(p.margin_bytes) + "; at most " + std::to_string(p.max_batch) +
                  " sequence(s) of that context fit");
}

std::string format_gib(int64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / static_cast<double>(int64_t{1} << 30));
  return buf;
}

}  // namespace skv
