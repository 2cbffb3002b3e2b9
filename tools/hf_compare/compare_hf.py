#!/usr/bin/env python3
"""shadowkv against Hugging Face transformers on random-weight models with published configs (issue 4).

For each model (Llama-3.1-8B, Qwen2-7B, Mistral-7B; full size, configs written below from the published
config.json files), on the GPU machine:
  1. build it with transformers (AutoModelForCausalLM.from_config, bf16, SDPA attention) on the GPU with a fixed
     seed, then overwrite every weight with better-conditioned random values (--init scaled, the default; the
     comment above INIT_GAINS gives the reasoning and the measurements): embedding N(0, 1); stds
     gain / sqrt(fan_in) for the matrices (q/k 1.5, v/gate/up 1, o 2 and down 1 times 1/sqrt(2 n_layers),
     lm_head 3); RMSNorm weights 1 + N(0, 0.1^2); Qwen2's q/k/v biases N(0, 0.5^2). --init hf keeps HF's own
     init (std 0.02 everywhere), which is numerically chaotic over 32 layers (HF bf16 vs HF fp32 of the same
     weights: 7.7e-2), with the same norm/bias perturbation;
  2. save_pretrained (bf16 safetensors, sharded) to a work directory; config.json there is then rewritten in the
     published (legacy) format, rope_theta / rope_scaling at the top level, because transformers 5 writes
     rope_parameters instead (HF's own file is kept as config.hf.json);
  3. HF at each length (default 1024 and 32768) on seeded random token ids, in bf16 and then, when memory and
     time allow, in fp32 (the bf16-valued weights upcast, TF32 off: the reference): the prompt is prefilled in
     chunks of --hf-chunk tokens (4096) through a DynamicCache, so that no attention ever materialises a
     32K x 32K score matrix, and only the last position goes through lm_head; at the --greedy-lengths 32 greedy
     steps follow (a manual loop over the cache: no EOS stop, every step's logits kept for the margins), whose
     first row is the last-position logits; in fp32 first a check that the chunked prefill gives the logits of
     one whole-prompt forward (at the shortest length);
  4. the engine (the HF model freed first): tests/reference skv_dump_logits --device cuda --last-only (a) with
     bf16 weights and bf16 KV cache (the default), all --lengths in one run; shadowkv generate --device cuda
     --prompt-ids --json --max-tokens 32 (bf16) at the --greedy-lengths; (b) with --weight-dtype f32
     --kv-dtype f32 at the --f32-lengths (default 1024 and 32768: one run, one 32 GB load, when its estimate
     fits in the time left, else the shorter lengths alone);
  5. relative error ||a - b|| / ||b|| (L2 over the vocabulary) of: ours-bf16 vs HF-fp32 (the issue's check:
     PASS when <= 1e-2), ours-bf16 vs HF-bf16, HF-bf16 vs HF-fp32 (the noise floor of transformers' bf16, whose
     residual stream is bf16: ~1.7e-2 expected), ours-f32 vs HF-fp32 (expected ~1e-5; PASS <= 1e-4); greedy: the
     first step where our tokens differ from HF's (fp32 and bf16), and the reference's margin there (its top
     logit minus its logit of our token, its top-1 minus top-2 gap), so that a divergence within bf16 noise can
     be told apart from a bug;
  6. delete the model directory (unless --keep names it), free GPU memory, next model.
Every step is independent (a failure is recorded, the rest goes on) and has a time estimate (printed, recorded
next to the actual seconds); with a --deadline (epoch seconds) a step is skipped, with the reason recorded, when
its estimate plus the time reserved for the engine's own steps does not fit, and whole models are skipped when
time runs short. Results: one JSON object per line in --json-out, a readable log on stdout.

  python3 tools/hf_compare/compare_hf.py --shadowkv build-gpu/shadowkv \
      --dump-logits build-gpu/tests/reference/skv_dump_logits --models llama31_8b --lengths 1024,32768
  python3 tools/hf_compare/compare_hf.py --count-params     # parameter counts and init stds, no GPU needed
  python3 tools/hf_compare/compare_hf.py --summarize results.jsonl
  python3 tools/hf_compare/compare_hf.py --plan             # each step's time estimate, no GPU needed
"""

import argparse
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

# --------------------------------------------------------------------------------------------------------------
# Published configs (config.json of the Hugging Face repositories), in their legacy format.

LLAMA31_8B = {  # meta-llama/Llama-3.1-8B
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
    "vocab_size": 128256,
}

QWEN2_7B = {  # Qwen/Qwen2-7B
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
    "intermediate_size": 18944, "max_position_embeddings": 131072, "max_window_layers": 28, "model_type": "qwen2",
    "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "use_cache": True, "use_sliding_window": False, "vocab_size": 152064,
}

# mistralai/Mistral-7B-v0.1, except sliding_window: null. The published 4096-token window would make HF attend
# over the last 4096 tokens only at 32K, while the engine records the window but attends over everything (full
# attention): a known, deliberate difference, not what this comparison is about. (Mistral-7B-v0.2 ships
# sliding_window null too, with rope_theta 1e6.)
MISTRAL_7B = {
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
    "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": None, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": 32000,
}

MODELS = {"llama31_8b": LLAMA31_8B, "qwen2_7b": QWEN2_7B, "mistral_7b": MISTRAL_7B}
# What the published models have (checked by --count-params).
EXPECTED_PARAMS = {"llama31_8b": 8_030_261_248, "qwen2_7b": 7_615_616_512, "mistral_7b": 7_241_732_096}


def count_params(cfg):
    """Parameters of a Llama/Mistral/Qwen2 model from its config, in pure Python."""
    d, v, inter = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    h = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", h)
    hd = cfg.get("head_dim") or d // h
    bias = cfg["model_type"] == "qwen2" or cfg.get("attention_bias", False)
    per_layer = d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * inter + 2 * d
    if bias:
        per_layer += h * hd + 2 * kv * hd
    total = v * d + per_layer * cfg["num_hidden_layers"] + d
    if not cfg.get("tie_word_embeddings", False):
        total += v * d
    return total


def expected_inv_freq(cfg):
    """RoPE inverse frequencies the config means (default or llama3 scaling), as floats."""
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    base = cfg.get("rope_theta", 10000.0)
    inv = [1.0 / (base ** (i / hd)) for i in range(0, hd, 2)]
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        lo_wl, hi_wl = old / lo, old / hi
        out = []
        for f in inv:
            wl = 2 * math.pi / f
            if wl < hi_wl:
                out.append(f)
            elif wl > lo_wl:
                out.append(f / factor)
            else:
                s = (old / wl - lo) / (hi - lo)
                out.append((1 - s) * f / factor + s * f)
        inv = out
    return inv


