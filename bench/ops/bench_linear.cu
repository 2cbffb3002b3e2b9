// linear at Llama-3.1-8B's projection shapes with bf16 weights: n = 1 and 8 (decode: bytes = the weights, vs
// streaming-read bandwidth; weights rotated among copies larger than L2) and n = 4096 (prefill: FLOPs vs the dense
// bf16 GEMM rate). Paths: cuBLAS, and for n <= 8 the small-n kernel in each of its CTA shapes (linear.cu's
// kGemvShapes*, gemv_shape_override; shape 0 is the default) with programmatic dependent launch (back-to-back
// calls: each call's first weight loads overlap the previous call's end, as in a decode step), and shape 0
// without it.
#include <cstdio>
#include <string>
#include <vector>

#include "bench/ops/bench_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/ops.h"

using namespace skv;

int main() {
  if (!bench::require_gpu()) return 0;
  try {
    const bench::Ceilings ceil = bench::measure_ceilings(true);
    const size_t l2 = device_properties(0).l2_cache_bytes;
    struct Proj { const char* name; int64_t in, out; };
    for (Proj p : {Proj{"qkv", 4096, 6144}, Proj{"o", 4096, 4096}, Proj{"gate_up", 4096, 28672}, Proj{"down", 14336, 4096}}) {
      const size_t w_bytes = static_cast<size_t>(p.in * p.out) * 2;
      int64_t copies = 1;
      while (copies < 16 && static_cast<size_t>(copies) * w_bytes < 4 * l2) ++copies;
      std::vector<DeviceBuffer> ws;
      for (int64_t c = 0; c < copies; ++c) {
        ws.emplace_back(DType::kBF16, Shape{p.out, p.in});
        bench::fill_random(ws.back().view(), 100 + static_cast<uint64_t>(c), -0.05f, 0.05f);
      }
      for (int64_t n : {1, 4, 8, 4096}) {
        DeviceBuffer x(DType::kF32, {n, p.in}), out(DType::kF32, {n, p.out});
        bench::fill_random(x.view(), 7);
        reserve_scratch(ScratchSlot::kLinearInput, static_cast<size_t>(n * p.in) * 2);
        // variant 0: cuBLAS; 1: shape 0 without PDL; 2..6: shapes 0..4 with PDL
        for (int variant = 0; variant <= 6; ++variant) {
          const int path = variant == 0 ? 1 : 2;
          const bool pdl = variant >= 2;
          const int shape = variant >= 2 ? variant - 2 : 0;
          if (path == 2 && n > 8) continue;
          set_programmatic_launch(pdl);
          cuda::gemv_shape_override() = shape;
          int64_t it = 0;
          auto call = [&] {
            cuda::linear_with_path({.x = x.view(), .w = ws[static_cast<size_t>(it++ % copies)].view(), .out = out.view()}, path);
          };
          const bool decode = n <= 8;
          const double ms = bench::time_ms(call, decode ? 50 : 10, decode ? 10 : 2, 3);
          const std::string label = variant == 0 ? "cuBLAS" : "shape" + std::to_string(shape) + (pdl ? "+pdl" : "");
          const std::string name = std::string("linear_") + p.name + "_n" + std::to_string(n) + "_" + label;
          if (decode) {
            const double gbs = (static_cast<double>(w_bytes) + static_cast<double>(n * (p.in + p.out)) * 4) / (ms * 1e6);
            std::printf("linear %-7s n %4lld %-11s: %.4f ms, %.0f GB/s = %.1f%% of streaming read\n", p.name,
                        static_cast<long long>(n), label.c_str(), ms, gbs, 100 * gbs / ceil.read_gbs);
            bench::print_result(name, gbs, "GB/s", ceil.read_gbs, "read");
          } else {
            const double tflops = 2.0 * n * p.in * p.out / (ms * 1e9);
            std::printf("linear %-7s n %4lld %-11s: %.4f ms, %.0f TFLOP/s = %.1f%% of dense bf16\n", p.name,
                        static_cast<long long>(n), "cuBLAS", ms, tflops, 100 * tflops / ceil.bf16_tflops);
            bench::print_result(name, tflops, "TFLOP/s", ceil.bf16_tflops, "gemm");
          }
        }
        set_programmatic_launch(true);
        cuda::gemv_shape_override() = 0;
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
