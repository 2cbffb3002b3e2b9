// The BPE model: loading model.vocab / model.merges (and byte fallback, unk) from tokenizer.json, and the merge
// loop that turns one pre-tokenized word into ids.
#include <algorithm>
#include <cstdio>
#include <queue>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace skv {

using namespace tokenizer_internal;
namespace {

std::string hex_byte_token(int b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "<0x%02X>", b);
  return buf;
}

}  // namespace

void Tokenizer::Impl::load_model(const json& model) {
  const std::string type = model.value("type", model.contains("merges") ? "BPE" : "");
  if (type != "BPE") {
    fail(ErrorCode::kUnsupported, "unsupported model type '" + type + "' (supported: BPE)");
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail(ErrorCode::kParse, "model.vocab is not an object");
  int32_t max_id = -1;
  vocab.reserve(model["vocab"].size() * 2);
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer()) fail(ErrorCode::kParse, "model.vocab['" + it.key() + "'] is not an integer id");
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > (1 << 30)) fail(ErrorCode::kParse, "model.vocab id " + std::to_string(id) + " out of range");
    vocab[it.key()] = static_cast<int32_t>(id);
    max_id = std::max(max_id, static_cast<int32_t>(id));
  }
  id_to_token.assign(static_cast<size_t>(max_id + 1), std::string());
  for (auto& [tok, id] : vocab) id_to_token[static_cast<size_t>(id)] = tok;

  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty())
      fail(ErrorCode::kUnsupported, std::string("BPE ") + key + " is not supported");
  }
  byte_fallback = model.value("byte_fallback", false);
  fuse_unk = model.value("fuse_unk", false);
  ignore_merges = model.value("ignore_merges", false);
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = vocab.find(model["unk_token"].get<std::string>());
    if (it != vocab.end()) unk_id = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = vocab.find(hex_byte_token(b));
    byte_ids[b] = it == vocab.end() ? -1 : it->second;
  }
  bmp_id.assign(0x10000, -1);
  for (auto& [tok, id] : vocab) {
    unicode::DecodedText d = unicode::decode_utf8(tok);
    if (d.cps.size() == 1 && d.cps[0] < 0x10000) bmp_id[d.cps[0]] = id;
  }

  if (!model.contains("merges") || !model["merges"].is_array()) fail(ErrorCode::kParse, "model.merges is not an array");
  const json& ms = model["merges"];
  merges.reserve(ms.size() * 2);
  std::string a, b;
  for (size_t i = 0; i < ms.size(); ++i) {
    const json& m = ms[i];
    // Two forms: "a b" (split at the first space) and ["a", "b"] (tokenizers >= 0.20).
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos) fail(ErrorCode::kParse, "model.merges[" + std::to_string(i) + "] '" + s + "' has no space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      fail(ErrorCode::kParse, "model.merges[" + std::to_string(i) + "] is neither \"a b\" nor [\"a\", \"b\"]");
    }
    auto ia = vocab.find(a), ib = vocab.find(b), iab = vocab.find(a + b);
    if (ia == vocab.end() || ib == vocab.end() || iab == vocab.end()) {
      fail(ErrorCode::kParse, "model.merges[" + std::to_string(i) + "] ('" + a + "', '" + b + "') uses a token not in the vocabulary");
    }
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) | static_cast<uint32_t>(ib->second);
    merges.emplace(key, std::pair{static_cast<int32_t>(i), iab->second});  // the first (best) rank wins
  }
}

void Tokenizer::Impl::bpe_word(std::string_view w, std::vector<int32_t>& out) const {
  if (w.empty()) return;
  if (ignore_merges) {
    if (auto it = vocab.find(std::string(w)); it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Sym {
    int32_t id, prev, next;
  };
  std::vector<Sym> syms;
  syms.reserve(w.size());
  auto push_sym = [&](int32_t id) {
    const auto n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, n + 1});
  };
  size_t i = 0;
  while (i < w.size()) {
    size_t n = unicode::valid_utf8_length(w, i);
    char32_t cp = unicode::kInvalidByte;
    if (n == 0) {
      n = 1;
    } else {
      unicode::DecodedText d = unicode::decode_utf8(w.substr(i, n));
      cp = d.cps[0];
    }
    const int32_t id = cp == unicode::kInvalidByte ? -1 : lookup_symbol(w.substr(i, n), cp);
    if (id >= 0) {
      push_sym(id);
    } else {
      bool bytes_ok = byte_fallback;
      for (size_t k = 0; bytes_ok && k < n; ++k) bytes_ok = byte_ids[static_cast<unsigned char>(w[i + k])] >= 0;
      if (bytes_ok) {
        for (size_t k = 0; k < n; ++k) push_sym(byte_ids[static_cast<unsigned char>(w[i + k])]);
      } else if (unk_id) {
        if (!(fuse_unk && !syms.empty() && syms.back().id == *unk_id)) push_sym(*unk_id);
      } else {
        char buf[16];
        std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(cp == unicode::kInvalidByte ? 0xFFFD : cp));
        throw Error(ErrorCode::kInvalidArgument, source + ": cannot encode character " + std::string(buf) +
                                                     ": not in the vocabulary, and no byte fallback or unk token");
      }
    }
    i += n;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  // Merge loop: always apply the lowest-rank merge, leftmost on ties (as the tokenizers library does).
  struct Cand {
    int32_t rank, left, right, left_id, right_id, merged;
  };
  auto worse = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.left > b.left; };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> queue(worse);
  auto consider = [&](int32_t left) {
    const int32_t right = syms[static_cast<size_t>(left)].next;
    if (left < 0 || right < 0) return;
    const int32_t a = syms[static_cast<size_t>(left)].id, b = syms[static_cast<size_t>(right)].id;
    auto it = merges.find((static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b));
    if (it != merges.end()) queue.push({it->second.first, left, right, a, b, it->second.second});
  };
  for (int32_t k = 0; k + 1 < static_cast<int32_t>(syms.size()); ++k) consider(k);
  while (!queue.empty()) {
    const Cand c = queue.top();
    queue.pop();
    Sym& l = syms[static_cast<size_t>(c.left)];
    Sym& r = syms[static_cast<size_t>(c.right)];
    if (l.id != c.left_id || l.next != c.right || r.id != c.right_id) continue;  // stale
    l.id = c.merged;
    l.next = r.next;
    if (r.next >= 0) syms[static_cast<size_t>(r.next)].prev = c.left;
    r.id = -1;
    if (l.prev >= 0) consider(l.prev);
    consider(c.left);
  }
  for (int32_t k = 0; k >= 0; k = syms[static_cast<size_t>(k)].next) out.push_back(syms[static_cast<size_t>(k)].id);
}

}  // namespace skv
