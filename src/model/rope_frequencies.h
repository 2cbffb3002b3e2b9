// RoPE inverse frequencies for a model, with Llama-3.1 ("llama3") and linear rope_scaling applied.
#pragma once

#include <vector>

#include "loader/model_config.h"

namespace skv {

// inv_freq[i] = theta^(-2i/head_dim), i < head_dim/2, rescaled per config.rope_scaling for llama3.
std::vector<float> rope_inv_freq(const ModelConfig& config);
// Positions are multiplied by this before the rotation (1/factor for linear scaling, else 1).
double rope_position_scale(const ModelConfig& config);

}  // namespace skv
