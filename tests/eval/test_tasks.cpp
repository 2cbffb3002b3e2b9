// The RULER task generators with the real tokenizers: exact length, needles present once, answers recoverable
// from the prompt text alone, determinism, depths.
#include <algorithm>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "eval/tasks.h"
#include "eval/words.h"
#include "eval_testing.h"

namespace skv::eval {
namespace {

using namespace skv::eval::testing;

std::vector<std::string> available_tasks() {
  std::vector<std::string> v;
  for (const TaskInfo& t : all_tasks())
    if (t.available) v.emplace_back(t.name);
  return v;
}

SampleGenerator make_generator(const std::filesystem::path& dir, PromptFormat format, uint64_t seed = 42) {
  return SampleGenerator(tokenizer_at(dir), std::move(format), essays(), seed);
}

// ---------------------------------------------------------------------------------------------------------------
// Recovering the answers from the prompt text, the way a reader would.

std::vector<std::string> split_keys(const std::string& keys) {  // "a, b, c, and d" or "a"
  std::vector<std::string> out;
  std::string rest = keys;
  for (;;) {
    const size_t comma = rest.find(", ");
    if (comma == std::string::npos) break;
    out.push_back(rest.substr(0, comma));
    rest = rest.substr(comma + 2);
  }
  if (rest.starts_with("and ")) rest = rest.substr(4);
  out.push_back(rest);
  return out;
}

std::set<std::string> recover_niah(const std::string& prompt) {
  std::smatch m;
  const std::regex question(R"((?:What is the special magic (?:number|uuid)|What are all the special magic (?:numbers|uuids)) for (.+) mentioned in the provided text\?)");
  EXPECT_TRUE(std::regex_search(prompt, m, question)) << "no question in the prompt";
  std::set<std::string> values;
  for (const std::string& key : split_keys(m[1].str())) {
    const std::regex needle("for " + key + " is: ([0-9a-f-]+)\\.");
    for (auto it = std::sregex_iterator(prompt.begin(), prompt.end(), needle); it != std::sregex_iterator(); ++it)
      values.insert((*it)[1].str());
  }
  return values;
}

std::set<std::string> recover_vt(const std::string& prompt) {
  std::smatch m;
  EXPECT_TRUE(std::regex_search(prompt, m, std::regex(R"(assigned the value (\d+) in the text above)")));
  const std::string value = m[1].str();
  std::set<std::string> vars;
  std::map<std::string, std::string> assign;  // var -> right-hand side
  const std::regex stmt(R"(VAR ([A-Z]{5}) = (VAR [A-Z]{5}|\d+))");
  for (auto it = std::sregex_iterator(prompt.begin(), prompt.end(), stmt); it != std::sregex_iterator(); ++it)
    assign[(*it)[1].str()] = (*it)[2].str();
  bool grew = true;
  while (grew) {
    grew = false;
    for (const auto& [var, rhs] : assign) {
      if (vars.count(var)) continue;
      if (rhs == value || (rhs.starts_with("VAR ") && vars.count(rhs.substr(4)))) {
        vars.insert(var);
        grew = true;
      }
    }
  }
  return vars;
}

// The k most frequent words of the list between `begin` and `end` markers; checks the k-th is strictly ahead.
std::set<std::string> top_words(const std::string& text, size_t k, bool numbered, const std::string& ignore) {
  std::map<std::string, int> freq;
  const std::regex word(numbered ? R"(\d+\. ([a-z]+))" : R"((?:^| )([a-z]+|\.\.\.\.)(?= |$))");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), word); it != std::sregex_iterator(); ++it)
    if ((*it)[1].str() != ignore) ++freq[(*it)[1].str()];
  std::vector<std::pair<int, std::string>> v;
  for (const auto& [w, n] : freq) v.emplace_back(n, w);
  std::sort(v.rbegin(), v.rend());
  EXPECT_GT(v.size(), k);
  if (v.size() > k) {
    EXPECT_GT(v[k - 1].first, v[k].first) << "the top " << k << " are not strictly ahead";
  }
  std::set<std::string> out;
  for (size_t i = 0; i < k && i < v.size(); ++i) out.insert(v[i].second);
  return out;
}

