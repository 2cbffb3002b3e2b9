// ShadowKvCache on random K/V: the whole decode pipeline against a straightforward reference written here
// (SVD by LAPACKE_dgesdd, landmarks, outliers, scores, top-k, rebuild with RoPE, exact attention over the
// attended set), identity with full-rank factors and every chunk attended, the exact fallback, memory
// accounting, determinism and parameter errors.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>
#include <lapacke.h>

#include "core/buffer.h"
#include "kv/full_kv_cache.h"
#include "kv/shadow_kv_cache.h"
#include "kv/shadow_kv_factory.h"
#include "ops/ops.h"
#include "testing/tensor_testing.h"

namespace skv {
namespace {

using testing::random_floats;

std::vector<float> inv_freq_for(int64_t head_dim) {
  std::vector<float> f(static_cast<size_t>(head_dim / 2));
  for (int64_t i = 0; i < head_dim / 2; ++i) f[static_cast<size_t>(i)] = static_cast<float>(std::pow(10000.0, -2.0 * i / head_dim));
  return f;
}

// Rotate-half RoPE of one head vector at `pos`, in double (the definition).
void rope_ref(const double* x, double* out, int64_t hd, int64_t pos, const std::vector<float>& inv) {
  for (int64_t i = 0; i < hd / 2; ++i) {
    const double a = static_cast<double>(pos) * inv[static_cast<size_t>(i)];
    out[i] = x[i] * std::cos(a) - x[i + hd / 2] * std::sin(a);
    out[i + hd / 2] = x[i + hd / 2] * std::cos(a) + x[i] * std::sin(a);
  }
}

// A random sequence: pre-RoPE keys with a decaying spectrum (so low rank matters), post-RoPE keys, values,
// and decode-step queries / keys / values.
struct Data {
  int64_t n_q, H, hd, S, steps;
  std::vector<float> k_pre, k, v;          // [S, H, hd]
  std::vector<float> dq, dk, dv;           // [steps, n_q|H, hd]
};

Data make_data(int64_t n_q, int64_t H, int64_t hd, int64_t S, int64_t steps, uint64_t seed) {
  Data d{n_q, H, hd, S, steps, {}, {}, {}, {}, {}, {}};
  const int64_t kv_dim = H * hd, m = 12;
  auto a = random_floats(static_cast<size_t>(S * m), seed), b = random_floats(static_cast<size_t>(m * kv_dim), seed + 1);
  auto noise = random_floats(static_cast<size_t>(S * kv_dim), seed + 2, -0.05f, 0.05f);
  d.k_pre.resize(static_cast<size_t>(S * kv_dim));
  for (int64_t t = 0; t < S; ++t)
    for (int64_t j = 0; j < kv_dim; ++j) {
      double s = noise[static_cast<size_t>(t * kv_dim + j)];
      for (int64_t x = 0; x < m; ++x) s += 2.0 * a[static_cast<size_t>(t * m + x)] * std::pow(0.7, double(x)) * b[static_cast<size_t>(x * kv_dim + j)];
      d.k_pre[static_cast<size_t>(t * kv_dim + j)] = static_cast<float>(s);
    }
  d.k = d.k_pre;
  std::vector<int64_t> pos(static_cast<size_t>(S));
  std::iota(pos.begin(), pos.end(), 0);
  auto inv = inv_freq_for(hd);
  rope({.x = TensorView(d.k.data(), DType::kF32, {S, H, hd}), .positions = TensorView(pos.data(), DType::kI64, {S}),
        .inv_freq = TensorView(inv.data(), DType::kF32, {hd / 2})});
  d.v = random_floats(static_cast<size_t>(S * kv_dim), seed + 3);
  d.dq = random_floats(static_cast<size_t>(steps * n_q * hd), seed + 4, -2, 2);
  d.dk = random_floats(static_cast<size_t>(steps * kv_dim), seed + 5, -2, 2);
  d.dv = random_floats(static_cast<size_t>(steps * kv_dim), seed + 6);
  return d;
}

// Runs prefill (in two chunks) + every decode step through `cache` (one layer); returns the outputs.
std::vector<float> run(KvCache& cache, const Data& d, int64_t n_layers = 1) {
  const int64_t kv_dim = d.H * d.hd;
  cache.add_sequence(7, d.S + d.steps);
  const int64_t half = d.S / 2;
  for (int layer = 0; layer < n_layers; ++layer)
    for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, half}, {half, d.S}}) {
      auto view = [&](const std::vector<float>& x) {
        return TensorView(const_cast<float*>(x.data()) + t0 * kv_dim, DType::kF32, {t1 - t0, d.H, d.hd});
      };
      if (t1 > t0) cache.append_prefill(7, layer, view(d.k_pre), view(d.k), view(d.v));
    }
  cache.finish_prefill(7);
  std::vector<float> out(static_cast<size_t>(d.steps * d.n_q * d.hd));
  for (int64_t s = 0; s < d.steps; ++s) {
    DecodeBatch batch{{7}, {d.S + s}};
    for (int layer = 0; layer < n_layers; ++layer)
      cache.attend_decode(batch, layer,
                          TensorView(const_cast<float*>(d.dq.data()) + s * d.n_q * d.hd, DType::kF32, {1, d.n_q, d.hd}),
                          TensorView(const_cast<float*>(d.dk.data()) + s * kv_dim, DType::kF32, {1, d.H, d.hd}),
                          TensorView(const_cast<float*>(d.dv.data()) + s * kv_dim, DType::kF32, {1, d.H, d.hd}),
                          TensorView(out.data() + s * d.n_q * d.hd, DType::kF32, {1, d.n_q, d.hd}));
    EXPECT_EQ(cache.length(7), d.S + s + 1);
  }
  return out;
}

