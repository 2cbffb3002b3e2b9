// convert_llama2c_tokenizer: llama2.c's tokenizer.bin (scores + pieces) -> HF SentencePiece-BPE tokenizer.json.
// Merges are derived from scores the way HF's SentencePieceExtractor does: every split (a, b) of every piece
// with a and b in the vocabulary, ordered by the piece's score (higher first), ties in vocabulary order.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace skv {

namespace {
constexpr int kNumSpecial = 3;   // <unk>, <s>, </s>
constexpr int kFirstByte = 3;    // <0x00> .. <0xFF> at ids 3..258
const std::string kSpace = "\u2581";

std::string to_metaspace(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ' ') out += kSpace;
    else out.push_back(c);
  }
  return out;
}
}  // namespace

void convert_llama2c_tokenizer(const std::filesystem::path& tokenizer_bin, const std::filesystem::path& out_dir) {
  const std::string src = tokenizer_bin.string();
  std::ifstream in(tokenizer_bin, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, "llama2.c tokenizer " + src + " not found or unreadable");
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() < 4) throw Error(ErrorCode::kParse, src + ": expected an int32 max_token_length, found " + std::to_string(data.size()) + " bytes");
  int32_t max_len;
  std::memcpy(&max_len, data.data(), 4);
  if (max_len <= 0 || max_len > 4096) throw Error(ErrorCode::kParse, src + ": implausible max_token_length " + std::to_string(max_len));

  std::vector<std::string> pieces;
  std::vector<float> scores;
  size_t off = 4;
  while (off < data.size()) {
    if (data.size() - off < 8) throw Error(ErrorCode::kParse, src + ": truncated entry for token " + std::to_string(pieces.size()) + " at byte " + std::to_string(off));
    float score;
    int32_t len;
    std::memcpy(&score, data.data() + off, 4);
    std::memcpy(&len, data.data() + off + 4, 4);
    off += 8;
    if (len <= 0 || len > max_len || static_cast<size_t>(len) > data.size() - off)
      throw Error(ErrorCode::kParse, src + ": token " + std::to_string(pieces.size()) + " has length " + std::to_string(len) +
                                         " (max_token_length " + std::to_string(max_len) + ", " + std::to_string(data.size() - off) + " bytes left)");
    pieces.emplace_back(data.data() + off, static_cast<size_t>(len));
    scores.push_back(score);
    off += static_cast<size_t>(len);
  }
  if (pieces.size() < kFirstByte + 256 + 1)
    throw Error(ErrorCode::kParse, src + ": expected at least 260 tokens (3 special, 256 bytes), found " + std::to_string(pieces.size()));

  // HF-style pieces: fixed special and byte tokens, "▁" for spaces (llama2.c's export turned "▁" into " ").
  std::vector<std::string> vocab(pieces.size());
  vocab[0] = "<unk>";
  vocab[1] = "<s>";
  vocab[2] = "</s>";
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    vocab[static_cast<size_t>(kFirstByte + b)] = buf;
  }
  for (size_t i = kFirstByte + 256; i < pieces.size(); ++i) vocab[i] = to_metaspace(pieces[i]);

  std::unordered_map<std::string, int32_t> ids;
  for (size_t i = 0; i < vocab.size(); ++i) {
    if (!ids.emplace(vocab[i], static_cast<int32_t>(i)).second)
      throw Error(ErrorCode::kParse, src + ": token " + std::to_string(i) + " '" + vocab[i] + "' duplicates token " + std::to_string(ids[vocab[i]]));
  }

  struct Merge {
    int32_t left, right;
    float score;
  };
  std::vector<Merge> merges;
  for (size_t i = 0; i < vocab.size(); ++i) {
    const std::string& piece = vocab[i];
    const unicode::DecodedText d = unicode::decode_utf8(piece);
    std::vector<Merge> local;
    for (size_t k = 1; k < d.cps.size(); ++k) {  // splits at code point boundaries, as Python slicing does
      auto l = ids.find(piece.substr(0, d.offsets[k]));
      auto r = ids.find(piece.substr(d.offsets[k]));
      if (l != ids.end() && r != ids.end()) local.push_back({l->second, r->second, scores[i]});
    }
    std::sort(local.begin(), local.end(), [](const Merge& a, const Merge& b) {
      return a.left != b.left ? a.left < b.left : a.right < b.right;
    });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) { return a.score > b.score; });

  using json = nlohmann::ordered_json;
  json tok;
  tok["version"] = "1.0";
  tok["truncation"] = nullptr;
  tok["padding"] = nullptr;
  json added = json::array();
  const char* special[kNumSpecial] = {"<unk>", "<s>", "</s>"};
  for (int i = 0; i < kNumSpecial; ++i) {
    added.push_back({{"id", i}, {"content", special[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  tok["added_tokens"] = added;
  tok["normalizer"] = {{"type", "Sequence"},
                       {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", kSpace}},
                                                    {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}}})}};
  tok["pre_tokenizer"] = nullptr;
  tok["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"pair", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                            {{"SpecialToken", {{"id", "<s>"}, {"type_id", 1}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", json::array({1})}, {"tokens", json::array({"<s>"})}}}}}};
  tok["decoder"] = {{"type", "Sequence"},
                    {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                                              {{"type", "ByteFallback"}},
                                              {{"type", "Fuse"}},
                                              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  json vocab_json = json::object();
  for (size_t i = 0; i < vocab.size(); ++i) vocab_json[vocab[i]] = static_cast<int32_t>(i);
  json merges_json = json::array();
  for (const Merge& m : merges) merges_json.push_back(json::array({vocab[static_cast<size_t>(m.left)], vocab[static_cast<size_t>(m.right)]}));
  tok["model"] = {{"type", "BPE"},           {"dropout", nullptr},  {"unk_token", "<unk>"},
                  {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                  {"fuse_unk", true},         {"byte_fallback", true}, {"ignore_merges", false},
                  {"vocab", vocab_json},      {"merges", merges_json}};

  json cfg = {{"add_bos_token", true},  {"add_eos_token", false}, {"bos_token", "<s>"},
              {"eos_token", "</s>"},     {"unk_token", "<unk>"},   {"pad_token", nullptr},
              {"clean_up_tokenization_spaces", false}, {"legacy", true},
              {"model_max_length", 1000000000000000019LL}, {"tokenizer_class", "LlamaTokenizer"}};

  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) throw Error(ErrorCode::kInvalidArgument, "cannot create directory " + out_dir.string() + ": " + ec.message());
  auto write = [&](const std::filesystem::path& p, const json& j) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << j.dump(1) << "\n";
    if (!out) throw Error(ErrorCode::kResource, "cannot write " + p.string());
  };
  write(out_dir / "tokenizer.json", tok);
  write(out_dir / "tokenizer_config.json", cfg);
}

}  // namespace skv
