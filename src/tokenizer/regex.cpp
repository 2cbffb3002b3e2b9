// Regex: parser (pattern -> AST), compiler (AST -> backtracking program) and the backtracking matcher.
#include "tokenizer/regex.h"

#include <memory>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace skv {

bool Regex::CharClass::contains_slow(char32_t cp) const {
  bool hit = false;
  for (const ClassItem& it : items) {
    bool m = false;
    switch (it.kind) {
      case ClassItem::kRange: m = cp >= it.lo && cp <= it.hi; break;
      case ClassItem::kLetter: m = unicode::is_letter(cp); break;
      case ClassItem::kNumber: m = unicode::is_number(cp); break;
      case ClassItem::kSpace: m = unicode::is_space(cp); break;
      case ClassItem::kDigit: m = cp >= '0' && cp <= '9'; break;
      case ClassItem::kWord: m = cp < 128 && (unicode::is_letter(cp) || unicode::is_number(cp) || cp == '_'); break;
      case ClassItem::kAny: m = cp != '\n' && cp != '\r' && cp != 0x2028 && cp != 0x2029; break;
    }
    if (m != it.negated) {
      hit = true;
      break;
    }
  }
  return hit != negated;
}

bool Regex::CharClass::contains(char32_t cp) const {
  if (cp < 128) return (ascii[cp >> 6] >> (cp & 63)) & 1u;
  return contains_slow(cp);
}

namespace {

struct Node {
  enum Kind { kClass, kConcat, kAlt, kRepeat, kLook, kEmpty } kind = kEmpty;
  int cls = -1;
  std::vector<std::unique_ptr<Node>> kids;
  int min = 0, max = -1;  // kRepeat; max -1 = unbounded
  bool greedy = true;
  bool negated = false;   // kLook
};

bool nullable(const Node& n) {
  switch (n.kind) {
    case Node::kClass: return false;
    case Node::kEmpty: case Node::kLook: return true;
    case Node::kConcat:
      for (auto& k : n.kids) if (!nullable(*k)) return false;
      return true;
    case Node::kAlt:
      for (auto& k : n.kids) if (nullable(*k)) return true;
      return false;
    case Node::kRepeat: return n.min == 0 || nullable(*n.kids[0]);
  }
  return true;
}

}  // namespace

class RegexCompiler {
 public:
  RegexCompiler(Regex& re, std::string_view what) : re_(re), what_(what) {}

  void compile(std::string_view pattern) {
    unicode::DecodedText d = unicode::decode_utf8(pattern);
    p_ = d.cps;
    pattern_ = std::string(pattern);
    std::unique_ptr<Node> root = parse_alt(false);
    if (i_ != p_.size()) fail(ErrorCode::kParse, "unbalanced ')'");
    emit(*root);
    re_.prog_.push_back({Regex::Op::kMatch});
    for (Regex::CharClass& c : re_.classes_) {
      for (char32_t cp = 0; cp < 128; ++cp) {
        if (c.contains_slow(cp)) c.ascii[cp >> 6] |= uint64_t{1} << (cp & 63);
      }
    }
  }

 private:
  [[noreturn]] void fail(ErrorCode code, const std::string& why) const {
    throw Error(code, what_ + ": regex " + pattern_ + ": " + why + " at code point " + std::to_string(i_));
  }
  bool at_end() const { return i_ >= p_.size(); }
  char32_t peek() const { return at_end() ? 0 : p_[i_]; }
  bool eat(char32_t c) {
    if (!at_end() && p_[i_] == c) { ++i_; return true; }
    return false;
  }

  int add_class(Regex::CharClass c) {
    re_.classes_.push_back(std::move(c));
    return static_cast<int>(re_.classes_.size()) - 1;
  }
  std::unique_ptr<Node> class_node(Regex::CharClass c) {
    auto n = std::make_unique<Node>();
    n->kind = Node::kClass;
    n->cls = add_class(std::move(c));
    return n;
  }
  // Case folding under (?i:...) covers ASCII letters, as the reference's JS rewrite of these patterns does.
  void add_range(Regex::CharClass& c, char32_t lo, char32_t hi) {
    c.items.push_back({Regex::ClassItem::kRange, false, lo, hi});
    if (icase_) {
      for (char32_t ch = std::max<char32_t>(lo, 'A'); ch <= std::min<char32_t>(hi, 'Z'); ++ch)
        c.items.push_back({Regex::ClassItem::kRange, false, ch + 32, ch + 32});
      for (char32_t ch = std::max<char32_t>(lo, 'a'); ch <= std::min<char32_t>(hi, 'z'); ++ch)
        c.items.push_back({Regex::ClassItem::kRange, false, ch - 32, ch - 32});
    }
  }

