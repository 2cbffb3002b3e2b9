// ShadowParams::validate: every parameter is checked on its own, and the message names it.
#include "kv/shadow_params.h"

#include <string>

#include "core/error.h"

namespace skv {
namespace {

[[noreturn]] void invalid(const std::string& what) {
  throw Error(ErrorCode::kInvalidArgument, "shadowkv: " + what);
}

// Upper bounds keep the products the layout computes (local_chunks * chunk_size, 24 * sparse_budget) far from
// int64 overflow; a value past them is a typo, not a configuration.
constexpr int64_t kMaxChunkSize = 4096;
constexpr int64_t kMaxTokens = int64_t{1} << 24;

void require_at_most(const char* name, int64_t value, int64_t limit) {
  if (value > limit) invalid(std::string(name) + " must be at most " + std::to_string(limit) + ", got " + std::to_string(value));
}

}  // namespace

void ShadowParams::validate() const {
  if (chunk_size < 1) invalid("chunk_size must be at least 1, got " + std::to_string(chunk_size));
  require_at_most("chunk_size", chunk_size, kMaxChunkSize);
  if (rank < 1) invalid("rank must be at least 1, got " + std::to_string(rank));
  require_at_most("rank", rank, kMaxTokens);
  require_at_most("sparse_budget", sparse_budget, kMaxTokens);
  require_at_most("outlier_chunks", outlier_chunks, kMaxTokens);
  require_at_most("local_chunks", local_chunks, kMaxTokens);
  if (sparse_budget < chunk_size)
    invalid("sparse_budget must be at least chunk_size (" + std::to_string(chunk_size) + "), got " +
            std::to_string(sparse_budget));
  if (sparse_budget % chunk_size != 0)
    invalid("sparse_budget (" + std::to_string(sparse_budget) + ") must be a multiple of chunk_size (" +
            std::to_string(chunk_size) + ")");
  if (outlier_chunks < -1)
    invalid("outlier_chunks must be -1 (24 per 1024 tokens of budget) or at least 0, got " +
            std::to_string(outlier_chunks));
  if (local_chunks < 0) invalid("local_chunks must be at least 0, got " + std::to_string(local_chunks));
  if (!(dense_capture >= 0.0 && dense_capture <= 1.0))
    invalid("dense_capture must be in [0, 1] (0: off), got " + std::to_string(dense_capture));
  if (dense_capture_steps < 1 || dense_capture_steps > kMaxTokens)
    invalid("dense_capture_steps must be at least 1, got " + std::to_string(dense_capture_steps));
  for (const int64_t l : dense_layers)
    if (l < 0 || l >= kMaxTokens) invalid("dense_layers holds " + std::to_string(l) + ", not a layer index");
}

}  // namespace skv
