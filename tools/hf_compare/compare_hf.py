#!/usr/bin/env python3
"""shadowkv against Hugging Face transformers on random-weight models with published configs (issue 4).

For each model (Llama-3.1-8B, Qwen2-7B, Mistral-7B; full size, configs written below from the published
config.json files), on the GPU machine:
  1. build it with transformers (AutoModelForCausalLM.from_config, bf16, SDPA attention) on the GPU with a fixed
     seed (HF's init: normal std 0.02 for matrices and the embedding), then perturb what HF initialises to
     constants so that reading them wrong shows: RMSNorm weights 1 + N(0, 0.1^2), Qwen2's q/k/v biases N(0, 0.5^2);
  2. save_pretrained (bf16 safetensors, sharded) to a work directory; config.json there is then rewritten in the
     published (legacy) format, rope_theta / rope_scaling at the top level, because transformers 5 writes
     rope_parameters instead (HF's own file is kept as config.hf.json);
  3. HF last-position logits at each length (default 1024 and 32768) on seeded random token ids, in bf16 and,
     when memory and time allow, in fp32 (the bf16 weights upcast: the reference both bf16 runs are measured
     against); HF greedy decoding for 32 steps (a manual loop over past_key_values: no EOS stop, margins kept);
  4. the engine: tests/reference skv_dump_logits --device cuda --last-only (bf16 weights; optionally f32 weights
     at --f32-lengths, which should match HF fp32 to ~1e-5), and shadowkv generate --device cuda --prompt-ids
     --json --max-tokens 32;
  5. relative error ||ours - hf|| / ||hf|| (L2 over the vocabulary), pass when <= 1e-2 (bf16); greedy: the first
     step where the tokens differ, and HF's margin there (its top logit minus its logit of our token, and its
     top-1 minus top-2 gap), so that a divergence can be told apart from a bug (a margin within bf16 noise);
  6. delete the model directory (unless --keep names it), free GPU memory, next model.
Every step is independent (a failure is recorded, the rest goes on); a --deadline (epoch seconds) makes it skip
the optional steps, then whole models, when time runs short. Results: one JSON object per line in --json-out,
a readable log on stdout.

  python3 tools/hf_compare/compare_hf.py --shadowkv build-gpu/shadowkv \
      --dump-logits build-gpu/tests/reference/skv_dump_logits --models llama31_8b --lengths 1024,32768
  python3 tools/hf_compare/compare_hf.py --count-params     # the configs' parameter counts, no GPU needed
"""

import argparse
import copy
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
REL_TOL = 1e-2


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


def step(ctx, model, name, fn, *a, need_s=0, **kw):
    """Runs fn, records ok/failed/skipped with its time; returns fn's value or None."""
    if ctx.left() < need_s:
        ctx.record({"model": model, "step": name, "status": "skipped",
                    "why": f"{ctx.left():.0f} s left, step needs ~{need_s} s"})
        return None
    t0 = time.time()
    log(f"--- {model}: {name} ({ctx.left():.0f} s left)")
    try:
        v = fn(*a, **kw)
        log(f"    {name} done in {time.time() - t0:.1f} s")
        return v
    except Exception as e:  # noqa: BLE001 - every failure is recorded, the rest goes on
        tb = traceback.format_exc()
        log(tb)
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


# --------------------------------------------------------------------------------------------------------------
# Hugging Face side

