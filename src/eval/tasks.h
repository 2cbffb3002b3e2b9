// The RULER synthetic tasks (Hsieh et al., 2024, "RULER: What's the Real Context Size of Your Long-Context
// Language Models?"), the list the ShadowKV paper evaluates, and their sample generator.
//
// A sample is a function of (seed, task, context, sample index[, depth]) alone: the same arguments give the
// same prompt, token for token, whatever else is run. Prompts are built to an exact token length with the model's
// own tokenizer: the formatted prompt (chat template, answer prefix and BOS included) has exactly
// context - max_new_tokens tokens, so prompt + generation budget == context. The amount of filler is found by a
// search over whole units (words, lines, list entries), then a search over the characters of the next few units
// closes the last gap. Where no character prefix lands exactly (a one-character step that adds two tokens), the
// prompt stays below by the smallest gap found; Sample::prompt_tokens() says which and the tests check that the
// real tokenizers hit the target exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eval/chat_template.h"
#include "eval/haystack.h"
#include "eval/scoring.h"
#include "tokenizer/tokenizer.h"

namespace skv::eval {

struct TaskInfo {
  std::string_view name;
  std::string_view description;
  Metric metric;
  int64_t max_new_tokens;        // RULER's tokens_to_generate
  bool available;                // false: needs a dataset that is not here (qa_1, qa_2)
  bool uses_haystack;            // needs the --haystack text (essay haystack, or cwe's word pool)
  bool single_needle;            // one needle at a controlled depth: usable with --sweep-depth
  std::string_view unavailable_reason = {};  // why, when not available
};

// Every task, available or not, in RULER's order.
std::span<const TaskInfo> all_tasks();
// The task of that name; Error(kInvalidArgument) listing the valid names, or saying why it is unavailable.
const TaskInfo& find_task(std::string_view name);
// A comma-separated list ("all" = every available task); duplicates removed, order kept. Errors as find_task.
std::vector<std::string> parse_task_list(std::string_view list);

// Bumped whenever a change to the generator changes prompts: results files record it and refuse to mix.
inline constexpr std::string_view kGeneratorVersion = "ruler-synthetic-1";

struct Sample {
  std::string task;
  int64_t context = 0;
  int64_t index = 0;
  std::optional<double> depth;       // the requested needle depth (sweeps); none: random depths as RULER's
  std::string prompt;                // the formatted prompt text
  std::vector<int32_t> tokens;       // its token ids: what the model runs
  std::vector<std::string> answers;  // expected strings
  std::vector<std::string> needles;  // the inserted needle sentences (niah) or chain statements (vt)
  std::vector<double> needle_depths; // where each needle went: inserted position / filler length, in [0, 1]
  Metric metric = Metric::kStringMatchAll;
  int64_t max_new_tokens = 0;
  int64_t target_tokens = 0;         // context - max_new_tokens
  uint64_t prompt_hash = 0;          // FNV-1a of the token ids

  int64_t prompt_tokens() const { return static_cast<int64_t>(tokens.size()); }
};

std::string hash_hex(uint64_t hash);  // 16 lower-case hex digits
uint64_t hash_tokens(std::span<const int32_t> tokens);

class SampleGenerator {
 public:
  // Keeps a reference to `tokenizer`. `haystack` may be null when no task that uses_haystack is generated.
  SampleGenerator(const Tokenizer& tokenizer, PromptFormat format, std::shared_ptr<const Haystack> haystack,
                  uint64_t seed);
  ~SampleGenerator();

  // Throws Error(kInvalidArgument) for an unknown/unavailable task, a bad depth, or a context too small for the
  // task's fixed text; Error(kResource) when the haystack or word pool is too small for the context.
  Sample generate(std::string_view task, int64_t context, int64_t index, std::optional<double> depth = {}) const;
  // Throws what generate would when the task's fixed text (template, question, needles) cannot fit the context,
  // cheaply: only the prompt without filler is tokenized.
  void check_fits(std::string_view task, int64_t context) const;

 private:
  Sample make(std::string_view task, int64_t context, int64_t index, std::optional<double> depth,
              bool fixed_text_only) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "4k" -> 4096, "128K" -> 131072, "1m" -> 1048576, "256" -> 256. Error(kInvalidArgument) naming the value.
int64_t parse_context_length(std::string_view text);
// Comma-separated; sorted ascending, duplicates removed.
std::vector<int64_t> parse_context_list(std::string_view list);
// 4096 -> "4K", 131072 -> "128K", 256 -> "256".
std::string format_context_length(int64_t tokens);

}  // namespace skv::eval
