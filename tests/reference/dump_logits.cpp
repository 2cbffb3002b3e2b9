// skv_dump_logits [--device cpu|cuda|cuda:N] [--weight-dtype bf16|f32] [--kv-dtype bf16|f32] [--last-only]
//                 [--prefill-chunk N] MODEL_DIR TOKENS_CSV OUT_FILE [TOKENS_CSV OUT_FILE ...]
// Runs the engine's exact-attention prompt forward over the tokens and writes the logits of every position
// as float32 little-endian [n_tokens, vocab] (no header), for tests/reference/check_forward.py to compare.
// --last-only writes the last position's logits alone ([vocab]), through prefill (no all-position logits: a
// 128K vocabulary times 32K positions would be 16 GiB). Several TOKENS/OUT pairs share one model load.
// --kv-dtype is the CUDA KV cache's (default bf16); the CPU's is always f32 (bf16 there is a usage error).
// The defaults (cpu; the 3-argument form) are what check_forward.py and the reference_forward test use.
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "backend/device.h"
#include "core/error.h"
#include "kv/shadow_kv_factory.h"
#include "loader/model_loader.h"
#include "model/llama_model.h"
#include "model/rope_frequencies.h"

static_assert(std::endian::native == std::endian::little, "skv_dump_logits writes host-order floats");

namespace {

constexpr const char* kUsage =
    "usage: skv_dump_logits [--device cpu|cuda|cuda:N] [--weight-dtype bf16|f32] [--kv-dtype bf16|f32] "
    "[--last-only] [--prefill-chunk N] MODEL_DIR TOKENS_CSV OUT_FILE [TOKENS_CSV OUT_FILE ...]\n";

// Token ids separated by commas and/or whitespace.
std::vector<int32_t> read_tokens(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw skv::Error(skv::ErrorCode::kNotFound, "cannot open tokens file " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  for (char& c : text) {
    if (c == ',') c = ' ';
  }
  std::istringstream items(text);
  std::vector<int32_t> tokens;
  std::string item;
  while (items >> item) {
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < INT32_MIN || v > INT32_MAX) {
      throw skv::Error(skv::ErrorCode::kParse, "bad token id '" + item + "' in " + path.string());
    }
    tokens.push_back(static_cast<int32_t>(v));
  }
  if (tokens.empty()) throw skv::Error(skv::ErrorCode::kInvalidArgument, "no tokens in " + path.string());
  return tokens;
}

struct Args {
  skv::DeviceId device{};
  skv::DType weight_dtype = skv::DType::kBF16;
  std::string kv_dtype;  // "bf16", "f32" or empty: the device's (CUDA bf16, CPU f32)
  bool last_only = false;
  int64_t prefill_chunk = 0;  // 0: ModelOptions' default
  std::vector<std::string> positional;
};

// Returns false on a usage error (message already printed).
bool parse_args(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) {
        std::cerr << "error: " << s << " needs a value\n" << kUsage;
        return false;
      }
      out = argv[++i];
      return true;
    };
    if (s == "--last-only") {
      a.last_only = true;
    } else if (s == "--device") {
      std::string v;
      if (!value(v)) return false;
      if (v == "cpu") {
        a.device = {};
      } else if (v == "cuda") {
        a.device = {skv::DeviceKind::kCuda, 0};
      } else if (v.rfind("cuda:", 0) == 0 && v.size() > 5 && v.size() <= 8 &&
                 v.find_first_not_of("0123456789", 5) == std::string::npos) {
        a.device = {skv::DeviceKind::kCuda, std::stoi(v.substr(5))};
      } else {
        std::cerr << "error: --device must be cpu, cuda or cuda:N, got '" << v << "'\n" << kUsage;
        return false;
      }
    } else if (s == "--weight-dtype") {
      std::string v;
      if (!value(v)) return false;
      if (v == "bf16") {
        a.weight_dtype = skv::DType::kBF16;
      } else if (v == "f32") {
        a.weight_dtype = skv::DType::kF32;
      } else {
        std::cerr << "error: --weight-dtype must be bf16 or f32, got '" << v << "'\n" << kUsage;
        return false;
      }
    } else if (s == "--kv-dtype") {
      if (!value(a.kv_dtype)) return false;
      if (a.kv_dtype != "bf16" && a.kv_dtype != "f32") {
        std::cerr << "error: --kv-dtype must be bf16 or f32, got '" << a.kv_dtype << "'\n" << kUsage;
        return false;
      }
    } else if (s == "--prefill-chunk") {
      std::string v;
      if (!value(v)) return false;
      std::size_t used = 0;
      long long n = 0;
      try {
        n = std::stoll(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != v.size() || n < 1 || n > 65536) {
        std::cerr << "error: --prefill-chunk must be in [1, 65536], got '" << v << "'\n" << kUsage;
        return false;
      }
      a.prefill_chunk = n;
    } else if (s == "--help" || s == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (s.size() > 1 && s[0] == '-' && s[1] == '-') {
      std::cerr << "error: unknown option " << s << "\n" << kUsage;
      return false;
    } else {
      a.positional.push_back(s);
    }
  }
  if (a.kv_dtype == "bf16" && a.device.kind != skv::DeviceKind::kCuda) {
    std::cerr << "error: --kv-dtype bf16: a bf16 KV cache is CUDA-only (the CPU backend keeps K/V in f32)\n" << kUsage;
    return false;
  }
  if (a.positional.size() < 3 || a.positional.size() % 2 != 1) {
    std::cerr << kUsage;
    return false;
  }
  return true;
}

