// Prefill attention (attention_prefill) at Llama-3.1-8B's shape: causal, 32 query heads, 8 KV heads, head_dim 128,
// 32K tokens in one call (q f32 as the model passes it, and bf16), each kernel variant. FLOPs counted =
// 4 * head_dim * n_q_heads * (number of visible (query, key) pairs), compared with the dense bf16 GEMM rate
// measured in the same run (target >= 40%). Also a chunked-prefill shape (4096 queries after 28K cached keys).
#include <cstdio>

#include "bench/ops/bench_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/ops.h"

using namespace skv;

int main() {
  if (!bench::require_gpu()) return 0;
  try {
    const bench::Ceilings ceil = bench::measure_ceilings(true);
    const int64_t n_q_heads = 32, n_kv_heads = 8, head_dim = 128;
    struct Shape { int64_t n_q, q_start; };
    for (Shape s : {Shape{32768, 0}, Shape{4096, 28672}}) {
      const int64_t kv_len = s.q_start + s.n_q;
      DeviceBuffer q32(DType::kF32, {s.n_q, n_q_heads, head_dim}), q16(DType::kBF16, {s.n_q, n_q_heads, head_dim});
      DeviceBuffer k(DType::kBF16, {kv_len, n_kv_heads, head_dim}), v(DType::kBF16, {kv_len, n_kv_heads, head_dim});
      DeviceBuffer out(DType::kF32, {s.n_q, n_q_heads, head_dim});
      bench::fill_random(q32.view(), 1, -2, 2);
      bench::fill_random(q16.view(), 2, -2, 2);
      bench::fill_random(k.view(), 3, -2, 2);
      bench::fill_random(v.view(), 4);
      // visible pairs: query i sees q_start + i + 1 keys
      const double pairs = static_cast<double>(s.n_q) * s.q_start + static_cast<double>(s.n_q) * (s.n_q + 1) / 2;
      const double flops = 4.0 * head_dim * n_q_heads * pairs;
      for (int variant : {1, 2, 3, 5, 6}) {  // 1-3 mma.sync, 5-6 wgmma
        for (bool qf32 : {true, false}) {
          if (!qf32 && variant != 1 && variant < 5) continue;
          AttentionPrefillArgs args{.q = qf32 ? q32.view() : q16.view(), .k = k.view(), .v = v.view(), .out = out.view(),
                                    .q_start = s.q_start};
          const double ms = bench::time_ms([&] { cuda::attention_prefill_with_variant(args, variant); }, 7, 1, 2);
          const double tflops = flops / (ms * 1e9);
          std::printf("prefill attention %5lld queries after %5lld keys, q %s, variant %d: %.2f ms, %.0f TFLOP/s = %.1f%% of dense bf16\n",
                      static_cast<long long>(s.n_q), static_cast<long long>(s.q_start), qf32 ? "f32 " : "bf16", variant,
                      ms, tflops, 100 * tflops / ceil.bf16_tflops);
          bench::print_result("prefill_" + std::to_string(s.n_q) + "_after_" + std::to_string(s.q_start) + (qf32 ? "_qf32" : "_qbf16") +
                                  "_v" + std::to_string(variant),
                              tflops, "TFLOP/s", ceil.bf16_tflops, "gemm");
        }
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