# --------------------------------------------------------------------------------------------------------------
# Random weights.
#
# Why not HF's init: it draws every matrix AND the embedding from N(0, 0.02^2). The embedding's rms is then 0.02
# while every layer adds an attention and an MLP output of rms ~0.4 and ~2.5 (0.02 * sqrt(4096) = 1.28 per
# matrix) to the residual stream, so after a layer the token signal is drowned, the residual grows to rms ~14 and
# the 32-layer network is chaotic: a rounding anywhere changes the output by a lot. On the GPU (2026-11-26) HF bf16
# vs HF fp32 of the same weights differed by 7.7e-2 and our bf16 run was 4.3e-2 from HF fp32, so a 1e-2 check said
# nothing. The recipe was chosen by measurement in a scratch experiment (not kept in the repository): a pure-torch
# forward with Llama-3.1-8B's layer structure at width 512 (32 layers, 8 q / 2 KV heads, SwiGLU 1792, llama3
# RoPE, vocab 8192), every std written as gain / sqrt(fan_in) so that it means the same at any width, run in
# fp32 (HF fp32, TF32 off), in transformers' bf16 arithmetic emulated op by op (bf16 GEMM outputs, bf16 residual
# adds, RoPE, SiLU*up and norm weight rounded, fp32 RMSNorm statistics, flash-style attention) and in our
# engine's bf16 mode (f32 activations and residual; GEMM inputs, Q, P and the K/V cache rounded to bf16; f32
# logits). Last-position logits, relative L2 vs fp32, 1024 random tokens, mean of 2 seeds:
#                       HF bf16 | engine bf16 | logit std | median top1-top2 | context change | attention
#   HF init (std 0.02)   6.3e-2 |   4.4e-2    |    1.3    |       0.18       |  1.37 (chaos)  | entropy 0.81
#   the recipe below     1.6e-2 |   3.7e-3    |    3.0    |       0.56       |  0.46          | entropy 0.66
# (the emulation reproduces the GPU: 6.3e-2 / 4.4e-2 here against 7.7e-2 / 4.3e-2 measured at full size).
# "context change": rel. change of the last logits when all but the last 16 tokens are replaced (the model uses
# its context without being chaotic; changing the last token alone changes them by 1.4); "entropy": mean
# normalised attention entropy of the last 64 queries (1 = uniform; mean max weight 0.15 vs 0.06). Checked: at
# width 1024 the recipe gives 1.9e-2 / 4.0e-3, at head_dim 128 1.7e-2 / 3.9e-3, at 2048 tokens 1.7e-2 / 3.0e-3.
# The ~1.6e-2 left in HF bf16 is not conditioning: transformers keeps the residual stream in bf16, and its 64
# roundings (2 per layer, ~1.6e-3 each, independent) add up to ~sqrt(64) * 1.6e-3 = 1.3e-2 whatever the weights
# (HF bf16 with an fp32 residual, otherwise the same: 5.7e-3). No init brings HF bf16 to a few 1e-3 (a residual
# growing geometrically with depth, tried, is worse: 3.5e-2); an engine with an f32 residual, like ours, gets
# ~4e-3. Hence the check is ours-bf16 vs HF-fp32 <= 1e-2, with HF-bf16 vs HF-fp32 reported as the noise floor.
# The recipe:
#   embed_tokens        N(0, 1)                        the token signal has rms 1 in the residual stream
#   q_proj, k_proj      1.5 / sqrt(fan_in)             scores q.k/sqrt(head_dim) of std ~2.3: peaked attention
#   v_proj, gate, up    1 / sqrt(fan_in)
#   o_proj              2 / sqrt(fan_in) / sqrt(2 L)   GPT-2's residual scaling: the 2 L branch outputs add up to
#   down_proj           1 / sqrt(fan_in) / sqrt(2 L)   rms ~0.6 next to the embedding's 1 (o's 2 makes the
#                                                      context matter: context change 0.53 vs 0.27 with 1, at 512
#                                                      tokens, for 3.7e-3 vs 2.6e-3 of engine error)
#   lm_head             3 / sqrt(fan_in)               logits of std ~3
#   *norm.weight        1 + N(0, 0.1^2)                (HF: constant 1; perturbed so that reading them wrong shows)
#   q/k/v_proj.bias     N(0, 0.5^2)                    (Qwen2; HF: 0)
# With tied embeddings (none of the models here) lm_head is embed_tokens and keeps std 1.
INIT_GAINS = {"q_proj": 1.5, "k_proj": 1.5, "v_proj": 1.0, "o_proj": 2.0, "gate_proj": 1.0, "up_proj": 1.0,
              "down_proj": 1.0, "lm_head": 3.0}
RESIDUAL_OUT = ("o_proj", "down_proj")
EMBED_STD = 1.0
NORM_STD = 0.1
BIAS_STD = 0.5


def init_std(pname, shape, n_layers):
    """The scaled recipe's std of parameter `pname` (a 2-D weight [out, in] or the embedding), or None when the
    name is not one the recipe knows (HF's init then stays)."""
    if pname.endswith("embed_tokens.weight"):
        return EMBED_STD
    for key, gain in INIT_GAINS.items():
        if pname.endswith(key + ".weight") and len(shape) == 2:
            std = gain / math.sqrt(shape[1])
            if key in RESIDUAL_OUT:
                std /= math.sqrt(2 * n_layers)
            return std
    return None


def init_stds(cfg):
    """{kind: std} of the scaled recipe for a config (pure Python; printed by --count-params)."""
    d, inter, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
    q_dim = cfg["num_attention_heads"] * hd
    shapes = {"embed_tokens": (cfg["vocab_size"], d), "q_proj": (q_dim, d), "k_proj": (1, d), "v_proj": (1, d),
              "o_proj": (d, q_dim), "gate_proj": (inter, d), "up_proj": (inter, d), "down_proj": (d, inter),
              "lm_head": (cfg["vocab_size"], d)}
    return {k: init_std(f"model.{k}.weight" if k != "lm_head" else "lm_head.weight", s, n) for k, s in shapes.items()}


# --------------------------------------------------------------------------------------------------------------

REL_TOL = 1e-2   # the issue's check: ours with bf16 weights vs HF fp32
F32_TOL = 1e-4   # ours all-f32 vs HF fp32 (expected ~1e-5)


def log(msg=""):
    print(msg, flush=True)


