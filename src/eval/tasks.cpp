// RULER's synthetic tasks: definitions, prompt templates and the exact-length generator.
#include "eval/tasks.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numbers>

#include "core/error.h"
#include "eval/rng.h"
#include "eval/words.h"

namespace skv::eval {
namespace {

constexpr Metric kAll = Metric::kStringMatchAll;
constexpr Metric kPart = Metric::kStringMatchPart;

// name, description, metric, max_new_tokens, available, uses_haystack, single_needle
constexpr std::array<TaskInfo, 13> kTasks = {{
    {"niah_single_1", "one needle in repeated filler sentences; word key, 7-digit number value", kAll, 128, true,
     false, true},
    {"niah_single_2", "one needle in the essay haystack; word key, number value", kAll, 128, true, true, true},
    {"niah_single_3", "one needle in the essay haystack; word key, UUID value", kAll, 128, true, true, true},
    {"niah_multikey_1", "4 needles with different keys in the essay haystack; one is asked", kAll, 128, true, true,
     false},
    {"niah_multikey_2", "the haystack is distractor needles (word keys, number values); one is asked", kAll, 128,
     true, false, false},
    {"niah_multikey_3", "the haystack is distractor needles (UUID keys, UUID values); one is asked", kAll, 128, true,
     false, false},
    {"niah_multivalue", "4 needles with one key and different values in the essay haystack; all are asked", kAll,
     128, true, true, false},
    {"niah_multiquery", "4 needles with different keys in the essay haystack; all are asked", kAll, 128, true, true,
     false},
    {"vt", "variable tracking: a chain of 5 assignments in filler; name every variable holding the value", kAll, 30,
     true, false, false},
    {"cwe", "common words: a numbered word list; name the 10 most common words", kAll, 120, true, true, false},
    {"fwe", "frequent words: Zipf-distributed coded words; name the 3 most frequent", kAll, 50, true, false, false},
    {"qa_1", "single-hop question answering over SQuAD documents", kPart, 32, false, false, false,
     "it needs the SQuAD dataset, which is not available here"},
    {"qa_2", "multi-hop question answering over HotpotQA documents", kPart, 32, false, false, false,
     "it needs the HotpotQA dataset, which is not available here"},
}};

std::string valid_task_names() {
  std::string s;
  for (const TaskInfo& t : kTasks) {
    if (!t.available) continue;
    if (!s.empty()) s += ", ";
    s += t.name;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
// Random needle parts.

std::string random_number(Rng& rng) { return std::to_string(rng.range(1000000, 9999999)); }  // 7 digits

std::string random_uuid(Rng& rng) {  // a version-4 UUID
  const uint64_t a = rng.next(), b = rng.next();
  unsigned char bytes[16];
  for (int i = 0; i < 8; ++i) {
    bytes[i] = static_cast<unsigned char>(a >> (8 * i));
    bytes[8 + i] = static_cast<unsigned char>(b >> (8 * i));
  }
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0f) | 0x40);
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3f) | 0x80);
  char out[37];
  std::snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", bytes[0],
                bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10],
                bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]);
  return out;
}

std::string word_key(uint64_t combo) {
  const auto adj = adjectives();
  const auto noun = nouns();
  return std::string(adj[combo / noun.size()]) + "-" + std::string(noun[combo % noun.size()]);
}
uint64_t n_word_keys() { return adjectives().size() * nouns().size(); }

// Distinct word keys, drawn without replacement: a permutation of every adjective-noun pair.
class WordKeys {
 public:
  explicit WordKeys(Rng& rng) : perm_(n_word_keys()) {
    for (uint64_t i = 0; i < perm_.size(); ++i) perm_[i] = i;
    rng.shuffle(perm_);
  }
  std::string operator[](size_t i) const { return word_key(perm_[i]); }
  size_t size() const { return perm_.size(); }

 private:
  std::vector<uint64_t> perm_;
};

std::string join_and(const std::vector<std::string>& items) {  // RULER: "a, b, c, and d"
  if (items.size() == 1) return items[0];
  std::string s;
  for (size_t i = 0; i + 1 < items.size(); ++i) s += items[i] + ", ";
  return s + "and " + items.back();
}

