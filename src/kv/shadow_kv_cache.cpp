// ShadowKvCache: see shadow_kv_cache.h for the algorithm; each step below cites the paper section
// (arXiv 2410.21465) and calls the op of ops/shadow_ops.h that implements it.
#include "kv/shadow_kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "ops/ops.h"
#include "ops/shadow_ops.h"

namespace skv {
namespace {

[[noreturn]] void invalid(const std::string& what) { throw Error(ErrorCode::kInvalidArgument, "shadowkv: " + what); }

TensorView f32_view(std::vector<float>& v, Shape shape) {
  SKV_ASSERT(static_cast<int64_t>(v.size()) >= shape.numel());
  return TensorView(v.data(), DType::kF32, shape);
}

// Exact softmax weights (float64) of one query head over the p.size() cached keys of KV head g:
// k [n_tokens, n_kv_heads, head_dim] token-major, qh [head_dim]; p[t] sums to 1. Report mode and the oracle
// selection measure against these.
void exact_weights(const std::vector<float>& k, int64_t n_kv_heads, int64_t g, int64_t head_dim, const float* qh,
                   std::vector<double>& p) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  double max_logit = -1e300;
  for (size_t t = 0; t < p.size(); ++t) {
    const float* kt = k.data() + (static_cast<int64_t>(t) * n_kv_heads + g) * head_dim;
    double dot = 0.0;
    for (int64_t d = 0; d < head_dim; ++d) dot += static_cast<double>(qh[d]) * kt[d];
    p[t] = dot * scale;
    max_logit = std::max(max_logit, dot * scale);
  }
  double denom = 0.0;
  for (double& x : p) denom += (x = std::exp(x - max_logit));
  for (double& x : p) x /= denom;
}

}  // namespace

ShadowKvCache::ShadowKvCache(int64_t n_layers, int64_t n_q_heads, int64_t n_kv_heads, int64_t head_dim,
                             ShadowParams params, std::vector<float> rope_inv_freq, double rope_position_scale)
    : n_layers_(n_layers), n_q_heads_(n_q_heads), n_kv_heads_(n_kv_heads), head_dim_(head_dim), params_(params),
      inv_freq_(std::move(rope_inv_freq)), position_scale_(rope_position_scale) {
  params_.validate();
  if (n_layers < 1) invalid("n_layers must be at least 1, got " + std::to_string(n_layers));
  for (const int64_t l : params_.dense_layers)
    if (l >= n_layers)
      invalid("dense layer " + std::to_string(l) + " does not exist (the model has " + std::to_string(n_layers) +
              " layers)");
  if (n_kv_heads < 1) invalid("n_kv_heads must be at least 1, got " + std::to_string(n_kv_heads));
  if (n_q_heads < 1 || n_q_heads % n_kv_heads != 0)
    invalid("n_q_heads (" + std::to_string(n_q_heads) + ") must be a positive multiple of n_kv_heads (" +
            std::to_string(n_kv_heads) + ")");
  if (head_dim < 2 || head_dim % 2 != 0) invalid("head_dim must be even and positive, got " + std::to_string(head_dim));
  if (static_cast<int64_t>(inv_freq_.size()) != head_dim / 2)
    invalid("rope_inv_freq must hold head_dim / 2 = " + std::to_string(head_dim / 2) + " values, got " +
            std::to_string(inv_freq_.size()));
  reports_.resize(static_cast<size_t>(n_layers));
  report_ = params_.oracle_selection;  // it needs the exact keys report mode keeps
}

// ---- layout ----------------------------------------------------------------------------------------------

ShadowKvCache::Layout ShadowKvCache::plan(const ShadowParams& p, int64_t kv_dim, int64_t prompt_tokens) {
  p.validate();
  Layout lay;
  lay.prompt_tokens = prompt_tokens;
  // §4.1: the local window is the last L chunks plus the S mod c remainder; the rest is chunked.
  const int64_t local = p.local_chunks * p.chunk_size + prompt_tokens % p.chunk_size;
  lay.chunked_tokens = std::max<int64_t>(0, prompt_tokens - local);
  lay.n_chunks = lay.chunked_tokens / p.chunk_size;
  lay.exact = p.sparse_budget >= lay.chunked_tokens;
  if (lay.exact) return lay;
  lay.n_outliers = std::min(p.resolved_outlier_chunks(), lay.n_chunks);
  lay.top_k = std::min(p.top_k(), lay.n_chunks - lay.n_outliers);
  lay.rank = std::min({p.rank, kv_dim, prompt_tokens});
  return lay;
}

