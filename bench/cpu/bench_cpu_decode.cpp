// CPU decode and prefill speed against the memory-bandwidth bound.
// Decode reads every weight once per token, so its floor is weight_bytes / bandwidth, with the bandwidth
// measured here by a large memcpy (bytes read + bytes written). Prints a Markdown table and, with --json, JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/buffer.h"
#include "engine/sampler.h"
#include "kv/full_kv_cache.h"
#include "loader/model_loader.h"
#include "model/llama_model.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Median over repetitions of copying a 256 MiB buffer (far beyond the caches); counts read + write bytes.
double measure_memcpy_gbps() {
  const size_t bytes = size_t{256} << 20;
  skv::HostBuffer src(bytes), dst(bytes);
  std::memset(src.data(), 1, bytes);
  std::memcpy(dst.data(), src.data(), bytes);  // warm-up, pages faulted in
  std::vector<double> rates;
  for (int i = 0; i < 7; ++i) {
    const auto t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    rates.push_back(2.0 * static_cast<double>(bytes) / seconds_since(t0) / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

// Median read-only bandwidth: summing a 256 MiB buffer on every core. Decode only reads weights, and a
// read stream avoids the write-allocate traffic a memcpy pays, so this is the tighter ceiling.
double measure_read_gbps() {
  const size_t n = (size_t{256} << 20) / sizeof(float);
  skv::HostBuffer buf(n * sizeof(float));
  float* p = buf.ptr<float>();
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<float>(i & 1023);
  std::vector<double> rates;
  volatile float sink = 0;
  for (int i = 0; i < 7; ++i) {
    const auto t0 = Clock::now();
    float total = 0;
#pragma omp parallel for simd reduction(+ : total) schedule(static)
    for (size_t j = 0; j < n; ++j) total += p[j];
    rates.push_back(static_cast<double>(n * sizeof(float)) / seconds_since(t0) / 1e9);
    sink = sink + total;
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir = SKV_DEFAULT_MODEL_DIR;
  int64_t n_decode = 200;
  int64_t n_prompt = 128;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model" && i + 1 < argc) model_dir = argv[++i];
    else if (a == "--tokens" && i + 1 < argc) n_decode = std::stoll(argv[++i]);
    else if (a == "--prompt-tokens" && i + 1 < argc) n_prompt = std::stoll(argv[++i]);
    else if (a == "--json") json = true;
    else {
      std::fprintf(stderr, "usage: bench_cpu_decode [--model DIR] [--tokens N] [--prompt-tokens N] [--json]\n");
      return 2;
    }
  }
  try {
    const double gbps = measure_memcpy_gbps();
    const double read_gbps = measure_read_gbps();
    auto loaded = std::make_shared<const skv::LoadedModel>(skv::load_model(model_dir));
    const skv::ModelConfig& c = loaded->config;
    skv::LlamaModel model(loaded);
    const double weight_bytes = static_cast<double>(model.weight_bytes_per_token());

    std::vector<int32_t> prompt(static_cast<size_t>(n_prompt));
    for (int64_t i = 0; i < n_prompt; ++i) prompt[static_cast<size_t>(i)] = static_cast<int32_t>(1 + (i * 7919) % (c.vocab_size - 1));
    std::vector<float> logits(static_cast<size_t>(c.vocab_size));
    double best_prefill = 1e30, best_decode = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      skv::FullKvCache cache(c.n_layers, c.n_kv_heads, c.head_dim);
      cache.add_sequence(0, n_prompt + n_decode);
      auto t0 = Clock::now();
      model.prefill(cache, 0, prompt, logits);
      best_prefill = std::min(best_prefill, seconds_since(t0));
      int32_t tok = skv::argmax(logits);
      t0 = Clock::now();
      for (int64_t i = 0; i < n_decode; ++i) {
        skv::DecodeBatch batch{{0}, {n_prompt + i}};
        model.decode(cache, batch, std::span<const int32_t>(&tok, 1), logits);
        tok = skv::argmax(logits);
      }
      best_decode = std::min(best_decode, seconds_since(t0));
    }
    const double ms_per_token = best_decode / static_cast<double>(n_decode) * 1e3;
    const double bound_ms = weight_bytes / (gbps * 1e9) * 1e3;
    const double achieved_gbps = weight_bytes / (ms_per_token * 1e-3) / 1e9;
    const double prefill_tps = static_cast<double>(n_prompt) / best_prefill;
    if (json) {
      nlohmann::json j{{"model", model_dir}, {"memcpy_gbps", gbps}, {"weight_bytes_per_token", weight_bytes},
                       {"decode_ms_per_token", ms_per_token}, {"decode_tokens_per_s", 1e3 / ms_per_token},
                       {"bound_ms_per_token", bound_ms}, {"read_gbps", read_gbps},
                       {"fraction_of_read_bound", weight_bytes / (read_gbps * 1e9) * 1e3 / ms_per_token}, {"fraction_of_bound", bound_ms / ms_per_token},
                       {"prefill_tokens_per_s", prefill_tps}, {"prompt_tokens", n_prompt}, {"decode_tokens", n_decode}};
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf("| measure | value |\n|---|---|\n");
      std::printf("| memcpy bandwidth (read + write) | %.2f GB/s |\n", gbps);
      std::printf("| read-only bandwidth (sum over 256 MiB, all cores) | %.2f GB/s |\n", read_gbps);
      std::printf("| weight bytes per decode token | %.1f MB |\n", weight_bytes / 1e6);
      std::printf("| decode bound (weights / bandwidth) | %.3f ms/token |\n", bound_ms);
      std::printf("| decode measured (best of 3, %lld tokens after a %lld-token prompt) | %.3f ms/token = %.1f tokens/s |\n",
                  static_cast<long long>(n_decode), static_cast<long long>(n_prompt), ms_per_token, 1e3 / ms_per_token);
      std::printf("| achieved weight bandwidth | %.2f GB/s |\n", achieved_gbps);
      std::printf("| fraction of the memcpy bound | %.2f |\n", bound_ms / ms_per_token);
      std::printf("| fraction of the read-only bound | %.2f |\n",
                  weight_bytes / (read_gbps * 1e9) * 1e3 / ms_per_token);
      std::printf("| prefill (%lld tokens) | %.0f tokens/s |\n", static_cast<long long>(n_prompt), prefill_tps);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
