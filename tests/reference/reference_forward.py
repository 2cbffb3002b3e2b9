#!/usr/bin/python3
"""Independent float64 numpy forward of the Hugging Face Llama / Mistral / Qwen2 decoder.

Written from the definitions in transformers' modeling_llama.py / modeling_mistral.py / modeling_qwen2.py
and modeling_rope_utils.py, not from shadowkv's code:

  h = embed[tokens]
  per layer:
    x = rmsnorm(h, input_layernorm)                 rmsnorm(x, w) = x / sqrt(mean(x^2) + eps) * w
    q, k, v = x Wq^T (+bq), x Wk^T (+bk), x Wv^T (+bv)    per head, head_dim wide
    q, k = rope(q, pos), rope(k, pos)               rotate_half layout: pairs (i, i + d/2)
    a = softmax(q k^T / sqrt(head_dim) + causal mask) v    q head h reads kv head h // (n_q / n_kv)
    h = h + a Wo^T
    x = rmsnorm(h, post_attention_layernorm)
    h = h + (silu(x Wg^T) * (x Wu^T)) Wd^T
  logits = rmsnorm(h, norm) lm_head^T               lm_head = embed when tied

Usage: /usr/bin/python3 reference_forward.py MODEL_DIR TOKENS_CSV OUT_FILE   (writes f32 LE [n_tokens, vocab])
"""

import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_np import read_safetensors  # noqa: E402

SUPPORTED_ARCHS = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")


# ----------------------------------------------------------------------------------------------------------
# Loading


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        weights = {}
        for fname in sorted(set(weight_map.values())):
            shard = read_safetensors(os.path.join(model_dir, fname))
            for name, arr in shard.items():
                if weight_map.get(name) != fname:
                    raise ValueError(f"{fname}: tensor {name} not mapped to this shard by the index")
                weights[name] = arr
        missing = set(weight_map) - set(weights)
        if missing:
            raise ValueError(f"index names tensors not found in shards: {sorted(missing)[:5]}")
        return weights
    return read_safetensors(os.path.join(model_dir, "model.safetensors"))


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)


