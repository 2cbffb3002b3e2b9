// Decoding: loading tokenizer.json's "decoder" (Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel,
// Metaspace), decode_bytes / decode, and the StreamingDecoder built on them.
#include <cctype>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace skv {

using namespace tokenizer_internal;

void Tokenizer::Impl::load_decoder(const json& d) {
  if (d.is_null()) return;
  has_decoder = true;
  const std::string type = d.value("type", "");
  if (type == "Sequence") {
    for (const json& k : d.at("decoders")) load_decoder(k);
  } else if (type == "Replace") {
    const json& pat = d.at("pattern");
    if (!pat.contains("String")) fail(ErrorCode::kUnsupported, "Replace decoder with a Regex pattern");
    decoder.push_back({DecStep::kReplace, pat["String"].get<std::string>(), d.at("content").get<std::string>()});
  } else if (type == "ByteFallback") {
    decoder.push_back({DecStep::kByteFallback});
  } else if (type == "Fuse") {
    decoder.push_back({DecStep::kFuse});
  } else if (type == "Strip") {
    DecStep s{DecStep::kStrip, d.at("content").get<std::string>()};
    s.start = d.value("start", 0);
    s.stop = d.value("stop", 0);
    decoder.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    decoder.push_back({DecStep::kByteLevel});
  } else if (type == "Metaspace") {
    DecStep s{DecStep::kMetaspace, d.value("replacement", std::string("\u2581"))};
    std::string scheme = d.contains("prepend_scheme") && d["prepend_scheme"].is_string()
                             ? d["prepend_scheme"].get<std::string>()
                             : (d.value("add_prefix_space", true) ? "always" : "never");
    s.prepend = scheme != "never";
    decoder.push_back(std::move(s));
  } else {
    fail(ErrorCode::kUnsupported, "unsupported decoder type '" + type + "' (supported: Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace)");
  }
}

// ---------------------------------------------------------------------------------------------------------
// Decoding

std::string Tokenizer::Impl::decode_bytes(std::span<const int32_t> ids, bool skip_special) const {
  std::vector<std::string> toks;
  toks.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token.size()) {
      throw Error(ErrorCode::kInvalidArgument, "decode: token id " + std::to_string(id) + " is out of range [0, " +
                                                   std::to_string(id_to_token.size()) + ") for " + source);
    }
    if (skip_special && special[static_cast<size_t>(id)]) continue;
    toks.push_back(id_to_token[static_cast<size_t>(id)]);
  }
  if (!has_decoder) {
    std::string out;
    for (size_t k = 0; k < toks.size(); ++k) out += (k ? " " : "") + toks[k];
    return out;
  }
  for (const DecStep& st : decoder) {
    switch (st.kind) {
      case DecStep::kReplace:
        for (std::string& t : toks) {
          std::string out;
          size_t prev = 0, at;
          while (!st.a.empty() && (at = t.find(st.a, prev)) != std::string::npos) {
            out.append(t, prev, at - prev);
            out += st.b;
            prev = at + st.a.size();
          }
          out.append(t, prev);
          t = std::move(out);
        }
        break;
      case DecStep::kByteFallback: {
        // Consecutive <0xNN> tokens become their raw bytes; invalid UTF-8 is replaced at the very end.
        std::vector<std::string> next;
        bool prev_bytes = false;
        for (std::string& t : toks) {
          int v = -1;
          if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
              std::isxdigit(static_cast<unsigned char>(t[4])))
            v = std::stoi(t.substr(3, 2), nullptr, 16);
          if (v >= 0) {
            if (!prev_bytes) next.emplace_back();
            next.back().push_back(static_cast<char>(v));
            prev_bytes = true;
          } else {
            next.push_back(std::move(t));
            prev_bytes = false;
          }
        }
        toks = std::move(next);
        break;
      }
      case DecStep::kFuse: {
        std::string all;
        for (const std::string& t : toks) all += t;
        toks.assign(1, std::move(all));
        break;
      }
      case DecStep::kStrip:
        for (std::string& t : toks) {
          size_t b = 0, e = t.size();
          for (int k = 0; k < st.start && t.compare(b, st.a.size(), st.a) == 0 && b < e; ++k) b += st.a.size();
          for (int k = 0; k < st.stop && e >= b + st.a.size() && t.compare(e - st.a.size(), st.a.size(), st.a) == 0; ++k)
            e -= st.a.size();
          t = t.substr(b, e - b);
        }
        break;
      case DecStep::kByteLevel: {
        // Per token: map each code point back to its byte; a token with unmapped code points stays as it is.
        const ByteLevelTable& bl = byte_level();
        std::string all;
        for (const std::string& t : toks) {
          unicode::DecodedText d = unicode::decode_utf8(t);
          std::string bytes;
          bool ok = true;
          for (char32_t cp : d.cps) {
            auto it = bl.cp_to_byte.find(cp);
            if (it == bl.cp_to_byte.end()) {
              ok = false;
              break;
            }
            bytes.push_back(static_cast<char>(it->second));
          }
          all += ok ? bytes : t;
        }
        toks.assign(1, std::move(all));
        break;
      }
      case DecStep::kMetaspace:
        for (size_t k = 0; k < toks.size(); ++k) {
          std::string out;
          size_t prev = 0, at;
          while ((at = toks[k].find(st.a, prev)) != std::string::npos) {
            out.append(toks[k], prev, at - prev);
            out += ' ';
            prev = at + st.a.size();
          }
          out.append(toks[k], prev);
          if (k == 0 && st.prepend && starts_with_space(out)) out.erase(0, 1);
          toks[k] = std::move(out);
        }
        break;
    }
  }
  std::string out;
  for (const std::string& t : toks) out += t;
  return out;
}

