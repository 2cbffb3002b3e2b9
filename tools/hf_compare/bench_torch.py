#!/usr/bin/env python3
"""PyTorch (transformers, eager, SDPA attention) next to `shadowkv bench --device cuda`: same model, card and run.

PyTorch side (the issue's baseline: plain eager transformers with SDPA, no torch.compile): the model of
--model-dir (from_pretrained, bf16, attn_implementation="sdpa"; if that fails, the same architecture built on the
GPU and the directory's safetensors loaded into it; when the directory has no weights, random ones from
compare_hf.py's config, since the speed does not depend on the values). Then
  * prefill: one sequence of max(--contexts) random tokens through model.model in --prefill-chunk (4096) token
    chunks into a DynamicCache (no chunk sees a 32K x 32K score matrix; the later chunks go through SDPA with a
    [chunk, past + chunk] mask), lm_head on the last position only (as generate does); after a warm-up prefill of
    two chunks (both kernel paths); timed with CUDA events;
  * decode for each context C of --contexts and batch B of --batch: the prefill's cache cut to C tokens and
    replicated into B rows (as shadowkv bench copies one prefill's KV into the other slots), --warmup steps, then
    --steps steps of model.model(input_ids [B, 1], past_key_values=cache) + lm_head, each timed with CUDA events;
    the median. The cache is transformers' DynamicCache (generate's default), which concatenates each step.
    A (C, B) whose KV cache does not fit next to the weights (estimated from the free GPU memory: at 32K, batch
    16 of an 8B model needs 64 GiB of bf16 KV, more than an 80 GB H100 has beside the 15 GiB of weights; an
    H200 fits it) is recorded as "does not fit" with the numbers, and the largest batch that fits at each
    context is reported; an out-of-memory is caught and recorded too.
Then the PyTorch model is freed and `shadowkv bench --device cuda --model DIR --context C1,C2 --batch B1,B2,..
--json` runs (with --random-weights when DIR has only config.json; its own memory plan skips what does not fit).
Two tables (prefill, decode: ms and tokens/s of both, and shadowkv's speed-up) go to stdout and --md, with the
raw JSON of both.

  python3 tools/hf_compare/bench_torch.py --model-dir /tmp/skv-hf-compare/llama31_8b/model \
      --shadowkv build-gpu/shadowkv --contexts 32768,8192 --batch 1,4,16 --md $OUT/torch_vs_shadowkv.md
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_hf  # noqa: E402  (configs; imports no torch at module level)

GIB = 2 ** 30


def log(msg=""):
    print(msg, flush=True)


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else float("nan")


def free_gpu():
    import torch
    gc.collect()
    torch.cuda.empty_cache()


def kv_bytes_per_token(cfg, elem_bytes=2):
    """K and V of every layer for one token (bf16)."""
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * hd * elem_bytes


def decode_fits(cfg, context, batch, free_bytes, base_context=0):
    """(fits, needed bytes) for a decode at (context, batch) with `free_bytes` free beside the weights and the
    batch-1 prefill cache: the replicated cache, one layer's copy more (DynamicCache's cat), ~3 GiB of
    activations, logits and allocator slack."""
    need = batch * per_sequence_bytes(cfg, context) + 3 * GIB
    return need <= free_bytes, need


def per_sequence_bytes(cfg, context):
    """What one more row of the decode batch costs (see decode_fits)."""
    kv = kv_bytes_per_token(cfg) * (context + 64)
    return kv + kv // cfg["num_hidden_layers"] + cfg["vocab_size"] * 4


def max_batch(cfg, context, free_bytes):
    return max(0, int((free_bytes - 3 * GIB) // per_sequence_bytes(cfg, context)))


def load_model(model_dir, cfg_name, seed):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    has_weights = os.path.isdir(model_dir) and any(f.endswith(".safetensors") for f in os.listdir(model_dir))
    t0 = time.time()

    def from_config(cfg):
        torch.manual_seed(seed)
        with torch.device("cuda"):
            try:
                return AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
            except TypeError:
                return AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16, attn_implementation="sdpa")

    model, src = None, None
    if has_weights:
        kw = dict(attn_implementation="sdpa", device_map="cuda")
        try:
            try:
                model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, **kw)
            except TypeError:
                model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.bfloat16, **kw)
            src = f"from_pretrained({model_dir})"
        except Exception as e:  # noqa: BLE001 - e.g. device_map without accelerate: load the shards by hand
            log(f"from_pretrained failed ({type(e).__name__}: {str(e)[:300]}); building from the config and "
                "loading the safetensors into it")
            model = None
            free_gpu()
            from safetensors.torch import load_file
            cfg = AutoConfig.from_pretrained(model_dir)
            model = from_config(cfg)
            missing = set(k for k, _ in model.named_parameters())
            for f in sorted(os.listdir(model_dir)):
                if f.endswith(".safetensors"):
                    sd = load_file(os.path.join(model_dir, f), device="cuda")
                    model.load_state_dict(sd, strict=False)
                    missing -= set(sd)
                    del sd
            src = f"from_config + safetensors of {model_dir}" + (f" ({len(missing)} tensors missing)" if missing else "")
    if model is None:
        cdir = tempfile.mkdtemp(prefix="skv-bench-cfg-")
        with open(os.path.join(cdir, "config.json"), "w") as f:
            json.dump(compare_hf.MODELS[cfg_name], f)
        model = from_config(AutoConfig.from_pretrained(cdir))
        src = f"from_config({cfg_name}), random weights"
        has_weights = False
    p = next(model.parameters())
    if p.device.type != "cuda" or p.dtype != torch.bfloat16:
        model = model.to(device="cuda", dtype=torch.bfloat16)
    model.eval()
    log(f"torch model: {src} in {time.time() - t0:.1f} s, attn={getattr(model.config, '_attn_implementation', '?')}, "
        f"{sum(q.numel() for q in model.parameters()) / 1e9:.2f} B parameters")
    return model, has_weights, src


def cache_layers(cache):
    """[(k, v)] per layer of a DynamicCache, across transformers versions."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    return [(k, v) for k, v in cache]


