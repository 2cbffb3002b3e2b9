// Every CUDA op against its CPU twin on fresh random inputs and awkward shapes; the attention kernels also
// against a float64 reference. Outputs are poisoned with NaN before each run, and every element must come back
// finite (written). Skipped without a CUDA device.
//
// Tolerances: f32 kernels (embedding, rms_norm, rope, swiglu, add, f32 linear) element-wise within ~1e-5
// relative. bf16 paths (bf16 linear, attention with bf16 K/V and bf16 products): relative L2 error
// ||got - want|| / ||want|| <= 1e-2 (expected a few 1e-3), with the CPU twin given the same bf16-rounded weights,
// keys and values in f32, so the error measured is the kernel's own rounding (x, q and P rounded to bf16).
// The generic attention kernels (any head_dim, f32 or bf16 K/V, f32 math): every element within 1e-5 + 1e-5 |want|
// of the CPU twin given the same (bf16-rounded where the GPU gets bf16) inputs, and relative L2 <= 1e-5 against
// float64: a tensor-core kernel (bf16 q and P, ~1e-3) could not pass, so these also prove which kernel ran.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "backend/device.h"
#include "core/buffer.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/ops.h"
#include "testing/cuda_testing.h"
#include "testing/tensor_testing.h"

namespace skv {
namespace {

using testing::random_floats;
using testing::random_tensor;
using testing::relative_l2_error;

#define REQUIRE_CUDA() SKV_REQUIRE_CUDA_OR_SKIP()

constexpr double kBf16RelL2 = 1e-2;

uint16_t to_bits(float f, DType dt) { return dt == DType::kBF16 ? f32_to_bf16(f) : f32_to_f16(f); }

using testing::finite_and_close_l2;
using testing::ints_to_device;
using testing::poison_nan;
using testing::rounded_bf16;
using testing::to_device;
using testing::to_host;

TEST(OpsCuda, DeviceBasics) {
  REQUIRE_CUDA();
  const DeviceProperties& p = device_properties(0);
  EXPECT_GT(p.multiprocessors, 0);
  EXPECT_GT(p.total_memory, size_t{0});
  auto h = random_tensor({3, 5}, 1);
  DeviceBuffer d = to_device(h);
  EXPECT_EQ(d.view().device.kind, DeviceKind::kCuda);
  DeviceBuffer moved = std::move(d);
  EXPECT_EQ(d.data(), nullptr);
  HostBuffer back = to_host(moved.view());
  EXPECT_EQ(std::memcmp(back.data(), h.data(), 15 * sizeof(float)), 0);
  // Errors are exceptions, never exits: an absurd allocation is a kResource error.
  try {
    DeviceBuffer huge(size_t{1} << 50);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResource);
  }
  // Mixed devices are rejected by validation.
  HostBuffer out(DType::kF32, {3, 5});
  EXPECT_THROW(add({.a = moved.view(), .b = h.view(), .out = out.view()}), Error);
}

TEST(OpsCuda, EmbeddingMatchesCpu) {
  REQUIRE_CUDA();
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t dim : {1, 3, 129, 4097}) {
      const int64_t vocab = 37, n = 7;
      auto table_f = random_floats(static_cast<size_t>(vocab * dim), 2 + static_cast<uint64_t>(dim));
      HostBuffer table(dt, {vocab, dim});
      for (int64_t i = 0; i < vocab * dim; ++i) {
        if (dt == DType::kF32) table.ptr<float>()[i] = table_f[static_cast<size_t>(i)];
        else table.ptr<uint16_t>()[i] = to_bits(table_f[static_cast<size_t>(i)], dt);
      }
      std::vector<int32_t> ids{5, 0, 36, 5, 17, 1, 35};
      HostBuffer want(DType::kF32, {n, dim});
      embedding({.ids = TensorView(ids.data(), DType::kI32, {n}), .table = table.view(), .out = want.view()});
      DeviceBuffer d_table(dt, {vocab, dim}), d_out(DType::kF32, {n, dim});
      copy_to_device(d_table.view(), table.view());
      DeviceBuffer d_ids = ints_to_device(ids, DType::kI32);
      poison_nan(d_out.view());
      embedding({.ids = d_ids.view(), .table = d_table.view(), .out = d_out.view()});
      EXPECT_TENSOR_NEAR(to_host(d_out.view()).view(), want.view(), 0, 0) << dtype_name(dt) << " dim " << dim;
    }
  }
  // An id outside the vocabulary gives a NaN row on CUDA (the host cannot check device ids).
  DeviceBuffer d_table = to_device(random_tensor({4, 2}, 3)), d_out(DType::kF32, {2, 2});
  DeviceBuffer d_ids = ints_to_device(std::vector<int32_t>{1, 4}, DType::kI32);
  embedding({.ids = d_ids.view(), .table = d_table.view(), .out = d_out.view()});
  HostBuffer got = to_host(d_out.view());
  EXPECT_TRUE(std::isfinite(got.ptr<float>()[0]));
  EXPECT_TRUE(std::isnan(got.ptr<float>()[2]) && std::isnan(got.ptr<float>()[3]));
}

TEST(OpsCuda, RmsNormMatchesCpu) {
  REQUIRE_CUDA();
  for (DType wdt : {DType::kF32, DType::kBF16, DType::kF16})
    for (int64_t n : {1, 3, 129})
      for (int64_t dim : {1, 3, 129, 4096, 4097}) {
        auto x = random_tensor({n, dim}, 10 + static_cast<uint64_t>(n * dim), -3, 3);
        auto w = random_tensor({dim}, 11, 0.5, 1.5);
        HostBuffer w_cpu = wdt == DType::kF32 ? random_tensor({dim}, 11, 0.5, 1.5) : HostBuffer(DType::kF32, {dim});
        if (wdt != DType::kF32)
          for (int64_t j = 0; j < dim; ++j)
            w_cpu.ptr<float>()[j] = wdt == DType::kBF16 ? bf16_to_f32(f32_to_bf16(w.ptr<float>()[j]))
                                                        : f16_to_f32(f32_to_f16(w.ptr<float>()[j]));
        HostBuffer want(DType::kF32, {n, dim});
        rms_norm({.x = x.view(), .w = w_cpu.view(), .out = want.view(), .eps = 1e-6f});
        DeviceBuffer dx = to_device(x), dw = to_device(w, wdt), dout(DType::kF32, {n, dim});
        poison_nan(dout.view());
        rms_norm({.x = dx.view(), .w = dw.view(), .out = dout.view(), .eps = 1e-6f});
        EXPECT_TENSOR_NEAR(to_host(dout.view()).view(), want.view(), 1e-5, 1e-5) << n << "x" << dim;
        // in place
        rms_norm({.x = dx.view(), .w = dw.view(), .out = dx.view(), .eps = 1e-6f});
        EXPECT_TENSOR_NEAR(to_host(dx.view()).view(), want.view(), 1e-5, 1e-5) << "in place " << n << "x" << dim;
      }
}