def build_hf_model(name, cfg, seed, tmp):
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
    if p.device.type == "meta":  # not expected; materialise and initialise on the GPU
        log("    model came on the meta device: to_empty + init_weights on cuda")
        model = model.to_empty(device="cuda").to(torch.bfloat16)
        torch.manual_seed(seed)
        model.init_weights()
    elif p.device.type != "cuda" or p.dtype != torch.bfloat16:
        log(f"    model came on {p.device} {p.dtype}: moving to cuda bf16")
        model = model.to(device="cuda", dtype=torch.bfloat16)
    model.eval()
    log(f"    built in {time.time() - t0:.1f} s; attn_implementation={getattr(model.config, '_attn_implementation', '?')}")
    # Perturb what HF initialises to constants, deterministically.
    g = torch.Generator(device="cuda")
    g.manual_seed(seed + 12345)
    n_norm = n_bias = 0
    with torch.no_grad():
        for pname, prm in model.named_parameters():
            if pname.endswith("norm.weight"):
                prm.copy_(1.0 + 0.1 * torch.randn(prm.shape, generator=g, device="cuda", dtype=torch.float32))
                n_norm += 1
            elif pname.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")):
                prm.copy_(0.5 * torch.randn(prm.shape, generator=g, device="cuda", dtype=torch.float32))
                n_bias += 1
    n = sum(p.numel() for p in model.parameters())
    log(f"    {n:,} parameters (published: {EXPECTED_PARAMS.get(name, 0):,}); perturbed {n_norm} norms, {n_bias} biases")
    return model


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


def hf_last_logits(model, ids):
    import torch
    x = torch.tensor([ids], dtype=torch.long, device="cuda")
    torch.cuda.synchronize()
    t0 = time.time()
    with torch.inference_mode():
        out = model.model(input_ids=x, use_cache=False)
        h = out.last_hidden_state[:, -1, :]
        logits = model.lm_head(h).float()[0].cpu().numpy()
    torch.cuda.synchronize()
    return logits, time.time() - t0


def hf_greedy(model, ids, steps):
    """Greedy decoding via past_key_values (no EOS stop). Returns tokens and the logits [steps, vocab] (f32)."""
    import numpy as np
    import torch
    x = torch.tensor([ids], dtype=torch.long, device="cuda")
    toks, rows = [], []
    t0 = time.time()
    with torch.inference_mode():
        out = model.model(input_ids=x, use_cache=True)
        pkv = out.past_key_values
        logits = model.lm_head(out.last_hidden_state[:, -1, :]).float()
        for s in range(steps):
            rows.append(logits[0].cpu().numpy())
            t = int(torch.argmax(logits[0]).item())
            toks.append(t)
            if s + 1 == steps:
                break
            out = model.model(input_ids=torch.tensor([[t]], dtype=torch.long, device="cuda"), past_key_values=pkv,
                              use_cache=True)
            pkv = out.past_key_values
            logits = model.lm_head(out.last_hidden_state[:, -1, :]).float()
    del pkv, out
    return toks, np.stack(rows), time.time() - t0


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


def ours_last_logits(args, model_dir, id_files, weight_dtype, timeout):
    """{length: logits} from one skv_dump_logits run (one model load for every length)."""
    import numpy as np
    cmd = [args.dump_logits, "--device", "cuda", "--weight-dtype", weight_dtype, "--last-only", model_dir]
    outs = {}
    for n, path in id_files.items():
        o = path + f".{weight_dtype}.ours.f32"
        cmd += [path, o]
        outs[n] = o
    _, dt = run_cmd(cmd, timeout)
    res = {}
    for n, o in outs.items():
        res[n] = np.fromfile(o, dtype="<f4")
        os.unlink(o)
    return res, dt


def ours_greedy(args, model_dir, ids_file, n_prompt, steps, max_pos, timeout):
    cmd = [args.shadowkv, "generate", "--device", "cuda", "--model", model_dir, "--prompt-ids", ids_file,
           "--max-tokens", str(steps), "--json"]
    if n_prompt + steps > max_pos:
        cmd += ["--context-limit", str(n_prompt + steps)]
    out, dt = run_cmd(cmd, timeout)
    j = json.loads(out.strip().splitlines()[-1])
    return j, dt


# --------------------------------------------------------------------------------------------------------------

