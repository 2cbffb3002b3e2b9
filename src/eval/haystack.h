// Haystacks: the plain text that the needle tasks hide their needles in. Any text file (or a JSON file holding
// {"text": "..."}, like RULER's PaulGrahamEssays.json), or one of the texts Debian packages ship:
//   kjv     the King James Bible (packages bible-kjv-text + bible-kjv; read through the `bible` program)
//   jargon  the Jargon File (package jargon-text; /usr/share/doc/jargon-text/jargon.txt.gz, read through gzip)
// The text is split into words at whitespace (RULER's re.sub(r'\s+', ' ', text).split(' ')).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace skv::eval {

struct Haystack {
  std::string name;                  // "kjv", "jargon" or the file path as given
  uint64_t hash = 0;                 // FNV-1a of the normalized text: identifies it in results files
  std::vector<std::string> words;
  std::vector<uint8_t> ends_sentence;  // [words.size()]: 1 where a sentence ends after that word

  int64_t size() const { return static_cast<int64_t>(words.size()); }
};

inline constexpr std::string_view kDefaultHaystack = "kjv";

// Builds a haystack from text (normalizing whitespace). Throws Error(kInvalidArgument) when it has no words.
Haystack make_haystack(std::string name, std::string_view text);
// "kjv", "jargon" or a path. Throws Error naming the file or the missing package.
Haystack load_haystack(std::string_view spec);

// True when a word ends a sentence: it ends with . ! or ? (possibly followed by closing quotes or brackets)
// and is not a common abbreviation (Mr., Dr., e.g., ...).
bool is_sentence_end(std::string_view word);

// Distinct words of the haystack made only of 3 to 12 ASCII letters, lower-cased, sorted: the word pool of cwe.
std::vector<std::string> vocabulary(const Haystack& haystack);

}  // namespace skv::eval
