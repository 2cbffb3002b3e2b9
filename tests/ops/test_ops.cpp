// The CPU ops against straightforward float64 computations written here, on random inputs and awkward shapes.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "core/buffer.h"
#include "ops/ops.h"
#include "testing/tensor_testing.h"

namespace skv {
namespace {

using testing::random_floats;
using testing::random_tensor;

TEST(Ops, EmbeddingGathersAndConvertsRows) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    const int64_t vocab = 37, dim = 13;
    auto table_f = random_floats(static_cast<size_t>(vocab * dim), 1);
    HostBuffer table(dt, {vocab, dim});
    for (int64_t i = 0; i < vocab * dim; ++i) {
      if (dt == DType::kF32) table.ptr<float>()[i] = table_f[static_cast<size_t>(i)];
      if (dt == DType::kBF16) table.ptr<uint16_t>()[i] = f32_to_bf16(table_f[static_cast<size_t>(i)]);
      if (dt == DType::kF16) table.ptr<uint16_t>()[i] = f32_to_f16(table_f[static_cast<size_t>(i)]);
    }
    std::vector<int32_t> ids{5, 0, 36, 5};
    HostBuffer out(DType::kF32, {4, dim});
    embedding({.ids = TensorView(ids.data(), DType::kI32, {4}), .table = table.view(), .out = out.view()});
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < dim; ++j) {
        const float want = table_f[static_cast<size_t>(ids[static_cast<size_t>(i)] * dim + j)];
        EXPECT_NEAR(out.ptr<float>()[i * dim + j], want, dt == DType::kF32 ? 0 : std::fabs(want) * 8e-3);
      }
  }
}

TEST(Ops, EmbeddingRejectsOutOfRangeIds) {
  HostBuffer table(DType::kF32, {4, 2}), out(DType::kF32, {1, 2});
  int32_t id = 4;
  try {
    embedding({.ids = TensorView(&id, DType::kI32, {1}), .table = table.view(), .out = out.view()});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "embedding: token id 4 is outside the vocabulary [0, 4)");
  }
}

TEST(Ops, RmsNormMatchesDefinition) {
  for (int64_t dim : {1, 3, 129, 4097}) {
    const int64_t n = 5;
    auto x = random_tensor({n, dim}, 2 + static_cast<uint64_t>(dim), -3, 3);
    auto w = random_tensor({dim}, 3, 0.5, 1.5);
    HostBuffer out(DType::kF32, {n, dim}), want(DType::kF32, {n, dim});
    rms_norm({.x = x.view(), .w = w.view(), .out = out.view(), .eps = 1e-6f});
    for (int64_t i = 0; i < n; ++i) {
      double ss = 0;
      for (int64_t j = 0; j < dim; ++j) ss += std::pow(x.ptr<float>()[i * dim + j], 2);
      const double inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + 1e-6);
      for (int64_t j = 0; j < dim; ++j)
        want.ptr<float>()[i * dim + j] = static_cast<float>(x.ptr<float>()[i * dim + j] * inv * w.ptr<float>()[j]);
    }
    EXPECT_TENSOR_NEAR(out.view(), want.view(), 1e-6, 1e-5);
  }
}

TEST(Ops, LinearMatchesDefinitionWithAndWithoutBias) {
  for (auto [n, in, out_f] : {std::tuple<int64_t, int64_t, int64_t>{1, 3, 5}, {3, 129, 7}, {17, 64, 33}, {1, 1, 1}}) {
    auto x = random_tensor({n, in}, 10 + static_cast<uint64_t>(n));
    auto w = random_tensor({out_f, in}, 11 + static_cast<uint64_t>(in));
    auto b = random_tensor({out_f}, 12);
    for (bool with_bias : {false, true}) {
      HostBuffer out(DType::kF32, {n, out_f}), want(DType::kF32, {n, out_f});
      linear({.x = x.view(), .w = w.view(), .bias = with_bias ? b.view() : TensorView(), .out = out.view()});
      for (int64_t i = 0; i < n; ++i)
        for (int64_t o = 0; o < out_f; ++o) {
          double s = with_bias ? b.ptr<float>()[o] : 0.0;
          for (int64_t k = 0; k < in; ++k) s += static_cast<double>(x.ptr<float>()[i * in + k]) * w.ptr<float>()[o * in + k];
          want.ptr<float>()[i * out_f + o] = static_cast<float>(s);
        }
      EXPECT_TENSOR_NEAR(out.view(), want.view(), 1e-5, 1e-5);
    }
  }
}

TEST(Ops, RopeRotatesHalvesAtEachPosition) {
  const int64_t n = 6, heads = 3, head_dim = 16, half = head_dim / 2;
  auto x = random_tensor({n, heads, head_dim}, 20);
  HostBuffer orig(DType::kF32, {n, heads, head_dim});
  std::copy_n(x.ptr<float>(), n * heads * head_dim, orig.ptr<float>());
  std::vector<int64_t> pos{0, 1, 7, 100, 4096, 131071};
  std::vector<float> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv[static_cast<size_t>(i)] = static_cast<float>(std::pow(10000.0, -2.0 * i / head_dim));
  rope({.x = x.view(), .positions = TensorView(pos.data(), DType::kI64, {n}),
        .inv_freq = TensorView(inv.data(), DType::kF32, {half}), .position_scale = 0.5});
  HostBuffer want(DType::kF32, {n, heads, head_dim});
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const double a = static_cast<double>(pos[static_cast<size_t>(t)]) * 0.5 * inv[static_cast<size_t>(i)];
        const float* o = orig.ptr<float>() + (t * heads + h) * head_dim;
        float* w = want.ptr<float>() + (t * heads + h) * head_dim;
        w[i] = static_cast<float>(o[i] * std::cos(a) - o[i + half] * std::sin(a));
        w[i + half] = static_cast<float>(o[i + half] * std::cos(a) + o[i] * std::sin(a));
      }
  EXPECT_TENSOR_NEAR(x.view(), want.view(), 1e-5, 1e-5);
}