class Ctx:
    def __init__(self, args):
        self.args = args
        self.deadline = args.deadline if args.deadline > 0 else float("inf")
        self.json_out = args.json_out

    def left(self):
        return self.deadline - time.time()

    def record(self, obj):
        obj = dict(obj, time=time.strftime("%H:%M:%S"))
        log("RESULT " + json.dumps(obj, default=str))
        if self.json_out:
            try:
                with open(self.json_out, "a") as f:
                    f.write(json.dumps(obj, default=str) + "\n")
            except OSError as e:
                log(f"cannot write {self.json_out}: {e}")


def step(ctx, model, name, fn, *a, est_s=0.0, reserve_s=0.0, **kw):
    """Runs fn unless its estimate plus `reserve_s` (time kept for later, more important steps) exceeds what is
    left; records skipped / failed / the timing (est vs actual). Returns fn's value or None."""
    need = est_s + reserve_s
    if ctx.left() < need:
        ctx.record({"model": model, "step": name, "status": "skipped",
                    "why": f"{ctx.left():.0f} s left; needs ~{est_s:.0f} s"
                           + (f" + {reserve_s:.0f} s kept for the engine's steps" if reserve_s else "")})
        return None
    t0 = time.time()
    log(f"--- {model}: {name} (estimate {est_s:.0f} s; {ctx.left():.0f} s left)")
    try:
        v = fn(*a, **kw)
        dt = time.time() - t0
        log(f"    {name} done in {dt:.1f} s (estimate {est_s:.0f} s)")
        ctx.record({"model": model, "step": "timing", "name": name, "seconds": round(dt, 1), "est_s": round(est_s)})
        return v
    except Exception as e:  # noqa: BLE001 - every failure is recorded, the rest goes on
        log(traceback.format_exc())
        ctx.record({"model": model, "step": name, "status": "failed", "seconds": round(time.time() - t0, 1),
                    "error": f"{type(e).__name__}: {e}"[:2000]})
        oom_cleanup()
        return None


def oom_cleanup():
    try:
        import torch
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


def gpu_mem():
    import torch
    free, total = torch.cuda.mem_get_info()
    return free, total


def rel_err(a, b):
    import numpy as np
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def top2(x):
    import numpy as np
    x = np.asarray(x, dtype=np.float64)
    i = np.argsort(x)[-2:][::-1]
    return int(i[0]), float(x[i[0]] - x[i[1]])


# Time estimates (seconds, one H100/H200, an ~8B model; scaled by the parameter count). From the 2026-11-26 H200
# runs (HF bf16 1K logits 1.1 s and greedy 2.3 s, fp32 1K 0.4 s, save 16 s; ours: bf16 load + 1K 3 s, greedy 1K
# 2.7 s, f32 load + 1K 24 s; shadowkv bench's 32K prefill 2.2 s) and FLOP counts at 32K (8.1e14: HF bf16 ~3 s;
# fp32 without TF32 ~50 TFLOP/s for the GEMMs and less for the attention: ~30 s; our f32 prefill likewise).
def est_hf(n, steps, dtype, scale=1.0):
    x = n / 32768
    if dtype == "bf16":
        pre = 1.0 + 4.0 * x + 2.0 * x * x
        dec = steps * (0.05 + 0.02 * x)
    else:
        pre = 1.0 + 12.0 * x + 20.0 * x * x
        dec = steps * (0.06 + 0.03 * x)
    return scale * (pre + dec)


def est_ours_logits(lengths, mode, scale=1.0):
    load = 25.0 if mode == "f32" else 5.0
    if mode == "f32":
        per = sum(1 + 10 * (n / 32768) + 25 * (n / 32768) ** 2 for n in lengths)
    else:
        per = sum(1 + 3 * (n / 32768) for n in lengths)
    return scale * (load + per)


def est_ours_greedy(n, steps, scale=1.0):
    return scale * (6.0 + 3 * (n / 32768) + steps * 0.02)


def plan_steps(cfg, lengths, greedy_lengths, f32_lengths, gsteps, fp32=True):
    """[(step, estimated seconds)] of compare_model for one model, in its order (pure Python; --plan)."""
    scale = count_params(cfg) / 8.03e9
    all_n = sorted(set(lengths) | set(greedy_lengths))
    out = [("python start + imports", 10.0), ("hf_build", 15 * scale), ("save_pretrained", 20 * scale)]
    dtypes = ["bf16", "fp32"] if fp32 else ["bf16"]
    for dtype in dtypes:
        if dtype == "fp32":
            out += [("hf_to_fp32", 3.0), ("hf_chunk_check", 2 * est_hf(min(all_n), 0, "fp32", scale))]
        for n in all_n:
            st = gsteps if n in greedy_lengths else 0
            out.append((f"hf_{dtype}_{'greedy' if st else 'logits'}_{n}", est_hf(n, st, dtype, scale)))
    out.append(("ours_bf16_logits", est_ours_logits(lengths, "bf16", scale)))
    out += [(f"ours_greedy_{n}", est_ours_greedy(n, gsteps, scale)) for n in greedy_lengths]
    f32 = [n for n in sorted(f32_lengths) if fp32 and n in all_n]
    if f32:
        out.append(("ours_f32_logits_" + "_".join(map(str, f32)), est_ours_logits(f32, "f32", scale)))
    return out


# --------------------------------------------------------------------------------------------------------------
# Hugging Face side

