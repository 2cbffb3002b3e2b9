#!/usr/bin/python3
"""Compares the engine's logits (skv_dump_logits) with the float64 numpy reference on tiny random models.

For every variant of tiny_models.py and every test sequence, the metric is, per position t,

    rel_err[t] = max_v |got[t, v] - want[t, v]| / max_v |want[t, v]|

(the worst absolute logit error of that position, relative to the largest logit there), and the check is
max_t rel_err[t] <= tolerance:

  * F32 weights: 1e-4. The engine computes in f32, the reference in f64 on the same values; f32 rounding
    through 2-3 layers of 64-128 wide dot products gives ~1e-6, so 1e-4 is loose for arithmetic but far below
    any real bug (a wrong RoPE frequency, bias, head mapping or norm gives 1e-2 .. 1).
  * BF16 weights: 1e-3. The reference reads the very same bf16 values, upcast exactly, so the remaining
    error is still only the engine's f32 arithmetic; the looser bound leaves room for bf16 kernels that
    convert and accumulate in a different order or in blocks. For scale, the script prints how far the
    logits move when the weights are rounded to bf16 (that is, what reading them wrong would look like).

Sequences: 67 tokens (past llama31_rope's original_max_position_embeddings = 64), 3 and 1 for every variant,
plus 600 / 530 for mistral / qwen2_bias_bf16 (past the engine's 512-token prefill chunk).

It also proves it can fail:
  * negative self-check: a copy of llama_gqa4 with one weight perturbed; the engine on that copy must match
    the reference of the copy and must NOT match the reference of the original (so the engine really reads
    the weights the reference reads, and the metric notices a single-weight change);
  * sensitivity: for each variant with rope_scaling, the reference without the scaling must differ from the
    reference with it by more than 10x the tolerance at the test lengths (so ignoring or misreading the
    scaling would be caught); likewise for Qwen2 with its biases zeroed;
  * error path: the tool on a missing model directory must exit 1 with "error: ..." on stderr.
test_reference_self.py additionally runs this script against a stand-in engine with planted bugs.

Usage: /usr/bin/python3 check_forward.py --dump-logits PATH/skv_dump_logits [--variants a,b] [--keep DIR]
Exit status 0 when everything agrees, 1 on any mismatch or error.
"""

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_forward as rf  # noqa: E402
import tiny_models as tm  # noqa: E402
from safetensors_np import round_to_bf16  # noqa: E402

TOL = {"F32": 1e-4, "BF16": 1e-3}
# Lengths: one long enough (> original_max_position_embeddings = 64 of llama31_rope) that the RoPE scaling
# changes rotations substantially, one short (3) for small-n edge cases, and a single token.
SEQ_LENS = (67, 3, 1)
# Longer prompts for a couple of variants (max_position_embeddings 1024): past the engine's default
# 512-token prefill chunk, so a chunk boundary falls inside the sequence.
LONG_SEQ_LENS = {"mistral": (600,), "qwen2_bias_bf16": (530,)}


class CheckFailed(Exception):
    pass


def tokens_for(variant, length, vocab):
    rng = np.random.default_rng(zlib.crc32(f"{variant}/{length}".encode()))
    return rng.integers(0, vocab, size=length).astype(np.int64)


