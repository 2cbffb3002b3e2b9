// RULER's string_match_all / string_match_part on handcrafted outputs.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "eval/scoring.h"

namespace skv::eval {
namespace {

TEST(Scoring, StringMatchAllIsTheFractionFound) {
  const std::vector<std::string> refs{"1234567", "7654321", "5555555", "9999999"};
  EXPECT_DOUBLE_EQ(string_match_all(" 1234567, 7654321, 5555555 and 9999999.", refs), 1.0);
  EXPECT_DOUBLE_EQ(string_match_all("1234567 and 5555555", refs), 0.5);
  EXPECT_DOUBLE_EQ(string_match_all("nothing here", refs), 0.0);
  EXPECT_DOUBLE_EQ(string_match_all("", refs), 0.0);
  EXPECT_DOUBLE_EQ(string_match_all("anything", {}), 0.0);
}

TEST(Scoring, CaseInsensitiveSubstring) {
  const std::vector<std::string> vars{"ABCDE", "FGHIJ"};
  EXPECT_DOUBLE_EQ(string_match_all("they are: abcde, fghij", vars), 1.0);
  const std::vector<std::string> words{"Apple"};
  EXPECT_DOUBLE_EQ(string_match_all("1. APPLES 2. pear", words), 1.0);  // a substring, as in RULER
}

TEST(Scoring, StringMatchPartIsAnyFound) {
  const std::vector<std::string> refs{"Paris", "the city of Paris"};
  EXPECT_DOUBLE_EQ(string_match_part("It is paris.", refs), 1.0);
  EXPECT_DOUBLE_EQ(string_match_part("London", refs), 0.0);
  EXPECT_DOUBLE_EQ(score_prediction(Metric::kStringMatchPart, "PARIS", refs), 1.0);
  EXPECT_DOUBLE_EQ(score_prediction(Metric::kStringMatchAll, "PARIS", refs), 0.5);
}

TEST(Scoring, PostprocessLikeRuler) {
  EXPECT_EQ(postprocess_prediction("  \t12\x01" "34\n "), "12\n34");
  EXPECT_EQ(postprocess_prediction("\n\n"), "");
  // A control character between digits splits the number: it no longer matches.
  const std::vector<std::string> refs{"1234"};
  EXPECT_DOUBLE_EQ(string_match_all("12\x02" "34", refs), 0.0);
  EXPECT_STREQ(metric_name(Metric::kStringMatchAll), "string_match_all");
  EXPECT_STREQ(metric_name(Metric::kStringMatchPart), "string_match_part");
}

}  // namespace
}  // namespace skv::eval