std::string between(const std::string& s, const std::string& a, const std::string& b) {
  const size_t i = s.find(a);
  const size_t j = s.find(b, i == std::string::npos ? 0 : i + a.size());
  if (i == std::string::npos || j == std::string::npos) return {};
  return s.substr(i + a.size(), j - i - a.size());
}

void check_recoverable(const Sample& s) {
  const std::set<std::string> answers(s.answers.begin(), s.answers.end());
  ASSERT_FALSE(answers.empty());
  if (s.task.starts_with("niah_")) {
    EXPECT_EQ(recover_niah(s.prompt), answers) << s.task;
    for (const std::string& needle : s.needles)
      EXPECT_EQ(count_occurrences(s.prompt, needle), 1u) << s.task << ": " << needle;
    for (const std::string& a : s.answers) EXPECT_EQ(count_occurrences(s.prompt, a), 1u) << s.task << ": " << a;
  } else if (s.task == "vt") {
    EXPECT_EQ(recover_vt(s.prompt), answers);
    for (const std::string& stmt : s.needles) EXPECT_EQ(count_occurrences(s.prompt, stmt + "\n"), 1u) << stmt;
  } else if (s.task == "cwe") {
    const std::string list = between(s.prompt, "appear most often.\n", "\nQuestion:");
    EXPECT_EQ(top_words(list, 10, true, ""), answers);
  } else if (s.task == "fwe") {
    const std::string text = between(s.prompt, "coded words. ", "\nQuestion:");
    EXPECT_EQ(top_words(text, 3, false, "...."), answers);
  }
}

// ---------------------------------------------------------------------------------------------------------------

TEST(Tasks, RegistryListsRulerTasksAndMarksQaUnavailable) {
  std::vector<std::string> names;
  for (const TaskInfo& t : all_tasks()) names.emplace_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1",
                                             "niah_multikey_2", "niah_multikey_3", "niah_multivalue",
                                             "niah_multiquery", "vt", "cwe", "fwe", "qa_1", "qa_2"}));
  EXPECT_EQ(find_task("niah_single_1").max_new_tokens, 128);
  EXPECT_EQ(find_task("vt").max_new_tokens, 30);
  EXPECT_EQ(find_task("cwe").max_new_tokens, 120);
  EXPECT_EQ(find_task("fwe").max_new_tokens, 50);
  try {
    find_task("qa_1");
    FAIL() << "qa_1 should be unavailable";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("SQuAD"), std::string::npos) << e.what();
  }
  try {
    parse_task_list("niah_single_1,bogus");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown task 'bogus'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("niah_multivalue"), std::string::npos) << e.what();
  }
  EXPECT_EQ(parse_task_list("vt, cwe,vt"), (std::vector<std::string>{"vt", "cwe"}));
  EXPECT_EQ(parse_task_list("all").size(), 11u);
}

TEST(Tasks, ContextLengths) {
  EXPECT_EQ(parse_context_length("4k"), 4096);
  EXPECT_EQ(parse_context_length("128K"), 131072);
  EXPECT_EQ(parse_context_length("256"), 256);
  EXPECT_EQ(parse_context_length("1m"), 1048576);
  EXPECT_THROW(parse_context_length("4kb"), Error);
  EXPECT_THROW(parse_context_length(""), Error);
  EXPECT_THROW(parse_context_length("-5"), Error);
  EXPECT_EQ(parse_context_list("8k,4k,4096"), (std::vector<int64_t>{4096, 8192}));
  EXPECT_EQ(format_context_length(131072), "128K");
  EXPECT_EQ(format_context_length(256), "256");
}

TEST(Tasks, WordListsHaveDistinctKeys) {
  std::set<std::string_view> a(adjectives().begin(), adjectives().end()), n(nouns().begin(), nouns().end());
  EXPECT_EQ(a.size(), adjectives().size());
  EXPECT_EQ(n.size(), nouns().size());
  for (auto w : a) EXPECT_FALSE(w.empty());
  for (auto w : n) EXPECT_FALSE(w.empty());
}

