#!/usr/bin/env python3
"""PyTorch (transformers, SDPA attention) next to `shadowkv bench --device cuda`, same model, same card, same run.

PyTorch side: the model of --model-dir (from_pretrained, bf16, attn_implementation="sdpa"); when that directory
has no safetensors, the same architecture from tools/hf_compare/compare_hf.py's config with random weights made
on the GPU (the speed does not depend on the values). Then
  * prefill: one sequence of --context random tokens (model.model + lm_head on the last position, as generate
    does: no all-position logits), a DynamicCache filled; one warm-up prefill of 4096 tokens first; CUDA events;
  * decode at that context for each batch size: the prefilled cache replicated into `batch` rows (as shadowkv
    bench copies the KV of one prefill into the other slots), --warmup steps, then --steps timed steps of
    model.model(input_ids [batch, 1], past_key_values=cache) + lm_head, each timed with CUDA events; median.
    A batch that runs out of memory is recorded as such (at 32K, batch 16 needs 64 GiB of KV for an 8B
    model: it fits on an H200, not on an 80 GB H100 next to the weights).
Then the PyTorch model is freed and `shadowkv bench --device cuda --model DIR --context C --batch B --json`
runs (with --random-weights when DIR has only config.json). One table of both goes to stdout and --md.

  python3 tools/hf_compare/bench_torch.py --model-dir /tmp/skv-hf-compare/llama31_8b/model \
      --shadowkv build-gpu/shadowkv --context 32768 --batch 1,4,16 --md $OUT/torch_vs_shadowkv.md
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


def log(msg=""):
    print(msg, flush=True)


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else float("nan")


def free_gpu():
    import torch
    gc.collect()
    torch.cuda.empty_cache()


def load_model(model_dir, cfg_name, seed):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    has_weights = os.path.isdir(model_dir) and any(f.endswith(".safetensors") for f in os.listdir(model_dir))
    t0 = time.time()
    if has_weights:
        kw = dict(attn_implementation="sdpa", device_map="cuda")
        try:
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, **kw)
        except TypeError:
            model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.bfloat16, **kw)
        src = f"from_pretrained({model_dir})"
    else:
        cdir = tempfile.mkdtemp(prefix="skv-bench-cfg-")
        with open(os.path.join(cdir, "config.json"), "w") as f:
            json.dump(compare_hf.MODELS[cfg_name], f)
        cfg = AutoConfig.from_pretrained(cdir)
        torch.manual_seed(seed)
        with torch.device("cuda"):
            try:
                model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
            except TypeError:
                model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16, attn_implementation="sdpa")
        src = f"from_config({cfg_name}), random weights"
    p = next(model.parameters())
    if p.device.type != "cuda" or p.dtype != torch.bfloat16:
        model = model.to(device="cuda", dtype=torch.bfloat16)
    model.eval()
    log(f"torch model: {src} in {time.time() - t0:.1f} s, attn={getattr(model.config, '_attn_implementation', '?')}, "
        f"{sum(q.numel() for q in model.parameters()) / 1e9:.2f} B parameters")
    return model, has_weights


def replicate_cache(base, batch, config):
    """A DynamicCache whose `batch` rows are copies of the batch-1 cache `base` (a list of (k, v) per layer)."""
    from transformers import DynamicCache
    try:
        cache = DynamicCache(config=config)
    except TypeError:
        cache = DynamicCache()
    for i, (k, v) in enumerate(base):
        cache.update(k.expand(batch, -1, -1, -1).contiguous(), v.expand(batch, -1, -1, -1).contiguous(), i)
    return cache


def cache_layers(cache):
    """[(k, v)] per layer of a DynamicCache, across transformers versions."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    return [(k, v) for k, v in cache]