def build_hf_model(name, cfg, seed, tmp, init="scaled"):
    """The model on the GPU in bf16 (SDPA attention), weights per `init` (see init_std's comment block)."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    # The published config.json, read by transformers itself (version 5 turns rope_theta/rope_scaling into
    # rope_parameters; older versions read them as they are).
    cdir = os.path.join(tmp, f"{name}-config")
    os.makedirs(cdir, exist_ok=True)
    with open(os.path.join(cdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    hf_cfg = AutoConfig.from_pretrained(cdir)
    log(f"    transformers {transformers.__version__}: {type(hf_cfg).__name__}, rope: "
        f"{getattr(hf_cfg, 'rope_parameters', None) or (getattr(hf_cfg, 'rope_scaling', None), getattr(hf_cfg, 'rope_theta', None))}")
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    t0 = time.time()
    with torch.device("cuda"):
        try:
            model = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
        except TypeError:
            model = AutoModelForCausalLM.from_config(hf_cfg, torch_dtype=torch.bfloat16, attn_implementation="sdpa")
    p = next(model.parameters())
    if p.device.type == "meta":  # not expected; materialise (and, for --init hf, initialise) on the GPU
        log("    model came on the meta device: to_empty + init_weights on cuda")
        model = model.to_empty(device="cuda").to(torch.bfloat16)
        torch.manual_seed(seed)
        model.init_weights()
    elif p.device.type != "cuda" or p.dtype != torch.bfloat16:
        log(f"    model came on {p.device} {p.dtype}: moving to cuda bf16")
        model = model.to(device="cuda", dtype=torch.bfloat16)
    model.eval()
    log(f"    built in {time.time() - t0:.1f} s; attn_implementation={getattr(model.config, '_attn_implementation', '?')}")
    # Overwrite the weights deterministically (a generator of our own: independent of HF's init order).
    g = torch.Generator(device="cuda")
    g.manual_seed(seed + 12345)
    n_layers = cfg["num_hidden_layers"]
    counts = {"norm": 0, "bias": 0, "scaled": 0, "hf_init": []}
    stds = {}
    with torch.no_grad():
        for pname, prm in model.named_parameters():
            if pname.endswith("norm.weight"):
                prm.copy_(1.0 + NORM_STD * torch.randn(prm.shape, generator=g, device="cuda", dtype=torch.float32))
                counts["norm"] += 1
            elif pname.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")):
                prm.copy_(BIAS_STD * torch.randn(prm.shape, generator=g, device="cuda", dtype=torch.float32))
                counts["bias"] += 1
            elif init == "scaled":
                std = init_std(pname, tuple(prm.shape), n_layers)
                if std is None:
                    counts["hf_init"].append(pname)
                    continue
                # row blocks keep the f32 temporary small (the embedding is 128K x 4096)
                for r0 in range(0, prm.shape[0], 16384):
                    blk = prm[r0:r0 + 16384]
                    blk.copy_(torch.randn(blk.shape, generator=g, device="cuda", dtype=torch.float32) * std)
                counts["scaled"] += 1
                kind = pname.split(".")[-2]
                stds.setdefault(kind, std)
    n = sum(p.numel() for p in model.parameters())
    log(f"    {n:,} parameters (published: {EXPECTED_PARAMS.get(name, 0):,}); init {init}: {counts['scaled']} "
        f"matrices redrawn, {counts['norm']} norms, {counts['bias']} biases perturbed; "
        f"stds {', '.join(f'{k} {v:.3g}' for k, v in stds.items())}"
        + (f"; left at HF's init: {counts['hf_init'][:6]}" if counts["hf_init"] else ""))
    return model


def new_cache(model):
    from transformers import DynamicCache
    try:
        return DynamicCache(config=model.config)
    except TypeError:
        return DynamicCache()


def oom_error_types():
    import torch
    return tuple({getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError})


def hf_prefill(model, x, chunk, stop_at=float("inf")):
    """Prefill x [B, n] in chunks of `chunk` tokens through a DynamicCache (the normal forward with a cache: its
    causal mask covers [chunk, past + chunk], so SDPA never sees an n x n score matrix). Returns the last
    position's hidden state [B, d], the cache and the chunk used: on out-of-memory the chunk is halved and the
    prefill starts over (down to 256). Past `stop_at` (epoch seconds, checked after each chunk) it gives up."""
    import torch
    n = x.shape[1]
    chunk = max(1, min(chunk, n))
    while True:
        cache, h, oom = new_cache(model), None, False
        try:
            for s in range(0, n, chunk):
                out = model.model(input_ids=x[:, s:s + chunk], past_key_values=cache, use_cache=True)
                if out.past_key_values is not None:
                    cache = out.past_key_values
                h = out.last_hidden_state[:, -1, :]
                del out
                if stop_at < float("inf"):
                    torch.cuda.synchronize()
                    if time.time() > stop_at and s + chunk < n:
                        raise TimeoutError(f"stopped after {s + chunk} of {n} tokens: past the time kept for "
                                           "the later steps")
            return h, cache, chunk
        except oom_error_types():
            oom = True
        if oom:
            del cache, h
            oom_cleanup()
            if chunk <= 256:
                raise RuntimeError(f"out of memory in prefill even with {chunk}-token chunks")
            log(f"    out of memory with {chunk}-token chunks: retrying with {chunk // 2}")
            chunk //= 2


def hf_run(model, ids, steps, chunk, stop_at=float("inf")):
    """Chunked prefill of `ids`, then `steps` greedy steps (no EOS stop). Returns {rows: [max(steps, 1), vocab] f32
    logits (row 0: the last prompt position), tokens (steps of them), prefill_s, decode_s, chunk}. Past
    `stop_at` (epoch seconds) it raises TimeoutError (the prefill checks after each chunk)."""
    import numpy as np
    import torch
    x = torch.tensor([ids], dtype=torch.long, device="cuda")
    rows, toks = [], []
    with torch.inference_mode():
        torch.cuda.synchronize()
        t0 = time.time()
        h, cache, used = hf_prefill(model, x, chunk, stop_at)
        logits = model.lm_head(h).float()
        rows.append(logits[0].cpu().numpy())
        t1 = time.time()
        for s in range(steps):
            t = int(np.argmax(rows[-1]))
            toks.append(t)
            if s + 1 == steps:
                break
            if time.time() > stop_at:
                raise TimeoutError(f"stopped after {s + 1} of {steps} greedy steps: past the time kept for the "
                                   "later steps")
            out = model.model(input_ids=torch.tensor([[t]], dtype=torch.long, device="cuda"), past_key_values=cache,
                              use_cache=True)
            if out.past_key_values is not None:
                cache = out.past_key_values
            rows.append(model.lm_head(out.last_hidden_state[:, -1, :]).float()[0].cpu().numpy())
            del out
        t2 = time.time()
    del cache, h, x
    return {"rows": np.stack(rows), "tokens": toks, "prefill_s": t1 - t0, "decode_s": t2 - t1, "chunk": used}


def hf_chunk_check(model, ids):
    """fp32: the last-position logits of one whole-prompt forward vs the same prompt prefilled in 4 chunks
    through the cache (the path every long prefill here takes). Should agree to ~1e-6."""
    import torch
    x = torch.tensor([ids], dtype=torch.long, device="cuda")
    with torch.inference_mode():
        h1, c1, _ = hf_prefill(model, x, len(ids))
        a = model.lm_head(h1).float()[0].cpu().numpy()
        del c1
        h4, c4, used = hf_prefill(model, x, max(1, (len(ids) + 3) // 4))
        b = model.lm_head(h4).float()[0].cpu().numpy()
        del c4
    e = rel_err(b, a)
    return {"chunk": used, "rel_err_chunked_vs_whole": e, "status": "ok" if e <= 1e-4 else "MISMATCH"}


def exact_fp32(torch):
    """fp32 matmuls without TF32 (the reference)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def check_rope(model, cfg):
    import numpy as np
    rot = getattr(getattr(model, "model", model), "rotary_emb", None)
    if rot is None or not hasattr(rot, "inv_freq"):
        return {"status": "unknown", "why": "no model.model.rotary_emb.inv_freq"}
    got = rot.inv_freq.detach().float().cpu().numpy()
    want = np.array(expected_inv_freq(cfg))
    err = float(np.max(np.abs(got - want) / want)) if got.shape == want.shape else float("inf")
    scaling = float(getattr(rot, "attention_scaling", 1.0))
    ok = err < 1e-4 and abs(scaling - 1.0) < 1e-6
    return {"status": "ok" if ok else "MISMATCH", "inv_freq_max_rel_diff": err, "attention_scaling": scaling}