ShadowKvCache::Layout ShadowKvCache::layout(SeqId seq) const {
  const Sequence& s = sequence(seq);
  if (!s.finished_prefill)
    throw Error(ErrorCode::kInvalidArgument, "shadowkv: sequence " + std::to_string(seq) + " has not finished its prefill");
  return s.layout;
}

MemoryUse ShadowKvCache::estimate_bytes(const KvSizes& sizes, const ShadowParams& params, int64_t n_tokens,
                                        int64_t bytes_per_element) {
  const int64_t kv_dim = sizes.n_kv_heads * sizes.head_dim;
  const Layout lay = plan(params, kv_dim, n_tokens);
  MemoryUse use;
  if (lay.exact) {
    use.device_bytes = 2 * n_tokens * kv_dim * bytes_per_element * sizes.n_layers;
    return use;
  }
  const int64_t c = params.chunk_size;
  int64_t dense = 0;  // the layers the cache builds exact (is_dense: a layer listed twice is one layer)
  for (int64_t l = 0; l < sizes.n_layers; ++l) dense += params.is_dense(l) ? 1 : 0;
  const int64_t sparse_layers = sizes.n_layers - dense;
  const int64_t per_layer = lay.chunked_tokens * lay.rank             // U
                            + lay.rank * kv_dim                       // SV
                            + lay.n_chunks * kv_dim                   // landmarks
                            + 2 * lay.n_outliers * c * kv_dim         // outlier K, V
                            + 2 * lay.top_k * c * kv_dim              // resident selected chunks K, V
                            + 2 * (n_tokens - lay.chunked_tokens) * kv_dim;  // local window K, V
  use.device_bytes = (per_layer * sparse_layers + 2 * n_tokens * kv_dim * dense) * bytes_per_element;
  use.offloaded_bytes = lay.chunked_tokens * kv_dim * bytes_per_element * sparse_layers;  // V of every chunk
  return use;
}

// ---- sequences -------------------------------------------------------------------------------------------

void ShadowKvCache::add_sequence(SeqId seq, int64_t max_tokens) {
  if (seqs_.count(seq)) throw Error(ErrorCode::kInvalidArgument, "sequence " + std::to_string(seq) + " already exists");
  if (max_tokens <= 0) throw Error(ErrorCode::kInvalidArgument, "a sequence needs room for at least one token");
  Sequence s;
  s.capacity = max_tokens;
  s.layers.resize(static_cast<size_t>(n_layers_));
  seqs_.emplace(seq, std::move(s));
}

void ShadowKvCache::release(SeqId seq) { seqs_.erase(seq); }

bool ShadowKvCache::has_sequence(SeqId seq) const { return seqs_.count(seq) != 0; }

ShadowKvCache::Sequence& ShadowKvCache::sequence(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) throw Error(ErrorCode::kInvalidArgument, "unknown sequence " + std::to_string(seq));
  return it->second;
}

const ShadowKvCache::Sequence& ShadowKvCache::sequence(SeqId seq) const {
  return const_cast<ShadowKvCache*>(this)->sequence(seq);
}

int64_t ShadowKvCache::length(SeqId seq) const { return sequence(seq).layers[0].n_tokens; }

// ---- prefill ---------------------------------------------------------------------------------------------

