#!/usr/bin/env python3
"""Train (or resume), export and evaluate the testbed long-context model.

    python3 tools/testbed/train.py --out OUT [--preset gpu|smoke] [--train-budget S] [--total-budget S]

Resumes from --ckpt-dir/ckpt.pt when it exists (weights in bf16, the tokenizer, counters; no optimizer
moments: AdamW re-warms for `resume_warmup_steps` at `resume_lr_scale` x the peak rate). Otherwise trains
the byte-level BPE tokenizer first (HF `tokenizers`; the pure-Python fallback only with --preset smoke).
--chain NAME follows config["chains"][NAME] instead: a from-scratch schedule fixed in advance, one entry per
run (its curriculum and peak-rate scale; the checkpoint's run index picks the entry), so a whole training is
one recipe rather than a road of resumes.
Schedules (learning rate, length curriculum) run on the fraction of the training time budget used, so a
run always ends cooled down, whatever the speed of the machine; runs are therefore not bit-reproducible.
Several GPUs of one host: start it under torchrun (`python3 -m torch.distributed.run --standalone
--nproc_per_node N tools/testbed/train.py ...`; run_gpu.sh does when GPUS > 1). Each process takes
tokens_per_step / N of every step (its own samples, every process the same sequence length, so none waits on
another's longer sequences: 94% of one GPU's tokens per GPU-second on two H200s), the gradients are averaged
over the processes, and --train-budget stays the run's cost in GPU-seconds: the run trains budget / N seconds
of wall clock, so a chain costs the same GPU time on one GPU or several. Rank 0 alone logs, checkpoints and evaluates.
Writes under OUT: checkpoint/ckpt.pt, model/{config.json, model.safetensors, tokenizer.json,
tokenizer_config.json}, train_log.txt, eval.json.
"""
import argparse
import io
import json
import math
import multiprocessing as mp
import os
import sys
import time
import zlib
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import model as M  # noqa: E402
import tasks as T  # noqa: E402
import tokenizer_util as TU  # noqa: E402

SOURCES = ("kjv", "jargon", "pg")
TASK_INDEX = {t: i for i, t in enumerate(T.TASKS + ("lm",))}
CKPT_FORMAT = "shadowkv-testbed-ckpt-1"
T0 = time.time()
LOG = None
RANK, WORLD = 0, 1  # this process's rank and the number of processes (torchrun's RANK / WORLD_SIZE)
DIST = None         # torch.distributed when WORLD > 1
CPU_GROUP = None    # a gloo group for host-side values (the schedule's progress), so no GPU stream waits on them


def log(msg):
    if RANK != 0:
        return
    line = f"[{time.time() - T0:7.1f}s] {msg}"
    print(line, flush=True)
    if LOG:
        LOG.write(line + "\n")
        LOG.flush()


def merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "lengths" else v
    return out


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ------------------------------------------------------------------------------------------- data

class Phase(NamedTuple):
    """One curriculum phase, with the config's values where the phase names none."""
    lengths: dict          # {L: weight}
    task_mix: dict         # {task: weight}: the phase's own "task_mix", else the config's
    task_n: dict           # {task: [lo, hi]}: needles / values / queries / hops drawn in [lo, hi]; tasks not
                           # named draw tasks.py's defaults
    uuid_hex_p: float      # share of uuid values drawn as variable-length hex ids (default 0)
    end_loss_weight: float  # answer-loss weight of the closing <|eos|> (default 1)
    end_jitter: int        # largest tail of another document after a sample (default 0: a sample's tail is
                           # drawn in [0, min(end_jitter, L // 8)])
    flat_p: float          # share of task samples whose haystack is whitespace-flattened text (RULER's essay
                           # layout; default 0.5; 0 = the text's own lines only)


# What a chain entry may set besides "note", "curriculum" and "lr_scale": config values the run uses instead of
# the config's, the phase keys among them (task_mix ... flat_p) as the default of every phase that names none.
CHAIN_OVERRIDES = ("warmup_steps", "answer_loss_weight", "task_mix", "uuid_hex_p", "end_loss_weight", "end_jitter",
                   "flat_p")


