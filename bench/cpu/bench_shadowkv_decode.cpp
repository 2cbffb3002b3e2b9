// ShadowKV decode vs full-attention decode on the CPU backend, at long contexts.
// A tiny random Llama (4 layers, GQA 4:1, head_dim 64, built in-process) prefills each context once; a tee
// cache feeds the same prompt K/V to a FullKvCache and a ShadowKvCache, then each decodes the same greedy tokens (chosen by the full run) and
// the median milliseconds per decode step are compared. Prints a Markdown table.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "kv/full_kv_cache.h"
#include "kv/shadow_kv_cache.h"
#include "loader/model_loader.h"
#include "model/llama_model.h"
#include "model/rope_frequencies.h"

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Random weights ~ U(-a, a) with a = sqrt(3 / fan_in) (variance 1/fan_in); norms 1. `owned` keeps them alive.
std::shared_ptr<const skv::LoadedModel> random_model(std::vector<skv::HostBuffer>& owned) {
  skv::ModelConfig c;
  c.vocab_size = 512;
  c.dim = 256;
  c.hidden_dim = 512;
  c.n_layers = 4;
  c.n_q_heads = 8;
  c.n_kv_heads = 2;
  c.head_dim = 64;
  c.rope_theta = 500000.0;
  c.max_position_embeddings = 1 << 20;
  std::mt19937_64 rng(2026);
  owned.reserve(64);
  auto tensor = [&](skv::Shape shape, double a) {
    skv::HostBuffer b(skv::DType::kF32, shape);
    std::uniform_real_distribution<float> dist(static_cast<float>(-a), static_cast<float>(a));
    for (int64_t i = 0; i < shape.numel(); ++i) b.ptr<float>()[i] = a == 0 ? 1.0f : dist(rng);
    owned.push_back(std::move(b));
    return owned.back().view();
  };
  auto lin = [&](int64_t out, int64_t in) { return tensor({out, in}, std::sqrt(3.0 / static_cast<double>(in))); };
  skv::LoadedModel m;
  m.config = c;
  m.weights.embed = tensor({c.vocab_size, c.dim}, std::sqrt(3.0));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    skv::LayerWeights w;
    w.attn_norm = tensor({c.dim}, 0);
    w.wq = lin(c.q_dim(), c.dim);
    w.wk = lin(c.kv_dim(), c.dim);
    w.wv = lin(c.kv_dim(), c.dim);
    w.wo = lin(c.dim, c.q_dim());
    w.mlp_norm = tensor({c.dim}, 0);
    w.w_gate = lin(c.hidden_dim, c.dim);
    w.w_up = lin(c.hidden_dim, c.dim);
    w.w_down = lin(c.dim, c.hidden_dim);
    m.weights.layers.push_back(w);
  }
  m.weights.final_norm = tensor({c.dim}, 0);
  m.weights.lm_head = lin(c.vocab_size, c.dim);
  return std::make_shared<const skv::LoadedModel>(std::move(m));
}

// Prefill once, into both caches: the full cache answers prefill_kv (the prefill attention is exact either way).
class TeeCache final : public skv::KvCache {
 public:
  TeeCache(skv::KvCache& a, skv::KvCache& b) : a_(a), b_(b) {}
  void add_sequence(skv::SeqId s, int64_t n) override { a_.add_sequence(s, n), b_.add_sequence(s, n); }
  void release(skv::SeqId s) override { a_.release(s), b_.release(s); }
  bool has_sequence(skv::SeqId s) const override { return a_.has_sequence(s); }
  int64_t length(skv::SeqId s) const override { return a_.length(s); }
  void append_prefill(skv::SeqId s, int l, skv::TensorView kp, skv::TensorView k, skv::TensorView v) override {
    a_.append_prefill(s, l, kp, k, v);
    b_.append_prefill(s, l, kp, k, v);
  }
  skv::PrefillKv prefill_kv(skv::SeqId s, int l) const override { return a_.prefill_kv(s, l); }
  void finish_prefill(skv::SeqId s) override { a_.finish_prefill(s), b_.finish_prefill(s); }
  void attend_decode(const skv::DecodeBatch&, int, skv::TensorView, skv::TensorView, skv::TensorView,
                     skv::TensorView) override {
    throw skv::Error(skv::ErrorCode::kInternal, "TeeCache is for prefill only");
  }
  skv::MemoryUse memory_use() const override { return {}; }