// RULER's needle depths for random placement: np.round(np.linspace(0, 100, 40)), drawn without replacement.
std::vector<double> random_depths(Rng& rng, size_t k) {
  std::vector<int> idx(40);
  for (int i = 0; i < 40; ++i) idx[static_cast<size_t>(i)] = i;
  rng.shuffle(idx);
  std::vector<double> d;
  for (size_t j = 0; j < k; ++j) d.push_back(std::round(100.0 * idx[j] / 39.0) / 100.0);
  return d;
}

// Where a needle at fraction `depth` goes among n units whose every boundary is allowed.
int64_t unit_position(double depth, int64_t n) {
  return std::clamp<int64_t>(std::llround(depth * static_cast<double>(n)), 0, n);
}

// ---------------------------------------------------------------------------------------------------------------
// Fitting a prompt to an exact token count.

struct Body {
  // The user message with `units` whole units of filler and the first `tail` characters of the following ones.
  std::function<std::string(int64_t units, size_t tail)> user;
  int64_t max_units = 0;  // units available (the search never asks for more)
  size_t max_tail = 0;    // characters available after them
  bool bounded = false;   // running out of units before the target is an error (else max_units is generous)
};

struct Fit {
  int64_t count = -1;
  int64_t units = 0;
  size_t tail = 0;
  std::string prompt;
  std::vector<int32_t> tokens;
};

}  // namespace

struct SampleGenerator::Impl {
  const Tokenizer* tok;
  PromptFormat format;
  std::shared_ptr<const Haystack> haystack;
  uint64_t seed;
  mutable std::vector<std::string> pool;  // cwe's word pool: the haystack's vocabulary (built on first use)

  Fit fit(const Body& body, const std::string& answer_prefix, int64_t target, std::string_view task,
          int64_t context, bool fixed_text_only) const;
  const Haystack& need_haystack(std::string_view task) const {
    if (!haystack) throw Error(ErrorCode::kInternal, "task " + std::string(task) + " needs a haystack");
    return *haystack;
  }
};