// The landmarks' wrong pick: one KV head, head_dim 16, 72 tokens (chunks 0-7 of 8 tokens + 8 local), `steps`
// decode queries along dimension 0. One sharp key in chunk 2 holds most of the exact weight, but the mean of
// chunk 5's eight moderately aligned keys scores higher, so a one-chunk budget goes to chunk 5.
Data wrong_selection_data(int64_t steps) {
  const int64_t hd = 16;
  Data d = make_data(1, 1, hd, 72, steps, 450);
  std::fill(d.k.begin(), d.k.end(), 0.0f);
  d.k[static_cast<size_t>((2 * 8 + 3) * hd)] = 3.0f;                                // chunk 2, key 3: sharp
  for (int64_t i = 0; i < 8; ++i) d.k[static_cast<size_t>((5 * 8 + i) * hd)] = 1.0f;  // chunk 5: all moderate
  d.k_pre = d.k;  // the rebuilt keys do not enter the masses
  std::fill(d.dq.begin(), d.dq.end(), 0.0f);
  for (int64_t s = 0; s < steps; ++s) d.dq[static_cast<size_t>(s * hd)] = 10.0f;
  return d;
}

ShadowKvCache make_shadow(const Data& d, ShadowParams p, int64_t n_layers = 1) {
  return ShadowKvCache(n_layers, d.n_q, d.H, d.hd, p, inv_freq_for(d.hd), 1.0);
}