void write_floats(const std::string& path, const float* data, size_t n) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw skv::Error(skv::ErrorCode::kNotFound, "cannot create " + path);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(float)));
  if (!out) throw skv::Error(skv::ErrorCode::kResource, "write failed: " + path);
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!parse_args(argc, argv, args)) return 2;
  try {
    const std::filesystem::path dir = args.positional[0];
    // Read every tokens file before loading anything: a bad file fails fast.
    std::vector<std::vector<int32_t>> inputs;
    for (size_t i = 1; i < args.positional.size(); i += 2) inputs.push_back(read_tokens(args.positional[i]));

    const bool cuda = args.device.kind == skv::DeviceKind::kCuda;
    if (cuda) skv::set_device(args.device.index);
    using clock = std::chrono::steady_clock;
    const auto t_load = clock::now();
    auto loaded = std::make_shared<const skv::LoadedModel>(skv::load_model(dir));
    skv::ModelOptions options;
    options.device = args.device;
    options.weight_dtype = args.weight_dtype;
    const skv::DType kv_dtype = args.kv_dtype == "f32" ? skv::DType::kF32 : skv::DType::kBF16;  // CUDA only
    options.kv_dtype = kv_dtype;
    if (args.prefill_chunk > 0) options.prefill_chunk_tokens = args.prefill_chunk;
    skv::LlamaModel model(loaded, options);
    if (cuda) skv::synchronize_device(args.device.index);
    const double load_s = std::chrono::duration<double>(clock::now() - t_load).count();
    const skv::ModelConfig& c = model.config();
    std::cout << "model loaded in " << load_s << " s\n";

    for (size_t k = 0; k < inputs.size(); ++k) {
      const std::vector<int32_t>& tokens = inputs[k];
      const std::string& out_path = args.positional[2 + 2 * k];
      for (int32_t t : tokens) {
        if (t < 0 || t >= c.vocab_size)
          throw skv::Error(skv::ErrorCode::kInvalidArgument,
                           "token " + std::to_string(t) + " in " + args.positional[1 + 2 * k] +
                               " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
      }
      const auto t0 = clock::now();
      std::vector<float> logits;
      if (args.last_only) {
        const int64_t n = static_cast<int64_t>(tokens.size());
        skv::KvCacheShape shape{c.n_layers, c.n_q_heads, c.n_kv_heads, c.head_dim, skv::rope_inv_freq(c),
                                skv::rope_position_scale(c)};
        skv::AttentionOptions cache_options;
        cache_options.device = args.device;
        cache_options.max_sequences = 1;
        cache_options.max_tokens = n;
        cache_options.kv_dtype = kv_dtype;
        std::unique_ptr<skv::KvCache> cache = skv::make_kv_cache(shape, cache_options);
        cache->add_sequence(0, n);
        logits.assign(static_cast<size_t>(c.vocab_size), 0.0f);
        model.prefill(*cache, 0, std::span<const int32_t>(tokens), std::span<float>(logits));
        if (cuda) skv::synchronize_device(args.device.index);
      } else {
        logits = model.prompt_logits(std::span<const int32_t>(tokens));
        if (logits.empty() || logits.size() % tokens.size() != 0) {
          throw skv::Error(skv::ErrorCode::kInternal, "prompt_logits returned " + std::to_string(logits.size()) +
                                                          " values for " + std::to_string(tokens.size()) + " tokens");
        }
      }
      const double secs = std::chrono::duration<double>(clock::now() - t0).count();
      write_floats(out_path, logits.data(), logits.size());
      const size_t vocab = args.last_only ? logits.size() : logits.size() / tokens.size();
      std::cout << "tokens " << tokens.size() << " vocab " << vocab << (args.last_only ? " last-only" : "")
                << " seconds " << secs << "\n";
    }
  } catch (const skv::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