def save_model(model, cfg, out_dir):
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    t0 = time.time()
    try:
        model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="5GB")
    except TypeError:
        model.save_pretrained(out_dir, max_shard_size="5GB")
    files = sorted(os.listdir(out_dir))
    st = [f for f in files if f.endswith(".safetensors")]
    if not st:
        raise RuntimeError(f"save_pretrained wrote no .safetensors in {out_dir}: {files}")
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in st)
    hf_cfg_path = os.path.join(out_dir, "config.json")
    if os.path.exists(hf_cfg_path):
        os.replace(hf_cfg_path, os.path.join(out_dir, "config.hf.json"))
    with open(hf_cfg_path, "w") as f:
        json.dump(cfg, f, indent=1)
    # The tensor names the engine will look for.
    names = set()
    idx = os.path.join(out_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            names = set(json.load(f).get("weight_map", {}))
    log(f"    saved {len(st)} safetensors files, {size / 1e9:.2f} GB in {time.time() - t0:.1f} s; "
        f"{len(names)} tensors in the index; files: {files}")
    return {"files": files, "bytes": size, "seconds": round(time.time() - t0, 1), "n_tensors": len(names)}


# --------------------------------------------------------------------------------------------------------------
# Engine side

def run_cmd(cmd, timeout):
    log("    $ " + " ".join(cmd))
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    dt = time.time() - t0
    for line in (p.stdout.strip().splitlines()[-8:] if len(p.stdout) < 20000 else ["(long stdout)"]):
        log("    | " + line[:400])
    for line in p.stderr.strip().splitlines()[-8:]:
        log("    ! " + line[:400])
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode} after {dt:.1f} s: {p.stderr.strip()[-600:]}")
    return p.stdout, dt


def ours_last_logits(args, model_dir, id_files, mode, timeout):
    """{length: logits} from one skv_dump_logits run (one model load for every length). mode "bf16": the
    defaults (bf16 weights, bf16 KV cache); "f32": --weight-dtype f32 --kv-dtype f32 (if this binary does not
    know --kv-dtype yet, f32 weights with its default KV, said in the result). Returns (logits, seconds, kv)."""
    import numpy as np
    flags = ["--weight-dtype", "bf16"] if mode == "bf16" else ["--weight-dtype", "f32", "--kv-dtype", "f32"]
    kv = "bf16" if mode == "bf16" else "f32"
    outs = {}
    pairs = []
    for n, path in id_files.items():
        o = path + f".{mode}.ours.f32"
        pairs += [path, o]
        outs[n] = o
    cmd = [args.dump_logits, "--device", "cuda"] + flags + ["--last-only", model_dir] + pairs
    try:
        _, dt = run_cmd(cmd, timeout)
    except RuntimeError as e:
        msg = str(e).lower()
        if mode != "f32" or "kv-dtype" not in msg or not ("unknown" in msg or "usage" in msg):
            raise
        log("    skv_dump_logits does not take --kv-dtype: f32 weights with the default (bf16) KV cache")
        kv = "bf16 (no --kv-dtype in this build)"
        cmd = [args.dump_logits, "--device", "cuda", "--weight-dtype", "f32", "--last-only", model_dir] + pairs
        _, dt = run_cmd(cmd, timeout)
    res = {}
    for n, o in outs.items():
        res[n] = np.fromfile(o, dtype="<f4")
        os.unlink(o)
    return res, dt, kv


def ours_greedy(args, model_dir, ids_file, n_prompt, steps, max_pos, timeout):
    cmd = [args.shadowkv, "generate", "--device", "cuda", "--model", model_dir, "--prompt-ids", ids_file,
           "--max-tokens", str(steps), "--json"]
    if n_prompt + steps > max_pos:
        cmd += ["--context-limit", str(n_prompt + steps)]
    out, dt = run_cmd(cmd, timeout)
    j = json.loads(out.strip().splitlines()[-1])
    return j, dt


# --------------------------------------------------------------------------------------------------------------

def greedy_cmp(ours, ref, ref_rows):
    """Agreement of our greedy tokens with a reference's, and the reference's margins."""
    import numpy as np
    agree = 0
    while agree < min(len(ours), len(ref)) and ours[agree] == ref[agree]:
        agree += 1
    margins = [top2(ref_rows[i])[1] for i in range(len(ref))]
    r = {"agree": agree, "min_margin_over_agreed": min(margins[:agree]) if agree else None}
    if agree < min(len(ours), len(ref)):
        row = ref_rows[agree]
        r.update(first_divergence=agree, top1_minus_top2_there=margins[agree],
                 top_minus_ours_token_there=float(row[ref[agree]] - row[ours[agree]]),
                 logit_std_there=float(np.std(row)), status="DIVERGED")
    elif len(ours) < len(ref):
        r["status"] = f"AGREE (ours stopped after {len(ours)})"
    else:
        r["status"] = "AGREE"
    return r


