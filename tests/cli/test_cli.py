#!/usr/bin/python3
"""End-to-end tests of the shadowkv command-line program.

Run by ctest (see CMakeLists.txt here), or by hand:
  /usr/bin/python3 tests/cli/test_cli.py --shadowkv build/shadowkv --models models --shared-data ../shared/data

Every subprocess has a timeout (a hang is a failure) and every exit status is checked for a signal (a crash is a
failure). Errors must be exactly one stderr line "error: ..." naming the object at fault, with exit code 1; usage
errors exit 2. Python standard library only.
"""

import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import unittest

SHADOWKV = None      # path of the program under test
MODELS = None        # the models folder (holds stories15M/ and stories15M-raw/)
SHARED_DATA = None   # /work/shared/data: the golden greedy ids

ERROR_TIMEOUT_S = 20    # an error must come quickly: nothing heavy runs before it
GENERATE_TIMEOUT_S = 60

# stories15M, as its config.json says (checked against config.json in InfoTest too).
STORIES_CONTEXT = 256


def model_dir():
    return os.path.join(MODELS, "stories15M")


def model_missing_message():
    d = model_dir()
    raw = os.path.join(MODELS, "stories15M-raw")
    return (
        f"the stories15M model directory {d} is missing or incomplete (it needs config.json, model.safetensors, "
        f"tokenizer.json). Create it with scripts/setup.sh, or from the llama2.c files: shadowkv convert-llama2c "
        f"--checkpoint {raw}/stories15M.bin --tokenizer {raw}/tokenizer.bin --out {d}"
    )


def require_model(case):
    d = model_dir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not os.path.isfile(os.path.join(d, name)):
            case.fail(model_missing_message())


class Result:
    def __init__(self, args, returncode, stdout, stderr):
        self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr

    def describe(self):
        return (f"\n  command: {' '.join(self.args)}\n  exit: {self.returncode}\n"
                f"  stdout: {self.stdout[:2000]!r}\n  stderr: {self.stderr[:2000]!r}")


class CliTestCase(unittest.TestCase):
    maxDiff = 4000

    def run_cli(self, *args, timeout=ERROR_TIMEOUT_S, env_extra=None):
        """Runs shadowkv; fails on a hang (timeout) or a crash (killed by a signal)."""
        cmd = [SHADOWKV] + [str(a) for a in args]
        env = dict(os.environ)
        env.pop("SHADOWKV_MODEL", None)  # every test says which model it uses
        if env_extra:
            env.update(env_extra)
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as e:
            self.fail(f"shadowkv hung: no exit within {timeout} s\n  command: {' '.join(cmd)}\n"
                      f"  stdout so far: {(e.stdout or b'')[:500]!r}\n  stderr so far: {(e.stderr or b'')[:500]!r}")
        r = Result(cmd, p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))
        if r.returncode < 0:
            try:
                name = signal.Signals(-r.returncode).name
            except ValueError:
                name = str(-r.returncode)
            self.fail(f"shadowkv crashed (killed by signal {name}){r.describe()}")
        return r

    def assert_ok(self, r):
        self.assertEqual(r.returncode, 0, f"expected success{r.describe()}")
        self.assertNotIn("error:", r.stderr, f"success but an error on stderr{r.describe()}")

    def assert_error(self, args, *substrings, code=1, timeout=ERROR_TIMEOUT_S, env_extra=None):
        """Runs shadowkv and checks: exit `code`, stderr exactly one line 'error: ...' containing every substring,
        nothing on stdout. Returns the message (after 'error: ')."""
        r = self.run_cli(*args, timeout=timeout, env_extra=env_extra)
        self.assertEqual(r.returncode, code, f"expected exit code {code}{r.describe()}")
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, f"expected exactly one line on stderr{r.describe()}")
        self.assertTrue(r.stderr.endswith("\n"), f"the error line must end with a newline{r.describe()}")
        self.assertTrue(lines[0].startswith("error: "), f"the stderr line must start with 'error: '{r.describe()}")
        for s in substrings:
            self.assertIn(s, lines[0], f"the error message should mention {s!r}{r.describe()}")
        self.assertEqual(r.stdout, "", f"nothing may reach stdout before an error{r.describe()}")
        return lines[0][len("error: "):]

    def assert_usage_error(self, args, *substrings):
        """A command-line usage error: exit 2, the offending flag or value named on stderr, nothing on stdout."""
        r = self.run_cli(*args)
        self.assertEqual(r.returncode, 2, f"expected usage error exit code 2{r.describe()}")
        self.assertNotEqual(r.stderr.strip(), "", f"a usage error must say what is wrong{r.describe()}")
        for s in substrings:
            self.assertIn(s, r.stderr, f"the usage error should mention {s!r}{r.describe()}")
        self.assertEqual(r.stdout, "", f"a usage error must not print to stdout{r.describe()}")
        return r

    def generate_json(self, *args, timeout=GENERATE_TIMEOUT_S):
        r = self.run_cli("generate", "--model", model_dir(), "--json", *args, timeout=timeout)
        self.assert_ok(r)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 1, f"--json must print exactly one line{r.describe()}")
        try:
            return json.loads(lines[0])
        except json.JSONDecodeError as e:
            self.fail(f"--json output is not JSON: {e}{r.describe()}")


# Memoised greedy run from BOS (several tests compare against it).
_greedy_cache = {}


def greedy_from_bos(case, n=200):
    if n not in _greedy_cache:
        _greedy_cache[n] = case.generate_json("--prompt", "", "--max-tokens", n)
    return _greedy_cache[n]


# ---------------------------------------------------------------------------------------------------------------
# Safetensors helpers: read the real header, write a corrupted copy. The data section is left sparse (zeros): the
# loader checks the header against the file size and binds views without reading the weights.


def read_safetensors_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    data_len = os.path.getsize(path) - 8 - n
    return header, data_len


def tensor_items(header):
    """(name, entry) of every tensor in file order."""
    items = [(k, v) for k, v in header.items() if k != "__metadata__"]
    return sorted(items, key=lambda kv: kv[1]["data_offsets"][0])


def repack(header):
    """Re-lays out offsets contiguously in file order (after removing a tensor); returns (header, data_len)."""
    out, off = {}, 0
    for name, e in tensor_items(header):
        n = e["data_offsets"][1] - e["data_offsets"][0]
        out[name] = dict(e, data_offsets=[off, off + n])
        off += n
    if "__metadata__" in header:
        out["__metadata__"] = header["__metadata__"]
    return out, off


def write_safetensors(path, header, data_len, header_len_field=None):
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb) if header_len_field is None else header_len_field))
        f.write(hb)
        f.truncate(8 + len(hb) + data_len)  # sparse: no 60 MB written per case


class TempModelDir:
    """A temporary copy of the stories15M directory without its weights (each test writes its own)."""

    def __init__(self, case, files=("config.json", "tokenizer.json", "tokenizer_config.json")):
        self.tmp = tempfile.TemporaryDirectory(prefix="skv-cli-")
        case.addCleanup(self.tmp.cleanup)
        self.path = self.tmp.name
        for name in files:
            src = os.path.join(model_dir(), name)
            if os.path.exists(src):
                shutil.copy(src, os.path.join(self.path, name))

    def file(self, name):
        return os.path.join(self.path, name)


# ---------------------------------------------------------------------------------------------------------------


