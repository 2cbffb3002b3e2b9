// Decode attention (attention_decode_batch) at Llama-3.1-8B's shape: 32 query heads, 8 KV heads, head_dim 128,
// bf16 KV cache, contexts 32K and 128K, batch 1 and 8. Bytes per step = every sequence's K and V read once
// (+ q and out), compared with the streaming-read and copy bandwidth measured in the same run (target >= 85%).
// Several caches are rotated so that each timed call reads memory not left in L2 by the previous one. Each case
// also times a plain streaming read of exactly the bytes a call reads (same rotation, back-to-back launches):
// the ceiling at that size, ramp-up and tail included (at 32K batch 1, 134 MB, it is well below the 2 GiB rate;
// bench/results/2026-11-26-h200-decode-merge-early.md).
// The default plan is timed with programmatic dependent launch off and on (back-to-back calls, as in a decode
// step); `--sweep` adds a sweep of the split plan's target CTA count (decode_splits.h) at batch 1 and 8.
#include <cstdio>
#include <cstring>
#include <vector>

#include "bench/ops/bench_common.cuh"
#include "ops/cuda/decode_splits.h"
#include "ops/ops.h"

using namespace skv;

int main(int argc, char** argv) {
  if (!bench::require_gpu()) return 0;
  const bool sweep = argc > 1 && std::strcmp(argv[1], "--sweep") == 0;
  try {
    const bench::Ceilings ceil = bench::measure_ceilings(false);
    const int64_t n_q_heads = 32, n_kv_heads = 8, head_dim = 128;
    const size_t l2 = device_properties(0).l2_cache_bytes;
    const int64_t sms = device_properties(0).multiprocessors;
    // target -1: the default plan without PDL, 0: the default plan with PDL; then multiples of the SM count
    // (1 = one CTA per SM in one wave).
    for (int64_t target : {int64_t{-1}, int64_t{0}, sms, 2 * sms, 3 * sms, 4 * sms, 6 * sms, 8 * sms})
    for (int64_t ctx : {32768, 131072}) {
      for (int64_t batch : {1, 8}) {
        if (target > 0 && (!sweep || (batch == 8 && ctx == 131072))) continue;  // the sweep's point is small grids
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
        int64_t rit = 0;
        const size_t slab = cache_bytes / 2 / 16;  // uint4 per K (or V) region of one copy
        const double read_ms = bench::time_ms([&] {
          const int64_t c = rit++ % copies;
          bench::read_kernel<<<static_cast<unsigned>(sms * 4), 512>>>(static_cast<const uint4*>(k.data()) + c * slab,
                                                                      slab, static_cast<const uint4*>(v.data()) + c * slab,
                                                                      slab, out.ptr<float>());
        }, 30, 4, 3);
        const double bytes = static_cast<double>(cache_bytes) + 2.0 * batch * n_q_heads * head_dim * 4;
        const double gbs = bytes / (ms * 1e6);
        std::printf("decode attention ctx %6lld batch %lld target %4lld CTAs%s (%d splits of %d keys, %lld CTAs): %.3f ms, "
                    "%.0f GB/s = %.1f%% of streaming read, %.1f%% of copy\n",
                    static_cast<long long>(ctx), static_cast<long long>(batch), static_cast<long long>(target),
                    target == -1 ? " no PDL" : target == 0 ? " PDL" : "", plan.n_splits, plan.split_len, static_cast<long long>(plan.n_splits * batch * n_kv_heads), ms, gbs,
                    100 * gbs / ceil.read_gbs, 100 * gbs / ceil.copy_gbs);
        std::printf("   same bytes, streaming read: %.3f ms = %.1f%% of streaming read; the kernel at %.1f%% of it\n",
                    read_ms, 100 * bytes / (read_ms * 1e6) / ceil.read_gbs, 100 * read_ms / ms);
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
