// Tokenizer's public API: Tokenizer::load (tokenizer.json / tokenizer_config.json / generation_config.json,
// added tokens, post-processor template), encode (added-token matching, then normalizer -> pre-tokenizer -> BPE
// -> template) and the vocabulary accessors. Each pipeline stage lives in its own file (see tokenizer_impl.h).
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace skv {

using namespace tokenizer_internal;
namespace {

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, "tokenizer file " + path.string() + " not found or unreadable");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(ErrorCode::kParse, path.string() + ": malformed JSON: " + e.what());
  }
}

// "special tokens" in tokenizer_config.json are either strings or AddedToken dicts with a "content".
std::optional<std::string> config_token(const json& cfg, const char* key) {
  if (!cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Loading

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
// Accessors

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

}  // namespace skv
