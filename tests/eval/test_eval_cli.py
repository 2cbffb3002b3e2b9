#!/usr/bin/python3
"""End-to-end tests of `shadowkv eval` on stories15M (context 256: the scores are near zero, which is fine).

Run by ctest (see CMakeLists.txt here), or by hand:
  /usr/bin/python3 tests/eval/test_eval_cli.py --shadowkv build/shadowkv --models models

Every subprocess has a timeout and runs in a temporary directory (the default results file lands there). Errors
must be one stderr line "error: ..." with exit code 1. Python standard library only.
"""

import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

SHADOWKV = None
MODELS = None
TIMEOUT_S = 120
SHADOW_FLAGS = ["--sparse-budget", "64", "--rank", "32"]
BUDGET = {"niah_single_1": 128, "vt": 30}


def heat_color(score):
    """The heatmap's colour scale (src/eval/heatmap.cpp)."""
    red, yellow, green = (0xF0, 0x49, 0x6E), (0xEB, 0xB8, 0x39), (0x0C, 0xD7, 0x9F)
    s = min(max(score, 0.0), 100.0) / 100.0
    a, b, t = (red, yellow, s * 2) if s < 0.5 else (yellow, green, (s - 0.5) * 2)
    return bytes(int(x + (y - x) * t + 0.5) for x, y in zip(a, b))


def model_dir():
    return os.path.join(MODELS, "stories15M")