def compare_model(ctx, name, cfg, lengths, greedy_lengths):
    import numpy as np
    import torch
    args = ctx.args
    work = os.path.join(args.work, name)
    model_dir = os.path.join(work, "model")
    os.makedirs(work, exist_ok=True)
    vocab = cfg["vocab_size"]
    n_params = count_params(cfg)
    scale = n_params / 8.03e9
    need_bytes = n_params * 2
    free_disk = shutil.disk_usage(work).free
    ctx.record({"model": name, "step": "start", "params": n_params, "init": args.init,
                "disk_free_gb": round(free_disk / 1e9, 1), "gpu_free_gb": round(gpu_mem()[0] / 1e9, 1),
                "seconds_left": round(ctx.left()) if ctx.left() < 1e9 else None})
    if free_disk < need_bytes * 1.05 + 2e9:
        ctx.record({"model": name, "step": "disk", "status": "skipped",
                    "why": f"{free_disk / 1e9:.1f} GB free in {work}, need ~{need_bytes / 1e9:.1f} GB"})
        return

    # Seeded token ids, a prefix of one sequence for every length.
    all_n = sorted(set(lengths) | set(greedy_lengths))
    rng = np.random.default_rng(args.seed + sum(map(ord, name)))
    all_ids = rng.integers(0, vocab, size=max(all_n)).tolist()
    id_files = {}
    for n in all_n:
        path = os.path.join(work, f"ids-{n}.txt")
        with open(path, "w") as f:
            f.write(" ".join(map(str, all_ids[:n])) + "\n")
        id_files[n] = path
    gsteps = args.greedy_steps
    # Time kept for the engine's must-have steps (bf16 logits at every length, greedy at the shortest length)
    # while the optional HF steps (fp32 at the longer lengths) decide whether to run.
    engine_reserve = est_ours_logits(lengths, "bf16", scale) + (
        est_ours_greedy(min(greedy_lengths), gsteps, scale) if greedy_lengths else 0)

    model = step(ctx, name, "hf_build", build_hf_model, name, cfg, args.seed, work, args.init, est_s=15 * scale,
                 reserve_s=engine_reserve)
    if model is None:
        return
    hf = {"bf16": {}, "fp32": {}}          # dtype -> n -> hf_run result
    saved = None
    try:
        rope = step(ctx, name, "hf_rope_check", check_rope, model, cfg)
        if rope is not None:
            ctx.record({"model": name, "step": "hf_rope_check", **rope})
        saved = step(ctx, name, "save_pretrained", save_model, model, cfg, model_dir, est_s=20 * scale,
                     reserve_s=engine_reserve)
        if saved is not None:
            ctx.record({"model": name, "step": "save_pretrained", "status": "ok", **saved})
        else:
            return

        def hf_pass(dtype):
            for n in all_n:
                steps = gsteps if n in greedy_lengths else 0
                what = "greedy" if steps else "logits"
                r = step(ctx, name, f"hf_{dtype}_{what}_{n}", hf_run, model, all_ids[:n], steps, args.hf_chunk,
                         ctx.deadline - engine_reserve, est_s=est_hf(n, steps, dtype, scale),
                         reserve_s=engine_reserve)
                if r is None:
                    continue
                hf[dtype][n] = r
                last = r["rows"][0]
                rec = {"model": name, "step": f"hf_{dtype}_{n}", "status": "ok", "length": n,
                       "prefill_s": round(r["prefill_s"], 2), "decode_s": round(r["decode_s"], 2),
                       "chunk": r["chunk"], "logit_std": float(np.std(last)), "logit_max": float(np.max(last)),
                       "top1_minus_top2": top2(last)[1]}
                if steps:
                    rec["tokens"] = r["tokens"]
                if dtype == "fp32" and n in hf["bf16"]:
                    rec["rel_err_hf_bf16_vs_hf_fp32"] = rel_err(hf["bf16"][n]["rows"][0], last)
                ctx.record(rec)

        hf_pass("bf16")
        # fp32 reference: the same (bf16-valued) weights upcast. Needs 4 bytes a parameter on the GPU.
        if args.fp32_ref != "off":
            free, _ = gpu_mem()
            need = n_params * 2 + 10e9  # the fp32 copy beyond the bf16 one, + KV (8 GiB at 32K) and activations
            if free < need:
                ctx.record({"model": name, "step": "hf_fp32", "status": "skipped",
                            "why": f"{free / 1e9:.1f} GB free on the GPU, need ~{need / 1e9:.1f} GB"})
            else:
                exact_fp32(torch)
                if step(ctx, name, "hf_to_fp32", lambda: model.to(torch.float32) is not None, est_s=3,
                        reserve_s=engine_reserve):
                    n0 = min(all_n)
                    r = step(ctx, name, "hf_chunk_check", hf_chunk_check, model, all_ids[:n0],
                             est_s=2 * est_hf(n0, 0, "fp32", scale), reserve_s=engine_reserve)
                    if r is not None:
                        ctx.record({"model": name, "step": "hf_chunk_check", "length": n0, **r})
                    hf_pass("fp32")
    finally:
        model = None  # the closures above share this variable: the model is freed here
        oom_cleanup()

    # The engine, with the GPU to itself (the HF model is gone).
    def timeout_for(est):
        return max(30, min(400, ctx.left() - 5, 3 * est + 30))

    def ref(dtype, n):
        return hf[dtype][n]["rows"][0] if n in hf[dtype] else None

    est = est_ours_logits(lengths, "bf16", scale)
    ours = step(ctx, name, "ours_bf16_logits", ours_last_logits, args, model_dir, {n: id_files[n] for n in lengths},
                "bf16", timeout_for(est), est_s=est)
    if ours is not None:
        for n in lengths:
            got = ours[0].get(n)
            rec = {"model": name, "step": f"logits_{n}", "length": n, "weights": "bf16", "kv": ours[2]}
            if got is None or got.size != vocab:
                rec.update(status="failed", error=f"engine gave {None if got is None else got.size} values, want {vocab}")
                ctx.record(rec)
                continue
            h32, h16 = ref("fp32", n), ref("bf16", n)
            rec["argmax_ours"] = int(np.argmax(got))
            rec["logit_std_ours"] = float(np.std(got))
            if h16 is not None:
                rec.update(rel_err_ours_bf16_vs_hf_bf16=rel_err(got, h16), argmax_hf_bf16=int(np.argmax(h16)))
            if h32 is not None:
                rec.update(rel_err_ours_bf16_vs_hf_fp32=rel_err(got, h32), argmax_hf_fp32=int(np.argmax(h32)),
                           hf_fp32_top1_minus_top2=top2(h32)[1])
                if h16 is not None:
                    rec["rel_err_hf_bf16_vs_hf_fp32"] = rel_err(h16, h32)
                e = rec["rel_err_ours_bf16_vs_hf_fp32"]
                rec.update(check="ours-bf16 vs HF-fp32", tol=REL_TOL, status="PASS" if e <= REL_TOL else "FAIL")
            elif h16 is not None:  # no fp32 reference: the bf16 one, said so
                e = rec["rel_err_ours_bf16_vs_hf_bf16"]
                rec.update(check="ours-bf16 vs HF-bf16 (no HF fp32 run)", tol=REL_TOL,
                           status="PASS" if e <= REL_TOL else "FAIL")
            else:
                rec["status"] = "no HF reference"
            ctx.record(rec)
    for n in greedy_lengths:
        if n not in hf["bf16"] and n not in hf["fp32"]:
            continue
        est = est_ours_greedy(n, gsteps, scale)
        r = step(ctx, name, f"ours_greedy_{n}", ours_greedy, args, model_dir, id_files[n], n, gsteps,
                 cfg["max_position_embeddings"], timeout_for(est), est_s=est)
        if r is None:
            continue
        j, dt = r
        ours_toks = j.get("tokens", [])
        rec = {"model": name, "step": f"greedy_{n}", "length": n, "steps": gsteps, "ours": ours_toks,
               "finish_reason": j.get("finish_reason"), "ours_decode_tokens_per_s": j.get("decode_tokens_per_s"),
               "seconds": round(dt, 1)}
        if j.get("prompt_tokens") is not None and j["prompt_tokens"] != all_ids[:n]:
            rec["prompt_mismatch"] = True
        for dtype in ("fp32", "bf16"):
            if n in hf[dtype]:
                rec[f"hf_{dtype}"] = hf[dtype][n]["tokens"]
                rec[f"vs_hf_{dtype}"] = greedy_cmp(ours_toks, hf[dtype][n]["tokens"], hf[dtype][n]["rows"])
        if n in hf["fp32"] and n in hf["bf16"]:
            rec["hf_bf16_vs_hf_fp32"] = greedy_cmp(hf["bf16"][n]["tokens"], hf["fp32"][n]["tokens"],
                                                   hf["fp32"][n]["rows"])
        main_ref = rec.get("vs_hf_fp32") or rec.get("vs_hf_bf16")
        rec["status"] = main_ref["status"] + (" (vs HF fp32)" if "vs_hf_fp32" in rec else " (vs HF bf16)")
        ctx.record(rec)
    # The all-f32 engine run: every --f32-lengths length in one run (one 32 GB load) when the estimate fits in
    # the time left, else the shortest lengths that fit; a failed run of several lengths is retried with the
    # shortest alone.
    f32_n = []
    for n in sorted(args.f32_lengths):
        if n in hf["fp32"]:
            f32_n.append(n)
        elif n in lengths or n in greedy_lengths:
            ctx.record({"model": name, "step": f"ours_f32_logits_{n}", "status": "skipped",
                        "why": "no HF fp32 reference at this length"})
    while len(f32_n) > 1 and est_ours_logits(f32_n, "f32", scale) > ctx.left():
        ctx.record({"model": name, "step": f"ours_f32_logits_{f32_n[-1]}", "status": "skipped",
                    "why": f"{ctx.left():.0f} s left; the f32 run with it needs ~"
                           f"{est_ours_logits(f32_n, 'f32', scale):.0f} s"})
        f32_n.pop()
    r = None
    if f32_n:
        est = est_ours_logits(f32_n, "f32", scale)
        r = step(ctx, name, "ours_f32_logits_" + "_".join(map(str, f32_n)), ours_last_logits, args, model_dir,
                 {n: id_files[n] for n in f32_n}, "f32", timeout_for(est), est_s=est)
        if r is None and len(f32_n) > 1:
            f32_n = f32_n[:1]
            est = est_ours_logits(f32_n, "f32", scale)
            r = step(ctx, name, f"ours_f32_logits_{f32_n[0]}", ours_last_logits, args, model_dir,
                     {f32_n[0]: id_files[f32_n[0]]}, "f32", timeout_for(est), est_s=est)
    for n in f32_n if r is not None else []:
        got = r[0].get(n)
        rec = {"model": name, "step": f"logits_f32_{n}", "length": n, "weights": "f32", "kv": r[2]}
        if got is None or got.size != vocab:
            rec.update(status="failed", error=f"engine gave {None if got is None else got.size} values, want {vocab}")
        else:
            e = rel_err(got, ref("fp32", n))
            rec.update(rel_err_ours_f32_vs_hf_fp32=e, tol=F32_TOL, status="PASS" if e <= F32_TOL else "FAIL",
                       argmax_ours=int(np.argmax(got)), argmax_hf_fp32=int(np.argmax(ref("fp32", n))))
        ctx.record(rec)

