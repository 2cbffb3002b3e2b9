// The Llama-family forward pass on the op set, on the CPU or a CUDA device (the ops dispatch on the views'
// device; this file only decides where buffers live and how tokens, positions and logits cross over).
#include "model/llama_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "kv/cuda_full_kv_cache.h"
#include "kv/full_kv_cache.h"
#include "model/device_util.h"
#include "model/memory_plan.h"
#include "model/rope_frequencies.h"
#include "ops/ops.h"

namespace skv {

LlamaModel::Buffer::Buffer(DeviceId device, DType dtype, Shape shape) : device_(device), dtype_(dtype), shape_(shape) {
  if (device.kind == DeviceKind::kCuda)
    dev_ = DeviceBuffer(dtype, shape, device.index);
  else
    host_ = HostBuffer(dtype, shape);
}

// Activations for up to `capacity` tokens on the model's device, grown only when a larger step arrives: once the
// workspace has grown to the largest prefill chunk / decode batch, no step allocates (logits likewise, by rows;
// the CUDA ops' scratch is grow-only too, and the CUDA KV cache reserves the decode partials up front).
struct LlamaModel::Workspace {
  int64_t capacity = 0;
  Buffer x;         // [n, dim] residual stream
  Buffer h;         // [n, dim] normalized
  Buffer qkv;       // [n, q_dim + 2 * kv_dim] the fused projection's output
  Buffer q;         // [n, n_q_heads, head_dim]
  Buffer k_pre;     // [n, n_kv_heads, head_dim] pre-RoPE keys (prefill)
  Buffer k;         // [n, n_kv_heads, head_dim]
  Buffer v;         // [n, n_kv_heads, head_dim]
  Buffer attn;      // [n, n_q_heads, head_dim]
  Buffer gate_up;   // [n, 2 * hidden_dim] = [gate | up] per row
  Buffer act;       // [n, hidden_dim] silu(gate) * up
  Buffer ids;       // [n] i32
  Buffer positions; // [n] i64
  int64_t logits_rows = 0;
  Buffer logits;    // CUDA: [logits_rows, vocab_size] f32, copied to the caller's host span
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

// The parts of a row-concatenated tensor ([w_q; w_k; w_v], [b_q; b_k; b_v], [w_gate; w_up]): every part has the
// same trailing dims; an empty part (a missing bias) stands for `rows` zero rows.
struct Part {
  TensorView t;
  int64_t rows;
};

Shape concat_shape(std::initializer_list<Part> parts, const Shape& like) {
  Shape s = like;
  s.dims[0] = 0;
  for (const Part& p : parts) s.dims[0] += p.rows;
  return s;
}

// A row range of a contiguous tensor [rows, ...].
TensorView row_range(const TensorView& t, int64_t begin, int64_t end) {
  return t.shape.rank == 1 ? TensorView(static_cast<char*>(t.data) + begin * dtype_size(t.dtype), t.dtype,
                                        Shape{end - begin}, t.device)
                           : t.slice_rows(begin, end);
}

// CPU: the parts converted to f32 into one new buffer (owned by `owned`).
TensorView concat_rows_f32(std::initializer_list<Part> parts, const TensorView& like, std::vector<HostBuffer>& owned) {
  HostBuffer buf(DType::kF32, concat_shape(parts, like.shape));  // zero-filled
  const TensorView all = buf.view();
  int64_t row = 0;
  for (const Part& p : parts) {
    if (!p.t.empty())
      convert_to_f32(p.t.data, p.t.dtype, static_cast<float*>(row_range(all, row, row + p.rows).data),
                     static_cast<size_t>(p.t.numel()));
    row += p.rows;
  }
  owned.push_back(std::move(buf));
  return owned.back().view();
}

// The first non-empty part (the shape template of a concatenation), or an empty view when all are empty.
TensorView first_present(std::initializer_list<Part> parts) {
  for (const Part& p : parts)
    if (!p.t.empty()) return p.t;
  return {};
}

ModelOptions resolved(ModelOptions o) {
  if (o.prefill_chunk_tokens == 0) o.prefill_chunk_tokens = default_prefill_chunk(o.device.kind);
  return o;
}

void validate_options(const ModelOptions& o) {
  if (o.prefill_chunk_tokens < 1) throw Error(ErrorCode::kInvalidArgument, "prefill_chunk_tokens must be at least 1");
  if (o.device.kind == DeviceKind::kCuda) {
    if (o.weight_dtype != DType::kBF16 && o.weight_dtype != DType::kF32)
      throw Error(ErrorCode::kInvalidArgument, std::string("the CUDA weights must be bf16 or f32, got ") +
                                                   dtype_name(o.weight_dtype));
  }
}

// Said before any upload or allocation rather than by the first attention launch.
void validate_model_for_device(const ModelConfig& c, const ModelOptions& o) {
  if (o.device.kind != DeviceKind::kCuda) return;
  // The attention kernels: tensor cores for bf16 K/V at head_dim 64/128, the generic kernels for the rest.
  if (c.head_dim < 1 || c.head_dim > 256)
    throw Error(ErrorCode::kUnsupported, "the CUDA attention kernels take head_dim up to 256; this model has " +
                                             std::to_string(c.head_dim) + " (run it with --device cpu)");
  if (o.kv_dtype != DType::kBF16 && o.kv_dtype != DType::kF32)
    throw Error(ErrorCode::kInvalidArgument, std::string("the CUDA KV cache must be bf16 or f32, got ") +
                                                 dtype_name(o.kv_dtype));
}

// On CUDA: the weights must fit in free device memory; checked before the first allocation.
void require_weights_fit(const ModelConfig& c, const ModelOptions& o) {
  if (o.device.kind != DeviceKind::kCuda) return;
  const DeviceMemoryInfo mem = device_memory_info(o.device.index);
  const int64_t need = model_weight_bytes(c, o.weight_dtype);
  if (need > mem.free_bytes)
    throw Error(ErrorCode::kResource, "the weights need " + format_gib(need) + " of device memory in " +
                                          dtype_name(o.weight_dtype) + ", but only " + format_gib(mem.free_bytes) +
                                          " of " + format_gib(mem.total_bytes) + " are free");
}

}  // namespace

int64_t default_prefill_chunk(DeviceKind device) {
  return device == DeviceKind::kCuda ? kCudaPrefillChunk : kCpuPrefillChunk;
}

LlamaModel::LlamaModel(std::shared_ptr<const LoadedModel> model, ModelOptions options)
    : model_(std::move(model)), options_(resolved(options)), ws_(std::make_unique<Workspace>()) {
  validate_options(options_);
  validate_model_for_device(model_->config, options_);
  if (on_cuda()) {
    require_weights_fit(model_->config, options_);
    upload_weights();
    init_rope();
    return;
  }
  const ModelConfig& c = model_->config;
  const ModelWeights& w = model_->weights;
  weights_.embed = w.embed;  // rows are converted as they are gathered
  weights_.final_norm = as_f32(w.final_norm, converted_);
  weights_.lm_head = as_f32(w.lm_head, converted_);
  for (const LayerWeights& l : w.layers) {
    ComputeLayer f;
    f.attn_norm = as_f32(l.attn_norm, converted_);
    f.mlp_norm = as_f32(l.mlp_norm, converted_);
    f.wqkv = concat_rows_f32({{l.wq, c.q_dim()}, {l.wk, c.kv_dim()}, {l.wv, c.kv_dim()}}, l.wq, converted_);
    if (const TensorView b = first_present({{l.bq, 0}, {l.bk, 0}, {l.bv, 0}}); !b.empty())
      f.bqkv = concat_rows_f32({{l.bq, c.q_dim()}, {l.bk, c.kv_dim()}, {l.bv, c.kv_dim()}}, b, converted_);
    f.wo = as_f32(l.wo, converted_);
    f.w_gate_up = concat_rows_f32({{l.w_gate, c.hidden_dim}, {l.w_up, c.hidden_dim}}, l.w_gate, converted_);
    f.w_down = as_f32(l.w_down, converted_);
    weights_.layers.push_back(f);
  }
  init_rope();
}

LlamaModel::LlamaModel(std::shared_ptr<const LoadedModel> model, ModelOptions options, RandomTag, uint64_t seed)
    : model_(std::move(model)), options_(resolved(options)), ws_(std::make_unique<Workspace>()) {
  validate_options(options_);
  require_weights_fit(model_->config, options_);
  random_weights(seed);
  init_rope();
}

std::unique_ptr<LlamaModel> LlamaModel::with_random_weights(const ModelConfig& config, ModelOptions options,
                                                            uint64_t seed) {
  auto loaded = std::make_shared<LoadedModel>();
  loaded->config = config;
  return std::unique_ptr<LlamaModel>(new LlamaModel(std::move(loaded), options, RandomTag{}, seed));
}

void LlamaModel::init_rope() {
  const ModelConfig& c = config();
  inv_freq_ = rope_inv_freq(c);
  position_scale_ = rope_position_scale(c);
  if (on_cuda()) {
    const Shape s{static_cast<int64_t>(inv_freq_.size())};
    inv_freq_dev_ = Buffer(options_.device, DType::kF32, s);
    copy_to_device(inv_freq_dev_.view(), TensorView(inv_freq_.data(), DType::kF32, s));
  }
}

void LlamaModel::upload_weights() {
  const ModelConfig& c = config();
  const ModelWeights& w = model_->weights;
  const DeviceId dev = options_.device;
  // One host tensor into a device view of the target dtype through a host staging copy (f32 for norms and
  // biases, options_.weight_dtype for matrices).
  auto put = [&](const TensorView& dst, const TensorView& t) {
    const TensorView host_src(t.data, t.dtype, t.shape);
    if (t.dtype == dst.dtype) {
      copy_to_device(dst, host_src);
      return;
    }
    const auto n = static_cast<size_t>(t.numel());
    HostBuffer f32(DType::kF32, t.shape);
    convert_to_f32(t.data, t.dtype, f32.ptr<float>(), n);
    if (dst.dtype == DType::kF32) {
      copy_to_device(dst, f32.view());
    } else {
      HostBuffer bf(DType::kBF16, t.shape);
      for (size_t i = 0; i < n; ++i) bf.ptr<uint16_t>()[i] = f32_to_bf16(f32.ptr<float>()[i]);
      copy_to_device(dst, bf.view());
    }
  };
  auto up = [&](const TensorView& t, DType dt) -> TensorView {
    if (t.empty()) return {};
    Buffer b(dev, dt, t.shape);
    put(b.view(), t);
    owned_.push_back(std::move(b));
    return owned_.back().view();
  };
  // Row-concatenated parts in one device buffer (zero rows for an empty part).
  auto up_concat = [&](std::initializer_list<Part> parts, const TensorView& like, DType dt) -> TensorView {
    Buffer b(dev, dt, concat_shape(parts, like.shape));  // zero-filled
    int64_t row = 0;
    for (const Part& p : parts) {
      if (!p.t.empty()) put(row_range(b.view(), row, row + p.rows), p.t);
      row += p.rows;
    }
    owned_.push_back(std::move(b));
    return owned_.back().view();
  };
  const DType m = options_.weight_dtype, f = DType::kF32;
  weights_.embed = up(w.embed, m);
  weights_.final_norm = up(w.final_norm, f);
  weights_.lm_head = (w.lm_head.data == w.embed.data) ? weights_.embed : up(w.lm_head, m);
  for (const LayerWeights& l : w.layers) {
    ComputeLayer d;
    d.attn_norm = up(l.attn_norm, f);
    d.wqkv = up_concat({{l.wq, c.q_dim()}, {l.wk, c.kv_dim()}, {l.wv, c.kv_dim()}}, l.wq, m);
    if (const TensorView b = first_present({{l.bq, 0}, {l.bk, 0}, {l.bv, 0}}); !b.empty())
      d.bqkv = up_concat({{l.bq, c.q_dim()}, {l.bk, c.kv_dim()}, {l.bv, c.kv_dim()}}, b, f);
    d.wo = up(l.wo, m);
    d.mlp_norm = up(l.mlp_norm, f);
    d.w_gate_up = up_concat({{l.w_gate, c.hidden_dim}, {l.w_up, c.hidden_dim}}, l.w_gate, m);
    d.w_down = up(l.w_down, m);
    weights_.layers.push_back(d);
  }
}

void LlamaModel::random_weights(uint64_t seed) {
  const ModelConfig& c = config();
  const DeviceId dev = options_.device;
  const DType m = on_cuda() ? options_.weight_dtype : DType::kF32;
  uint64_t tensor = 0;
  auto matrix = [&](int64_t rows, int64_t cols, float scale) -> TensorView {
    Buffer b(dev, m, {rows, cols});
    fill_uniform(b.view(), seed * 1000003ull + tensor++, scale);
    owned_.push_back(std::move(b));
    return owned_.back().view();
  };
  auto ones = [&](int64_t n) -> TensorView {
    Buffer b(dev, DType::kF32, {n});
    fill_constant(b.view(), 1.0f);
    owned_.push_back(std::move(b));
    return owned_.back().view();
  };
  auto zeros = [&](int64_t n) -> TensorView {  // Buffer is zero-filled
    owned_.emplace_back(dev, DType::kF32, Shape{n});
    return owned_.back().view();
  };
  auto fan = [](int64_t in) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(in))); };
  weights_.embed = matrix(c.vocab_size, c.dim, 1.0f);
  weights_.final_norm = ones(c.dim);
  weights_.lm_head = c.tie_word_embeddings ? weights_.embed : matrix(c.vocab_size, c.dim, fan(c.dim));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    ComputeLayer l;
    l.attn_norm = ones(c.dim);
    l.wqkv = matrix(c.q_dim() + 2 * c.kv_dim(), c.dim, fan(c.dim));  // [w_q; w_k; w_v]
    if (c.attention_bias) l.bqkv = zeros(c.q_dim() + 2 * c.kv_dim());
    l.wo = matrix(c.dim, c.q_dim(), fan(c.q_dim()));
    l.mlp_norm = ones(c.dim);
    l.w_gate_up = matrix(2 * c.hidden_dim, c.dim, fan(c.dim));  // [w_gate; w_up]
    l.w_down = matrix(c.dim, c.hidden_dim, fan(c.hidden_dim));
    weights_.layers.push_back(l);
  }
  if (on_cuda()) synchronize_device(dev.index);
}

