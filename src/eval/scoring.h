// Scoring as RULER does (RULER/scripts/eval/synthetic/constants.py): the prediction is post-processed (control
// characters become newlines, outer whitespace is stripped) and the expected strings are looked for in it,
// case-insensitively.
//   string_match_all: the fraction of the expected strings present (1 when all are). RULER's metric for the
//                     synthetic tasks (niah_*, vt, cwe, fwe).
//   string_match_part: 1 when any expected string is present. RULER's metric for the QA tasks.
// Scores are in [0, 1] per sample; tables report their mean x 100, as RULER does.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace skv::eval {

enum class Metric { kStringMatchAll, kStringMatchPart };

const char* metric_name(Metric metric);  // "string_match_all", "string_match_part"

std::string postprocess_prediction(std::string_view prediction);
double string_match_all(std::string_view prediction, std::span<const std::string> expected);
double string_match_part(std::string_view prediction, std::span<const std::string> expected);
double score_prediction(Metric metric, std::string_view prediction, std::span<const std::string> expected);

}  // namespace skv::eval