void ShadowKvCache::append_prefill(SeqId seq, int layer, TensorView k_pre_rope, TensorView k, TensorView v) {
  SKV_ASSERT(layer >= 0 && layer < n_layers_);
  SKV_ASSERT(k.shape == v.shape && k_pre_rope.shape == k.shape && k.dim(1) == n_kv_heads_ && k.dim(2) == head_dim_);
  Sequence& s = sequence(seq);
  if (s.finished_prefill)
    throw Error(ErrorCode::kUnsupported, "shadowkv: sequence " + std::to_string(seq) +
                                             " already finished its prefill; a prompt must be prefilled before any decode");
  Layer& l = s.layers[static_cast<size_t>(layer)];
  const int64_t n = k.dim(0);
  if (l.n_tokens + n > s.capacity)
    throw Error(ErrorCode::kResource, "sequence " + std::to_string(seq) + " exceeds its reserved " +
                                          std::to_string(s.capacity) + " tokens");
  const size_t count = static_cast<size_t>(n * n_kv_heads_ * head_dim_);
  l.k_pre.insert(l.k_pre.end(), k_pre_rope.ptr<const float>(), k_pre_rope.ptr<const float>() + count);
  l.k.insert(l.k.end(), k.ptr<const float>(), k.ptr<const float>() + count);
  l.v.insert(l.v.end(), v.ptr<const float>(), v.ptr<const float>() + count);
  l.n_tokens += n;
}

PrefillKv ShadowKvCache::prefill_kv(SeqId seq, int layer) const {
  const Sequence& s = sequence(seq);
  SKV_ASSERT_MSG(!s.finished_prefill, "prefill_kv after finish_prefill");
  const Layer& l = s.layers[static_cast<size_t>(layer)];
  const Shape shape{l.n_tokens, n_kv_heads_, head_dim_};
  return {TensorView(const_cast<float*>(l.k.data()), DType::kF32, shape),
          TensorView(const_cast<float*>(l.v.data()), DType::kF32, shape)};
}

void ShadowKvCache::finish_prefill(SeqId seq) {
  Sequence& s = sequence(seq);
  if (s.finished_prefill) return;
  const int64_t prompt = s.layers[0].n_tokens;
  for (const Layer& l : s.layers)
    SKV_ASSERT_MSG(l.n_tokens == prompt, "finish_prefill: layers hold different numbers of prompt tokens");
  if (prompt == 0)
    throw Error(ErrorCode::kInvalidArgument, "shadowkv: sequence " + std::to_string(seq) + " has an empty prompt");
  s.layout = plan(params_, n_kv_heads_ * head_dim_, prompt);
  if (s.layout.exact && notice_.empty())
    notice_ = "shadowkv: the sparse budget (" + std::to_string(params_.sparse_budget) +
              " tokens) covers the whole chunked prompt (" + std::to_string(s.layout.chunked_tokens) + " of " +
              std::to_string(prompt) + " tokens); using exact attention over every token";
  if (!s.layout.exact) {
    s.rope_table.assign(static_cast<size_t>(s.layout.chunked_tokens * head_dim_), 0.0f);
    rope_cos_sin_table(f32_view(s.rope_table, {s.layout.chunked_tokens, head_dim_ / 2, 2}),
                       TensorView(inv_freq_.data(), DType::kF32, {head_dim_ / 2}), position_scale_, 0);
  }
  for (size_t i = 0; i < s.layers.size(); ++i) build_layer(s, s.layers[i], static_cast<int64_t>(i));
  s.finished_prefill = true;
}