LlamaModel::~LlamaModel() = default;

int64_t LlamaModel::weight_bytes_per_token() const {
  int64_t bytes = static_cast<int64_t>(weights_.lm_head.nbytes() + weights_.final_norm.nbytes());
  for (const ComputeLayer& l : weights_.layers)
    for (const TensorView* t : {&l.attn_norm, &l.wqkv, &l.bqkv, &l.wo, &l.mlp_norm, &l.w_gate_up, &l.w_down})
      bytes += static_cast<int64_t>(t->empty() ? 0 : t->nbytes());
  return bytes;
}

int64_t LlamaModel::resident_weight_bytes() const {
  int64_t bytes = 0;
  for (const Buffer& b : owned_) bytes += static_cast<int64_t>(b.bytes());
  for (const HostBuffer& b : converted_) bytes += static_cast<int64_t>(b.bytes());
  return bytes;
}

void LlamaModel::ensure_workspace(int64_t n) {
  if (n <= ws_->capacity) return;
  ++workspace_generation_;
  const ModelConfig& c = config();
  Workspace& w = *ws_;
  const DeviceId d = options_.device;
  w.capacity = n;
  w.x = Buffer(d, DType::kF32, {n, c.dim});
  w.h = Buffer(d, DType::kF32, {n, c.dim});
  w.qkv = Buffer(d, DType::kF32, {n, c.q_dim() + 2 * c.kv_dim()});
  w.q = Buffer(d, DType::kF32, {n, c.n_q_heads, c.head_dim});
  w.k_pre = Buffer(d, DType::kF32, {n, c.n_kv_heads, c.head_dim});
  w.k = Buffer(d, DType::kF32, {n, c.n_kv_heads, c.head_dim});
  w.v = Buffer(d, DType::kF32, {n, c.n_kv_heads, c.head_dim});
  w.attn = Buffer(d, DType::kF32, {n, c.n_q_heads, c.head_dim});
  w.gate_up = Buffer(d, DType::kF32, {n, 2 * c.hidden_dim});
  w.act = Buffer(d, DType::kF32, {n, c.hidden_dim});
  w.ids = Buffer(d, DType::kI32, {n});
  w.positions = Buffer(d, DType::kI64, {n});
}

