// The attention-policy flags shared by generate, bench and eval: --attention full|shadowkv and the ShadowKV
// knobs (arXiv 2410.21465 §4), mapped onto skv::AttentionOptions.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "kv/shadow_kv_factory.h"
#include "loader/model_config.h"

namespace skv::cli {

struct AttentionFlags {
  std::string attention = "full";
  ShadowParams shadow;  // the paper's defaults
  std::string selection = "landmarks";  // --selection: landmarks | oracle (ShadowParams::oracle_selection)
};

// Adds --attention (unless with_policy is false: eval takes a list), --sparse-budget, --rank, --chunk-size,
// --outlier-chunks, --local-chunks.
void add_attention_flags(CLI::App& cmd, AttentionFlags& flags, bool with_policy = true);
// Validated options (Error naming the bad flag); kind from flags.attention unless given.
AttentionOptions attention_options(const AttentionFlags& flags, bool report);
AttentionOptions attention_options(const AttentionFlags& flags, AttentionKind kind, bool report);
// The cache for a model under those options.
std::unique_ptr<KvCache> make_model_kv_cache(const ModelConfig& config, const AttentionOptions& options);

}  // namespace skv::cli