TEST(OpsCuda, LinearMatchesCpu) {
  REQUIRE_CUDA();
  struct Case { int64_t n, in, out; };
  for (Case c : {Case{1, 64, 33}, Case{3, 129, 7}, Case{8, 4096, 1024}, Case{1, 4096, 4100}, Case{5, 1000, 513},
                 Case{9, 256, 300}, Case{129, 512, 257}, Case{1, 1, 1}, Case{2, 14336, 64}}) {
    auto x = random_tensor({c.n, c.in}, 20 + static_cast<uint64_t>(c.n * c.in));
    auto w = random_tensor({c.out, c.in}, 21 + static_cast<uint64_t>(c.out));
    auto b = random_tensor({c.out}, 22);
    const HostBuffer w_rounded = rounded_bf16(w);
    DeviceBuffer dx = to_device(x), dw16 = to_device(w, DType::kBF16), dw32 = to_device(w), db = to_device(b);
    for (bool with_bias : {false, true}) {
      const std::string what = std::to_string(c.n) + "x" + std::to_string(c.in) + "->" + std::to_string(c.out) +
                               (with_bias ? " +bias" : "");
      // bf16 weights: every path (auto, cuBLAS, small-n kernel) against the CPU with the rounded weights.
      HostBuffer want16(DType::kF32, {c.n, c.out});
      linear({.x = x.view(), .w = w_rounded.view(), .bias = with_bias ? b.view() : TensorView(), .out = want16.view()});
      // The small-n kernel in each of its CTA shapes (gemv_shape_override; 0 = the default).
      for (int variant = 0; variant < 7; ++variant) {
        const int path = variant < 2 ? variant : 2, shape = variant < 2 ? 0 : variant - 2;
        cuda::gemv_shape_override() = shape;
        DeviceBuffer dout(DType::kF32, {c.n, c.out});
        poison_nan(dout.view());
        cuda::linear_with_path({.x = dx.view(), .w = dw16.view(), .bias = with_bias ? db.view() : TensorView(),
                                .out = dout.view()},
                               path);
        cuda::gemv_shape_override() = 0;
        EXPECT_TRUE(finite_and_close_l2(to_host(dout.view()), want16, kBf16RelL2))
            << what << " bf16 path " << path << " shape " << shape;
      }
      // f32 weights: cuBLAS in f32.
      HostBuffer want32(DType::kF32, {c.n, c.out});
      linear({.x = x.view(), .w = w.view(), .bias = with_bias ? b.view() : TensorView(), .out = want32.view()});
      DeviceBuffer dout(DType::kF32, {c.n, c.out});
      poison_nan(dout.view());
      linear({.x = dx.view(), .w = dw32.view(), .bias = with_bias ? db.view() : TensorView(), .out = dout.view()});
      EXPECT_TENSOR_NEAR(to_host(dout.view()).view(), want32.view(), 1e-4, 1e-4) << what << " f32";
    }
  }
}

TEST(OpsCuda, RopeMatchesCpuAtLongPositions) {
  REQUIRE_CUDA();
  for (int64_t n : {1, 3, 129})
    for (int64_t head_dim : {64, 128})
      for (double scale : {1.0, 0.25}) {
        const int64_t heads = 3, half = head_dim / 2;
        auto x = random_tensor({n, heads, head_dim}, 30 + static_cast<uint64_t>(n));
        std::vector<int64_t> pos(static_cast<size_t>(n));
        std::mt19937_64 rng(31 + static_cast<uint64_t>(n));
        for (auto& p : pos) p = static_cast<int64_t>(rng() % 131072);
        pos[0] = 131071;
        std::vector<float> inv(static_cast<size_t>(half));
        for (int64_t i = 0; i < half; ++i)
          inv[static_cast<size_t>(i)] = static_cast<float>(std::pow(500000.0, -2.0 * static_cast<double>(i) / head_dim));
        DeviceBuffer dx = to_device(x), dpos = ints_to_device(pos, DType::kI64);
        DeviceBuffer dinv = to_device(inv.data(), {half}, DType::kF32);
        rope({.x = x.view(), .positions = TensorView(pos.data(), DType::kI64, {n}),
              .inv_freq = TensorView(inv.data(), DType::kF32, {half}), .position_scale = scale});
        rope({.x = dx.view(), .positions = dpos.view(), .inv_freq = dinv.view(), .position_scale = scale});
        EXPECT_TENSOR_NEAR(to_host(dx.view()).view(), x.view(), 1e-5, 1e-5) << n << " " << head_dim;
      }
}

TEST(OpsCuda, SwigluAndAddMatchCpu) {
  REQUIRE_CUDA();
  for (int64_t n : {1, 3, 129, 4097})
    for (int64_t dim : {3, 128, 129}) {
      auto g = random_tensor({n, dim}, 40, -8, 8), u = random_tensor({n, dim}, 41);
      HostBuffer want_s(DType::kF32, {n, dim}), want_a(DType::kF32, {n, dim});
      swiglu({.gate = g.view(), .up = u.view(), .out = want_s.view()});
      add({.a = g.view(), .b = u.view(), .out = want_a.view()});
      DeviceBuffer dg = to_device(g), du = to_device(u), ds(DType::kF32, {n, dim}), da(DType::kF32, {n, dim});
      poison_nan(ds.view());
      poison_nan(da.view());
      swiglu({.gate = dg.view(), .up = du.view(), .out = ds.view()});
      add({.a = dg.view(), .b = du.view(), .out = da.view()});
      EXPECT_TENSOR_NEAR(to_host(ds.view()).view(), want_s.view(), 1e-6, 1e-5) << n << "x" << dim;
      EXPECT_TENSOR_NEAR(to_host(da.view()).view(), want_a.view(), 0, 0) << n << "x" << dim;
      // in place (out aliases the first input)
      swiglu({.gate = dg.view(), .up = du.view(), .out = dg.view()});
      EXPECT_TENSOR_NEAR(to_host(dg.view()).view(), want_s.view(), 1e-6, 1e-5) << "in place";
    }
}

