// Token counts and lists as the plan/bench flags take them: "32768", "32k" (x1024), "32k,122k", and "auto".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace skv::cli {

// A positive token count: digits with an optional k/K suffix (x 1024). Error(kInvalidArgument) naming `flag`.
int64_t parse_token_count(const std::string& flag, const std::string& value);
// A comma-separated list of counts; "auto" (when allowed) is 0.
std::vector<int64_t> parse_count_list(const std::string& flag, const std::string& value, bool allow_auto);

}  // namespace skv::cli
