// The evaluation loop on stories15M at its 256-token context: every method runs the same prompt, results are
// written as they finish, and a rerun only makes the missing runs (resume), also after a torn write.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "eval/harness.h"
#include "eval_testing.h"

namespace skv::eval {
namespace {

using namespace skv::eval::testing;

class HarnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("skv-harness-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    path_ = dir_ / "results.jsonl";
    model_ = std::make_shared<const LoadedModel>(load_model(stories_dir()));
    generator_ = std::make_unique<SampleGenerator>(tokenizer_at(stories_dir()), PromptFormat{}, nullptr, 42);
    env_.model = model_;
    env_.tokenizer = &tokenizer_at(stories_dir());
    env_.generator = generator_.get();
    env_.stop_ids = tokenizer_at(stories_dir()).eos_ids();
    env_.shadow.sparse_budget = 64;
    env_.shadow.rank = 32;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  EvalPlan plan(int64_t samples) const {
    EvalPlan p;
    p.tasks = {"niah_single_1", "vt"};
    p.contexts = {256};
    p.samples = samples;
    p.methods = {AttentionKind::kFull, AttentionKind::kShadowKv};
    return p;
  }
  static nlohmann::json settings() { return {{"generator", std::string(kGeneratorVersion)}, {"seed", 42}}; }
  std::vector<std::string> lines() const {
    std::ifstream in(path_);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }

  std::filesystem::path dir_, path_;
  std::shared_ptr<const LoadedModel> model_;
  std::unique_ptr<SampleGenerator> generator_;
  EvalEnv env_;
};

TEST_F(HarnessTest, RunsEveryMethodOnTheSamePromptAndResumes) {
  std::vector<std::string> first;
  {
    ResultsFile results = ResultsFile::open(path_, settings());
    int64_t last_done = -1, last_total = 0;
    const RunStats s = run_plan(plan(1), env_, results, [&](int64_t done, int64_t total) {
      EXPECT_GE(done, last_done);
      EXPECT_LE(done, total);
      last_done = done;
      last_total = total;
    });
    EXPECT_EQ(s.ran, 4);  // 2 tasks x 1 sample x 2 methods
    EXPECT_EQ(s.resumed, 0);
    EXPECT_EQ(last_total, 4 * 256);
    EXPECT_EQ(last_done, last_total);
    first = lines();
    ASSERT_EQ(first.size(), 5u);  // settings + 4 results
  }
  {
    // Both methods ran the same tokens; each record is scored against the sample's answers.
    const ResultsFile results = ResultsFile::open(path_, settings());
    for (const char* task : {"niah_single_1", "vt"}) {
      const ResultRecord* full = results.find(record_key(task, 256, std::nullopt, 0, "full"));
      const ResultRecord* shadow = results.find(record_key(task, 256, std::nullopt, 0, "shadowkv"));
      ASSERT_TRUE(full && shadow);
      EXPECT_EQ(full->prompt_hash, shadow->prompt_hash);
      const Sample s = generator_->generate(task, 256, 0);
      EXPECT_EQ(full->prompt_hash, hash_hex(s.prompt_hash));
      EXPECT_EQ(full->prompt_tokens + s.max_new_tokens, 256);
      EXPECT_EQ(full->answers, s.answers);
      EXPECT_GE(full->generated_tokens, 1);
      EXPECT_LE(full->generated_tokens, s.max_new_tokens);
      EXPECT_DOUBLE_EQ(full->score, score_prediction(s.metric, full->output, s.answers));
    }
  }
  {
    // More samples: only the new ones run, the earlier lines stay as they were.
    ResultsFile results = ResultsFile::open(path_, settings());
    const RunStats s = run_plan(plan(2), env_, results);
    EXPECT_EQ(s.resumed, 4);
    EXPECT_EQ(s.ran, 4);
    const std::vector<std::string> now = lines();
    ASSERT_EQ(now.size(), 9u);
    EXPECT_TRUE(std::equal(first.begin(), first.end(), now.begin()));
  }
  {
    // The same plan again: nothing to do (and the model is not even needed).
    ResultsFile results = ResultsFile::open(path_, settings());
    const RunStats s = run_plan(plan(2), env_, results);
    EXPECT_EQ(s.resumed, 8);
    EXPECT_EQ(s.ran, 0);
  }
  {
    // A run killed mid-write: the torn record is dropped and made again.
    std::vector<std::string> now = lines();
    std::ofstream out(path_, std::ios::trunc);
    for (size_t i = 0; i + 1 < now.size(); ++i) out << now[i] << "\n";
    out << now.back().substr(0, now.back().size() / 2);
    out.close();
    ResultsFile results = ResultsFile::open(path_, settings());
    const RunStats s = run_plan(plan(2), env_, results);
    EXPECT_EQ(s.resumed, 7);
    EXPECT_EQ(s.ran, 1);
    EXPECT_EQ(lines().size(), 9u);
  }
  {
    const ResultsFile results = ResultsFile::open(path_, settings());
    const Summary sum = summarize(plan(2), results);
    ASSERT_EQ(sum.cells.size(), 4u);
    for (const Cell& c : sum.cells) {
      EXPECT_EQ(c.samples, 2);
      EXPECT_GE(c.score, 0.0);
      EXPECT_LE(c.score, 100.0);
    }
    EXPECT_EQ(sum.average.at("full").samples, 4);
    EXPECT_EQ(sum.average.at("shadowkv").cells, 2);
  }
}

// first_sample: only the later samples run and count, with the prompts a run from 0 gives them.
TEST_F(HarnessTest, FirstSampleRunsOnlyTheLaterSamples) {
  EvalPlan p = plan(3);
  p.first_sample = 2;
  p.methods = {AttentionKind::kFull};
  ResultsFile results = ResultsFile::open(path_, settings());
  const RunStats s = run_plan(p, env_, results);
  EXPECT_EQ(s.ran, 2);  // 2 tasks x sample 2
  EXPECT_EQ(s.resumed, 0);
  for (const char* task : {"niah_single_1", "vt"}) {
    EXPECT_EQ(results.find(record_key(task, 256, std::nullopt, 0, "full")), nullptr);
    EXPECT_EQ(results.find(record_key(task, 256, std::nullopt, 1, "full")), nullptr);
    const ResultRecord* r = results.find(record_key(task, 256, std::nullopt, 2, "full"));
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->prompt_hash, hash_hex(generator_->generate(task, 256, 2).prompt_hash));
  }
  const Summary sum = summarize(p, results);
  ASSERT_EQ(sum.cells.size(), 2u);
  for (const Cell& c : sum.cells) EXPECT_EQ(c.samples, 1);
  // From 0 again: samples 0 and 1 run, sample 2 is resumed.
  const RunStats all = run_plan(plan(3), env_, results);
  EXPECT_EQ(all.resumed, 2);
  EXPECT_EQ(all.ran, 2 * 3 * 2 - 2);
}

TEST_F(HarnessTest, ChangedPromptsAreRefused) {
  {
    ResultsFile results = ResultsFile::open(path_, settings());
    EvalPlan p = plan(1);
    p.methods = {AttentionKind::kFull};
    run_plan(p, env_, results);
  }
  // Another seed makes other prompts: the shadowkv run of sample 0 must not be paired with the old full run.
  SampleGenerator other(tokenizer_at(stories_dir()), PromptFormat{}, nullptr, 43);
  EvalEnv env = env_;
  env.generator = &other;
  ResultsFile results = ResultsFile::open(path_, settings());
  try {
    run_plan(plan(1), env, results);
    FAIL() << "a results file with other prompts was extended";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another prompt"), std::string::npos) << e.what();
  }
}

TEST_F(HarnessTest, DepthSweepKeysRunsByDepth) {
  ResultsFile results = ResultsFile::open(path_, settings());
  EvalPlan p = plan(1);
  p.tasks = {"niah_single_1"};
  p.methods = {AttentionKind::kFull};
  p.depths = {0.0, 1.0};
  const RunStats s = run_plan(p, env_, results);
  EXPECT_EQ(s.ran, 2);
  EXPECT_NE(results.find(record_key("niah_single_1", 256, 1.0, 0, "full")), nullptr);
  EXPECT_EQ(results.find(record_key("niah_single_1", 256, std::nullopt, 0, "full")), nullptr);
  const Summary sum = summarize(p, results);
  ASSERT_EQ(sum.cells.size(), 2u);
  for (const Cell& c : sum.cells) {
    ASSERT_TRUE(c.depth.has_value());
    EXPECT_EQ(c.samples, 1);
  }
}

}  // namespace
}  // namespace skv::eval
