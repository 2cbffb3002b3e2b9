// A small backtracking regex engine over code points, for pre-tokenizer split patterns (GPT-2, Llama-3, Qwen).
// Supports alternation, groups ((?:), (?i:), (?=), (?!)), classes with negation, \p{L} \p{N} \s \d \w and their
// negations, escapes, and greedy or lazy ? * + {n,m}. Semantics follow JavaScript /u regexes (\s, \d, \w as JS).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace skv {

class Regex {
 public:
  Regex() = default;
  // Throws skv::Error(kUnsupported / kParse) naming `what` (where the pattern came from) on patterns it can't run.
  Regex(std::string_view pattern, std::string_view what);

  // Leftmost-first, non-overlapping matches in cps, as [begin, end) indices; empty matches are skipped.
  std::vector<std::pair<size_t, size_t>> find_all(const std::vector<char32_t>& cps) const;

  struct ClassItem {
    enum Kind : uint8_t { kRange, kLetter, kNumber, kSpace, kDigit, kWord, kAny } kind = kRange;
    bool negated = false;
    char32_t lo = 0, hi = 0;
  };
  struct CharClass {
    std::vector<ClassItem> items;
    bool negated = false;
    uint64_t ascii[2] = {0, 0};  // precomputed answers for code points < 128
    bool contains(char32_t cp) const;
    bool contains_slow(char32_t cp) const;
  };
  enum class Op : uint8_t { kClass, kSplit, kJmp, kMatch, kLook };
  struct Inst {
    Op op;
    bool negated = false;  // kLook: negative lookahead
    int x = 0, y = 0;      // kSplit: try x then y; kJmp: x; kClass: class index; kLook: body x, continue y
  };

 private:
  bool match_at(int pc, const std::vector<char32_t>& cps, size_t pos, size_t& end,
                std::vector<std::pair<int, size_t>>& stack) const;

  std::vector<CharClass> classes_;
  std::vector<Inst> prog_;
  friend class RegexCompiler;
};

}  // namespace skv