def chain_run(tc, chain, run_index):
    """The training config of run `run_index` of chain `chain` (config["train"]["chains"][chain]): tc with the
    entry's curriculum, its peak-rate scale ("lr_scale", 1 if absent) and its CHAIN_OVERRIDES applied."""
    runs = tc.get("chains", {}).get(chain)
    if not runs:
        sys.exit(f"no chain {chain!r} in the config (have: {', '.join(tc.get('chains', {})) or 'none'})")
    if run_index >= len(runs):
        sys.exit(f"chain {chain!r} has {len(runs)} runs; the checkpoint has done {run_index}")
    entry = runs[run_index]
    unknown = set(entry) - {"note", "curriculum", "lr_scale", *CHAIN_OVERRIDES}
    if unknown:
        sys.exit(f"chain {chain!r} run {run_index + 1}: unknown key(s) {', '.join(sorted(unknown))}")
    return dict(tc, **{k: entry[k] for k in CHAIN_OVERRIDES if k in entry}, curriculum=entry["curriculum"],
                chain_lr_scale=entry.get("lr_scale", 1.0), chain=chain, chain_run=run_index)


def phase_at(tc, p):
    """The phase of tc["curriculum"] that progress p (0..1) is in: the first whose "until" exceeds p, else the
    last."""
    phases = tc["curriculum"]
    ph = next((ph for ph in phases if p < ph["until"]), phases[-1])
    return Phase(lengths=ph["lengths"], task_mix=ph.get("task_mix", tc["task_mix"]), task_n=ph.get("task_n", {}),
                 uuid_hex_p=ph.get("uuid_hex_p", tc.get("uuid_hex_p", 0.0)),
                 end_loss_weight=ph.get("end_loss_weight", tc.get("end_loss_weight", 1.0)),
                 end_jitter=ph.get("end_jitter", tc.get("end_jitter", 0)),
                 flat_p=ph.get("flat_p", tc.get("flat_p", 0.5)))