// The whole ShadowKV decode, written straightforwardly from the paper's description.
std::vector<float> reference_shadowkv(const Data& d, const ShadowParams& p) {
  const int64_t H = d.H, hd = d.hd, kv_dim = H * hd, S = d.S, c = p.chunk_size, group = d.n_q / H;
  const int64_t local = p.local_chunks * c + S % c, chunked = std::max<int64_t>(0, S - local), n_chunks = chunked / c;
  const int64_t n_out = std::min(p.resolved_outlier_chunks(), n_chunks);
  const int64_t k_sel = std::min(p.top_k(), n_chunks - n_out);
  const int64_t r = std::min({p.rank, kv_dim, S});
  const auto inv = inv_freq_for(hd);
  // 1. Rank-r reconstruction of the pre-RoPE keys: the SVD truncated (Eckart-Young).
  std::vector<double> a(d.k_pre.begin(), d.k_pre.end());
  const int64_t m = std::min(S, kv_dim);
  std::vector<double> sig(static_cast<size_t>(m)), u(static_cast<size_t>(S * m)), vt(static_cast<size_t>(m * kv_dim));
  EXPECT_EQ(LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', static_cast<lapack_int>(S), static_cast<lapack_int>(kv_dim), a.data(),
                           static_cast<lapack_int>(kv_dim), sig.data(), u.data(), static_cast<lapack_int>(m), vt.data(),
                           static_cast<lapack_int>(kv_dim)), 0);
  // 2. Landmarks and outliers from the exact post-RoPE keys.
  std::vector<double> lm(static_cast<size_t>(H * n_chunks * hd), 0.0);
  std::vector<std::vector<int64_t>> outliers(static_cast<size_t>(H));
  for (int64_t h = 0; h < H; ++h) {
    std::vector<std::pair<double, int64_t>> mc;
    for (int64_t ch = 0; ch < n_chunks; ++ch) {
      double* l = &lm[static_cast<size_t>((h * n_chunks + ch) * hd)];
      for (int64_t i = 0; i < c; ++i)
        for (int64_t e = 0; e < hd; ++e) l[e] += d.k[static_cast<size_t>(((ch * c + i) * H + h) * hd + e)] / double(c);
      for (int64_t e = 0; e < hd; ++e) l[e] = static_cast<float>(l[e]);  // the landmarks are stored in f32
      double lowest = 2;
      for (int64_t i = 0; i < c; ++i) {
        double dot = 0, kk = 0, ll = 0;
        for (int64_t e = 0; e < hd; ++e) {
          const double x = d.k[static_cast<size_t>(((ch * c + i) * H + h) * hd + e)];
          dot += x * l[e], kk += x * x, ll += l[e] * l[e];
        }
        lowest = std::min(lowest, dot / std::sqrt(kk * ll));
      }
      mc.push_back({lowest, ch});
    }
    std::sort(mc.begin(), mc.end());
    for (int64_t i = 0; i < n_out; ++i) outliers[static_cast<size_t>(h)].push_back(mc[static_cast<size_t>(i)].second);
  }
  // 3. Each step: keys/values of the whole sequence so far, scores, selection, exact attention over the set.
  std::vector<float> out(static_cast<size_t>(d.steps * d.n_q * hd));
  for (int64_t s = 0; s < d.steps; ++s) {
    const int64_t n = S + s + 1;
    for (int64_t h = 0; h < H; ++h) {
      const auto& outl = outliers[static_cast<size_t>(h)];
      auto is_outlier = [&](int64_t ch) { return std::find(outl.begin(), outl.end(), ch) != outl.end(); };
      // scores: per query head softmax over candidate landmarks, max over the group
      std::vector<double> score(static_cast<size_t>(n_chunks), -1.0);
      for (int64_t qh = h * group; qh < (h + 1) * group; ++qh) {
        std::vector<double> e(static_cast<size_t>(n_chunks), 0.0);
        double den = 0;
        for (int64_t ch = 0; ch < n_chunks; ++ch) {
          if (is_outlier(ch)) continue;
          double dot = 0;
          for (int64_t x = 0; x < hd; ++x) dot += double(d.dq[static_cast<size_t>((s * d.n_q + qh) * hd + x)]) * lm[static_cast<size_t>((h * n_chunks + ch) * hd + x)];
          den += (e[static_cast<size_t>(ch)] = std::exp(dot / std::sqrt(double(hd))));
        }
        for (int64_t ch = 0; ch < n_chunks; ++ch)
          if (!is_outlier(ch)) score[static_cast<size_t>(ch)] = std::max(score[static_cast<size_t>(ch)], e[static_cast<size_t>(ch)] / den);
      }
      std::vector<int64_t> order(static_cast<size_t>(n_chunks));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return score[static_cast<size_t>(x)] > score[static_cast<size_t>(y)]; });
      // the attended tokens: outliers (exact), selected (rebuilt key), local + generated (exact)
      std::vector<std::pair<std::vector<double>, std::vector<double>>> kv;  // (key, value)
      auto exact_token = [&](int64_t t) {
        std::vector<double> kk(static_cast<size_t>(hd)), vv(static_cast<size_t>(hd));
        for (int64_t e = 0; e < hd; ++e) {
          kk[static_cast<size_t>(e)] = t < S ? d.k[static_cast<size_t>((t * H + h) * hd + e)] : d.dk[static_cast<size_t>(((t - S) * H + h) * hd + e)];
          vv[static_cast<size_t>(e)] = t < S ? d.v[static_cast<size_t>((t * H + h) * hd + e)] : d.dv[static_cast<size_t>(((t - S) * H + h) * hd + e)];
        }
        kv.push_back({kk, vv});
      };
      for (int64_t ch : outl)
        for (int64_t i = 0; i < c; ++i) exact_token(ch * c + i);
      for (int64_t j = 0; j < k_sel; ++j)
        for (int64_t i = 0; i < c; ++i) {
          const int64_t t = order[static_cast<size_t>(j)] * c + i;
          std::vector<double> pre(static_cast<size_t>(hd), 0.0), kk(static_cast<size_t>(hd)), vv(static_cast<size_t>(hd));
          for (int64_t e = 0; e < hd; ++e) {
            for (int64_t x = 0; x < r; ++x) pre[static_cast<size_t>(e)] += u[static_cast<size_t>(t * m + x)] * sig[static_cast<size_t>(x)] * vt[static_cast<size_t>(x * kv_dim + h * hd + e)];
            vv[static_cast<size_t>(e)] = d.v[static_cast<size_t>((t * H + h) * hd + e)];
          }
          rope_ref(pre.data(), kk.data(), hd, t, inv);
          kv.push_back({kk, vv});
        }
      for (int64_t t = chunked; t < n; ++t) exact_token(t);
      for (int64_t qh = h * group; qh < (h + 1) * group; ++qh) {
        std::vector<double> w;
        double mx = -1e300, den = 0;
        for (auto& [kk, vv] : kv) {
          double dot = 0;
          for (int64_t e = 0; e < hd; ++e) dot += double(d.dq[static_cast<size_t>((s * d.n_q + qh) * hd + e)]) * kk[static_cast<size_t>(e)];
          w.push_back(dot / std::sqrt(double(hd)));
          mx = std::max(mx, w.back());
        }
        for (auto& x : w) den += (x = std::exp(x - mx));
        for (int64_t e = 0; e < hd; ++e) {
          double acc = 0;
          for (size_t j = 0; j < kv.size(); ++j) acc += w[j] / den * kv[j].second[static_cast<size_t>(e)];
          out[static_cast<size_t>((s * d.n_q + qh) * hd + e)] = static_cast<float>(acc);
        }
      }
    }
  }
  return out;
}

