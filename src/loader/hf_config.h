// Hugging Face config.json -> ModelConfig, for LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM,
// with every value validated (errors name the source file and the key).
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "loader/model_config.h"

namespace skv {

// Reads and parses `config_json`; kNotFound when missing, kParse when not JSON, then as parse_hf_config.
ModelConfig load_hf_config(const std::filesystem::path& config_json);

// `source` names the file in error messages. Throws kUnsupported for an unknown architecture, activation or
// rope_scaling type, kNotFound for a missing required key, kInvalidArgument for a bad value.
ModelConfig parse_hf_config(const nlohmann::json& j, const std::string& source);

}  // namespace skv
