// UTF-8 helpers and the Unicode data the tokenizer needs: \p{L} / \p{N} / \s classes and NFC normalization.
// The data is generated from Node.js (tools/gen_unicode_tables.mjs) so it agrees with the JavaScript reference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace skv::unicode {

// Stands in for a byte that does not start a valid UTF-8 sequence; classified like U+FFFD.
inline constexpr char32_t kInvalidByte = 0x110000;

struct DecodedText {
  std::vector<char32_t> cps;      // one entry per code point (or per invalid byte)
  std::vector<uint32_t> offsets;  // byte offset of each entry, plus the total length at the end
};

// Decodes UTF-8; each byte of an invalid sequence becomes kInvalidByte so the original bytes survive.
DecodedText decode_utf8(std::string_view s);
void append_utf8(std::string& out, char32_t cp);
// Length of the UTF-8 sequence starting at s[i] if it is valid and complete, else 0.
size_t valid_utf8_length(std::string_view s, size_t i);
// Replaces invalid UTF-8 with U+FFFD per maximal subpart (as WHATWG TextDecoder and Rust's from_utf8_lossy do).
std::string to_valid_utf8(std::string_view s);
// Index where a trailing, incomplete-but-so-far-valid UTF-8 sequence starts (s.size() if there is none).
size_t incomplete_utf8_tail(std::string_view s);

bool is_letter(char32_t cp);
bool is_number(char32_t cp);
bool is_space(char32_t cp);  // JavaScript's \s

// Canonical composition (NFC), as String.prototype.normalize("NFC").
std::string nfc(std::string_view s);

}  // namespace skv::unicode