 private:
  skv::KvCache& a_;
  skv::KvCache& b_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> contexts{8192, 16384, 32768};
  int64_t steps = 20;
  skv::ShadowParams params;  // the paper's defaults: budget 2048, rank 160, chunk 8, 48 outliers, 4 local chunks
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return std::stoll(argv[++i]); };
    if (a == "--contexts" && i + 1 < argc) {
      contexts.clear();
      std::stringstream ss(argv[++i]);
      for (std::string x; std::getline(ss, x, ',');) contexts.push_back(std::stoll(x));
    } else if (a == "--steps" && i + 1 < argc) steps = next();
    else if (a == "--budget" && i + 1 < argc) params.sparse_budget = next();
    else if (a == "--rank" && i + 1 < argc) params.rank = next();
    else {
      std::fprintf(stderr, "usage: bench_shadowkv_decode [--contexts 8192,16384,32768] [--steps N] [--budget N] [--rank N]\n");
      return 2;
    }
  }
  try {
    std::vector<skv::HostBuffer> owned;
    auto loaded = random_model(owned);
    const skv::ModelConfig& c = loaded->config;
    skv::LlamaModel model(loaded);
    std::printf("model: %lld layers, %lld query heads, %lld KV heads, head_dim %lld (random weights); ShadowKV budget "
                "%lld, rank %lld, chunk %lld, outliers %lld, local chunks %lld; median of %lld decode steps\n\n",
                (long long)c.n_layers, (long long)c.n_q_heads, (long long)c.n_kv_heads, (long long)c.head_dim,
                (long long)params.sparse_budget, (long long)params.rank, (long long)params.chunk_size,
                (long long)params.resolved_outlier_chunks(), (long long)params.local_chunks, (long long)steps);
    std::printf("| context | prefill s | full ms/step | ShadowKV ms/step | speed-up | hit rate | full KV MiB | ShadowKV resident MiB | offloaded MiB |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    std::mt19937 rng(7);
    for (int64_t n : contexts) {
      std::vector<int32_t> prompt(static_cast<size_t>(n));
      for (auto& t : prompt) t = static_cast<int32_t>(rng() % c.vocab_size);
      skv::FullKvCache full(c.n_layers, c.n_kv_heads, c.head_dim);
      skv::ShadowKvCache shadow(c.n_layers, c.n_q_heads, c.n_kv_heads, c.head_dim, params, skv::rope_inv_freq(c),
                                skv::rope_position_scale(c));
      TeeCache tee(full, shadow);
      tee.add_sequence(0, n + steps + 1);
      std::vector<float> logits(static_cast<size_t>(c.vocab_size));
      auto t0 = Clock::now();
      model.prefill(tee, 0, prompt, logits);
      const double prefill_s = ms_since(t0) / 1e3;
      const skv::MemoryUse shadow_mem = shadow.memory_use();
      const skv::MemoryUse full_mem = full.memory_use();
      std::vector<double> t_full, t_shadow;
      // Greedy generation: the full-attention run picks each next token (argmax), both caches decode it.
      int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      for (int64_t s = 0; s <= steps; ++s) {  // step 0 warms up (and fills ShadowKV's first selection)
        skv::DecodeBatch batch{{0}, {n + s}};
        const int32_t token = next;
        const std::span<const int32_t> tok(&token, 1);
        t0 = Clock::now();
        model.decode(full, batch, tok, logits);
        if (s > 0) t_full.push_back(ms_since(t0));
        next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        t0 = Clock::now();
        model.decode(shadow, batch, tok, logits);
        if (s > 0) t_shadow.push_back(ms_since(t0));
      }
      int64_t sel = 0, reused = 0;
      for (const auto& r : shadow.report()) sel += r.selected_chunks, reused += r.reused_chunks;
      const double mf = median(t_full), ms = median(t_shadow);
      std::printf("| %lld | %.1f | %.2f | %.2f | %.2fx | %.2f | %.0f | %.1f | %.0f |\n", (long long)n, prefill_s, mf, ms,
                  mf / ms, sel ? static_cast<double>(reused) / static_cast<double>(sel) : 0.0,
                  static_cast<double>(full_mem.device_bytes) / (1 << 20),
                  static_cast<double>(shadow_mem.device_bytes) / (1 << 20),
                  static_cast<double>(shadow_mem.offloaded_bytes) / (1 << 20));
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