// §4.1: builds one layer's structures from its exact prompt K/V, then frees what is no longer needed.
void ShadowKvCache::build_layer(Sequence& s, Layer& l, int64_t layer) {
  const Layout& lay = s.layout;
  const int64_t H = n_kv_heads_, hd = head_dim_, kv_dim = H * hd, c = params_.chunk_size;
  l.exact = lay.exact || params_.is_dense(layer);
  l.calibration_steps = !l.exact && params_.dense_capture > 0.0 ? params_.dense_capture_steps : 0;
  const int64_t S = lay.prompt_tokens, chunked = lay.chunked_tokens, first = l.exact ? 0 : lay.recent_start();
  // The exact recent tokens: the local window (every prompt token for an exact sequence).
  fill_recent(s, l, first);

  if (!l.exact) {
    // Low-rank pre-RoPE keys (§3.1): factorize all S prompt keys; only the chunked rows of U are ever read.
    const int64_t r = lay.rank;
    std::vector<float> u(static_cast<size_t>(S * r));
    l.sv.assign(static_cast<size_t>(r * kv_dim), 0.0f);
    lowrank_factorize({.k = f32_view(l.k_pre, {S, kv_dim}), .u = f32_view(u, {S, r}), .sv = f32_view(l.sv, {r, kv_dim})});
    u.resize(static_cast<size_t>(chunked * r));
    u.shrink_to_fit();
    l.u = std::move(u);

    // Landmarks and outliers (§4.1), on the post-RoPE keys of the chunked part.
    const TensorView k_chunked = f32_view(l.k, {chunked, H, hd});
    const int64_t n_chunks = lay.n_chunks, n_out = lay.n_outliers;
    l.landmarks.assign(static_cast<size_t>(H * n_chunks * hd), 0.0f);
    landmark_means({.k = k_chunked, .landmarks = f32_view(l.landmarks, {H, n_chunks, hd}), .chunk_size = c});
    l.outliers.assign(static_cast<size_t>(std::max<int64_t>(1, H * n_out)), 0);
    l.is_outlier.assign(static_cast<size_t>(H * n_chunks), 0);
    l.outlier_k.assign(static_cast<size_t>(H * n_out * c * hd), 0.0f);
    l.outlier_v.assign(l.outlier_k.size(), 0.0f);
    if (n_out > 0) {
      outlier_chunks({.k = k_chunked,
                      .landmarks = f32_view(l.landmarks, {H, n_chunks, hd}),
                      .outliers = TensorView(l.outliers.data(), DType::kI64, {H, n_out}),
                      .chunk_size = c});
      for (int64_t h = 0; h < H; ++h)
        for (int64_t o = 0; o < n_out; ++o) {
          const int64_t chunk = l.outliers[static_cast<size_t>(h * n_out + o)];
          l.is_outlier[static_cast<size_t>(h * n_chunks + chunk)] = 1;
          for (int64_t i = 0; i < c; ++i) {
            const size_t src = static_cast<size_t>(((chunk * c + i) * H + h) * hd);
            const size_t dst = static_cast<size_t>((h * n_out * c + o * c + i) * hd);
            std::copy_n(l.k.begin() + static_cast<std::ptrdiff_t>(src), hd, l.outlier_k.begin() + static_cast<std::ptrdiff_t>(dst));
            std::copy_n(l.v.begin() + static_cast<std::ptrdiff_t>(src), hd, l.outlier_v.begin() + static_cast<std::ptrdiff_t>(dst));
          }
        }
    }
    l.outliers.resize(static_cast<size_t>(H * n_out));

    // Offload the values of every chunk (§4.2: "V is offloaded to the CPU").
    l.values = HostValueStore(H, n_chunks, c, hd);
    l.values.store(f32_view(l.v, {chunked, H, hd}));

    // The resident slots of the selected chunks, empty until the first decode step.
    l.slots.assign(static_cast<size_t>(H * lay.top_k), -1);
    l.slot_k.assign(static_cast<size_t>(H * lay.top_k * c * hd), 0.0f);
    l.slot_v.assign(l.slot_k.size(), 0.0f);
  }

  // The exact prompt copies are no longer needed, except as the reference of report mode (or of the first
  // decode step's calibration).
  std::vector<float>().swap(l.k_pre);
  if (report_) {
    l.k.reserve(static_cast<size_t>(s.capacity * kv_dim));
    l.v.reserve(static_cast<size_t>(s.capacity * kv_dim));
  } else if (l.calibration_steps == 0) {
    std::vector<float>().swap(l.k);
    std::vector<float>().swap(l.v);
  }
}

// The recent segment from the token-major exact copies k/v: tokens [first, n_tokens), head-major, with room for
// every token up to the sequence's capacity.
void ShadowKvCache::fill_recent(const Sequence& s, Layer& l, int64_t first) {
  const int64_t H = n_kv_heads_, hd = head_dim_;
  l.recent_capacity = s.capacity - first;
  l.recent_k.assign(static_cast<size_t>(H * l.recent_capacity * hd), 0.0f);
  l.recent_v.assign(l.recent_k.size(), 0.0f);
  for (int64_t t = first; t < l.n_tokens; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const auto src = static_cast<std::ptrdiff_t>((t * H + h) * hd);
      const auto dst = static_cast<std::ptrdiff_t>((h * l.recent_capacity + t - first) * hd);
      std::copy_n(l.k.begin() + src, hd, l.recent_k.begin() + dst);
      std::copy_n(l.v.begin() + src, hd, l.recent_v.begin() + dst);
    }
  l.recent_len = l.n_tokens - first;
}