class NoModelTest(CliTestCase):
    """What works without any model: help, version, usage errors, missing directories."""

    def test_program_help(self):
        r = self.run_cli("--help")
        self.assertEqual(r.returncode, 0, r.describe())
        for s in ("generate", "tokenize", "info", "convert-llama2c", "--help", "--version"):
            self.assertIn(s, r.stdout, f"--help should mention {s}{r.describe()}")

    def test_subcommand_help(self):
        flags = {
            "generate": ["--model", "--prompt", "--prompt-file", "--max-tokens", "--temperature", "--top-k", "--top-p",
                         "--seed", "--context-limit", "--stop", "--json"],
            "tokenize": ["--model", "--tokenizer", "--text", "--text-file", "--no-special", "--json"],
            "info": ["--model", "--context", "--json"],
            "convert-llama2c": ["--checkpoint", "--tokenizer", "--out"],
        }
        for cmd, names in flags.items():
            with self.subTest(cmd=cmd):
                r = self.run_cli(cmd, "--help")
                self.assertEqual(r.returncode, 0, r.describe())
                for flag in names:
                    self.assertIn(flag, r.stdout, f"{cmd} --help should mention {flag}{r.describe()}")

    def test_version(self):
        r = self.run_cli("--version")
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertRegex(r.stdout, r"shadowkv \d+\.\d+\.\d+")

    def test_no_subcommand_is_usage_error(self):
        self.assert_usage_error([])

    def test_unknown_subcommand_is_usage_error(self):
        # CLI11 checks for the required subcommand before the unexpected argument, so the message says
        # "A subcommand is required" rather than naming it; the exit code is what matters.
        self.assert_usage_error(["frobnicate"], "subcommand")

    def test_missing_model_directory(self):
        missing = os.path.join(tempfile.gettempdir(), "skv-cli-no-such-model-dir")
        for cmd in (["generate", "--prompt", "hi", "--max-tokens", "1"], ["info"], ["tokenize", "--text", "hi"]):
            with self.subTest(cmd=cmd[0]):
                self.assert_error(cmd + ["--model", missing], "model directory", missing, "does not exist")

    def test_missing_default_model_directory(self):
        missing = os.path.join(tempfile.gettempdir(), "skv-cli-no-such-default")
        self.assert_error(["info"], "default model directory", missing, "--model",
                          env_extra={"SHADOWKV_MODEL": missing})

    def test_model_path_is_a_file(self):
        with tempfile.NamedTemporaryFile(prefix="skv-cli-") as f:
            self.assert_error(["info", "--model", f.name], f.name)