struct LengthCase {
  std::filesystem::path dir;
  ChatTemplate format;
  std::vector<int64_t> contexts;
};

// Every task, at several contexts, with each real tokenizer: prompt tokens + budget == context exactly, the
// tokens are the tokenizer's encoding of the prompt text, and the answers can be read back from the text.
void check_lengths(const LengthCase& c) {
  const Tokenizer& tok = tokenizer_at(c.dir);
  const PromptFormat format = make_prompt_format(c.format, tok, true);
  const SampleGenerator gen = make_generator(c.dir, format);
  for (int64_t context : c.contexts)
    for (const std::string& task : available_tasks()) {
      SCOPED_TRACE(c.dir.filename().string() + " " + chat_template_name(c.format) + " " + task + " at " +
                   std::to_string(context));
      const Sample s = gen.generate(task, context, 0);
      EXPECT_EQ(s.prompt_tokens() + s.max_new_tokens, context);
      EXPECT_EQ(s.target_tokens, context - s.max_new_tokens);
      EXPECT_EQ(encode_prompt(format, tok, s.prompt), s.tokens);
      EXPECT_EQ(s.prompt_hash, hash_tokens(s.tokens));
      check_recoverable(s);
    }
}

TEST(Tasks, ExactLengthLlama3Raw) { check_lengths({llama3_dir(), ChatTemplate::kNone, {1024, 4096, 8192}}); }
TEST(Tasks, ExactLengthLlama3Chat) { check_lengths({llama3_dir(), ChatTemplate::kLlama3, {1024, 4096}}); }
TEST(Tasks, ExactLengthQwen3Chat) { check_lengths({qwen3_dir(), ChatTemplate::kChatMl, {1024, 4096}}); }
TEST(Tasks, ExactLengthMistralChat) { check_lengths({mistral_dir(), ChatTemplate::kMistral, {1024, 2048}}); }
TEST(Tasks, ExactLengthStories15M) { check_lengths({stories_dir(), ChatTemplate::kNone, {1024}}); }

// stories15M's whole context is 256 tokens: the tasks whose fixed text fits run there at exactly 256 (among them
// niah_single_1 and vt, which the CLI test runs); the others are a clear error, not a truncated prompt.
TEST(Tasks, Stories15MAt256) {
  const SampleGenerator gen = make_generator(stories_dir(), PromptFormat{});
  int fitted = 0;
  for (const std::string& task : available_tasks()) {
    SCOPED_TRACE(task);
    try {
      const Sample s = gen.generate(task, 256, 0);
      EXPECT_EQ(s.prompt_tokens() + s.max_new_tokens, 256);
      EXPECT_EQ(s.tokens.front(), 1) << "raw prompts start with the tokenizer's BOS";
      check_recoverable(s);
      ++fitted;
    } catch (const Error& e) {
      EXPECT_NE(task, "niah_single_1");
      EXPECT_NE(task, "vt");
      EXPECT_NE(std::string(e.what()).find("does not fit in a context of 256 tokens"), std::string::npos) << e.what();
    }
  }
  EXPECT_GE(fitted, 5);
}

TEST(Tasks, LongerContextsStayExact) {
  const SampleGenerator gen = make_generator(llama3_dir(), PromptFormat{});
  for (const char* task : {"niah_single_2", "niah_multikey_2", "niah_multikey_3", "cwe", "fwe", "vt"}) {
    const Sample s = gen.generate(task, 32768, 3);
    EXPECT_EQ(s.prompt_tokens() + s.max_new_tokens, 32768) << task;
    check_recoverable(s);
  }
}

