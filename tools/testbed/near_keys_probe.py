#!/usr/bin/env python3
"""Does a model confuse keys that share a word? niah_multikey_2-style prompts (the haystack is needle lines of
other keys, one asked), laid out as `shadowkv eval` writes them, with the keys drawn from pools of different
overlap, each prompt run through `shadowkv generate` (greedy, full attention, CPU):

  engine160  the engine's 160 adjectives x 160 nouns (src/eval/words.cpp), as niah_multikey_2 draws them
  train      both words from the training word list (.testbed/data/words.txt, ~8K words): almost no distractor
             shares a word with the asked key
  small40    the first 40 adjectives x the first 40 nouns: many distractors share a word

A miss names the key whose number was answered. Prints one line per pool (and per miss); --json writes the
summary as one JSON object. Example (~10 s per prompt of ~9.5K tokens on 2 idle cores):
  python3 tools/testbed/near_keys_probe.py --model models/testbed --lines 450 --samples 16
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def engine_words():
    s = open(os.path.join(REPO, "src", "eval", "words.cpp")).read()
    adj = re.findall(r'"([^"]+)"', s[s.index("kAdjectives"):s.index("kNouns")])
    noun = re.findall(r'"([^"]+)"', s[s.index("kNouns"):s.index("adjectives()")])
    return adj, noun


def prompt_for(rng, firsts, seconds, n_lines):
    """-> (prompt text, asked key, its value, {value: key}); the asked key's needle at a random line, keys
    distinct."""
    keys = set()
    while len(keys) < n_lines + 1:
        keys.add(f"{rng.choice(firsts)}-{rng.choice(seconds)}")
    keys = sorted(keys)
    rng.shuffle(keys)
    values = [str(rng.randint(1000000, 9999999)) for _ in keys]
    lines = [f"One of the special magic numbers for {k} is: {v}." for k, v in zip(keys, values)]
    at = rng.randint(0, n_lines)
    order = lines[1:at + 1] + [lines[0]] + lines[at + 1:]
    ask = keys[0]
    text = ("Some special magic numbers are hidden within the following text. Make sure to memorize it. "
            "I will quiz you about the numbers afterwards.\n" + "\n".join(order) +
            f"\nWhat is the special magic number for {ask} mentioned in the provided text?"
            f" The special magic number for {ask} mentioned in the provided text is")
    return text, ask, values[0], dict(zip(values, keys))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=os.path.join(REPO, "models", "testbed"), help="model directory")
    ap.add_argument("--binary", default=os.path.join(REPO, "build", "shadowkv"), help="the shadowkv binary")
    ap.add_argument("--words", default=os.path.join(REPO, ".testbed", "data", "words.txt"),
                    help="training word list (prepare_data.py writes it)")
    ap.add_argument("--lines", type=int, default=450, help="needle lines per prompt (450: ~9.5K tokens)")
    ap.add_argument("--samples", type=int, default=16, help="prompts per pool")
    ap.add_argument("--pools", default="engine160,train,small40", help="comma-separated pools")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = ap.parse_args()

    adj, noun = engine_words()
    pools = {"engine160": (adj, noun), "small40": (adj[:40], noun[:40])}
    if "train" in args.pools.split(","):
        if not os.path.exists(args.words):
            sys.exit(f"near_keys_probe: {args.words} not found (run tools/testbed/prepare_data.py)")
        words = open(args.words).read().split()
        pools["train"] = (words, words)
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "prompt.txt")
        for name in args.pools.split(","):
            if name not in pools:
                sys.exit(f"near_keys_probe: unknown pool {name!r} (engine160, train, small40)")
            firsts, seconds = pools[name]
            hits, shared, misses = 0, 0, []
            for i in range(args.samples):
                rng = random.Random(1000 * i + 7)
                text, ask, want, key_of = prompt_for(rng, firsts, seconds, args.lines)
                a, n = ask.split("-")
                shared += sum(1 for k in key_of.values() if k != ask and (k.split("-")[0] == a or k.split("-")[1] == n))
                with open(path, "w") as f:
                    f.write(text)
                env = dict(os.environ, OMP_WAIT_POLICY="passive")
                out = subprocess.run([args.binary, "generate", "--model", args.model, "--prompt-file", path,
                                      "--max-tokens", "9", "--json"], capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    sys.exit(f"near_keys_probe: shadowkv generate failed: {out.stderr.strip()[-500:]}")
                answer = json.loads(out.stdout)["text"]
                if want in answer:
                    hits += 1
                    continue
                got = re.search(r"\d{7}", answer)
                miss = {"asked": ask, "answer": answer, "key_answered": key_of.get(got.group()) if got else None}
                misses.append(miss)
                if not args.json:
                    print(f"  {name} miss: asked {ask}, answered {answer!r} (the number of {miss['key_answered']})",
                          flush=True)
            summary[name] = {"correct": hits, "samples": args.samples, "lines": args.lines,
                             "sharing_a_word_per_prompt": shared / args.samples, "misses": misses}
            if not args.json:
                print(f"{name}: {hits}/{args.samples} correct; distractors sharing a word with the asked key: "
                      f"{shared / args.samples:.1f} per prompt", flush=True)
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