// ---- decode ----------------------------------------------------------------------------------------------

// Exact attention over the recent segment alone: what an exact layer attends (every token).
void ShadowKvCache::attend_recent(Layer& l, const float* q, float* out) {
  const int64_t H = n_kv_heads_, hd = head_dim_;
  const SparseKvSegment segments[] = {{f32_view(l.recent_k, {H, l.recent_capacity, hd}),
                                       f32_view(l.recent_v, {H, l.recent_capacity, hd}), l.recent_len}};
  attend_sparse({.q = TensorView(const_cast<float*>(q), DType::kF32, {n_q_heads_, hd}), .segments = segments,
                 .out = TensorView(out, DType::kF32, {n_q_heads_, hd})});
}

void ShadowKvCache::attend_decode(const DecodeBatch& batch, int layer, TensorView q, TensorView k, TensorView v,
                                  TensorView out) {
  SKV_ASSERT(layer >= 0 && layer < n_layers_);
  SKV_ASSERT(q.dim(1) == n_q_heads_ && q.dim(2) == head_dim_ && k.dim(1) == n_kv_heads_ && k.dim(2) == head_dim_);
  const int64_t q_row = n_q_heads_ * head_dim_, kv_row = n_kv_heads_ * head_dim_;
  for (int64_t b = 0; b < batch.size(); ++b) {
    const SeqId id = batch.seqs[static_cast<size_t>(b)];
    Sequence& s = sequence(id);
    if (!s.finished_prefill)
      throw Error(ErrorCode::kInvalidArgument, "shadowkv: sequence " + std::to_string(id) + " decodes before finish_prefill");
    Layer& l = s.layers[static_cast<size_t>(layer)];
    SKV_ASSERT_MSG(l.n_tokens == batch.positions[static_cast<size_t>(b)], "decode position out of step with the cache");
    if (l.n_tokens + 1 > s.capacity)
      throw Error(ErrorCode::kResource, "sequence " + std::to_string(id) + " exceeds its reserved " +
                                            std::to_string(s.capacity) + " tokens");
    decode_one(s, l, q.ptr<const float>() + b * q_row, k.ptr<const float>() + b * kv_row,
               v.ptr<const float>() + b * kv_row, out.ptr<float>() + b * q_row,
               reports_[static_cast<size_t>(layer)], report_ && !l.k.empty());
  }
}