def summarize(path):
    """A short text summary of a --json-out file (pure Python)."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError as e:
        return f"no results ({e})"
    out = [f"checks: logits ours-bf16 vs HF-fp32 <= {REL_TOL:g} (relative L2, last position); HF-bf16 vs HF-fp32 "
           f"is the bf16 noise floor (transformers keeps a bf16 residual stream); ours-f32 vs HF-fp32 <= {F32_TOL:g}"]

    def fmt(x):
        return "-" if x is None else (f"{x:.2e}" if isinstance(x, float) else str(x))

    def gfmt(tag, g):
        if not g:
            return ""
        s = f"{tag} {g.get('status')} {g.get('agree')} agree"
        if "first_divergence" in g:
            s += (f", diverged at {g['first_divergence']} where its top1-top2 is {fmt(g.get('top1_minus_top2_there'))}"
                  f" and its top minus ours {fmt(g.get('top_minus_ours_token_there'))} (logit std "
                  f"{fmt(g.get('logit_std_there'))})")
        return s

    timings = {}
    for r in rows:
        st, m = r.get("step", ""), r.get("model", "")
        if st == "env":
            out.append(f"env: torch {r.get('torch')}, transformers {r.get('transformers')}, {r.get('device')}")
        elif st == "start":
            out.append(f"{m:11s} start: init {r.get('init')}, {r.get('seconds_left')} s left, GPU free "
                       f"{r.get('gpu_free_gb')} GB")
        elif st == "timing":
            timings.setdefault(m, []).append(f"{r.get('name')} {r.get('seconds')}/{r.get('est_s')}")
        elif st.startswith("logits_f32_") and "rel_err_ours_f32_vs_hf_fp32" in r:
            out.append(f"{m:11s} L={r['length']:>6} all-f32 (KV {r.get('kv')}): {r.get('status')} ours-f32 vs HF-fp32 "
                       f"{fmt(r.get('rel_err_ours_f32_vs_hf_fp32'))} (tol {F32_TOL:g}); argmax "
                       f"{r.get('argmax_ours')}/{r.get('argmax_hf_fp32')}")
        elif st.startswith("logits_") and "check" in r:
            out.append(f"{m:11s} L={r['length']:>6} bf16: {r.get('status')} [{r.get('check')}]; "
                       f"ours-bf16 vs HF-fp32 {fmt(r.get('rel_err_ours_bf16_vs_hf_fp32'))}, "
                       f"ours-bf16 vs HF-bf16 {fmt(r.get('rel_err_ours_bf16_vs_hf_bf16'))}, "
                       f"HF-bf16 vs HF-fp32 {fmt(r.get('rel_err_hf_bf16_vs_hf_fp32'))}; argmax ours/fp32/bf16 "
                       f"{r.get('argmax_ours')}/{r.get('argmax_hf_fp32', '-')}/{r.get('argmax_hf_bf16', '-')}; "
                       f"logit std {fmt(r.get('logit_std_ours'))}, HF fp32 top1-top2 "
                       f"{fmt(r.get('hf_fp32_top1_minus_top2'))}")
        elif st.startswith("greedy_"):
            parts = [gfmt("vs HF fp32:", r.get("vs_hf_fp32")), gfmt("vs HF bf16:", r.get("vs_hf_bf16")),
                     gfmt("(HF bf16 vs HF fp32:", r.get("hf_bf16_vs_hf_fp32"))]
            s = "; ".join(p for p in parts if p)
            if r.get("hf_bf16_vs_hf_fp32"):
                s += ")"
            out.append(f"{m:11s} L={r['length']:>6} greedy {r.get('steps')} steps: {r.get('status')}; {s}")
        elif st.startswith("hf_") and r.get("status") == "ok" and "prefill_s" in r:
            s = (f"{m:11s} L={r['length']:>6} {st.split('_')[1]}: prefill {r['prefill_s']} s (chunk {r.get('chunk')}), "
                 f"decode {r.get('decode_s')} s; logit std {fmt(r.get('logit_std'))}, top1-top2 "
                 f"{fmt(r.get('top1_minus_top2'))}")
            if "rel_err_hf_bf16_vs_hf_fp32" in r:
                s += f"; HF-bf16 vs HF-fp32 {fmt(r['rel_err_hf_bf16_vs_hf_fp32'])}"
            out.append(s)
        elif st == "hf_chunk_check" and "rel_err_chunked_vs_whole" in r:
            out.append(f"{m:11s} HF fp32 chunked vs whole prefill, L={r.get('length')}: {r.get('status')} "
                       f"({fmt(r.get('rel_err_chunked_vs_whole'))})")
        elif st == "hf_rope_check":
            out.append(f"{m:11s} HF RoPE vs config: {r.get('status')} (inv_freq diff {fmt(r.get('inv_freq_max_rel_diff'))},"
                       f" attention_scaling {r.get('attention_scaling')})")
        elif r.get("status") in ("failed", "skipped"):
            out.append(f"{m:11s} {st}: {r['status'].upper()} {r.get('error') or r.get('why') or ''}"[:300])
    for m, t in timings.items():
        out.append(f"{m:11s} seconds actual/estimate: " + ", ".join(t))
    return "\n".join(out) if out else "no results"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="llama31_8b,qwen2_7b,mistral_7b",
                    help="comma-separated, from: " + ", ".join(MODELS))
    ap.add_argument("--lengths", default="1024,32768", help="prompt lengths of the logits comparison")
    ap.add_argument("--greedy-lengths", default="1024,32768", help="prompt lengths of the greedy comparison ('' = none)")
    ap.add_argument("--greedy-steps", type=int, default=32)
    ap.add_argument("--f32-lengths", default="1024,32768",
                    help="lengths where the engine also runs all-f32 (--weight-dtype f32 --kv-dtype f32) against "
                         "HF fp32, shortest first, each when time allows ('' = none)")
    ap.add_argument("--fp32-ref", choices=["auto", "off"], default="auto",
                    help="HF fp32 reference run when GPU memory and time allow")
    ap.add_argument("--init", choices=["scaled", "hf"], default="scaled",
                    help="random weights: the better-conditioned recipe (default) or HF's std-0.02 init")
    ap.add_argument("--hf-chunk", type=int, default=4096, help="HF prefill chunk (tokens)")
    ap.add_argument("--shadowkv", default="build-gpu/shadowkv")
    ap.add_argument("--dump-logits", default="build-gpu/tests/reference/skv_dump_logits")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "skv-hf-compare"),
                    help="where the model directories go (~16 GB each, deleted after use)")
    ap.add_argument("--keep", default="", help="comma-separated models whose directory is kept (WORK/NAME/model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--deadline", type=float, default=0, help="epoch seconds; 0 = none")
    ap.add_argument("--json-out", default="", help="append one JSON object per result line here")
    ap.add_argument("--count-params", action="store_true",
                    help="print the configs' parameter counts and the init recipe's stds, and exit")
    ap.add_argument("--summarize", default="", help="print a summary of this --json-out file and exit")
    ap.add_argument("--plan", action="store_true", help="print each step's time estimate and exit (no GPU)")
    args = ap.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize))
        return 0

    def ints(s):
        return [int(x) for x in s.split(",") if x.strip()]

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in names if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {list(MODELS)}")
    if args.count_params:
        ok = True
        for m in names:
            n = count_params(MODELS[m])
            want = EXPECTED_PARAMS[m]
            ok &= n == want
            print(f"{m:12s} {n:>15,d} published {want:>15,d} {'ok' if n == want else 'MISMATCH'}")
            print("             init stds: " + ", ".join(f"{k} {v:.4g}" for k, v in init_stds(MODELS[m]).items()))
        return 0 if ok else 1
    lengths, greedy_lengths = ints(args.lengths), ints(args.greedy_lengths)
    args.f32_lengths = ints(args.f32_lengths)
    if not lengths:
        ap.error("--lengths is empty")
    if args.plan:
        for m in names:
            steps = plan_steps(MODELS[m], lengths, greedy_lengths, args.f32_lengths, args.greedy_steps,
                               args.fp32_ref != "off")
            print(f"{m}: ~{sum(t for _, t in steps):.0f} s estimated: "
                  + ", ".join(f"{k} {t:.0f}" for k, t in steps))
        return 0
    for tool in (args.shadowkv, args.dump_logits):
        if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
            log(f"WARNING: {tool} is not an executable: the engine steps will fail")
    args.shadowkv = os.path.abspath(args.shadowkv)
    args.dump_logits = os.path.abspath(args.dump_logits)
    os.makedirs(args.work, exist_ok=True)
    ctx = Ctx(args)
    try:
        import torch
        import transformers
        ctx.record({"step": "env", "torch": torch.__version__, "transformers": transformers.__version__,
                    "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None})
    except Exception as e:  # noqa: BLE001
        ctx.record({"step": "env", "status": "failed", "error": repr(e)})
        return 1
    keep = {k.strip() for k in args.keep.split(",") if k.strip()}
    for m in names:
        if ctx.left() < 90:
            ctx.record({"model": m, "step": "all", "status": "skipped", "why": f"{ctx.left():.0f} s left"})
            continue
        try:
            compare_model(ctx, m, MODELS[m], lengths, greedy_lengths)
        except Exception as e:  # noqa: BLE001
            log(traceback.format_exc())
            ctx.record({"model": m, "step": "all", "status": "failed", "error": f"{type(e).__name__}: {e}"})
        finally:
            oom_cleanup()
            d = os.path.join(args.work, m)
            if m in keep:
                for f in os.listdir(d) if os.path.isdir(d) else []:
                    if f != "model":
                        p = os.path.join(d, f)
                        shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.unlink(p)
            else:
                shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
