// Shared CLI helpers.
#include "cli_common.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "core/error.h"

namespace skv::cli {

std::filesystem::path default_model_dir() {
  if (const char* env = std::getenv("SHADOWKV_MODEL"); env != nullptr && *env != '\0') return env;
  return SKV_DEFAULT_MODEL_DIR;
}

std::filesystem::path resolve_model_dir(const std::string& flag_value) {
  const std::filesystem::path dir = flag_value.empty() ? default_model_dir() : std::filesystem::path(flag_value);
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    if (flag_value.empty())
      throw Error(ErrorCode::kNotFound, "default model directory " + dir.string() +
                                            " does not exist; run scripts/fetch_models.sh or pass --model DIR");
    throw Error(ErrorCode::kNotFound, "model directory " + dir.string() + " does not exist");
  }
  return dir;
}

std::string read_text_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error(ErrorCode::kInvalidArgument, path.string() + " is a directory, expected a text file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, "cannot open " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

void validate_context_limit_flag(int64_t flag) {
  constexpr int64_t kMaxContextLimit = int64_t{1} << 24;  // 16M tokens: beyond this a value is a typo
  if (flag < 0 || flag > kMaxContextLimit)
    throw Error(ErrorCode::kInvalidArgument, "--context-limit must be in [1, " + std::to_string(kMaxContextLimit) +
                                                 "], got " + std::to_string(flag));
}

int64_t effective_context_limit(const ModelConfig& c, int64_t flag) {
  if (flag <= 0) return c.max_position_embeddings;
  if (flag > c.max_position_embeddings)
    std::fprintf(stderr,
                 "warning: --context-limit %lld exceeds the model's trained context of %lld tokens; RoPE will "
                 "extrapolate and quality may drop\n",
                 static_cast<long long>(flag), static_cast<long long>(c.max_position_embeddings));
  return flag;
}

ProgressBar::ProgressBar(std::string label) : label_(std::move(label)), start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(int64_t done, int64_t total) {
  using namespace std::chrono;
  const auto now = steady_clock::now();
  const double elapsed = duration<double>(now - start_).count();
  if (elapsed < 1.0 || total <= 0) return;
  const bool tty = isatty(STDERR_FILENO) != 0;
  // Redraw at most 10 times a second on a terminal, every 5 s into a log file.
  if (drawn_ && done < total && now - last_draw_ < (tty ? milliseconds(100) : seconds(5))) return;
  last_draw_ = now;
  drawn_ = true;
  const double frac = static_cast<double>(done) / static_cast<double>(total);
  const int width = 30;
  const int filled = static_cast<int>(frac * width);
  const double eta = frac > 0 ? elapsed * (1.0 - frac) / frac : 0.0;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(width, ' ');
  std::fprintf(stderr, "%s%s [%s] %3.0f%% %lld/%lld tokens, %.0f tok/s, ETA %.0fs%s", tty ? "\r" : "", label_.c_str(),
               bar.c_str(), frac * 100.0, static_cast<long long>(done), static_cast<long long>(total),
               static_cast<double>(done) / elapsed, eta, tty ? "" : "\n");
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (drawn_ && isatty(STDERR_FILENO)) std::fprintf(stderr, "\r\033[K");
  drawn_ = false;
}

}  // namespace skv::cli