void LlamaModel::forward(KvCache& cache, std::span<const int32_t> tokens, std::span<const int64_t> positions,
                         SeqId seq, const DecodeBatch* batch, int64_t q_start) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  ensure_workspace(n);
  const TensorView ids(ws_->ids.data(), DType::kI32, {n}, options_.device);
  const TensorView pos(ws_->positions.data(), DType::kI64, {n}, options_.device);
  if (on_cuda()) {  // tokens and positions cross to the device (synchronous copies from the caller's spans)
    copy_to_device(ids, TensorView(const_cast<int32_t*>(tokens.data()), DType::kI32, {n}));
    copy_to_device(pos, TensorView(const_cast<int64_t*>(positions.data()), DType::kI64, {n}));
  } else {
    std::memcpy(ids.data, tokens.data(), tokens.size_bytes());
    std::memcpy(pos.data, positions.data(), positions.size_bytes());
  }
  run_layers(cache, n, seq, batch, q_start);
}

void LlamaModel::run_layers(KvCache& cache, int64_t n, SeqId seq, const DecodeBatch* batch, int64_t q_start) {
  const ModelConfig& c = config();
  Workspace& w = *ws_;
  SKV_ASSERT(n <= w.capacity);
  const float eps = static_cast<float>(c.norm_eps);
  auto rows = [n](const Buffer& b, Shape full) {  // the first n rows of a workspace buffer
    Shape s = full;
    s.dims[0] = n;
    return TensorView(b.data(), b.view().dtype, s, b.view().device);
  };
  const TensorView x = rows(w.x, {n, c.dim}), h = rows(w.h, {n, c.dim});
  const TensorView qkv = rows(w.qkv, {n, c.q_dim() + 2 * c.kv_dim()});
  const TensorView q = rows(w.q, {n, c.n_q_heads, c.head_dim});
  const TensorView k_pre = rows(w.k_pre, {n, c.n_kv_heads, c.head_dim});
  const TensorView k = rows(w.k, {n, c.n_kv_heads, c.head_dim});
  const TensorView v = rows(w.v, {n, c.n_kv_heads, c.head_dim});
  const TensorView attn = rows(w.attn, {n, c.n_q_heads, c.head_dim});
  const TensorView gate_up = rows(w.gate_up, {n, 2 * c.hidden_dim}), act = rows(w.act, {n, c.hidden_dim});
  const TensorView ids = rows(w.ids, {n}), pos = rows(w.positions, {n});
  const TensorView inv_freq = on_cuda() ? inv_freq_dev_.view()
                                        : TensorView(inv_freq_.data(), DType::kF32,
                                                     {static_cast<int64_t>(inv_freq_.size())});

  embedding({.ids = ids, .table = weights_.embed, .out = x});
  for (int64_t layer = 0; layer < c.n_layers; ++layer) {
    const ComputeLayer& lw = weights_.layers[static_cast<size_t>(layer)];
    rms_norm({.x = x, .w = lw.attn_norm, .out = h, .eps = eps});
    linear({.x = h, .w = lw.wqkv, .bias = lw.bqkv, .out = qkv});
    // Prefill keeps the pre-RoPE keys for the cache (ShadowKV factorizes them, paper section 3.2); decode does
    // not need them.
    split_qkv_rope({.qkv = qkv, .positions = pos, .inv_freq = inv_freq, .position_scale = position_scale_, .q = q,
                    .k = k, .v = v, .k_pre = batch != nullptr ? TensorView{} : k_pre});
    const int l = static_cast<int>(layer);
    if (batch != nullptr) {
      cache.attend_decode(*batch, l, q, k, v, attn);
    } else {
      cache.append_prefill(seq, l, k_pre, k, v);
      const PrefillKv kv = cache.prefill_kv(seq, l);
      attention_prefill({.q = q, .k = kv.k, .v = kv.v, .out = attn, .q_start = q_start});
    }
    linear({.x = attn.reshape({n, c.q_dim()}), .w = lw.wo, .out = x, .accumulate = true});  // x += o_proj(attn)
    rms_norm({.x = x, .w = lw.mlp_norm, .out = h, .eps = eps});
    linear({.x = h, .w = lw.w_gate_up, .out = gate_up});
    swiglu({.gate = gate_up, .out = act});
    linear({.x = act, .w = lw.w_down, .out = x, .accumulate = true});  // x += down_proj(act)
  }
}