std::string Tokenizer::decode_bytes(std::span<const int32_t> ids, bool skip_special_tokens) const {
  return impl_->decode_bytes(ids, skip_special_tokens);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  return unicode::to_valid_utf8(impl_->decode_bytes(ids, skip_special_tokens));
}

// ---------------------------------------------------------------------------------------------------------
// StreamingDecoder: decodes a small window of recent ids twice (with and without the newest) and emits the
// byte difference, so context-dependent steps (Strip of the first token's space) behave as in decode().

StreamingDecoder::StreamingDecoder(const Tokenizer& tok, bool skip_special_tokens)
    : tok_(&tok), skip_special_(skip_special_tokens) {}

std::string StreamingDecoder::push(int32_t id) {
  if (id < 0) (void)tok_->token_text(id);  // throws the out-of-range error
  // Models often pad the embedding past the tokenizer's vocabulary (Qwen2.5: 152064 rows, ~151665 tokens);
  // a sampled padding id has no text. Skip it, as Hugging Face's decode does, rather than end the stream.
  if (id >= tok_->vocab_size()) return {};
  if (skip_special_ && tok_->is_special(id)) return {};
  ids_.push_back(id);
  const std::span<const int32_t> all(ids_);
  const std::string before = tok_->decode_bytes(all.first(read_), false);
  const std::string after = tok_->decode_bytes(all, false);
  if (after.compare(0, before.size(), before) == 0) pending_ += after.substr(before.size());
  else pending_ += after;  // not expected with the supported decoders
  // Keep the newest id as context for the next call.
  ids_.erase(ids_.begin(), ids_.end() - 1);
  read_ = ids_.size();
  const size_t cut = unicode::incomplete_utf8_tail(pending_);
  std::string out = unicode::to_valid_utf8(std::string_view(pending_).substr(0, cut));
  pending_.erase(0, cut);
  return out;
}

std::string StreamingDecoder::finish() {
  std::string out = unicode::to_valid_utf8(pending_);
  pending_.clear();
  ids_.clear();
  read_ = 0;
  return out;
}

}  // namespace skv
