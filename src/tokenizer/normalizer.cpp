// The normalizer stage: loading tokenizer.json's "normalizer" (Sequence, Prepend, Replace, NFC, Strip) and
// applying it to a section of text.
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace skv {

using namespace tokenizer_internal;

void Tokenizer::Impl::load_normalizer(const json& n) {
  if (n.is_null()) return;
  const std::string type = n.value("type", "");
  if (type == "Sequence") {
    for (const json& k : n.at("normalizers")) load_normalizer(k);
  } else if (type == "Prepend") {
    normalizer.push_back({NormStep::kPrepend, n.at("prepend").get<std::string>(), ""});
  } else if (type == "Replace") {
    NormStep s{NormStep::kReplace, "", n.at("content").get<std::string>()};
    const json& pat = n.at("pattern");
    if (pat.contains("String")) s.a = pat["String"].get<std::string>();
    else s.re = std::make_shared<Regex>(pat.at("Regex").get<std::string>(), source + " normalizer Replace");
    normalizer.push_back(std::move(s));
  } else if (type == "NFC") {
    normalizer.push_back({NormStep::kNfc, "", ""});
  } else if (type == "Strip") {
    NormStep s{NormStep::kStrip, "", ""};
    s.left = n.value("strip_left", true);
    s.right = n.value("strip_right", true);
    normalizer.push_back(std::move(s));
  } else {
    fail(ErrorCode::kUnsupported, "unsupported normalizer type '" + type + "' (supported: Sequence, Prepend, Replace, NFC, Strip)");
  }
}

std::string Tokenizer::Impl::normalize(std::string s) const {
  for (const NormStep& st : normalizer) {
    switch (st.kind) {
      case NormStep::kPrepend:
        if (!s.empty()) s = st.a + s;
        break;
      case NormStep::kReplace: {
        std::string out;
        if (st.re) {
          unicode::DecodedText d = unicode::decode_utf8(s);
          size_t prev = 0;
          for (auto [b, e] : st.re->find_all(d.cps)) {
            out.append(s, prev, d.offsets[b] - prev);
            out += st.b;
            prev = d.offsets[e];
          }
          out.append(s, prev);
        } else {
          size_t prev = 0, at;
          while (!st.a.empty() && (at = s.find(st.a, prev)) != std::string::npos) {
            out.append(s, prev, at - prev);
            out += st.b;
            prev = at + st.a.size();
          }
          out.append(s, prev);
        }
        s = std::move(out);
        break;
      }
      case NormStep::kNfc: s = unicode::nfc(s); break;
      case NormStep::kStrip: {
        unicode::DecodedText d = unicode::decode_utf8(s);
        size_t b = 0, e = d.cps.size();
        while (st.left && b < e && unicode::is_space(d.cps[b])) ++b;
        while (st.right && e > b && unicode::is_space(d.cps[e - 1])) --e;
        s = s.substr(d.offsets[b], d.offsets[e] - d.offsets[b]);
        break;
      }
    }
  }
  return s;
}

}  // namespace skv
