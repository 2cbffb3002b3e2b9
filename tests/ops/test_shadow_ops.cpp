// The ShadowKV ops (ops/shadow_ops.h) against straightforward float64 references written here, on random
// inputs: S mod c != 0, one chunk, many chunks, GQA 1:1 and 8:1, ties.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include <gtest/gtest.h>
#include <lapacke.h>

#include "core/buffer.h"
#include "ops/ops.h"
#include "ops/shadow_ops.h"
#include "testing/tensor_testing.h"

namespace skv {
namespace {

using testing::random_floats;
using testing::random_tensor;

// A matrix [n, d] with a decaying spectrum (a low-rank-ish signal plus noise), like real pre-RoPE keys.
std::vector<float> decaying_matrix(int64_t n, int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  const int64_t m = std::min(n, d);
  std::vector<double> a(static_cast<size_t>(n * m)), b(static_cast<size_t>(m * d));
  for (auto& x : a) x = normal(rng);
  for (auto& x : b) x = normal(rng);
  std::vector<float> k(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      double s = 0;
      for (int64_t t = 0; t < m; ++t) s += a[static_cast<size_t>(i * m + t)] * std::pow(0.8, static_cast<double>(t)) * b[static_cast<size_t>(t * d + j)];
      k[static_cast<size_t>(i * d + j)] = static_cast<float>(s);
    }
  return k;
}

// Singular values of k [n, d] by LAPACK's divide-and-conquer SVD, descending.
std::vector<double> reference_singular_values(const std::vector<float>& k, int64_t n, int64_t d) {
  std::vector<double> a(k.begin(), k.end()), s(static_cast<size_t>(std::min(n, d)));
  const int64_t m = std::min(n, d);
  std::vector<double> u(static_cast<size_t>(n * m)), vt(static_cast<size_t>(m * d));
  EXPECT_EQ(LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', static_cast<lapack_int>(n), static_cast<lapack_int>(d), a.data(),
                           static_cast<lapack_int>(d), s.data(), u.data(), static_cast<lapack_int>(m), vt.data(),
                           static_cast<lapack_int>(d)),
            0);
  return s;
}

TEST(ShadowOps, LowrankFactorizeMeetsTheEckartYoungBound) {
  struct Case { int64_t n, d, r; };
  // n < d (r clipped to n), n mod 8 != 0, full rank, rank 1, a tall matrix.
  for (Case c : {Case{37, 16, 5}, Case{300, 64, 20}, Case{10, 32, 10}, Case{50, 16, 16}, Case{29, 24, 1},
                 Case{2500, 96, 40}}) {
    SCOPED_TRACE(::testing::Message() << "n " << c.n << " d " << c.d << " r " << c.r);
    const auto k = decaying_matrix(c.n, c.d, 7 + static_cast<uint64_t>(c.n));
    HostBuffer u(DType::kF32, {c.n, c.r}), sv(DType::kF32, {c.r, c.d}), sigma(DType::kF32, {c.r});
    lowrank_factorize({.k = TensorView(const_cast<float*>(k.data()), DType::kF32, {c.n, c.d}),
                       .u = u.view(), .sv = sv.view(), .singular_values = sigma.view()});
    const auto s = reference_singular_values(k, c.n, c.d);
    double optimal2 = 0, norm2 = 0, err2 = 0;
    for (size_t i = static_cast<size_t>(c.r); i < s.size(); ++i) optimal2 += s[i] * s[i];
    for (int64_t i = 0; i < c.n; ++i)
      for (int64_t j = 0; j < c.d; ++j) {
        double rec = 0;
        for (int64_t t = 0; t < c.r; ++t) rec += static_cast<double>(u.ptr<float>()[i * c.r + t]) * sv.ptr<float>()[t * c.d + j];
        const double want = k[static_cast<size_t>(i * c.d + j)];
        err2 += (rec - want) * (rec - want);
        norm2 += want * want;
      }
    // Within 1e-3 relative of the optimal rank-r error; the absolute slack covers the f32 storage of U and SV
    // (when the optimal error is ~0, at full rank).
    EXPECT_LE(std::sqrt(err2), std::sqrt(optimal2) * (1 + 1e-3) + 1e-6 * std::sqrt(norm2))
        << "error " << std::sqrt(err2) << " optimal " << std::sqrt(optimal2);
    for (int64_t t = 0; t < c.r; ++t) {
      EXPECT_NEAR(sigma.ptr<float>()[t], s[static_cast<size_t>(t)], 1e-4 * s[0]) << "sigma " << t;
      // SV's rows are orthonormal, and canonical: the largest-magnitude component is positive.
      for (int64_t t2 = 0; t2 <= t; ++t2) {
        double dot = 0;
        for (int64_t j = 0; j < c.d; ++j) dot += static_cast<double>(sv.ptr<float>()[t * c.d + j]) * sv.ptr<float>()[t2 * c.d + j];
        EXPECT_NEAR(dot, t == t2 ? 1.0 : 0.0, 1e-5);
      }
      const float* row = sv.ptr<float>() + t * c.d;
      EXPECT_GT(*std::max_element(row, row + c.d, [](float a, float b) { return std::fabs(a) < std::fabs(b); }), 0.0f);
    }
  }
}

TEST(ShadowOps, LowrankFactorizeRejectsARankAboveTheMatrix) {
  HostBuffer k(DType::kF32, {4, 8}), u(DType::kF32, {4, 5}), sv(DType::kF32, {5, 8});
  try {
    lowrank_factorize({.k = k.view(), .u = u.view(), .sv = sv.view()});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "lowrank_factorize: rank (u's second dimension) must be in [1, min(n_tokens, kv_dim)] = [1, 4], got 5");
  }
}