// float64 attention for some query rows: out[i, h] = softmax_{j <= q_start + i} (q . k_j * scale) . v
// (causal), or over all kv_len keys when kv_len_all > 0.
void reference_rows(const float* q, const float* k, const float* v, float* out, const std::vector<int64_t>& rows,
                    int64_t n_q_heads, int64_t n_kv_heads, int64_t head_dim, int64_t q_start, int64_t kv_row0 = 0) {
  const int64_t group = n_q_heads / n_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  for (size_t ri = 0; ri < rows.size(); ++ri) {
    const int64_t i = rows[ri];
    for (int64_t h = 0; h < n_q_heads; ++h) {
      const int64_t kvh = h / group, n_keys = q_start + i + 1;
      std::vector<double> s(static_cast<size_t>(n_keys));
      double mx = -1e300;
      for (int64_t j = 0; j < n_keys; ++j) {
        double d = 0;
        for (int64_t e = 0; e < head_dim; ++e)
          d += static_cast<double>(q[(i * n_q_heads + h) * head_dim + e]) *
               k[((kv_row0 + j) * n_kv_heads + kvh) * head_dim + e];
        s[static_cast<size_t>(j)] = d * scale;
        mx = std::max(mx, d * scale);
      }
      double den = 0;
      for (auto& x : s) den += (x = std::exp(x - mx));
      for (int64_t e = 0; e < head_dim; ++e) {
        double acc = 0;
        for (int64_t j = 0; j < n_keys; ++j)
          acc += s[static_cast<size_t>(j)] * v[((kv_row0 + j) * n_kv_heads + kvh) * head_dim + e];
        out[(static_cast<int64_t>(ri) * n_q_heads + h) * head_dim + e] = static_cast<float>(acc / den);
      }
    }
  }
}

// Rows `rows` of a [n, heads, head_dim] tensor, as a [rows, heads, head_dim] buffer.
HostBuffer pick_rows(const HostBuffer& t, const std::vector<int64_t>& rows, int64_t row_elems) {
  HostBuffer r(DType::kF32, {static_cast<int64_t>(rows.size()), row_elems});
  for (size_t i = 0; i < rows.size(); ++i)
    std::copy_n(t.ptr<float>() + rows[i] * row_elems, row_elems, r.ptr<float>() + static_cast<int64_t>(i) * row_elems);
  return r;
}

std::vector<int64_t> sample_rows(int64_t n, size_t count, uint64_t seed) {
  std::vector<int64_t> rows;
  if (static_cast<size_t>(n) <= count) {
    rows.resize(static_cast<size_t>(n));
    std::iota(rows.begin(), rows.end(), 0);
    return rows;
  }
  std::mt19937_64 rng(seed);
  rows = {0, n - 1};
  while (rows.size() < count) rows.push_back(static_cast<int64_t>(rng() % static_cast<uint64_t>(n)));
  return rows;
}

TEST(OpsCuda, AttentionPrefillMatchesCpuAndFloat64) {
  REQUIRE_CUDA();
  struct Case { int64_t n_q, q_start, n_q_heads, n_kv_heads, head_dim; };
  const Case cases[] = {
      {1, 0, 8, 8, 64},       {3, 0, 32, 8, 128},   {129, 0, 32, 8, 128},  {129, 64, 8, 1, 64},
      {4097, 0, 8, 2, 128},   {300, 1000, 28, 4, 128} /* 7:1 */,           {77, 0, 4, 4, 128},
      {1000, 3097, 32, 8, 128}, {65, 3, 16, 16, 64}, {200, 0, 8, 1, 128} /* 8:1 */};
  for (const Case& c : cases) {
    for (DType q_dtype : {DType::kF32, DType::kBF16}) {
      const int64_t kv_len = c.q_start + c.n_q, row = c.n_q_heads * c.head_dim;
      const uint64_t seed = static_cast<uint64_t>(c.n_q * 131 + c.q_start * 7 + c.n_q_heads);
      auto q = random_tensor({c.n_q, c.n_q_heads, c.head_dim}, seed, -2, 2);
      auto k = rounded_bf16(random_tensor({kv_len, c.n_kv_heads, c.head_dim}, seed + 1, -2, 2));
      auto v = rounded_bf16(random_tensor({kv_len, c.n_kv_heads, c.head_dim}, seed + 2));
      const HostBuffer q_cpu = q_dtype == DType::kBF16 ? rounded_bf16(q) : random_tensor({c.n_q, c.n_q_heads, c.head_dim}, seed, -2, 2);
      const std::string what = "n_q " + std::to_string(c.n_q) + " q_start " + std::to_string(c.q_start) + " heads " +
                               std::to_string(c.n_q_heads) + "/" + std::to_string(c.n_kv_heads) + " d " +
                               std::to_string(c.head_dim) + " q " + dtype_name(q_dtype);
      HostBuffer want(DType::kF32, {c.n_q, c.n_q_heads, c.head_dim});
      attention_prefill({.q = q_cpu.view(), .k = k.view(), .v = v.view(), .out = want.view(), .q_start = c.q_start});
      DeviceBuffer dq = to_device(q, q_dtype), dk = to_device(k, DType::kBF16), dv = to_device(v, DType::kBF16);
      DeviceBuffer dout(DType::kF32, {c.n_q, c.n_q_heads, c.head_dim});
      for (int variant : {0, 1, 2, 3, 5, 6}) {  // 0: through the dispatcher (the default variant)
        poison_nan(dout.view());
        AttentionPrefillArgs args{.q = dq.view(), .k = dk.view(), .v = dv.view(), .out = dout.view(), .q_start = c.q_start};
        if (variant == 0) attention_prefill(args);
        else cuda::attention_prefill_with_variant(args, variant);
        HostBuffer got = to_host(dout.view());
        EXPECT_TRUE(finite_and_close_l2(got, want, kBf16RelL2)) << what << " variant " << variant << " vs CPU twin";
        if (variant != 0) continue;
        const auto rows = sample_rows(c.n_q, 48, seed);
        HostBuffer ref(DType::kF32, {static_cast<int64_t>(rows.size()), c.n_q_heads, c.head_dim});
        reference_rows(q_cpu.ptr<float>(), k.ptr<float>(), v.ptr<float>(), ref.ptr<float>(), rows, c.n_q_heads,
                       c.n_kv_heads, c.head_dim, c.q_start);
        HostBuffer got_rows = pick_rows(got, rows, row);
        HostBuffer ref_view(DType::kF32, {static_cast<int64_t>(rows.size()), row});
        std::copy_n(ref.ptr<float>(), ref_view.view().numel(), ref_view.ptr<float>());
        EXPECT_TRUE(finite_and_close_l2(got_rows, ref_view, kBf16RelL2)) << what << " vs float64";
      }
    }
  }
}

struct DecodeCase {
  int64_t n_q_heads, n_kv_heads, head_dim, capacity;
  std::vector<int32_t> lengths;
};