TEST(ShadowKvCache, DecodeMatchesTheStraightforwardReference) {
  struct Case { int64_t n_q, H, hd, S, rank, budget, outliers, local; };
  // GQA 1:1 and 8:1, S mod c != 0, many chunks, low rank, few and many outliers.
  for (Case c : {Case{2, 2, 16, 203, 6, 48, 3, 2}, Case{8, 1, 32, 165, 10, 32, -1, 4}, Case{16, 2, 16, 300, 32, 64, 5, 1}}) {
    SCOPED_TRACE(::testing::Message() << "n_q " << c.n_q << " n_kv " << c.H << " S " << c.S << " rank " << c.rank);
    const Data d = make_data(c.n_q, c.H, c.hd, c.S, 6, 300 + static_cast<uint64_t>(c.S));
    const ShadowParams p{.sparse_budget = c.budget, .rank = c.rank, .chunk_size = 8, .outlier_chunks = c.outliers, .local_chunks = c.local};
    ShadowKvCache cache = make_shadow(d, p);
    const auto got = run(cache, d);
    const auto lay = cache.layout(7);
    EXPECT_FALSE(lay.exact);
    EXPECT_EQ(lay.top_k, c.budget / 8);
    const auto want = reference_shadowkv(d, p);
    EXPECT_TENSOR_NEAR(TensorView(const_cast<float*>(got.data()), DType::kF32, {static_cast<int64_t>(got.size())}),
                       TensorView(const_cast<float*>(want.data()), DType::kF32, {static_cast<int64_t>(want.size())}), 1e-5, 1e-4);
    EXPECT_TRUE(cache.notice().empty());
  }
}

TEST(ShadowKvCache, FullRankAndEveryChunkAttendedIsExactAttention) {
  for (auto [n_q, H] : {std::pair<int64_t, int64_t>{4, 4}, {8, 1}}) {
    const int64_t hd = 16, S = 117;  // c = 8, L = 2: local 16 + 5, 12 chunks, 3 outliers, 9 selected
    const Data d = make_data(n_q, H, hd, S, 5, 400 + static_cast<uint64_t>(n_q));
    const ShadowParams p{.sparse_budget = 9 * 8, .rank = H * hd, .chunk_size = 8, .outlier_chunks = 3, .local_chunks = 2};
    ShadowKvCache shadow = make_shadow(d, p);
    shadow.enable_report(true);
    FullKvCache full(1, H, hd);
    const auto got = run(shadow, d), want = run(full, d);
    EXPECT_FALSE(shadow.layout(7).exact);
    EXPECT_EQ(shadow.layout(7).n_chunks, 12);
    // f32 rebuild of a full-rank factorization: relative error ~1e-6 observed.
    EXPECT_TRUE(testing::tensors_near(got.data(), want.data(), got.size(), 1e-5, 1e-5));
    const LayerReport r = shadow.report()[0];
    EXPECT_EQ(r.steps, 5);
    EXPECT_NEAR(r.mean_attended_mass(), 1.0, 1e-9);
    EXPECT_NEAR(r.mean_best_mass(), 1.0, 1e-9);
    EXPECT_LT(r.mean_output_error(), 1e-5);
    EXPECT_EQ(r.hit_rate(), 1.0);  // every non-outlier chunk is selected at every step
    EXPECT_NEAR(r.mean_chunk_oracle_mass(), 1.0, 1e-9);
    EXPECT_EQ(r.top_key_queries, 5 * n_q);
    EXPECT_EQ(r.top_key_hit_rate(), 1.0);
  }
}

