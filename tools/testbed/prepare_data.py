#!/usr/bin/env python3
"""Prepare the testbed's training text (run on a machine that has the Debian packages).

    apt-get install -y bible-kjv bible-kjv-text jargon-text
    python3 tools/testbed/prepare_data.py            # writes .testbed/data/

Three sources of natural English text, each cleaned into paragraphs separated by a blank line and split
into a training part (the first 92%) and a held-out part (the last 8%, used only for evaluation haystacks):

  kjv     the King James Bible (bible-kjv-text, dumped with the `bible` program of bible-kjv)
  jargon  the Jargon File 4.4.7 (jargon-text, /usr/share/doc/jargon-text/jargon.txt.gz)
  pg      Paul Graham's essays (../shared/data/PaulGrahamEssays.json, {"text": ...})

It also writes words.txt: lower-case words of 4-9 letters drawn from the training text, from which the
retrieval tasks build their keys ("adjective-noun" style pairs of two words, as RULER does).
Standard library only; deterministic.
"""
import argparse
import collections
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
HELDOUT_FRACTION = 0.08


def clean_paragraphs(paras):
    out = []
    for p in paras:
        p = re.sub(r"[ \t]*\n[ \t]*", " ", p.strip())
        p = re.sub(r"[ \t]{2,}", " ", p)
        if p:
            out.append(p)
    return out


def load_kjv():
    try:
        txt = subprocess.run(["bible", "gen1:1-rev22:21"], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"cannot dump the KJV with `bible` (apt-get install -y bible-kjv bible-kjv-text): {e}")
    # Chapters start with a header line ("Genesis 1"); verses with "  N text" and wrap to column 0.
    paras, cur = [], []
    for line in txt.splitlines():
        if not line.strip():
            continue
        m = re.match(r"^  (\d+) (.*)$", line)
        if m:
            if cur:
                paras.append(" ".join(cur))
            cur = [m.group(1) + " " + m.group(2).strip()]
        elif line.startswith(" ") or not cur or re.match(r"^[1-3]? ?[A-Z][A-Za-z ]+ \d+$", line.strip()):
            if cur:
                paras.append(" ".join(cur))
            cur = [line.strip()]
        else:
            cur.append(line.strip())
    if cur:
        paras.append(" ".join(cur))
    # One verse per line, a blank line before each chapter header.
    blocks, chapter = [], []
    for p in paras:
        if re.match(r"^[1-3]? ?[A-Z][A-Za-z ]+ \d+$", p):
            if chapter:
                blocks.append("\n".join(chapter))
            chapter = [p]
        else:
            chapter.append(p)
    if chapter:
        blocks.append("\n".join(chapter))
    return blocks


def load_jargon():
    path = "/usr/share/doc/jargon-text/jargon.txt.gz"
    if not os.path.exists(path):
        sys.exit(f"{path} missing (apt-get install -y jargon-text)")
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        txt = f.read()
    return clean_paragraphs(re.split(r"\n\s*\n", txt))


def load_pg():
    path = os.path.join(REPO, "..", "shared", "data", "PaulGrahamEssays.json")
    if not os.path.exists(path):
        path = "/work/shared/data/PaulGrahamEssays.json"
    with open(path, encoding="utf-8") as f:
        txt = json.load(f)["text"]
    return clean_paragraphs(re.split(r"\n\s*\n", txt))


def split(blocks):
    total = sum(len(b) for b in blocks)
    acc, cut = 0, len(blocks)
    for i, b in enumerate(blocks):
        if acc >= total * (1 - HELDOUT_FRACTION):
            cut = i
            break
        acc += len(b) + 2
    return "\n\n".join(blocks[:cut]) + "\n", "\n\n".join(blocks[cut:]) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, ".testbed", "data"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    manifest = {"heldout_fraction": HELDOUT_FRACTION, "sources": {}}
    words = collections.Counter()
    for name, loader in (("kjv", load_kjv), ("jargon", load_jargon), ("pg", load_pg)):
        train, held = split(loader())
        for part, text in (("train", train), ("heldout", held)):
            p = os.path.join(args.out, f"{name}.{part}.txt")
            with open(p, "w", encoding="utf-8") as f:
                f.write(text)
            manifest["sources"].setdefault(name, {})[part] = {
                "file": os.path.basename(p), "chars": len(text),
                "sha256": hashlib.sha256(text.encode()).hexdigest()}
        words.update(w for w in re.findall(r"\b[a-z]{4,9}\b", train))
        print(f"{name}: train {len(train)/1e6:.2f} MB, heldout {len(held)/1e6:.2f} MB")
    vocab = sorted(w for w, c in words.items() if c >= 5)
    with open(os.path.join(args.out, "words.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    manifest["words"] = len(vocab)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"words: {len(vocab)} -> {args.out}")


if __name__ == "__main__":
    main()