def run_engine(dump_tool, model_dir, tokens, work):
    tok_path = os.path.join(work, "tokens.csv")
    out_path = os.path.join(work, "logits.f32")
    with open(tok_path, "w") as f:
        f.write(",".join(str(int(t)) for t in tokens) + "\n")
    if os.path.exists(out_path):
        os.remove(out_path)
    proc = subprocess.run([dump_tool, model_dir, tok_path, out_path], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise CheckFailed(f"skv_dump_logits failed on {model_dir} (exit {proc.returncode}): "
                          f"{proc.stderr.strip() or proc.stdout.strip()}")
    got = np.fromfile(out_path, dtype="<f4").astype(np.float64)
    return got


def rel_errors(got, want):
    """Per-position max |got - want| / max |want|."""
    return np.abs(got - want).max(axis=1) / np.abs(want).max(axis=1)


def compare(label, got_flat, want, tol):
    """Returns (ok, worst_rel_err, worst_position, message)."""
    n, vocab = want.shape
    if got_flat.size != n * vocab:
        return False, np.inf, -1, f"{label}: engine returned {got_flat.size} values, want {n} x {vocab} = {n * vocab}"
    got = got_flat.reshape(n, vocab)
    if not np.all(np.isfinite(got)):
        bad = np.argwhere(~np.isfinite(got))[0]
        return False, np.inf, int(bad[0]), f"{label}: non-finite logit at position {bad[0]}, token slot {bad[1]}"
    err = rel_errors(got, want)
    t = int(np.argmax(err))
    argmax_agree = float(np.mean(got.argmax(axis=1) == want.argmax(axis=1)))
    msg = (f"{label}: worst rel err {err[t]:.3e} at position {t} (tol {tol:.0e}); "
           f"argmax agreement {argmax_agree:.3f}")
    return bool(err[t] <= tol), float(err[t]), t, msg


def check_variant(name, dump_tool, root, work, report):
    model_dir = tm.write_variant(name, root)
    storage = tm.storage_of(name)
    tol = TOL[storage]
    cfg, weights = rf.load_config(model_dir), rf.load_weights(model_dir)
    failures = []
    for n in SEQ_LENS + LONG_SEQ_LENS.get(name, ()):
        tokens = tokens_for(name, n, cfg["vocab_size"])
        want = rf.forward(cfg, weights, tokens)
        got = run_engine(dump_tool, model_dir, tokens, work)
        ok, worst, _, msg = compare(f"{name} n={n}", got, want, tol)
        report.append((name, n, worst, tol, ok))
        print(("ok    " if ok else "FAIL  ") + msg, flush=True)
        if not ok:
            failures.append(msg)
    if storage == "BF16":
        base = tm.base_spec(tm.VARIANTS[name][0])
        w32 = {k: v.astype(np.float64) for k, v in tm.make_weights(base).items()}
        toks = tokens_for(name, SEQ_LENS[0], cfg["vocab_size"])
        moved = rel_errors(rf.forward(cfg, w32, toks), rf.forward(cfg, weights, toks)).max()
        print(f"      {name}: for scale, rounding the weights to bf16 moves the logits by rel {moved:.3e}")
    return failures


def negative_self_check(dump_tool, root, work):
    """The engine on a perturbed copy must match the copy's reference and must not match the original's."""
    name = "llama_gqa4"
    base = tm.base_spec(name)
    cfg = tm.make_config(base)
    w = tm.make_weights(base)
    w_pert = copy.deepcopy(w)
    tensor, index, delta = "model.layers.1.self_attn.v_proj.weight", (3, 7), 0.5
    w_pert[tensor][index] += delta
    orig_dir = tm.write_model_dir(os.path.join(root, "neg_original"), cfg, w)
    pert_dir = tm.write_model_dir(os.path.join(root, "neg_perturbed"), cfg, w_pert)
    tokens = tokens_for("negative", SEQ_LENS[0], cfg["vocab_size"])
    want_orig = rf.forward_dir(orig_dir, tokens)
    want_pert = rf.forward_dir(pert_dir, tokens)
    got_pert = run_engine(dump_tool, pert_dir, tokens, work)
    tol = TOL["F32"]
    ok_same, err_same, _, msg_same = compare("perturbed engine vs perturbed reference", got_pert, want_pert, tol)
    ok_diff, err_diff, _, msg_diff = compare("perturbed engine vs ORIGINAL reference", got_pert, want_orig, tol)
    print(("ok    " if ok_same else "FAIL  ") + msg_same)
    print(("ok    " if not ok_diff else "FAIL  ") + msg_diff + "  <- must exceed the tolerance")
    failures = []
    if not ok_same:
        failures.append("negative self-check: " + msg_same)
    if ok_diff or err_diff < 10 * tol:
        failures.append(f"negative self-check: perturbing {tensor}{list(index)} by {delta} was not detected "
                        f"(rel err {err_diff:.3e}, want > {10 * tol:.0e})")
    return failures


def error_path_check(dump_tool, work):
    """A missing model directory is an error: exit status 1 and "error: ..." on stderr."""
    missing = os.path.join(work, "no_such_model")
    tok_path = os.path.join(work, "tokens.csv")
    with open(tok_path, "w") as f:
        f.write("1,2,3\n")
    proc = subprocess.run([dump_tool, missing, tok_path, os.path.join(work, "x.f32")], capture_output=True,
                          text=True, timeout=60)
    ok = proc.returncode == 1 and proc.stderr.startswith("error: ")
    print(("ok    " if ok else "FAIL  ") + f"missing model dir: exit {proc.returncode}, stderr {proc.stderr.strip()!r}")
    return [] if ok else [f"missing model dir: want exit 1 and 'error: ...', got exit {proc.returncode} "
                          f"stderr {proc.stderr.strip()!r}"]


def sensitivity_checks(variants):
    """Reference-only: the features under test change the logits by far more than the tolerance."""
    failures = []
    for name in variants:
        base_name, storage, _ = tm.VARIANTS[name]
        if storage != "F32" or tm.VARIANTS[name][2] != 1:
            continue
        spec = tm.base_spec(base_name)
        cfg = tm.make_config(spec)
        w = {k: v.astype(np.float64) for k, v in tm.make_weights(spec).items()}
        toks = tokens_for(name, SEQ_LENS[0], cfg["vocab_size"])
        want = rf.forward(cfg, w, toks)
        probes = []
        if cfg.get("rope_scaling"):
            c2 = copy.deepcopy(cfg)
            del c2["rope_scaling"]
            probes.append(("rope_scaling removed", rf.forward(c2, w, toks)))
        if any(k.endswith(".bias") for k in w):
            w2 = {k: (np.zeros_like(v) if k.endswith(".bias") else v) for k, v in w.items()}
            probes.append(("biases zeroed", rf.forward(cfg, w2, toks)))
        for what, alt in probes:
            d = rel_errors(alt, want).max()
            ok = d > 10 * TOL["F32"]
            print(("ok    " if ok else "FAIL  ") + f"sensitivity {name}: {what} moves the logits by rel {d:.3e}")
            if not ok:
                failures.append(f"sensitivity {name}: {what} only moves logits by {d:.3e}; the test could not "
                                f"detect that mistake")
    return failures


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump-logits", required=True, help="path to the skv_dump_logits executable")
    ap.add_argument("--variants", default=",".join(tm.VARIANTS), help="comma-separated variant names")
    ap.add_argument("--keep", help="write the model directories here and keep them (default: a temp dir)")
    args = ap.parse_args(argv[1:])

    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in tm.VARIANTS]
    if unknown:
        print(f"error: unknown variants {unknown}; known: {list(tm.VARIANTS)}", file=sys.stderr)
        return 1
    if not os.access(args.dump_logits, os.X_OK):
        print(f"error: {args.dump_logits} is not an executable", file=sys.stderr)
        return 1

    tmp = tempfile.mkdtemp(prefix="skv_reference_")
    root = args.keep or os.path.join(tmp, "models")
    work = os.path.join(tmp, "work")
    os.makedirs(root, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    failures, report = [], []
    try:
        failures += sensitivity_checks(variants)
        failures += error_path_check(args.dump_logits, work)
        for name in variants:
            try:
                failures += check_variant(name, args.dump_logits, root, work, report)
            except CheckFailed as e:
                print(f"FAIL  {name}: {e}", flush=True)
                failures.append(f"{name}: {e}")
        try:
            failures += negative_self_check(args.dump_logits, root, work)
        except CheckFailed as e:
            print(f"FAIL  negative self-check: {e}")
            failures.append(f"negative self-check: {e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("\nworst relative error per variant (max over positions and sequences):")
    for name in variants:
        rows = [r for r in report if r[0] == name]
        if rows:
            worst = max(r[2] for r in rows)
            print(f"  {name:20s} {worst:.3e}  (tol {rows[0][3]:.0e})  {'ok' if all(r[4] for r in rows) else 'FAIL'}")
        else:
            print(f"  {name:20s} (no result)")
    if failures:
        print(f"\nreference_forward: {len(failures)} FAILURE(S):", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        return 1
    print("\nreference_forward: all variants agree with the float64 reference")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
