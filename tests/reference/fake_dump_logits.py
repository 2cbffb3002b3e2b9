#!/usr/bin/python3
"""Stand-in for skv_dump_logits, used only by test_reference_self.py to exercise check_forward.py without
the engine: computes the logits with the numpy reference (float32 output), optionally with a planted bug.

Usage: fake_dump_logits.py [--bug none|no_rope_scaling|kv_head_modulo|no_bias] MODEL_DIR TOKENS_CSV OUT_FILE
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_forward as rf  # noqa: E402


def main(argv):
    bug = "none"
    if len(argv) > 1 and argv[1] == "--bug":
        bug, argv = argv[2], [argv[0]] + argv[3:]
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    if not os.path.isdir(argv[1]):
        print(f"error: no model directory {argv[1]}", file=sys.stderr)
        return 1
    cfg, w = rf.load_config(argv[1]), rf.load_weights(argv[1])
    tokens = rf.read_tokens_csv(argv[2])
    if bug == "no_rope_scaling":
        cfg.pop("rope_scaling", None)
    elif bug == "no_bias":
        w = {k: (np.zeros_like(v) if k.endswith(".bias") else v) for k, v in w.items()}
    elif bug == "kv_head_modulo":
        # q head h reads kv head h % n_kv instead of h // group: permute the q heads (and o_proj's inputs).
        p = rf.Params(cfg)
        n_rep = p.n_heads // p.n_kv_heads
        # New slot s holds original head j = perm[s] and reads kv s // n_rep, which equals j % n_kv.
        perm = [(s % n_rep) * p.n_kv_heads + s // n_rep for s in range(p.n_heads)]
        rows = np.concatenate([np.arange(h * p.head_dim, (h + 1) * p.head_dim) for h in perm])
        w = dict(w)
        for i in range(p.n_layers):
            q = f"model.layers.{i}.self_attn.q_proj.weight"
            w[q] = w[q][rows]
            o = f"model.layers.{i}.self_attn.o_proj.weight"  # columns follow the q heads
            w[o] = w[o][:, rows]
    elif bug != "none":
        print(f"unknown bug {bug}", file=sys.stderr)
        return 2
    rf.forward(cfg, w, tokens).astype("<f4").tofile(argv[3])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