void run_decode_case(const DecodeCase& c, uint64_t seed) {
  const int64_t n_seqs = static_cast<int64_t>(c.lengths.size()), n_slots = n_seqs + 1;
  const int64_t kv_row = c.n_kv_heads * c.head_dim, slot_elems = c.capacity * kv_row;
  // slots: reversed, slot 0 unused; keys past each length are NaN on the device (never read).
  std::vector<int32_t> slots(static_cast<size_t>(n_seqs));
  for (int64_t i = 0; i < n_seqs; ++i) slots[static_cast<size_t>(i)] = static_cast<int32_t>(n_slots - 1 - i);
  HostBuffer kc(DType::kF32, {n_slots, c.capacity, c.n_kv_heads, c.head_dim});
  HostBuffer vc(DType::kF32, {n_slots, c.capacity, c.n_kv_heads, c.head_dim});
  const size_t total = static_cast<size_t>(n_slots * slot_elems);
  std::vector<uint16_t> kb(total, 0x7fc0), vb(total, 0x7fc0);  // bf16 NaN
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t i = 0; i < n_seqs; ++i) {
    const int64_t base = slots[static_cast<size_t>(i)] * slot_elems;
    for (int64_t e = 0; e < c.lengths[static_cast<size_t>(i)] * kv_row; ++e) {
      const uint16_t kbits = f32_to_bf16(2.0f * dist(rng)), vbits = f32_to_bf16(dist(rng));
      kb[static_cast<size_t>(base + e)] = kbits;
      vb[static_cast<size_t>(base + e)] = vbits;
      kc.ptr<float>()[base + e] = bf16_to_f32(kbits);
      vc.ptr<float>()[base + e] = bf16_to_f32(vbits);
    }
  }
  auto q = random_tensor({n_seqs, c.n_q_heads, c.head_dim}, seed + 1, -2, 2);
  HostBuffer want(DType::kF32, {n_seqs, c.n_q_heads, c.head_dim});
  attention_decode_batch({.q = q.view(), .k_cache = kc.view(), .v_cache = vc.view(),
                          .slots = TensorView(slots.data(), DType::kI32, {n_seqs}),
                          .lengths = TensorView(const_cast<int32_t*>(c.lengths.data()), DType::kI32, {n_seqs}),
                          .out = want.view()});
  DeviceBuffer dk(DType::kBF16, kc.view().shape), dv(DType::kBF16, vc.view().shape);
  copy_to_device(dk.view(), TensorView(kb.data(), DType::kBF16, kc.view().shape));
  copy_to_device(dv.view(), TensorView(vb.data(), DType::kBF16, vc.view().shape));
  DeviceBuffer dq = to_device(q), dslots = ints_to_device(slots, DType::kI32), dlen = ints_to_device(c.lengths, DType::kI32);
  DeviceBuffer dout(DType::kF32, {n_seqs, c.n_q_heads, c.head_dim});
  const int32_t max_len = *std::max_element(c.lengths.begin(), c.lengths.end());
  std::string what = "heads " + std::to_string(c.n_q_heads) + "/" + std::to_string(c.n_kv_heads) + " d " +
                     std::to_string(c.head_dim) + " lengths";
  for (int32_t l : c.lengths) what += " " + std::to_string(l);
  for (int64_t max_length : {int64_t{0}, int64_t{max_len}}) {
    poison_nan(dout.view());
    attention_decode_batch({.q = dq.view(), .k_cache = dk.view(), .v_cache = dv.view(), .slots = dslots.view(),
                            .lengths = dlen.view(), .out = dout.view(), .max_length = max_length});
    HostBuffer got = to_host(dout.view());
    EXPECT_TRUE(finite_and_close_l2(got, want, kBf16RelL2)) << what << " max_length " << max_length << " vs CPU twin";
    // each sequence on its own too (a long one must not hide a wrong short one)
    for (int64_t i = 0; i < n_seqs; ++i) {
      const int64_t off = i * c.n_q_heads * c.head_dim, n = c.n_q_heads * c.head_dim;
      const double err = relative_l2_error(got.ptr<float>() + off, want.ptr<float>() + off, static_cast<size_t>(n));
      EXPECT_LE(err, kBf16RelL2) << what << " sequence " << i;
    }
  }
  // float64 reference, per sequence
  for (int64_t i = 0; i < n_seqs; ++i) {
    const int32_t len = c.lengths[static_cast<size_t>(i)];
    HostBuffer ref(DType::kF32, {1, c.n_q_heads * c.head_dim});
    // As a causal prefill of one query at position len - 1 over the slot's rows.
    reference_rows(q.ptr<float>() + i * c.n_q_heads * c.head_dim, kc.ptr<float>() + slots[static_cast<size_t>(i)] * slot_elems,
                   vc.ptr<float>() + slots[static_cast<size_t>(i)] * slot_elems, ref.ptr<float>(), {0}, c.n_q_heads,
                   c.n_kv_heads, c.head_dim, len - 1);
    HostBuffer got = to_host(dout.view());
    HostBuffer got_i(DType::kF32, {1, c.n_q_heads * c.head_dim});
    std::copy_n(got.ptr<float>() + i * c.n_q_heads * c.head_dim, c.n_q_heads * c.head_dim, got_i.ptr<float>());
    EXPECT_TRUE(finite_and_close_l2(got_i, ref, kBf16RelL2)) << what << " sequence " << i << " vs float64";
  }
}

TEST(OpsCuda, AttentionDecodeBatchMatchesCpuAndFloat64) {
  REQUIRE_CUDA();
  run_decode_case({32, 8, 128, 32768, {1, 7, 4097, 32768}}, 100);  // Llama-3-8B shape, lengths 1..32K in one batch
  run_decode_case({8, 8, 64, 300, {1, 300, 129}}, 101);            // 1:1
  run_decode_case({16, 2, 64, 5000, {4097, 3, 64, 65}}, 102);      // 8:1
  run_decode_case({28, 4, 128, 2000, {1999, 1}}, 103);             // 7:1
  run_decode_case({32, 1, 128, 700, {700}}, 104);                  // 32:1 (two CTAs per KV head)
  run_decode_case({16, 2, 128, 6000, {6000}}, 105);                // 94 splits: the combine's 3 rounds of 32
  run_decode_case({32, 8, 128, 3000, {3000, 2999, 64, 65, 1}}, 106);  // one split, two, many in one batch
}

