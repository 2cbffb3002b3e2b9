// Word lists for the synthetic tasks: needle keys are "adjective-noun" pairs, as RULER's (which draws them from
// the wonderwords lists); 160 x 160 = 25,600 distinct keys, enough for the distractor haystacks of 128K contexts.
#pragma once

#include <span>
#include <string_view>

namespace skv::eval {

std::span<const std::string_view> adjectives();
std::span<const std::string_view> nouns();

// RULER's repeated filler ("noise") for niah_single_1 and vt.
inline constexpr std::string_view kNoiseText =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

}  // namespace skv::eval
