#!/usr/bin/python3
"""Self-checks of the numpy reference forward, the tiny model writer and the comparison harness,
independent of the engine (ctest reference_self_check)."""

import copy
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference_forward as rf  # noqa: E402
import tiny_models as tm  # noqa: E402
from safetensors_np import (bf16_bits_to_f32, f32_to_bf16_bits, read_safetensors, round_to_bf16,  # noqa: E402
                            write_safetensors)


def spec_weights(name):
    spec = tm.base_spec(name)
    return spec, tm.make_config(spec), {k: v.astype(np.float64) for k, v in tm.make_weights(spec).items()}


class SafetensorsTest(unittest.TestCase):
    def test_bf16_rounding_known_values(self):
        x = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, -2.5, 1.0 + 2**-7, 3.0e-3], dtype=np.float32)
        bits = f32_to_bf16_bits(x)
        self.assertEqual(bits[0], 0x3F80)
        self.assertEqual(bits[1], 0x3F80)  # exactly halfway: ties to even (down)
        self.assertEqual(bits[2], 0x3F82)  # halfway between 0x3F81 and 0x3F82: ties to even (up)
        self.assertEqual(bits[3], 0xC020)
        self.assertEqual(bits[4], 0x3F81)  # representable: unchanged
        back = bf16_bits_to_f32(bits)
        self.assertLessEqual(abs(back[5] - x[5]) / x[5], 2**-8)  # unit roundoff of an 8-bit significand

    def test_roundtrip_and_layout(self):
        rng = np.random.default_rng(0)
        t = {"a.weight": rng.standard_normal((3, 5)).astype(np.float32), "b": rng.standard_normal(7).astype(np.float32)}
        with tempfile.TemporaryDirectory() as d:
            for dt in ("F32", "BF16", "F16"):
                p = os.path.join(d, dt + ".safetensors")
                write_safetensors(p, t, dt)
                with open(p, "rb") as f:
                    raw = f.read()
                (n,) = struct.unpack("<Q", raw[:8])
                self.assertEqual(n % 8, 0)
                header = json.loads(raw[8 : 8 + n])
                ends = sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
                self.assertEqual(ends[0][0], 0)
                self.assertEqual(ends[0][1], ends[1][0])
                self.assertEqual(len(raw), 8 + n + ends[-1][1])
                back = read_safetensors(p)
                for k, v in t.items():
                    self.assertEqual(back[k].shape, v.shape)
                    if dt == "F32":
                        np.testing.assert_array_equal(back[k], v)
                    elif dt == "BF16":
                        np.testing.assert_array_equal(back[k], round_to_bf16(v))
                    else:
                        np.testing.assert_array_equal(back[k], v.astype(np.float16))