namespace {

// The essay haystack: `n` words (cycling through the text), needles between sentences.
struct EssayLayout {
  const Haystack* h;
  const std::string& word(int64_t i) const { return h->words[static_cast<size_t>(i % h->size())]; }
  // Before the first word, or after a word that ends a sentence (the end of the filler only if a sentence ends
  // there: the text is cut at a word).
  bool boundary(int64_t k, int64_t) const {
    return k == 0 || h->ends_sentence[static_cast<size_t>((k - 1) % h->size())] != 0;
  }
  // The sentence boundary nearest to depth * n (the earlier one on a tie).
  int64_t position(double depth, int64_t n) const {
    const int64_t p = unit_position(depth, n);
    for (int64_t d = 0;; ++d) {
      if (p - d >= 0 && boundary(p - d, n)) return p - d;
      if (p + d <= n && boundary(p + d, n)) return p + d;
    }
  }
  std::string text(int64_t n, size_t tail, const std::vector<std::string>& needles, const std::vector<double>& depths,
                   std::vector<int64_t>* positions = nullptr) const {
    std::vector<std::pair<int64_t, size_t>> at;  // (word position, needle)
    for (size_t j = 0; j < needles.size(); ++j) at.emplace_back(position(depths[j], n), j);
    std::stable_sort(at.begin(), at.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    if (positions) {
      positions->assign(needles.size(), 0);
      for (const auto& [p, j] : at) (*positions)[j] = p;
    }
    std::string s;
    size_t next = 0;
    auto add = [&s](const std::string& piece) {
      if (!s.empty()) s.push_back(' ');
      s += piece;
    };
    for (int64_t i = 0; i <= n; ++i) {
      while (next < at.size() && at[next].first == i) add(needles[at[next++].second]);
      if (i < n) add(word(i));
    }
    if (tail > 0) s += extension(n).substr(0, tail);
    return s;
  }
  std::string extension(int64_t n) const {
    std::string e;
    for (int64_t i = n; i < n + 12; ++i) e += " " + word(i);
    return e;
  }
};

// Lines of filler (noise sentences or distractor needles) with needle lines inserted between them.
std::string line_text(const std::function<const std::string&(int64_t)>& line, int64_t n, size_t tail,
                      const std::vector<std::string>& needles, const std::vector<double>& depths,
                      std::vector<int64_t>* positions = nullptr) {
  std::vector<std::pair<int64_t, size_t>> at;
  for (size_t j = 0; j < needles.size(); ++j) at.emplace_back(unit_position(depths[j], n), j);
  std::stable_sort(at.begin(), at.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  if (positions) {
    positions->assign(needles.size(), 0);
    for (const auto& [p, j] : at) (*positions)[j] = p;
  }
  std::string s;
  size_t next = 0;
  auto add = [&s](const std::string& piece) {
    if (!s.empty()) s.push_back('\n');
    s += piece;
  };
  for (int64_t i = 0; i <= n; ++i) {
    while (next < at.size() && at[next].first == i) add(needles[at[next++].second]);
    if (i < n) add(line(i));
  }
  if (tail > 0) {
    std::string e;
    for (int64_t i = n; i < n + 3; ++i) e += "\n" + line(i);
    s += e.substr(0, tail);
  }
  return s;
}

}  // namespace

Fit SampleGenerator::Impl::fit(const Body& body, const std::string& answer_prefix, int64_t target,
                               std::string_view task, int64_t context, bool fixed_text_only) const {
  Fit best;
  auto count = [&](int64_t n, size_t m) -> int64_t {
    std::string prompt = format_prompt(format, body.user(n, m), answer_prefix);
    std::vector<int32_t> tokens = encode_prompt(format, *tok, prompt);
    const auto c = static_cast<int64_t>(tokens.size());
    if (c <= target && c > best.count) best = Fit{c, n, m, std::move(prompt), std::move(tokens)};
    return c;
  };
  const int64_t c0 = count(0, 0);
  if (c0 > target)
    throw Error(ErrorCode::kInvalidArgument,
                "task " + std::string(task) + " does not fit in a context of " + std::to_string(context) +
                    " tokens: its prompt takes " + std::to_string(c0) + " tokens without any filler, and the context " +
                    "leaves " + std::to_string(target) + " for the prompt after the answer budget");
  if (fixed_text_only) return best;
  // Whole units: the largest n with count(n) <= target. lo always fits; hi (max_units + 1 at first) never does.
  int64_t lo = 0, hi = body.max_units + 1;
  if (body.max_units >= 1) {
    const int64_t p = std::min<int64_t>(body.max_units, 64);
    const int64_t cp = count(p, 0);
    if (cp <= target) {
      lo = p;
      if (p < body.max_units) {
        // Extrapolate from the first probe, then gallop from the guess to bracket the answer.
        const double rate = std::max(1e-3, static_cast<double>(cp - c0) / static_cast<double>(p));
        int64_t g = p + static_cast<int64_t>(static_cast<double>(target - cp) / rate);
        g = std::clamp<int64_t>(g, lo + 1, body.max_units);
        const int64_t step0 = std::max<int64_t>(1, g / 512);
        if (count(g, 0) <= target) {
          lo = g;
          for (int64_t step = step0; lo + step < hi; step *= 2) {
            if (lo + step > body.max_units) break;
            if (count(lo + step, 0) <= target) lo += step;
            else { hi = lo + step; break; }
          }
        } else {
          hi = g;
          for (int64_t step = step0; hi - step > lo; step *= 2) {
            if (count(hi - step, 0) <= target) { lo = hi - step; break; }
            hi -= step;
          }
        }
      }
    } else {
      hi = p;
    }
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (count(mid, 0) <= target) lo = mid;
    else hi = mid;
  }
  if (lo == body.max_units && body.bounded && best.count < target)
    throw Error(ErrorCode::kResource, "task " + std::string(task) + " runs out of filler at " +
                                          std::to_string(best.count) + " of the " + std::to_string(target) +
                                          " prompt tokens that a context of " + std::to_string(context) + " needs");
  // Characters of the next units close the gap.
  if (count(lo, 0) < target && body.max_tail > 0) {
    size_t mlo = 0, mhi = body.max_tail + 1;
    while (mhi - mlo > 1) {
      const size_t mid = mlo + (mhi - mlo) / 2;
      if (count(lo, mid) <= target) mlo = mid;
      else mhi = mid;
    }
    // Token counts are not quite monotone in characters: look a little further for an exact fit, then at every
    // length, then with one unit less (rare: a few more tokenizations).
    for (size_t m = mlo + 1; m <= std::min(body.max_tail, mlo + 8) && best.count < target; ++m) count(lo, m);
    for (size_t m = 0; m <= body.max_tail && best.count < target; ++m) count(lo, m);
    for (size_t m = 0; lo > 0 && m <= body.max_tail && best.count < target; ++m) count(lo - 1, m);
  }
  return best;
}

// ---------------------------------------------------------------------------------------------------------------

std::span<const TaskInfo> all_tasks() { return kTasks; }

const TaskInfo& find_task(std::string_view name) {
  for (const TaskInfo& t : kTasks) {
    if (t.name != name) continue;
    if (!t.available)
      throw Error(ErrorCode::kInvalidArgument, "task " + std::string(name) + " is unavailable: " +
                                                   std::string(t.unavailable_reason) +
                                                   "; valid tasks: " + valid_task_names());
    return t;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "unknown task '" + std::string(name) + "'; valid tasks: " + valid_task_names() + " (or all)");
}

std::vector<std::string> parse_task_list(std::string_view list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view item = list.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty())
      throw Error(ErrorCode::kInvalidArgument, "empty task name in '" + std::string(list) + "'; valid tasks: " +
                                                   valid_task_names() + " (or all)");
    std::vector<std::string> names;
    if (item == "all") {
      for (const TaskInfo& t : kTasks)
        if (t.available) names.emplace_back(t.name);
    } else {
      names.emplace_back(find_task(item).name);
    }
    for (auto& n : names)
      if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(std::move(n));
    start = comma + 1;
  }
  return out;
}

