// The pre-tokenizer stage: loading tokenizer.json's "pre_tokenizer" (Sequence, Split, ByteLevel, Metaspace) and
// splitting normalized text into the words that BPE sees.
#include <algorithm>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace skv {

using namespace tokenizer_internal;
namespace {

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace

void Tokenizer::Impl::load_pre_tokenizer(const json& p) {
  if (p.is_null()) return;
  const std::string type = p.value("type", "");
  if (type == "Sequence") {
    for (const json& k : p.at("pretokenizers")) load_pre_tokenizer(k);
  } else if (type == "Split") {
    PreStep s{PreStep::kSplit};
    const json& pat = p.at("pattern");
    if (pat.contains("String")) {
      s.literal = pat["String"].get<std::string>();
      if (s.literal.empty()) fail(ErrorCode::kParse, "Split pre-tokenizer with an empty String pattern");
    } else {
      s.re = std::make_shared<Regex>(pat.at("Regex").get<std::string>(), source + " pre_tokenizer Split");
    }
    s.behavior = p.value("behavior", "Isolated");
    static const char* kBehaviors[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    if (std::find(std::begin(kBehaviors), std::end(kBehaviors), s.behavior) == std::end(kBehaviors))
      fail(ErrorCode::kUnsupported, "unsupported Split behavior '" + s.behavior + "'");
    s.invert = p.value("invert", false);
    pre_tokenizer.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    PreStep s{PreStep::kByteLevel};
    s.add_prefix_space = p.value("add_prefix_space", true);
    if (p.value("use_regex", true)) s.re = std::make_shared<Regex>(kGpt2Pattern, "ByteLevel pre-tokenizer");
    pre_tokenizer.push_back(std::move(s));
  } else if (type == "Metaspace") {
    PreStep s{PreStep::kMetaspace};
    s.replacement = p.value("replacement", std::string("\u2581"));
    if (p.contains("prepend_scheme") && p["prepend_scheme"].is_string()) s.prepend_scheme = p["prepend_scheme"].get<std::string>();
    else s.prepend_scheme = p.value("add_prefix_space", true) ? "always" : "never";
    s.split = p.value("split", true);
    pre_tokenizer.push_back(std::move(s));
  } else {
    fail(ErrorCode::kUnsupported, "unsupported pre_tokenizer type '" + type + "' (supported: Sequence, Split, ByteLevel, Metaspace)");
  }
}

namespace {
// Applies a split behavior to segments (begin, end, is_match) that tile a string.
void split_by_behavior(const std::string& s, std::vector<std::tuple<size_t, size_t, bool>> segs, const std::string& behavior,
                       bool invert, std::vector<std::string>& out) {
  if (invert) for (auto& seg : segs) std::get<2>(seg) = !std::get<2>(seg);
  std::vector<std::pair<size_t, size_t>> pieces;
  for (size_t i = 0; i < segs.size(); ++i) {
    auto [b, e, m] = segs[i];
    if (b == e) continue;
    if (behavior == "Removed") {
      if (!m) pieces.emplace_back(b, e);
    } else if (behavior == "Isolated") {
      pieces.emplace_back(b, e);
    } else if (behavior == "MergedWithPrevious") {
      if (m && !pieces.empty() && pieces.back().second == b) pieces.back().second = e;
      else pieces.emplace_back(b, e);
    } else if (behavior == "MergedWithNext") {
      if (!pieces.empty() && pieces.back().second == b && i > 0 && std::get<2>(segs[i - 1]) && !m) pieces.back().second = e;
      else pieces.emplace_back(b, e);
    } else {  // Contiguous
      if (m && i > 0 && std::get<2>(segs[i - 1]) && !pieces.empty() && pieces.back().second == b) pieces.back().second = e;
      else pieces.emplace_back(b, e);
    }
  }
  for (auto [b, e] : pieces) out.push_back(s.substr(b, e - b));
}

// Regex matches of re (or occurrences of literal) in s as segments tiling s.
std::vector<std::tuple<size_t, size_t, bool>> segments(const std::string& s, const Regex* re, const std::string& literal) {
  std::vector<std::tuple<size_t, size_t, bool>> segs;
  size_t prev = 0;
  auto add = [&](size_t b, size_t e) {
    if (b > prev) segs.emplace_back(prev, b, false);
    segs.emplace_back(b, e, true);
    prev = e;
  };
  if (re) {
    unicode::DecodedText d = unicode::decode_utf8(s);
    for (auto [b, e] : re->find_all(d.cps)) add(d.offsets[b], d.offsets[e]);
  } else {
    size_t at;
    while ((at = s.find(literal, prev)) != std::string::npos) add(at, at + literal.size());
  }
  if (prev < s.size()) segs.emplace_back(prev, s.size(), false);
  return segs;
}
}  // namespace

std::vector<std::string> Tokenizer::Impl::pre_tokenize(std::string s, bool first_section) const {
  std::vector<std::string> pieces{std::move(s)};
  for (const PreStep& st : pre_tokenizer) {
    std::vector<std::string> next;
    for (std::string& p : pieces) {
      switch (st.kind) {
        case PreStep::kSplit:
          split_by_behavior(p, segments(p, st.re.get(), st.literal), st.behavior, st.invert, next);
          break;
        case PreStep::kByteLevel: {
          if (st.add_prefix_space && !starts_with_space(p)) p = " " + p;
          std::vector<std::string> parts;
          if (st.re) split_by_behavior(p, segments(p, st.re.get(), ""), "Isolated", false, parts);
          else parts.push_back(std::move(p));
          const ByteLevelTable& bl = byte_level();
          for (const std::string& part : parts) {
            std::string mapped;
            mapped.reserve(part.size() * 2);
            for (unsigned char c : part) mapped += bl.byte_to_text[c];
            next.push_back(std::move(mapped));
          }
          break;
        }
        case PreStep::kMetaspace: {
          std::string m;
          size_t prev = 0, at;
          while ((at = p.find(' ', prev)) != std::string::npos) {
            m.append(p, prev, at - prev);
            m += st.replacement;
            prev = at + 1;
          }
          m.append(p, prev);
          if ((st.prepend_scheme == "always" || (st.prepend_scheme == "first" && first_section)) &&
              m.compare(0, st.replacement.size(), st.replacement) != 0)
            m = st.replacement + m;
          if (st.split) split_by_behavior(m, segments(m, nullptr, st.replacement), "MergedWithNext", false, next);
          else next.push_back(std::move(m));
          break;
        }
      }
    }
    pieces = std::move(next);
  }
  return pieces;
}

}  // namespace skv