class Batches(torch.utils.data.IterableDataset):
    """Endless token-budgeted batches: one length L per batch (drawn from the curriculum at the current
    progress, shared with the workers through `progress`), tokens_per_step // L samples of it.
    The samples come from `seed`; the lengths from `length_seed`, one draw per batch, so processes that share
    it (several GPUs: the same length_seed, their own seed) draw the same L for their k-th batch and no process
    waits on another's longer sequences (the DataLoader hands batches over in worker order)."""

    def __init__(self, tc, tok, corpora, words, progress, seed, length_seed, flat=None):
        self.tc, self.tok, self.corpora, self.words, self.progress, self.seed = tc, tok, corpora, words, progress, seed
        self.length_seed = length_seed
        self.flat = flat or {}  # whitespace-flattened corpora (RULER's essay layout), for a phase's flat_p of samples

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info else 0
        rng = np.random.default_rng(self.seed + [wid])
        lrng = np.random.default_rng(self.length_seed + [wid])
        srcs = list(self.tc["source_mix"])
        sp = np.array([self.tc["source_mix"][s] for s in srcs], dtype=np.float64)
        while True:
            ph = phase_at(self.tc, self.progress.value)
            lens, mix, sizes = ph.lengths, ph.task_mix, ph.task_n
            tasks = list(mix)
            tp = np.array([mix[t] for t in tasks], dtype=np.float64)
            ls = [int(x) for x in lens]
            L = ls[lrng.choice(len(ls), p=np.array(list(lens.values()), dtype=np.float64) / sum(lens.values()))]
            B = max(1, self.tc["tokens_per_step"] // L)
            ss = []
            for _ in range(B):
                task = tasks[rng.choice(len(tasks), p=tp / tp.sum())]
                src = srcs[rng.choice(len(srcs), p=sp / sp.sum())]
                flat = src in self.flat and task != "lm" and rng.random() < ph.flat_p
                corpus = self.flat[src] if flat else self.corpora[src]
                n = int(rng.integers(sizes[task][0], sizes[task][1] + 1)) if task in sizes else None
                try:
                    tail = (int(rng.integers(0, min(ph.end_jitter, L // 8) + 1))
                            if ph.end_jitter > 0 and task != "lm" else 0)
                    s = T.make_sample(task, L, rng, self.tok, corpus, self.words, n=n, hex_p=ph.uuid_hex_p,
                                      end_weight=ph.end_loss_weight, tail=tail)
                except ValueError:  # too many needles for a short sequence
                    s = T.make_sample("single_number", L, rng, self.tok, corpus, self.words)
                ss.append(s)
            yield {"ids": torch.from_numpy(np.stack([s["ids"] for s in ss])),
                   "lm": torch.from_numpy(np.stack([s["lm"] for s in ss])),
                   "ans": torch.from_numpy(np.stack([s["ans"] for s in ss])),
                   "task": torch.tensor([TASK_INDEX[s["task"]] for s in ss], dtype=torch.int64)}


def eval_set(tok, corpora, words, lengths, n, seed):
    """Deterministic held-out samples: for each task and length, n samples cycling over the sources, the
    single-needle depths spread evenly over (0, 1)."""
    out = []
    srcs = list(corpora)
    for L in lengths:
        for ti, task in enumerate(T.TASKS):
            for i in range(n):
                rng = np.random.default_rng([seed, L, ti, i])
                s = T.make_sample(task, L, rng, tok, corpora[srcs[i % len(srcs)]], words,
                                  n=T.EVAL_PARAMS.get(task), depth=(i + 0.5) / n)
                s["length"] = L
                out.append(s)
    return out


@torch.no_grad()
def evaluate(model, samples, device, amp, deadline=None):
    """-> {task: {length: accuracy}}; samples past the deadline are skipped (reported as missing)."""
    model.eval()
    acc = {}
    for s in samples:
        if deadline and time.time() > deadline:
            break
        ids = torch.from_numpy(s["ids"])[None].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            h = model.hidden(ids)
        pos = torch.tensor(T.scored_positions(s), device=device)
        pred_at = model.head(h[0, pos].float()).argmax(-1).tolist()
        pred = np.zeros(len(s["ids"]), dtype=np.int64)
        pred[pos.tolist()] = pred_at
        acc.setdefault(s["task"], {}).setdefault(s["length"], []).append(T.score(s, pred))
    model.train()
    return {t: {L: float(np.mean(v)) for L, v in d.items()} for t, d in acc.items()}


def table(acc, lengths):
    head = "| task | " + " | ".join(f"{L // 1024}K" if L >= 1024 else str(L) for L in lengths) + " |"
    rows = [head, "|" + "---|" * (len(lengths) + 1)]
    for t in T.TASKS:
        cells = [f"{100 * acc[t][L]:.0f}%" if L in acc.get(t, {}) else "-" for L in lengths]
        rows.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------- checkpoint

def save_ckpt(path, model, tok_json, state):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ck = dict(state)
    ck["format"] = CKPT_FORMAT
    ck["model_config"] = model.config.to_dict()
    ck["weights"] = {k: v.detach().to("cpu", torch.bfloat16).clone() for k, v in model.state_dict().items()}
    ck["tokenizer_json_zlib"] = zlib.compress(tok_json.encode("utf-8"), 9)
    buf = io.BytesIO()
    torch.save(ck, buf)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)
    mib = len(buf.getvalue()) / 2 ** 20
    if mib > 16:
        log(f"WARNING: checkpoint is {mib:.2f} MiB > 16 MiB")
    return mib


# ------------------------------------------------------------------------------------------- processes

def dist_init(device_arg):
    """Joins torchrun's process group when WORLD_SIZE > 1 (NCCL on GPUs, gloo on the CPU) and returns this
    process's device."""
    global RANK, WORLD, DIST, CPU_GROUP
    cuda = torch.cuda.is_available() and device_arg != "cpu"
    WORLD = int(os.environ.get("WORLD_SIZE", "1"))
    if WORLD == 1:
        return torch.device(device_arg or ("cuda" if cuda else "cpu"))
    import torch.distributed as dist
    RANK = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", RANK))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    DIST = dist
    CPU_GROUP = dist.new_group(backend="gloo") if cuda else None
    return torch.device(f"cuda:{local}" if cuda else "cpu")


def broadcast_host(value):
    """Rank 0's float `value` on every rank (host to host: the GPU queues are not drained)."""
    if WORLD == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    DIST.broadcast(t, 0, group=CPU_GROUP)
    return float(t[0])


def average_gradients(params):
    """The mean over the processes of each parameter's gradient, in one all-reduce."""
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    DIST.all_reduce(flat)
    flat /= WORLD
    off = 0
    for g in grads:
        g.copy_(flat[off:off + g.numel()].view_as(g))
        off += g.numel()


# ------------------------------------------------------------------------------------------- main

def main():
    global LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(REPO, ".testbed", "out"))
    ap.add_argument("--data", default=os.path.join(REPO, ".testbed", "data"))
    ap.add_argument("--ckpt-dir", default=os.path.join(REPO, ".testbed", "checkpoint"))
    ap.add_argument("--config", default=os.path.join(HERE, "config.json"))
    ap.add_argument("--preset", default="gpu", choices=["gpu", "smoke"])
    ap.add_argument("--train-budget", type=float, default=450,
                    help="GPU-seconds of training in this run (wall clock: this / the number of processes)")
    ap.add_argument("--total-budget", type=float, default=555, help="wall-clock seconds for the whole process")
    ap.add_argument("--eval-reserve", type=float, default=80, help="seconds kept for export + eval")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--eval-only", action="store_true", help="evaluate --ckpt-dir/ckpt.pt, no training")
    ap.add_argument("--chain", default=None, help="follow config chains[NAME] (one entry per run) instead of "
                    "curriculum / resume_curriculum")
    ap.add_argument("--skip-eval", action="store_true",
                    help="after training, export only (no HF parity check, no held-out evaluation)")
    args = ap.parse_args()

    device = dist_init(args.device)
    os.makedirs(args.out, exist_ok=True)
    if RANK == 0:
        LOG = open(os.path.join(args.out, "train_log.txt"), "a")
    cfg = json.load(open(args.config))
    mc, tc = cfg["model"], cfg["train"]
    if args.preset == "smoke":
        mc, tc = merge(mc, cfg["smoke"].get("model", {})), merge(tc, cfg["smoke"].get("train", {}))
    amp = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    log(f"start: torch {torch.__version__}, device {device}"
        f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, sdpa {M.HAS_SDPA}, "
        f"preset {args.preset}, out {args.out}" + (f", {WORLD} processes" if WORLD > 1 else ""))
    deadline = T0 + args.total_budget

    # ---- resume or start
    ck_path = os.path.join(args.ckpt_dir, "ckpt.pt")
    ck = None
    if os.path.exists(ck_path):
        ck = torch.load(ck_path, map_location="cpu")
        if ck.get("format") != CKPT_FORMAT:
            sys.exit(f"{ck_path}: not a {CKPT_FORMAT} checkpoint")
        tok_json = zlib.decompress(ck["tokenizer_json_zlib"]).decode("utf-8")
        mc = ck["model_config"]
        log(f"resuming {ck_path}: step {ck['step']}, {ck['tokens'] / 1e6:.1f}M tokens, "
            f"{ck['train_seconds']:.0f}s trained in {ck['run_index'] + 1} run(s)")
    elif args.eval_only:
        sys.exit(f"--eval-only needs {ck_path}")
    elif RANK > 0:  # rank 0 trains the tokenizer (below) and hands it over
        tok_json = None
    else:
        texts = [read(os.path.join(args.data, f"{s}.train.txt")) for s in SOURCES]
        if tc.get("tokenizer_train_chars"):
            texts = [t[:tc["tokenizer_train_chars"]] for t in texts]
        try:
            import tokenizers  # noqa: F401
            tok_json = TU.train_hf(texts, mc["vocab_size"])
            how = "HF tokenizers"
        except ImportError:
            if args.preset != "smoke":
                sys.exit("the real run needs Hugging Face `tokenizers`")
            tok_json = TU.train_fallback(texts, mc["vocab_size"])
            how = "pure-Python fallback (smoke test only)"
        log(f"trained the byte-level BPE tokenizer ({how}), vocab {mc['vocab_size']}")
    if WORLD > 1 and not ck:
        box = [tok_json]
        DIST.broadcast_object_list(box, 0)
        tok_json = box[0]
    tok = TU.Tok(tok_json)
    if tok.vocab_size > mc["vocab_size"]:
        sys.exit(f"tokenizer has {tok.vocab_size} ids > vocab_size {mc['vocab_size']}")
    run_index = ck["run_index"] + 1 if ck else 0
    if args.chain and not args.eval_only:
        if ck and ck.get("chain") != args.chain:
            sys.exit(f"{ck_path} was not trained by chain {args.chain!r} (its chain: {ck.get('chain')})")
        tc = chain_run(tc, args.chain, run_index)
        log(f"chain {args.chain}: run {run_index + 1} of {len(tc['chains'][args.chain])}")

    # ---- data
    cc = tc.get("corpus_chars")
    train_c = {s: T.Corpus(s, read(os.path.join(args.data, f"{s}.train.txt")), tok, cc) for s in SOURCES}
    held_c = {s: T.Corpus(s, read(os.path.join(args.data, f"{s}.heldout.txt")), tok, cc) for s in SOURCES}
    words = T.Words(w for w in read(os.path.join(args.data, "words.txt")).split() if w)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # before the workers fork
    log("corpora (tokens): " + ", ".join(f"{s} {len(train_c[s]) / 1e6:.2f}M train / {len(held_c[s]) / 1e3:.0f}K held-out"
                                           for s in SOURCES))

    # ---- model
    cfgm = M.Config(**mc)
    model = M.LlamaLM(cfgm)
    if ck:
        model.load_state_dict({k: v.float() for k, v in ck["weights"].items()})
    else:
        model.init_weights(tc["seed"])
    model.to(device)
    if WORLD > 1:  # one starting point, whatever each process initialised or loaded
        for t in model.state_dict().values():
            DIST.broadcast(t, 0)
    log(f"model: {model.num_params() / 1e6:.3f}M params ({model.num_params() * 2 / 2 ** 20:.2f} MiB bf16), "
        f"{json.dumps(mc)}")

    state = {"step": ck["step"] if ck else 0, "tokens": ck["tokens"] if ck else 0,
             "train_seconds": ck["train_seconds"] if ck else 0.0, "run_index": run_index,
             "runs": ck["runs"] if ck else [], "train_config": tc, "chain": args.chain or (ck or {}).get("chain")}
    ck_out = os.path.join(args.out, "checkpoint", "ckpt.pt")
    # Evaluation haystacks: the held-out texts as they are and whitespace-flattened, as shadowkv eval lays out
    # RULER's essays (the engine's runs found answers cut short on flattened text at 16K-32K that the unflattened
    # evaluation did not show).
    held_eval = dict(held_c)
    held_eval.update({f"{s}_flat": T.Corpus(s, read(os.path.join(args.data, f"{s}.heldout.txt")), tok, cc, flat=True)
                      for s in SOURCES})
    quick = eval_set(tok, held_eval, words, tc["quick_eval_lengths"], tc["quick_eval_samples"], tc["eval_seed"] + 1)

    final_loss = None
    if not args.eval_only:
        flat_c = {s: T.Corpus(s, read(os.path.join(args.data, f"{s}.train.txt")), tok, cc, flat=True) for s in SOURCES}
        final_loss = train(model, tok, tok_json, train_c, words, tc, state, device, amp, args, quick, ck_out,
                           resumed=ck is not None, deadline=deadline, flat=flat_c)
    if WORLD > 1:
        DIST.barrier()
        DIST.destroy_process_group()
        if RANK > 0:
            return

    # ---- export + eval
    mdir = os.path.join(args.out, "model")
    M.export_hf(model, mdir, tok_json, TU.tokenizer_config_json(mc["max_position_embeddings"]),
                tok.bos_id, tok.eos_id)
    log(f"exported {mdir} ({os.path.getsize(os.path.join(mdir, 'model.safetensors')) / 2 ** 20:.2f} MiB safetensors)")
    trained = ((f"final loss {final_loss['loss']:.3f} (lm {final_loss['lm']:.3f}, answer {final_loss['ans']:.3f}), "
                if final_loss else "") +
               f"{state['tokens'] / 1e6:.1f}M tokens in {state['train_seconds']:.0f} GPU-s over {len(state['runs'])} "
               f"run(s), step {state['step']}")
    if args.skip_eval:
        log(f"SUMMARY: {trained}; evaluation skipped (--skip-eval)")
        log(f"done in {time.time() - T0:.0f}s")
        return
    parity = hf_parity(mdir, held_c["pg"], tok, device, deadline)
    lengths = tc["eval_lengths"]
    samples = eval_set(tok, held_eval, words, lengths, tc["eval_samples"], tc["eval_seed"])
    te = time.time()
    acc = evaluate(model, samples, device, amp, deadline=deadline - 5)
    n_done = sum(len(v) for v in acc.values())
    log(f"eval: {time.time() - te:.1f}s, {tc['eval_samples']} samples per task and length, held-out haystacks, "
        f"{'bf16 autocast' if amp else 'fp32'}, teacher-forced exact match per value")
    tbl = table(acc, lengths)
    result = {"accuracy": {t: {str(L): v for L, v in d.items()} for t, d in acc.items()}, "table": tbl,
              "eval_samples": tc["eval_samples"], "eval_lengths": lengths, "eval_seed": tc["eval_seed"],
              "final_loss": final_loss, "step": state["step"], "tokens": state["tokens"],
              "train_seconds": state["train_seconds"], "runs": state["runs"], "hf_parity": parity,
              "params": model.num_params(), "model_config": mc, "n_task_lengths_done": n_done}
    with open(os.path.join(args.out, "eval.json"), "w") as f:
        json.dump(result, f, indent=1)
    log(f"SUMMARY: {trained}; HF parity: {parity}")
    log("accuracy (held-out):\n" + tbl)
    log(f"done in {time.time() - T0:.0f}s")


def train(model, tok, tok_json, corpora, words, tc, state, device, amp, args, quick, ck_out, resumed, deadline,
          flat=None):
    progress = mp.Value("d", 0.0, lock=False)
    chained = "chain" in tc  # the chain entry's curriculum and rate (chain_run), resumed or not
    if resumed and not chained and "resume_curriculum" in tc:  # a resumed run: its own phases
        tc = dict(tc, curriculum=tc["resume_curriculum"])
    floor = tc.get("resume_curriculum_floor", 0.0) if resumed and not chained else 0.0
    progress.value = floor
    if WORLD > 1:  # each process its share of every step, from its own stream
        longest = max(int(L) for ph in tc["curriculum"] for L in ph["lengths"])
        if tc["tokens_per_step"] // WORLD < longest:
            sys.exit(f"{WORLD} processes: tokens_per_step / {WORLD} = {tc['tokens_per_step'] // WORLD} is shorter "
                     f"than the curriculum's longest sequence ({longest}); use fewer GPUs")
        tc = dict(tc, tokens_per_step=tc["tokens_per_step"] // WORLD)
    seed = [tc["seed"], state["run_index"]]
    ds = Batches(tc, tok, corpora, words, progress, seed + [1 + RANK], length_seed=seed + [0], flat=flat)
    cpus = max(1, (os.cpu_count() or 2) - 2) // WORLD
    workers = args.workers if args.workers is not None else (min(12, cpus) if device.type == "cuda" else 0)
    kw = dict(batch_size=None, num_workers=workers, pin_memory=device.type == "cuda")
    if workers:
        kw.update(prefetch_factor=4, persistent_workers=True, multiprocessing_context="fork")
    it = iter(torch.utils.data.DataLoader(ds, **kw))

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 else decay).append(p)
    opt_kw = dict(lr=tc["lr"], betas=tuple(tc["betas"]), eps=1e-8)
    if device.type == "cuda" and int(torch.__version__.split(".")[0]) >= 2:
        opt_kw["fused"] = True
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], **opt_kw)
    if chained:
        peak, warm = tc["lr"] * tc["chain_lr_scale"], tc["warmup_steps"]
    else:
        peak = tc["lr"] * (tc["resume_lr_scale"] if resumed else 1.0)
        warm = tc["resume_warmup_steps"] if resumed else tc["warmup_steps"]

    t_start = time.time()
    budget = max(1.0, min(args.train_budget / WORLD, deadline - args.eval_reserve - t_start))  # wall clock
    params = list(model.parameters())
    log(f"training run {state['run_index']}: budget {budget:.0f}s"
        + (f" on {WORLD} processes ({budget * WORLD:.0f} GPU-s)" if WORLD > 1 else "")
        + f", peak lr {peak:g}, warmup {warm} steps, {workers} data workers"
        + (" per process" if WORLD > 1 else "")
        + f", {tc['tokens_per_step'] * WORLD} tokens/step, answer-loss weight {tc['answer_loss_weight']:g}"
        + f", curriculum from progress {floor}")
    step0, tok0 = state["step"], state["tokens"]
    last_log = last_eval = last_ck = t_start
    win = {"loss": 0.0, "lm": 0.0, "ans": 0.0, "n": 0, "tok": 0, "t": t_start, "lens": {}}
    tail = []
    rstep = 0
    p = 0.0
    while True:
        now = time.time()
        p = broadcast_host((now - t_start) / budget)  # rank 0's clock: one schedule, one last step
        if p >= 1.0:
            break
        progress.value = max(p, floor)
        lr = peak * (tc["min_lr_ratio"] + (1 - tc["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * p)))
        lr *= min(1.0, (rstep + 1) / warm)
        for g in opt.param_groups:
            g["lr"] = lr
        b = next(it)
        ids = b["ids"].to(device, non_blocking=True)
        lm = b["lm"].to(device, non_blocking=True)[:, 1:].reshape(-1)
        an2 = b["ans"].to(device, non_blocking=True)[:, 1:]
        an = an2.reshape(-1)
        task_ids = b["task"].to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            h = model.hidden(ids)
            logits = model.head(h[:, :-1])
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
        lm_loss = (ce * lm).sum() / lm.sum().clamp(min=1)
        ans_loss = (ce * an).sum() / an.sum().clamp(min=1)
        loss = lm_loss + tc["answer_loss_weight"] * ans_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if WORLD > 1:
            average_gradients(params)
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
        opt.step()
        rstep += 1
        state["step"] += 1
        n_tok = ids.numel() * WORLD  # every process's batch is this size
        state["tokens"] += n_tok
        if RANK > 0:
            continue  # the log window, evaluations and checkpoints are rank 0's
        L = ids.shape[1]
        win["lens"][L] = win["lens"].get(L, 0) + 1
        win["tok"] += n_tok
        win["n"] += 1
        d = torch.stack([loss.detach(), lm_loss.detach(), ans_loss.detach()])
        win["acc"] = d if "acc" not in win else win["acc"] + d
        # answer loss per task (sum over answer tokens, token count), to see which skills are learned
        with torch.no_grad():
            per_sample = (ce.detach().view_as(an2) * an2).sum(1)
            nt = len(TASK_INDEX)
            ts = torch.zeros(nt, device=device).index_add_(0, task_ids, per_sample)
            tn = torch.zeros(nt, device=device).index_add_(0, task_ids, an2.sum(1))
            win["task_ans"] = torch.stack([ts, tn]) if "task_ans" not in win else win["task_ans"] + torch.stack([ts, tn])
        now = time.time()
        if now - last_log >= tc["log_every_s"]:
            v = (win["acc"] / win["n"]).tolist()
            tail.append({"loss": v[0], "lm": v[1], "ans": v[2]})
            ta = win["task_ans"].tolist()
            per_task = " ".join(f"{t}:{ta[0][i] / ta[1][i]:.2f}" for t, i in TASK_INDEX.items() if ta[1][i] > 0)
            log(f"step {state['step']} p {p:.2f} lr {lr:.2e} loss {v[0]:.3f} lm {v[1]:.3f} ans {v[2]:.3f} "
                f"tok/s {win['tok'] / (now - win['t']) / 1e3:.0f}K lens {dict(sorted(win['lens'].items()))} "
                f"tokens {state['tokens'] / 1e6:.1f}M")
            log(f"  answer loss per task: {per_task}")
            win = {"n": 0, "tok": 0, "t": now, "lens": {}}
            last_log = now
        if now - last_eval >= tc["quick_eval_every_s"]:
            acc = evaluate(model, quick, device, amp)
            log("quick eval (held-out): " + ", ".join(
                f"{t} " + "/".join(f"{100 * acc[t][L]:.0f}" for L in sorted(acc[t])) for t in T.TASKS if t in acc)
                + f"  [% at {tc['quick_eval_lengths']}]")
            last_eval = time.time()
            win["t"] += last_eval - now  # do not count eval time in tokens/s
        if now - last_ck >= tc["ckpt_every_s"]:
            state["train_seconds"] += (now - t_start - state.get("_counted", 0.0)) * WORLD  # GPU-seconds
            state["_counted"] = now - t_start
            save_ckpt(ck_out, model, tok_json, {k: v for k, v in state.items() if k != "_counted"})
            last_ck = time.time()
    el = time.time() - t_start
    if WORLD > 1:  # the processes must hold one model: a sum of every weight, compared
        with torch.no_grad():
            c = torch.stack([sum(p.double().sum() for p in params)] * 2).to(device)
            c[1] = -c[1]
            DIST.all_reduce(c, op=DIST.ReduceOp.MAX)
        if float(c[0] + c[1]) != 0.0:
            sys.exit(f"rank {RANK}: the processes' weights differ after training (sums {float(c[0])!r} vs "
                     f"{float(-c[1])!r})")
    state["train_seconds"] += (el - state.pop("_counted", 0.0)) * WORLD
    run_tokens = state["tokens"] - tok0
    final = tail[-1] if tail else ({"loss": float(loss), "lm": float(lm_loss), "ans": float(ans_loss)})
    if RANK > 0:
        return final
    run = {"run": state["run_index"], "steps": state["step"] - step0, "tokens": run_tokens,
           "seconds": round(el, 1), "tokens_per_s": round(run_tokens / el),
           "final_loss": final, "device": torch.cuda.get_device_name(device) if amp else "cpu"}
    if WORLD > 1:  # seconds stay wall clock; the run's cost is gpu_seconds
        run.update(processes=WORLD, gpu_seconds=round(el * WORLD, 1))
    state["runs"].append(run)
    mib = save_ckpt(ck_out, model, tok_json, state)
    log(f"training done: {state['step'] - step0} steps, {run_tokens / 1e6:.1f}M tokens in {el:.0f}s "
        + (f"on {WORLD} processes ({el * WORLD:.0f} GPU-s) " if WORLD > 1 else "")
        + f"({run_tokens / el / 1e3:.0f}K tok/s); checkpoint {ck_out} ({mib:.2f} MiB)")
    return final


def hf_parity(mdir, corpus, tok, device, deadline, n=8192):
    """Logits of transformers' LlamaForCausalLM on the exported directory vs this implementation (fp32)."""
    try:
        import transformers
        from transformers import LlamaForCausalLM
    except ImportError:
        return "skipped (no transformers)"
    if time.time() > deadline - 60:
        return "skipped (time)"
    try:
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        try:
            hf = LlamaForCausalLM.from_pretrained(mdir, dtype=torch.float32, attn_implementation="sdpa")
        except TypeError:
            hf = LlamaForCausalLM.from_pretrained(mdir, torch_dtype=torch.float32, attn_implementation="sdpa")
        hf.to(device).eval()
        ours = M.load_exported(mdir).to(device).eval()
        toks, _ = corpus.window(np.random.default_rng(7), n - 1)
        ids = torch.tensor([[tok.bos_id] + toks.tolist()], device=device)
        with torch.no_grad():
            a = hf(ids).logits[0].float()
            b = ours(ids)[0].float()
        diff = (a - b).abs().max().item()
        agree = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
        theta = getattr(hf.config, "rope_theta", None) or (getattr(hf.config, "rope_parameters", None) or {}).get("rope_theta")
        torch.backends.cuda.matmul.allow_tf32 = tf32
        del hf
        msg = f"transformers {transformers.__version__}: max |logit diff| {diff:.2e} over {n} tokens (fp32), argmax agree {agree:.4f}, rope_theta {theta}"
        log("HF parity: " + msg)
        return msg
    except Exception as e:  # never lose the run to the check
        log(f"HF parity check failed: {type(e).__name__}: {e}")
        return f"failed: {type(e).__name__}: {e}"


if __name__ == "__main__":
    main()