// The report tells a landmark that picks the wrong chunk from a budget too small: one sharp key in chunk 2 holds
// most of the exact weight, but the mean of chunk 5's eight moderately aligned keys scores higher, so the one
// chunk of budget goes to chunk 5. The perfect chunk selector would have taken chunk 2.
TEST(ShadowKvCache, ReportSeparatesWrongSelectionFromSmallBudget) {
  Data d = wrong_selection_data(1);  // c = 8, L = 1: chunks 0-7 (64 tokens) + 8 local tokens
  std::fill(d.dk.begin(), d.dk.end(), 0.0f);
  const ShadowParams p{.sparse_budget = 8, .rank = 4, .chunk_size = 8, .outlier_chunks = 0, .local_chunks = 1};
  ShadowKvCache shadow = make_shadow(d, p);
  shadow.enable_report(true);
  (void)run(shadow, d);
  const LayerReport r = shadow.report()[0];
  ASSERT_EQ(r.steps, 1);
  // exact logits (scale 1/4): the sharp key 7.5, chunk 5's keys 2.5 each, the other 64 keys (55 chunked, 8 local, the
  // decode token's) 0
  const double z = std::exp(7.5) + 8 * std::exp(2.5) + 64.0;
  const double always = 9.0 / z;  // the 8 local tokens and the decode token
  EXPECT_NEAR(r.mean_attended_mass(), always + 8 * std::exp(2.5) / z, 1e-6);       // chunk 5 selected
  EXPECT_NEAR(r.mean_chunk_oracle_mass(), always + (std::exp(7.5) + 7.0) / z, 1e-6);  // chunk 2 would be
  EXPECT_NEAR(r.mean_best_mass(), (std::exp(7.5) + 8 * std::exp(2.5) + 8.0) / z, 1e-6);  // 17 keys: the top 9 + 8 zeros
  EXPECT_EQ(r.top_key_hit_rate(), 0.0);

  // The oracle selection (a diagnostic) takes the chunk of highest exact mass: chunk 2, the oracle's mass.
  ShadowParams po = p;
  po.oracle_selection = true;
  ShadowKvCache oracle = make_shadow(d, po);  // no enable_report: the oracle keeps the exact keys and measures
  (void)run(oracle, d);
  const LayerReport ro = oracle.report()[0];
  ASSERT_EQ(ro.steps, 1);
  EXPECT_NEAR(ro.mean_attended_mass(), ro.mean_chunk_oracle_mass(), 1e-9);
  EXPECT_EQ(ro.top_key_hit_rate(), 1.0);
}

TEST(ShadowKvCache, BudgetCoveringTheChunkedPromptFallsBackToExactAttention) {
  // S = 29, c = 8, L = 2: local 16 + 5, one chunk of 8 tokens; a budget of 8 covers it.
  const Data d = make_data(4, 2, 16, 29, 4, 500);
  const ShadowParams p{.sparse_budget = 8, .rank = 4, .chunk_size = 8, .outlier_chunks = 0, .local_chunks = 2};
  ShadowKvCache shadow = make_shadow(d, p);
  FullKvCache full(1, 2, 16);
  const auto got = run(shadow, d), want = run(full, d);
  EXPECT_TRUE(shadow.layout(7).exact);
  EXPECT_EQ(shadow.layout(7).n_chunks, 1);
  EXPECT_EQ(shadow.notice(),
            "shadowkv: the sparse budget (8 tokens) covers the whole chunked prompt (8 of 29 tokens); using exact "
            "attention over every token");
  EXPECT_TRUE(testing::tensors_near(got.data(), want.data(), got.size(), 1e-6, 1e-5));
  // A prompt shorter than the local window is all local.
  const auto lay = ShadowKvCache::plan(ShadowParams{}, 64, 20);
  EXPECT_EQ(lay.chunked_tokens, 0);
  EXPECT_TRUE(lay.exact);
}

// Dense layers (an extension for layers too diffuse for the budget): the listed layers attend exactly over every
// token, the others stay sparse, exactly as without the option.
TEST(ShadowKvCache, DenseLayersAttendExactlyOthersStaySparse) {
  const Data d = make_data(8, 2, 16, 203, 5, 800);
  ShadowParams p{.sparse_budget = 48, .rank = 6, .chunk_size = 8, .outlier_chunks = 2, .local_chunks = 2};
  p.dense_layers = {1};
  ShadowKvCache dense_last = make_shadow(d, p, 2);
  FullKvCache full(1, 2, 16);
  const auto got = run(dense_last, d, 2), want = run(full, d);  // run() returns the last layer's outputs
  EXPECT_FALSE(dense_last.layout(7).exact);
  EXPECT_TRUE(testing::tensors_near(got.data(), want.data(), got.size(), 1e-6, 1e-5));
  p.dense_layers = {0};
  ShadowKvCache dense_first = make_shadow(d, p, 2);
  const auto sparse = run(dense_first, d, 2);
  const auto ref = reference_shadowkv(d, p);
  EXPECT_TENSOR_NEAR(TensorView(const_cast<float*>(sparse.data()), DType::kF32, {static_cast<int64_t>(sparse.size())}),
                     TensorView(const_cast<float*>(ref.data()), DType::kF32, {static_cast<int64_t>(ref.size())}), 1e-5,
                     1e-4);
  // The estimator counts the dense layer's K and V of every token instead of its shadow.
  const MemoryUse both_sparse = ShadowKvCache::estimate_bytes({2, 2, 16}, ShadowParams{.sparse_budget = 48, .rank = 6,
                                                              .chunk_size = 8, .outlier_chunks = 2, .local_chunks = 2}, 203, 4);
  const MemoryUse one_dense = ShadowKvCache::estimate_bytes({2, 2, 16}, p, 203, 4);
  EXPECT_EQ(one_dense.offloaded_bytes, both_sparse.offloaded_bytes / 2);
  EXPECT_EQ(one_dense.device_bytes, both_sparse.device_bytes / 2 + 2 * 203 * 32 * 4);
  p.dense_layers = {0, 0};  // listed twice, still one layer
  EXPECT_EQ(ShadowKvCache::estimate_bytes({2, 2, 16}, p, 203, 4).device_bytes, one_dense.device_bytes);
  p.dense_layers = {2};
  EXPECT_THROW(make_shadow(d, p, 2), Error);
}