void LlamaModel::ensure_logits(int64_t n_rows) {
  if (n_rows <= ws_->logits_rows) return;  // grow-only, like the workspace
  ws_->logits = Buffer(options_.device, DType::kF32, {n_rows, config().vocab_size});
  ws_->logits_rows = n_rows;
  ++workspace_generation_;
}

TensorView LlamaModel::device_logits(int64_t first_row, int64_t n_rows) {
  const ModelConfig& c = config();
  const DeviceId d = options_.device;
  SKV_ASSERT(n_rows <= ws_->logits_rows);
  const TensorView x =
      TensorView(ws_->x.data(), DType::kF32, {ws_->capacity, c.dim}, d).slice_rows(first_row, first_row + n_rows);
  const TensorView h = TensorView(ws_->h.data(), DType::kF32, {ws_->capacity, c.dim}, d).slice_rows(0, n_rows);
  rms_norm({.x = x, .w = weights_.final_norm, .out = h, .eps = static_cast<float>(c.norm_eps)});
  const TensorView logits = TensorView(ws_->logits.data(), DType::kF32, {n_rows, c.vocab_size}, d);
  linear({.x = h, .w = weights_.lm_head, .out = logits});
  return logits;
}

void LlamaModel::compute_logits(int64_t first_row, int64_t n_rows, float* out) {
  const ModelConfig& c = config();
  const TensorView host_out(out, DType::kF32, {n_rows, c.vocab_size});
  if (!on_cuda()) {
    const TensorView x = TensorView(ws_->x.data(), DType::kF32, {ws_->capacity, c.dim})
                             .slice_rows(first_row, first_row + n_rows);
    const TensorView h = TensorView(ws_->h.data(), DType::kF32, {ws_->capacity, c.dim}).slice_rows(0, n_rows);
    rms_norm({.x = x, .w = weights_.final_norm, .out = h, .eps = static_cast<float>(c.norm_eps)});
    linear({.x = h, .w = weights_.lm_head, .out = host_out});
    return;
  }
  ensure_logits(n_rows);
  copy_to_host(host_out, device_logits(first_row, n_rows));  // waits for the step
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
  if (on_cuda()) {
    decode_cuda(cache, batch, tokens, logits);
    return;
  }
  cache.begin_decode_step(batch);
  forward(cache, tokens, batch.positions, -1, &batch, 0);
  compute_logits(0, n, logits.data());
}