def replicate_cache(base, context, batch, config):
    """A DynamicCache whose `batch` rows are copies of the first `context` tokens of the batch-1 cache `base`."""
    from transformers import DynamicCache
    try:
        cache = DynamicCache(config=config)
    except TypeError:
        cache = DynamicCache()
    for i, (k, v) in enumerate(base):
        cache.update(k[:, :, :context].expand(batch, -1, -1, -1).contiguous(),
                     v[:, :, :context].expand(batch, -1, -1, -1).contiguous(), i)
    return cache


def torch_bench(model, cfg, contexts, batches, prefill_chunk, steps, warmup, deadline):
    import torch
    oom_types = tuple({getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError})
    res = {"prefill": None, "decode": [], "cache": "DynamicCache", "prefill_chunk": prefill_chunk}
    vocab = model.config.vocab_size
    n = max(contexts)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (1, n), generator=g).cuda()
    s = torch.cuda.current_stream()

    def prefill(x):
        from transformers import DynamicCache
        try:
            cache = DynamicCache(config=model.config)
        except TypeError:
            cache = DynamicCache()
        h = None
        for a in range(0, x.shape[1], prefill_chunk):
            out = model.model(input_ids=x[:, a:a + prefill_chunk], past_key_values=cache, use_cache=True)
            if out.past_key_values is not None:
                cache = out.past_key_values
            h = out.last_hidden_state[:, -1:, :]
            del out
        model.lm_head(h)
        return cache

    with torch.inference_mode():
        t0 = time.time()
        warm = prefill(ids[:, :min(n, 2 * prefill_chunk)])  # warm-up: a first chunk and a masked one
        del warm
        free_gpu()
        torch.cuda.synchronize()
        log(f"torch warm-up prefill in {time.time() - t0:.1f} s")
        torch.cuda.reset_peak_memory_stats()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record(s)
        cache = prefill(ids)
        e1.record(s)
        e1.synchronize()
        ms = e0.elapsed_time(e1)
        res["prefill"] = {"context": n, "ms": ms, "tokens_per_s": n / (ms / 1e3),
                          "peak_gib": torch.cuda.max_memory_allocated() / GIB}
        log(f"torch prefill {n} (chunks of {prefill_chunk}): {ms:.0f} ms, {n / (ms / 1e3):.0f} tok/s")
        base = cache_layers(cache)
        del cache
        free_gpu()
        for c in sorted(contexts, reverse=True):
            fits_any = 0
            for b in batches:
                row = {"context": c, "batch": b}
                res["decode"].append(row)
                free = torch.cuda.mem_get_info()[0]
                ok, need = decode_fits(cfg, c, b, free)
                if not ok:
                    row["error"] = f"does not fit: ~{need / GIB:.1f} GiB needed, {free / GIB:.1f} GiB free"
                    log(f"torch decode batch {b} at {c}: {row['error']}")
                    continue
                if time.time() > deadline:
                    row["error"] = "skipped: out of time"
                    continue
                cache = None
                try:
                    torch.cuda.reset_peak_memory_stats()
                    cache = replicate_cache(base, c, b, model.config)
                    tok = torch.tensor([[(1000 + i) % vocab] for i in range(b)], device="cuda")
                    times = []
                    for i in range(warmup + steps):
                        a0, a1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        a0.record(s)
                        out = model.model(input_ids=tok, past_key_values=cache, use_cache=True)
                        model.lm_head(out.last_hidden_state[:, -1:, :])
                        a1.record(s)
                        a1.synchronize()
                        if out.past_key_values is not None:
                            cache = out.past_key_values
                        if i >= warmup:
                            times.append(a0.elapsed_time(a1))
                        del out
                    m = median(times)
                    row.update(step_ms_median=m, tokens_per_s=b / (m / 1e3),
                               peak_gib=torch.cuda.max_memory_allocated() / GIB)
                    fits_any = max(fits_any, b)
                    log(f"torch decode batch {b} at {c}: {m:.2f} ms/step, {b / (m / 1e3):.1f} tok/s")
                except oom_types as e:
                    row["error"] = f"out of memory: {str(e).splitlines()[0][:160]}"
                    log(f"torch decode batch {b} at {c}: out of memory")
                except Exception as e:  # noqa: BLE001
                    log(traceback.format_exc())
                    row["error"] = f"{type(e).__name__}: {e}"[:300]
                finally:
                    cache = None
                    free_gpu()
            # the largest batch that fits at this context, by the same estimate
            free = torch.cuda.mem_get_info()[0]
            per = kv_bytes_per_token(cfg) * (c + 64)
            bmax = max_batch(cfg, c, free)
            res.setdefault("max_batch_estimate", {})[c] = bmax
            log(f"context {c}: largest batch that fits by the estimate: {bmax} ({per / GIB:.2f} GiB KV a sequence, "
                f"{free / GIB:.0f} GiB free beside the weights)")
        del base
    return res


