// StopStringMatcher: ends generation at the first occurrence of any stop string in the generated text. Text
// that might be the start of a stop string is held back until it is decided, so a stop string is never printed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace skv {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);
  // Feeds newly decoded text; returns the text that is now safe to emit. After a match, stopped() is true and
  // the returned text ends right before the stop string.
  std::string push(std::string_view text);
  // The held-back remainder at the end of generation (empty after a match).
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace skv