TEST(Tasks, DeterministicFromSeed) {
  const SampleGenerator a = make_generator(llama3_dir(), PromptFormat{}, 7);
  const SampleGenerator b = make_generator(llama3_dir(), PromptFormat{}, 7);
  const SampleGenerator c = make_generator(llama3_dir(), PromptFormat{}, 8);
  for (const std::string& task : available_tasks()) {
    SCOPED_TRACE(task);
    const Sample s1 = a.generate(task, 2048, 0);
    const Sample s2 = b.generate(task, 2048, 0);
    EXPECT_EQ(s1.prompt, s2.prompt);
    EXPECT_EQ(s1.tokens, s2.tokens);
    EXPECT_EQ(s1.answers, s2.answers);
    // A sample does not depend on what was generated before it.
    a.generate(task, 1024, 5);
    EXPECT_EQ(a.generate(task, 2048, 0).tokens, s1.tokens);
    EXPECT_NE(c.generate(task, 2048, 0).prompt, s1.prompt) << "another seed, the same prompt";
    EXPECT_NE(a.generate(task, 2048, 1).prompt, s1.prompt) << "another sample index, the same prompt";
    EXPECT_NE(a.generate(task, 2048, 1).answers, s1.answers);
  }
}

// A needle at depth d sits at fraction d of the filler, at a sentence boundary.
TEST(Tasks, NeedleDepths) {
  const SampleGenerator gen = make_generator(llama3_dir(), PromptFormat{});
  for (const char* task : {"niah_single_1", "niah_single_2", "niah_single_3"}) {
    SCOPED_TRACE(task);
    size_t last_pos = 0;
    for (double d : {0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0}) {
      const Sample s = gen.generate(task, 4096, 0, d);
      ASSERT_EQ(s.needles.size(), 1u);
      ASSERT_EQ(s.needle_depths.size(), 1u);
      EXPECT_EQ(s.prompt_tokens() + s.max_new_tokens, 4096);
      EXPECT_NEAR(s.needle_depths[0], d, 0.04) << "depth " << d;
      const size_t pos = s.prompt.find(s.needles[0]);
      ASSERT_NE(pos, std::string::npos);
      EXPECT_EQ(count_occurrences(s.prompt, s.needles[0]), 1u);
      if (d > 0) {
        EXPECT_GT(pos, last_pos) << "deeper needles come later";
      }
      last_pos = pos;
      // What precedes the needle ends a sentence (or is the header).
      const std::string before = s.prompt.substr(0, pos);
      const std::string trimmed = before.substr(0, before.find_last_not_of(" \n") + 1);
      const std::string last_word = trimmed.substr(trimmed.find_last_of(" \n") + 1);
      EXPECT_TRUE(is_sentence_end(last_word)) << "needle not at a sentence boundary: ..."
                                              << trimmed.substr(trimmed.size() - 60);
      check_recoverable(s);
    }
  }
  EXPECT_THROW(gen.generate("niah_multikey_1", 4096, 0, 0.5), Error);
  EXPECT_THROW(gen.generate("niah_single_2", 4096, 0, 1.5), Error);
}

TEST(Tasks, RandomDepthsAreRulers) {
  // Without a depth, needles go to depths drawn from np.round(np.linspace(0, 100, 40)).
  const SampleGenerator gen = make_generator(llama3_dir(), PromptFormat{});
  const Sample s = gen.generate("niah_multikey_1", 4096, 0);
  ASSERT_EQ(s.needles.size(), 4u);
  ASSERT_EQ(s.needle_depths.size(), 4u);
  for (double d : s.needle_depths) {
    EXPECT_GE(d, 0.0);
    EXPECT_LE(d, 1.0);
  }
}