void ShadowKvCache::decode_one(Sequence& s, Layer& l, const float* q, const float* k, const float* v, float* out,
                               LayerReport& stats, bool measured) {
  LayerReport* report = measured ? &stats : nullptr;
  const Layout& lay = s.layout;
  const int64_t H = n_kv_heads_, hd = head_dim_, c = params_.chunk_size, top_k = lay.top_k;

  // The new token joins the exact recent tokens: nothing is ever dropped.
  for (int64_t h = 0; h < H; ++h) {
    std::copy_n(k + h * hd, hd, l.recent_k.begin() + (h * l.recent_capacity + l.recent_len) * hd);
    std::copy_n(v + h * hd, hd, l.recent_v.begin() + (h * l.recent_capacity + l.recent_len) * hd);
  }
  ++l.recent_len;
  ++l.n_tokens;
  if (report != nullptr || l.calibration_steps > 0) {
    l.k.insert(l.k.end(), k, k + H * hd);
    l.v.insert(l.v.end(), v, v + H * hd);
  }
  const TensorView qv(const_cast<float*>(q), DType::kF32, {n_q_heads_, hd});
  const SparseKvSegment recent{f32_view(l.recent_k, {H, l.recent_capacity, hd}),
                               f32_view(l.recent_v, {H, l.recent_capacity, hd}), l.recent_len};
  const TensorView outv(out, DType::kF32, {n_q_heads_, hd});

  if (l.exact) {
    attend_recent(l, q, out);
    if (report != nullptr) measure(s, l, q, out, *report);
    return;
  }

  int64_t hits = 0;
  if (top_k > 0) {
    // §4.2: score the chunks by their landmarks, select the top k per KV head.
    const int64_t n_chunks = lay.n_chunks;
    scores_.resize(static_cast<size_t>(H * n_chunks));
    selected_.resize(static_cast<size_t>(H * top_k));
    fetch_.resize(static_cast<size_t>(H * top_k));
    hits_.resize(static_cast<size_t>(H));
    if (params_.oracle_selection && !l.k.empty()) {
      oracle_scores(s, l, q);
    } else {
      landmark_scores({.q = qv,
                       .landmarks = f32_view(l.landmarks, {H, n_chunks, hd}),
                       .excluded = TensorView(l.is_outlier.data(), DType::kU8, {H, n_chunks}),
                       .scores = f32_view(scores_, {H, n_chunks})});
    }
    const TensorView selected(selected_.data(), DType::kI64, {H, top_k});
    const TensorView slots(l.slots.data(), DType::kI64, {H, top_k});
    const TensorView fetch(fetch_.data(), DType::kU8, {H, top_k});
    topk_chunks({.scores = f32_view(scores_, {H, n_chunks}), .selected = selected});
    // §4.2: chunks selected in the previous step are resident; fetch only the missing ones.
    select_reuse({.selected = selected, .slots = slots, .fetch = fetch,
                  .hits = TensorView(hits_.data(), DType::kI64, {H})});
    gather_chunks({.store = l.values.view(), .slots = slots, .fetch = fetch,
                   .out = f32_view(l.slot_v, {H, top_k, c, hd})});
    rebuild_keys({.u = f32_view(l.u, {lay.chunked_tokens, lay.rank}),
                  .sv = f32_view(l.sv, {lay.rank, H * hd}),
                  .slots = slots,
                  .fetch = fetch,
                  .out = f32_view(l.slot_k, {H, top_k, c, hd}),
                  .inv_freq = TensorView(inv_freq_.data(), DType::kF32, {hd / 2}),
                  .position_scale = position_scale_,
                  .rope_table = f32_view(s.rope_table, {lay.chunked_tokens, hd / 2, 2})});
    for (int64_t h : hits_) hits += h;
  }

  // §4.2: exact attention over outliers + selected chunks + local window and generated tokens.
  const SparseKvSegment segments[] = {
      {lay.n_outliers > 0 ? f32_view(l.outlier_k, {H, lay.n_outliers * c, hd}) : TensorView(),
       lay.n_outliers > 0 ? f32_view(l.outlier_v, {H, lay.n_outliers * c, hd}) : TensorView(), lay.n_outliers * c},
      {top_k > 0 ? f32_view(l.slot_k, {H, top_k * c, hd}) : TensorView(),
       top_k > 0 ? f32_view(l.slot_v, {H, top_k * c, hd}) : TensorView(), top_k * c},
      recent};
  attend_sparse({.q = qv, .segments = segments, .out = outv});

  if (l.has_previous_selection) {  // reuse is counted in every mode: it is free
    stats.selected_chunks += H * top_k;
    stats.reused_chunks += hits;
  }
  l.has_previous_selection = true;
  if (l.calibration_steps > 0) {
    LayerReport step;  // this step alone, measured once for both the choice and the report
    measure(s, l, q, out, step);
    const bool turned_exact = calibrate(s, l, q, out, step, stats);
    if (report != nullptr) {
      if (turned_exact) measure(s, l, q, out, *report);  // the output is now exact attention's
      else report->merge(step);
    }
    return;
  }
  if (report != nullptr) measure(s, l, q, out, *report);
}

