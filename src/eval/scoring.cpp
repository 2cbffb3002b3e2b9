// RULER's string_match_all / string_match_part.
#include "eval/scoring.h"

#include <cctype>

namespace skv::eval {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool contains(const std::string& haystack_lower, std::string_view needle) {
  return haystack_lower.find(lower(needle)) != std::string::npos;
}

}  // namespace

const char* metric_name(Metric metric) {
  return metric == Metric::kStringMatchAll ? "string_match_all" : "string_match_part";
}

std::string postprocess_prediction(std::string_view prediction) {
  std::string s(prediction);
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = '\n';  // RULER: re.sub(r'[\x00-\x1f]', '\n', pred)
  const size_t b = s.find_first_not_of(" \t\n\r\f\v");
  if (b == std::string::npos) return {};
  const size_t e = s.find_last_not_of(" \t\n\r\f\v");
  return s.substr(b, e - b + 1);
}

double string_match_all(std::string_view prediction, std::span<const std::string> expected) {
  if (expected.empty()) return 0.0;
  const std::string p = lower(postprocess_prediction(prediction));
  int found = 0;
  for (const std::string& e : expected) found += contains(p, e) ? 1 : 0;
  return static_cast<double>(found) / static_cast<double>(expected.size());
}

double string_match_part(std::string_view prediction, std::span<const std::string> expected) {
  const std::string p = lower(postprocess_prediction(prediction));
  for (const std::string& e : expected)
    if (contains(p, e)) return 1.0;
  return 0.0;
}

double score_prediction(Metric metric, std::string_view prediction, std::span<const std::string> expected) {
  return metric == Metric::kStringMatchAll ? string_match_all(prediction, expected)
                                           : string_match_part(prediction, expected);
}

}  // namespace skv::eval