TEST(ShadowOps, LandmarksAreChunkMeans) {
  struct Case { int64_t n_chunks, cs, heads, hd; };
  for (Case c : {Case{1, 8, 1, 16}, Case{13, 8, 3, 8}, Case{5, 3, 2, 32}, Case{4, 1, 1, 4}}) {
    auto k = random_tensor({c.n_chunks * c.cs, c.heads, c.hd}, 80 + static_cast<uint64_t>(c.n_chunks));
    HostBuffer lm(DType::kF32, {c.heads, c.n_chunks, c.hd}), want(DType::kF32, {c.heads, c.n_chunks, c.hd});
    landmark_means({.k = k.view(), .landmarks = lm.view(), .chunk_size = c.cs});
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t ch = 0; ch < c.n_chunks; ++ch)
        for (int64_t d = 0; d < c.hd; ++d) {
          double s = 0;
          for (int64_t i = 0; i < c.cs; ++i) s += k.ptr<float>()[((ch * c.cs + i) * c.heads + h) * c.hd + d];
          want.ptr<float>()[(h * c.n_chunks + ch) * c.hd + d] = static_cast<float>(s / static_cast<double>(c.cs));
        }
    EXPECT_TENSOR_NEAR(lm.view(), want.view(), 1e-7, 1e-6);
  }
}

