#!/usr/bin/python3
"""Tiny random-weight Hugging Face model directories (config.json + safetensors) for the reference tests.

Every variant is deterministic from its seed. Weights are scaled so activations stay O(1):
linear weights ~ N(0, 1/fan_in), embeddings ~ N(0, 1) (N(0, 1/hidden) when tied), RMSNorm weights ~ 1 + N(0, 0.1^2),
q/k/v biases ~ N(0, 0.2^2).

Usage: /usr/bin/python3 tiny_models.py OUT_DIR [VARIANT ...]   (default: all variants)
"""

import copy
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_np import write_safetensors  # noqa: E402

# Architecture-level shapes of each base variant. "extra" is merged into config.json verbatim.
_BASE = {
    # GQA 4:1, head_dim 16, untied embeddings.
    "llama_gqa4": dict(
        arch="LlamaForCausalLM", model_type="llama", seed=101, vocab=512, hidden=128, inter=256, layers=2,
        heads=8, kv_heads=2, head_dim=None, theta=10000.0, eps=1e-5, tie=False, bias=False, max_pos=256,
        extra={"attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2},
    ),
    # Llama 3.1 rope scaling with a small original context so the scaling changes frequencies at test lengths.
    "llama31_rope": dict(
        arch="LlamaForCausalLM", model_type="llama", seed=202, vocab=384, hidden=128, inter=320, layers=3,
        heads=2, kv_heads=1, head_dim=64, theta=500000.0, eps=1e-5, tie=True, bias=False, max_pos=512,
        extra={
            "attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": [2, 3],
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        },
    ),
    # Old-style linear scaling ("type" key, as in Llama 2 era configs); plain MHA.
    "llama_linear_rope": dict(
        arch="LlamaForCausalLM", model_type="llama", seed=303, vocab=300, hidden=64, inter=160, layers=2,
        heads=4, kv_heads=4, head_dim=None, theta=10000.0, eps=1e-6, tie=False, bias=False, max_pos=256,
        extra={"bos_token_id": 1, "eos_token_id": 2, "rope_scaling": {"type": "linear", "factor": 4.0}},
    ),
    # Mistral: GQA 2:1, explicit head_dim (32) != hidden / heads (16).
    "mistral": dict(
        arch="MistralForCausalLM", model_type="mistral", seed=404, vocab=640, hidden=64, inter=192, layers=2,
        heads=4, kv_heads=2, head_dim=32, theta=1000000.0, eps=1e-5, tie=False, bias=False, max_pos=1024,
        extra={"sliding_window": None, "bos_token_id": 1, "eos_token_id": 2},
    ),
    # Qwen2: q/k/v biases (always present for Qwen2, no attention_bias key in real configs), tied embeddings.
    "qwen2_bias": dict(
        arch="Qwen2ForCausalLM", model_type="qwen2", seed=505, vocab=1000, hidden=128, inter=288, layers=2,
        heads=2, kv_heads=1, head_dim=None, theta=1000000.0, eps=1e-6, tie=True, bias=True, max_pos=1024,
        extra={"use_sliding_window": False, "sliding_window": 1024, "max_window_layers": 2,
               "bos_token_id": 998, "eos_token_id": 999},
    ),
}

# Every variant: (base, storage dtype, number of shards).
VARIANTS = {
    "llama_gqa4": ("llama_gqa4", "F32", 1),
    "llama31_rope": ("llama31_rope", "F32", 1),
    "llama_linear_rope": ("llama_linear_rope", "F32", 1),
    "mistral": ("mistral", "F32", 1),
    "qwen2_bias": ("qwen2_bias", "F32", 1),
    "llama_gqa4_sharded": ("llama_gqa4", "F32", 2),
    "llama_gqa4_bf16": ("llama_gqa4", "BF16", 1),
    "qwen2_bias_bf16": ("qwen2_bias", "BF16", 1),
}

_TORCH_DTYPE = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def base_spec(name):
    return copy.deepcopy(_BASE[name])


def make_config(spec, storage="F32"):
    cfg = {
        "architectures": [spec["arch"]],
        "model_type": spec["model_type"],
        "vocab_size": spec["vocab"],
        "hidden_size": spec["hidden"],
        "intermediate_size": spec["inter"],
        "num_hidden_layers": spec["layers"],
        "num_attention_heads": spec["heads"],
        "num_key_value_heads": spec["kv_heads"],
        "hidden_act": "silu",
        "rms_norm_eps": spec["eps"],
        "rope_theta": spec["theta"],
        "max_position_embeddings": spec["max_pos"],
        "tie_word_embeddings": spec["tie"],
        "torch_dtype": _TORCH_DTYPE[storage],
        "initializer_range": 0.02,
        "use_cache": True,
    }
    if spec["head_dim"] is not None:
        cfg["head_dim"] = spec["head_dim"]
    cfg.update(copy.deepcopy(spec["extra"]))
    return cfg


def make_weights(spec):
    """float32 tensors keyed by their HF names."""
    rng = np.random.default_rng(spec["seed"])
    d, f, v = spec["hidden"], spec["inter"], spec["vocab"]
    hd = spec["head_dim"] if spec["head_dim"] is not None else d // spec["heads"]
    qd, kvd = spec["heads"] * hd, spec["kv_heads"] * hd

    def lin(out_f, in_f):
        return (rng.standard_normal((out_f, in_f)) / np.sqrt(in_f)).astype(np.float32)

    def norm_w(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    # Tied models read logits off the embedding: scale it to N(0, 1/d) so logits stay O(1) instead of the
    # token's own embedding dominating (RMSNorm makes the small residual start harmless).
    embed_scale = 1.0 / np.sqrt(d) if spec["tie"] else 1.0
    w = {"model.embed_tokens.weight": (embed_scale * rng.standard_normal((v, d))).astype(np.float32)}
    for i in range(spec["layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm_w(d)
        w[p + "self_attn.q_proj.weight"] = lin(qd, d)
        w[p + "self_attn.k_proj.weight"] = lin(kvd, d)
        w[p + "self_attn.v_proj.weight"] = lin(kvd, d)
        if spec["bias"]:
            w[p + "self_attn.q_proj.bias"] = (0.2 * rng.standard_normal(qd)).astype(np.float32)
            w[p + "self_attn.k_proj.bias"] = (0.2 * rng.standard_normal(kvd)).astype(np.float32)
            w[p + "self_attn.v_proj.bias"] = (0.2 * rng.standard_normal(kvd)).astype(np.float32)
        w[p + "self_attn.o_proj.weight"] = lin(d, qd)
        w[p + "post_attention_layernorm.weight"] = norm_w(d)
        w[p + "mlp.gate_proj.weight"] = lin(f, d)
        w[p + "mlp.up_proj.weight"] = lin(f, d)
        w[p + "mlp.down_proj.weight"] = lin(d, f)
    w["model.norm.weight"] = norm_w(d)
    if not spec["tie"]:
        w["lm_head.weight"] = lin(v, d)
    return w


def write_model_dir(out_dir, config, weights, storage="F32", shards=1):
    """Writes config.json and the weights (single file, or `shards` files plus the index) into out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if shards == 1:
        write_safetensors(os.path.join(out_dir, "model.safetensors"), weights, storage)
        return out_dir
    names = sorted(weights)
    # Split by tensor order, not evenly by name count, so every shard holds several tensors of mixed kinds.
    groups = [names[i::shards] for i in range(shards)]
    weight_map, total = {}, 0
    for k, group in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        total += write_safetensors(os.path.join(out_dir, fname), {n: weights[n] for n in group}, storage)
        for n in group:
            weight_map[n] = fname
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return out_dir


def write_variant(name, out_root):
    """Writes variant `name` into out_root/name and returns that path."""
    base, storage, shards = VARIANTS[name]
    spec = base_spec(base)
    return write_model_dir(os.path.join(out_root, name), make_config(spec, storage), make_weights(spec),
                           storage, shards)


def storage_of(name):
    return VARIANTS[name][1]


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    names = argv[2:] or list(VARIANTS)
    for n in names:
        if n not in VARIANTS:
            print(f"error: unknown variant {n!r}; known: {', '.join(VARIANTS)}", file=sys.stderr)
            return 2
        print(write_variant(n, argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
