// Decode attention (attention_decode_batch) at Llama-3.1-8B's shape: 32 query heads, 8 KV heads, head_dim 128,
// bf16 KV cache, contexts 32K and 128K, batch 1 and 8. Bytes per step = every sequence's K and V read once
// (+ q and out), compared with the streaming-read and copy bandwidth measured in the same run (target >= 85%).
// Several caches are rotated so that each timed call reads memory not left in L2 by the previous one.
// The default plan is timed with programmatic dependent launch off and on (back-to-back calls, as in a decode
// step); `--trace` prints per-CTA %globaltimer stamps of one call in a back-to-back chain (an experiment hook,
// decode_splits.h); `--sweep` adds a sweep of the split plan's target CTA count (decode_splits.h) at batch 1 and 8.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "bench/ops/bench_common.cuh"
#include "ops/cuda/decode_splits.h"
#include "ops/ops.h"

using namespace skv;

int main(int argc, char** argv) {
  if (!bench::require_gpu()) return 0;
  bool sweep = false, trace = false, layout = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--sweep") == 0) sweep = true;
    else if (std::strcmp(argv[i], "--trace") == 0) trace = true;
    else if (std::strcmp(argv[i], "--layout") == 0) layout = true;
    else if (std::strcmp(argv[i], "--static") == 0) cuda::decode_dynamic_tiles() = false;  // one split per CTA
    else {
      std::fprintf(stderr, "usage: bench_attention_decode [--sweep] [--trace] [--layout] [--static]\n");
      return 2;
    }
  }
  std::printf("tiles: %s\n", cuda::decode_dynamic_tiles() ? "dynamic" : "static splits");
  // --layout (experiment): the same bytes and grid read as 8 KV heads of one sequence (each head's rows 2 KB
  // apart) and as 1 KV head of 8 sequences (each head's rows contiguous), 4 query heads per KV head in both.
  try {
    const bench::Ceilings ceil = bench::measure_ceilings(false);
    const int64_t head_dim = 128;
    struct Shape { int64_t n_q_heads, n_kv_heads, batch; };
    const std::vector<Shape> shapes = layout ? std::vector<Shape>{{32, 8, 1}, {4, 1, 8}} : std::vector<Shape>{{32, 8, 1}, {32, 8, 8}};
    const size_t l2 = device_properties(0).l2_cache_bytes;
    const int64_t sms = device_properties(0).multiprocessors;
    // target -1: the default plan without PDL, 0: the default plan with PDL; then multiples of the SM count
    // (1 = one CTA per SM in one wave).
    for (int64_t target : {int64_t{-1}, int64_t{0}, sms, 2 * sms, 3 * sms, 4 * sms, 6 * sms, 8 * sms})
    for (int64_t ctx : {32768, 131072}) {
      for (const Shape& shape : shapes) {
        const int64_t n_q_heads = shape.n_q_heads, n_kv_heads = shape.n_kv_heads, batch = shape.batch;
        if (target > 0 && (!sweep || (batch == 8 && ctx == 131072))) continue;  // the sweep's point is small grids
        if (layout && target != 0) continue;
        set_programmatic_launch(target != -1);
        cuda::decode_split_target_ctas_override() = target > 0 ? target : 0;
        const cuda::DecodeSplitPlan plan = cuda::plan_decode_splits(batch, n_q_heads, n_kv_heads, ctx, 0);
        const size_t cache_bytes = static_cast<size_t>(batch * ctx * n_kv_heads * head_dim) * 2 * 2;
        // copies of the cache so that the bytes between two reads of one copy exceed 4x L2 (at most 8)
        int64_t copies = 1;
        while (copies < 8 && copies * cache_bytes < 4 * l2) ++copies;
        const int64_t n_slots = batch * copies;
        DeviceBuffer k(DType::kBF16, {n_slots, ctx, n_kv_heads, head_dim}), v(DType::kBF16, {n_slots, ctx, n_kv_heads, head_dim});
        bench::fill_random(k.view(), 10, -2, 2);
        bench::fill_random(v.view(), 11);
        DeviceBuffer q(DType::kF32, {batch, n_q_heads, head_dim}), out(DType::kF32, {batch, n_q_heads, head_dim});
        bench::fill_random(q.view(), 12, -2, 2);
        std::vector<DeviceBuffer> slot_sets;
        for (int64_t c = 0; c < copies; ++c) {
          std::vector<int32_t> s(static_cast<size_t>(batch));
          for (int64_t i = 0; i < batch; ++i) s[static_cast<size_t>(i)] = static_cast<int32_t>(c * batch + i);
          DeviceBuffer d(DType::kI32, {batch});
          copy_to_device(d.view(), TensorView(s.data(), DType::kI32, {batch}));
          slot_sets.push_back(std::move(d));
        }
        std::vector<int32_t> lens(static_cast<size_t>(batch), static_cast<int32_t>(ctx));
        DeviceBuffer d_len(DType::kI32, {batch});
        copy_to_device(d_len.view(), TensorView(lens.data(), DType::kI32, {batch}));
        int64_t it = 0;
        auto step = [&] {
          attention_decode_batch({.q = q.view(), .k_cache = k.view(), .v_cache = v.view(),
                                  .slots = slot_sets[static_cast<size_t>(it++ % copies)].view(), .lengths = d_len.view(),
                                  .out = out.view(), .max_length = ctx});
        };
        const double ms = bench::time_ms(step, 30, 4, 3);
        const double bytes = static_cast<double>(cache_bytes) + 2.0 * batch * n_q_heads * head_dim * 4;
        const double gbs = bytes / (ms * 1e6);
        if (layout) std::printf("[%lld KV head(s) x %lld sequence(s)] ", static_cast<long long>(n_kv_heads), static_cast<long long>(batch));
        std::printf("decode attention ctx %6lld batch %lld target %4lld CTAs%s (%d splits of %d keys, %lld CTAs): %.3f ms, "
                    "%.0f GB/s = %.1f%% of streaming read, %.1f%% of copy\n",
                    static_cast<long long>(ctx), static_cast<long long>(batch), static_cast<long long>(target),
                    target == -1 ? " no PDL" : target == 0 ? " PDL" : "", plan.n_splits, plan.split_len, static_cast<long long>(plan.n_splits * batch * n_kv_heads), ms, gbs,
                    100 * gbs / ceil.read_gbs, 100 * gbs / ceil.copy_gbs);
        if (trace && target == 0) {
          // One traced call at the end of a back-to-back chain: %globaltimer stamps per CTA (decode_splits.h).
          const int64_t n_ctas = plan.n_splits * batch * n_kv_heads * plan.head_units;
          const int64_t n_comb = batch * n_q_heads;
          DeviceBuffer tb(DType::kI64, {cuda::kDecodeTraceCombine + 2 * n_comb});
          SKV_CUDA_CHECK(cudaMemset(tb.data(), 0, static_cast<size_t>(tb.view().numel()) * 8));
          for (int i = 0; i < 4; ++i) step();
          cuda::decode_trace_buffer() = static_cast<unsigned long long*>(tb.data());
          step();
          cuda::decode_trace_buffer() = nullptr;
          for (int i = 0; i < 4; ++i) step();
          SKV_CUDA_CHECK(cudaDeviceSynchronize());
          std::vector<unsigned long long> h(static_cast<size_t>(tb.view().numel()));
          SKV_CUDA_CHECK(cudaMemcpy(h.data(), tb.data(), h.size() * 8, cudaMemcpyDeviceToHost));
          unsigned long long t0 = ~0ull;
          for (int64_t b = 0; b < n_ctas; ++b) t0 = std::min(t0, h[static_cast<size_t>(5 * b)]);
          const char* names[5] = {"entry", "after wait", "first tile", "loop done", "exit"};
          std::printf("  trace (us from the first CTA's entry; min / p10 / p50 / p90 / max over %lld CTAs):\n",
                      static_cast<long long>(n_ctas));
          for (int st = 0; st < 5; ++st) {
            std::vector<double> v;
            for (int64_t b = 0; b < n_ctas; ++b)
              if (h[static_cast<size_t>(5 * b + st)] != 0) v.push_back((h[static_cast<size_t>(5 * b + st)] - t0) * 1e-3);
            std::sort(v.begin(), v.end());
            if (v.empty()) continue;
            auto q = [&](double f) { return v[static_cast<size_t>(f * static_cast<double>(v.size() - 1))]; };
            std::printf("    %-10s %7.2f %7.2f %7.2f %7.2f %7.2f\n", names[st], q(0), q(0.1), q(0.5), q(0.9), q(1));
          }
          std::vector<double> ce, cx;
          for (int64_t c = 0; c < n_comb; ++c) {
            const unsigned long long a = h[static_cast<size_t>(cuda::kDecodeTraceCombine + 2 * c)];
            const unsigned long long b = h[static_cast<size_t>(cuda::kDecodeTraceCombine + 2 * c + 1)];
            if (a) ce.push_back((a - t0) * 1e-3);
            if (b) cx.push_back((b - t0) * 1e-3);
          }
          std::sort(ce.begin(), ce.end());
          std::sort(cx.begin(), cx.end());
          if (!ce.empty() && !cx.empty())
            std::printf("    combine: after wait %.2f-%.2f, exit %.2f-%.2f\n", ce.front(), ce.back(), cx.front(), cx.back());
        }
        bench::print_result("decode_ctx" + std::to_string(ctx) + "_b" + std::to_string(batch) + "_target" +
                                std::to_string(target),
                            gbs, "GB/s", ceil.read_gbs, "read");
      }
    }
    cuda::decode_split_target_ctas_override() = 0;
    set_programmatic_launch(true);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