TEST(ShadowOps, OutliersAreTheChunksLeastLikeTheirLandmark) {
  struct Case { int64_t n_chunks, cs, heads, hd, n_out; };
  for (Case c : {Case{1, 8, 1, 16, 1}, Case{20, 8, 2, 8, 4}, Case{9, 3, 3, 16, 0}, Case{6, 8, 1, 8, 6}}) {
    SCOPED_TRACE(::testing::Message() << "n_chunks " << c.n_chunks << " n_out " << c.n_out);
    auto k = random_tensor({c.n_chunks * c.cs, c.heads, c.hd}, 90 + static_cast<uint64_t>(c.n_chunks));
    // Make chunks 2 and 5 exact copies (a tie on min_cos): the lower index must win.
    if (c.n_chunks > 5)
      std::copy_n(k.ptr<float>() + 2 * c.cs * c.heads * c.hd, c.cs * c.heads * c.hd, k.ptr<float>() + 5 * c.cs * c.heads * c.hd);
    HostBuffer lm(DType::kF32, {c.heads, c.n_chunks, c.hd});
    landmark_means({.k = k.view(), .landmarks = lm.view(), .chunk_size = c.cs});
    HostBuffer min_cos(DType::kF32, {c.heads, c.n_chunks}), out(DType::kI64, {c.heads, std::max<int64_t>(c.n_out, 1)});
    const TensorView outliers = out.view(DType::kI64, {c.heads, c.n_out});
    outlier_chunks({.k = k.view(), .landmarks = lm.view(), .min_cos = min_cos.view(), .outliers = outliers, .chunk_size = c.cs});
    for (int64_t h = 0; h < c.heads; ++h) {
      std::vector<std::pair<double, int64_t>> ref;
      for (int64_t ch = 0; ch < c.n_chunks; ++ch) {
        const float* l = lm.ptr<float>() + (h * c.n_chunks + ch) * c.hd;
        double lowest = 2;
        for (int64_t i = 0; i < c.cs; ++i) {
          const float* x = k.ptr<float>() + ((ch * c.cs + i) * c.heads + h) * c.hd;
          double dot = 0, xx = 0, ll = 0;
          for (int64_t d = 0; d < c.hd; ++d) dot += double(x[d]) * l[d], xx += double(x[d]) * x[d], ll += double(l[d]) * l[d];
          lowest = std::min(lowest, dot / std::sqrt(xx * ll));
        }
        EXPECT_NEAR(min_cos.ptr<float>()[h * c.n_chunks + ch], lowest, 1e-6);
        ref.push_back({lowest, ch});
      }
      std::sort(ref.begin(), ref.end());  // by min_cos, then by the lower chunk index
      std::vector<int64_t> want;
      for (int64_t i = 0; i < c.n_out; ++i) want.push_back(ref[static_cast<size_t>(i)].second);
      std::sort(want.begin(), want.end());
      std::vector<int64_t> got(outliers.ptr<int64_t>() + h * c.n_out, outliers.ptr<int64_t>() + (h + 1) * c.n_out);
      EXPECT_EQ(got, want) << "head " << h;
    }
  }
}

TEST(ShadowOps, LandmarkScoresSoftmaxPerQueryHeadMaxOverTheGroup) {
  struct Case { int64_t n_q, n_kv, n_chunks, hd; };
  for (Case c : {Case{4, 4, 7, 16}, Case{8, 1, 30, 32}, Case{16, 2, 1, 8}}) {
    SCOPED_TRACE(::testing::Message() << "n_q " << c.n_q << " n_kv " << c.n_kv << " n_chunks " << c.n_chunks);
    auto q = random_tensor({c.n_q, c.hd}, 100, -3, 3);
    auto lm = random_tensor({c.n_kv, c.n_chunks, c.hd}, 101);
    HostBuffer excluded(DType::kU8, {c.n_kv, c.n_chunks}), scores(DType::kF32, {c.n_kv, c.n_chunks});
    for (int64_t i = 0; i < c.n_kv * c.n_chunks; ++i) excluded.ptr<uint8_t>()[i] = (c.n_chunks > 1 && i % 3 == 1) ? 1 : 0;
    landmark_scores({.q = q.view(), .landmarks = lm.view(), .excluded = excluded.view(), .scores = scores.view()});
    const int64_t group = c.n_q / c.n_kv;
    for (int64_t g = 0; g < c.n_kv; ++g) {
      std::vector<double> want(static_cast<size_t>(c.n_chunks), -1.0);
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        std::vector<double> logit(static_cast<size_t>(c.n_chunks));
        double den = 0;
        for (int64_t ch = 0; ch < c.n_chunks; ++ch) {
          double dot = 0;
          for (int64_t d = 0; d < c.hd; ++d) dot += double(q.ptr<float>()[h * c.hd + d]) * lm.ptr<float>()[(g * c.n_chunks + ch) * c.hd + d];
          logit[static_cast<size_t>(ch)] = std::exp(dot / std::sqrt(double(c.hd)));
          if (!excluded.ptr<uint8_t>()[g * c.n_chunks + ch]) den += logit[static_cast<size_t>(ch)];
        }
        for (int64_t ch = 0; ch < c.n_chunks; ++ch)
          want[static_cast<size_t>(ch)] = std::max(want[static_cast<size_t>(ch)], logit[static_cast<size_t>(ch)] / den);
      }
      for (int64_t ch = 0; ch < c.n_chunks; ++ch) {
        const float got = scores.ptr<float>()[g * c.n_chunks + ch];
        if (excluded.ptr<uint8_t>()[g * c.n_chunks + ch]) EXPECT_EQ(got, -std::numeric_limits<float>::infinity());
        else EXPECT_NEAR(got, want[static_cast<size_t>(ch)], 1e-6 * want[static_cast<size_t>(ch)] + 1e-9);
      }
    }
  }
}