def torch_bench(model, context, batches, steps, warmup, deadline):
    import torch
    res = {"prefill": None, "decode": {}}
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (1, context), generator=g).cuda()
    s = torch.cuda.current_stream()

    def prefill(x):
        out = model.model(input_ids=x, use_cache=True)
        model.lm_head(out.last_hidden_state[:, -1:, :])
        return out.past_key_values

    with torch.inference_mode():
        prefill(ids[:, :4096])  # warm-up (kernels, cuBLAS heuristics)
        free_gpu()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record(s)
        cache = prefill(ids)
        e1.record(s)
        e1.synchronize()
        ms = e0.elapsed_time(e1)
        res["prefill"] = {"context": context, "ms": ms, "tokens_per_s": context / (ms / 1e3),
                          "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
        log(f"torch prefill {context}: {ms:.0f} ms, {context / (ms / 1e3):.0f} tok/s")
        base = [(k.clone(), v.clone()) for k, v in cache_layers(cache)]
        del cache
        free_gpu()
        for b in batches:
            if time.time() > deadline:
                res["decode"][b] = {"error": "skipped: out of time"}
                continue
            cache = None
            try:
                cache = replicate_cache(base, b, model.config) if b > 1 else replicate_cache(base, 1, model.config)
                tok = torch.tensor([[(1000 + i) % vocab] for i in range(b)], device="cuda")
                times = []
                for i in range(warmup + steps):
                    a0, a1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    a0.record(s)
                    out = model.model(input_ids=tok, past_key_values=cache, use_cache=True)
                    model.lm_head(out.last_hidden_state[:, -1:, :])
                    a1.record(s)
                    a1.synchronize()
                    cache = out.past_key_values
                    if i >= warmup:
                        times.append(a0.elapsed_time(a1))
                    del out
                m = median(times)
                res["decode"][b] = {"step_ms_median": m, "tokens_per_s": b / (m / 1e3),
                                    "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
                log(f"torch decode batch {b} at {context}: {m:.2f} ms/step, {b / (m / 1e3):.1f} tok/s")
            except torch.OutOfMemoryError as e:
                res["decode"][b] = {"error": f"out of memory: {str(e).splitlines()[0][:200]}"}
                log(f"torch decode batch {b}: out of memory")
            except Exception as e:  # noqa: BLE001
                log(traceback.format_exc())
                res["decode"][b] = {"error": f"{type(e).__name__}: {e}"[:300]}
            finally:
                del cache
                free_gpu()
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
    cmd = [args.shadowkv, "bench", "--device", "cuda", "--model", d, "--context", str(args.context),
           "--batch", ",".join(map(str, args.batch)), "--steps", str(args.steps), "--json"] + extra
    log("$ " + " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in p.stderr.strip().splitlines()[-10:]:
        log("! " + line[:400])
    if p.returncode != 0:
        raise RuntimeError(f"shadowkv bench exit {p.returncode}: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout)


def table(torch_res, skv, args, device_name, env):
    lines = []
    lines.append(f"# PyTorch (transformers SDPA) vs shadowkv, {args.config}, same card, same run")
    lines.append("")
    lines.append(f"- device: {device_name}; {env}")
    lines.append(f"- model: {args.model_dir or '(config only)'}; bf16 weights; context {args.context}; "
                 f"decode: {args.warmup} warm-up + {args.steps} timed steps, median (CUDA events)")
    lines.append("- PyTorch: model.model + lm_head on the last position, DynamicCache; batch > 1 = the batch-1 "
                 "prefill's cache replicated (as shadowkv bench copies one prefill's KV into the other slots)")
    lines.append("")
    lines.append("| engine | prefill ms | prefill tok/s | " +
                 " | ".join(f"decode B={b} ms/step | B={b} tok/s" for b in args.batch) + " |")
    lines.append("|---|---|---|" + "---|---|" * len(args.batch))

    def row(name, pre_ms, pre_tps, dec):
        cells = [name, f"{pre_ms:.0f}" if pre_ms else "-", f"{pre_tps:.0f}" if pre_tps else "-"]
        for b in args.batch:
            d = dec.get(b) or {}
            if "error" in d:
                cells += [d["error"][:60], "-"]
            elif d:
                cells += [f"{d['ms']:.2f}", f"{d['tps']:.1f}"]
            else:
                cells += ["-", "-"]
        return "| " + " | ".join(cells) + " |"

    if torch_res:
        p = torch_res.get("prefill") or {}
        dec = {b: ({"error": v["error"]} if "error" in v else {"ms": v["step_ms_median"], "tps": v["tokens_per_s"]})
               for b, v in torch_res.get("decode", {}).items()}
        lines.append(row("PyTorch (transformers SDPA)", p.get("ms"), p.get("tokens_per_s"), dec))
    else:
        lines.append("| PyTorch | failed | | |")
    if skv:
        dec, pre_ms, pre_tps = {}, None, None
        for r in skv.get("results", []):
            if r.get("context") != args.context:
                continue
            if "error" in r:
                dec[r["batch"]] = {"error": r["error"]}
                continue
            pre_ms, pre_tps = r["prefill_ms"], r["prefill_tokens_per_s"]
            dec[r["batch"]] = {"ms": r["decode_step_ms_median"], "tps": r["decode_tokens_per_s"]}
        lines.append(row("shadowkv", pre_ms, pre_tps, dec))
    else:
        lines.append("| shadowkv | failed | | |")
    return "\n".join(lines) + "\n"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default="", help="a saved model (compare_hf.py --keep); empty/missing: random")
    ap.add_argument("--config", default="llama31_8b", choices=sorted(compare_hf.MODELS),
                    help="the architecture when --model-dir has no weights")
    ap.add_argument("--shadowkv", default="build-gpu/shadowkv")
    ap.add_argument("--context", type=int, default=32768)
    ap.add_argument("--batch", default="1,4,16")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--deadline", type=float, default=0, help="epoch seconds; 0 = none")
    ap.add_argument("--md", default="", help="write the table (and the raw JSON) here")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--skip-shadowkv", action="store_true")
    args = ap.parse_args(argv)
    args.batch = [int(b) for b in args.batch.split(",") if b.strip()]
    deadline = args.deadline if args.deadline > 0 else float("inf")
    args.shadowkv = os.path.abspath(args.shadowkv)

    torch_res, skv, device_name, env, has_weights = None, None, "?", "?", False
    try:
        import torch
        import transformers
        device_name = torch.cuda.get_device_name(0)
        env = f"torch {torch.__version__}; transformers {transformers.__version__}; CUDA {torch.version.cuda}"
        log(f"{device_name}; {env}")
    except Exception as e:  # noqa: BLE001
        log(f"no torch/transformers: {e!r}")
        args.skip_torch = True
    model_dir = args.model_dir if args.model_dir else ""
    has_weights = bool(model_dir) and os.path.isdir(model_dir) and any(
        f.endswith(".safetensors") for f in os.listdir(model_dir))
    if not args.skip_torch:
        model = None
        try:
            model, has_weights = load_model(model_dir, args.config, args.seed)
            # the torch part gets what is left minus ~70 s for shadowkv bench
            torch_res = torch_bench(model, args.context, args.batch, args.steps, args.warmup, deadline - 70)
        except Exception:  # noqa: BLE001
            log(traceback.format_exc())
        finally:
            del model
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
    md = table(torch_res, skv, args, device_name, env)
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