TEST(Tasks, PromptTextFollowsRuler) {
  const SampleGenerator gen = make_generator(llama3_dir(), PromptFormat{});
  const Sample s = gen.generate("niah_single_1", 1024, 0);
  EXPECT_TRUE(s.prompt.starts_with("Some special magic numbers are hidden within the following text. Make sure to "
                                   "memorize it. I will quiz you about the numbers afterwards.\n"));
  EXPECT_NE(s.prompt.find(std::string(kNoiseText)), std::string::npos);
  EXPECT_NE(s.prompt.find("One of the special magic numbers for "), std::string::npos);
  EXPECT_TRUE(std::regex_search(s.prompt, std::regex(R"(\nWhat is the special magic number for [a-z]+-[a-z]+ )"
                                                     R"(mentioned in the provided text\? The special magic number )"
                                                     R"(for [a-z]+-[a-z]+ mentioned in the provided text is$)")))
      << s.prompt.substr(s.prompt.size() - 300);
  ASSERT_EQ(s.answers.size(), 1u);
  EXPECT_EQ(s.answers[0].size(), 7u);
  const Sample u = gen.generate("niah_single_3", 1024, 0);
  EXPECT_TRUE(std::regex_match(u.answers[0], std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                                                        "[0-9a-f]{12}")))
      << u.answers[0];
  const Sample mv = gen.generate("niah_multivalue", 1024, 0);
  EXPECT_EQ(mv.answers.size(), 4u);
  EXPECT_NE(mv.prompt.find("What are all the special magic numbers for "), std::string::npos);
  const Sample mq = gen.generate("niah_multiquery", 1024, 0);
  EXPECT_EQ(mq.answers.size(), 4u);
  EXPECT_TRUE(std::regex_search(mq.prompt, std::regex("for [a-z-]+, [a-z-]+, [a-z-]+, and [a-z-]+ mentioned")));
  const Sample mk = gen.generate("niah_multikey_1", 1024, 0);
  EXPECT_EQ(mk.answers.size(), 1u);
  EXPECT_EQ(mk.needles.size(), 4u);
  const Sample vt = gen.generate("vt", 1024, 0);
  EXPECT_EQ(vt.answers.size(), 5u);
  EXPECT_TRUE(vt.prompt.ends_with("5 variables are assigned the value " +
                                  between(vt.prompt, "assigned the value ", " in the text above") + ", they are:"));
}

TEST(Tasks, ContextTooSmallIsAClearError) {
  const SampleGenerator gen = make_generator(llama3_dir(), PromptFormat{});
  try {
    gen.generate("niah_single_2", 150, 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit in a context of 150 tokens"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gen.generate("vt", 20, 0), Error);
}

TEST(Tasks, HaystackSentences) {
  EXPECT_TRUE(is_sentence_end("end."));
  EXPECT_TRUE(is_sentence_end("really?\""));
  EXPECT_TRUE(is_sentence_end("stop!)"));
  EXPECT_FALSE(is_sentence_end("Mr."));
  EXPECT_FALSE(is_sentence_end("J."));
  EXPECT_FALSE(is_sentence_end("word,"));
  const Haystack h = make_haystack("t", "One two.  Three\n\nfour?  five");
  EXPECT_EQ(h.words, (std::vector<std::string>{"One", "two.", "Three", "four?", "five"}));
  EXPECT_EQ(h.ends_sentence, (std::vector<uint8_t>{0, 1, 0, 1, 0}));
  EXPECT_EQ(make_haystack("u", "One  two.").hash, make_haystack("v", "One two.\n").hash);
  EXPECT_THROW(make_haystack("e", "  \n "), Error);
  EXPECT_GT(essays()->size(), 500000);
  const auto vocab = vocabulary(*essays());
  EXPECT_GT(vocab.size(), 10000u);
  EXPECT_TRUE(std::is_sorted(vocab.begin(), vocab.end()));
}

TEST(Tasks, DefaultHaystacksFromDebianPackages) {
  if (!std::filesystem::exists("/usr/lib/bible.data") || !std::filesystem::exists("/usr/bin/bible"))
    GTEST_SKIP() << "bible-kjv-text / bible-kjv not installed (scripts/setup.sh installs them)";
  const Haystack kjv = load_haystack("kjv");
  EXPECT_GT(kjv.size(), 700000);
  EXPECT_EQ(kjv.words[0], "In");
  EXPECT_EQ(kjv.words[1], "the");
  EXPECT_EQ(kjv.words[2], "beginning");
  if (std::filesystem::exists("/usr/share/doc/jargon-text/jargon.txt.gz")) {
    const Haystack jargon = load_haystack("jargon");
    EXPECT_GT(jargon.size(), 100000);
  }
  EXPECT_THROW(load_haystack("/nonexistent/haystack.txt"), Error);
}

}  // namespace
}  // namespace skv::eval
