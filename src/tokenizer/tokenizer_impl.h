// Tokenizer::Impl (internal to skv_tokenizer): the loaded vocabulary, merges, pipeline steps and special-token
// settings, plus small helpers (the GPT-2 byte-level table) that several pipeline stages share.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace skv {
namespace tokenizer_internal {

using json = nlohmann::json;

// GPT-2's byte <-> printable code point table: printable Latin-1 bytes map to themselves, the rest to 256+n.
struct ByteLevelTable {
  std::string byte_to_text[256];
  std::unordered_map<char32_t, uint8_t> cp_to_byte;
  ByteLevelTable() {
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
      unicode::append_utf8(byte_to_text[b], cp);
      cp_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};
inline const ByteLevelTable& byte_level() {
  static const ByteLevelTable table;
  return table;
}

inline bool starts_with_space(std::string_view s) { return !s.empty() && s[0] == ' '; }

}  // namespace tokenizer_internal

struct Tokenizer::Impl {
  using json = tokenizer_internal::json;

  std::string source;  // tokenizer.json path, for messages

  // --- vocabulary ---
  std::unordered_map<std::string, int32_t> vocab;  // the model's vocabulary
  std::vector<std::string> id_to_token;             // model and added tokens
  std::vector<uint8_t> special;                     // per id
  struct Added {
    std::string content;
    int32_t id;
    bool lstrip, rstrip;
  };
  std::vector<Added> added;                          // sorted longest first
  std::unordered_map<std::string, int32_t> added_ids;
  std::vector<std::vector<uint32_t>> added_by_first_byte = std::vector<std::vector<uint32_t>>(256);

  // --- BPE ---
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (left, right) -> (rank, merged id)
  std::vector<int32_t> bmp_id;                                       // single-code-point tokens below U+10000
  int32_t byte_ids[256];                                             // <0xNN> tokens, -1 when absent
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  std::optional<int32_t> unk_id;

  // --- normalizer / pre-tokenizer / decoder steps ---
  struct NormStep {
    enum Kind { kPrepend, kReplace, kNfc, kStrip } kind;
    std::string a, b;
    std::shared_ptr<Regex> re;
    bool left = true, right = true;
  };
  std::vector<NormStep> normalizer;
  struct PreStep {
    enum Kind { kSplit, kByteLevel, kMetaspace } kind;
    std::shared_ptr<Regex> re;  // kSplit regex or ByteLevel use_regex
    std::string literal;        // kSplit String pattern
    std::string behavior = "Isolated";
    bool invert = false;
    bool add_prefix_space = false;
    std::string replacement;
    std::string prepend_scheme = "always";
    bool split = false;
  };
  std::vector<PreStep> pre_tokenizer;
  struct DecStep {
    enum Kind { kReplace, kByteFallback, kFuse, kStrip, kByteLevel, kMetaspace } kind;
    std::string a, b;  // kReplace pattern/content; kStrip content; kMetaspace replacement
    int start = 0, stop = 0;
    bool prepend = true;
  };
  std::vector<DecStep> decoder;
  bool has_decoder = false;

  // --- special tokens ---
  std::vector<int32_t> prefix_ids, suffix_ids;  // what encode(..., true) adds
  std::optional<int32_t> bos;
  std::vector<int32_t> eos;
  bool add_bos = false;

  [[noreturn]] void fail(ErrorCode code, const std::string& why) const { throw Error(code, source + ": " + why); }

  int32_t lookup_symbol(std::string_view s, char32_t cp) const {
    if (cp < bmp_id.size()) return bmp_id[cp];
    auto it = vocab.find(std::string(s));
    return it == vocab.end() ? -1 : it->second;
  }

  void bpe_word(std::string_view w, std::vector<int32_t>& out) const;
  std::vector<std::string> pre_tokenize(std::string s, bool first_section) const;
  std::string normalize(std::string s) const;
  std::string decode_bytes(std::span<const int32_t> ids, bool skip_special) const;

  void load_model(const json& model);
  void load_normalizer(const json& n);
  void load_pre_tokenizer(const json& p);
  void load_decoder(const json& d);
  void load_post_processor(const json& p, std::vector<int32_t>& pre, std::vector<int32_t>& post, bool& found);
  int32_t id_of(const std::string& token, const char* what) const {
    if (auto it = added_ids.find(token); it != added_ids.end()) return it->second;
    if (auto it = vocab.find(token); it != vocab.end()) return it->second;
    fail(ErrorCode::kParse, std::string(what) + " names token '" + token + "', which is not in the vocabulary");
  }
};

}  // namespace skv
