// Shared fixtures of the eval tests: the real tokenizers and the essay haystack.
#pragma once

#include <filesystem>
#include <map>
#include <stdexcept>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "eval/haystack.h"
#include "tokenizer/tokenizer.h"

namespace skv::eval::testing {

inline std::filesystem::path models_dir() { return SKV_MODELS_DIR; }
inline std::filesystem::path llama3_dir() { return models_dir() / "tokenizers" / "llama3_1"; }
inline std::filesystem::path qwen3_dir() { return models_dir() / "tokenizers" / "qwen3"; }
inline std::filesystem::path mistral_dir() { return models_dir() / "tokenizers" / "llama2"; }  // Mistral-7B-v0.1's
inline std::filesystem::path stories_dir() { return models_dir() / "stories15M"; }
inline std::filesystem::path essays_path() {
  return std::filesystem::path(SKV_SHARED_DATA_DIR) / "PaulGrahamEssays.json";
}

// Loaded once per test program (the Llama-3 tokenizer takes a moment).
inline const Tokenizer& tokenizer_at(const std::filesystem::path& dir) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[dir.string()];
  if (!t) {
    if (!std::filesystem::exists(dir / "tokenizer.json"))
      throw std::runtime_error((dir / "tokenizer.json").string() +
                               " is missing: run scripts/fetch_models.sh (and scripts/setup.sh for stories15M)");
    t = std::make_unique<Tokenizer>(Tokenizer::load(dir / "tokenizer.json"));
  }
  return *t;
}

inline std::shared_ptr<const Haystack> essays() {
  static std::shared_ptr<const Haystack> h;
  if (!h) {
    if (!std::filesystem::exists(essays_path()))
      throw std::runtime_error(essays_path().string() + " is missing (the shared test data)");
    h = std::make_shared<const Haystack>(load_haystack(essays_path().string()));
  }
  return h;
}

inline size_t count_occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

}  // namespace skv::eval::testing
