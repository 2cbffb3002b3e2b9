"""Light unit tests of the task generators: python3 tools/testbed/test_tasks.py (CPU, seconds)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks as T  # noqa: E402
import tokenizer_util as TU  # noqa: E402

TEXT = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
        "and darkness was upon the face of the deep.\nAnd God said, Let there be light: and there was light. "
        "Hackers are people who enjoy exploring the details of programmable systems! Why? Because it is fun.\n") * 40


def main():
    tok = TU.Tok(TU.train_fallback([TEXT, "special magic number uuid VAR 0123456789 abcdef", T.NOISE], 400))
    corpus = T.Corpus("t", TEXT, tok)
    assert tok.encode(TEXT) == corpus.tokens.tolist(), "chunked tokenization differs"
    words = T.Words(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"])
    for task in T.TASKS + ("lm",):
        for seed in range(20):
            for length in (1024, 2048):
                n = T.EVAL_PARAMS.get(task) if seed % 2 else None
                hex_p = 0.5 if seed % 4 >= 2 else 0.0
                try:
                    s1 = T.make_sample(task, length, np.random.default_rng(seed), tok, corpus, words, n=n, hex_p=hex_p)
                except ValueError:  # too short for this many needle lines (training falls back to another task)
                    assert task in T.LINE_TASKS and length == 1024, (task, length)
                    continue
                s2 = T.make_sample(task, length, np.random.default_rng(seed), tok, corpus, words, n=n, hex_p=hex_p)
                assert (s1["ids"] == s2["ids"]).all(), "not deterministic"
                assert len(s1["ids"]) == length and s1["ids"][0] == tok.bos_id
                if task == "lm":
                    continue
                assert s1["ids"][-1] == tok.eos_id
                text = tok.decode(s1["ids"][1:])
                prompt = tok.decode(s1["ids"][1:s1["spans"][0][0]])
                for (a, b), v in zip(s1["spans"], s1["values"]):
                    assert tok.decode(s1["ids"][a:b]) == " " + v, (tok.decode(s1["ids"][a:b]), v)
                    if task == "vt":
                        assert f"VAR {v} =" in prompt, v
                    else:
                        assert prompt.count(f" is: {v}.") == 1, f"{task}: value {v} not exactly once"
                if task.startswith("single"):
                    assert prompt.count("One of the special magic") == 1
                if task in T.LINE_TASKS:  # the needles are whole lines, as shadowkv eval writes them
                    v0 = s1["values"][0]
                    hit = [x for x in prompt.split("\n") if (x.startswith(f"VAR {v0} = ") if task == "vt"
                                                              else f" is: {v0}." in x)]
                    assert len(hit) == 1 and (hit[0].startswith("VAR ") or hit[0].startswith("One of")), \
                        (task, seed, length, v0, hit, prompt[-400:])
                if task in T.DISTRACTOR_TASKS:  # the asked key is in exactly one needle
                    key = prompt.rsplit(" for ", 1)[1].split(" mentioned")[0]
                    assert prompt.count(f" for {key} is: ") == 1, key
                if task == "single_noise":
                    assert prompt.count(T.NOISE) > 3
                assert s1["lm"][s1["ans"] > 0].sum() == 0
                pred = np.concatenate([s1["ids"][1:], [0]])  # a perfect predictor
                assert T.score(s1, pred) == 1.0
                only = np.zeros_like(pred)  # ... known only where score() reads (train.evaluate's way)
                only[T.scored_positions(s1)] = pred[T.scored_positions(s1)]
                assert T.score(s1, only) == 1.0, (task, "score reads a position scored_positions leaves out")
                pred[s1["spans"][-1][0] - 1] = -1
                assert T.score(s1, pred) < 1.0
                pred = np.concatenate([s1["ids"][1:], [0]])
                pred[s1["end"] - 1] = -1  # every value right, but the answer does not stop
                assert T.score(s1, pred) < 1.0, (task, "stopping is not scored")
                if seed == 0 and length == 1024:
                    print(f"--- {task}: ...{text[-330:]!r}")
    # multikey_near: many distractors share a word with the asked key (the engine's niah_multikey_2 at 32K has
    # ~20), multikey_lines' keys from the whole list almost none; neither repeats a key
    big = T.Words([f"w{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(600)])
    for task, lo, hi in (("multikey_near", 2, 10 ** 6), ("multikey_lines", 0, 1.5)):
        shared = []
        for seed in range(6):
            s = T.make_sample(task, 8192, np.random.default_rng(seed), tok, corpus, big)
            prompt = tok.decode(s["ids"][1:s["spans"][0][0]])
            key = prompt.rsplit(" for ", 1)[1].split(" mentioned")[0]
            first, second = key.split("-")
            keys = [x.split(" for ", 1)[1].split(" is: ")[0] for x in prompt.split("\n")
                    if x.startswith("One of") and " is: " in x]  # the last line may be cut
            assert len(keys) == len(set(keys)) > 50 and keys.count(key) == 1, (task, seed, len(keys))
            shared.append(sum(k != key and (k.split("-")[0] == first or k.split("-")[1] == second) for k in keys))
        assert lo <= np.mean(shared) <= hi, (task, shared)
        print(f"{task}: distractors sharing a word with the asked key at 8K: {shared}")
    # hex ids: 2-6 groups of 2-12 hex digits; hex_p 0 draws nothing extra (the old uuid stream is unchanged)
    rng = np.random.default_rng(7)
    for _ in range(200):
        v = T.hex_id(rng)
        groups = v.split("-")
        assert 2 <= len(groups) <= 6 and all(2 <= len(g) <= 12 and all(c in "0123456789abcdef" for c in g) for g in groups), v
    s = T.make_sample("single_uuid", 1024, np.random.default_rng(5), tok, corpus, words, end_weight=4.0)
    assert s["ans"][s["end"]] == 4.0 and s["ids"][s["end"]] == tok.eos_id and (s["ans"] == 4.0).sum() == 1
    for task in ("single_uuid", "multivalue", "vt", "multikey_uuids"):  # a tail of another document after the answer
        s = T.make_sample(task, 2048, np.random.default_rng(11), tok, corpus, words, tail=100)
        assert len(s["ids"]) == 2048 and s["end"] == 2048 - 101 and s["ids"][s["end"]] == tok.eos_id
        assert s["ids"][2048 - 100] == tok.bos_id and s["lm"][2048 - 100] == 0 and s["lm"][2048 - 99:].all()
        assert s["ans"][2048 - 100:].sum() == 0
        pred = np.concatenate([s["ids"][1:], [0]])
        assert T.score(s, pred) == 1.0
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert [T.uuid_value(a, 0.0) for _ in range(5)] == [T.uuid(b) for _ in range(5)]
    check_phases()
    print("test_tasks: OK")


def check_phases():
    """train.phase_at on the committed recipe: phase boundaries and the config-wide defaults (needs torch,
    which train.py imports; skipped without it)."""
    try:
        import train  # noqa: PLC0415
    except ImportError as e:
        print(f"check_phases: skipped ({e})")
        return
    import json  # noqa: PLC0415
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.json")) as f:
        tc = json.load(f)["train"]
    tc = dict(tc, curriculum=tc["resume_curriculum"])
    first, last = tc["curriculum"][0], tc["curriculum"][-1]
    ph = train.phase_at(tc, 0.0)
    assert ph.lengths == first["lengths"] and ph.task_mix == first.get("task_mix", tc["task_mix"])
    assert ph.end_jitter == first.get("end_jitter", tc.get("end_jitter", 0))
    assert ph.uuid_hex_p == first.get("uuid_hex_p", tc.get("uuid_hex_p", 0.0))
    assert train.phase_at(tc, first["until"]).lengths == tc["curriculum"][1]["lengths"]  # "until" is exclusive
    assert train.phase_at(tc, 5.0) == train.phase_at(tc, 0.999)  # past the end: the last phase
    bare = {"curriculum": [{"until": 1.01, "lengths": {"512": 1}}], "task_mix": {"lm": 1}}
    assert train.phase_at(bare, 0.5) == train.Phase({"512": 1}, {"lm": 1}, {}, 0.0, 1.0, 0, 0.5)
    assert last["until"] > 1.0
    check_chains(train, json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.json"))))


def check_chains(train, cfg):
    """Every run of every chain (train.chain_run): phases that end past 1, lengths the model takes, known tasks
    with positive weights, the entry's rate."""
    tc, max_len = cfg["train"], cfg["model"]["max_position_embeddings"]
    for name, runs in tc["chains"].items():
        for i, entry in enumerate(runs):
            rt = train.chain_run(tc, name, i)
            assert rt["chain_lr_scale"] == entry.get("lr_scale", 1.0) and rt["chain_run"] == i
            assert rt["answer_loss_weight"] == entry.get("answer_loss_weight", tc["answer_loss_weight"]) > 0
            assert rt["curriculum"][-1]["until"] > 1.0, (name, i)
            for p in (0.0, 0.3, 0.6, 0.99):
                ph = train.phase_at(rt, p)
                assert all(0 < int(L) <= max_len for L in ph.lengths), (name, i, ph.lengths)
                assert set(ph.task_mix) <= set(T.TASKS) | {"lm"} and min(ph.task_mix.values()) > 0, (name, i)
                assert 0.0 <= ph.flat_p <= 1.0, (name, i)
    try:
        train.chain_run(tc, "scratch", len(tc["chains"]["scratch"]))  # past the chain's end
        raise AssertionError("chain_run ran past the chain's end")
    except SystemExit:
        pass
    # an entry's phase keys are the default of its phases; a phase's own still wins; unknown keys are refused
    toy = dict(tc, chains={"toy": [{"curriculum": [{"until": 0.5, "lengths": {"512": 1}, "flat_p": 1.0},
                                                   {"until": 1.01, "lengths": {"512": 1}}],
                                    "task_mix": {"vt": 1}, "flat_p": 0.0, "end_jitter": 64},
                                   {"curriculum": [{"until": 1.01, "lengths": {"512": 1}}], "flatp": 0.0}]})
    first, second = (train.phase_at(train.chain_run(toy, "toy", 0), p) for p in (0.2, 0.8))
    assert first.task_mix == second.task_mix == {"vt": 1} and first.end_jitter == second.end_jitter == 64
    assert (first.flat_p, second.flat_p) == (1.0, 0.0)
    try:
        train.chain_run(toy, "toy", 1)
        raise AssertionError("chain_run took an unknown key (flatp)")
    except SystemExit:
        pass


if __name__ == "__main__":
    main()