class RopeTest(unittest.TestCase):
    def test_inv_freq_definition(self):
        inv = rf.default_inv_freq(16, 10000.0)
        self.assertEqual(inv.shape, (8,))
        for i in range(8):
            self.assertAlmostEqual(inv[i], 10000.0 ** (-2 * i / 16), places=15)

    def test_rotate_half(self):
        x = np.arange(1.0, 9.0)
        np.testing.assert_array_equal(rf.rotate_half(x), [-5, -6, -7, -8, 1, 2, 3, 4])
        np.testing.assert_array_equal(rf.rotate_half(rf.rotate_half(x)), -x)

    def test_pairs_are_i_and_i_plus_half(self):
        d, pos = 16, 5
        inv = rf.default_inv_freq(d, 10000.0)
        cos, sin = rf.rope_cos_sin([pos], inv)
        for i in range(d // 2):
            x = np.zeros((1, 1, d))
            x[0, 0, i], x[0, 0, i + d // 2] = 0.3, -0.7
            y = rf.apply_rope(x, cos, sin)[0, 0]
            a = pos * inv[i]
            want = np.zeros(d)
            want[i] = 0.3 * math.cos(a) - (-0.7) * math.sin(a)
            want[i + d // 2] = 0.3 * math.sin(a) + (-0.7) * math.cos(a)
            np.testing.assert_allclose(y, want, atol=1e-15)

    def test_norm_identity_at_zero_and_relative_positions(self):
        rng = np.random.default_rng(1)
        d = 32
        inv = rf.default_inv_freq(d, 10000.0)
        q, k = rng.standard_normal((1, 1, d)), rng.standard_normal((1, 1, d))

        def rot(x, p):
            c, s = rf.rope_cos_sin([p], inv)
            return rf.apply_rope(x, c, s)[0, 0]

        np.testing.assert_allclose(rot(q, 0), q[0, 0], atol=0)
        for p in (1, 7, 100):
            self.assertAlmostEqual(np.linalg.norm(rot(q, p)), np.linalg.norm(q), places=12)
        self.assertAlmostEqual(rot(q, 9) @ rot(k, 4), rot(q, 29) @ rot(k, 24), places=12)

    def test_llama3_scaling(self):
        rs = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 64}
        d, theta = 64, 500000.0
        inv = rf.default_inv_freq(d, theta)
        scaled = rf.rope_inv_freq(d, theta, rs)
        wavelen = 2 * math.pi / inv
        high = wavelen < 64 / 4.0
        low = wavelen > 64 / 1.0
        mid = ~high & ~low
        self.assertTrue(high.any() and low.any() and mid.any(), "test config should exercise all three bands")
        np.testing.assert_array_equal(scaled[high], inv[high])  # high frequencies untouched
        np.testing.assert_allclose(scaled[low], inv[low] / 8.0, rtol=1e-15)
        self.assertTrue(np.all(scaled[mid] < inv[mid]) and np.all(scaled[mid] > inv[mid] / 8.0))
        # One medium frequency by hand: smooth = (64 / wavelen - 1) / 3.
        i = int(np.argmax(mid))
        s = (64 / wavelen[i] - 1.0) / 3.0
        self.assertAlmostEqual(scaled[i], (1 - s) * inv[i] / 8 + s * inv[i], places=15)
        # The smoothing is continuous at both band edges.
        f_hi, f_lo = 2 * math.pi / 16.0, 2 * math.pi / 64.0
        edge = rf.llama3_inv_freq(np.array([f_hi * (1 - 1e-12), f_lo * (1 + 1e-12)]), 8.0, 1.0, 4.0, 64.0)
        self.assertAlmostEqual(edge[0] / f_hi, 1.0, places=9)
        self.assertAlmostEqual(edge[1] / f_lo, 1.0 / 8.0, places=9)
        # Real Llama 3.1 8B parameters: the 128-dim head keeps its fastest frequencies.
        real = dict(rs, original_max_position_embeddings=8192)
        inv_r = rf.default_inv_freq(128, 500000.0)
        sc_r = rf.rope_inv_freq(128, 500000.0, real)
        self.assertEqual(sc_r[0], inv_r[0])
        self.assertAlmostEqual(sc_r[-1], inv_r[-1] / 8.0, places=20)

    def test_linear_scaling_is_position_over_factor(self):
        d = 16
        inv = rf.default_inv_freq(d, 10000.0)
        lin = rf.rope_inv_freq(d, 10000.0, {"type": "linear", "factor": 4.0})
        c1, s1 = rf.rope_cos_sin([10.0], lin)
        c2, s2 = rf.rope_cos_sin([2.5], inv)
        np.testing.assert_allclose(c1, c2, atol=1e-15)
        np.testing.assert_allclose(s1, s2, atol=1e-15)
        # "rope_type" spelling and "default" are understood too.
        np.testing.assert_array_equal(rf.rope_inv_freq(d, 1e4, {"rope_type": "linear", "factor": 4.0}), lin)
        np.testing.assert_array_equal(rf.rope_inv_freq(d, 1e4, {"rope_type": "default"}), inv)


class BlocksTest(unittest.TestCase):
    def test_rms_norm(self):
        y = rf.rms_norm(np.array([3.0, 4.0]), np.array([1.0, 2.0]), 0.0)
        r = math.sqrt(12.5)
        np.testing.assert_allclose(y, [3 / r, 8 / r], rtol=1e-15)

    def test_silu(self):
        self.assertAlmostEqual(rf.silu(np.array(2.0)), 2.0 / (1 + math.exp(-2.0)), places=15)

    def test_attention_against_naive_loops(self):
        rng = np.random.default_rng(2)
        nq, nkv, n, d = 6, 2, 5, 4
        q, k, v = rng.standard_normal((nq, n, d)), rng.standard_normal((nkv, n, d)), rng.standard_normal((nkv, n, d))
        out = rf.causal_attention(q, k, v, nq // nkv)
        for h in range(nq):
            g = h // (nq // nkv)
            for t in range(n):
                s = [sum(q[h, t, j] * k[g, u, j] for j in range(d)) / math.sqrt(d) for u in range(t + 1)]
                m = max(s)
                e = [math.exp(x - m) for x in s]
                want = sum(e[u] * v[g, u] for u in range(t + 1)) / sum(e)
                np.testing.assert_allclose(out[h, t], want, rtol=1e-12, atol=1e-14)


class ForwardTest(unittest.TestCase):
    def test_every_variant_runs_and_logits_are_not_degenerate(self):
        with tempfile.TemporaryDirectory() as d:
            for name in tm.VARIANTS:
                md = tm.write_variant(name, d)
                cfg = rf.load_config(md)
                toks = np.random.default_rng(3).integers(0, cfg["vocab_size"], 20)
                logits = rf.forward_dir(md, toks)
                self.assertEqual(logits.shape, (20, cfg["vocab_size"]))
                self.assertTrue(np.all(np.isfinite(logits)))
                self.assertTrue(0.3 < logits.std() < 5.0, f"{name}: logit std {logits.std()}")
                p = np.exp(logits - logits.max(1, keepdims=True))
                p /= p.sum(1, keepdims=True)
                self.assertLess(p.max(1).mean(), 0.5, f"{name}: softmax nearly one-hot")

    def test_causal(self):
        for name in ("llama_gqa4", "llama31_rope", "qwen2_bias"):
            _, cfg, w = spec_weights(name)
            rng = np.random.default_rng(4)
            a = rng.integers(0, cfg["vocab_size"], 30)
            b = a.copy()
            b[17:] = rng.integers(0, cfg["vocab_size"], 13)
            la, lb = rf.forward(cfg, w, a), rf.forward(cfg, w, b)
            np.testing.assert_allclose(la[:17], lb[:17], rtol=0, atol=1e-12)
            self.assertGreater(np.abs(la[17:] - lb[17:]).max(), 1e-3)
            # A prefix alone gives the same logits as inside the longer sequence.
            np.testing.assert_allclose(rf.forward(cfg, w, a[:10]), la[:10], rtol=0, atol=1e-12)

    def test_gqa_equals_mha_with_repeated_kv_heads(self):
        for name in ("llama_gqa4", "mistral"):
            _, cfg, w = spec_weights(name)
            p = rf.Params(cfg)
            n_rep, hd = p.n_heads // p.n_kv_heads, p.head_dim
            cfg2 = dict(cfg, num_key_value_heads=p.n_heads)
            w2 = dict(w)
            for i in range(p.n_layers):
                for proj in ("k_proj", "v_proj"):
                    key = f"model.layers.{i}.self_attn.{proj}.weight"
                    heads = w[key].reshape(p.n_kv_heads, hd, p.dim)
                    w2[key] = np.repeat(heads, n_rep, axis=0).reshape(p.n_heads * hd, p.dim)
            toks = np.random.default_rng(5).integers(0, cfg["vocab_size"], 25)
            np.testing.assert_allclose(rf.forward(cfg2, w2, toks), rf.forward(cfg, w, toks), rtol=0, atol=1e-12)

    def test_explicit_head_dim(self):
        _, cfg, w = spec_weights("mistral")
        p = rf.Params(cfg)
        self.assertEqual(p.head_dim, 32)
        self.assertNotEqual(p.head_dim, p.dim // p.n_heads)
        self.assertEqual(w["model.layers.0.self_attn.q_proj.weight"].shape, (4 * 32, 64))
        self.assertEqual(w["model.layers.0.self_attn.k_proj.weight"].shape, (2 * 32, 64))

    def test_tied_equals_explicit_lm_head(self):
        _, cfg, w = spec_weights("qwen2_bias")
        self.assertNotIn("lm_head.weight", w)
        w2 = dict(w, **{"lm_head.weight": w["model.embed_tokens.weight"]})
        toks = np.arange(12)
        np.testing.assert_array_equal(rf.forward(dict(cfg, tie_word_embeddings=False), w2, toks),
                                      rf.forward(cfg, w, toks))
        with self.assertRaises(ValueError):
            rf.forward(dict(cfg, tie_word_embeddings=False), w, toks)

    def test_single_token_by_hand(self):
        """n = 1: attention is the identity on v, RoPE at position 0 is the identity. One layer by hand."""
        _, cfg, w = spec_weights("qwen2_bias")
        cfg = dict(cfg, num_hidden_layers=1)
        p = rf.Params(cfg)
        tok = 123

        def norm(x, g):
            return x / math.sqrt(float(np.mean(x * x)) + p.eps) * g

        pre = "model.layers.0."
        h = w["model.embed_tokens.weight"][tok]
        x = norm(h, w[pre + "input_layernorm.weight"])
        v = w[pre + "self_attn.v_proj.weight"] @ x + w[pre + "self_attn.v_proj.bias"]
        vh = v.reshape(p.n_kv_heads, p.head_dim)
        a = np.concatenate([vh[hq // (p.n_heads // p.n_kv_heads)] for hq in range(p.n_heads)])
        h = h + w[pre + "self_attn.o_proj.weight"] @ a
        x = norm(h, w[pre + "post_attention_layernorm.weight"])
        gate = w[pre + "mlp.gate_proj.weight"] @ x
        up = w[pre + "mlp.up_proj.weight"] @ x
        h = h + w[pre + "mlp.down_proj.weight"] @ (gate / (1 + np.exp(-gate)) * up)
        want = w["model.embed_tokens.weight"] @ norm(h, w["model.norm.weight"])
        np.testing.assert_allclose(rf.forward(cfg, w, [tok])[0], want, rtol=1e-12, atol=1e-12)

    def test_rope_scaling_changes_later_positions_only(self):
        for name in ("llama31_rope", "llama_linear_rope"):
            _, cfg, w = spec_weights(name)
            plain = {k: v for k, v in cfg.items() if k != "rope_scaling"}
            toks = np.random.default_rng(6).integers(0, cfg["vocab_size"], 67)
            a, b = rf.forward(cfg, w, toks), rf.forward(plain, w, toks)
            np.testing.assert_allclose(a[0], b[0], rtol=0, atol=1e-12)
            self.assertGreater(np.abs(a[1:] - b[1:]).max() / np.abs(a).max(), 1e-2)

    def test_sharded_and_bf16_files(self):
        with tempfile.TemporaryDirectory() as d:
            one = rf.load_weights(tm.write_variant("llama_gqa4", d))
            sharded_dir = tm.write_variant("llama_gqa4_sharded", d)
            shards = [f for f in os.listdir(sharded_dir) if f.endswith(".safetensors")]
            self.assertEqual(sorted(shards), ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
            sharded = rf.load_weights(sharded_dir)
            self.assertEqual(set(one), set(sharded))
            for k in one:
                np.testing.assert_array_equal(one[k], sharded[k])
            bf = rf.load_weights(tm.write_variant("llama_gqa4_bf16", d))
            for k in one:
                np.testing.assert_array_equal(bf[k], round_to_bf16(one[k].astype(np.float32)))
            with open(os.path.join(d, "llama_gqa4_bf16", "config.json")) as f:
                self.assertEqual(json.load(f)["torch_dtype"], "bfloat16")

    def test_bias_consistency_is_enforced(self):
        _, cfg, w = spec_weights("llama_gqa4")
        with self.assertRaises(ValueError):
            rf.forward(dict(cfg, attention_bias=True), w, [1, 2])


class HarnessTest(unittest.TestCase):
    """check_forward.py against a stand-in engine: passes when right, fails on each planted bug."""

    def run_check(self, bug, variants):
        with tempfile.TemporaryDirectory() as d:
            tool = os.path.join(d, "fake_dump")
            with open(tool, "w") as f:
                f.write(f"#!/bin/sh\nexec {sys.executable} {os.path.join(HERE, 'fake_dump_logits.py')} --bug {bug} \"$@\"\n")
            os.chmod(tool, 0o755)
            proc = subprocess.run([sys.executable, os.path.join(HERE, "check_forward.py"), "--dump-logits", tool,
                                   "--variants", variants], capture_output=True, text=True, timeout=600)
            return proc.returncode, proc.stdout + proc.stderr

    def test_correct_engine_passes(self):
        rc, out = self.run_check("none", ",".join(tm.VARIANTS))
        self.assertEqual(rc, 0, out)
        self.assertIn("all variants agree", out)

    def test_planted_bugs_fail(self):
        for bug, variant in (("no_rope_scaling", "llama31_rope"), ("no_rope_scaling", "llama_linear_rope"),
                             ("kv_head_modulo", "llama_gqa4"), ("kv_head_modulo", "mistral"),
                             ("no_bias", "qwen2_bias")):
            rc, out = self.run_check(bug, variant)
            self.assertEqual(rc, 1, f"bug {bug} on {variant} not detected:\n{out}")
            self.assertIn(f"FAIL  {variant}", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
