// load_model: a Hugging Face model directory (config.json + safetensors) -> config and checked weight views.
#pragma once

#include <filesystem>
#include <memory>

#include "loader/model_config.h"
#include "loader/model_weights.h"
#include "loader/weight_store.h"

namespace skv {

struct LoadedModel {
  std::filesystem::path dir;
  ModelConfig config;
  ModelWeights weights;                // views into the store's mmaps
  std::shared_ptr<WeightStore> store;  // keeps the mappings alive
};

// Throws kNotFound for a missing directory, config.json or weights, and whatever load_hf_config,
// WeightStore and bind_weights throw.
LoadedModel load_model(const std::filesystem::path& dir);

// Binds the Hugging Face tensor names of `store` to ModelWeights, checking every shape against `config`
// and every dtype against f32/f16/bf16. lm_head is the embedding when tie_word_embeddings.
ModelWeights bind_weights(const ModelConfig& config, const WeightStore& store);

}  // namespace skv
