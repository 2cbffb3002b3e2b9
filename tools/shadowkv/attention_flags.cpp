// Attention-policy flags.
#include "attention_flags.h"

#include "core/error.h"
#include "model/rope_frequencies.h"

namespace skv::cli {

void add_attention_flags(CLI::App& cmd, AttentionFlags& f, bool with_policy) {
  if (with_policy)
    cmd.add_option("--attention", f.attention,
                   "Attention policy: full (exact, every token) or shadowkv (low-rank keys + offloaded values + "
                   "sparse attention over selected chunks) (default full)");
  cmd.add_option("--sparse-budget", f.shadow.sparse_budget,
                 "ShadowKV: tokens of selected chunks attended per KV head each step, a multiple of --chunk-size "
                 "(default 2048)");
  cmd.add_option("--rank", f.shadow.rank,
                 "ShadowKV: rank of the pre-RoPE key factorization, clipped to n_kv_heads*head_dim (default 160)");
  cmd.add_option("--chunk-size", f.shadow.chunk_size, "ShadowKV: tokens per chunk (default 8)");
  cmd.add_option("--outlier-chunks", f.shadow.outlier_chunks,
                 "ShadowKV: chunks per KV head kept exact; -1 = 24 per 1024 tokens of budget (default -1)");
  cmd.add_option("--local-chunks", f.shadow.local_chunks,
                 "ShadowKV: most recent prompt chunks kept exact (default 4)");
  cmd.add_option("--dense-layers", f.shadow.dense_layers,
                 "ShadowKV: comma-separated layer indices that keep exact attention over every token (their K/V "
                 "stay resident): for layers whose attention --report shows too diffuse for the budget "
                 "(default none: every layer sparse, as in the paper)")
      ->delimiter(',');
  cmd.add_option("--dense-capture", f.shadow.dense_capture,
                 "ShadowKV: choose dense layers per sequence: at its first decode step(s) each layer compares the "
                 "attention mass its landmark selection captures with what the best chunks of the same budget "
                 "would (against exact attention, so exact K/V are kept until then); below this fraction the layer "
                 "keeps exact attention for the rest of the sequence. 0 = off, as in the paper (default 0; 0.75 "
                 "is a reasonable start; --report shows the choices)");
  cmd.add_option("--dense-capture-steps", f.shadow.dense_capture_steps,
                 "ShadowKV, with --dense-capture: the first decode steps measured; a layer turns exact at the first "
                 "of them below the threshold (default 1)");
  cmd.add_option("--selection", f.selection,
                 "ShadowKV: how chunks are chosen each step: landmarks (default, the paper's) or oracle (a "
                 "diagnostic: the chunks of highest exact attention mass, so the cache keeps every exact key; "
                 "shows whether better selection alone would close the gap to full attention)");
}

AttentionOptions attention_options(const AttentionFlags& f, AttentionKind kind, bool report) {
  AttentionOptions o;
  o.kind = kind;
  o.shadow = f.shadow;
  o.report = report;
  if (f.selection != "landmarks" && f.selection != "oracle")
    throw Error(ErrorCode::kInvalidArgument, "--selection must be landmarks or oracle, got '" + f.selection + "'");
  o.shadow.oracle_selection = f.selection == "oracle";
  if (kind == AttentionKind::kShadowKv) o.shadow.validate();
  return o;
}

AttentionOptions attention_options(const AttentionFlags& f, bool report) {
  return attention_options(f, parse_attention_kind(f.attention), report);
}

std::unique_ptr<KvCache> make_model_kv_cache(const ModelConfig& c, const AttentionOptions& options) {
  KvCacheShape shape{c.n_layers, c.n_q_heads, c.n_kv_heads, c.head_dim, rope_inv_freq(c), rope_position_scale(c)};
  return make_kv_cache(shape, options);
}

}  // namespace skv::cli