std::string hash_hex(uint64_t hash) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(hash));
  return buf;
}

uint64_t hash_tokens(std::span<const int32_t> tokens) { return fnv1a64(tokens.data(), tokens.size_bytes()); }

SampleGenerator::SampleGenerator(const Tokenizer& tokenizer, PromptFormat format,
                                 std::shared_ptr<const Haystack> haystack, uint64_t seed)
    : impl_(std::make_unique<Impl>(Impl{&tokenizer, std::move(format), std::move(haystack), seed, {}})) {}

SampleGenerator::~SampleGenerator() = default;

Sample SampleGenerator::generate(std::string_view task, int64_t context, int64_t index,
                                 std::optional<double> depth) const {
  return make(task, context, index, depth, false);
}

void SampleGenerator::check_fits(std::string_view task, int64_t context) const {
  make(task, context, 0, std::nullopt, true);
}

Sample SampleGenerator::make(std::string_view task_name, int64_t context, int64_t index,
                             std::optional<double> depth, bool fixed_text_only) const {
  const TaskInfo& task = find_task(task_name);
  const std::string name(task.name);
  if (depth && (!task.single_needle || !(*depth >= 0.0 && *depth <= 1.0)))
    throw Error(ErrorCode::kInvalidArgument,
                task.single_needle ? "needle depth must be in [0, 1], got " + std::to_string(*depth)
                                   : "task " + name + " has no single needle to place at a depth");
  if (index < 0) throw Error(ErrorCode::kInvalidArgument, "sample index must be >= 0");
  Sample s;
  s.task = name;
  s.context = context;
  s.index = index;
  s.depth = depth;
  s.metric = task.metric;
  s.max_new_tokens = task.max_new_tokens;
  s.target_tokens = context - task.max_new_tokens;
  if (s.target_tokens < 1)
    throw Error(ErrorCode::kInvalidArgument, "a context of " + std::to_string(context) + " tokens leaves no room " +
                                                 "for task " + name + "'s prompt and its " +
                                                 std::to_string(task.max_new_tokens) + "-token answer");

  // The sample's own random stream: a function of (seed, task, context, index, depth) only.
  uint64_t h = fnv1a64(name);
  h = fnv1a64(&context, sizeof context, h);
  h = fnv1a64(&index, sizeof index, h);
  if (depth) {
    const int64_t milli = std::llround(*depth * 1e6);
    h = fnv1a64(&milli, sizeof milli, h);
  }
  uint64_t mix = impl_->seed ^ h;
  Rng rng(splitmix64(mix));
  const uint64_t shuffle_seed = rng.next();

  std::string answer_prefix;
  Body body;
  std::function<std::vector<double>(int64_t units)> depths_of;  // where the needles went, for a fitted size

  if (name.starts_with("niah_")) {
    // RULER's niah configurations.
    const bool essay = name == "niah_single_2" || name == "niah_single_3" || name == "niah_multikey_1" ||
                       name == "niah_multivalue" || name == "niah_multiquery";
    const bool uuid_values = name == "niah_single_3" || name == "niah_multikey_3";
    const bool uuid_keys = name == "niah_multikey_3";
    const bool distractor_haystack = name == "niah_multikey_2" || name == "niah_multikey_3";
    const size_t n_keys = (name == "niah_multikey_1" || name == "niah_multiquery") ? 4 : 1;
    const size_t n_values = name == "niah_multivalue" ? 4 : 1;
    const size_t n_queries = name == "niah_multiquery" ? 4 : 1;
    const std::string type_v = uuid_values ? "uuids" : "numbers";
    const std::string type_v1 = uuid_values ? "uuid" : "number";

    auto keys = std::make_shared<WordKeys>(rng);
    std::vector<std::string> needle_keys;
    for (size_t k = 0; k < n_keys; ++k) needle_keys.push_back(uuid_keys ? random_uuid(rng) : (*keys)[k]);
    std::vector<std::string> values_used;
    auto fresh_value = [&rng, uuid_values, &values_used]() {
      for (;;) {
        std::string v = uuid_values ? random_uuid(rng) : random_number(rng);
        if (std::find(values_used.begin(), values_used.end(), v) == values_used.end()) {
          values_used.push_back(v);
          return v;
        }
      }
    };
    std::vector<std::string> needles;
    for (size_t k = 0; k < n_keys; ++k)
      for (size_t v = 0; v < n_values; ++v) {
        const std::string value = fresh_value();
        needles.push_back("One of the special magic " + type_v + " for " + needle_keys[k] + " is: " + value + ".");
        if (k < n_queries) s.answers.push_back(value);
      }
    std::vector<double> nd = depth ? std::vector<double>{*depth} : random_depths(rng, needles.size());
    s.needles = needles;

    const std::vector<std::string> query_keys(needle_keys.begin(), needle_keys.begin() + static_cast<long>(n_queries));
    std::string query;
    if (n_queries == 1 && n_values == 1) {
      query = "What is the special magic " + type_v1 + " for " + query_keys[0] + " mentioned in the provided text?";
      answer_prefix = " The special magic " + type_v1 + " for " + query_keys[0] + " mentioned in the provided text is";
    } else {
      query = "What are all the special magic " + type_v + " for " + join_and(query_keys) +
              " mentioned in the provided text?";
      answer_prefix = " The special magic " + type_v + " for " + join_and(query_keys) +
                      " mentioned in the provided text are";
    }
    const std::string header = "Some special magic " + type_v +
                               " are hidden within the following text. Make sure to memorize it. I will quiz you "
                               "about the " +
                               type_v + " afterwards.\n";
    auto wrap = [header, query](const std::string& context_text) { return header + context_text + "\n" + query; };

    if (essay) {
      const Haystack& hs = impl_->need_haystack(name);
      EssayLayout layout{&hs};
      body.user = [=](int64_t n, size_t m) { return wrap(layout.text(n, m, needles, nd)); };
      body.max_units = 2 * s.target_tokens + 64;  // every word is at least one token: never the limit
      body.max_tail = layout.extension(0).size();
      depths_of = [=](int64_t n) {
        std::vector<int64_t> pos;
        layout.text(n, 0, needles, nd, &pos);
        std::vector<double> d;
        for (int64_t p : pos) d.push_back(n > 0 ? static_cast<double>(p) / static_cast<double>(n) : 0.0);
        return d;
      };
    } else {
      std::function<const std::string&(int64_t)> line;
      if (distractor_haystack) {
        // The haystack is made of needles with other keys (RULER's type_haystack "needle").
        struct Distractors {
          std::vector<std::string> lines;
          Rng rng;
          std::shared_ptr<WordKeys> keys;
          size_t key_offset;
          bool uuid_keys, uuid_values;
          std::string type_v;
          std::vector<std::string> avoid;  // the real keys and values
        };
        std::vector<std::string> avoid = needle_keys;
        avoid.insert(avoid.end(), values_used.begin(), values_used.end());
        auto d = std::make_shared<Distractors>(
            Distractors{{}, Rng(rng.next()), keys, n_keys, uuid_keys, uuid_values, type_v, std::move(avoid)});
        line = [d](int64_t i) -> const std::string& {
          while (static_cast<int64_t>(d->lines.size()) <= i) {
            const size_t k = d->lines.size();
            std::string key = d->uuid_keys ? random_uuid(d->rng) : (*d->keys)[d->key_offset + k];
            std::string value;
            do {
              value = d->uuid_values ? random_uuid(d->rng) : random_number(d->rng);
            } while (std::find(d->avoid.begin(), d->avoid.end(), value) != d->avoid.end() ||
                     std::find(d->avoid.begin(), d->avoid.end(), key) != d->avoid.end());
            d->lines.push_back("One of the special magic " + d->type_v + " for " + key + " is: " + value + ".");
          }
          return d->lines[static_cast<size_t>(i)];
        };
        body.max_units = uuid_keys ? s.target_tokens : static_cast<int64_t>(keys->size() - n_keys) - 4;
        body.bounded = !uuid_keys;
      } else {
        static const std::string noise(kNoiseText);
        line = [](int64_t) -> const std::string& { return noise; };
        body.max_units = s.target_tokens / 4 + 16;
      }
      body.user = [=](int64_t n, size_t m) { return wrap(line_text(line, n, m, needles, nd)); };
      body.max_tail = 200;
      depths_of = [=](int64_t n) {
        std::vector<int64_t> pos;
        line_text(line, n, 0, needles, nd, &pos);
        std::vector<double> d;
        for (int64_t p : pos) d.push_back(n > 0 ? static_cast<double>(p) / static_cast<double>(n) : 0.0);
        return d;
      };
    }
  } else if (name == "vt") {
    // RULER variable_tracking, num_chains 1, num_hops 4: "VAR A = 12345", "VAR B = VAR A", ... in noise lines.
    std::vector<std::string> vars;
    while (vars.size() < 5) {
      std::string v;
      for (int i = 0; i < 5; ++i) v.push_back(static_cast<char>('A' + rng.below(26)));
      if (std::find(vars.begin(), vars.end(), v) == vars.end()) vars.push_back(v);
    }
    const std::string value = std::to_string(rng.range(10000, 99999));
    std::vector<std::string> chain{"VAR " + vars[0] + " = " + value};
    for (size_t j = 1; j < vars.size(); ++j) chain.push_back("VAR " + vars[j] + " = VAR " + vars[j - 1]);
    std::vector<double> nd;
    for (size_t j = 0; j < chain.size(); ++j) nd.push_back(static_cast<double>(rng.below(1000001)) / 1e6);
    std::sort(nd.begin(), nd.end());
    s.answers = vars;
    s.needles = chain;
    static const std::string noise(kNoiseText);
    const std::function<const std::string&(int64_t)> line = [](int64_t) -> const std::string& { return noise; };
    body.user = [=](int64_t n, size_t m) {
      return "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n" +
             line_text(line, n, m, chain, nd) + "\nQuestion: Find all variables that are assigned the value " +
             value + " in the text above.";
    };
    body.max_units = s.target_tokens / 4 + 16;
    body.max_tail = 200;
    // RULER's prefix ends with "they are: "; the trailing space is left out (a lone space token derails BPE models).
    answer_prefix = " Answer: According to the chain(s) of variable assignment in the text above, 5 variables are "
                    "assigned the value " + value + ", they are:";
    depths_of = [=](int64_t n) {
      std::vector<int64_t> pos;
      line_text(line, n, 0, chain, nd, &pos);
      std::vector<double> d;
      for (int64_t p : pos) d.push_back(n > 0 ? static_cast<double>(p) / static_cast<double>(n) : 0.0);
      return d;
    };
  } else if (name == "cwe") {
    // RULER common_words_extraction: num_cw 10 words freq_cw times each, the others freq_ucw times, shuffled and
    // numbered. The word pool is the haystack's vocabulary (RULER draws from wonderwords' lists).
    if (impl_->pool.empty()) impl_->pool = vocabulary(impl_->need_haystack(name));
    std::vector<std::string> pool = impl_->pool;
    if (pool.size() < 64)
      throw Error(ErrorCode::kResource, "the haystack " + impl_->haystack->name + " has only " +
                                            std::to_string(pool.size()) + " distinct words, too few for task cwe");
    rng.shuffle(pool);
    auto words = std::make_shared<const std::vector<std::string>>(std::move(pool));
    s.answers.assign(words->begin(), words->begin() + 10);
    auto list = [words, shuffle_seed](int64_t n, size_t m, int freq_cw, int freq_ucw) {
      std::vector<size_t> entries;
      for (size_t w = 0; w < 10; ++w) entries.insert(entries.end(), static_cast<size_t>(freq_cw), w);
      for (size_t w = 10; w < 10 + static_cast<size_t>(n); ++w)
        entries.insert(entries.end(), static_cast<size_t>(freq_ucw), w);
      uint64_t x = shuffle_seed ^ static_cast<uint64_t>(n);
      Rng r(splitmix64(x));
      r.shuffle(entries);
      std::string text;
      for (size_t i = 0; i < entries.size(); ++i)
        text += (i ? " " : "") + std::to_string(i + 1) + ". " + (*words)[entries[i]];
      if (m > 0) {
        std::string e;
        for (size_t j = 0; j < 8; ++j)
          e += " " + std::to_string(entries.size() + j + 1) + ". " + (*words)[10 + static_cast<size_t>(n) + j];
        text += e.substr(0, m);
      }
      return text;
    };
    auto user = [list](int64_t n, size_t m, int freq_cw, int freq_ucw) {
      return "Below is a numbered list of words. In these words, some appear more often than others. Memorize the "
             "ones that appear most often.\n" +
             list(n, m, freq_cw, freq_ucw) + "\nQuestion: What are the 10 most common words in the above list?";
    };
    answer_prefix = " Answer: The top 10 words that appear most often in the list are:";
    // RULER's frequencies (30 and 3) at long contexts; fewer repetitions where the common words would take more
    // than half of the prompt.
    const int64_t empty = static_cast<int64_t>(
        encode_prompt(impl_->format, *impl_->tok, format_prompt(impl_->format, user(0, 0, 0, 0), answer_prefix)).size());
    int freq_cw = 0;
    for (int f : {30, 20, 10, 5, 3, 2}) {
      const auto c = static_cast<int64_t>(
          encode_prompt(impl_->format, *impl_->tok, format_prompt(impl_->format, user(0, 0, f, 1), answer_prefix))
              .size());
      if (c - empty <= (s.target_tokens - empty) / 2) {
        freq_cw = f;
        break;
      }
    }
    if (freq_cw == 0)
      throw Error(ErrorCode::kInvalidArgument, "task cwe does not fit in a context of " + std::to_string(context) +
                                                   " tokens: 10 common words twice each take more than half of it");
    const int freq_ucw = std::clamp(freq_cw / 10, 1, 3);
    body.user = [user, freq_cw, freq_ucw](int64_t n, size_t m) { return user(n, m, freq_cw, freq_ucw); };
    body.max_units = static_cast<int64_t>(words->size()) - 10 - 8;
    body.bounded = true;
    body.max_tail = 120;
  } else if (name == "fwe") {
    // RULER freq_words_extraction: 2000 random 6-letter coded words, word k appearing n * k^-alpha / zeta(alpha)
    // times (alpha 2); the first is "...." (noise), the answer is words 2-4.
    std::vector<std::string> vocab;
    while (vocab.size() < 2000) {
      std::string w;
      for (int i = 0; i < 6; ++i) w.push_back(static_cast<char>('a' + rng.below(26)));
      if (std::find(vocab.begin(), vocab.end(), w) == vocab.end()) vocab.push_back(std::move(w));
    }
    vocab[0] = "....";
    s.answers.assign(vocab.begin() + 1, vocab.begin() + 4);
    auto v = std::make_shared<const std::vector<std::string>>(std::move(vocab));
    body.user = [v, shuffle_seed](int64_t n, size_t m) {
      const double zeta2 = std::numbers::pi * std::numbers::pi / 6.0;
      std::vector<uint32_t> words;
      for (size_t k = 1; k <= v->size(); ++k) {
        const auto c = static_cast<int64_t>(static_cast<double>(n) / (static_cast<double>(k * k) * zeta2));
        if (c == 0) break;
        words.insert(words.end(), static_cast<size_t>(c), static_cast<uint32_t>(k - 1));
      }
      uint64_t x = shuffle_seed ^ static_cast<uint64_t>(n);
      Rng r(splitmix64(x));
      r.shuffle(words);
      std::string text;
      for (size_t i = 0; i < words.size(); ++i) text += (i ? " " : "") + (*v)[words[i]];
      if (m > 0) {
        std::string e;
        for (size_t j = 1; j <= 8; ++j) e += " " + (*v)[v->size() - j];  // words too rare to appear at all
        text += e.substr(0, m);
      }
      return "Read the following coded text and track the frequency of each coded word. Find the three most "
             "frequently appeared coded words. " +
             text +
             "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most "
             "frequently appeared words in the above coded text?";
    };
    answer_prefix = " Answer: According to the coded text above, the three most frequently appeared words are:";
    body.max_units = 4 * s.target_tokens + 64;
    body.max_tail = 56;
  }

  Fit f = impl_->fit(body, answer_prefix, s.target_tokens, name, context, fixed_text_only);
  s.prompt = std::move(f.prompt);
  s.tokens = std::move(f.tokens);
  s.prompt_hash = hash_tokens(s.tokens);
  if (depths_of) s.needle_depths = depths_of(f.units);
  return s;
}

