"""The testbed model: a Hugging Face LlamaForCausalLM, written out in plain PyTorch.

Same computation as transformers' LlamaForCausalLM (RMSNorm in fp32, rotate-half RoPE with
inv_freq = theta^(-2i/d), GQA by repeating KV heads, SwiGLU MLP, no biases, tied embeddings), same parameter
names, so `export_hf` writes a directory that transformers and our C++ loader read. train.py checks the
equivalence against transformers on the GPU machine when transformers is importable.
Runs on torch 1.13 (CPU, explicit attention) and torch 2.x (scaled_dot_product_attention).
"""
import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


class Config:
    def __init__(self, **kw):
        self.vocab_size = 8192
        self.hidden_size = 256
        self.intermediate_size = 768
        self.num_hidden_layers = 6
        self.num_attention_heads = 8
        self.num_key_value_heads = 2
        self.head_dim = 64
        self.rope_theta = 1e6
        self.rms_norm_eps = 1e-5
        self.max_position_embeddings = 32768
        self.tie_word_embeddings = True
        for k, v in kw.items():
            if not hasattr(self, k):
                raise ValueError(f"unknown model config key {k}")
            setattr(self, k, v)

    def to_dict(self):
        return dict(self.__dict__)

    def hf_config(self, bos_id, eos_id):
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads, "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim, "hidden_act": "silu", "rms_norm_eps": self.rms_norm_eps,
            # transformers < 5 and our loader read rope_theta; transformers 5 reads rope_parameters.
            "rope_theta": self.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings, "attention_bias": False, "attention_dropout": 0.0,
            "mlp_bias": False, "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": True,
            "bos_token_id": bos_id, "eos_token_id": eos_id, "torch_dtype": "bfloat16",
        }


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.num_attention_heads * c.head_dim, c.hidden_size, bias=False)

    def forward(self, x, cos, sin):
        c = self.c
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, c.num_attention_heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        q = (q * cos + rotate_half(q) * sin).to(v.dtype)
        k = (k * cos + rotate_half(k) * sin).to(v.dtype)
        rep = c.num_attention_heads // c.num_key_value_heads
        if rep > 1:  # HF repeat_kv: KV head j serves query heads j*rep .. j*rep+rep-1
            k = k[:, :, None].expand(B, c.num_key_value_heads, rep, T, c.head_dim).reshape(B, -1, T, c.head_dim)
            v = v[:, :, None].expand(B, c.num_key_value_heads, rep, T, c.head_dim).reshape(B, -1, T, c.head_dim)
        if HAS_SDPA:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            o = _explicit_causal_attention(q, k, v)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, -1))


def _explicit_causal_attention(q, k, v, chunk=1024):
    """fp32 softmax attention in query chunks (torch < 2.0, and exact references)."""
    T, scale = q.shape[2], 1.0 / math.sqrt(q.shape[-1])
    out = []
    for s in range(0, T, chunk):
        e = min(T, s + chunk)
        att = torch.matmul(q[:, :, s:e].float(), k[:, :, :e].float().transpose(-1, -2)) * scale
        mask = torch.ones(e - s, e, dtype=torch.bool, device=q.device).tril(diagonal=s)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        out.append(torch.matmul(att, v[:, :, :e].float()).to(q.dtype))
    return torch.cat(out, dim=2)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = MLP(c)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Inner(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([Layer(c) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class LlamaLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.model = Inner(c)
        if not c.tie_word_embeddings:
            self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        inv = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.int64).float() / c.head_dim))
        self.register_buffer("inv_freq", inv, persistent=False)

    def init_weights(self, seed):
        g = torch.Generator().manual_seed(seed)
        c = self.config
        for name, p in self.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                nn.init.ones_(p)
            else:
                std = 0.02
                if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                    std = 0.02 / math.sqrt(2 * c.num_hidden_layers)
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=g) * std)

    def rope(self, T, device):
        pos = torch.arange(T, device=device, dtype=torch.float32)
        f = torch.outer(pos, self.inv_freq.to(device))
        emb = torch.cat((f, f), dim=-1)
        return emb.cos()[None, None], emb.sin()[None, None]

    def hidden(self, ids):
        x = self.model.embed_tokens(ids)
        cos, sin = self.rope(ids.shape[1], ids.device)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return self.model.norm(x)

    def head(self, h):
        w = self.model.embed_tokens.weight if self.config.tie_word_embeddings else self.lm_head.weight
        return F.linear(h, w)

    def forward(self, ids):
        return self.head(self.hidden(ids))

    def num_params(self):
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------- export / safetensors (no dependency)

_ST_DTYPE = {torch.bfloat16: ("BF16", torch.int16), torch.float32: ("F32", None), torch.float16: ("F16", None)}


def save_safetensors(tensors, path, metadata=None):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        code, view = _ST_DTYPE[t.dtype]
        b = (t.view(view) if view is not None else t).numpy().tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        if e["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.int16).copy()).view(torch.bfloat16)
        elif e["dtype"] == "F32":
            t = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).copy())
        else:
            raise ValueError(e["dtype"])
        out[name] = t.reshape(e["shape"])
    return out


def export_hf(model, out_dir, tok_json, tok_config_json, bos_id, eos_id):
    os.makedirs(out_dir, exist_ok=True)
    sd = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    save_safetensors(sd, os.path.join(out_dir, "model.safetensors"), {"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(model.config.hf_config(bos_id, eos_id), f, indent=2)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(tok_json)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        f.write(tok_config_json)


def load_exported(model_dir, dtype=torch.float32):
    with open(os.path.join(model_dir, "config.json")) as f:
        hc = json.load(f)
    keys = Config().to_dict().keys()
    c = Config(**{k: hc[k] for k in keys if k in hc})
    m = LlamaLM(c)
    sd = {k: v.to(dtype) for k, v in load_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
    m.load_state_dict(sd)
    return m.to(dtype)