TEST(ShadowOps, TopkChunksBreaksTiesByTheLowerIndex) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> s{0.5f, 0.2f, 0.5f, -inf, 0.9f, 0.2f, 0.2f, 0.5f,   // head 0
                       0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f};  // head 1: all tied
  std::vector<int64_t> sel(2 * 4);
  topk_chunks({.scores = TensorView(s.data(), DType::kF32, {2, 8}), .selected = TensorView(sel.data(), DType::kI64, {2, 4})});
  EXPECT_EQ(sel, (std::vector<int64_t>{0, 2, 4, 7, 0, 1, 2, 3}));
  // Random scores against a reference stable sort.
  for (int64_t n_chunks : {1, 9, 300}) {
    const int64_t k = std::max<int64_t>(1, n_chunks / 3);
    auto r = random_floats(static_cast<size_t>(3 * n_chunks), 110);
    for (auto& x : r) x = std::round(x * 8) / 8;  // many ties
    std::vector<int64_t> got(static_cast<size_t>(3 * k));
    topk_chunks({.scores = TensorView(r.data(), DType::kF32, {3, n_chunks}), .selected = TensorView(got.data(), DType::kI64, {3, k})});
    for (int64_t h = 0; h < 3; ++h) {
      std::vector<int64_t> idx(static_cast<size_t>(n_chunks));
      std::iota(idx.begin(), idx.end(), 0);
      std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return r[static_cast<size_t>(h * n_chunks + a)] > r[static_cast<size_t>(h * n_chunks + b)]; });
      idx.resize(static_cast<size_t>(k));
      std::sort(idx.begin(), idx.end());
      EXPECT_EQ(std::vector<int64_t>(got.begin() + h * k, got.begin() + (h + 1) * k), idx);
    }
  }
  std::vector<float> few{0.5f, -inf};
  int64_t out[2];
  try {
    topk_chunks({.scores = TensorView(few.data(), DType::kF32, {1, 2}), .selected = TensorView(out, DType::kI64, {1, 2})});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "topk_chunks: KV head 0 has 1 selectable chunks, k = 2");
  }
}