bool ShadowKvCache::calibrate(Sequence& s, Layer& l, const float* q, float* out, const LayerReport& step,
                              LayerReport& stats) {
  if (l.calibration_steps == params_.dense_capture_steps) ++stats.calibrated_sequences;  // its first measured step
  const bool miss =
      step.chunk_oracle_mass > 0.0 && step.attended_mass < params_.dense_capture * step.chunk_oracle_mass;
  l.calibration_steps = miss ? 0 : l.calibration_steps - 1;
  if (l.calibration_steps > 0) return false;  // measured again next step
  if (miss) {
    ++stats.exact_sequences;
    make_exact(s, l);
    attend_recent(l, q, out);
  }
  if (!report_) {
    std::vector<float>().swap(l.k);
    std::vector<float>().swap(l.v);
  }
  return miss;
}

void ShadowKvCache::make_exact(Sequence& s, Layer& l) {
  SKV_ASSERT_MSG(static_cast<int64_t>(l.k.size()) == l.n_tokens * n_kv_heads_ * head_dim_,
                 "make_exact needs the layer's exact keys");
  fill_recent(s, l, 0);
  l.exact = true;
  for (std::vector<float>* v : {&l.u, &l.sv, &l.landmarks, &l.outlier_k, &l.outlier_v, &l.slot_k, &l.slot_v})
    std::vector<float>().swap(*v);
  std::vector<uint8_t>().swap(l.is_outlier);
  std::vector<int64_t>().swap(l.outliers);
  std::vector<int64_t>().swap(l.slots);
  l.values = HostValueStore();
}

void ShadowKvCache::oracle_scores(const Sequence& s, const Layer& l, const float* q) {
  const Layout& lay = s.layout;
  const int64_t H = n_kv_heads_, hd = head_dim_, c = params_.chunk_size, group = n_q_heads_ / H;
  std::vector<double> p(static_cast<size_t>(l.n_tokens));
  for (int64_t g = 0; g < H; ++g) {
    float* sc = scores_.data() + g * lay.n_chunks;
    std::fill_n(sc, lay.n_chunks, 0.0f);
    for (int64_t hq = g * group; hq < (g + 1) * group; ++hq) {
      exact_weights(l.k, H, g, hd, q + hq * hd, p);
      for (int64_t ch = 0; ch < lay.n_chunks; ++ch) {
        double m = 0.0;
        for (int64_t i = 0; i < c; ++i) m += p[static_cast<size_t>(ch * c + i)];
        sc[ch] = std::max(sc[ch], static_cast<float>(m));
      }
    }
    for (int64_t ch = 0; ch < lay.n_chunks; ++ch)
      if (l.is_outlier[static_cast<size_t>(g * lay.n_chunks + ch)]) sc[ch] = -std::numeric_limits<float>::infinity();
  }
}

