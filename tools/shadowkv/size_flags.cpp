// Token-count flags.
#include "size_flags.h"

#include "core/error.h"

namespace skv::cli {

int64_t parse_token_count(const std::string& flag, const std::string& value) {
  std::string digits = value;
  int64_t mult = 1;
  if (!digits.empty() && (digits.back() == 'k' || digits.back() == 'K')) {
    mult = 1024;
    digits.pop_back();
  }
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
    throw Error(ErrorCode::kInvalidArgument, flag + " takes token counts like 32768 or 32k, got '" + value + "'");
  const int64_t n = std::stoll(digits) * mult;
  if (n < 1 || n > (int64_t{1} << 24))
    throw Error(ErrorCode::kInvalidArgument, flag + " must be in [1, 16777216], got '" + value + "'");
  return n;
}

std::vector<int64_t> parse_count_list(const std::string& flag, const std::string& value, bool allow_auto) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (true) {
    const size_t comma = value.find(',', start);
    const std::string item = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (allow_auto && item == "auto")
      out.push_back(0);
    else
      out.push_back(parse_token_count(flag, item));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace skv::cli
