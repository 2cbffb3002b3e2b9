// skv_dump_logits MODEL_DIR TOKENS_CSV OUT_FILE
// Runs the engine's exact-attention prompt forward over the tokens and writes the logits of every position
// as float32 little-endian [n_tokens, vocab] (no header), for tests/reference/check_forward.py to compare.
#include <bit>
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

#include "core/error.h"
#include "loader/model_loader.h"
#include "model/llama_model.h"

static_assert(std::endian::native == std::endian::little, "skv_dump_logits writes host-order floats");

namespace {

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

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: skv_dump_logits MODEL_DIR TOKENS_CSV OUT_FILE\n";
    return 2;
  }
  try {
    const std::filesystem::path dir = argv[1];
    const std::vector<int32_t> tokens = read_tokens(argv[2]);
    auto loaded = std::make_shared<const skv::LoadedModel>(skv::load_model(dir));
    skv::LlamaModel model(loaded);
    const std::vector<float> logits = model.prompt_logits(std::span<const int32_t>(tokens));
    if (logits.empty() || logits.size() % tokens.size() != 0) {
      throw skv::Error(skv::ErrorCode::kInternal, "prompt_logits returned " + std::to_string(logits.size()) +
                                                      " values for " + std::to_string(tokens.size()) + " tokens");
    }
    std::ofstream out(argv[3], std::ios::binary | std::ios::trunc);
    if (!out) throw skv::Error(skv::ErrorCode::kNotFound, std::string("cannot create ") + argv[3]);
    out.write(reinterpret_cast<const char*>(logits.data()),
              static_cast<std::streamsize>(logits.size() * sizeof(float)));
    if (!out) throw skv::Error(skv::ErrorCode::kResource, std::string("write failed: ") + argv[3]);
    std::cout << "tokens " << tokens.size() << " vocab " << logits.size() / tokens.size() << "\n";
  } catch (const skv::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