TEST(OpsCuda, AttentionDecodeBatchInvalidSequenceGivesNaNOnly) {
  REQUIRE_CUDA();
  const int64_t n_q_heads = 8, n_kv_heads = 2, head_dim = 64, capacity = 100, row = n_q_heads * head_dim;
  auto q = random_tensor({3, n_q_heads, head_dim}, 110);
  auto kv = random_tensor({2, capacity, n_kv_heads, head_dim}, 111);
  DeviceBuffer dq = to_device(q), dk = to_device(kv, DType::kBF16), dv = to_device(kv, DType::kBF16);
  DeviceBuffer dslots = ints_to_device(std::vector<int32_t>{0, 5, 1}, DType::kI32);
  DeviceBuffer dlen = ints_to_device(std::vector<int32_t>{10, 10, 101}, DType::kI32);
  DeviceBuffer dout(DType::kF32, {3, n_q_heads, head_dim});
  poison_nan(dout.view());
  attention_decode_batch({.q = dq.view(), .k_cache = dk.view(), .v_cache = dv.view(), .slots = dslots.view(),
                          .lengths = dlen.view(), .out = dout.view()});
  HostBuffer got = to_host(dout.view());
  for (int64_t e = 0; e < row; ++e) {
    EXPECT_TRUE(std::isfinite(got.ptr<float>()[e]));
    EXPECT_TRUE(std::isnan(got.ptr<float>()[row + e]));      // slot 5 of 2
    EXPECT_TRUE(std::isnan(got.ptr<float>()[2 * row + e]));  // length 101 > capacity
  }
  // A length past max_length's splits (max_length 1: one split of 64 keys) is NaN too, not a silent truncation;
  // the call after it is right again.
  DeviceBuffer dlen90 = ints_to_device(std::vector<int32_t>{90}, DType::kI32);
  DeviceBuffer dslot0 = ints_to_device(std::vector<int32_t>{0}, DType::kI32);
  DeviceBuffer dout1(DType::kF32, {1, n_q_heads, head_dim});
  const TensorView q1(dq.data(), DType::kF32, {1, n_q_heads, head_dim}, dq.view().device);
  attention_decode_batch({.q = q1, .k_cache = dk.view(), .v_cache = dv.view(), .slots = dslot0.view(),
                          .lengths = dlen90.view(), .out = dout1.view(), .max_length = 1});
  HostBuffer got1 = to_host(dout1.view());
  for (int64_t e = 0; e < row; ++e) ASSERT_TRUE(std::isnan(got1.ptr<float>()[e]));
  DeviceBuffer dlen10 = ints_to_device(std::vector<int32_t>{10}, DType::kI32);
  attention_decode_batch({.q = q1, .k_cache = dk.view(), .v_cache = dv.view(), .slots = dslot0.view(),
                          .lengths = dlen10.view(), .out = dout1.view()});
  HostBuffer got2 = to_host(dout1.view());
  for (int64_t e = 0; e < row; ++e) ASSERT_NEAR(got2.ptr<float>()[e], got.ptr<float>()[e], 1e-6f);
}

TEST(OpsCuda, AttentionDecodeMatchesCpu) {
  REQUIRE_CUDA();
  for (int64_t kv_len : {1, 3, 129, 4097}) {
    const int64_t n_q_heads = 32, n_kv_heads = 8, head_dim = 128;
    auto q = random_tensor({n_q_heads, head_dim}, 120, -2, 2);
    auto k = rounded_bf16(random_tensor({kv_len, n_kv_heads, head_dim}, 121, -2, 2));
    auto v = rounded_bf16(random_tensor({kv_len, n_kv_heads, head_dim}, 122));
    HostBuffer want(DType::kF32, {n_q_heads, head_dim});
    attention_decode({.q = q.view(), .k = k.view(), .v = v.view(), .out = want.view()});
    DeviceBuffer dq = to_device(q), dk = to_device(k, DType::kBF16), dv = to_device(v, DType::kBF16);
    DeviceBuffer dout(DType::kF32, {n_q_heads, head_dim});
    poison_nan(dout.view());
    attention_decode({.q = dq.view(), .k = dk.view(), .v = dv.view(), .out = dout.view()});
    EXPECT_TRUE(finite_and_close_l2(to_host(dout.view()), want, kBf16RelL2)) << "kv_len " << kv_len;
  }
}

TEST(OpsCuda, SampleTokensMatchesCpuTokenForToken) {
  REQUIRE_CUDA();
  for (int64_t vocab : {1, 7, 1000, 128256}) {
    const int64_t n_seqs = 8;
    auto logits = random_tensor({n_seqs, vocab}, 130 + static_cast<uint64_t>(vocab), -4, 4);
    // ties: repeated values, and a row of equal logits
    for (int64_t j = 0; j < vocab; j += 3) logits.ptr<float>()[1 * vocab + j] = 2.5f;
    for (int64_t j = 0; j < vocab; ++j) logits.ptr<float>()[5 * vocab + j] = 0.0f;
    if (vocab > 1) logits.ptr<float>()[5 * vocab + 1] = -0.0f;
    DeviceBuffer dl = to_device(logits);
    std::mt19937_64 rng(131);
    for (int round = 0; round < 20; ++round) {
      std::vector<TokenSamplingParams> params = {
          {.temperature = 0.0f},
          {.temperature = 0.0f},
          {.temperature = 0.7f, .top_k = 50},
          {.temperature = 1.0f, .top_p = 0.9f},
          {.temperature = 1.3f},
          {.temperature = 1.0f, .top_k = 1},
          {.temperature = 0.5f, .top_k = 10, .top_p = 0.5f},
          {.temperature = 2.0f, .top_k = 3000, .top_p = 0.95f},
      };
      if (round % 2 == 1) params[5].temperature = 0.8f, params[5].top_k = 0;  // the all-equal row, sampled
      for (auto& p : params) p.uniform = std::generate_canonical<double, 53>(rng);
      std::vector<int32_t> want(static_cast<size_t>(n_seqs)), got_host(static_cast<size_t>(n_seqs), -7);
      sample_tokens({.logits = logits.view(), .params = params, .out = TensorView(want.data(), DType::kI32, {n_seqs})});
      // out on the host
      sample_tokens({.logits = dl.view(), .params = params, .out = TensorView(got_host.data(), DType::kI32, {n_seqs})});
      EXPECT_EQ(got_host, want) << "vocab " << vocab << " round " << round;
      // out on the device
      DeviceBuffer dout(DType::kI32, {n_seqs});
      sample_tokens({.logits = dl.view(), .params = params, .out = dout.view()});
      std::vector<int32_t> got_dev(static_cast<size_t>(n_seqs), -7);
      synchronize_device(0);
      copy_to_host(TensorView(got_dev.data(), DType::kI32, {n_seqs}), dout.view());
      EXPECT_EQ(got_dev, want) << "vocab " << vocab << " round " << round << " (device out)";
    }
  }
}

