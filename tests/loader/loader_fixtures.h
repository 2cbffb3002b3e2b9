// Shared fixtures for the loader tests: temp directories, raw (possibly corrupt) safetensors files,
// tiny synthetic model directories, and an error-matching assertion.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/buffer.h"
#include "core/error.h"
#include "loader/model_config.h"

namespace skv::testing {

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

void write_file(const std::filesystem::path& path, const std::string& bytes);
// An 8-byte little-endian length, `header` verbatim, then `data`: for hand-made (and broken) files.
void write_raw_safetensors(const std::filesystem::path& path, const std::string& header, const std::string& data);

// Runs `fn`, expecting skv::Error with `code` and every string of `needles` in its message.
::testing::AssertionResult throws_error(const std::function<void()>& fn, ErrorCode code,
                                        const std::vector<std::string>& needles);

// A tiny Llama-family config: vocab 32, dim 16, hidden 24, 2 layers, 4 q heads, 2 kv heads, head_dim 4.
ModelConfig tiny_config(Architecture arch = Architecture::kLlama);
nlohmann::json to_hf_json(const ModelConfig& c);

struct TinyModelOptions {
  DType dtype = DType::kF32;
  bool write_lm_head = true;     // even when tied (HF allows it)
  int shards = 1;                // > 1: model-0000k-of-0000n + index.json
  std::string skip_tensor;       // leave this tensor out
  std::string misshape_tensor;   // write this one with one extra row
};
// Writes config.json and the safetensors files of `c` into `dir`, random weights.
void write_tiny_model(const std::filesystem::path& dir, const ModelConfig& c, const TinyModelOptions& opt = {});

}  // namespace skv::testing

#define EXPECT_SKV_ERROR(stmt, code, ...) \
  EXPECT_TRUE(::skv::testing::throws_error([&] { stmt; }, (code), {__VA_ARGS__}))