// ---------------------------------------------------------------------------------------------------------------

int64_t parse_context_length(std::string_view text) {
  const std::string t(text);
  auto bad = [&t]() {
    return Error(ErrorCode::kInvalidArgument,
                 "invalid context length '" + t + "' (expected a token count like 4096, 4k or 128k)");
  };
  if (t.empty()) throw bad();
  size_t digits = 0;
  while (digits < t.size() && std::isdigit(static_cast<unsigned char>(t[digits]))) ++digits;
  if (digits == 0 || digits > 9) throw bad();
  int64_t v = std::stoll(t.substr(0, digits));
  const std::string suffix = t.substr(digits);
  if (suffix == "k" || suffix == "K") v *= 1024;
  else if (suffix == "m" || suffix == "M") v *= 1024 * 1024;
  else if (!suffix.empty()) throw bad();
  if (v < 1) throw bad();
  return v;
}

std::vector<int64_t> parse_context_list(std::string_view list) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    out.push_back(parse_context_length(list.substr(start, comma - start)));
    start = comma + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string format_context_length(int64_t tokens) {
  if (tokens >= 1024 * 1024 && tokens % (1024 * 1024) == 0) return std::to_string(tokens / (1024 * 1024)) + "M";
  if (tokens >= 1024 && tokens % 1024 == 0) return std::to_string(tokens / 1024) + "K";
  return std::to_string(tokens);
}

}  // namespace skv::eval
