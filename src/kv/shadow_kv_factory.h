// make_kv_cache: the attention policy chosen by flags (--attention full|shadowkv and the ShadowKV knobs), so the
// CLI and benchmarks build either cache the same way. kv cannot depend on model (model links kv), so the caller
// passes the model's RoPE frequencies:
//   KvCacheShape shape{c.n_layers, c.n_q_heads, c.n_kv_heads, c.head_dim, rope_inv_freq(c), rope_position_scale(c)};
//   std::unique_ptr<KvCache> cache = make_kv_cache(shape, options);
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "kv/kv_cache.h"
#include "kv/shadow_params.h"

namespace skv {

enum class AttentionKind { kFull, kShadowKv };

// "full" or "shadowkv"; anything else is Error(kInvalidArgument) naming the value and the choices.
AttentionKind parse_attention_kind(std::string_view name);
const char* attention_kind_name(AttentionKind kind);

struct AttentionOptions {
  AttentionKind kind = AttentionKind::kFull;
  ShadowParams shadow;  // kShadowKv only
  bool report = false;  // kShadowKv only: ShadowKvCache::enable_report
  // Where the cache lives. kCuda: a CudaFullKvCache (full attention only; ShadowKV on CUDA is an error) with
  // max_sequences slots of max_tokens tokens each, allocated up front (max_tokens must be set), K/V in kv_dtype
  // (bf16 or f32). The CPU caches always hold f32 and ignore kv_dtype.
  DeviceId device{};
  int64_t max_sequences = 1;
  int64_t max_tokens = 0;
  DType kv_dtype = DType::kBF16;
};

struct KvCacheShape {
  int64_t n_layers = 0;
  int64_t n_q_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  std::vector<float> rope_inv_freq;  // [head_dim / 2]
  double rope_position_scale = 1.0;
};

// A FullKvCache or a ShadowKvCache on the CPU, a CudaFullKvCache on CUDA (validated parameters:
// Error(kInvalidArgument) naming the bad one; ShadowKV on CUDA: Error(kUnsupported)).
std::unique_ptr<KvCache> make_kv_cache(const KvCacheShape& shape, const AttentionOptions& options);

}  // namespace skv
