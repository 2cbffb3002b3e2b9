// StopStringMatcher: stop strings split across pieces are caught and never emitted; near-misses are released.
#include <gtest/gtest.h>

#include "engine/stop_strings.h"

namespace skv {
namespace {

TEST(StopStrings, MatchAcrossPiecesIsNotEmitted) {
  StopStringMatcher m({"The End"});
  std::string out;
  for (const char* piece : {"and they lived. Th", "e E", "nd and more"}) out += m.push(piece);
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(out, "and they lived. ");
  EXPECT_EQ(m.finish(), "");
}

TEST(StopStrings, PartialMatchIsReleasedWhenItDiverges) {
  StopStringMatcher m({"###"});
  std::string out = m.push("a ##");
  EXPECT_EQ(out, "a ");
  out += m.push("b");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(out, "a ##b");
  out += m.push("#");
  out += m.finish();
  EXPECT_EQ(out, "a ##b#");
}

TEST(StopStrings, EarliestOfSeveralWins) {
  StopStringMatcher m({"world", "lo w"});
  EXPECT_EQ(m.push("hello world"), "hel");
  EXPECT_TRUE(m.stopped());
}

TEST(StopStrings, NoStopsPassesEverything) {
  StopStringMatcher m({});
  EXPECT_EQ(m.push("abc"), "abc");
  EXPECT_EQ(m.finish(), "");
}

}  // namespace
}  // namespace skv
