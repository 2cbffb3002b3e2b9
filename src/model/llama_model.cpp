// The Llama-family forward pass on the op set.
#include "model/llama_model.h"

#include <algorithm>
#include <cstring>

#include "model/rope_frequencies.h"
#include "kv/full_kv_cache.h"
#include "ops/ops.h"

namespace skv {

// Activations for up to `capacity` tokens, grown only when a larger step arrives.
struct LlamaModel::Workspace {
  int64_t capacity = 0;
  HostBuffer x;         // [n, dim] residual stream
  HostBuffer h;         // [n, dim] normalized
  HostBuffer q;         // [n, n_q_heads, head_dim]
  HostBuffer k_pre;     // [n, n_kv_heads, head_dim] pre-RoPE keys
  HostBuffer k;         // [n, n_kv_heads, head_dim]
  HostBuffer v;         // [n, n_kv_heads, head_dim]
  HostBuffer attn;      // [n, n_q_heads, head_dim]
  HostBuffer gate;      // [n, hidden_dim]
  HostBuffer up;        // [n, hidden_dim]
  HostBuffer ids;       // [n] i32
  HostBuffer positions; // [n] i64
};

namespace {

// A matrix the CPU backend can feed to BLAS: the mmapped f32 tensor itself, or an f32 copy.
TensorView as_f32(const TensorView& t, std::vector<HostBuffer>& owned) {
  if (t.empty() || t.dtype == DType::kF32) return t;
  HostBuffer buf(DType::kF32, t.shape);
  convert_to_f32(t.data, t.dtype, buf.ptr<float>(), static_cast<size_t>(t.numel()));
  owned.push_back(std::move(buf));
  return owned.back().view();
}

}  // namespace

LlamaModel::LlamaModel(std::shared_ptr<const LoadedModel> model, ModelOptions options)
    : model_(std::move(model)), options_(options), ws_(std::make_unique<Workspace>()) {
  const ModelConfig& c = model_->config;
  const ModelWeights& w = model_->weights;
  if (options_.prefill_chunk_tokens < 1)
    throw Error(ErrorCode::kInvalidArgument, "prefill_chunk_tokens must be at least 1");
  converted_.reserve(4 + 12 * static_cast<size_t>(c.n_layers));  // views into it must stay valid
  weights_.embed = w.embed;  // rows are converted as they are gathered
  weights_.final_norm = w.final_norm;
  weights_.lm_head = as_f32(w.lm_head, converted_);
  for (const LayerWeights& l : w.layers) {
    LayerWeights f = l;
    f.wq = as_f32(l.wq, converted_);
    f.wk = as_f32(l.wk, converted_);
    f.wv = as_f32(l.wv, converted_);
    f.wo = as_f32(l.wo, converted_);
    f.bq = as_f32(l.bq, converted_);
    f.bk = as_f32(l.bk, converted_);
    f.bv = as_f32(l.bv, converted_);
    f.w_gate = as_f32(l.w_gate, converted_);
    f.w_up = as_f32(l.w_up, converted_);
    f.w_down = as_f32(l.w_down, converted_);
    weights_.layers.push_back(f);
  }
  inv_freq_ = rope_inv_freq(c);
  position_scale_ = rope_position_scale(c);
}

LlamaModel::~LlamaModel() = default;

int64_t LlamaModel::weight_bytes_per_token() const {
  int64_t bytes = static_cast<int64_t>(weights_.lm_head.nbytes() + weights_.final_norm.nbytes());
  for (const LayerWeights& l : weights_.layers)
    for (const TensorView* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.bq, &l.bk, &l.bv, &l.wo, &l.mlp_norm,
                                &l.w_gate, &l.w_up, &l.w_down})
      bytes += static_cast<int64_t>(t->empty() ? 0 : t->nbytes());
  return bytes;
}