class EvalCliTest(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="skv-eval-cli-")
        self.addCleanup(self.tmp.cleanup)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            if not os.path.isfile(os.path.join(model_dir(), name)):
                self.fail(f"{model_dir()} is incomplete (missing {name}): run scripts/setup.sh")

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def run_cli(self, *args, timeout=TIMEOUT_S):
        cmd = [SHADOWKV, "eval"] + [str(a) for a in args]
        env = dict(os.environ)
        env.pop("SHADOWKV_MODEL", None)
        try:
            p = subprocess.run(cmd, cwd=self.tmp.name, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            self.fail(f"shadowkv hung: {' '.join(cmd)}")
        out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        if p.returncode < 0:
            self.fail(f"shadowkv crashed ({signal.Signals(-p.returncode).name}): {' '.join(cmd)}\n{err}")
        self.last = f"\n  command: {' '.join(cmd)}\n  exit: {p.returncode}\n  stdout: {out[:3000]}\n  stderr: {err[:3000]}"
        return p.returncode, out, err

    def ok(self, *args):
        code, out, err = self.run_cli(*args)
        self.assertEqual(code, 0, f"expected success{self.last}")
        self.assertNotIn("error:", err, self.last)
        return out, err

    def error(self, args, *substrings, code=1):
        rc, out, err = self.run_cli(*args)
        self.assertEqual(rc, code, f"expected exit {code}{self.last}")
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, f"expected one stderr line{self.last}")
        self.assertTrue(lines[0].startswith("error: "), self.last)
        for s in substrings:
            self.assertIn(s, lines[0], self.last)
        self.assertEqual(out, "", self.last)
        return lines[0]

    def records(self, name="eval-results.jsonl"):
        with open(self.path(name)) as f:
            lines = [json.loads(line) for line in f]
        return [r for r in lines if r["type"] == "settings"], [r for r in lines if r["type"] == "result"]

    def base_args(self, samples=2):
        return ["--model", model_dir(), "--tasks", "niah_single_1,vt", "--context", "256", "--samples", samples,
                "--attention", "full,shadowkv"] + SHADOW_FLAGS

    # -----------------------------------------------------------------------------------------------------------

    def test_runs_end_to_end_and_resumes(self):
        out, err = self.ok(*self.base_args())
        # The table: task x context, one column per method, "score (samples)", then the average.
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^task\s+context\s+full\s+shadowkv$", self.last)
        for task in ("niah_single_1", "vt"):
            row = [l for l in lines if l.startswith(task + " ")]
            self.assertEqual(len(row), 1, self.last)
            self.assertRegex(row[0], r"^\S+\s+256\s+\d+\.\d \(2\)\s+\d+\.\d \(2\)$", self.last)
        self.assertTrue(any(l.startswith("average") and l.count("(4)") == 2 for l in lines), self.last)
        unavailable = [l for l in lines if l.startswith("unavailable")]
        self.assertEqual(len(unavailable), 1, self.last)
        self.assertIn("qa_1", unavailable[0])
        self.assertIn("qa_2", unavailable[0])
        self.assertIn("eval-results.jsonl", out)

        settings, results = self.records()
        self.assertEqual(len(settings), 1)
        self.assertEqual(settings[0]["sparse-budget"], 64)
        self.assertEqual(settings[0]["rank"], 32)
        self.assertEqual(len(results), 8)  # 2 tasks x 2 samples x 2 methods
        by_sample = {}
        for r in results:
            self.assertEqual(r["prompt_tokens"] + BUDGET[r["task"]], 256, r)
            self.assertLessEqual(r["generated_tokens"], BUDGET[r["task"]])
            self.assertIn(r["finish"], ("stop", "length"))
            self.assertTrue(0.0 <= r["score"] <= 1.0)
            by_sample.setdefault((r["task"], r["sample"]), {})[r["method"]] = r["prompt_hash"]
        for key, hashes in by_sample.items():
            self.assertEqual(hashes["full"], hashes["shadowkv"], f"methods ran different prompts for {key}")
        self.assertNotEqual(by_sample[("vt", 0)]["full"], by_sample[("vt", 1)]["full"])

        # The same command again: everything is resumed, nothing appended.
        out2, err2 = self.ok(*self.base_args())
        self.assertIn("resumed: 8 of 8", err2)
        self.assertEqual(len(self.records()[1]), 8)
        self.assertEqual(out2, out)

        # One more sample: only its runs are made.
        _, err3 = self.ok(*self.base_args(samples=3))
        self.assertIn("resumed: 8 of 12", err3)
        self.assertIn("ran 4", err3)
        self.assertEqual(self.records()[1][:8], results)

        # Other ShadowKV settings are refused, naming the flag.
        self.error(self.base_args()[:-4] + ["--sparse-budget", "32", "--rank", "32"], "--sparse-budget 64",
                   "--sparse-budget 32", "--out")
        self.error(self.base_args() + ["--seed", "7"], "--seed 42", "--seed 7")

        # --json: the summary as one object.
        out, _ = self.ok(*self.base_args(), "--json")
        self.assertEqual(len(out.splitlines()), 1)
        summary = json.loads(out)
        self.assertEqual(summary["ran"], 0)
        self.assertEqual(summary["resumed"], 8)
        self.assertEqual(len(summary["cells"]), 4)
        self.assertEqual({c["samples"] for c in summary["cells"]}, {2})
        self.assertEqual(set(summary["average"]), {"full", "shadowkv"})
        self.assertEqual(summary["unavailable_tasks"], ["qa_1", "qa_2"])

        # --first-sample: sample 2 alone, already in the file (the third sample run above), counted alone.
        out, err = self.ok(*self.base_args(samples=3), "--first-sample", "2", "--json")
        self.assertIn("4 runs (2 task(s) x 1 context(s) x 1 sample(s) x 2 method(s))", err)
        summary = json.loads(out)
        self.assertEqual((summary["ran"], summary["resumed"]), (0, 4))
        self.assertEqual({c["samples"] for c in summary["cells"]}, {1})

    def test_report_sums_the_shadowkv_diagnostics_per_task(self):
        out, _ = self.ok(*self.base_args(samples=1), "--report", "--json")
        reports = json.loads(out)["report"]
        self.assertEqual({(r["task"], r["context"]) for r in reports}, {("niah_single_1", 256), ("vt", 256)})
        for r in reports:
            self.assertEqual(r["runs"], 1)
            self.assertEqual(len(r["layers"]), 6)  # stories15M has 6 layers
            for layer in r["layers"]:
                self.assertGreater(layer["steps"], 0)
                self.assertLessEqual(layer["attended_mass"], layer["chunk_oracle_mass"] + 1e-9)
                self.assertLessEqual(layer["chunk_oracle_mass"], layer["best_mass"] + 1e-9)
        # Resumed runs are not measured again; the table form says so.
        out, _ = self.ok(*self.base_args(samples=1), "--report")
        self.assertIn("report: no ShadowKV run was made now", out)
        self.error(["--model", model_dir(), "--tasks", "vt", "--context", "256", "--attention", "full", "--report"],
                   "--report", "shadowkv")

    def test_out_file(self):
        _, err = self.ok("--model", model_dir(), "--tasks", "vt", "--context", "256", "--samples", "1",
                         "--attention", "full", "--out", "other.jsonl")
        self.assertTrue(os.path.exists(self.path("other.jsonl")))
        self.assertFalse(os.path.exists(self.path("eval-results.jsonl")))
        self.assertIn("eval: 1 runs", err)
        settings, results = self.records("other.jsonl")
        self.assertEqual(len(results), 1)
        self.assertNotIn("sparse-budget", settings[0], "no shadowkv run: its settings stay open")

    def test_depth_sweep_writes_a_heatmap(self):
        out, _ = self.ok("--model", model_dir(), "--tasks", "niah_single_1", "--context", "256", "--samples", "1",
                         "--sweep-depth", "3", "--heatmap", "sweep.png", *SHADOW_FLAGS)
        self.assertIn("niah_single_1, full: accuracy by needle depth", out)
        self.assertIn("niah_single_1, shadowkv: accuracy by needle depth", out)
        for d in ("0%", "50%", "100%"):
            self.assertRegex(out, rf"(?m)^\s*{d}\s+\d+\.\d$", self.last)
        _, results = self.records()
        self.assertEqual(sorted({r["depth"] for r in results}), [0.0, 0.5, 1.0])
        self.assertEqual(len(results), 6)
        # The PNG decodes with zlib: chunk CRCs, the IDAT stream, the scanline count.
        with open(self.path("sweep.png"), "rb") as f:
            png = f.read()
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        pos, idat, chunks = 8, b"", []
        while pos < len(png):
            (n,) = struct.unpack(">I", png[pos:pos + 4])
            kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + n]
            (crc,) = struct.unpack(">I", png[pos + 8 + n:pos + 12 + n])
            self.assertEqual(zlib.crc32(kind + data), crc, kind)
            chunks.append(kind)
            if kind == b"IHDR":
                width, height, depth, color = struct.unpack(">IIBB", data[:10])
                self.assertEqual((depth, color), (8, 2))
            if kind == b"IDAT":
                idat += data
            pos += 12 + n
        self.assertEqual(chunks[0], b"IHDR")
        self.assertEqual(chunks[-1], b"IEND")
        raw = zlib.decompress(idat)
        self.assertEqual(len(raw), height * (1 + 3 * width))
        self.assertGreater(width, 300)
        # Every cell is painted in its score's colour on the red (0), yellow (50), green (100) scale.
        pixels = {raw[i:i + 3] for y in range(height) for i in range(y * (1 + 3 * width) + 1,
                                                                      (y + 1) * (1 + 3 * width), 3)}
        for r in results:
            self.assertIn(heat_color(100.0 * r["score"]), pixels, r)

        self.error(["--model", model_dir(), "--tasks", "niah_multikey_1", "--context", "256", "--sweep-depth", "3"],
                   "single-needle")
        self.error(["--model", model_dir(), "--context", "256", "--sweep-depth", "1"], "--sweep-depth")

    def test_errors(self):
        msg = self.error(["--model", model_dir(), "--tasks", "niah_single_1,bogus", "--context", "256"],
                         "unknown task 'bogus'")
        for t in ("niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
                  "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe"):
            self.assertIn(t, msg)
        self.error(["--model", model_dir(), "--tasks", "qa_1", "--context", "256"], "qa_1", "unavailable", "SQuAD")
        self.error(["--model", model_dir(), "--tasks", "vt", "--context", "256", "--device", "cuda"],
                   "built without CUDA")
        self.error(["--model", model_dir(), "--tasks", "vt", "--context", "512"], "512",
                   "context limit of 256", "--context-limit")
        self.error(["--model", model_dir(), "--tasks", "vt", "--context", "4kb"], "4kb")
        self.error(["--model", model_dir(), "--tasks", "vt", "--context", "256", "--attention", "full,sparse"],
                   "sparse")
        self.error(["--model", model_dir(), "--tasks", "vt", "--context", "256", "--samples", "0"], "--samples")
        for first in ("2", "-1"):
            self.error(["--model", model_dir(), "--tasks", "vt", "--context", "256", "--samples", "2",
                        "--first-sample", first], "--first-sample", "[0, 1]")
        self.error(["--model", model_dir(), "--tasks", "vt", "--context", "256", "--sparse-budget", "-8"],
                   "sparse")
        self.error(["--model", model_dir(), "--tasks", "niah_single_2", "--context", "256", "--haystack",
                    "/nonexistent/h.txt"], "/nonexistent/h.txt")
        # A task whose fixed text does not fit in 256 tokens.
        self.error(["--model", model_dir(), "--tasks", "niah_multikey_1", "--context", "256", "--samples", "1",
                    "--attention", "full", "--haystack", self.write_haystack()],
                   "does not fit in a context of 256")

    def write_haystack(self):
        p = self.path("hay.txt")
        with open(p, "w") as f:
            f.write("The cat sat on the mat. It was warm and quiet there. " * 400)
        return p

    def test_context_limit_allows_longer_contexts_with_a_warning(self):
        code, out, err = self.run_cli("--model", model_dir(), "--tasks", "vt", "--context", "300", "--samples", "1",
                                      "--attention", "full", "--context-limit", "300")
        self.assertEqual(code, 0, self.last)
        self.assertIn("warning: --context-limit 300 exceeds the model's trained context of 256", err)
        self.assertRegex(out, r"(?m)^vt\s+300\s+\d+\.\d \(1\)$")

    def test_essay_haystack_file(self):
        out, _ = self.ok("--model", model_dir(), "--tasks", "niah_single_2", "--context", "256", "--samples", "1",
                         "--attention", "full", "--haystack", self.write_haystack())
        self.assertRegex(out, r"(?m)^niah_single_2\s+256\s+\d+\.\d \(1\)$")
        settings, _ = self.records()
        self.assertEqual(settings[0]["haystack"], self.path("hay.txt"))
        self.assertEqual(len(settings[0]["haystack-text"]), 16)

    def test_list_tasks_and_help(self):
        out, _ = self.ok("--list-tasks")
        rows = {l.split()[0]: l for l in out.splitlines()}
        self.assertEqual(len(rows), 13)
        self.assertIn("unavailable", rows["qa_1"])
        self.assertIn("SQuAD", rows["qa_1"])
        self.assertIn("HotpotQA", rows["qa_2"])
        self.assertRegex(rows["niah_single_1"], r"available\s+128 tokens\s+string_match_all")
        out, _ = self.ok("--list-tasks", "--json")
        tasks = json.loads(out)
        self.assertEqual([t["name"] for t in tasks if not t["available"]], ["qa_1", "qa_2"])
        self.assertEqual({t["name"]: t["max_new_tokens"] for t in tasks}["cwe"], 120)
        out, _ = self.ok("--help")
        for flag in ("--tasks", "--context", "--samples", "--attention", "--sparse-budget", "--rank", "--chunk-size",
                     "--outlier-chunks", "--local-chunks", "--haystack", "--sweep-depth", "--heatmap", "--out",
                     "--json", "--device", "--context-limit", "--chat-template", "--seed"):
            self.assertIn(flag, out)


def main():
    global SHADOWKV, MODELS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shadowkv", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--shared-data", default=None, help="unused; accepted like tests/cli")
    args, rest = ap.parse_known_args()
    SHADOWKV = os.path.abspath(args.shadowkv)
    MODELS = os.path.abspath(args.models)
    if not (os.path.isfile(SHADOWKV) and os.access(SHADOWKV, os.X_OK)):
        print(f"FAIL: {SHADOWKV} is not an executable (build the shadowkv target)", file=sys.stderr)
        return 1
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