TEST(Ops, SwigluAndAdd) {
  auto g = random_tensor({3, 129}, 30, -6, 6), u = random_tensor({3, 129}, 31);
  HostBuffer out(DType::kF32, {3, 129}), want(DType::kF32, {3, 129}), sum(DType::kF32, {3, 129});
  swiglu({.gate = g.view(), .up = u.view(), .out = out.view()});
  add({.a = g.view(), .b = u.view(), .out = sum.view()});
  for (int64_t i = 0; i < 3 * 129; ++i) {
    const double gv = g.ptr<float>()[i];
    want.ptr<float>()[i] = static_cast<float>(gv / (1 + std::exp(-gv)) * u.ptr<float>()[i]);
    EXPECT_EQ(sum.ptr<float>()[i], g.ptr<float>()[i] + u.ptr<float>()[i]);
  }
  EXPECT_TENSOR_NEAR(out.view(), want.view(), 1e-6, 1e-5);
}

// float64 causal GQA attention: out[i, h] = softmax_j<=q_start+i (q.k_j * scale) . v
void reference_attention(const float* q, const float* k, const float* v, float* out, int64_t n_q, int64_t kv_len,
                         int64_t n_q_heads, int64_t n_kv_heads, int64_t head_dim, int64_t q_start, bool causal) {
  const int64_t group = n_q_heads / n_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  for (int64_t i = 0; i < n_q; ++i)
    for (int64_t h = 0; h < n_q_heads; ++h) {
      const int64_t kvh = h / group, n_keys = causal ? q_start + i + 1 : kv_len;
      std::vector<double> s(static_cast<size_t>(n_keys));
      double mx = -1e300;
      for (int64_t j = 0; j < n_keys; ++j) {
        double d = 0;
        for (int64_t e = 0; e < head_dim; ++e)
          d += static_cast<double>(q[(i * n_q_heads + h) * head_dim + e]) * k[(j * n_kv_heads + kvh) * head_dim + e];
        s[static_cast<size_t>(j)] = d * scale;
        mx = std::max(mx, d * scale);
      }
      double den = 0;
      for (auto& x : s) den += (x = std::exp(x - mx));
      for (int64_t e = 0; e < head_dim; ++e) {
        double acc = 0;
        for (int64_t j = 0; j < n_keys; ++j) acc += s[static_cast<size_t>(j)] / den * v[(j * n_kv_heads + kvh) * head_dim + e];
        out[(i * n_q_heads + h) * head_dim + e] = static_cast<float>(acc);
      }
    }
}

TEST(Ops, AttentionPrefillIsCausalGqaAttention) {
  struct Case { int64_t n_q, q_start, n_q_heads, n_kv_heads, head_dim; };
  for (Case c : {Case{1, 0, 1, 1, 8}, Case{7, 0, 8, 2, 16}, Case{5, 11, 4, 4, 64}, Case{33, 3, 8, 1, 32}}) {
    const int64_t kv_len = c.q_start + c.n_q;
    auto q = random_tensor({c.n_q, c.n_q_heads, c.head_dim}, 40, -2, 2);
    auto k = random_tensor({kv_len, c.n_kv_heads, c.head_dim}, 41, -2, 2);
    auto v = random_tensor({kv_len, c.n_kv_heads, c.head_dim}, 42);
    HostBuffer out(DType::kF32, {c.n_q, c.n_q_heads, c.head_dim}), want(DType::kF32, {c.n_q, c.n_q_heads, c.head_dim});
    attention_prefill({.q = q.view(), .k = k.view(), .v = v.view(), .out = out.view(), .q_start = c.q_start});
    reference_attention(q.ptr<float>(), k.ptr<float>(), v.ptr<float>(), want.ptr<float>(), c.n_q, kv_len, c.n_q_heads,
                        c.n_kv_heads, c.head_dim, c.q_start, true);
    EXPECT_TENSOR_NEAR(out.view(), want.view(), 1e-5, 1e-4);
  }
}

TEST(Ops, AttentionDecodeAttendsOverAllKeys) {
  for (int64_t kv_len : {1, 3, 129, 4097}) {
    const int64_t n_q_heads = 8, n_kv_heads = 2, head_dim = 64;
    auto q = random_tensor({n_q_heads, head_dim}, 50, -2, 2);
    auto k = random_tensor({kv_len, n_kv_heads, head_dim}, 51, -2, 2);
    auto v = random_tensor({kv_len, n_kv_heads, head_dim}, 52);
    HostBuffer out(DType::kF32, {n_q_heads, head_dim}), want(DType::kF32, {n_q_heads, head_dim});
    attention_decode({.q = q.view(), .k = k.view(), .v = v.view(), .out = out.view()});
    reference_attention(q.ptr<float>(), k.ptr<float>(), v.ptr<float>(), want.ptr<float>(), 1, kv_len, n_q_heads,
                        n_kv_heads, head_dim, 0, false);
    EXPECT_TENSOR_NEAR(out.view(), want.view(), 1e-5, 1e-4);
  }
}

TEST(Ops, ValidationNamesTheMismatch) {
  auto x = random_tensor({2, 8}, 60);
  auto w = random_tensor({4, 7}, 61);
  HostBuffer out(DType::kF32, {2, 4});
  try {
    linear({.x = x.view(), .w = w.view(), .out = out.view()});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "linear: w [4, 7] f32 does not take x [2, 8] f32");
  }
}

}  // namespace
}  // namespace skv