  std::unique_ptr<Node> parse_alt(bool in_group) {
    auto alt = std::make_unique<Node>();
    alt->kind = Node::kAlt;
    alt->kids.push_back(parse_concat());
    while (eat('|')) alt->kids.push_back(parse_concat());
    if (in_group && !eat(')')) fail(ErrorCode::kParse, "missing ')'");
    if (alt->kids.size() == 1) return std::move(alt->kids[0]);
    return alt;
  }

  std::unique_ptr<Node> parse_concat() {
    auto cat = std::make_unique<Node>();
    cat->kind = Node::kConcat;
    while (!at_end() && peek() != '|' && peek() != ')') {
      std::unique_ptr<Node> atom = parse_atom();
      cat->kids.push_back(parse_quantifier(std::move(atom)));
    }
    return cat;
  }

  std::unique_ptr<Node> parse_quantifier(std::unique_ptr<Node> atom) {
    while (!at_end()) {
      int lo, hi;
      const char32_t c = peek();
      if (c == '?') { lo = 0; hi = 1; ++i_; }
      else if (c == '*') { lo = 0; hi = -1; ++i_; }
      else if (c == '+') { lo = 1; hi = -1; ++i_; }
      else if (c == '{') {
        const size_t save = i_++;
        auto number = [&]() {
          int v = -1;
          while (!at_end() && peek() >= '0' && peek() <= '9') {
            v = (v < 0 ? 0 : v) * 10 + static_cast<int>(peek() - '0');
            if (v > 1000) fail(ErrorCode::kUnsupported, "repetition count over 1000");
            ++i_;
          }
          return v;
        };
        lo = number();
        hi = lo;
        if (eat(',')) hi = number();  // {n,} leaves hi = -1
        if (lo < 0 || !eat('}')) {    // not a quantifier: a literal '{'
          i_ = save;
          return atom;
        }
        if (hi >= 0 && hi < lo) fail(ErrorCode::kParse, "bad repetition range");
      } else {
        return atom;
      }
      if (atom->kind == Node::kLook) fail(ErrorCode::kUnsupported, "quantified lookahead");
      auto rep = std::make_unique<Node>();
      rep->kind = Node::kRepeat;
      rep->min = lo;
      rep->max = hi;
      if (eat('?')) rep->greedy = false;
      else if (peek() == '+') fail(ErrorCode::kUnsupported, "possessive quantifier");
      if (hi < 0 && nullable(*atom)) fail(ErrorCode::kUnsupported, "unbounded repetition of something that can match empty");
      rep->kids.push_back(std::move(atom));
      atom = std::move(rep);
    }
    return atom;
  }

  std::unique_ptr<Node> parse_atom() {
    const char32_t c = p_[i_++];
    if (c == '(') {
      bool saved_icase = icase_;
      std::unique_ptr<Node> look;
      if (eat('?')) {
        if (eat(':')) {
        } else if (eat('=') || peek() == '!') {
          look = std::make_unique<Node>();
          look->kind = Node::kLook;
          look->negated = eat('!');
        } else if (eat('i')) {
          if (!eat(':')) fail(ErrorCode::kUnsupported, "inline flags other than (?i:...)");
          icase_ = true;
        } else {
          fail(ErrorCode::kUnsupported, "group syntax (?" + std::string(1, static_cast<char>(peek())) + "...)");
        }
      }
      std::unique_ptr<Node> body = parse_alt(true);
      icase_ = saved_icase;
      if (look) {
        look->kids.push_back(std::move(body));
        return look;
      }
      return body;
    }
    if (c == '[') return class_node(parse_class());
    if (c == '.') {
      Regex::CharClass cls;
      cls.items.push_back({Regex::ClassItem::kAny});
      return class_node(std::move(cls));
    }
    if (c == '^' || c == '$') fail(ErrorCode::kUnsupported, "anchors");
    if (c == ')' || c == '*' || c == '+' || c == '?') fail(ErrorCode::kParse, "unexpected character");
    Regex::CharClass cls;
    if (c == '\\') {
      parse_escape(cls, /*in_class=*/false);
    } else {
      add_range(cls, c, c);
    }
    return class_node(std::move(cls));
  }