TEST(ShadowOps, SelectReuseKeepsResidentChunksInPlace) {
  const int64_t k = 4;
  std::vector<int64_t> slots(2 * k, -1), hits(2);
  std::vector<uint8_t> fetch(2 * k);
  auto step = [&](std::vector<int64_t> selected) {
    select_reuse({.selected = TensorView(selected.data(), DType::kI64, {2, k}),
                  .slots = TensorView(slots.data(), DType::kI64, {2, k}),
                  .fetch = TensorView(fetch.data(), DType::kU8, {2, k}),
                  .hits = TensorView(hits.data(), DType::kI64, {2})});
  };
  step({1, 3, 5, 7, 0, 1, 2, 3});  // first step: everything fetched, in order
  EXPECT_EQ(slots, (std::vector<int64_t>{1, 3, 5, 7, 0, 1, 2, 3}));
  EXPECT_EQ(fetch, (std::vector<uint8_t>{1, 1, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(hits, (std::vector<int64_t>{0, 0}));
  step({2, 3, 7, 9, 0, 1, 2, 3});  // head 0: 3 and 7 stay; 2 and 9 take the slots of 1 and 5
  EXPECT_EQ(slots, (std::vector<int64_t>{2, 3, 9, 7, 0, 1, 2, 3}));
  EXPECT_EQ(fetch, (std::vector<uint8_t>{1, 0, 1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(hits, (std::vector<int64_t>{2, 4}));
  // Random selections: slots always hold the selection, hits = |previous & current|.
  std::mt19937_64 rng(120);
  std::vector<int64_t> prev(slots);
  for (int it = 0; it < 50; ++it) {
    std::vector<int64_t> sel;
    for (int h = 0; h < 2; ++h) {
      std::vector<int64_t> all(12);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      all.resize(k);
      std::sort(all.begin(), all.end());
      sel.insert(sel.end(), all.begin(), all.end());
    }
    step(sel);
    for (int h = 0; h < 2; ++h) {
      std::vector<int64_t> s(slots.begin() + h * k, slots.begin() + (h + 1) * k), p(prev.begin() + h * k, prev.begin() + (h + 1) * k);
      std::vector<int64_t> want(sel.begin() + h * k, sel.begin() + (h + 1) * k);
      int64_t common = 0;
      for (int j = 0; j < k; ++j) {
        common += std::count(want.begin(), want.end(), p[static_cast<size_t>(j)]);
        // a slot keeps its chunk exactly when that chunk is still selected
        EXPECT_EQ(fetch[static_cast<size_t>(h * k + j)] == 0, s[static_cast<size_t>(j)] == p[static_cast<size_t>(j)]);
      }
      EXPECT_EQ(hits[static_cast<size_t>(h)], common);
      std::sort(s.begin(), s.end());
      EXPECT_EQ(s, want);
    }
    prev = slots;
  }
}

TEST(ShadowOps, GatherChunksCopiesOnlyFetchedSlots) {
  const int64_t H = 2, n_chunks = 5, cs = 3, hd = 4, k = 3;
  auto store = random_tensor({H, n_chunks, cs, hd}, 130);
  std::vector<int64_t> slots{4, 0, 2, 1, 1, 3};
  std::vector<uint8_t> fetch{1, 0, 1, 1, 1, 0};
  HostBuffer out(DType::kF32, {H, k, cs, hd});
  gather_chunks({.store = store.view(), .slots = TensorView(slots.data(), DType::kI64, {H, k}),
                 .fetch = TensorView(fetch.data(), DType::kU8, {H, k}), .out = out.view()});
  for (int64_t h = 0; h < H; ++h)
    for (int64_t j = 0; j < k; ++j)
      for (int64_t i = 0; i < cs * hd; ++i) {
        const float got = out.ptr<float>()[(h * k + j) * cs * hd + i];
        const float want = fetch[static_cast<size_t>(h * k + j)]
                               ? store.ptr<float>()[(h * n_chunks + slots[static_cast<size_t>(h * k + j)]) * cs * hd + i]
                               : 0.0f;
        EXPECT_EQ(got, want);
      }
  slots[0] = 5;
  EXPECT_THROW(gather_chunks({.store = store.view(), .slots = TensorView(slots.data(), DType::kI64, {H, k}), .out = out.view()}), Error);
}

TEST(ShadowOps, RebuildKeysIsLowRankProductThenRopeAtOriginalPositions) {
  struct Case { int64_t H, n_chunks, cs, hd, r, k, first; double pscale; };
  for (Case c : {Case{1, 1, 8, 16, 4, 1, 0, 1.0}, Case{2, 9, 8, 32, 20, 4, 0, 1.0}, Case{4, 6, 3, 8, 32, 2, 100, 0.25}}) {
    const int64_t n = c.n_chunks * c.cs, kv_dim = c.H * c.hd;
    auto u = random_tensor({n, c.r}, 140), sv = random_tensor({c.r, kv_dim}, 141);
    std::vector<float> inv_freq(static_cast<size_t>(c.hd / 2));
    for (int64_t i = 0; i < c.hd / 2; ++i) inv_freq[static_cast<size_t>(i)] = static_cast<float>(std::pow(10000.0, -2.0 * i / c.hd));
    std::vector<int64_t> slots;
    std::vector<uint8_t> fetch;
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t j = 0; j < c.k; ++j) {
        slots.push_back((h * 5 + j * 7) % c.n_chunks);
        fetch.push_back(static_cast<uint8_t>((h + j) % 3 != 2));
      }
    HostBuffer out(DType::kF32, {c.H, c.k, c.cs, c.hd}), want(DType::kF32, {c.H, c.k, c.cs, c.hd});
    rebuild_keys({.u = u.view(), .sv = sv.view(), .slots = TensorView(slots.data(), DType::kI64, {c.H, c.k}),
                  .fetch = TensorView(fetch.data(), DType::kU8, {c.H, c.k}), .out = out.view(),
                  .inv_freq = TensorView(inv_freq.data(), DType::kF32, {c.hd / 2}), .position_scale = c.pscale,
                  .first_position = c.first});
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t j = 0; j < c.k; ++j) {
        if (!fetch[static_cast<size_t>(h * c.k + j)]) continue;  // left untouched (zeros in both)
        for (int64_t i = 0; i < c.cs; ++i) {
          const int64_t t = slots[static_cast<size_t>(h * c.k + j)] * c.cs + i;
          std::vector<double> pre(static_cast<size_t>(c.hd));
          for (int64_t d = 0; d < c.hd; ++d)
            for (int64_t x = 0; x < c.r; ++x) pre[static_cast<size_t>(d)] += double(u.ptr<float>()[t * c.r + x]) * sv.ptr<float>()[x * kv_dim + h * c.hd + d];
          const double pos = static_cast<double>(c.first + t) * c.pscale;
          float* w = want.ptr<float>() + ((h * c.k + j) * c.cs + i) * c.hd;
          for (int64_t d = 0; d < c.hd / 2; ++d) {
            const double a = pos * inv_freq[static_cast<size_t>(d)];
            w[d] = static_cast<float>(pre[static_cast<size_t>(d)] * std::cos(a) - pre[static_cast<size_t>(d + c.hd / 2)] * std::sin(a));
            w[d + c.hd / 2] = static_cast<float>(pre[static_cast<size_t>(d + c.hd / 2)] * std::cos(a) + pre[static_cast<size_t>(d)] * std::sin(a));
          }
        }
      }
    EXPECT_TENSOR_NEAR(out.view(), want.view(), 1e-5, 1e-5);
    // With the precomputed (cos, sin) table: bit-identical to the rope op.
    HostBuffer table(DType::kF32, {n, c.hd / 2, 2}), out2(DType::kF32, {c.H, c.k, c.cs, c.hd});
    rope_cos_sin_table(table.view(), TensorView(inv_freq.data(), DType::kF32, {c.hd / 2}), c.pscale, c.first);
    rebuild_keys({.u = u.view(), .sv = sv.view(), .slots = TensorView(slots.data(), DType::kI64, {c.H, c.k}),
                  .fetch = TensorView(fetch.data(), DType::kU8, {c.H, c.k}), .out = out2.view(),
                  .inv_freq = TensorView(inv_freq.data(), DType::kF32, {c.hd / 2}), .position_scale = c.pscale,
                  .first_position = c.first, .rope_table = table.view()});
    EXPECT_EQ(0, std::memcmp(out.data(), out2.data(), out.bytes()));
  }
}

TEST(ShadowOps, AttendSparseIsOneSoftmaxOverAllSegments) {
  for (auto [n_q, n_kv] : {std::pair<int64_t, int64_t>{4, 4}, {8, 1}, {16, 2}}) {
    const int64_t hd = 32;
    const int64_t caps[] = {24, 16, 40}, lens[] = {24, 0, 33};
    std::vector<HostBuffer> ks, vs;
    std::vector<SparseKvSegment> segs;
    for (int i = 0; i < 3; ++i) {
      ks.push_back(random_tensor({n_kv, caps[i], hd}, 150 + static_cast<uint64_t>(i), -2, 2));
      vs.push_back(random_tensor({n_kv, caps[i], hd}, 160 + static_cast<uint64_t>(i)));
    }
    for (int i = 0; i < 3; ++i) segs.push_back({ks[static_cast<size_t>(i)].view(), vs[static_cast<size_t>(i)].view(), lens[i]});
    auto q = random_tensor({n_q, hd}, 170, -2, 2);
    HostBuffer out(DType::kF32, {n_q, hd}), want(DType::kF32, {n_q, hd});
    attend_sparse({.q = q.view(), .segments = segs, .out = out.view()});
    const int64_t group = n_q / n_kv;
    for (int64_t h = 0; h < n_q; ++h) {
      const int64_t g = h / group;
      std::vector<std::pair<const float*, const float*>> keys;  // (k row, v row) of every attended key
      for (int i = 0; i < 3; ++i)
        for (int64_t t = 0; t < lens[i]; ++t)
          keys.push_back({ks[static_cast<size_t>(i)].ptr<float>() + (g * caps[i] + t) * hd, vs[static_cast<size_t>(i)].ptr<float>() + (g * caps[i] + t) * hd});
      std::vector<double> p;
      double mx = -1e300, den = 0;
      for (auto [kr, vr] : keys) {
        double dot = 0;
        for (int64_t d = 0; d < hd; ++d) dot += double(q.ptr<float>()[h * hd + d]) * kr[d];
        p.push_back(dot / std::sqrt(double(hd)));
        mx = std::max(mx, p.back());
      }
      for (auto& x : p) den += (x = std::exp(x - mx));
      for (int64_t d = 0; d < hd; ++d) {
        double acc = 0;
        for (size_t j = 0; j < keys.size(); ++j) acc += p[j] / den * keys[j].second[d];
        want.ptr<float>()[h * hd + d] = static_cast<float>(acc);
      }
    }
    EXPECT_TENSOR_NEAR(out.view(), want.view(), 1e-5, 1e-4);
  }
}

}  // namespace
}  // namespace skv

namespace skv {
namespace {

// attention_prefill's GEMM-blocked path (many query rows, several blocks) equals its row-by-row path (one
// query row at a time, q_start = its position).
TEST(ShadowOps, BlockedPrefillAttentionEqualsTheRowLoop) {
  for (auto [n_q, q_start, n_q_heads, n_kv_heads] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{300, 0, 8, 2}, {131, 57, 4, 4}, {16, 0, 8, 1}}) {
    const int64_t hd = 32, kv_len = q_start + n_q;
    auto q = random_tensor({n_q, n_q_heads, hd}, 180, -2, 2);
    auto k = random_tensor({kv_len, n_kv_heads, hd}, 181, -2, 2);
    auto v = random_tensor({kv_len, n_kv_heads, hd}, 182);
    HostBuffer out(DType::kF32, {n_q, n_q_heads, hd}), want(DType::kF32, {n_q, n_q_heads, hd});
    attention_prefill({.q = q.view(), .k = k.view(), .v = v.view(), .out = out.view(), .q_start = q_start});
    for (int64_t i = 0; i < n_q; ++i)
      attention_prefill({.q = q.view().slice_rows(i, i + 1), .k = k.view().slice_rows(0, q_start + i + 1),
                         .v = v.view().slice_rows(0, q_start + i + 1), .out = want.view().slice_rows(i, i + 1),
                         .q_start = q_start + i});
    EXPECT_TENSOR_NEAR(out.view(), want.view(), 1e-6, 1e-5);
  }
}

}  // namespace
}  // namespace skv