// ---- the generic kernels (attention_generic.cu)

constexpr double kGenericAtol = 1e-5, kGenericRtol = 1e-5, kGenericRelL2 = 1e-5;

bool tensor_core_shape(DType kv_dtype, int64_t head_dim) {
  return kv_dtype == DType::kBF16 && (head_dim == 64 || head_dim == 128);
}

struct GenericPrefillCase {
  int64_t n_q, q_start, n_q_heads, n_kv_heads, head_dim;
};

// q [n_q, n_q_heads, head_dim], k/v [q_start + n_q, n_kv_heads, head_dim], fresh random values (q, k in [-2, 2),
// v in [-1, 1)); the GPU gets q in q_dtype and k/v in kv_dtype, the CPU twin and the float64 reference the same
// values rounded through those dtypes. Through the dispatcher unless that would pick the tensor-core kernel
// (bf16 K/V at head_dim 64/128): then cuda::attention_prefill_generic itself.
void run_generic_prefill_case(const GenericPrefillCase& c, DType kv_dtype, DType q_dtype) {
  const int64_t kv_len = c.q_start + c.n_q, row = c.n_q_heads * c.head_dim;
  const uint64_t seed = static_cast<uint64_t>(c.n_q * 7919 + c.q_start * 31 + c.n_q_heads * 5 + c.head_dim) +
                        (kv_dtype == DType::kBF16 ? 1000003 : 0) + (q_dtype == DType::kBF16 ? 2000003 : 0);
  HostBuffer q = random_tensor({c.n_q, c.n_q_heads, c.head_dim}, seed, -2, 2);
  HostBuffer k = random_tensor({kv_len, c.n_kv_heads, c.head_dim}, seed + 1, -2, 2);
  HostBuffer v = random_tensor({kv_len, c.n_kv_heads, c.head_dim}, seed + 2);
  if (q_dtype == DType::kBF16) q = rounded_bf16(q);
  if (kv_dtype == DType::kBF16) k = rounded_bf16(k), v = rounded_bf16(v);
  const std::string what = "generic prefill n_q " + std::to_string(c.n_q) + " q_start " + std::to_string(c.q_start) +
                           " heads " + std::to_string(c.n_q_heads) + "/" + std::to_string(c.n_kv_heads) + " d " +
                           std::to_string(c.head_dim) + " q " + dtype_name(q_dtype) + " kv " + dtype_name(kv_dtype);
  HostBuffer want(DType::kF32, {c.n_q, c.n_q_heads, c.head_dim});
  attention_prefill({.q = q.view(), .k = k.view(), .v = v.view(), .out = want.view(), .q_start = c.q_start});
  DeviceBuffer dq = to_device(q, q_dtype), dk = to_device(k, kv_dtype), dv = to_device(v, kv_dtype);
  DeviceBuffer dout(DType::kF32, {c.n_q, c.n_q_heads, c.head_dim});
  poison_nan(dout.view());
  const AttentionPrefillArgs args{.q = dq.view(), .k = dk.view(), .v = dv.view(), .out = dout.view(), .q_start = c.q_start};
  if (tensor_core_shape(kv_dtype, c.head_dim)) cuda::attention_prefill_generic(args);
  else attention_prefill(args);
  const HostBuffer got = to_host(dout.view());
  EXPECT_TENSOR_NEAR(got.view(), want.view(), kGenericAtol, kGenericRtol) << what << " vs CPU twin";
  const auto rows = sample_rows(c.n_q, 40, seed);
  HostBuffer ref(DType::kF32, {static_cast<int64_t>(rows.size()), row});
  reference_rows(q.ptr<float>(), k.ptr<float>(), v.ptr<float>(), ref.ptr<float>(), rows, c.n_q_heads, c.n_kv_heads,
                 c.head_dim, c.q_start);
  EXPECT_TRUE(finite_and_close_l2(pick_rows(got, rows, row), ref, kGenericRelL2)) << what << " vs float64";
}

const GenericPrefillCase kGenericPrefillCases[] = {
    {1, 0, 6, 6, 48},     {7, 0, 6, 6, 48},       {1031, 0, 6, 6, 48} /* stories15M: MHA, 6 heads of 48 */,
    {129, 37, 8, 2, 80} /* 4:1 */,                {300, 1000, 12, 2, 96} /* 6:1, 1300 keys */,
    {45, 3, 4, 4, 32},    {65, 0, 8, 8, 64},      {200, 100, 32, 8, 128},
    {17, 3, 40, 2, 256} /* 20:1: two CTAs per KV head, the second one partial */,
    {9, 0, 3, 1, 1} /* head_dim 1 */,            {13, 2, 4, 2, 33} /* odd head_dim */};

TEST(OpsCuda, GenericAttentionPrefillMatchesCpuAndFloat64) {
  REQUIRE_CUDA();
  for (const GenericPrefillCase& c : kGenericPrefillCases)
    for (DType kv_dtype : {DType::kF32, DType::kBF16})
      for (DType q_dtype : {DType::kF32, DType::kBF16}) run_generic_prefill_case(c, kv_dtype, q_dtype);
}

struct GenericDecodeCase {
  int64_t n_q_heads, n_kv_heads, head_dim, capacity;
  std::vector<int32_t> lengths;
};