void LlamaModel::ensure_workspace(int64_t n) {
  if (n <= ws_->capacity) return;
  const ModelConfig& c = config();
  Workspace& w = *ws_;
  w.capacity = n;
  w.x = HostBuffer(DType::kF32, {n, c.dim});
  w.h = HostBuffer(DType::kF32, {n, c.dim});
  w.q = HostBuffer(DType::kF32, {n, c.n_q_heads, c.head_dim});
  w.k_pre = HostBuffer(DType::kF32, {n, c.n_kv_heads, c.head_dim});
  w.k = HostBuffer(DType::kF32, {n, c.n_kv_heads, c.head_dim});
  w.v = HostBuffer(DType::kF32, {n, c.n_kv_heads, c.head_dim});
  w.attn = HostBuffer(DType::kF32, {n, c.n_q_heads, c.head_dim});
  w.gate = HostBuffer(DType::kF32, {n, c.hidden_dim});
  w.up = HostBuffer(DType::kF32, {n, c.hidden_dim});
  w.ids = HostBuffer(DType::kI32, {n});
  w.positions = HostBuffer(DType::kI64, {n});
}

void LlamaModel::forward(KvCache& cache, std::span<const int32_t> tokens, std::span<const int64_t> positions,
                         SeqId seq, const DecodeBatch* batch, int64_t q_start) {
  const ModelConfig& c = config();
  const int64_t n = static_cast<int64_t>(tokens.size());
  ensure_workspace(n);
  Workspace& w = *ws_;
  const float eps = static_cast<float>(c.norm_eps);
  auto rows = [n](const HostBuffer& b, Shape full) {  // the first n rows of a workspace buffer
    Shape s = full;
    s.dims[0] = n;
    return TensorView(b.data(), b.view().dtype, s);
  };
  const TensorView x = rows(w.x, {n, c.dim}), h = rows(w.h, {n, c.dim});
  const TensorView q = rows(w.q, {n, c.n_q_heads, c.head_dim});
  const TensorView k_pre = rows(w.k_pre, {n, c.n_kv_heads, c.head_dim});
  const TensorView k = rows(w.k, {n, c.n_kv_heads, c.head_dim});
  const TensorView v = rows(w.v, {n, c.n_kv_heads, c.head_dim});
  const TensorView attn = rows(w.attn, {n, c.n_q_heads, c.head_dim});
  const TensorView gate = rows(w.gate, {n, c.hidden_dim}), up = rows(w.up, {n, c.hidden_dim});
  const TensorView ids = rows(w.ids, {n}), pos = rows(w.positions, {n});
  std::memcpy(ids.data, tokens.data(), tokens.size_bytes());
  std::memcpy(pos.data, positions.data(), positions.size_bytes());
  const TensorView inv_freq(inv_freq_.data(), DType::kF32, {static_cast<int64_t>(inv_freq_.size())});

  embedding({.ids = ids, .table = weights_.embed, .out = x});
  for (int64_t layer = 0; layer < c.n_layers; ++layer) {
    const LayerWeights& lw = weights_.layers[static_cast<size_t>(layer)];
    rms_norm({.x = x, .w = lw.attn_norm, .out = h, .eps = eps});
    linear({.x = h, .w = lw.wq, .bias = lw.bq, .out = q.reshape({n, c.q_dim()})});
    linear({.x = h, .w = lw.wk, .bias = lw.bk, .out = k_pre.reshape({n, c.kv_dim()})});
    linear({.x = h, .w = lw.wv, .bias = lw.bv, .out = v.reshape({n, c.kv_dim()})});
    std::memcpy(k.data, k_pre.data, k.nbytes());
    rope({.x = q, .positions = pos, .inv_freq = inv_freq, .position_scale = position_scale_});
    rope({.x = k, .positions = pos, .inv_freq = inv_freq, .position_scale = position_scale_});
    const int l = static_cast<int>(layer);
    if (batch != nullptr) {
      cache.attend_decode(*batch, l, q, k, v, attn);
    } else {
      cache.append_prefill(seq, l, k_pre, k, v);
      const PrefillKv kv = cache.prefill_kv(seq, l);
      attention_prefill({.q = q, .k = kv.k, .v = kv.v, .out = attn, .q_start = q_start});
    }
    linear({.x = attn.reshape({n, c.q_dim()}), .w = lw.wo, .out = h});
    add({.a = x, .b = h, .out = x});
    rms_norm({.x = x, .w = lw.mlp_norm, .out = h, .eps = eps});
    linear({.x = h, .w = lw.w_gate, .out = gate});
    linear({.x = h, .w = lw.w_up, .out = up});
    swiglu({.gate = gate, .up = up, .out = gate});
    linear({.x = gate, .w = lw.w_down, .out = h});
    add({.a = x, .b = h, .out = x});
  }
}

