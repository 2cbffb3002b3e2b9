// UTF-8 decoding/encoding, code point class lookups and NFC, driven by the generated unicode_tables.inc.
#include "tokenizer/unicode.h"

#include <algorithm>

namespace skv::unicode {
namespace {

struct CodePointRange {
  char32_t lo, hi;
};
struct CombiningRange {
  char32_t lo, hi;
  uint8_t rank;
};
struct Decomposition {
  char32_t cp;
  uint16_t offset;
  uint8_t length;
};
struct Composition {
  char32_t first, second, composite;
};

#include "tokenizer/unicode_tables.inc"

template <size_t N>
bool in_ranges(const CodePointRange (&table)[N], char32_t cp) {
  const CodePointRange* end = table + N;
  const CodePointRange* it =
      std::upper_bound(table, end, cp, [](char32_t v, const CodePointRange& r) { return v < r.lo; });
  return it != table && cp <= (it - 1)->hi;
}

// Hangul syllables compose and decompose algorithmically (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t combining_rank(char32_t cp) {
  if (cp < 0x300) return 0;
  const CombiningRange* begin = kCombiningRanges;
  const CombiningRange* end = kCombiningRanges + std::size(kCombiningRanges);
  const CombiningRange* it =
      std::upper_bound(begin, end, cp, [](char32_t v, const CombiningRange& r) { return v < r.lo; });
  if (it == begin || cp > (it - 1)->hi) return 0;
  return (it - 1)->rank;
}

void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const Decomposition* begin = kDecompositions;
  const Decomposition* end = kDecompositions + std::size(kDecompositions);
  const Decomposition* it =
      std::lower_bound(begin, end, cp, [](const Decomposition& d, char32_t v) { return d.cp < v; });
  if (it != end && it->cp == cp) {
    out.insert(out.end(), kDecompositionData + it->offset, kDecompositionData + it->offset + it->length);
  } else {
    out.push_back(cp);
  }
}

// 0 when (a, b) do not compose.
char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const Composition* begin = kCompositions;
  const Composition* end = kCompositions + std::size(kCompositions);
  const Composition* it = std::lower_bound(begin, end, std::pair{a, b}, [](const Composition& c, std::pair<char32_t, char32_t> v) {
    return c.first < v.first || (c.first == v.first && c.second < v.second);
  });
  if (it != end && it->first == a && it->second == b) return it->composite;
  return 0;
}

}  // namespace

DecodedText decode_utf8(std::string_view s) {
  DecodedText d;
  d.cps.reserve(s.size());
  d.offsets.reserve(s.size() + 1);
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = valid_utf8_length(s, i);
    d.offsets.push_back(static_cast<uint32_t>(i));
    if (n == 0) {
      d.cps.push_back(kInvalidByte);
      ++i;
      continue;
    }
    const auto* p = reinterpret_cast<const unsigned char*>(s.data() + i);
    char32_t cp;
    if (n == 1) cp = p[0];
    else if (n == 2) cp = ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    else if (n == 3) cp = ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    else cp = ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
    d.cps.push_back(cp);
    i += n;
  }
  d.offsets.push_back(static_cast<uint32_t>(s.size()));
  return d;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {
// How many bytes of a sequence starting at s[i] are a valid prefix (>= 1 if the lead byte is valid), and the
// full length that lead byte promises. Follows the well-formed table of Unicode 3.9 (no overlongs/surrogates).
std::pair<size_t, size_t> utf8_prefix(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {1, 1};
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) need = 2;
  else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {0, 1};
  }
  size_t got = 1;
  while (got < need && i + got < s.size()) {
    const auto b = static_cast<unsigned char>(s[i + got]);
    if (got == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
    ++got;
  }
  return {got, need};
}
}  // namespace

size_t valid_utf8_length(std::string_view s, size_t i) {
  auto [got, need] = utf8_prefix(s, i);
  return got == need ? got : 0;
}

std::string to_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto [got, need] = utf8_prefix(s, i);
    if (got == need) {
      out.append(s.substr(i, got));
      i += got;
    } else {
      out.append("\xEF\xBF\xBD");  // one U+FFFD per maximal invalid subpart
      i += std::max<size_t>(got, 1);
    }
  }
  return out;
}

size_t incomplete_utf8_tail(std::string_view s) {
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    const size_t i = s.size() - back;
    const auto b = static_cast<unsigned char>(s[i]);
    if ((b & 0xC0) == 0x80) continue;  // a continuation byte: keep looking for the lead
    auto [got, need] = utf8_prefix(s, i);
    return (got == back && need > back) ? i : s.size();
  }
  return s.size();
}

bool is_letter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return in_ranges(kLetterRanges, cp);
}
bool is_number(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return in_ranges(kNumberRanges, cp);
}
bool is_space(char32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  return in_ranges(kSpaceRanges, cp);
}

std::string nfc(std::string_view s) {
  DecodedText text = decode_utf8(s);
  bool maybe = false;
  for (char32_t cp : text.cps) {
    if (cp >= 0x300 && cp != kInvalidByte && in_ranges(kNfcMaybeRanges, cp)) {
      maybe = true;
      break;
    }
  }
  if (!maybe) return std::string(s);

  std::string out;
  out.reserve(s.size() + 8);
  std::vector<char32_t> buf;
  // Normalizes one run of valid code points: decompose, reorder non-starters, recompose.
  auto flush = [&]() {
    if (buf.empty()) return;
    std::vector<char32_t> d;
    d.reserve(buf.size() + 4);
    for (char32_t cp : buf) decompose(cp, d);
    std::vector<uint8_t> rank(d.size());
    for (size_t i = 0; i < d.size(); ++i) rank[i] = combining_rank(d[i]);
    for (size_t i = 0; i < d.size();) {  // stable sort of each run of non-starters by rank
      if (rank[i] == 0) { ++i; continue; }
      size_t j = i;
      while (j < d.size() && rank[j] != 0) ++j;
      std::vector<std::pair<uint8_t, char32_t>> run;
      for (size_t k = i; k < j; ++k) run.emplace_back(rank[k], d[k]);
      std::stable_sort(run.begin(), run.end(), [](auto& a, auto& b) { return a.first < b.first; });
      for (size_t k = i; k < j; ++k) { rank[k] = run[k - i].first; d[k] = run[k - i].second; }
      i = j;
    }
    // Canonical composition: a character joins the last starter unless something between blocks it.
    size_t starter = 0, kept = 1;
    int last_rank = rank[0] == 0 ? 0 : 256;
    bool have_starter = rank[0] == 0;
    for (size_t i = 1; i < d.size(); ++i) {
      const int r = rank[i];
      const char32_t c = have_starter ? compose(d[starter], d[i]) : 0;
      if (c != 0 && (last_rank < r || last_rank == 0)) {
        d[starter] = c;
        continue;
      }
      if (r == 0) { starter = kept; have_starter = true; }
      last_rank = r;
      d[kept] = d[i];
      rank[kept] = rank[i];
      ++kept;
    }
    for (size_t i = 0; i < kept; ++i) append_utf8(out, d[i]);
    buf.clear();
  };
  for (size_t i = 0; i < text.cps.size(); ++i) {
    if (text.cps[i] == kInvalidByte) {
      flush();
      out.push_back(s[text.offsets[i]]);
    } else {
      buf.push_back(text.cps[i]);
    }
  }
  flush();
  return out;
}

}  // namespace skv::unicode