// A slotted cache of n_seqs + 2 slots, sequence i in slot n_slots - 1 - i (out of order; two slots unused); every
// key past a sequence's length, and every unused slot, is NaN on the device, so a read past a length shows up.
// q in [-2, 2), keys in [-2, 2), values in [-1, 1), rounded through kv_dtype for the CPU twin and float64.
void run_generic_decode_case(const GenericDecodeCase& c, DType kv_dtype, uint64_t seed) {
  const int64_t n_seqs = static_cast<int64_t>(c.lengths.size()), n_slots = n_seqs + 2;
  const int64_t kv_row = c.n_kv_heads * c.head_dim, slot_elems = c.capacity * kv_row;
  const int64_t q_row = c.n_q_heads * c.head_dim;
  std::vector<int32_t> slots(static_cast<size_t>(n_seqs));
  for (int64_t i = 0; i < n_seqs; ++i) slots[static_cast<size_t>(i)] = static_cast<int32_t>(n_slots - 1 - i);
  const Shape cache_shape{n_slots, c.capacity, c.n_kv_heads, c.head_dim};
  HostBuffer kc(DType::kF32, cache_shape), vc(DType::kF32, cache_shape);
  std::fill_n(kc.ptr<float>(), cache_shape.numel(), std::numeric_limits<float>::quiet_NaN());
  std::fill_n(vc.ptr<float>(), cache_shape.numel(), std::numeric_limits<float>::quiet_NaN());
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const auto as_kv = [&](float x) { return kv_dtype == DType::kBF16 ? bf16_to_f32(f32_to_bf16(x)) : x; };
  for (int64_t i = 0; i < n_seqs; ++i) {
    const int64_t base = slots[static_cast<size_t>(i)] * slot_elems;
    for (int64_t e = 0; e < c.lengths[static_cast<size_t>(i)] * kv_row; ++e) {
      kc.ptr<float>()[base + e] = as_kv(2.0f * dist(rng));
      vc.ptr<float>()[base + e] = as_kv(dist(rng));
    }
  }
  const HostBuffer q = random_tensor({n_seqs, c.n_q_heads, c.head_dim}, seed + 1, -2, 2);
  HostBuffer want(DType::kF32, {n_seqs, c.n_q_heads, c.head_dim});
  attention_decode_batch({.q = q.view(), .k_cache = kc.view(), .v_cache = vc.view(),
                          .slots = TensorView(slots.data(), DType::kI32, {n_seqs}),
                          .lengths = TensorView(const_cast<int32_t*>(c.lengths.data()), DType::kI32, {n_seqs}),
                          .out = want.view()});
  DeviceBuffer dk = to_device(kc, kv_dtype), dv = to_device(vc, kv_dtype);  // NaN stays NaN in bf16
  DeviceBuffer dq = to_device(q), dslots = ints_to_device(slots, DType::kI32), dlen = ints_to_device(c.lengths, DType::kI32);
  DeviceBuffer dout(DType::kF32, {n_seqs, c.n_q_heads, c.head_dim});
  const int32_t max_len = *std::max_element(c.lengths.begin(), c.lengths.end());
  // The workspace size the op promises, for whichever kernel the dtype picks.
  const int64_t ws_floats = attention_decode_batch_workspace_floats(n_seqs, c.n_q_heads, c.n_kv_heads, c.head_dim, max_len);
  ASSERT_GT(ws_floats, 0);
  DeviceBuffer dws(DType::kF32, {ws_floats});
  std::string what = "generic decode heads " + std::to_string(c.n_q_heads) + "/" + std::to_string(c.n_kv_heads) +
                     " d " + std::to_string(c.head_dim) + " kv " + dtype_name(kv_dtype) + " lengths";
  for (int32_t l : c.lengths) what += " " + std::to_string(l);
  for (int run = 0; run < 3; ++run) {  // max_length 0 (capacity), max_length = the longest, the explicit workspace
    poison_nan(dout.view());
    AttentionDecodeBatchArgs args{.q = dq.view(), .k_cache = dk.view(), .v_cache = dv.view(), .slots = dslots.view(),
                                  .lengths = dlen.view(), .out = dout.view(), .max_length = run == 0 ? 0 : max_len};
    if (run == 2) args.workspace = dws.view();
    if (tensor_core_shape(kv_dtype, c.head_dim)) cuda::attention_decode_batch_generic(args);
    else attention_decode_batch(args);
    const HostBuffer got = to_host(dout.view());
    EXPECT_TENSOR_NEAR(got.view(), want.view(), kGenericAtol, kGenericRtol) << what << " run " << run << " vs CPU twin";
    if (run != 0) continue;
    for (int64_t i = 0; i < n_seqs; ++i) {  // float64, per sequence: one query at position len - 1
      const int64_t slot = slots[static_cast<size_t>(i)];
      HostBuffer ref(DType::kF32, {1, q_row}), got_i(DType::kF32, {1, q_row});
      reference_rows(q.ptr<float>() + i * q_row, kc.ptr<float>() + slot * slot_elems, vc.ptr<float>() + slot * slot_elems,
                     ref.ptr<float>(), {0}, c.n_q_heads, c.n_kv_heads, c.head_dim, c.lengths[static_cast<size_t>(i)] - 1);
      std::copy_n(got.ptr<float>() + i * q_row, q_row, got_i.ptr<float>());
      EXPECT_TRUE(finite_and_close_l2(got_i, ref, kGenericRelL2)) << what << " sequence " << i << " vs float64";
    }
  }
}

TEST(OpsCuda, GenericAttentionDecodeBatchMatchesCpuAndFloat64) {
  REQUIRE_CUDA();
  const GenericDecodeCase cases[] = {
      {6, 6, 48, 300, {1, 7, 256, 129}},   // stories15M: MHA, 6 heads of 48
      {8, 2, 80, 1100, {1037, 1, 500}},    // 4:1
      {12, 2, 96, 2000, {1999, 64, 65}},   // 6:1
      {4, 4, 32, 50, {50, 3}},
      {8, 8, 64, 700, {700, 1, 33}},
      {32, 8, 128, 5000, {4097, 7}},       // Llama-3-8B's shape
      {40, 2, 256, 300, {300, 17}},        // 20:1: two CTAs per KV head
      {2, 1, 1, 20, {20, 1}},              // head_dim 1
      {4, 2, 33, 70, {70, 9}}};            // odd head_dim
  uint64_t seed = 200;
  for (const GenericDecodeCase& c : cases)
    for (DType kv_dtype : {DType::kF32, DType::kBF16}) run_generic_decode_case(c, kv_dtype, seed++);
}