  // Parses after '\'; adds the escape's meaning to cls. Returns the code point for single characters (else 0).
  char32_t parse_escape(Regex::CharClass& cls, bool in_class) {
    if (at_end()) fail(ErrorCode::kParse, "dangling backslash");
    const char32_t c = p_[i_++];
    using K = Regex::ClassItem;
    auto prop = [&](K::Kind k, bool neg) { cls.items.push_back({k, neg, 0, 0}); return char32_t{0}; };
    switch (c) {
      case 's': return prop(K::kSpace, false);
      case 'S': return prop(K::kSpace, true);
      case 'd': return prop(K::kDigit, false);
      case 'D': return prop(K::kDigit, true);
      case 'w': return prop(K::kWord, false);
      case 'W': return prop(K::kWord, true);
      case 'p': case 'P': {
        if (!eat('{')) fail(ErrorCode::kParse, "expected '{' after \\p");
        std::string name;
        while (!at_end() && peek() != '}') name.push_back(static_cast<char>(p_[i_++]));
        if (!eat('}')) fail(ErrorCode::kParse, "unterminated \\p{");
        K::Kind k;
        if (name == "L" || name == "Letter") k = K::kLetter;
        else if (name == "N" || name == "Number") k = K::kNumber;
        else fail(ErrorCode::kUnsupported, "Unicode property \\p{" + name + "} (supported: L, N)");
        return prop(k, c == 'P');
      }
      default: break;
    }
    char32_t lit;
    switch (c) {
      case 'n': lit = '\n'; break;
      case 'r': lit = '\r'; break;
      case 't': lit = '\t'; break;
      case 'f': lit = '\f'; break;
      case 'v': lit = '\v'; break;
      case '0': lit = 0; break;
      case 'x': case 'u': {
        lit = 0;
        int digits = 0;
        const bool braces = eat('{');
        const int want = braces ? 8 : (c == 'x' ? 2 : 4);
        while (digits < want && !at_end() && std::isxdigit(static_cast<int>(peek() < 128 ? peek() : 0))) {
          const char32_t h = p_[i_++];
          lit = lit * 16 + static_cast<char32_t>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
          ++digits;
        }
        if (digits == 0 || (braces && !eat('}'))) fail(ErrorCode::kParse, "bad hex escape");
        break;
      }
      default:
        if (c < 128 && std::isalnum(static_cast<int>(c)) && !(in_class && c == 'b'))
          fail(ErrorCode::kUnsupported, std::string("escape \\") + static_cast<char>(c));
        lit = (in_class && c == 'b') ? '\b' : c;
    }
    add_range(cls, lit, lit);
    return lit;
  }

  Regex::CharClass parse_class() {
    Regex::CharClass cls;
    if (eat('^')) cls.negated = true;
    bool first = true;
    while (true) {
      if (at_end()) fail(ErrorCode::kParse, "unterminated '['");
      char32_t c = p_[i_];
      if (c == ']' && !first) { ++i_; break; }
      first = false;
      ++i_;
      char32_t lo;
      bool single = true;
      if (c == '\\') {
        // Escapes are parsed into their own class: a single character can bound a range, \p{L} etc. cannot.
        Regex::CharClass tmp;
        const bool icase = icase_;
        icase_ = false;
        lo = parse_escape(tmp, true);
        icase_ = icase;
        single = tmp.items.size() == 1 && tmp.items[0].kind == Regex::ClassItem::kRange;
        if (!single) {
          cls.items.insert(cls.items.end(), tmp.items.begin(), tmp.items.end());
          continue;
        }
      } else {
        lo = c;
      }
      char32_t hi = lo;
      if (peek() == '-' && i_ + 1 < p_.size() && p_[i_ + 1] != ']') {
        ++i_;
        char32_t h = p_[i_++];
        if (h == '\\') {
          Regex::CharClass tmp;
          h = parse_escape(tmp, true);
          if (tmp.items.size() != 1 || tmp.items[0].kind != Regex::ClassItem::kRange)
            fail(ErrorCode::kParse, "class escape used as a range bound");
        }
        hi = h;
        if (hi < lo) fail(ErrorCode::kParse, "range out of order");
      }
      add_range(cls, lo, hi);
    }
    return cls;
  }

