// Pieces shared by the shadowkv subcommands: where the default model lives, reading prompt files,
// the prefill progress bar, human-readable sizes.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>

#include "loader/model_config.h"

namespace skv::cli {

// --model's default: $SHADOWKV_MODEL, else the stories15M directory that scripts/fetch_models.sh prepares.
std::filesystem::path default_model_dir();
// The model directory to use, with a clear error when it does not exist (and how to get the default).
std::filesystem::path resolve_model_dir(const std::string& flag_value);
// The whole file, or an error naming it.
std::string read_text_file(const std::filesystem::path& path);
std::string format_bytes(int64_t bytes);  // "1.50 GiB"

// --context-limit N (0: the model's max_position_embeddings): an absurd value is an error before any work.
void validate_context_limit_flag(int64_t flag);
// The limit in force; a limit above the trained context warns once on stderr (RoPE then extrapolates).
int64_t effective_context_limit(const ModelConfig& config, int64_t flag);

// A progress bar on stderr that appears only once the work has taken more than a second.
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  void update(int64_t done, int64_t total);
  void finish();  // erases the bar if it was drawn

 private:
  std::string label_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_{};
  bool drawn_ = false;
};

// Subcommand registration: each adds itself to the app and returns the action to run once parsed.
void add_generate_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_plan_command(CLI::App& app);
void add_bench_command(CLI::App& app);

}  // namespace skv::cli