TEST(OpsCuda, GenericAttentionDecodeBatchInvalidSequenceGivesNaNOnly) {
  REQUIRE_CUDA();
  const int64_t n_q_heads = 6, n_kv_heads = 6, head_dim = 48, capacity = 100, row = n_q_heads * head_dim;
  auto q = random_tensor({5, n_q_heads, head_dim}, 210, -2, 2);
  auto kv = random_tensor({2, capacity, n_kv_heads, head_dim}, 211);
  DeviceBuffer dq = to_device(q), dk = to_device(kv), dv = to_device(kv);
  // valid; slot 5 of 2; length 101 > capacity; slot -1; length 0
  DeviceBuffer dslots = ints_to_device(std::vector<int32_t>{1, 5, 1, -1, 0}, DType::kI32);
  DeviceBuffer dlen = ints_to_device(std::vector<int32_t>{10, 10, 101, 10, 0}, DType::kI32);
  DeviceBuffer dout(DType::kF32, {5, n_q_heads, head_dim});
  poison_nan(dout.view());
  attention_decode_batch({.q = dq.view(), .k_cache = dk.view(), .v_cache = dv.view(), .slots = dslots.view(),
                          .lengths = dlen.view(), .out = dout.view()});
  HostBuffer got = to_host(dout.view());
  // sequence 0 is attention over keys [0, 10) of slot 1
  HostBuffer want(DType::kF32, {n_q_heads, head_dim});
  const int64_t slot_elems = capacity * n_kv_heads * head_dim;
  attention_decode({.q = TensorView(q.ptr<float>(), DType::kF32, {n_q_heads, head_dim}),
                    .k = TensorView(kv.ptr<float>() + slot_elems, DType::kF32, {10, n_kv_heads, head_dim}),
                    .v = TensorView(kv.ptr<float>() + slot_elems, DType::kF32, {10, n_kv_heads, head_dim}),
                    .out = want.view()});
  EXPECT_TRUE(testing::tensors_near(got.ptr<float>(), want.ptr<float>(), static_cast<size_t>(row), kGenericAtol,
                                    kGenericRtol));
  for (int64_t s = 1; s < 5; ++s)
    for (int64_t e = 0; e < row; ++e) ASSERT_TRUE(std::isnan(got.ptr<float>()[s * row + e])) << "sequence " << s;
  // A length past max_length's splits (max_length 1: one split of 64 keys) is NaN too, not a silent truncation.
  DeviceBuffer dlen100 = ints_to_device(std::vector<int32_t>{100}, DType::kI32);
  DeviceBuffer dslot0 = ints_to_device(std::vector<int32_t>{0}, DType::kI32);
  DeviceBuffer dout1(DType::kF32, {1, n_q_heads, head_dim});
  attention_decode_batch({.q = TensorView(dq.data(), DType::kF32, {1, n_q_heads, head_dim}, dq.view().device),
                          .k_cache = dk.view(), .v_cache = dv.view(), .slots = dslot0.view(), .lengths = dlen100.view(),
                          .out = dout1.view(), .max_length = 1});
  HostBuffer got1 = to_host(dout1.view());
  for (int64_t e = 0; e < row; ++e) ASSERT_TRUE(std::isnan(got1.ptr<float>()[e]));
}

TEST(OpsCuda, GenericAttentionDecodeMatchesCpu) {
  REQUIRE_CUDA();
  struct Case { int64_t n_q_heads, n_kv_heads, head_dim; };
  for (const Case& c : {Case{6, 6, 48}, Case{12, 2, 96}, Case{32, 8, 128}}) {
    for (int64_t kv_len : {1, 7, 1500}) {
      const uint64_t seed = static_cast<uint64_t>(220 + kv_len + c.head_dim);
      auto q = random_tensor({c.n_q_heads, c.head_dim}, seed, -2, 2);
      auto k = random_tensor({kv_len, c.n_kv_heads, c.head_dim}, seed + 1, -2, 2);
      auto v = random_tensor({kv_len, c.n_kv_heads, c.head_dim}, seed + 2);
      HostBuffer want(DType::kF32, {c.n_q_heads, c.head_dim});
      attention_decode({.q = q.view(), .k = k.view(), .v = v.view(), .out = want.view()});
      DeviceBuffer dq = to_device(q), dk = to_device(k), dv = to_device(v);  // f32 K/V: the generic kernels
      DeviceBuffer dout(DType::kF32, {c.n_q_heads, c.head_dim});
      poison_nan(dout.view());
      attention_decode({.q = dq.view(), .k = dk.view(), .v = dv.view(), .out = dout.view()});
      EXPECT_TENSOR_NEAR(to_host(dout.view()).view(), want.view(), kGenericAtol, kGenericRtol)
          << "d " << c.head_dim << " kv_len " << kv_len;
    }
  }
}

// The generic kernel against the tensor-core one on what both take (bf16 K/V, head_dim 64/128): the same
// answer within the tensor-core kernel's bf16 rounding.
TEST(OpsCuda, GenericAndTensorCoreAttentionAgree) {
  REQUIRE_CUDA();
  for (int64_t head_dim : {64, 128}) {
    const int64_t n_q = 300, q_start = 200, kv_len = q_start + n_q, n_q_heads = 16, n_kv_heads = 4;
    auto q = random_tensor({n_q, n_q_heads, head_dim}, 230, -2, 2);
    auto kv = random_tensor({kv_len, n_kv_heads, head_dim}, 231, -2, 2);
    DeviceBuffer dq = to_device(q), dk = to_device(kv, DType::kBF16), dv = to_device(kv, DType::kBF16);
    DeviceBuffer a(DType::kF32, {n_q, n_q_heads, head_dim}), b(DType::kF32, {n_q, n_q_heads, head_dim});
    poison_nan(a.view());
    poison_nan(b.view());
    attention_prefill({.q = dq.view(), .k = dk.view(), .v = dv.view(), .out = a.view(), .q_start = q_start});
    cuda::attention_prefill_generic({.q = dq.view(), .k = dk.view(), .v = dv.view(), .out = b.view(), .q_start = q_start});
    EXPECT_TRUE(finite_and_close_l2(to_host(a.view()), to_host(b.view()), kBf16RelL2)) << "head_dim " << head_dim;
  }
}

TEST(OpsCuda, AttentionRejectsWhatNoKernelTakes) {
  REQUIRE_CUDA();
  DeviceBuffer q(DType::kF32, {4, 2, 48}), k32(DType::kF32, {4, 2, 48}), k16(DType::kBF16, {4, 2, 48});
  DeviceBuffer out(DType::kF32, {4, 2, 48});
  // K f32 with V bf16
  EXPECT_THROW(attention_prefill({.q = q.view(), .k = k32.view(), .v = k16.view(), .out = out.view()}), Error);
  // head_dim 257
  DeviceBuffer q257(DType::kF32, {1, 1, 257}), k257(DType::kF32, {1, 1, 257}), o257(DType::kF32, {1, 1, 257});
  EXPECT_THROW(attention_prefill({.q = q257.view(), .k = k257.view(), .v = k257.view(), .out = o257.view()}), Error);
  EXPECT_THROW(attention_decode({.q = q257.view().reshape({1, 257}), .k = k257.view(), .v = k257.view(),
                                 .out = o257.view().reshape({1, 257})}),
               Error);
  // the tensor-core variants take bf16 K/V at head_dim 64/128 only
  EXPECT_THROW(cuda::attention_prefill_with_variant({.q = q.view(), .k = k32.view(), .v = k32.view(), .out = out.view()}, 1),
               Error);
  // variant numbers that do not exist (4 was removed)
  DeviceBuffer q64(DType::kF32, {4, 2, 64}), k64(DType::kBF16, {4, 2, 64}), o64(DType::kF32, {4, 2, 64});
  for (int variant : {0, 4, 7})
    EXPECT_THROW(cuda::attention_prefill_with_variant({.q = q64.view(), .k = k64.view(), .v = k64.view(), .out = o64.view()},
                                                      variant),
                 Error);
}

}  // namespace
}  // namespace skv