class Params:
    """The handful of config values the forward needs, with HF's defaults."""

    def __init__(self, cfg):
        archs = cfg.get("architectures") or ["LlamaForCausalLM"]
        self.arch = archs[0]
        if self.arch not in SUPPORTED_ARCHS:
            raise ValueError(f"unsupported architecture {self.arch}")
        self.vocab = int(cfg["vocab_size"])
        self.dim = int(cfg["hidden_size"])
        self.hidden_dim = int(cfg["intermediate_size"])
        self.n_layers = int(cfg["num_hidden_layers"])
        self.n_heads = int(cfg["num_attention_heads"])
        self.n_kv_heads = int(cfg.get("num_key_value_heads") or self.n_heads)
        self.head_dim = int(cfg.get("head_dim") or self.dim // self.n_heads)
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.theta = float(cfg.get("rope_theta", 10000.0))
        self.rope_scaling = cfg.get("rope_scaling")
        self.tie = bool(cfg.get("tie_word_embeddings", False))
        # Qwen2 always has q/k/v biases; Llama only with attention_bias; Mistral never.
        if self.arch == "Qwen2ForCausalLM":
            self.attention_bias = True
        elif self.arch == "LlamaForCausalLM":
            self.attention_bias = bool(cfg.get("attention_bias", False))
        else:
            self.attention_bias = False
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")


# ----------------------------------------------------------------------------------------------------------
# Building blocks


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def default_inv_freq(head_dim, theta):
    return 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


def llama3_inv_freq(inv_freq, factor, low_freq_factor, high_freq_factor, original_max):
    """transformers' _compute_llama3_parameters, elementwise."""
    low_freq_wavelen = original_max / low_freq_factor
    high_freq_wavelen = original_max / high_freq_factor
    out = np.empty_like(inv_freq)
    for i, f in enumerate(inv_freq):
        wavelen = 2.0 * math.pi / f
        if wavelen < high_freq_wavelen:
            out[i] = f
        elif wavelen > low_freq_wavelen:
            out[i] = f / factor
        else:
            smooth = (original_max / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out[i] = (1.0 - smooth) * f / factor + smooth * f
    return out


def rope_inv_freq(head_dim, theta, rope_scaling):
    """inv_freq after scaling; linear scaling divides it by the factor (same as dividing positions)."""
    inv = default_inv_freq(head_dim, theta)
    if not rope_scaling:
        return inv
    kind = rope_scaling.get("rope_type", rope_scaling.get("type"))
    if kind in (None, "default"):
        return inv
    if kind == "linear":
        return inv / float(rope_scaling["factor"])
    if kind == "llama3":
        return llama3_inv_freq(inv, float(rope_scaling["factor"]), float(rope_scaling["low_freq_factor"]),
                               float(rope_scaling["high_freq_factor"]),
                               float(rope_scaling["original_max_position_embeddings"]))
    raise ValueError(f"unsupported rope_scaling type {kind!r}")


def rope_cos_sin(positions, inv_freq):
    freqs = np.outer(np.asarray(positions, dtype=np.float64), inv_freq)  # [n, d/2]
    emb = np.concatenate([freqs, freqs], axis=-1)  # [n, d]
    return np.cos(emb), np.sin(emb)


def apply_rope(x, cos, sin):
    """x: [n_heads, n, d]; cos/sin: [n, d]."""
    return x * cos + rotate_half(x) * sin


def causal_attention(q, k, v, n_rep):
    """q: [n_q_heads, n, d]; k, v: [n_kv_heads, n, d]. Returns [n_q_heads, n, d]."""
    n_q, n, d = q.shape
    out = np.empty_like(q)
    mask = np.triu(np.ones((n, n), dtype=bool), k=1)
    for h in range(n_q):
        kv = h // n_rep
        s = q[h] @ k[kv].T / math.sqrt(d)
        s = np.where(mask, -np.inf, s)
        s = s - s.max(axis=-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=-1, keepdims=True)
        out[h] = p @ v[kv]
    return out


# ----------------------------------------------------------------------------------------------------------
# Forward


def forward(cfg, weights, tokens):
    """Logits [n_tokens, vocab] (float64) for every position of `tokens` (positions 0..n-1)."""
    p = Params(cfg)
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 1 or tokens.size == 0:
        raise ValueError("tokens must be a non-empty 1-d sequence")
    if tokens.min() < 0 or tokens.max() >= p.vocab:
        raise ValueError("token id out of range")
    n, hd = tokens.size, p.head_dim
    n_rep = p.n_heads // p.n_kv_heads
    cos, sin = rope_cos_sin(np.arange(n), rope_inv_freq(hd, p.theta, p.rope_scaling))

    h = weights["model.embed_tokens.weight"][tokens].copy()  # [n, dim]
    for i in range(p.n_layers):
        pre = f"model.layers.{i}."
        x = rms_norm(h, weights[pre + "input_layernorm.weight"], p.eps)
        q = x @ weights[pre + "self_attn.q_proj.weight"].T
        k = x @ weights[pre + "self_attn.k_proj.weight"].T
        v = x @ weights[pre + "self_attn.v_proj.weight"].T
        has_bias = pre + "self_attn.q_proj.bias" in weights
        if p.attention_bias != has_bias:
            raise ValueError(f"layer {i}: attention bias tensors {'present' if has_bias else 'missing'} "
                             f"but the config says attention_bias={p.attention_bias}")
        if has_bias:
            q = q + weights[pre + "self_attn.q_proj.bias"]
            k = k + weights[pre + "self_attn.k_proj.bias"]
            v = v + weights[pre + "self_attn.v_proj.bias"]
        q = q.reshape(n, p.n_heads, hd).transpose(1, 0, 2)
        k = k.reshape(n, p.n_kv_heads, hd).transpose(1, 0, 2)
        v = v.reshape(n, p.n_kv_heads, hd).transpose(1, 0, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        a = causal_attention(q, k, v, n_rep).transpose(1, 0, 2).reshape(n, p.n_heads * hd)
        h = h + a @ weights[pre + "self_attn.o_proj.weight"].T
        x = rms_norm(h, weights[pre + "post_attention_layernorm.weight"], p.eps)
        g = silu(x @ weights[pre + "mlp.gate_proj.weight"].T)
        u = x @ weights[pre + "mlp.up_proj.weight"].T
        h = h + (g * u) @ weights[pre + "mlp.down_proj.weight"].T
    h = rms_norm(h, weights["model.norm.weight"], p.eps)
    if p.tie or "lm_head.weight" not in weights:
        if not p.tie:
            raise ValueError("lm_head.weight missing and tie_word_embeddings is false")
        lm_head = weights["model.embed_tokens.weight"]
    else:
        lm_head = weights["lm_head.weight"]
    return h @ lm_head.T


def forward_dir(model_dir, tokens):
    return forward(load_config(model_dir), load_weights(model_dir), tokens)


def read_tokens_csv(path):
    with open(path) as f:
        text = f.read().replace("\n", ",")
    return [int(t) for t in text.split(",") if t.strip()]


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    logits = forward_dir(argv[1], read_tokens_csv(argv[2]))
    logits.astype("<f4").tofile(argv[3])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