def shadowkv_bench(args, model_dir, has_weights, timeout):
    d = model_dir
    extra = []
    if not has_weights:
        d = tempfile.mkdtemp(prefix="skv-bench-cfg-")
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(compare_hf.MODELS[args.config], f)
        extra = ["--random-weights"]
    cmd = [args.shadowkv, "bench", "--device", "cuda", "--model", d,
           "--context", ",".join(map(str, sorted(args.contexts, reverse=True))),
           "--batch", ",".join(map(str, args.batch)), "--steps", str(args.steps), "--json"] + extra
    log("$ " + " ".join(cmd))
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    log(f"shadowkv bench: exit {p.returncode} after {time.time() - t0:.1f} s")
    for line in p.stderr.strip().splitlines()[-10:]:
        log("! " + line[:400])
    if p.returncode != 0:
        raise RuntimeError(f"shadowkv bench exit {p.returncode}: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout)


def tables(torch_res, skv, args, device_name, env, src):
    L = []
    L.append(f"# PyTorch (transformers, eager, SDPA) vs shadowkv, {args.config}, same card, same run")
    L.append("")
    L.append(f"- device: {device_name}; {env}")
    L.append(f"- model: {src or args.model_dir or '(config only)'}; bf16 weights, bf16 KV cache")
    L.append(f"- PyTorch: model.model + lm_head on the last position; prefill in {args.prefill_chunk}-token chunks "
             "into a DynamicCache after a warm-up; decode with the DynamicCache (transformers' default: it "
             "concatenates the cache every step), no torch.compile, no CUDA graphs")
    L.append("- shadowkv: `shadowkv bench --device cuda` with its defaults (its default prefill chunk, CUDA graphs "
             f"for decode: {(skv or {}).get('cuda_graphs', '?')}); its prefill at each context is timed without a "
             "warm-up prefill")
    L.append(f"- decode: {args.warmup} (PyTorch) / 8 (shadowkv) warm-up steps, then {args.steps} timed steps, median "
             "(CUDA events); batch > 1 = the batch-1 prefill's KV replicated into the other rows, both engines")
    if torch_res and torch_res.get("max_batch_estimate"):
        L.append("- PyTorch: largest batch that fits next to the weights, by the KV estimate: " + ", ".join(
            f"{b} at {c}" for c, b in sorted(torch_res["max_batch_estimate"].items(), key=lambda x: -int(x[0]))))
    L.append("")

    skv_rows = {}
    if skv:
        for r in skv.get("results", []):
            skv_rows[(int(r.get("context", 0)), int(r.get("batch", 0)))] = r

    def f(x, spec):
        return "-" if x is None else format(x, spec)

    def speedup(t, s):
        return f"{t / s:.2f}x" if t and s else "-"

    L.append("| prefill context | PyTorch ms | PyTorch tok/s | shadowkv ms | shadowkv tok/s | shadowkv speed-up |")
    L.append("|---|---|---|---|---|---|")
    tp = (torch_res or {}).get("prefill") or {}
    for c in sorted(args.contexts, reverse=True):
        s = next((r for (cc, _), r in skv_rows.items() if cc == c and "prefill_ms" in r), {})
        t_ms = tp.get("ms") if tp.get("context") == c else None
        t_tps = tp.get("tokens_per_s") if tp.get("context") == c else None
        L.append(f"| {c} | {f(t_ms, '.0f')} | {f(t_tps, '.0f')} | {f(s.get('prefill_ms'), '.0f')} | "
                 f"{f(s.get('prefill_tokens_per_s'), '.0f')} | {speedup(t_ms, s.get('prefill_ms'))} |")
    L.append("")
    L.append("| context | batch | PyTorch ms/step | PyTorch tok/s | shadowkv ms/step | shadowkv tok/s | "
             "shadowkv speed-up |")
    L.append("|---|---|---|---|---|---|---|")
    trows = {(r["context"], r["batch"]): r for r in (torch_res or {}).get("decode", [])}
    for c in sorted(args.contexts, reverse=True):
        for b in args.batch:
            t = trows.get((c, b), {})
            s = skv_rows.get((c, b), {})
            t_cells = ([t["error"][:70], "-"] if "error" in t else
                       [f(t.get("step_ms_median"), ".2f"), f(t.get("tokens_per_s"), ".1f")])
            s_cells = ([str(s["error"])[:70], "-"] if "error" in s else
                       [f(s.get("decode_step_ms_median"), ".2f"), f(s.get("decode_tokens_per_s"), ".1f")])
            L.append(f"| {c} | {b} | " + " | ".join(t_cells + s_cells) + " | "
                     + speedup(t.get("step_ms_median"), s.get("decode_step_ms_median")) + " |")
    if not torch_res:
        L.append("")
        L.append("PyTorch: failed or skipped (see the log).")
    if not skv:
        L.append("")
        L.append("shadowkv bench: failed or skipped (see the log).")
    return "\n".join(L) + "\n"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default="", help="a saved model (compare_hf.py --keep); empty/missing: random")
    ap.add_argument("--config", default="llama31_8b", choices=sorted(compare_hf.MODELS),
                    help="the architecture when --model-dir has no weights")
    ap.add_argument("--shadowkv", default="build-gpu/shadowkv")
    ap.add_argument("--contexts", "--context", default="32768,8192",
                    help="decode contexts; the PyTorch prefill is timed at the largest")
    ap.add_argument("--batch", default="1,4,16")
    ap.add_argument("--prefill-chunk", type=int, default=4096, help="PyTorch prefill chunk (tokens)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--deadline", type=float, default=0, help="epoch seconds; 0 = none")
    ap.add_argument("--skv-reserve", type=float, default=60,
                    help="seconds of the deadline kept for shadowkv bench (the PyTorch part stops before)")
    ap.add_argument("--md", default="", help="write the tables (and the raw JSON) here")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--skip-shadowkv", action="store_true")
    args = ap.parse_args(argv)
    args.batch = [int(b) for b in args.batch.split(",") if b.strip()]
    args.contexts = [int(c) for c in args.contexts.split(",") if c.strip()]
    if not args.batch or not args.contexts:
        ap.error("--batch and --contexts need at least one value each")
    deadline = args.deadline if args.deadline > 0 else float("inf")
    args.shadowkv = os.path.abspath(args.shadowkv)
    cfg = compare_hf.MODELS[args.config]

    torch_res, skv, device_name, env, src = None, None, "?", "?", ""
    try:
        import torch
        import transformers
        device_name = torch.cuda.get_device_name(0)
        env = f"torch {torch.__version__}; transformers {transformers.__version__}; CUDA {torch.version.cuda}"
        log(f"{device_name}; {env}")
    except Exception as e:  # noqa: BLE001
        log(f"no torch/transformers/GPU: {e!r}")
        args.skip_torch = True
    model_dir = args.model_dir if args.model_dir else ""
    has_weights = bool(model_dir) and os.path.isdir(model_dir) and any(
        f.endswith(".safetensors") for f in os.listdir(model_dir))
    if model_dir and os.path.isfile(os.path.join(model_dir, "config.json")):
        try:
            with open(os.path.join(model_dir, "config.json")) as fh:
                cfg = json.load(fh)
        except (OSError, ValueError):
            pass
    if not args.skip_torch:
        model = None
        try:
            model, has_weights, src = load_model(model_dir, args.config, args.seed)
            torch_res = torch_bench(model, cfg, args.contexts, args.batch, args.prefill_chunk, args.steps,
                                    args.warmup, deadline - args.skv_reserve)
        except Exception:  # noqa: BLE001
            log(traceback.format_exc())
        finally:
            model = None
            try:
                free_gpu()
            except Exception:  # noqa: BLE001
                pass
    if not args.skip_shadowkv:
        try:
            timeout = int(max(30, min(400, deadline - time.time()))) if deadline != float("inf") else 400
            skv = shadowkv_bench(args, model_dir, has_weights, timeout)
        except Exception:  # noqa: BLE001
            log(traceback.format_exc())
    md = tables(torch_res, skv, args, device_name, env, src)
    log("")
    log(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
            f.write("\n<details><summary>raw</summary>\n\n```json\n")
            f.write(json.dumps({"torch": torch_res, "shadowkv": skv}, indent=1, default=str))
            f.write("\n```\n</details>\n")
    return 0 if (torch_res or args.skip_torch) and (skv or args.skip_shadowkv) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