// dense_capture (an extension): at one of its first decode steps a layer whose landmarks capture less than the given
// share of what the best chunks would turns exact for the rest of the sequence (that step's output included); a
// layer above it stays sparse, bit for bit as without the option, and drops the exact copies it kept for the check.
TEST(ShadowKvCache, DenseCaptureTurnsExactTheLayersWhoseLandmarksMiss) {
  const int64_t hd = 16;
  Data d = wrong_selection_data(3);
  ShadowParams p{.sparse_budget = 8, .rank = 4, .chunk_size = 8, .outlier_chunks = 0, .local_chunks = 1};
  // Landmarks capture ~0.09 of the weight where chunk 2 holds ~0.95: any share above 0.1 switches.
  p.dense_capture = 0.5;
  ShadowKvCache calibrated = make_shadow(d, p);
  FullKvCache full(1, 1, hd);
  const auto got = run(calibrated, d), want = run(full, d);
  EXPECT_TRUE(testing::tensors_near(got.data(), want.data(), got.size(), 1e-6, 1e-5));
  EXPECT_EQ(calibrated.report()[0].calibrated_sequences, 1);
  EXPECT_EQ(calibrated.report()[0].exact_sequences, 1);
  EXPECT_EQ(calibrated.report()[0].steps, 0);  // counted without report mode, nothing else measured

  // A share the landmarks reach: the layer stays sparse, identical to the paper's policy, and frees its copies.
  const Data r = make_data(8, 2, 16, 203, 5, 810);
  ShadowParams q{.sparse_budget = 48, .rank = 6, .chunk_size = 8, .outlier_chunks = 2, .local_chunks = 2};
  ShadowKvCache plain = make_shadow(r, q, 2);
  const auto sparse = run(plain, r, 2);
  q.dense_capture = 1e-6;
  ShadowKvCache kept = make_shadow(r, q, 2);
  const auto same = run(kept, r, 2);
  EXPECT_EQ(std::memcmp(sparse.data(), same.data(), sparse.size() * sizeof(float)), 0);
  EXPECT_EQ(kept.report()[0].calibrated_sequences, 1);
  EXPECT_EQ(kept.report()[1].calibrated_sequences, 1);
  EXPECT_EQ(kept.report()[0].exact_sequences + kept.report()[1].exact_sequences, 0);
  EXPECT_EQ(kept.memory_use().device_bytes, plain.memory_use().device_bytes);
  // A dense layer is not measured (it is exact already); the threshold is a share.
  q.dense_layers = {0};
  ShadowKvCache one_dense = make_shadow(r, q, 2);
  (void)run(one_dense, r, 2);
  EXPECT_EQ(one_dense.report()[0].calibrated_sequences, 0);
  EXPECT_EQ(one_dense.report()[1].calibrated_sequences, 1);
  q.dense_capture = 1.5;
  EXPECT_THROW(make_shadow(r, q, 2), Error);
  q.dense_capture = 0.5;
  q.dense_capture_steps = 0;
  EXPECT_THROW(make_shadow(r, q, 2), Error);

  // dense_capture_steps: a miss at the second step still switches when two steps are measured. The first query
  // is zero (uniform weights: every chunk as good as another, nothing missed), the second sharp.
  d.dq[0] = 0.0f;
  for (int64_t steps : {1, 2}) {
    p.dense_capture_steps = steps;
    ShadowKvCache late = make_shadow(d, p);
    FullKvCache exact(1, 1, hd);
    const auto got2 = run(late, d), want2 = run(exact, d);
    EXPECT_EQ(late.report()[0].calibrated_sequences, 1);
    EXPECT_EQ(late.report()[0].exact_sequences, steps == 2 ? 1 : 0) << steps << " steps measured";
    // steps 1 and 2 (outputs hd..3hd): exact with two steps measured, the landmarks' chunk 5 with one
    const bool same = testing::tensors_near(got2.data() + hd, want2.data() + hd, 2 * hd, 1e-6, 1e-5);
    EXPECT_EQ(same, steps == 2) << steps << " steps measured";
  }
}