def compare_model(ctx, name, cfg, lengths, greedy_lengths):
    import numpy as np
    import torch
    args = ctx.args
    work = os.path.join(args.work, name)
    model_dir = os.path.join(work, "model")
    os.makedirs(work, exist_ok=True)
    vocab = cfg["vocab_size"]
    need_bytes = count_params(cfg) * 2
    free_disk = shutil.disk_usage(work).free
    ctx.record({"model": name, "step": "start", "params": count_params(cfg), "disk_free_gb": round(free_disk / 1e9, 1),
                "gpu_free_gb": round(gpu_mem()[0] / 1e9, 1), "seconds_left": round(ctx.left())})
    if free_disk < need_bytes * 1.05 + 2e9:
        ctx.record({"model": name, "step": "disk", "status": "skipped",
                    "why": f"{free_disk / 1e9:.1f} GB free in {work}, need ~{need_bytes / 1e9:.1f} GB"})
        return

    # Seeded token ids, a prefix of one sequence for every length.
    rng = np.random.default_rng(args.seed + sum(map(ord, name)))
    all_ids = rng.integers(0, vocab, size=max(lengths + greedy_lengths)).tolist()
    id_files = {}
    for n in sorted(set(lengths + greedy_lengths)):
        path = os.path.join(work, f"ids-{n}.txt")
        with open(path, "w") as f:
            f.write(" ".join(map(str, all_ids[:n])) + "\n")
        id_files[n] = path

    model = step(ctx, name, "hf_build", build_hf_model, name, cfg, args.seed, work, need_s=30)
    if model is None:
        return
    hf = {"bf16": {}, "fp32": {}}
    hf_greedy_res = {}
    saved = None
    try:
        rope = step(ctx, name, "hf_rope_check", check_rope, model, cfg)
        if rope is not None:
            ctx.record({"model": name, "step": "hf_rope_check", **rope})
        saved = step(ctx, name, "save_pretrained", save_model, model, cfg, model_dir, need_s=40)
        if saved is not None:
            ctx.record({"model": name, "step": "save_pretrained", "status": "ok", **saved})
        for n in lengths:
            r = step(ctx, name, f"hf_bf16_logits_{n}", hf_last_logits, model, all_ids[:n], need_s=10)
            if r is not None:
                hf["bf16"][n] = r[0]
                ctx.record({"model": name, "step": f"hf_bf16_logits_{n}", "status": "ok", "seconds": round(r[1], 2),
                            "logit_std": float(np.std(r[0])), "logit_max": float(np.max(r[0]))})
        for n in greedy_lengths:
            r = step(ctx, name, f"hf_greedy_{n}", hf_greedy, model, all_ids[:n], args.greedy_steps, need_s=15)
            if r is not None:
                hf_greedy_res[n] = (r[0], r[1])
                ctx.record({"model": name, "step": f"hf_greedy_{n}", "status": "ok", "seconds": round(r[2], 2),
                            "tokens": r[0]})
        # fp32 reference: the same (bf16-valued) weights upcast. Needs 4 bytes a parameter on the GPU.
        if args.fp32_ref != "off":
            free, _ = gpu_mem()
            need = count_params(cfg) * 2 + 6e9  # + the fp32 copy beyond the bf16 one, + activations at 32K
            if free < need:
                ctx.record({"model": name, "step": "hf_fp32", "status": "skipped",
                            "why": f"{free / 1e9:.1f} GB free on the GPU, need ~{need / 1e9:.1f} GB"})
            elif ctx.left() < 100:
                ctx.record({"model": name, "step": "hf_fp32", "status": "skipped", "why": f"{ctx.left():.0f} s left"})
            else:
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
                ok = step(ctx, name, "hf_to_fp32", lambda: model.to(torch.float32) and True)
                if ok:
                    for n in lengths:
                        r = step(ctx, name, f"hf_fp32_logits_{n}", hf_last_logits, model, all_ids[:n], need_s=40)
                        if r is not None:
                            hf["fp32"][n] = r[0]
                            ctx.record({"model": name, "step": f"hf_fp32_logits_{n}", "status": "ok",
                                        "seconds": round(r[1], 2),
                                        "rel_err_hf_bf16_vs_fp32": rel_err(hf["bf16"][n], r[0]) if n in hf["bf16"] else None})
    finally:
        del model
        oom_cleanup()
    if saved is None:
        return

    # The engine, with the GPU to itself (the HF model is gone).
    timeout = max(30, min(300, ctx.left() - 5))
    ours = step(ctx, name, "ours_bf16_logits", ours_last_logits, args, model_dir, {n: id_files[n] for n in lengths},
                "bf16", timeout, need_s=30)
    if ours is not None:
        for n in lengths:
            got = ours[0].get(n)
            rec = {"model": name, "step": f"logits_{n}", "length": n}
            if got is None or got.size != vocab:
                rec.update(status="failed", error=f"engine gave {None if got is None else got.size} values, want {vocab}")
                ctx.record(rec)
                continue
            if n in hf["bf16"]:
                e = rel_err(got, hf["bf16"][n])
                rec.update(rel_err_vs_hf_bf16=e, status="PASS" if e <= REL_TOL else "FAIL",
                           argmax_ours=int(np.argmax(got)), argmax_hf=int(np.argmax(hf["bf16"][n])))
            if n in hf["fp32"]:
                rec.update(rel_err_ours_vs_hf_fp32=rel_err(got, hf["fp32"][n]),
                           rel_err_hf_bf16_vs_hf_fp32=rel_err(hf["bf16"][n], hf["fp32"][n]) if n in hf["bf16"] else None)
            ctx.record(rec)
    for n in greedy_lengths:
        if n not in hf_greedy_res:
            continue
        r = step(ctx, name, f"ours_greedy_{n}", ours_greedy, args, model_dir, id_files[n], n, args.greedy_steps,
                 cfg["max_position_embeddings"], timeout, need_s=30)
        if r is None:
            continue
        j, dt = r
        hf_toks, hf_rows = hf_greedy_res[n]
        ours_toks = j.get("tokens", [])
        rec = {"model": name, "step": f"greedy_{n}", "length": n, "steps": args.greedy_steps,
               "ours": ours_toks, "hf": hf_toks, "finish_reason": j.get("finish_reason"),
               "ours_decode_tokens_per_s": j.get("decode_tokens_per_s"), "seconds": round(dt, 1)}
        if j.get("prompt_tokens") is not None and j["prompt_tokens"] != all_ids[:n]:
            rec["prompt_mismatch"] = True
        agree = 0
        while agree < min(len(ours_toks), len(hf_toks)) and ours_toks[agree] == hf_toks[agree]:
            agree += 1
        rec["agree"] = agree
        margins = [top2(hf_rows[i])[1] for i in range(len(hf_toks))]
        rec["hf_min_margin_over_agreed"] = min(margins[:agree]) if agree else None
        if agree < min(len(ours_toks), len(hf_toks)):
            row = hf_rows[agree]
            rec["first_divergence"] = agree
            rec["hf_top1_minus_top2_there"] = margins[agree]
            rec["hf_top_minus_ours_token_there"] = float(row[hf_toks[agree]] - row[ours_toks[agree]])
            rec["hf_logit_scale_there"] = float(np.std(row))
            rec["status"] = "DIVERGED"
        elif len(ours_toks) < len(hf_toks):
            rec["status"] = f"AGREE (ours stopped after {len(ours_toks)}: {j.get('finish_reason')})"
        else:
            rec["status"] = "AGREE"
        ctx.record(rec)
    f32_lengths = [n for n in args.f32_lengths if n in lengths and n in hf["fp32"]]
    if f32_lengths:
        ours32 = step(ctx, name, "ours_f32_logits", ours_last_logits, args, model_dir,
                      {n: id_files[n] for n in f32_lengths}, "f32", timeout, need_s=45)
        if ours32 is not None:
            for n in f32_lengths:
                got = ours32[0].get(n)
                if got is not None and got.size == vocab:
                    ctx.record({"model": name, "step": f"logits_f32_{n}", "length": n,
                                "rel_err_ours_f32_vs_hf_fp32": rel_err(got, hf["fp32"][n])})

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
    out = []

    def fmt(x):
        return "-" if x is None else (f"{x:.2e}" if isinstance(x, float) else str(x))

    for r in rows:
        st, m = r.get("step", ""), r.get("model", "")
        if st == "env":
            out.append(f"env: torch {r.get('torch')}, transformers {r.get('transformers')}, {r.get('device')}")
        elif st.startswith("logits_f32_"):
            out.append(f"{m:11s} f32 weights L={r['length']:>6}: ours-f32 vs HF-fp32 {fmt(r.get('rel_err_ours_f32_vs_hf_fp32'))}")
        elif st.startswith("logits_") and "rel_err_vs_hf_bf16" in r:
            out.append(f"{m:11s} logits L={r['length']:>6}: {r.get('status')} rel err vs HF bf16 "
                       f"{fmt(r.get('rel_err_vs_hf_bf16'))} (tol {REL_TOL:g}); vs HF fp32: ours "
                       f"{fmt(r.get('rel_err_ours_vs_hf_fp32'))}, HF bf16 {fmt(r.get('rel_err_hf_bf16_vs_hf_fp32'))}; "
                       f"argmax {r.get('argmax_ours')}/{r.get('argmax_hf')}")
        elif st.startswith("greedy_"):
            s2 = (f"{m:11s} greedy L={r['length']:>6}: {r.get('status')} {r.get('agree')}/{r.get('steps')} agree, "
                  f"min HF margin over them {fmt(r.get('hf_min_margin_over_agreed'))}")
            if "first_divergence" in r:
                s2 += (f"; diverged at {r['first_divergence']}: HF top1-top2 {fmt(r.get('hf_top1_minus_top2_there'))}, "
                       f"HF top minus ours {fmt(r.get('hf_top_minus_ours_token_there'))} (logit std "
                       f"{fmt(r.get('hf_logit_scale_there'))})")
            out.append(s2)
        elif st == "hf_rope_check":
            out.append(f"{m:11s} HF RoPE vs config: {r.get('status')} (inv_freq diff {fmt(r.get('inv_freq_max_rel_diff'))},"
                       f" attention_scaling {r.get('attention_scaling')})")
        elif r.get("status") in ("failed", "skipped"):
            out.append(f"{m:11s} {st}: {r['status'].upper()} {r.get('error') or r.get('why') or ''}"[:300])
    return "\n".join(out) if out else "no results"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="llama31_8b,qwen2_7b,mistral_7b",
                    help="comma-separated, from: " + ", ".join(MODELS))
    ap.add_argument("--lengths", default="1024,32768", help="prompt lengths of the logits comparison")
    ap.add_argument("--greedy-lengths", default="1024,32768", help="prompt lengths of the greedy comparison ('' = none)")
    ap.add_argument("--greedy-steps", type=int, default=32)
    ap.add_argument("--f32-lengths", default="1024",
                    help="lengths where the engine also runs f32 weights against HF fp32 ('' = none)")
    ap.add_argument("--fp32-ref", choices=["auto", "off"], default="auto",
                    help="HF fp32 reference run when GPU memory and time allow")
    ap.add_argument("--shadowkv", default="build-gpu/shadowkv")
    ap.add_argument("--dump-logits", default="build-gpu/tests/reference/skv_dump_logits")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "skv-hf-compare"),
                    help="where the model directories go (~16 GB each, deleted after use)")
    ap.add_argument("--keep", default="", help="comma-separated models whose directory is kept (WORK/NAME/model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--deadline", type=float, default=0, help="epoch seconds; 0 = none")
    ap.add_argument("--json-out", default="", help="append one JSON object per result line here")
    ap.add_argument("--count-params", action="store_true", help="print the configs' parameter counts and exit")
    ap.add_argument("--summarize", default="", help="print a summary of this --json-out file and exit")
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
        return 0 if ok else 1
    lengths, greedy_lengths = ints(args.lengths), ints(args.greedy_lengths)
    args.f32_lengths = ints(args.f32_lengths)
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
        if ctx.left() < 60:
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
