// Haystack loading and word/sentence splitting.
#include "eval/haystack.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "eval/rng.h"

namespace skv::eval {
namespace {

constexpr const char* kKjvHint =
    "the default haystack 'kjv' (the King James Bible) needs Debian's bible-kjv-text and bible-kjv packages "
    "(scripts/setup.sh installs them); or pass --haystack FILE";
constexpr const char* kJargonPath = "/usr/share/doc/jargon-text/jargon.txt.gz";

// Runs a fixed command line and returns its stdout; empty on failure.
std::string run_command(const std::string& command) {
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return {};
  std::string out;
  std::array<char, 1 << 16> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return {};
  return out;
}

std::string read_kjv() {
  // Without pretty-printing, `bible` prints one verse a line, "Ge1:1 In the beginning ...".
  const std::string out = run_command("bible -f Gen1:1-Rev22:21 2>/dev/null");
  if (out.size() < 1000000) throw Error(ErrorCode::kNotFound, kKjvHint);
  std::string text;
  text.reserve(out.size());
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    const size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    text.append(line, space + 1, std::string::npos);
    text.push_back('\n');
  }
  return text;
}

std::string read_jargon() {
  std::ifstream probe(kJargonPath);
  if (!probe)
    throw Error(ErrorCode::kNotFound, std::string("the haystack 'jargon' needs Debian's jargon-text package (") +
                                          kJargonPath + "; scripts/setup.sh installs it); or pass --haystack FILE");
  const std::string out = run_command(std::string("gzip -dc ") + kJargonPath + " 2>/dev/null");
  if (out.empty()) throw Error(ErrorCode::kParse, std::string("cannot decompress ") + kJargonPath + " with gzip");
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, "cannot open haystack file " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

bool is_sentence_end(std::string_view w) {
  while (!w.empty() && (w.back() == '"' || w.back() == '\'' || w.back() == ')' || w.back() == ']')) w.remove_suffix(1);
  if (w.size() >= 3 && static_cast<unsigned char>(w[w.size() - 3]) == 0xE2 &&
      static_cast<unsigned char>(w[w.size() - 2]) == 0x80 &&
      (static_cast<unsigned char>(w.back()) == 0x9D || static_cast<unsigned char>(w.back()) == 0x99))
    w.remove_suffix(3);  // ” or ’
  if (w.empty()) return false;
  const char last = w.back();
  if (last == '!' || last == '?') return true;
  if (last != '.') return false;
  static const std::array<std::string_view, 12> kAbbrev = {"Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Jr.",
                                                           "Sr.", "e.g.", "i.e.", "vs.", "cf.", "No."};
  for (std::string_view a : kAbbrev)
    if (w == a) return false;
  if (w.size() == 2 && std::isupper(static_cast<unsigned char>(w[0]))) return false;  // an initial: "J."
  return true;
}

Haystack make_haystack(std::string name, std::string_view text) {
  Haystack h;
  h.name = std::move(name);
  size_t i = 0;
  std::string normalized;
  normalized.reserve(text.size());
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    const size_t start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i > start) {
      h.words.emplace_back(text.substr(start, i - start));
      h.ends_sentence.push_back(is_sentence_end(h.words.back()) ? 1 : 0);
      if (!normalized.empty()) normalized.push_back(' ');
      normalized.append(h.words.back());
    }
  }
  if (h.words.empty()) throw Error(ErrorCode::kInvalidArgument, "the haystack " + h.name + " has no words");
  h.hash = fnv1a64(normalized);
  return h;
}

Haystack load_haystack(std::string_view spec) {
  if (spec == "kjv") return make_haystack("kjv", read_kjv());
  if (spec == "jargon") return make_haystack("jargon", read_jargon());
  const std::string path(spec);
  std::string content = read_file(path);
  // RULER's essay file is {"text": "..."}; any other file is taken as plain text.
  size_t first = content.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && content[first] == '{') {
    auto j = nlohmann::json::parse(content, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("text") && j["text"].is_string())
      return make_haystack(path, j["text"].get<std::string>());
  }
  return make_haystack(path, content);
}

std::vector<std::string> vocabulary(const Haystack& haystack) {
  std::set<std::string> seen;
  for (const std::string& raw : haystack.words) {
    std::string_view w = raw;
    while (!w.empty() && std::ispunct(static_cast<unsigned char>(w.back()))) w.remove_suffix(1);
    while (!w.empty() && std::ispunct(static_cast<unsigned char>(w.front()))) w.remove_prefix(1);
    if (w.size() < 3 || w.size() > 12) continue;
    if (!std::all_of(w.begin(), w.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }))
      continue;
    std::string lower(w);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    seen.insert(std::move(lower));
  }
  return {seen.begin(), seen.end()};
}

}  // namespace skv::eval