// With the report on, dense_capture's measurement of a step is the report's too (each step measured once): a layer
// that stays sparse reports exactly what the report alone does; a layer that turns exact reports exact attention
// (every key attended, no output error) from its switching step on.
TEST(ShadowKvCache, DenseCaptureWithReportMeasuresEachStepOnce) {
  const Data r = make_data(8, 2, 16, 203, 5, 810);
  ShadowParams q{.sparse_budget = 48, .rank = 6, .chunk_size = 8, .outlier_chunks = 2, .local_chunks = 2};
  ShadowKvCache plain = make_shadow(r, q, 2);
  plain.enable_report(true);
  const auto want = run(plain, r, 2);
  q.dense_capture = 1e-6;
  q.dense_capture_steps = 3;
  ShadowKvCache kept = make_shadow(r, q, 2);
  kept.enable_report(true);
  const auto got = run(kept, r, 2);
  EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0);
  for (int layer : {0, 1}) {
    const LayerReport a = plain.report()[layer], b = kept.report()[layer];  // report() returns a copy
    EXPECT_EQ(b.steps, 5);
    EXPECT_EQ(b.steps, a.steps);
    EXPECT_EQ(b.attended_mass, a.attended_mass);
    EXPECT_EQ(b.chunk_oracle_mass, a.chunk_oracle_mass);
    EXPECT_EQ(b.output_error, a.output_error);
    EXPECT_EQ(b.top_key_hits, a.top_key_hits);
    EXPECT_EQ(b.calibrated_sequences, 1);
    EXPECT_EQ(b.exact_sequences, 0);
  }

  const Data d = wrong_selection_data(3);  // the layer turns exact at its first step
  ShadowParams p{.sparse_budget = 8, .rank = 4, .chunk_size = 8, .outlier_chunks = 0, .local_chunks = 1};
  p.dense_capture = 0.5;
  p.dense_capture_steps = 2;
  ShadowKvCache calibrated = make_shadow(d, p);
  calibrated.enable_report(true);
  (void)run(calibrated, d);
  const LayerReport c = calibrated.report()[0];
  EXPECT_EQ(c.steps, 3);
  EXPECT_EQ(c.exact_sequences, 1);
  EXPECT_NEAR(c.attended_mass, 3.0, 1e-9);
  EXPECT_NEAR(c.output_error, 0.0, 1e-5);
  EXPECT_EQ(c.top_key_hits, c.top_key_queries);
}

TEST(ShadowKvCache, LayoutOfThePrompt) {
  const ShadowParams p{.sparse_budget = 64, .rank = 500, .chunk_size = 8, .outlier_chunks = -1, .local_chunks = 4};
  const auto lay = ShadowKvCache::plan(p, 256, 1003);  // 1003 = 121 * 8 + 32 + 3
  EXPECT_EQ(lay.chunked_tokens, 968);
  EXPECT_EQ(lay.n_chunks, 121);
  EXPECT_EQ(lay.n_outliers, 1);  // 24 * 64 / 1024
  EXPECT_EQ(lay.top_k, 8);
  EXPECT_EQ(lay.rank, 256);  // clipped to kv_dim
  EXPECT_FALSE(lay.exact);
  EXPECT_EQ(ShadowParams{}.resolved_outlier_chunks(), 48);
  EXPECT_EQ(ShadowKvCache::plan(ShadowParams{}, 1024, 10000).rank, 160);
}

TEST(ShadowKvCache, MemoryUseAndTheEstimator) {
  const int64_t n_layers = 2;
  const Data d = make_data(4, 2, 16, 203, 0, 600);
  const ShadowParams p{.sparse_budget = 48, .rank = 8, .chunk_size = 8, .outlier_chunks = 2, .local_chunks = 2};
  ShadowKvCache cache = make_shadow(d, p, n_layers);
  run(cache, d, n_layers);
  const MemoryUse got = cache.memory_use();
  const MemoryUse est = ShadowKvCache::estimate_bytes({n_layers, 2, 16}, p, 203, 4);
  const int64_t chunked = 203 - 16 - 3;
  EXPECT_EQ(got.offloaded_bytes, n_layers * chunked * 32 * 4);
  EXPECT_EQ(est.offloaded_bytes, got.offloaded_bytes);
  // The estimator leaves out the index arrays (slots, outlier ids and flags) and the CPU's RoPE table.
  const int64_t index_bytes = n_layers * (2 * 6 * 8 + 2 * 2 * 8 + 2 * (chunked / 8));
  const int64_t rope_table_bytes = chunked * 16 * 4;
  EXPECT_EQ(got.device_bytes, est.device_bytes + index_bytes + rope_table_bytes);
  // Llama-3.1-8B at 128K in bf16: about 2.6 GiB resident, 8 GiB offloaded.
  const MemoryUse llama = ShadowKvCache::estimate_bytes({32, 8, 128}, ShadowParams{}, 131072, 2);
  EXPECT_NEAR(static_cast<double>(llama.device_bytes) / (1 << 30), 2.56, 0.01);
  EXPECT_NEAR(static_cast<double>(llama.offloaded_bytes) / (1 << 30), 8.0, 0.01);
  cache.release(7);
  EXPECT_EQ(cache.memory_use().device_bytes, 0);
}

