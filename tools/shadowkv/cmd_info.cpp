// shadowkv info: a model's architecture, parameter count and KV-cache bytes per sequence.
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "attention_flags.h"
#include "cli_common.h"
#include "kv/shadow_kv_cache.h"
#include "core/error.h"
#include "loader/hf_config.h"

namespace skv::cli {
namespace {

struct InfoFlags {
  std::string model;
  int64_t context = 0;
  AttentionFlags attention;
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
  // ShadowKV keeps U, SV, landmarks, outliers and the local window resident and offloads the values.
  const AttentionOptions shadow_options = attention_options(f.attention, AttentionKind::kShadowKv, false);
  const KvSizes sizes{c.n_layers, c.n_kv_heads, c.head_dim};
  const MemoryUse shadow_bf16 = ShadowKvCache::estimate_bytes(sizes, shadow_options.shadow, context, 2);
  const MemoryUse shadow_f32 = ShadowKvCache::estimate_bytes(sizes, shadow_options.shadow, context, 4);
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
                     {"kv_cache_bytes_per_sequence", {{"full_bf16", kv_bf16}, {"full_f32", kv_f32}}},
                     {"shadowkv_bytes_per_sequence",
                      {{"resident_bf16", shadow_bf16.device_bytes}, {"offloaded_bf16", shadow_bf16.offloaded_bytes},
                       {"resident_f32", shadow_f32.device_bytes}, {"offloaded_f32", shadow_f32.offloaded_bytes}}},
                     {"shadowkv", {{"sparse_budget", shadow_options.shadow.sparse_budget},
                                   {"rank", shadow_options.shadow.rank},
                                   {"chunk_size", shadow_options.shadow.chunk_size},
                                   {"outlier_chunks", shadow_options.shadow.resolved_outlier_chunks()},
                                   {"local_chunks", shadow_options.shadow.local_chunks}}}};
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
  std::printf("KV cache per sequence at %lld tokens:\n", static_cast<long long>(context));
  std::printf("  full attention:  %s in bf16 (GPU), %s in f32 (CPU backend)\n", format_bytes(kv_bf16).c_str(),
              format_bytes(kv_f32).c_str());
  std::printf("  shadowkv:        %s resident + %s offloaded in bf16 (GPU), %s + %s in f32 (CPU backend)\n",
              format_bytes(shadow_bf16.device_bytes).c_str(), format_bytes(shadow_bf16.offloaded_bytes).c_str(),
              format_bytes(shadow_f32.device_bytes).c_str(), format_bytes(shadow_f32.offloaded_bytes).c_str());
  std::printf("                   (budget %lld, rank %lld, chunk %lld, %lld outlier chunks, %lld local chunks)\n",
              static_cast<long long>(shadow_options.shadow.sparse_budget),
              static_cast<long long>(shadow_options.shadow.rank),
              static_cast<long long>(shadow_options.shadow.chunk_size),
              static_cast<long long>(shadow_options.shadow.resolved_outlier_chunks()),
              static_cast<long long>(shadow_options.shadow.local_chunks));
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto f = std::make_shared<InfoFlags>();
  CLI::App* cmd = app.add_subcommand("info", "Show a model's architecture, size and KV-cache memory per sequence");
  cmd->add_option("--model", f->model, "Model directory (default: stories15M)");
  cmd->add_option("--context", f->context, "Context length for the memory figures (default: the trained context)");
  add_attention_flags(*cmd, f->attention, /*with_policy=*/false);
  cmd->add_flag("--json", f->json, "Print JSON");
  cmd->callback([f] { run_info(*f); });
}

}  // namespace skv::cli