void LlamaModel::compute_logits(int64_t first_row, int64_t n_rows, float* out) {
  const ModelConfig& c = config();
  const TensorView x = ws_->x.view(DType::kF32, {ws_->capacity, c.dim}).slice_rows(first_row, first_row + n_rows);
  const TensorView h = ws_->h.view(DType::kF32, {ws_->capacity, c.dim}).slice_rows(0, n_rows);
  rms_norm({.x = x, .w = weights_.final_norm, .out = h, .eps = static_cast<float>(c.norm_eps)});
  linear({.x = h, .w = weights_.lm_head, .out = TensorView(out, DType::kF32, {n_rows, c.vocab_size})});
}

void LlamaModel::prefill(KvCache& cache, SeqId seq, std::span<const int32_t> tokens, std::span<float> last_logits,
                         const ProgressFn& progress) {
  const ModelConfig& c = config();
  if (tokens.empty()) throw Error(ErrorCode::kInvalidArgument, "prefill needs at least one token");
  if (static_cast<int64_t>(last_logits.size()) != c.vocab_size)
    throw Error(ErrorCode::kInvalidArgument, "last_logits must hold vocab_size floats");
  const int64_t start = cache.length(seq);
  const int64_t total = static_cast<int64_t>(tokens.size());
  std::vector<int64_t> positions;
  for (int64_t done = 0; done < total;) {
    const int64_t n = std::min(options_.prefill_chunk_tokens, total - done);
    positions.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) positions[static_cast<size_t>(i)] = start + done + i;
    forward(cache, tokens.subspan(static_cast<size_t>(done), static_cast<size_t>(n)), positions, seq, nullptr,
            start + done);
    done += n;
    if (done == total) compute_logits(n - 1, 1, last_logits.data());
    if (progress) progress(done, total);
  }
  cache.finish_prefill(seq);
}

void LlamaModel::decode(KvCache& cache, const DecodeBatch& batch, std::span<const int32_t> tokens,
                        std::span<float> logits) {
  const int64_t n = batch.size();
  if (static_cast<int64_t>(tokens.size()) != n || static_cast<int64_t>(batch.positions.size()) != n)
    throw Error(ErrorCode::kInvalidArgument, "decode: tokens, seqs and positions must have the same length");
  if (static_cast<int64_t>(logits.size()) != n * config().vocab_size)
    throw Error(ErrorCode::kInvalidArgument, "decode: logits must hold n_seqs * vocab_size floats");
  if (n == 0) return;
  forward(cache, tokens, batch.positions, -1, &batch, 0);
  compute_logits(0, n, logits.data());
}

std::vector<float> LlamaModel::prompt_logits(std::span<const int32_t> tokens) {
  const ModelConfig& c = config();
  const int64_t total = static_cast<int64_t>(tokens.size());
  if (total == 0) throw Error(ErrorCode::kInvalidArgument, "prompt_logits needs at least one token");
  FullKvCache cache(c.n_layers, c.n_kv_heads, c.head_dim);
  cache.add_sequence(0, total);
  std::vector<float> logits(static_cast<size_t>(total * c.vocab_size));
  std::vector<int64_t> positions;
  for (int64_t done = 0; done < total;) {
    const int64_t n = std::min(options_.prefill_chunk_tokens, total - done);
    positions.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) positions[static_cast<size_t>(i)] = done + i;
    forward(cache, tokens.subspan(static_cast<size_t>(done), static_cast<size_t>(n)), positions, 0, nullptr, done);
    compute_logits(0, n, logits.data() + done * c.vocab_size);
    done += n;
  }
  return logits;
}

}  // namespace skv
