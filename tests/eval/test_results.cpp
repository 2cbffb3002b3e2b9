// The results file: records round-trip, settings are checked, a torn last line is dropped.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/error.h"
#include "eval/results.h"

namespace skv::eval {
namespace {

class ResultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("skv-results-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    path_ = dir_ / "r.jsonl";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static nlohmann::json settings(int64_t budget) {
    return {{"generator", "g1"}, {"model", "/m"}, {"seed", 42}, {"sparse-budget", budget}, {"haystack", nullptr}};
  }
  static ResultRecord record(int64_t sample, const std::string& method, double score) {
    ResultRecord r;
    r.task = "niah_single_1";
    r.context = 256;
    r.sample = sample;
    r.method = method;
    r.prompt_hash = "00000000000000aa";
    r.prompt_tokens = 128;
    r.answers = {"1234567"};
    r.output = "it is 1234567\n\"quoted\"";
    r.score = score;
    r.finish = "length";
    r.generated_tokens = 128;
    r.seconds = 0.5;
    return r;
  }
  std::string content() const {
    std::ifstream in(path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::filesystem::path dir_, path_;
};

TEST_F(ResultsTest, RecordsRoundTrip) {
  {
    ResultsFile f = ResultsFile::open(path_, settings(64));
    EXPECT_TRUE(f.records().empty());
    f.append(record(0, "full", 1.0));
    f.append(record(0, "shadowkv", 0.0));
    ResultRecord sweep = record(1, "full", 0.5);
    sweep.depth = 0.25;
    f.append(sweep);
  }
  const ResultsFile f = ResultsFile::open(path_, settings(64));
  ASSERT_EQ(f.records().size(), 3u);
  const ResultRecord* r = f.find(record_key("niah_single_1", 256, std::nullopt, 0, "full"));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->output, "it is 1234567\n\"quoted\"");
  EXPECT_EQ(r->answers, std::vector<std::string>{"1234567"});
  EXPECT_DOUBLE_EQ(r->score, 1.0);
  EXPECT_NE(f.find(record_key("niah_single_1", 256, 0.25, 1, "full")), nullptr);
  EXPECT_EQ(f.find(record_key("niah_single_1", 256, std::nullopt, 1, "full")), nullptr);
  // One settings line, then one line per record.
  const std::string c = content();
  EXPECT_EQ(std::count(c.begin(), c.end(), '\n'), 4);
  EXPECT_TRUE(c.starts_with("{\"generator\":\"g1\""));
}

TEST_F(ResultsTest, OtherSettingsAreRefusedByName) {
  { ResultsFile::open(path_, settings(64)).append(record(0, "full", 1.0)); }
  try {
    ResultsFile::open(path_, settings(128));
    FAIL() << "mixed settings accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("--sparse-budget 64"), std::string::npos) << m;
    EXPECT_NE(m.find("--sparse-budget 128"), std::string::npos) << m;
    EXPECT_NE(m.find("--out"), std::string::npos) << m;
  }
  nlohmann::json other_generator = settings(64);
  other_generator["generator"] = "g2";
  EXPECT_THROW(ResultsFile::open(path_, other_generator), Error);
}

TEST_F(ResultsTest, UnknownSettingsAreFilledInLater) {
  nlohmann::json s = settings(64);
  s["sparse-budget"] = nullptr;  // a run without shadowkv
  { ResultsFile::open(path_, s).append(record(0, "full", 1.0)); }
  { ResultsFile::open(path_, settings(64)).append(record(0, "shadowkv", 1.0)); }  // now known: recorded
  EXPECT_THROW(ResultsFile::open(path_, settings(32)), Error);
  const ResultsFile f = ResultsFile::open(path_, s);  // unknown again: compatible
  EXPECT_EQ(f.records().size(), 2u);
  EXPECT_EQ(f.settings()["sparse-budget"], 64);
}

TEST_F(ResultsTest, TornLastLineIsDropped) {
  { ResultsFile::open(path_, settings(64)).append(record(0, "full", 1.0)); }
  { std::ofstream(path_, std::ios::app) << R"({"type":"result","task":"niah_single_1","cont)"; }
  {
    ResultsFile f = ResultsFile::open(path_, settings(64));
    EXPECT_EQ(f.records().size(), 1u);
    f.append(record(1, "full", 0.0));
  }
  const ResultsFile f = ResultsFile::open(path_, settings(64));
  EXPECT_EQ(f.records().size(), 2u);
  const std::string c = content();
  EXPECT_EQ(c.find("\"cont\n"), std::string::npos);
}

TEST_F(ResultsTest, CorruptFilesAreErrors) {
  { std::ofstream(path_) << "not json\n{}\n"; }
  EXPECT_THROW(ResultsFile::open(path_, settings(64)), Error);
  { std::ofstream(path_) << "{\"type\":\"result\",\"task\":\"x\"}\n"; }
  EXPECT_THROW(ResultsFile::open(path_, settings(64)), Error);
  EXPECT_THROW(ResultsFile::open(dir_, settings(64)), Error);  // a directory
}

}  // namespace
}  // namespace skv::eval
