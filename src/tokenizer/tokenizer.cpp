// Tokenizer::load (tokenizer.json / tokenizer_config.json parsing), the encode pipeline (added tokens ->
// normalizer -> pre-tokenizer -> BPE -> template), the decoder pipeline and StreamingDecoder.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <queue>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace skv {
namespace {

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
const ByteLevelTable& byte_level() {
  static const ByteLevelTable table;
  return table;
}

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, "tokenizer file " + path.string() + " not found or unreadable");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(ErrorCode::kParse, path.string() + ": malformed JSON: " + e.what());
  }
}

std::string hex_byte_token(int b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "<0x%02X>", b);
  return buf;
}

// "special tokens" in tokenizer_config.json are either strings or AddedToken dicts with a "content".
std::optional<std::string> config_token(const json& cfg, const char* key) {
  if (!cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

bool starts_with_space(std::string_view s) { return !s.empty() && s[0] == ' '; }

}  // namespace

struct Tokenizer::Impl {
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

// ---------------------------------------------------------------------------------------------------------
// Loading

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

void Tokenizer::Impl::load_post_processor(const json& p, std::vector<int32_t>& pre, std::vector<int32_t>& post, bool& found) {
  if (p.is_null()) return;
  const std::string type = p.value("type", "");
  if (type == "Sequence") {
    for (const json& k : p.at("processors")) load_post_processor(k, pre, post, found);
  } else if (type == "ByteLevel") {
    // Only adjusts offsets.
  } else if (type == "TemplateProcessing") {
    found = true;
    pre.clear();
    post.clear();
    bool seen_a = false;
    for (const json& item : p.at("single")) {
      if (item.contains("Sequence")) {
        if (item["Sequence"].value("id", "A") != "A") fail(ErrorCode::kParse, "single template names a sequence other than A");
        seen_a = true;
      } else if (item.contains("SpecialToken")) {
        const std::string name = item["SpecialToken"].at("id").get<std::string>();
        std::vector<int32_t> ids;
        const json& st = p.value("special_tokens", json::object());
        if (st.contains(name)) ids = st[name].at("ids").get<std::vector<int32_t>>();
        else ids.push_back(id_of(name, "post_processor template"));
        auto& dst = seen_a ? post : pre;
        dst.insert(dst.end(), ids.begin(), ids.end());
      } else {
        fail(ErrorCode::kParse, "post_processor template item is neither Sequence nor SpecialToken");
      }
    }
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    found = true;
    pre = {p.at("cls").at(1).get<int32_t>()};
    post = {p.at("sep").at(1).get<int32_t>()};
  } else {
    fail(ErrorCode::kUnsupported, "unsupported post_processor type '" + type + "'");
  }
}

Tokenizer Tokenizer::load(const std::filesystem::path& tokenizer_json) {
  auto impl = std::make_shared<Impl>();
  impl->source = tokenizer_json.string();
  const json root = read_json(tokenizer_json);
  const std::filesystem::path dir = tokenizer_json.parent_path();
  json cfg = json::object();
  if (std::filesystem::exists(dir / "tokenizer_config.json")) cfg = read_json(dir / "tokenizer_config.json");
  try {
    if (!root.is_object() || !root.contains("model") || !root["model"].is_object())
      impl->fail(ErrorCode::kParse, "expected a JSON object with a \"model\" object");
    impl->load_model(root["model"]);

    // Added tokens: matched in raw text before anything else, longest first.
    if (root.contains("added_tokens") && root["added_tokens"].is_array()) {
      for (const json& t : root["added_tokens"]) {
        Impl::Added a{t.at("content").get<std::string>(), t.at("id").get<int32_t>(), t.value("lstrip", false),
                      t.value("rstrip", false)};
        if (a.id < 0) impl->fail(ErrorCode::kParse, "added token '" + a.content + "' has a negative id");
        if (a.content.empty()) impl->fail(ErrorCode::kParse, "added token " + std::to_string(a.id) + " is empty");
        if (static_cast<size_t>(a.id) >= impl->id_to_token.size()) impl->id_to_token.resize(static_cast<size_t>(a.id) + 1);
        impl->id_to_token[static_cast<size_t>(a.id)] = a.content;
        impl->special.resize(impl->id_to_token.size(), 0);
        if (t.value("special", false)) impl->special[static_cast<size_t>(a.id)] = 1;
        impl->added_ids[a.content] = a.id;
        impl->added.push_back(std::move(a));
      }
    }
    impl->special.resize(impl->id_to_token.size(), 0);
    std::stable_sort(impl->added.begin(), impl->added.end(),
                     [](const Impl::Added& x, const Impl::Added& y) { return x.content.size() > y.content.size(); });
    for (uint32_t i = 0; i < impl->added.size(); ++i)
      impl->added_by_first_byte[static_cast<unsigned char>(impl->added[i].content[0])].push_back(i);

    impl->load_normalizer(root.value("normalizer", json()));
    impl->load_pre_tokenizer(root.value("pre_tokenizer", json()));
    impl->load_decoder(root.value("decoder", json()));

    // BOS / EOS: tokenizer_config.json names them; the post-processor template decides what encode adds.
    auto tok_id = [&](const std::string& t) -> std::optional<int32_t> {
      if (auto it = impl->added_ids.find(t); it != impl->added_ids.end()) return it->second;
      if (auto it = impl->vocab.find(t); it != impl->vocab.end()) return it->second;
      return std::nullopt;
    };
    if (auto b = config_token(cfg, "bos_token")) impl->bos = tok_id(*b);
    if (auto e = config_token(cfg, "eos_token")) {
      if (auto id = tok_id(*e)) impl->eos.push_back(*id);
    }
    bool has_template = false;
    impl->load_post_processor(root.value("post_processor", json()), impl->prefix_ids, impl->suffix_ids, has_template);
    if (!has_template) {
      if (cfg.value("add_bos_token", false) && impl->bos) impl->prefix_ids = {*impl->bos};
      if (cfg.value("add_eos_token", false) && !impl->eos.empty()) impl->suffix_ids = {impl->eos[0]};
    }
    if (!impl->bos && !impl->prefix_ids.empty() && impl->prefix_ids.size() == 1) impl->bos = impl->prefix_ids[0];
    impl->add_bos = impl->bos && !impl->prefix_ids.empty() && impl->prefix_ids[0] == *impl->bos;
  } catch (const json::exception& e) {
    throw Error(ErrorCode::kParse, impl->source + ": unexpected structure: " + e.what());
  }
  // generation_config.json may list several EOS ids (Llama-3.1: end_of_text, eom, eot).
  if (std::filesystem::exists(dir / "generation_config.json")) {
    const json gen = read_json(dir / "generation_config.json");
    if (gen.is_object() && gen.contains("eos_token_id")) {
      std::vector<int32_t> ids;
      const json& e = gen["eos_token_id"];
      if (e.is_number_integer()) ids.push_back(e.get<int32_t>());
      else if (e.is_array()) for (const json& x : e) if (x.is_number_integer()) ids.push_back(x.get<int32_t>());
      for (int32_t id : ids)
        if (std::find(impl->eos.begin(), impl->eos.end(), id) == impl->eos.end()) impl->eos.push_back(id);
    }
  }
  return Tokenizer(std::move(impl));
}

// ---------------------------------------------------------------------------------------------------------
// Encoding

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

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& im = *impl_;
  std::vector<int32_t> out;
  if (add_special_tokens) out = im.prefix_ids;

  // Split the raw text on added tokens (leftmost, longest), honouring lstrip/rstrip.
  struct Section {
    size_t begin, end;
    int32_t added;  // -1 for ordinary text
  };
  std::vector<Section> sections;
  size_t start = 0, i = 0;
  while (i < text.size()) {
    const Impl::Added* hit = nullptr;
    for (uint32_t k : im.added_by_first_byte[static_cast<unsigned char>(text[i])]) {
      const Impl::Added& a = im.added[k];
      if (text.compare(i, a.content.size(), a.content) == 0) {
        hit = &a;
        break;  // sorted longest first
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > start) sections.push_back({start, i, -1});
    sections.push_back({i, i + hit->content.size(), hit->id});
    i += hit->content.size();
    start = i;
  }
  if (start < text.size()) sections.push_back({start, text.size(), -1});
  auto strip_space = [&](Section& s, bool left) {
    unicode::DecodedText d = unicode::decode_utf8(text.substr(s.begin, s.end - s.begin));
    size_t b = 0, e = d.cps.size();
    if (left) while (b < e && unicode::is_space(d.cps[b])) ++b;
    else while (e > b && unicode::is_space(d.cps[e - 1])) --e;
    const size_t base = s.begin;
    s.begin = base + d.offsets[b];
    s.end = base + d.offsets[e];
  };
  for (size_t k = 0; k < sections.size(); ++k) {
    if (sections[k].added < 0) continue;
    const std::string& content = im.id_to_token[static_cast<size_t>(sections[k].added)];
    for (const Impl::Added& a : im.added) {
      if (a.id != sections[k].added || a.content != content) continue;
      if (a.lstrip && k > 0 && sections[k - 1].added < 0) strip_space(sections[k - 1], false);
      if (a.rstrip && k + 1 < sections.size() && sections[k + 1].added < 0) strip_space(sections[k + 1], true);
      break;
    }
  }

  std::unordered_map<std::string, std::vector<int32_t>> cache;  // per call: repeated words are common
  for (const Section& s : sections) {
    if (s.added >= 0) {
      out.push_back(s.added);
      continue;
    }
    if (s.begin == s.end) continue;
    std::string norm = im.normalize(std::string(text.substr(s.begin, s.end - s.begin)));
    if (norm.empty()) continue;
    for (const std::string& piece : im.pre_tokenize(std::move(norm), s.begin == 0)) {
      if (piece.size() > 64) {
        im.bpe_word(piece, out);
        continue;
      }
      auto [it, inserted] = cache.try_emplace(piece);
      if (inserted) im.bpe_word(piece, it->second);
      out.insert(out.end(), it->second.begin(), it->second.end());
    }
  }
  if (add_special_tokens) out.insert(out.end(), im.suffix_ids.begin(), im.suffix_ids.end());
  return out;
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

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_to_token.size()); }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::vector<int32_t> Tokenizer::eos_ids() const { return impl_->eos; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[static_cast<size_t>(id)];
}
std::optional<int32_t> Tokenizer::token_id(std::string_view token_text) const {
  const std::string t(token_text);
  if (auto it = impl_->added_ids.find(t); it != impl_->added_ids.end()) return it->second;
  if (auto it = impl_->vocab.find(t); it != impl_->vocab.end()) return it->second;
  return std::nullopt;
}
const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    throw Error(ErrorCode::kInvalidArgument, "token id " + std::to_string(id) + " is out of range [0, " +
                                                 std::to_string(vocab_size()) + ") for " + impl_->source);
  return impl_->id_to_token[static_cast<size_t>(id)];
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
