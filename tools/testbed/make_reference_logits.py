#!/usr/bin/env python3
"""Reference logits of the testbed model at 8K tokens, computed by PyTorch in float32, for the engine's
equivalence test (tests/testbed). Writes tests/testbed/reference_logits_8k.bin:
  int32 n_tokens, int32 vocab, int32 n_positions, int32 tokens[n_tokens], int32 positions[n_positions],
  float32 logits[n_positions, vocab]
The token sequence is held-out Paul Graham essay text (../shared/data, not committed) tokenized by the
model's tokenizer; only the ids and the logits at a few positions are stored (the full [8192, 8192] would be
256 MiB). RoPE angles are computed in float64 before the cast to float32: at 8K positions a float32 angle is
off by up to ~5e-4 rad, which the engine (double angles) does not share.
Run with Debian's /usr/bin/python3 (python3-torch) from the repository root:
  /usr/bin/python3 tools/testbed/make_reference_logits.py
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import model as testbed_model  # noqa: E402
from tokenizer_util import Tok  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
N_TOKENS = 8192
POSITIONS = [0, 1, 7, 100, 1000, 2047, 4095, 6000, 8000, 8190, 8191]


def main():
    model_dir = os.path.join(REPO, "models", "testbed")
    torch.set_num_threads(2)
    m = testbed_model.load_exported(model_dir, torch.float32).eval()
    # float64 RoPE angles, then float32 cos/sin
    inv64 = m.inv_freq.to(torch.float64)

    def rope64(T, device):
        f = torch.outer(torch.arange(T, dtype=torch.float64), inv64)
        emb = torch.cat((f, f), dim=-1)
        return emb.cos().float()[None, None], emb.sin().float()[None, None]

    m.rope = rope64
    with open(os.path.join(REPO, "..", "shared", "data", "PaulGrahamEssays.json")) as f:
        text = json.load(f)["text"]
    tok = Tok(open(os.path.join(model_dir, "tokenizer.json")).read())
    ids = tok.encode(text[-200000:])[:N_TOKENS]  # the tail of the essays: held out from training
    assert len(ids) == N_TOKENS, len(ids)
    with torch.no_grad():
        h = m.hidden(torch.tensor([ids]))
        logits = m.head(h[0, POSITIONS])
    out = os.path.join(REPO, "tests", "testbed", "reference_logits_8k.bin")
    with open(out, "wb") as f:
        f.write(struct.pack("<3i", N_TOKENS, logits.shape[1], len(POSITIONS)))
        f.write(struct.pack(f"<{N_TOKENS}i", *ids))
        f.write(struct.pack(f"<{len(POSITIONS)}i", *POSITIONS))
        f.write(logits.contiguous().numpy().astype("<f4").tobytes())
    print(f"wrote {out}: {N_TOKENS} tokens, logits at {len(POSITIONS)} positions, torch {torch.__version__}")


if __name__ == "__main__":
    main()