TEST(ShadowKvCache, DecodeIsDeterministic) {
  const Data d = make_data(8, 2, 16, 250, 8, 700);
  const ShadowParams p{.sparse_budget = 40, .rank = 12, .chunk_size = 8, .outlier_chunks = 2, .local_chunks = 4};
  ShadowKvCache a = make_shadow(d, p), b = make_shadow(d, p);
  const auto x = run(a, d), y = run(b, d);
  ASSERT_EQ(x.size(), y.size());
  EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float)));
}

std::string error_of(const ShadowParams& p) {
  try {
    p.validate();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  return "no error";
}

TEST(ShadowKvCache, InvalidParametersAreNamed) {
  EXPECT_EQ(error_of({.sparse_budget = 100}), "shadowkv: sparse_budget (100) must be a multiple of chunk_size (8)");
  EXPECT_EQ(error_of({.rank = 0}), "shadowkv: rank must be at least 1, got 0");
  EXPECT_EQ(error_of({.chunk_size = 0}), "shadowkv: chunk_size must be at least 1, got 0");
  EXPECT_EQ(error_of({.sparse_budget = 4}), "shadowkv: sparse_budget must be at least chunk_size (8), got 4");
  EXPECT_EQ(error_of({.outlier_chunks = -2}),
            "shadowkv: outlier_chunks must be -1 (24 per 1024 tokens of budget) or at least 0, got -2");
  EXPECT_EQ(error_of({.local_chunks = -1}), "shadowkv: local_chunks must be at least 0, got -1");
  // Absurd values would overflow the layout's products (local_chunks * chunk_size, 24 * sparse_budget).
  EXPECT_EQ(error_of({.local_chunks = int64_t{1} << 61}),
            "shadowkv: local_chunks must be at most 16777216, got 2305843009213693952");
  EXPECT_EQ(error_of({.sparse_budget = int64_t{1} << 60}),
            "shadowkv: sparse_budget must be at most 16777216, got 1152921504606846976");
  EXPECT_EQ(error_of({.chunk_size = 8192}), "shadowkv: chunk_size must be at most 4096, got 8192");
  EXPECT_EQ(error_of({}), "no error");
  try {
    ShadowKvCache(2, 4, 2, 16, ShadowParams{}, std::vector<float>(7), 1.0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "shadowkv: rope_inv_freq must hold head_dim / 2 = 8 values, got 7");
  }
  try {
    ShadowKvCache(2, 6, 4, 16, ShadowParams{}, std::vector<float>(8), 1.0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "shadowkv: n_q_heads (6) must be a positive multiple of n_kv_heads (4)");
  }
  try {
    parse_attention_kind("sparse");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "unknown attention policy 'sparse' (expected 'full' or 'shadowkv')");
  }
  EXPECT_THROW(make_kv_cache({2, 4, 2, 16, std::vector<float>(8), 1.0},
                             {.kind = AttentionKind::kShadowKv, .shadow = {.sparse_budget = 12}}),
               Error);
}

TEST(ShadowKvCache, PromptAfterDecodeIsRefused) {
  const Data d = make_data(4, 2, 16, 100, 1, 800);
  ShadowKvCache cache = make_shadow(d, {.sparse_budget = 16, .rank = 4});
  run(cache, d);
  try {
    cache.append_prefill(7, 0, TensorView(const_cast<float*>(d.k.data()), DType::kF32, {1, 2, 16}),
                         TensorView(const_cast<float*>(d.k.data()), DType::kF32, {1, 2, 16}),
                         TensorView(const_cast<float*>(d.v.data()), DType::kF32, {1, 2, 16}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  }
  auto made = make_kv_cache({1, 4, 2, 16, inv_freq_for(16), 1.0}, {.kind = AttentionKind::kShadowKv});
  EXPECT_NE(dynamic_cast<ShadowKvCache*>(made.get()), nullptr);
  EXPECT_NE(dynamic_cast<FullKvCache*>(make_kv_cache({1, 4, 2, 16, {}, 1.0}, {}).get()), nullptr);
}

}  // namespace
}  // namespace skv