  int pc() const { return static_cast<int>(re_.prog_.size()); }
  int push(Regex::Inst inst) {
    re_.prog_.push_back(inst);
    return pc() - 1;
  }

  void emit(const Node& n) {
    using Op = Regex::Op;
    switch (n.kind) {
      case Node::kEmpty: break;
      case Node::kClass: push({Op::kClass, false, n.cls, 0}); break;
      case Node::kConcat:
        for (auto& k : n.kids) emit(*k);
        break;
      case Node::kAlt: {
        std::vector<int> jumps;
        for (size_t i = 0; i < n.kids.size(); ++i) {
          if (i + 1 < n.kids.size()) {
            const int split = push({Op::kSplit, false, 0, 0});
            re_.prog_[split].x = pc();
            emit(*n.kids[i]);
            jumps.push_back(push({Op::kJmp, false, 0, 0}));
            re_.prog_[split].y = pc();
          } else {
            emit(*n.kids[i]);
          }
        }
        for (int j : jumps) re_.prog_[j].x = pc();
        break;
      }
      case Node::kLook: {
        const int look = push({Op::kLook, n.negated, 0, 0});
        re_.prog_[look].x = pc();
        emit(*n.kids[0]);
        push({Op::kMatch});
        re_.prog_[look].y = pc();
        break;
      }
      case Node::kRepeat: {
        const Node& body = *n.kids[0];
        for (int i = 0; i < n.min; ++i) emit(body);
        auto split_to = [&](int prefer_pc, int other_pc, int at) {
          re_.prog_[at].x = n.greedy ? prefer_pc : other_pc;
          re_.prog_[at].y = n.greedy ? other_pc : prefer_pc;
        };
        if (n.max < 0) {
          const int split = push({Op::kSplit, false, 0, 0});
          emit(body);
          push({Op::kJmp, false, split, 0});
          split_to(split + 1, pc(), split);
        } else {
          std::vector<int> splits;
          for (int i = n.min; i < n.max; ++i) {
            splits.push_back(push({Op::kSplit, false, 0, 0}));
            emit(body);
          }
          for (int s : splits) split_to(s + 1, pc(), s);
        }
        break;
      }
    }
  }

  Regex& re_;
  std::string what_;
  std::string pattern_;
  std::vector<char32_t> p_;
  size_t i_ = 0;
  bool icase_ = false;
};

Regex::Regex(std::string_view pattern, std::string_view what) {
  RegexCompiler(*this, what).compile(pattern);
}

bool Regex::match_at(int start_pc, const std::vector<char32_t>& cps, size_t start_pos, size_t& end,
                     std::vector<std::pair<int, size_t>>& stack) const {
  const size_t base = stack.size();
  stack.emplace_back(start_pc, start_pos);
  const size_t n = cps.size();
  while (stack.size() > base) {
    auto [pc, pos] = stack.back();
    stack.pop_back();
    while (true) {
      const Inst& in = prog_[static_cast<size_t>(pc)];
      if (in.op == Op::kClass) {
        if (pos < n && classes_[static_cast<size_t>(in.x)].contains(cps[pos])) {
          ++pc;
          ++pos;
          continue;
        }
        break;  // fail this thread
      }
      if (in.op == Op::kSplit) {
        stack.emplace_back(in.y, pos);
        pc = in.x;
        continue;
      }
      if (in.op == Op::kJmp) {
        pc = in.x;
        continue;
      }
      if (in.op == Op::kMatch) {
        end = pos;
        stack.resize(base);
        return true;
      }
      // kLook: run the body as its own match at pos.
      size_t ignored;
      const bool found = match_at(in.x, cps, pos, ignored, stack);
      if (found == in.negated) break;
      pc = in.y;
    }
  }
  return false;
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(const std::vector<char32_t>& cps) const {
  std::vector<std::pair<size_t, size_t>> out;
  std::vector<std::pair<int, size_t>> stack;
  stack.reserve(64);
  size_t pos = 0;
  while (pos < cps.size()) {
    size_t end;
    if (match_at(0, cps, pos, end, stack) && end > pos) {
      out.emplace_back(pos, end);
      pos = end;
    } else {
      ++pos;
    }
  }
  return out;
}

}  // namespace skv
