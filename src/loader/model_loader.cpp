// Model directory loading and Hugging Face tensor-name binding.
#include "loader/model_loader.h"

#include "core/error.h"
#include "loader/hf_config.h"

namespace skv {

ModelWeights bind_weights(const ModelConfig& c, const WeightStore& store) {
  ModelWeights w;
  w.embed = store.get("model.embed_tokens.weight", {c.vocab_size, c.dim});
  w.final_norm = store.get("model.norm.weight", {c.dim});
  if (c.tie_word_embeddings) {
    // A tied checkpoint may still carry lm_head.weight; HF ties it to the embedding regardless.
    w.lm_head = w.embed;
  } else {
    if (!store.find("lm_head.weight")) {
      throw Error(ErrorCode::kNotFound, "missing tensor 'lm_head.weight' (looked in: " + store.file_list() +
                                            "), needed because config.json has tie_word_embeddings false");
    }
    w.lm_head = store.get("lm_head.weight", {c.vocab_size, c.dim});
  }

  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    l.attn_norm = store.get(p + "input_layernorm.weight", {c.dim});
    l.wq = store.get(p + "self_attn.q_proj.weight", {c.q_dim(), c.dim});
    l.wk = store.get(p + "self_attn.k_proj.weight", {c.kv_dim(), c.dim});
    l.wv = store.get(p + "self_attn.v_proj.weight", {c.kv_dim(), c.dim});
    if (c.attention_bias) {
      l.bq = store.get(p + "self_attn.q_proj.bias", {c.q_dim()});
      l.bk = store.get(p + "self_attn.k_proj.bias", {c.kv_dim()});
      l.bv = store.get(p + "self_attn.v_proj.bias", {c.kv_dim()});
    }
    l.wo = store.get(p + "self_attn.o_proj.weight", {c.dim, c.q_dim()});
    l.mlp_norm = store.get(p + "post_attention_layernorm.weight", {c.dim});
    l.w_gate = store.get(p + "mlp.gate_proj.weight", {c.hidden_dim, c.dim});
    l.w_up = store.get(p + "mlp.up_proj.weight", {c.hidden_dim, c.dim});
    l.w_down = store.get(p + "mlp.down_proj.weight", {c.dim, c.hidden_dim});
  }
  // More layers in the files than in config.json means the two do not belong together.
  const std::string extra = "model.layers." + std::to_string(c.n_layers) + ".input_layernorm.weight";
  if (store.find(extra)) {
    throw Error(ErrorCode::kInvalidArgument,
                store.file_of(extra) + ": holds '" + extra + "', but config.json says num_hidden_layers " +
                    std::to_string(c.n_layers));
  }
  return w;
}

LoadedModel load_model(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw Error(ErrorCode::kNotFound, "model directory '" + dir.string() + "' does not exist");
  if (!fs::is_directory(dir, ec))
    throw Error(ErrorCode::kInvalidArgument, "model path '" + dir.string() + "' is not a directory");
  const fs::path config_path = dir / "config.json";
  if (!fs::is_regular_file(config_path, ec)) {
    throw Error(ErrorCode::kNotFound, "model directory '" + dir.string() +
                                          "' has no config.json (expected a Hugging Face model directory)");
  }
  LoadedModel m;
  m.dir = dir;
  m.config = load_hf_config(config_path);
  m.store = std::make_shared<WeightStore>(dir);
  m.weights = bind_weights(m.config, *m.store);
  return m;
}

}  // namespace skv