// ---- CUDA decode steps and their graphs

struct LlamaModel::DecodeGraphs {
  struct Key {
    uint64_t cache_id;  // not the cache's address: a new cache may be allocated where a freed one was
    int64_t n;
    uint64_t step_key;
    auto operator<=>(const Key&) const = default;
  };
  Stream stream;              // a blocking stream: ordered with the default stream that prefill and the caches use
  PinnedHostBuffer staging;   // [capacity] i64 positions, then [capacity] i32 ids
  int64_t staging_capacity = 0;
  std::map<Key, CudaGraph> graphs;
  std::map<Key, int> seen;    // eager steps per key: a key is captured the second time it comes
  uint64_t scratch_generation = 0, workspace_generation = 0;
  bool broken = false;        // a capture failed: eager from then on (said once on stderr)
};

bool LlamaModel::decode_graphable(int64_t n) const {
  // Every linear must take the small-n kernel (cuBLAS is not captured) and no op may allocate.
  const ModelConfig& c = config();
  return options_.cuda_graphs && options_.weight_dtype == DType::kBF16 && n <= kCudaGemvMaxTokens && c.dim % 8 == 0 &&
         c.q_dim() % 8 == 0 && c.hidden_dim % 8 == 0;
}

void LlamaModel::decode_cuda(KvCache& cache, const DecodeBatch& batch, std::span<const int32_t> tokens,
                             std::span<float> logits) {
  const int64_t n = batch.size();
  const int dev = options_.device.index;
  if (!graphs_) {
    graphs_ = std::make_unique<DecodeGraphs>();
    DeviceGuard guard(dev);
    graphs_->stream = Stream::create(dev, /*non_blocking=*/false);
  }
  DecodeGraphs& g = *graphs_;
  ensure_workspace(n);
  ensure_logits(n);
  if (n > g.staging_capacity) {
    g.staging = PinnedHostBuffer(static_cast<size_t>(n) * 12);
    g.staging_capacity = n;
  }
  // Everything of the step runs on the model's stream, restored afterwards (also on an exception).
  struct StreamScope {
    int dev;
    StreamHandle previous;
    StreamScope(int d, StreamHandle s) : dev(d), previous(current_stream(d)) { set_current_stream(s, d); }
    ~StreamScope() { set_current_stream(previous, dev); }
  } scope(dev, g.stream.handle());
  const StreamHandle stream = g.stream.handle();

  // ids and positions: the previous step ended with a synchronous copy of its logits, so staging is free.
  auto* pos_h = g.staging.ptr<int64_t>();
  auto* ids_h = reinterpret_cast<int32_t*>(g.staging.ptr<unsigned char>() + g.staging_capacity * 8);
  std::memcpy(ids_h, tokens.data(), tokens.size_bytes());
  std::memcpy(pos_h, batch.positions.data(), static_cast<size_t>(n) * sizeof(int64_t));
  copy_to_device_async(TensorView(ws_->ids.data(), DType::kI32, {n}, options_.device),
                       TensorView(ids_h, DType::kI32, {n}), stream);
  copy_to_device_async(TensorView(ws_->positions.data(), DType::kI64, {n}, options_.device),
                       TensorView(pos_h, DType::kI64, {n}), stream);
  const KvCache::DecodeStepInfo info = cache.begin_decode_step(batch);

  auto run_step = [&] {
    run_layers(cache, n, -1, &batch, 0);
    (void)device_logits(0, n);
  };
  bool ran = false;
  if (info.capturable && decode_graphable(n) && !g.broken) {
    if (g.scratch_generation != scratch_generation(dev) || g.workspace_generation != workspace_generation_ ||
        g.graphs.size() > 64) {  // stale addresses, or too many shapes kept: start over
      g.graphs.clear();
      g.seen.clear();
      g.scratch_generation = scratch_generation(dev);
      g.workspace_generation = workspace_generation_;
    }
    const DecodeGraphs::Key key{info.cache_id, n, info.key};
    if (auto it = g.graphs.find(key); it != g.graphs.end()) {
      it->second.launch(stream);
      ++decode_stats_.replays;
      ran = true;
    } else if (g.seen[key]++ >= 1) {
      CudaGraph graph;
      try {
        CudaGraph::begin_capture(stream);
        run_step();
        graph = CudaGraph::end_capture(stream);
      } catch (const Error& e) {
        CudaGraph::abandon_capture(stream);
        g.broken = true;
        std::fprintf(stderr, "shadowkv: CUDA graph capture of the decode step failed, running without graphs: %s\n",
                     e.what());
      } catch (...) {  // anything else (e.g. bad_alloc): leave the stream usable, then let it propagate
        CudaGraph::abandon_capture(stream);
        throw;
      }
      if (!graph.empty()) {
        graph.launch(stream);
        ++decode_stats_.captures;
        ++decode_stats_.replays;
        g.graphs.emplace(key, std::move(graph));
        ran = true;
      }
    }
  }
  if (!ran) {
    run_step();
    ++decode_stats_.eager_steps;
  }
  const ModelConfig& c = config();
  copy_to_host(TensorView(logits.data(), DType::kF32, {n, c.vocab_size}),
               TensorView(ws_->logits.data(), DType::kF32, {n, c.vocab_size}, options_.device));  // waits
}

std::vector<float> LlamaModel::prompt_logits(std::span<const int32_t> tokens) {
  const ModelConfig& c = config();
  const int64_t total = static_cast<int64_t>(tokens.size());
  if (total == 0) throw Error(ErrorCode::kInvalidArgument, "prompt_logits needs at least one token");
  std::unique_ptr<KvCache> owned;
  if (on_cuda())
    owned = std::make_unique<CudaFullKvCache>(c.n_layers, c.n_q_heads, c.n_kv_heads, c.head_dim, 1, total,
                                              options_.device.index, options_.kv_dtype);
  else
    owned = std::make_unique<FullKvCache>(c.n_layers, c.n_kv_heads, c.head_dim);
  KvCache& cache = *owned;
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