class ModelErrorsTest(CliTestCase):
    """Broken model directories: config.json, tokenizer.json, model.safetensors."""

    def setUp(self):
        require_model(self)

    def generate_error(self, d, *substrings):
        return self.assert_error(["generate", "--model", d, "--prompt", "Hi", "--max-tokens", "1"], *substrings)

    def test_directory_without_config(self):
        d = TempModelDir(self, files=("tokenizer.json", "tokenizer_config.json"))
        os.symlink(os.path.join(model_dir(), "model.safetensors"), d.file("model.safetensors"))
        self.generate_error(d.path, "config.json", d.path)
        self.assert_error(["info", "--model", d.path], "config.json", d.path)

    def test_malformed_config(self):
        d = TempModelDir(self)
        with open(d.file("config.json"), "w") as f:
            f.write('{"architectures": ["LlamaForCausalLM"], "hidden_size": 288,\n')  # cut short
        self.generate_error(d.path, d.file("config.json"), "malformed JSON")
        self.assert_error(["info", "--model", d.path], d.file("config.json"), "malformed JSON")

    def test_config_not_an_object(self):
        d = TempModelDir(self)
        with open(d.file("config.json"), "w") as f:
            f.write("[1, 2, 3]")
        self.assert_error(["info", "--model", d.path], d.file("config.json"), "object")

    def test_unknown_architecture(self):
        d = TempModelDir(self)
        with open(os.path.join(model_dir(), "config.json")) as f:
            cfg = json.load(f)
        cfg["architectures"] = ["GPT2LMHeadModel"]
        with open(d.file("config.json"), "w") as f:
            json.dump(cfg, f)
        self.generate_error(d.path, "architectures", "GPT2LMHeadModel", "LlamaForCausalLM")
        self.assert_error(["info", "--model", d.path], "architectures", "GPT2LMHeadModel")

    def test_config_missing_key(self):
        d = TempModelDir(self)
        with open(os.path.join(model_dir(), "config.json")) as f:
            cfg = json.load(f)
        del cfg["hidden_size"]
        with open(d.file("config.json"), "w") as f:
            json.dump(cfg, f)
        self.assert_error(["info", "--model", d.path], "hidden_size", "config.json")

    def test_missing_tokenizer(self):
        d = TempModelDir(self, files=("config.json",))
        os.symlink(os.path.join(model_dir(), "model.safetensors"), d.file("model.safetensors"))
        self.generate_error(d.path, "tokenizer.json")
        self.assert_error(["tokenize", "--model", d.path, "--text", "hi"], "tokenizer.json")

    def test_missing_weights(self):
        d = TempModelDir(self)
        self.generate_error(d.path, "model.safetensors", d.path)

    # --- corrupted model.safetensors -------------------------------------------------------------------------------

    def corrupted(self, mutate):
        """A temp model dir whose model.safetensors is the real header after mutate(header) -> data_len."""
        header, data_len = read_safetensors_header(os.path.join(model_dir(), "model.safetensors"))
        d = TempModelDir(self)
        result = mutate(header)
        if isinstance(result, tuple):
            header, data_len = result
        elif result is not None:
            data_len = result
        write_safetensors(d.file("model.safetensors"), header, data_len)
        return d

    def test_uncorrupted_copy_loads(self):
        # The helpers themselves: a re-written header with sparse (zero) data must load and run.
        d = self.corrupted(lambda h: repack(h))
        r = self.run_cli("generate", "--model", d.path, "--prompt", "", "--max-tokens", "2", "--json",
                         timeout=GENERATE_TIMEOUT_S)
        self.assert_ok(r)
        self.assertEqual(len(json.loads(r.stdout)["tokens"]), 2, r.describe())

    def test_tensor_missing(self):
        name = "model.layers.3.self_attn.k_proj.weight"

        def drop(h):
            del h[name]
            return repack(h)

        d = self.corrupted(drop)
        self.generate_error(d.path, "missing tensor", f"'{name}'", "model.safetensors")

    def test_tensor_wrong_shape(self):
        name = "model.layers.2.mlp.down_proj.weight"
        real = {}

        def transpose(h):
            real["shape"] = list(h[name]["shape"])
            h[name]["shape"] = list(reversed(h[name]["shape"]))  # same bytes, wrong layout

        d = self.corrupted(transpose)
        s = real["shape"]
        self.assertEqual(len(s), 2)
        self.assertNotEqual(s[0], s[1])
        self.generate_error(d.path, f"'{name}'", f"[{s[1]}, {s[0]}]", f"expected [{s[0]}, {s[1]}]", "model.safetensors")

    def test_tensor_wrong_dtype(self):
        name = "model.norm.weight"

        def to_int(h):
            self.assertEqual(h[name]["dtype"], "F32")
            h[name]["dtype"] = "I32"  # same size, not a float

        d = self.corrupted(to_int)
        self.generate_error(d.path, f"'{name}'", "i32", "f32", "model.safetensors")

    def test_tensor_unknown_dtype(self):
        name = "model.layers.0.input_layernorm.weight"

        def unknown(h):
            h[name]["dtype"] = "F8_E4M3"

        d = self.corrupted(unknown)
        self.generate_error(d.path, f"'{name}'", "F8_E4M3", "model.safetensors")

    def test_truncated_file(self):
        header, data_len = read_safetensors_header(os.path.join(model_dir(), "model.safetensors"))
        last_name, last = tensor_items(header)[-1]
        self.assertGreater(last["data_offsets"][1] - last["data_offsets"][0], 1000)
        d = self.corrupted(lambda h: data_len - 1000)
        self.generate_error(d.path, "model.safetensors", f"'{last_name}'", "out of range", "truncated")

    def test_truncated_inside_header(self):
        d = TempModelDir(self)
        with open(os.path.join(model_dir(), "model.safetensors"), "rb") as src:
            head = src.read(500)
        with open(d.file("model.safetensors"), "wb") as f:
            f.write(head)
        self.generate_error(d.path, "model.safetensors", "header length", "longer than")

    def test_shorter_than_length_field(self):
        d = TempModelDir(self)
        with open(d.file("model.safetensors"), "wb") as f:
            f.write(b"\x10\x00\x00")
        self.generate_error(d.path, "model.safetensors", "too short")

    def test_header_length_longer_than_file(self):
        header, data_len = read_safetensors_header(os.path.join(model_dir(), "model.safetensors"))
        d = TempModelDir(self)
        path = d.file("model.safetensors")
        write_safetensors(path, header, data_len)
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.write(struct.pack("<Q", size))  # one length field too many: 8 + size > size
        self.generate_error(d.path, "model.safetensors", f"header length is {size} bytes",
                            f"longer than the {size - 8} bytes")

    def test_header_length_huge(self):
        header, data_len = read_safetensors_header(os.path.join(model_dir(), "model.safetensors"))
        d = TempModelDir(self)
        path = d.file("model.safetensors")
        write_safetensors(path, header, data_len)
        with open(path, "r+b") as f:
            f.write(struct.pack("<Q", 2**64 - 1))  # must not wrap around to something small
        self.generate_error(d.path, "model.safetensors", "header length")

    def test_malformed_header_json(self):
        d = TempModelDir(self)
        with open(d.file("model.safetensors"), "wb") as f:
            hb = b'{"model.norm.weight": {"dtype": "F32", '
            f.write(struct.pack("<Q", len(hb)) + hb + b"\0" * 64)
        self.generate_error(d.path, "model.safetensors", "malformed JSON header")

    def test_data_offsets_out_of_range(self):
        name = "model.layers.1.self_attn.v_proj.weight"
        info = {}

        def move_out(h):
            _, data_len = read_safetensors_header(os.path.join(model_dir(), "model.safetensors"))
            b, e = h[name]["data_offsets"]
            h[name]["data_offsets"] = [data_len, data_len + (e - b)]
            info["offsets"] = f"[{data_len}, {data_len + e - b}]"
            info["data_len"] = data_len

        d = self.corrupted(move_out)
        self.generate_error(d.path, "model.safetensors", f"'{name}'", info["offsets"], "out of range",
                            str(info["data_len"]))

    def test_data_offsets_begin_after_end(self):
        name = "model.layers.4.mlp.gate_proj.weight"

        def swap(h):
            b, e = h[name]["data_offsets"]
            h[name]["data_offsets"] = [e, b]

        d = self.corrupted(swap)
        self.generate_error(d.path, "model.safetensors", f"'{name}'", "begin > end")

    def test_data_offsets_overlap(self):
        a, b = "model.layers.5.self_attn.q_proj.weight", "model.layers.5.self_attn.k_proj.weight"

        def overlap(h):
            self.assertEqual(h[a]["shape"], h[b]["shape"])
            self.assertEqual(h[a]["dtype"], h[b]["dtype"])
            ab, ae = h[a]["data_offsets"]
            n = ae - ab
            h[b]["data_offsets"] = [ab + n // 2, ab + n // 2 + n]  # starts in the middle of a

        d = self.corrupted(overlap)
        self.generate_error(d.path, "model.safetensors", f"'{a}'", f"'{b}'", "overlap")

    def test_data_offsets_size_mismatch(self):
        name = "model.layers.0.mlp.up_proj.weight"

        def shrink(h):
            b, e = h[name]["data_offsets"]
            h[name]["data_offsets"] = [b, e - 4]

        d = self.corrupted(shrink)
        self.generate_error(d.path, "model.safetensors", f"'{name}'", "bytes")


class GenerateFlagsTest(CliTestCase):
    """Flag validation of generate: every bad value is refused before any work, with the flag named."""

    def setUp(self):
        require_model(self)

    def gen_error(self, *args, substrings=()):
        return self.assert_error(["generate", "--model", model_dir(), "--prompt", "Once upon a time", *args],
                                 *substrings)

    def test_max_tokens_negative_and_zero(self):
        for v in ("-5", "0", "-2"):
            with self.subTest(value=v):
                self.gen_error(f"--max-tokens={v}", substrings=("--max-tokens", v))
        # The space-separated form too: "-5" is a value, not a flag.
        self.gen_error("--max-tokens", "-5", substrings=("--max-tokens", "-5"))

    def test_temperature_negative(self):
        self.gen_error("--temperature", "-1", substrings=("temperature", "-1"))

    def test_temperature_not_finite(self):
        for v in ("nan", "inf"):
            with self.subTest(value=v):
                self.gen_error("--temperature", v, substrings=("temperature",))

    def test_top_p_out_of_range(self):
        for v, shown in (("0", "0"), ("1.5", "1.5"), ("-0.5", "-0.5")):
            with self.subTest(value=v):
                self.gen_error("--top-p", v, substrings=("top-p", shown))

    def test_top_k_negative(self):
        self.gen_error("--top-k", "-1", substrings=("top-k", "-1"))

    def test_context_limit_out_of_range(self):
        for v in ("-1", "999999999999"):
            with self.subTest(value=v):
                self.gen_error("--context-limit", v, substrings=("--context-limit", v))

    def test_non_numeric_values_are_usage_errors(self):
        for flag in ("--max-tokens", "--temperature", "--top-k", "--top-p", "--seed", "--context-limit"):
            with self.subTest(flag=flag):
                self.assert_usage_error(["generate", "--model", model_dir(), "--prompt", "x", flag, "lots"], flag)

    def test_unknown_flag_is_usage_error(self):
        self.assert_usage_error(["generate", "--model", model_dir(), "--prompt", "x", "--bogus-flag"], "--bogus-flag")
        self.assert_usage_error(["info", "--model", model_dir(), "--bogus-flag"], "--bogus-flag")

    def test_prompt_and_prompt_file_are_exclusive(self):
        with tempfile.NamedTemporaryFile("w", prefix="skv-cli-", suffix=".txt") as f:
            f.write("Once upon a time")
            f.flush()
            self.assert_usage_error(
                ["generate", "--model", model_dir(), "--prompt", "x", "--prompt-file", f.name], "--prompt")

    def test_missing_value_is_usage_error(self):
        self.assert_usage_error(["generate", "--model", model_dir(), "--prompt", "x", "--max-tokens"], "--max-tokens")

    def test_prompt_file_missing(self):
        missing = os.path.join(tempfile.gettempdir(), "skv-cli-no-such-prompt.txt")
        self.assert_error(["generate", "--model", model_dir(), "--prompt-file", missing, "--max-tokens", "1"], missing)

    def test_prompt_file_is_a_directory(self):
        with tempfile.TemporaryDirectory(prefix="skv-cli-") as d:
            self.assert_error(["generate", "--model", model_dir(), "--prompt-file", d, "--max-tokens", "1"], d,
                              "directory")

    def test_prompt_longer_than_context(self):
        msg = self.assert_error(["generate", "--model", model_dir(), "--prompt", " hello" * 300, "--max-tokens", "1"],
                                "prompt", f"context limit of {STORIES_CONTEXT}", "--context-limit")
        n = int(re.search(r"has (\d+) tokens", msg).group(1))
        self.assertGreater(n, STORIES_CONTEXT, msg)

    def test_prompt_plus_max_tokens_over_limit(self):
        # "Once upon a time" is BOS + 4 tokens: 5 + 252 = 257 > 256.
        self.gen_error("--max-tokens", "252",
                       substrings=("5 tokens", "--max-tokens 252", f"context limit of {STORIES_CONTEXT}"))
        # An absurd value is the same error, not an allocation failure.
        self.gen_error("--max-tokens", "9223372036854775807", substrings=("--max-tokens", "context limit"))

    def test_prompt_plus_max_tokens_over_raised_limit(self):
        self.gen_error("--context-limit", "100", "--max-tokens", "96",
                       substrings=("--max-tokens 96", "context limit of 100"))

    def test_context_limit_above_trained_context_warns_and_works(self):
        # ~260 prompt tokens, past the trained 256 positions: RoPE extrapolates, with a warning.
        prompt = " hello" * 260
        r = self.run_cli("generate", "--model", model_dir(), "--prompt", prompt, "--context-limit", "300",
                         "--max-tokens", "4", "--json", timeout=GENERATE_TIMEOUT_S)
        self.assert_ok(r)
        warnings = [l for l in r.stderr.splitlines() if l.startswith("warning: ")]
        self.assertEqual(len(warnings), 1, r.describe())
        self.assertIn("--context-limit 300", warnings[0])
        self.assertIn(str(STORIES_CONTEXT), warnings[0])
        out = json.loads(r.stdout)
        self.assertGreater(len(out["prompt_tokens"]), STORIES_CONTEXT)
        self.assertGreaterEqual(len(out["tokens"]), 1)
        self.assertLessEqual(len(out["tokens"]), 4)

    def test_context_limit_leaves_no_room(self):
        self.assert_error(["generate", "--model", model_dir(), "--prompt", "", "--context-limit", "1"],
                          "1 tokens", "context limit of 1")

    def test_default_max_tokens_under_small_context_limit(self):
        out = self.generate_json("--prompt", "", "--context-limit", "3")
        self.assertEqual(len(out["tokens"]), 2)  # BOS + 2 = 3

    def test_extreme_but_valid_sampling_values(self):
        out = self.generate_json("--prompt", "", "--temperature", "100", "--top-k", "99999999999", "--max-tokens", "5")
        self.assertEqual(len(out["tokens"]), 5)
        self.assertTrue(all(0 <= t < 32000 for t in out["tokens"]), out["tokens"])
        # A vanishing top-p keeps only the most likely token: greedy.
        out = self.generate_json("--prompt", "", "--temperature", "1", "--top-p", "1e-30", "--max-tokens", "5")
        self.assertEqual(out["tokens"], greedy_from_bos(self, 200)["tokens"][:5])

    def test_context_limit_within_trained_context_does_not_warn(self):
        r = self.run_cli("generate", "--model", model_dir(), "--prompt", "", "--context-limit", "16",
                         "--max-tokens", "3", "--json", timeout=GENERATE_TIMEOUT_S)
        self.assert_ok(r)
        self.assertNotIn("warning", r.stderr, r.describe())


class GenerateTest(CliTestCase):
    """Real generations with stories15M."""

    def setUp(self):
        require_model(self)

    def test_json_keys_empty_prompt(self):
        out = self.generate_json("--prompt", "", "--max-tokens", "20")
        for key in ("prompt_tokens", "tokens", "text", "finish_reason", "prefill_tokens_per_s", "decode_tokens_per_s"):
            self.assertIn(key, out)
        self.assertEqual(out["prompt_tokens"], [1], "an empty prompt is BOS alone")
        self.assertEqual(len(out["tokens"]), 20)
        self.assertTrue(all(isinstance(t, int) and 0 <= t < 32000 for t in out["tokens"]), out["tokens"])
        self.assertIsInstance(out["text"], str)
        self.assertNotEqual(out["text"].strip(), "")
        self.assertEqual(out["finish_reason"], "length")
        for key in ("prefill_tokens_per_s", "decode_tokens_per_s"):
            self.assertIsInstance(out[key], (int, float))
            self.assertGreater(out[key], 0)

    def test_greedy_matches_golden_ids(self):
        golden_path = os.path.join(SHARED_DATA, "stories15M-greedy-from-bos.txt")
        self.assertTrue(os.path.isfile(golden_path), f"golden ids {golden_path} are missing (--shared-data)")
        with open(golden_path) as f:
            golden = [int(t) for t in f.read().split()]
        self.assertEqual(len(golden), 200)
        out = greedy_from_bos(self, 200)
        self.assertEqual(out["prompt_tokens"], [1])
        got = out["tokens"]
        if got != golden:
            first = next((i for i, (a, b) in enumerate(zip(got, golden)) if a != b), min(len(got), len(golden)))
            self.fail(f"greedy ids differ from {golden_path} at position {first} "
                      f"(got {got[first:first + 5]}, expected {golden[first:first + 5]}; {len(got)} ids)")
        self.assertTrue(out["text"].startswith("Once upon a time"), out["text"][:100])

    def test_prompt_file_equals_prompt(self):
        with tempfile.NamedTemporaryFile("w", prefix="skv-cli-", suffix=".txt", delete=False) as f:
            f.write("Once upon a time")
        self.addCleanup(os.unlink, f.name)
        a = self.generate_json("--prompt-file", f.name, "--max-tokens", "8")
        b = self.generate_json("--prompt", "Once upon a time", "--max-tokens", "8")
        self.assertEqual(a["prompt_tokens"], [1, 9038, 2501, 263, 931])
        self.assertEqual(a["prompt_tokens"], b["prompt_tokens"])
        self.assertEqual(a["tokens"], b["tokens"])
        self.assertEqual(a["text"], b["text"])

    def test_prompt_continuation_is_consistent_with_bos_run(self):
        # Greedy from BOS + its first 10 ids continues with the golden ids 10.. (prefill and decode agree).
        ref = greedy_from_bos(self, 200)["tokens"]
        r = self.run_cli("tokenize", "--model", model_dir(), "--text", greedy_from_bos(self, 200)["text"], "--json")
        self.assert_ok(r)
        ids = json.loads(r.stdout)["ids"]
        self.assertEqual(ids[0], 1)
        self.assertEqual(ids[1:11], ref[:10], "re-tokenizing the greedy text should give back its ids")

    def test_sampling_same_seed_same_output(self):
        args = ("--prompt", "Once upon a time", "--temperature", "0.8", "--max-tokens", "40")
        a = self.generate_json(*args, "--seed", "1234")
        b = self.generate_json(*args, "--seed", "1234")
        c = self.generate_json(*args, "--seed", "98765")
        self.assertEqual(a["tokens"], b["tokens"])
        self.assertEqual(a["text"], b["text"])
        self.assertNotEqual(a["tokens"], c["tokens"], "a different seed should give a different sample")

    def test_sampling_with_top_k_and_top_p_runs(self):
        out = self.generate_json("--prompt", "Once upon a time", "--temperature", "1.0", "--top-k", "5",
                                 "--top-p", "0.9", "--seed", "7", "--max-tokens", "10")
        self.assertGreaterEqual(len(out["tokens"]), 1)
        # top-k 1 is greedy whatever the temperature.
        k1 = self.generate_json("--prompt", "", "--temperature", "1.5", "--top-k", "1", "--seed", "3",
                                "--max-tokens", "20")
        self.assertEqual(k1["tokens"], greedy_from_bos(self, 200)["tokens"][:20])

    def test_stop_string(self):
        full = greedy_from_bos(self, 200)
        text = full["text"]
        stop = "sunshine"
        self.assertIn(stop, text, f"the greedy story should contain {stop!r}: {text[:300]!r}")
        expected = text[:text.index(stop)]
        out = self.generate_json("--prompt", "", "--max-tokens", "200", "--stop", stop)
        self.assertEqual(out["text"], expected)
        self.assertNotIn(stop, out["text"])
        self.assertEqual(out["finish_reason"], "stop")
        self.assertLess(len(out["tokens"]), 200, "generation must end at the stop string")
        self.assertEqual(out["tokens"], full["tokens"][:len(out["tokens"])])
        # The stop text's token is the last one generated: nothing runs past it.
        upto = self.run_cli("tokenize", "--model", model_dir(), "--text", expected + stop, "--json")
        self.assert_ok(upto)
        self.assertEqual(len(out["tokens"]), len(json.loads(upto.stdout)["ids"]) - 1)

        # Streamed: not printed either, and the same text.
        r = self.run_cli("generate", "--model", model_dir(), "--prompt", "", "--max-tokens", "200", "--stop", stop,
                         timeout=GENERATE_TIMEOUT_S)
        self.assert_ok(r)
        self.assertEqual(r.stdout, expected + "\n")
        self.assertIn("finish: stop", r.stderr)

    def test_several_stop_strings_first_wins(self):
        full = greedy_from_bos(self, 200)["text"]
        stops = ["sunshine", "little"]  # "little" comes first in the story
        first = min(stops, key=full.index)
        out = self.generate_json("--prompt", "", "--max-tokens", "200", "--stop", stops[0], "--stop", stops[1])
        self.assertEqual(out["text"], full[:full.index(first)])
        self.assertEqual(out["finish_reason"], "stop")

    def test_stop_string_never_generated(self):
        out = self.generate_json("--prompt", "", "--max-tokens", "30", "--stop", "zzzz-never-zzzz")
        ref = greedy_from_bos(self, 200)
        self.assertEqual(out["tokens"], ref["tokens"][:30])
        self.assertEqual(out["finish_reason"], "length")

    def test_streamed_stdout_equals_json_text(self):
        ref = greedy_from_bos(self, 200)
        r = self.run_cli("generate", "--model", model_dir(), "--prompt", "", "--max-tokens", "200",
                         timeout=GENERATE_TIMEOUT_S)
        self.assert_ok(r)
        self.assertEqual(r.stdout, ref["text"] + "\n")
        stats = [l for l in r.stderr.splitlines() if l.startswith("prefill:")]
        self.assertEqual(len(stats), 1, r.describe())
        self.assertIn("decode: 200 tokens", stats[0])
        self.assertIn("finish: length", stats[0])

    def test_fill_whole_context(self):
        # BOS + 255 generated tokens = exactly the 256-token context: allowed, one more is not.
        out = self.generate_json("--prompt", "", "--max-tokens", str(STORIES_CONTEXT - 1))
        self.assertLessEqual(len(out["tokens"]), STORIES_CONTEXT - 1)
        ref = greedy_from_bos(self, 200)["tokens"]
        self.assertEqual(out["tokens"][:200], ref)
        self.assert_error(["generate", "--model", model_dir(), "--prompt", "", "--max-tokens", str(STORIES_CONTEXT)],
                          "1 tokens", f"--max-tokens {STORIES_CONTEXT}", f"context limit of {STORIES_CONTEXT}")

    def test_default_max_tokens_fits_context(self):
        # Without --max-tokens, a long prompt gets what is left of the context, not an error.
        prompt = " hello" * 250
        out = self.generate_json("--prompt", prompt)
        n_prompt = len(out["prompt_tokens"])
        self.assertLess(n_prompt, STORIES_CONTEXT)
        self.assertLessEqual(n_prompt + len(out["tokens"]), STORIES_CONTEXT)
        self.assertGreaterEqual(len(out["tokens"]), 1)

    def test_model_from_environment(self):
        r = self.run_cli("generate", "--prompt", "", "--max-tokens", "5", "--json",
                         env_extra={"SHADOWKV_MODEL": model_dir()}, timeout=GENERATE_TIMEOUT_S)
        self.assert_ok(r)
        self.assertEqual(json.loads(r.stdout)["tokens"], greedy_from_bos(self, 200)["tokens"][:5])


class TokenizeTest(CliTestCase):
    def setUp(self):
        require_model(self)

    def test_json_and_plain_agree(self):
        j = self.run_cli("tokenize", "--model", model_dir(), "--text", "Hello world", "--json")
        p = self.run_cli("tokenize", "--model", model_dir(), "--text", "Hello world")
        self.assert_ok(j)
        self.assert_ok(p)
        out = json.loads(j.stdout)
        self.assertEqual(out["ids"], [1, 15043, 3186])
        self.assertEqual(out["n_tokens"], 3)
        self.assertEqual(len(out["pieces"]), 3)
        # Each piece is its id decoded alone (so without the SentencePiece word-boundary space).
        self.assertEqual([p.strip() for p in out["pieces"][1:]], ["Hello", "world"])
        self.assertEqual(p.stdout, "1 15043 3186\n")
        self.assertEqual([int(t) for t in p.stdout.split()], out["ids"])

    def test_no_special_and_tokenizer_file(self):
        r = self.run_cli("tokenize", "--tokenizer", os.path.join(model_dir(), "tokenizer.json"), "--text",
                         "Hello world", "--no-special")
        self.assert_ok(r)
        self.assertEqual(r.stdout, "15043 3186\n")

    def test_text_file(self):
        with tempfile.NamedTemporaryFile("w", prefix="skv-cli-", suffix=".txt", delete=False) as f:
            f.write("Hello world")
        self.addCleanup(os.unlink, f.name)
        r = self.run_cli("tokenize", "--model", model_dir(), "--text-file", f.name)
        self.assert_ok(r)
        self.assertEqual(r.stdout, "1 15043 3186\n")

    def test_errors(self):
        missing = os.path.join(tempfile.gettempdir(), "skv-cli-no-such-tokenizer.json")
        self.assert_error(["tokenize", "--tokenizer", missing, "--text", "x"], missing)
        missing_text = os.path.join(tempfile.gettempdir(), "skv-cli-no-such-text.txt")
        self.assert_error(["tokenize", "--model", model_dir(), "--text-file", missing_text], missing_text)
        self.assert_usage_error(["tokenize", "--model", model_dir(), "--tokenizer",
                                 os.path.join(model_dir(), "tokenizer.json"), "--text", "x"], "--model")
        self.assert_usage_error(["tokenize", "--model", model_dir(), "--text", "x", "--text-file", "y"], "--text")


class ShadowKvCliTest(CliTestCase):
    """--attention shadowkv and its knobs on generate, --report, and the ShadowKV memory figures of info."""

    def setUp(self):
        require_model(self)

    def test_shadowkv_generation_keeps_every_token_and_reports(self):
        prompt = " ".join(["Lily and Max went to the park to play with a red ball."] * 30)
        j = self.generate_json("--prompt", prompt, "--context-limit", "2048", "--max-tokens", "40",
                               "--attention", "shadowkv", "--sparse-budget", "64", "--rank", "32", "--report")
        self.assertEqual(j["attention"], "shadowkv")
        self.assertEqual(len(j["tokens"]), 40)
        self.assertNotIn("notice", j, "a 330-token prompt with budget 64 must use the sparse path")
        report = j["report"]
        self.assertEqual(len(report), 6)  # stories15M has 6 layers
        for layer in report:
            self.assertEqual(layer["steps"], 39)  # every decode step after the first token (from the prefill)
            self.assertGreater(layer["attended_mass"], 0.0)
            self.assertLessEqual(layer["attended_mass"], layer["chunk_oracle_mass"] + 1e-9)
            self.assertLessEqual(layer["chunk_oracle_mass"], layer["best_mass"] + 1e-9)
            self.assertGreaterEqual(layer["top_key_hit_rate"], 0.0)
            self.assertLessEqual(layer["top_key_hit_rate"], 1.0)
            self.assertLessEqual(layer["best_mass"], 1.0 + 1e-9)
            self.assertGreaterEqual(layer["output_rel_error"], 0.0)
            self.assertGreater(layer["hit_rate"], 0.0)
            self.assertLessEqual(layer["hit_rate"], 1.0)

    def test_full_rank_full_budget_shadowkv_equals_full_attention(self):
        # A budget covering the whole prompt falls back to exact attention, with one notice.
        full = self.generate_json("--prompt", "Once upon a time", "--max-tokens", "30")
        shadow = self.generate_json("--prompt", "Once upon a time", "--max-tokens", "30", "--attention", "shadowkv")
        self.assertEqual(shadow["tokens"], full["tokens"])
        self.assertIn("exact attention", shadow["notice"])

    def test_bad_attention_flags(self):
        m = model_dir()
        self.assert_error(["generate", "--model", m, "--attention", "sparse"], "sparse", "full", "shadowkv")
        self.assert_error(["generate", "--model", m, "--attention", "shadowkv", "--sparse-budget", "100"],
                          "sparse_budget", "100", "chunk_size")
        self.assert_error(["generate", "--model", m, "--attention", "shadowkv", "--rank", "0"], "rank")
        self.assert_error(["generate", "--model", m, "--attention", "shadowkv", "--chunk-size", "-1"], "chunk_size")
        self.assert_error(["generate", "--model", m, "--report"], "--report", "--attention shadowkv")
        self.assert_error(["generate", "--model", m, "--attention", "shadowkv", "--selection", "best"],
                          "--selection", "landmarks", "oracle")
        self.assert_usage_error(["generate", "--model", m, "--rank", "many"], "--rank")

    def test_info_shows_shadowkv_memory_for_llama31_8b(self):
        # A config-only directory with Llama-3.1-8B's published shape: full bf16 KV at 128K is 16 GiB; ShadowKV
        # keeps about 2.6 GiB resident and offloads the 8 GiB of values.
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump({"architectures": ["LlamaForCausalLM"], "vocab_size": 128256, "hidden_size": 4096,
                           "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                           "num_key_value_heads": 8, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                           "max_position_embeddings": 131072,
                           "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}, f)
            r = self.run_cli("info", "--model", d, "--context", "131072", "--json")
            self.assert_ok(r)
            j = json.loads(r.stdout)
            gib = 1 << 30
            self.assertEqual(j["kv_cache_bytes_per_sequence"]["full_bf16"], 16 * gib)
            s = j["shadowkv_bytes_per_sequence"]
            self.assertAlmostEqual(s["offloaded_bf16"] / gib, 8.0, delta=0.01)
            self.assertAlmostEqual(s["resident_bf16"] / gib, 2.6, delta=0.1)
            self.assertEqual(j["shadowkv"]["outlier_chunks"], 48)
            r = self.run_cli("info", "--model", d, "--context", "131072")
            self.assert_ok(r)
            self.assertIn("shadowkv:", r.stdout)
            self.assertIn("16.00 GiB in bf16", r.stdout)


class InfoTest(CliTestCase):
    def setUp(self):
        require_model(self)
        with open(os.path.join(model_dir(), "config.json")) as f:
            self.cfg = json.load(f)
        c = self.cfg
        self.layers = c["num_hidden_layers"]
        self.kv_heads = c.get("num_key_value_heads", c["num_attention_heads"])
        self.head_dim = c.get("head_dim", c["hidden_size"] // c["num_attention_heads"])
        header, _ = read_safetensors_header(os.path.join(model_dir(), "model.safetensors"))
        self.params = 0
        for name, e in tensor_items(header):
            if name == "lm_head.weight" and c.get("tie_word_embeddings", False):
                continue
            n = 1
            for d in e["shape"]:
                n *= d
            self.params += n

    def kv_bytes(self, context, bytes_per_element):
        return 2 * self.layers * self.kv_heads * self.head_dim * context * bytes_per_element

    @staticmethod
    def format_bytes(b):
        v, u = float(b), 0
        units = ["B", "KiB", "MiB", "GiB", "TiB"]
        while v >= 1024.0 and u < 4:
            v /= 1024.0
            u += 1
        return f"{v:.0f} {units[u]}" if u == 0 else f"{v:.2f} {units[u]}"

    def test_config_is_stories15m(self):
        self.assertEqual(self.cfg["max_position_embeddings"], STORIES_CONTEXT)
        self.assertEqual((self.layers, self.kv_heads, self.head_dim), (6, 6, 48))
        self.assertEqual(self.params, 15191712)

    def test_json(self):
        r = self.run_cli("info", "--model", model_dir(), "--json", "--context", "4096")
        self.assert_ok(r)
        out = json.loads(r.stdout)
        self.assertEqual(out["architecture"], "LlamaForCausalLM")
        self.assertEqual(out["parameters"], self.params)
        self.assertEqual(out["n_layers"], self.layers)
        self.assertEqual(out["n_kv_heads"], self.kv_heads)
        self.assertEqual(out["head_dim"], self.head_dim)
        self.assertEqual(out["vocab_size"], self.cfg["vocab_size"])
        self.assertEqual(out["max_position_embeddings"], STORIES_CONTEXT)
        self.assertEqual(out["context"], 4096)
        kv = out["kv_cache_bytes_per_sequence"]
        self.assertEqual(kv["full_bf16"], self.kv_bytes(4096, 2))
        self.assertEqual(kv["full_f32"], self.kv_bytes(4096, 4))
        self.assertEqual(kv["full_bf16"], 2 * 6 * 6 * 48 * 4096 * 2)  # 14,155,776 for stories15M

    def test_json_default_context(self):
        r = self.run_cli("info", "--model", model_dir(), "--json")
        self.assert_ok(r)
        out = json.loads(r.stdout)
        self.assertEqual(out["context"], STORIES_CONTEXT)
        self.assertEqual(out["kv_cache_bytes_per_sequence"]["full_f32"], self.kv_bytes(STORIES_CONTEXT, 4))

    def test_plain(self):
        for context in (None, 4096):
            with self.subTest(context=context):
                args = ["info", "--model", model_dir()] + ([] if context is None else ["--context", str(context)])
                r = self.run_cli(*args)
                self.assert_ok(r)
                n = STORIES_CONTEXT if context is None else context
                self.assertIn("LlamaForCausalLM", r.stdout)
                self.assertRegex(r.stdout, rf"parameters:\s+{self.params}\b")
                self.assertRegex(r.stdout, rf"layers:\s+{self.layers}\b")
                self.assertRegex(r.stdout, rf"trained context:\s+{STORIES_CONTEXT} tokens")
                self.assertIn(f"KV cache per sequence at {n} tokens:", r.stdout)
                self.assertIn(f"full attention:  {self.format_bytes(self.kv_bytes(n, 2))} in bf16", r.stdout)
                self.assertIn(f"{self.format_bytes(self.kv_bytes(n, 4))} in f32", r.stdout)

    def test_context_out_of_range(self):
        for v in ("-1", "999999999999"):
            with self.subTest(value=v):
                self.assert_error(["info", "--model", model_dir(), "--context", v], "--context", v)
        self.assert_usage_error(["info", "--model", model_dir(), "--context", "big"], "--context")


class ConvertTest(CliTestCase):
    def raw(self, name):
        path = os.path.join(MODELS, "stories15M-raw", name)
        if not os.path.isfile(path):
            self.skipTest(f"{path} is not there (only needed to test convert-llama2c)")
        return path

    def test_convert_reproduces_model_dir(self):
        require_model(self)
        ckpt, tok = self.raw("stories15M.bin"), self.raw("tokenizer.bin")
        with tempfile.TemporaryDirectory(prefix="skv-cli-") as d:
            out = os.path.join(d, "m")
            r = self.run_cli("convert-llama2c", "--checkpoint", ckpt, "--tokenizer", tok, "--out", out, timeout=60)
            self.assert_ok(r)
            self.assertFalse(os.path.exists(out + ".tmp"))
            for name in ("config.json", "model.safetensors", "tokenizer.json"):
                with open(os.path.join(out, name), "rb") as a, open(os.path.join(model_dir(), name), "rb") as b:
                    self.assertTrue(a.read() == b.read(), f"{name} differs from {model_dir()}/{name}")

    def test_convert_errors(self):
        ckpt, tok = self.raw("stories15M.bin"), self.raw("tokenizer.bin")
        with tempfile.TemporaryDirectory(prefix="skv-cli-") as d:
            out = os.path.join(d, "m")
            missing = os.path.join(d, "nope.bin")
            self.assert_error(["convert-llama2c", "--checkpoint", missing, "--tokenizer", tok, "--out", out], missing)
            self.assert_error(["convert-llama2c", "--checkpoint", ckpt, "--tokenizer", missing, "--out", out], missing)
            short = os.path.join(d, "short.bin")
            with open(ckpt, "rb") as src, open(short, "wb") as f:
                f.write(src.read(4096))
            self.assert_error(["convert-llama2c", "--checkpoint", short, "--tokenizer", tok, "--out", out], short)
            self.assertFalse(os.path.exists(out), "a failed conversion must not leave an output directory")
            self.assert_usage_error(["convert-llama2c", "--checkpoint", ckpt, "--out", out], "--tokenizer")


LLAMA31_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 14336, "max_position_embeddings": 131072, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "vocab_size": 128256,
}


class PlanBenchDeviceTest(CliTestCase):
    """plan (works without a GPU via --memory-gib), bench's flags, and --device on a CPU build."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="skv-plan-")
        with open(os.path.join(self.tmp, "config.json"), "w") as f:
            json.dump(LLAMA31_8B_CONFIG, f)
        probe = self.run_cli("generate", "--device", "cuda", "--model", self.tmp)
        self.cpu_build = "built without CUDA" in probe.stderr

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_plan_llama31_8b_json(self):
        r = self.run_cli("plan", "--model", self.tmp, "--context", "128k", "--memory-gib", "80", "--json")
        self.assert_ok(r)
        j = json.loads(r.stdout)
        self.assertEqual(j["context"], 131072)
        self.assertAlmostEqual(j["weight_bytes"] / 1e9, 16.06, places=2)
        self.assertEqual(j["kv_bytes_per_sequence"], 16 << 30)
        self.assertEqual(j["max_batch"], 3)
        self.assertEqual(j["batch"], 3)
        self.assertTrue(j["fits"])

    def test_plan_text(self):
        r = self.run_cli("plan", "--model", self.tmp, "--context", "131072", "--memory-gib", "80", "--batch", "2")
        self.assert_ok(r)
        self.assertIn("16.00 GiB per sequence", r.stdout)
        self.assertIn("largest batch:   3", r.stdout)
        self.assertIn("fits:            yes", r.stdout)

    def test_plan_errors(self):
        self.assert_error(["plan", "--model", self.tmp, "--context", "128k"], "--memory-gib")
        self.assert_error(["plan", "--model", self.tmp, "--memory-gib", "80"], "--context")
        self.assert_error(["plan", "--model", self.tmp, "--context", "12q", "--memory-gib", "80"], "--context", "12q")
        self.assert_error(["plan", "--model", self.tmp, "--context", "1k", "--memory-gib", "80", "--weight-dtype",
                           "f16"], "--weight-dtype", "f16")
        self.assert_usage_error(["plan", "--bogus"], "--bogus")
        self.assert_usage_error(["plan", "--memory-gib", "lots"], "lots")

    def test_help(self):
        for cmd in ("plan", "bench"):
            r = self.run_cli(cmd, "--help")
            self.assertEqual(r.returncode, 0, r.describe())
            self.assertIn("--context", r.stdout)
            self.assertIn("--device", r.stdout)
        r = self.run_cli("bench", "--help")
        self.assertIn("--random-weights", r.stdout)
        self.assertIn("--batch", r.stdout)

    def test_bench_bad_flags(self):
        self.assert_usage_error(["bench", "--bogus"], "--bogus")
        self.assert_usage_error(["bench", "--steps", "x"], "x")
        self.assert_error(["bench", "--device", "cpu", "--model", self.tmp, "--random-weights"], "--device cuda")
        self.assert_error(["bench", "--device", "tpu", "--model", self.tmp], "--device", "tpu")

    def test_device_cuda_errors(self):
        if not self.cpu_build:
            self.skipTest("a CUDA build")
        for args in (["generate", "--model", self.tmp, "--device", "cuda"],
                     ["bench", "--model", self.tmp, "--random-weights", "--device", "cuda"],
                     ["plan", "--model", self.tmp, "--context", "1k", "--device", "cuda"],
                     ["eval", "--model", self.tmp, "--tasks", "vt", "--context", "256", "--device", "cuda"]):
            self.assert_error(args, "--device cuda", "built without CUDA")
        self.assert_error(["generate", "--model", self.tmp, "--device", "gpu"], "--device", "gpu")
        self.assert_error(["generate", "--model", self.tmp, "--device", "cuda:x"], "cuda:x")

    def test_device_cuda_without_gpu(self):
        if self.cpu_build or os.path.exists("/dev/nvidia0"):
            self.skipTest("needs a CUDA build on a machine without a GPU")
        self.assert_error(["generate", "--model", self.tmp, "--device", "cuda"], "no CUDA device")

    def test_kv_dtype_flag(self):
        """--kv-dtype bf16|f32: CUDA's KV cache dtype; the CPU's is always f32 (bf16 there is a clear error)."""
        for cmd in ("generate", "eval", "bench", "plan"):
            r = self.run_cli(cmd, "--help")
            self.assertEqual(r.returncode, 0, r.describe())
            self.assertIn("--kv-dtype", r.stdout, f"{cmd} --help")
        self.assert_error(["generate", "--model", self.tmp, "--kv-dtype", "f16"], "--kv-dtype", "f16")
        self.assert_error(["generate", "--model", self.tmp, "--device", "cpu", "--kv-dtype", "bf16"],
                          "--kv-dtype bf16", "CUDA-only")
        self.assert_error(["generate", "--model", self.tmp, "--kv-dtype", "bf16"], "--kv-dtype bf16", "CUDA-only")
        self.assert_error(["eval", "--model", self.tmp, "--tasks", "vt", "--context", "256", "--kv-dtype", "bf16"],
                          "--kv-dtype bf16", "CUDA-only")
        self.assert_error(["eval", "--model", self.tmp, "--kv-dtype", "int8"], "--kv-dtype", "int8")
        self.assert_error(["plan", "--model", self.tmp, "--context", "1k", "--memory-gib", "80", "--kv-dtype", "fp8"],
                          "--kv-dtype", "fp8")
        self.assert_usage_error(["generate", "--kv-dtype"], "--kv-dtype")
        if self.cpu_build:
            self.assert_error(["bench", "--model", self.tmp, "--random-weights", "--kv-dtype", "f32"],
                              "--device cuda", "built without CUDA")

    def test_plan_f32_kv_dtype(self):
        """The planner counts 4 bytes per KV element in f32: 32 GiB per 128K sequence of Llama-3.1-8B."""
        r = self.run_cli("plan", "--model", self.tmp, "--context", "128k", "--memory-gib", "80", "--kv-dtype", "f32",
                         "--json")
        self.assert_ok(r)
        j = json.loads(r.stdout)
        self.assertEqual(j["kv_dtype"], "f32")
        self.assertEqual(j["kv_bytes_per_sequence"], 32 << 30)
        self.assertEqual(j["max_batch"], 1)
        r = self.run_cli("plan", "--model", self.tmp, "--context", "128k", "--memory-gib", "80", "--json")
        self.assert_ok(r)
        self.assertEqual(json.loads(r.stdout)["kv_dtype"], "bf16")
        r = self.run_cli("plan", "--model", self.tmp, "--context", "131072", "--memory-gib", "80", "--kv-dtype", "f32")
        self.assert_ok(r)
        self.assertIn("32.00 GiB per sequence (f32)", r.stdout)

    def test_generate_cpu_kv_dtype_f32(self):
        require_model(self)
        base = ["generate", "--model", model_dir(), "--device", "cpu", "--max-tokens", "5", "--json"]
        r = self.run_cli(*base, "--kv-dtype", "f32", timeout=GENERATE_TIMEOUT_S)
        self.assert_ok(r)
        d = self.run_cli(*base, timeout=GENERATE_TIMEOUT_S)
        self.assert_ok(d)
        self.assertEqual(json.loads(r.stdout)["tokens"], json.loads(d.stdout)["tokens"])

    def test_generate_cpu_device_flag(self):
        require_model(self)
        r = self.run_cli("generate", "--model", model_dir(), "--device", "cpu", "--max-tokens", "5", "--json",
                         timeout=GENERATE_TIMEOUT_S)
        self.assert_ok(r)
        j = json.loads(r.stdout)
        self.assertEqual(j["device"], "cpu")
        self.assertEqual(len(j["tokens"]), 5)


class PromptIdsTest(CliTestCase):
    """generate --prompt-ids FILE: token ids used as they are; without tokenizer.json it needs --json and omits
    "text" (tools/hf_compare passes ids to models saved by transformers, which have no tokenizer)."""

    IDS = [1, 9038, 2501, 263, 931]  # "Once upon a time" with BOS (test_prompt_file_equals_prompt)

    def setUp(self):
        require_model(self)
        self.tmp = tempfile.mkdtemp(prefix="skv-ids-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        # stories15M without its tokenizer: config.json and a link to the weights.
        self.notok = os.path.join(self.tmp, "notok")
        os.mkdir(self.notok)
        shutil.copy(os.path.join(model_dir(), "config.json"), self.notok)
        os.symlink(os.path.join(model_dir(), "model.safetensors"), os.path.join(self.notok, "model.safetensors"))
        self.ids = self.write("ids.txt", " ".join(map(str, self.IDS)) + "\n")

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_json(self, model, *args):
        r = self.run_cli("generate", "--model", model, "--json", *args, timeout=GENERATE_TIMEOUT_S)
        self.assert_ok(r)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 1, f"--json must print exactly one line{r.describe()}")
        return json.loads(lines[0])

    def test_ids_equal_text_prompt(self):
        a = self.run_json(model_dir(), "--prompt-ids", self.ids, "--max-tokens", "8")
        b = self.run_json(model_dir(), "--prompt", "Once upon a time", "--max-tokens", "8")
        self.assertEqual(a["prompt_tokens"], self.IDS)
        self.assertEqual(a["tokens"], b["tokens"])
        self.assertEqual(a["text"], b["text"], "with tokenizer.json present, the text is decoded as usual")

    def test_without_tokenizer_json_only_ids(self):
        ref = self.run_json(model_dir(), "--prompt-ids", self.ids, "--max-tokens", "8")
        # commas and newlines separate ids too
        ids2 = self.write("ids2.txt", "1,9038\n2501 263,931\n")
        out = self.run_json(self.notok, "--prompt-ids", ids2, "--max-tokens", "8")
        self.assertEqual(out["prompt_tokens"], self.IDS)
        self.assertEqual(out["tokens"], ref["tokens"])
        self.assertNotIn("text", out)
        self.assertIn("tokenizer.json", out["text_omitted"])
        self.assertEqual(out["finish_reason"], "length")

    def test_errors(self):
        self.assert_error(["generate", "--model", self.notok, "--prompt-ids", self.ids], "tokenizer.json", "--json")
        self.assert_error(["generate", "--model", self.notok, "--prompt-ids", self.ids, "--json", "--stop", "x"],
                          "--stop", "tokenizer.json")
        bad = self.write("bad.txt", "1 32000\n")
        self.assert_error(["generate", "--model", self.notok, "--prompt-ids", bad, "--json"], "32000", "vocabulary")
        word = self.write("word.txt", "1 x 3\n")
        self.assert_error(["generate", "--model", self.notok, "--prompt-ids", word, "--json"], "word.txt", "'x'")
        neg = self.write("neg.txt", "1 -3\n")
        self.assert_error(["generate", "--model", self.notok, "--prompt-ids", neg, "--json"], "'-3'")
        empty = self.write("empty.txt", " \n")
        self.assert_error(["generate", "--model", self.notok, "--prompt-ids", empty, "--json"], "no token ids")
        self.assert_error(["generate", "--model", self.notok, "--prompt-ids", os.path.join(self.tmp, "nope.txt"),
                           "--json"], "nope.txt")
        self.assert_usage_error(["generate", "--model", model_dir(), "--prompt-ids", self.ids, "--prompt", "hi"],
                                "--prompt")
        self.assert_usage_error(["generate", "--model", model_dir(), "--prompt-ids", self.ids, "--prompt-file",
                                 self.ids], "--prompt-file")


def main():
    global SHADOWKV, MODELS, SHARED_DATA
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shadowkv", required=True, help="the shadowkv program")
    ap.add_argument("--models", required=True, help="the models folder (SKV_MODELS_DIR)")
    ap.add_argument("--shared-data", default=os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared",
                                                          "data"), help="shared test data (SKV_SHARED_DATA_DIR)")
    args, rest = ap.parse_known_args()
    SHADOWKV = os.path.abspath(args.shadowkv)
    MODELS = os.path.abspath(args.models)
    SHARED_DATA = os.path.abspath(args.shared_data)
    if not (os.path.isfile(SHADOWKV) and os.access(SHADOWKV, os.X_OK)):
        print(f"FAIL: {SHADOWKV} is not an executable (build the shadowkv target)", file=sys.stderr)
        return 1
    if not os.path.isdir(model_dir()):
        print(f"NOTE: {model_missing_message()}", file=sys.stderr)
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