// Report mode: compares this step's output against exact attention over every token of the sequence.
void ShadowKvCache::measure(const Sequence& s, const Layer& l, const float* q, const float* out, LayerReport& r) {
  const Layout& lay = s.layout;
  const int64_t H = n_kv_heads_, hd = head_dim_, c = params_.chunk_size, n = l.n_tokens;
  const int64_t group = n_q_heads_ / H;
  std::vector<uint8_t> attended(static_cast<size_t>(n));
  std::vector<double> p(static_cast<size_t>(n)), sorted(static_cast<size_t>(n)), exact(static_cast<size_t>(hd));
  std::vector<double> chunk_mass;  // [candidate chunks] of one query head
  double mass = 0.0, best = 0.0, oracle = 0.0, err2 = 0.0, norm2 = 0.0;
  int64_t top_hits = 0;
  for (int64_t g = 0; g < H; ++g) {
    // The keys this KV head attended: outliers, selected chunks, and every token from the local window on.
    std::fill(attended.begin(), attended.end(), 0);
    for (int64_t t = l.exact ? 0 : lay.recent_start(); t < n; ++t) attended[static_cast<size_t>(t)] = 1;
    if (!l.exact) {
      for (int64_t o = 0; o < lay.n_outliers; ++o)
        for (int64_t i = 0; i < c; ++i) attended[static_cast<size_t>(l.outliers[static_cast<size_t>(g * lay.n_outliers + o)] * c + i)] = 1;
      for (int64_t j = 0; j < lay.top_k; ++j)
        for (int64_t i = 0; i < c; ++i) attended[static_cast<size_t>(l.slots[static_cast<size_t>(g * lay.top_k + j)] * c + i)] = 1;
    }
    const int64_t m = std::count(attended.begin(), attended.end(), uint8_t{1});
    for (int64_t hq = g * group; hq < (g + 1) * group; ++hq) {
      exact_weights(l.k, H, g, hd, q + hq * hd, p);
      std::fill(exact.begin(), exact.end(), 0.0);
      double head_mass = 0.0;
      for (int64_t t = 0; t < n; ++t) {
        const double pt = p[static_cast<size_t>(t)];
        sorted[static_cast<size_t>(t)] = pt;
        if (attended[static_cast<size_t>(t)]) head_mass += pt;
        const float* vt = l.v.data() + (t * H + g) * hd;
        for (int64_t d = 0; d < hd; ++d) exact[static_cast<size_t>(d)] += pt * vt[d];
      }
      const int64_t top_key = std::max_element(sorted.begin(), sorted.end()) - sorted.begin();
      top_hits += attended[static_cast<size_t>(top_key)];
      // The perfect chunk selector: everything always attended, plus the top_k candidate chunks by exact mass.
      double head_oracle = 0.0;
      if (l.exact) {
        head_oracle = 1.0;
      } else {
        chunk_mass.clear();
        for (int64_t ch = 0; ch < lay.n_chunks; ++ch) {
          double cm = 0.0;
          for (int64_t i = 0; i < c; ++i) cm += sorted[static_cast<size_t>(ch * c + i)];
          if (l.is_outlier[static_cast<size_t>(g * lay.n_chunks + ch)]) head_oracle += cm;
          else chunk_mass.push_back(cm);
        }
        for (int64_t t = lay.recent_start(); t < n; ++t) head_oracle += sorted[static_cast<size_t>(t)];
        const int64_t k = std::min<int64_t>(lay.top_k, static_cast<int64_t>(chunk_mass.size()));
        std::nth_element(chunk_mass.begin(), chunk_mass.begin() + k, chunk_mass.end(), std::greater<double>());
        for (int64_t j = 0; j < k; ++j) head_oracle += chunk_mass[static_cast<size_t>(j)];
      }
      std::nth_element(sorted.begin(), sorted.begin() + (m - 1), sorted.end(), std::greater<double>());
      double head_best = 0.0;
      for (int64_t t = 0; t < m; ++t) head_best += sorted[static_cast<size_t>(t)];
      mass += head_mass;
      best += head_best;
      oracle += head_oracle;
      for (int64_t d = 0; d < hd; ++d) {
        const double e = out[hq * hd + d] - exact[static_cast<size_t>(d)];
        err2 += e * e;
        norm2 += exact[static_cast<size_t>(d)] * exact[static_cast<size_t>(d)];
      }
    }
  }
  r.steps += 1;
  r.attended_mass += mass / static_cast<double>(n_q_heads_);
  r.best_mass += best / static_cast<double>(n_q_heads_);
  r.chunk_oracle_mass += oracle / static_cast<double>(n_q_heads_);
  r.top_key_queries += n_q_heads_;
  r.top_key_hits += top_hits;
  r.output_error += norm2 > 0.0 ? std::sqrt(err2 / norm2) : std::sqrt(err2);
}

MemoryUse ShadowKvCache::memory_use() const {
  MemoryUse use;
  auto bytes = [](const auto& v) { return static_cast<int64_t>(v.size() * sizeof(v[0])); };
  for (const auto& [id, s] : seqs_) {
    use.device_bytes += bytes(s.rope_table);
    for (const Layer& l : s.layers) {
      use.device_bytes += bytes(l.k_pre) + bytes(l.k) + bytes(l.v) + bytes(l.u) + bytes(l.sv) + bytes(l.landmarks) +
                          bytes(l.is_outlier) + bytes(l.outliers) + bytes(l.outlier_k) + bytes(l.outlier_v) +
                          bytes(l.slots) + bytes(l.slot_k) + bytes(l.slot_v) + bytes(l.recent_k) + bytes(l.recent_v);
      use.offloaded_bytes += l.values.bytes();
    }
  }
  return use;
}

}  // namespace skv
