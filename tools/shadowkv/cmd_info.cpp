// shadowkv info: a model's architecture, parameter count and KV-cache bytes per sequence.
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "core/error.h"
#include "loader/hf_config.h"

namespace skv::cli {
namespace {

struct InfoFlags {
  std::string model;
  int64_t context = 0;
  bool json = false;
};

const char* rope_scaling_name(RopeScalingType t) {
  switch (t) {
    case RopeScalingType::kNone: return "none";
    case RopeScalingType::kLinear: return "linear";
    case RopeScalingType::kLlama3: return "llama3";
  }
  return "?";
}

void run_info(const InfoFlags& f) {
  const auto dir = resolve_model_dir(f.model);
  const ModelConfig c = load_hf_config(dir / "config.json");
  if (f.context < 0 || f.context > (int64_t{1} << 24))
    throw Error(ErrorCode::kInvalidArgument, "--context must be in [1, 16777216], got " + std::to_string(f.context));
  const int64_t context = f.context > 0 ? f.context : c.max_position_embeddings;
  // The KV cache is kept in bf16 on the GPU and f32 by the CPU backend.
  const int64_t kv_bf16 = c.kv_cache_bytes(context, 2), kv_f32 = c.kv_cache_bytes(context, 4);
  if (f.json) {
    nlohmann::json j{{"architecture", architecture_name(c.arch)},
                     {"parameters", c.parameter_count()},
                     {"vocab_size", c.vocab_size},
                     {"hidden_size", c.dim},
                     {"intermediate_size", c.hidden_dim},
                     {"n_layers", c.n_layers},
                     {"n_q_heads", c.n_q_heads},
                     {"n_kv_heads", c.n_kv_heads},
                     {"head_dim", c.head_dim},
                     {"rope_theta", c.rope_theta},
                     {"rope_scaling", rope_scaling_name(c.rope_scaling.type)},
                     {"max_position_embeddings", c.max_position_embeddings},
                     {"tie_word_embeddings", c.tie_word_embeddings},
                     {"context", context},
                     {"kv_cache_bytes_per_sequence", {{"full_bf16", kv_bf16}, {"full_f32", kv_f32}}}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("model:            %s\n", dir.string().c_str());
  std::printf("architecture:     %s\n", architecture_name(c.arch));
  std::printf("parameters:       %lld (%.1fM)\n", static_cast<long long>(c.parameter_count()),
              static_cast<double>(c.parameter_count()) / 1e6);
  std::printf("layers:           %lld\n", static_cast<long long>(c.n_layers));
  std::printf("hidden size:      %lld (MLP %lld)\n", static_cast<long long>(c.dim), static_cast<long long>(c.hidden_dim));
  std::printf("attention heads:  %lld query, %lld key/value (GQA %lld:1), head_dim %lld%s\n",
              static_cast<long long>(c.n_q_heads), static_cast<long long>(c.n_kv_heads),
              static_cast<long long>(c.group_size()), static_cast<long long>(c.head_dim),
              c.attention_bias ? ", q/k/v bias" : "");
  std::printf("vocabulary:       %lld%s\n", static_cast<long long>(c.vocab_size),
              c.tie_word_embeddings ? " (tied embeddings)" : "");
  std::printf("rope:             theta %g, scaling %s\n", c.rope_theta, rope_scaling_name(c.rope_scaling.type));
  std::printf("trained context:  %lld tokens\n", static_cast<long long>(c.max_position_embeddings));
  std::printf("KV cache at %lld tokens, per sequence: %s in bf16 (GPU), %s in f32 (CPU backend)\n",
              static_cast<long long>(context), format_bytes(kv_bf16).c_str(), format_bytes(kv_f32).c_str());
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto f = std::make_shared<InfoFlags>();
  CLI::App* cmd = app.add_subcommand("info", "Show a model's architecture, size and KV-cache memory per sequence");
  cmd->add_option("--model", f->model, "Model directory (default: stories15M)");
  cmd->add_option("--context", f->context, "Context length for the memory figures (default: the trained context)");
  cmd->add_flag("--json", f->json, "Print JSON");
  cmd->callback([f] { run_info(*f); });
}

}  // namespace skv::cli
