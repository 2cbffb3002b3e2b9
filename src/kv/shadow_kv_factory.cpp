// make_kv_cache: one place that turns attention options into a cache.
#include "kv/shadow_kv_factory.h"

#include <string>

#include "kv/cuda_full_kv_cache.h"
#include "kv/full_kv_cache.h"
#include "kv/shadow_kv_cache.h"

namespace skv {

AttentionKind parse_attention_kind(std::string_view name) {
  if (name == "full") return AttentionKind::kFull;
  if (name == "shadowkv") return AttentionKind::kShadowKv;
  throw Error(ErrorCode::kInvalidArgument,
              "unknown attention policy '" + std::string(name) + "' (expected 'full' or 'shadowkv')");
}

const char* attention_kind_name(AttentionKind kind) { return kind == AttentionKind::kFull ? "full" : "shadowkv"; }

std::unique_ptr<KvCache> make_kv_cache(const KvCacheShape& s, const AttentionOptions& o) {
  if (o.device.kind == DeviceKind::kCuda) {
    if (o.kind != AttentionKind::kFull)
      throw Error(ErrorCode::kUnsupported, "--attention shadowkv runs on the CPU backend only for now");
    if (o.max_sequences < 1 || o.max_tokens < 1)
      throw Error(ErrorCode::kInvalidArgument, "a CUDA KV cache needs max_sequences and max_tokens of at least 1");
    return std::make_unique<CudaFullKvCache>(s.n_layers, s.n_q_heads, s.n_kv_heads, s.head_dim, o.max_sequences,
                                             o.max_tokens, o.device.index, o.kv_dtype);
  }
  if (o.kind == AttentionKind::kFull) return std::make_unique<FullKvCache>(s.n_layers, s.n_kv_heads, s.head_dim);
  auto cache = std::make_unique<ShadowKvCache>(s.n_layers, s.n_q_heads, s.n_kv_heads, s.head_dim, o.shadow,
                                               s.rope_inv_freq, s.rope_position_scale);
  cache->enable_report(o.report);
  return cache;
}

}  // namespace skv
