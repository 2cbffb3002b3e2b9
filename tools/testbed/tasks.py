"""Haystacks and RULER-style retrieval tasks, built directly as token ids.

A Corpus is one text (e.g. kjv.train.txt) cut into sentence-sized chunks at pre-tokenizer boundaries, tokenized chunk by chunk (with the Llama-3 split regex this equals tokenizing the whole text)
and concatenated; `starts` holds the token offset of every chunk, the places where needles may go.

Every sample is   <|bos|> preamble haystack-with-needles question answer <|eos|>   of exactly `length`
tokens. make_sample returns the ids, a per-token LM mask (haystack text; needles and the answer excluded),
an answer mask (the answer tokens and the final <|eos|>: the targets the task loss upweights) and the answer
spans used for scoring ([start, end) token ranges, one per expected value). Deterministic in `rng`
(a numpy Generator).

Tasks (RULER names in brackets):
  single_number  one needle, word-pair key -> 7-digit number          [niah_single_2]
  single_uuid    one needle, word-pair key -> uuid                    [niah_single_3-like]
  multikey       n needles with distinct keys, one asked               [niah_multikey_1]
  multivalue     one key with n values, all asked (order of appearance)[niah_multivalue]
  multiquery     n keys, all asked (order of the question)            [niah_multiquery]
  vt             a chain VAR A = 12345, VAR B = VAR A, ...; list all   [vt]
  single_noise   one needle (number) among repeated noise lines       [niah_single_1]
  multikey_lines the haystack is needles of other keys (numbers), one line each          [niah_multikey_2]
  multikey_uuids the haystack is needles of other uuid keys with uuid values             [niah_multikey_3]
  multikey_near  multikey_lines with keys from a few words, so that many distractors share a word with
                 the asked key (as in `shadowkv eval`, whose keys pair 160 adjectives with 160 nouns:
                 ~20 distractors at 32K share a word with the asked key; with keys from the whole word
                 list almost none do, and the road's models answered a near key's number)  [niah_multikey_2]
  lm             plain language modelling

The layouts follow RULER as `shadowkv eval` builds it (src/eval/tasks.cpp), so the model meets the engine's
prompts: essay haystacks with needles between sentences (the caller may pass a whitespace-flattened corpus,
RULER's words joined by spaces), line haystacks (noise sentences, distractor needles, variable tracking) with
every needle on its own line, "a, b, c, and d" lists, RULER's variable-tracking wording.
"""
import re

import numpy as np

TASKS = ("single_number", "single_uuid", "multikey", "multivalue", "multiquery", "vt", "single_noise", "multikey_lines",
         "multikey_uuids", "multikey_near")
LINE_TASKS = ("vt", "single_noise", "multikey_lines", "multikey_uuids", "multikey_near")  # needles as lines
DISTRACTOR_TASKS = ("multikey_lines", "multikey_uuids", "multikey_near")  # the haystack is other keys' needles
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
EVAL_PARAMS = {"multikey": 4, "multivalue": 4, "multiquery": 4, "vt": 4}  # needles / values / queries / hops


class Corpus:
    def __init__(self, name, text, tok, max_chars=None, flat=False):
        if max_chars:
            text = text[:max_chars]
        if flat:  # RULER's essay haystack: the words joined by single spaces
            text = " ".join(text.split())
        # Cut after a run of newlines and before the space that follows a sentence or clause end: both
        # are pre-tokenizer boundaries, so the concatenated ids equal those of the whole text.
        chunks = [c for c in re.split(r"(?<=\n)(?=[^\n])|(?<=[.!?;:])(?= )", text) if c]
        ids = tok.encode_batch(chunks)
        lens = np.array([len(x) for x in ids], dtype=np.int64)
        self.name = name
        self.tokens = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(lens.sum()))
        st = np.concatenate([[0], np.cumsum(lens)[:-1]])
        # needles (" One of the ...") go before a chunk that starts with a space, i.e. after a sentence end
        self.starts = st[(lens > 0) & np.array([c.startswith(" ") for c in chunks])]

    def __len__(self):
        return len(self.tokens)

    def window(self, rng, n):
        """n contiguous tokens starting at a chunk start (the text repeats if it is shorter than n) and the
        chunk starts inside them (relative offsets)."""
        total = len(self.tokens)
        reps = 1 + (n + total) // total
        s = int(self.starts[rng.integers(len(self.starts))])
        idx = (s + np.arange(n)) % total
        toks = self.tokens[idx]
        rel = np.concatenate([(self.starts - s) % total + r * total for r in range(reps)])
        rel = np.unique(rel[(rel > 0) & (rel < n)])
        return toks, rel


class Words:
    """Keys "first-second" (RULER's adjective-noun pairs); the second word from `seconds` (default: words)."""
    def __init__(self, words, seconds=None):
        self.words = list(words)
        self.seconds = self.words if seconds is None else list(seconds)

    def key(self, rng):
        w, v = self.words, self.seconds
        return f"{w[rng.integers(len(w))]}-{v[rng.integers(len(v))]}"

    def narrow(self, rng, m):
        """Keys from m first and m second words drawn from these: m*m keys, each word in m of them."""
        pick = lambda ws: [ws[i] for i in rng.choice(len(ws), size=min(m, len(ws)), replace=False)]
        return Words(pick(self.words), pick(self.seconds))

    def keys(self, rng, n):
        out = []
        while len(out) < n:
            k = self.key(rng)
            if k not in out:
                out.append(k)
        return out


def number(rng):
    return str(int(rng.integers(1000000, 10000000)))


def uuid(rng):
    h = "".join("0123456789abcdef"[i] for i in rng.integers(0, 16, 32))
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(rng.integers(4))]}{h[17:20]}-{h[20:]}"


def hex_id(rng):
    """A uuid-shaped value of varying length: 2-6 dash-separated groups of 2-12 hex digits. Mixed among the
    uuids of training (hex_p), they make the end of an answer something read off the needle (its closing
    period), not counted: with canonical uuids only, run 6 learned a length prior (it stops 27-36 tokens in,
    whatever the value; see models/testbed/README.md)."""
    groups = int(rng.integers(2, 7))
    return "-".join("".join("0123456789abcdef"[i] for i in rng.integers(0, 16, int(rng.integers(2, 13))))
                    for _ in range(groups))


def uuid_value(rng, hex_p):
    """A value of a uuid task: hex_id with probability hex_p, else a canonical uuid (hex_p 0: no draw)."""
    return hex_id(rng) if hex_p > 0 and rng.random() < hex_p else uuid(rng)


def varname(rng):
    return "".join(chr(65 + int(i)) for i in rng.integers(0, 26, 5))


def _join(names):  # RULER: "a, b, c, and d"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + ", and " + names[-1]


def build_spec(task, rng, words, n=None, hex_p=0.0):
    """Text pieces of a task: preamble, needles (in order of depth), question, answer values, separator.
    hex_p: the share of uuid values drawn as variable-length hex ids (hex_id)."""
    kind = "uuid" if task in ("single_uuid", "multikey_uuids") or (task == "multikey" and rng.random() < 0.3) \
        else "number"
    tv, tvs = f"special magic {kind}", f"special magic {kind}s"
    gen = (lambda r: uuid_value(r, hex_p)) if kind == "uuid" else number
    pre = f"Some {tvs} are hidden within the following text. Make sure to memorize it. " \
          f"I will quiz you about the {tvs} afterwards.\n"
    needle = lambda k, v: f"One of the {tvs} for {k} is: {v}."
    if task in ("single_number", "single_uuid", "single_noise"):
        k, v = words.key(rng), gen(rng)
        q = f"\nWhat is the {tv} for {k} mentioned in the provided text? The {tv} for {k} mentioned in the provided text is"
        return pre, [needle(k, v)], q, [v], None, False
    if task in DISTRACTOR_TASKS:  # one real needle; the haystack holds the distractors
        k = uuid(rng) if task == "multikey_uuids" else words.key(rng)
        v = gen(rng)
        q = f"\nWhat is the {tv} for {k} mentioned in the provided text? The {tv} for {k} mentioned in the provided text is"
        return pre, [needle(k, v)], q, [v], None, False
    if task == "multikey":
        n = n or int(rng.integers(2, 9))
        ks = words.keys(rng, n)
        vs = [gen(rng) for _ in ks]
        i = int(rng.integers(n))
        q = f"\nWhat is the {tv} for {ks[i]} mentioned in the provided text? The {tv} for {ks[i]} mentioned in the provided text is"
        return pre, [needle(k, v) for k, v in zip(ks, vs)], q, [vs[i]], None, True
    if task == "multivalue":
        n = n or int(rng.integers(2, 7))
        k = words.key(rng)
        vs = []
        while len(vs) < n:
            v = gen(rng)
            if v not in vs:
                vs.append(v)
        q = f"\nWhat are all the {tvs} for {k} mentioned in the provided text? The {tvs} for {k} mentioned in the provided text are"
        return pre, [needle(k, v) for v in vs], q, vs, ",", False
    if task == "multiquery":
        n = n or int(rng.integers(2, 7))
        ks = words.keys(rng, n)
        vs = [gen(rng) for _ in ks]
        order = list(rng.permutation(n))  # needles appear in a random order; answers follow the question
        q = f"\nWhat are all the {tvs} for {_join(ks)} mentioned in the provided text? " \
            f"The {tvs} for {_join(ks)} mentioned in the provided text are"
        return pre, [needle(ks[i], vs[i]) for i in order], q, vs, ",", True
    if task == "vt":
        hops = n or int(rng.integers(2, 6))
        chains = 1 if n is not None or rng.random() < 0.5 else 2
        names, vals = [], []
        while len(names) < chains * (hops + 1):
            x = varname(rng)
            if x not in names:
                names.append(x)
        while len(vals) < chains:
            v = str(int(rng.integers(10000, 100000)))
            if v not in vals:
                vals.append(v)
        ch = [names[c * (hops + 1):(c + 1) * (hops + 1)] for c in range(chains)]
        # interleave the chains, each kept in order
        needles, pos = [], [0] * chains
        while any(p <= hops for p in pos):
            c = int(rng.choice([i for i in range(chains) if pos[i] <= hops]))
            j = pos[c]
            needles.append(f"VAR {ch[c][j]} = {vals[c]}" if j == 0 else f"VAR {ch[c][j]} = VAR {ch[c][j - 1]}")
            pos[c] += 1
        pre = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
        q = f"\nQuestion: Find all variables that are assigned the value {vals[0]} in the text above. Answer: " \
            f"According to the chain(s) of variable assignment in the text above, {hops + 1} variables are " \
            f"assigned the value {vals[0]}, they are:"
        return pre, needles, q, ch[0], "", False
    raise ValueError(task)


def line_haystack(task, rng, tok, words, n_tokens, avoid, hex_p=0.0):
    """A haystack of n_tokens tokens made of lines (each tokenized with its newline, as in the whole text): RULER's
    noise sentence repeated (single_noise, vt), or needles of other keys (multikey_lines: word keys and numbers;
    multikey_uuids: uuid keys and values; multikey_near: as multikey_lines, `words` narrowed by the caller),
    no key twice. -> (tokens, line starts: where needle lines may go)."""
    if task in ("single_noise", "vt"):
        line_ids = [tok.encode(NOISE + "\n")]
    else:
        uu = task == "multikey_uuids"
        kind = "uuids" if uu else "numbers"
        n_lines = n_tokens // 12 + 8  # a needle line is at least ~14 tokens
        lines, seen = [], set()
        for _ in range(n_lines):
            k, v = (uuid(rng), uuid_value(rng, hex_p)) if uu else (words.key(rng), number(rng))
            if k not in avoid and v not in avoid and k not in seen:
                seen.add(k)
                lines.append(f"One of the special magic {kind} for {k} is: {v}.\n")
        line_ids = tok.encode_batch(lines)
    toks, starts, i = [], [], 0
    while len(toks) < n_tokens:
        starts.append(len(toks))
        toks.extend(line_ids[i % len(line_ids)])
        i += 1
    starts = np.array(starts[1:] + [0], dtype=np.int64)  # a needle may go first, or before any later line
    return np.array(toks[:n_tokens], dtype=np.int32), np.unique(starts[starts < n_tokens])


def make_sample(task, length, rng, tok, corpus, words, n=None, depth=None, hex_p=0.0, end_weight=1.0, tail=0):
    """-> dict(ids int64[length], lm float32[length], ans float32[length] (answer-loss weights: 1 on the answer
    tokens, end_weight on the closing <|eos|>), spans [(a, b)], task, values, end).
    tail > 0: the sample takes length - tail tokens and a new document (<|bos|> + language-modelling text)
    fills the last `tail`, so the answer does not always end at the sequence's last position: with answers
    always there, runs 7-8 learned to stop at positions tied to the training lengths (e.g. 3988 at 4K)."""
    bos, eos = tok.bos_id, tok.eos_id
    ids = np.empty(length, dtype=np.int64)
    lm = np.zeros(length, dtype=np.float32)
    ans = np.zeros(length, dtype=np.float32)
    if task == "lm":
        toks, _ = corpus.window(rng, length - 1)
        ids[0], ids[1:] = bos, toks
        lm[1:] = 1
        return {"ids": ids, "lm": lm, "ans": ans, "spans": [], "task": task}
    if task == "multikey_near":
        # m first and m second words (the engine's lists: 160 each); m*m at least twice the haystack's lines
        # (~14 tokens each) so that keys rarely repeat; ~2 * lines / m distractors share a word with the asked key
        m = max(int(np.ceil(np.sqrt(2 * (length // 14)))), int(rng.integers(16, 161)))
        words = words.narrow(rng, m)
    pre, needles, q, values, sep, shuffled = build_spec(task, rng, words, n, hex_p)
    lines = task in LINE_TASKS
    pre_ids, q_ids = tok.encode(pre), tok.encode(q)
    nd_ids = tok.encode_batch([nd + "\n" if lines else " " + nd for nd in needles])
    ans_pieces = []
    for i, v in enumerate(values):
        if i and sep:
            ans_pieces.append((tok.encode(sep), False))
        ans_pieces.append((tok.encode(" " + v), True))
    ans_pieces.append(([eos], False))
    fixed = 1 + len(pre_ids) + sum(map(len, nd_ids)) + len(q_ids) + sum(len(p) for p, _ in ans_pieces) + tail
    h = length - fixed
    if h < 8 * (len(needles) + 1):
        raise ValueError(f"length {length} too short for task {task}")
    if lines:
        keys = {m.group(1) for m in (re.search(r" for (.+) is: ", nd) for nd in needles) if m}
        hay, cuts = line_haystack(task, rng, tok, words, h, set(values) | keys, hex_p)  # no distractor repeats them
    else:
        hay, cuts = corpus.window(rng, h)
    if len(cuts) < len(needles):
        if lines:  # a needle line never goes inside another line
            raise ValueError(f"length {length} too short for task {task}")
        cuts = np.linspace(0, h, len(needles) + 2)[1:-1].astype(np.int64)
    # depths: evenly spread over [0, 1] for many needles, random otherwise; each maps to a distinct chunk start
    if depth is not None and len(needles) == 1:
        ds = [depth]
    else:
        ds = np.sort(rng.random(len(needles)))
    picks = []
    for d in ds:
        j = int(np.clip(np.searchsorted(cuts, d * h), 0, len(cuts) - 1))
        while j in picks and j + 1 < len(cuts):
            j += 1
        while j in picks:
            j -= 1
        picks.append(j)
    picks = sorted(picks)
    p = 0
    ids[p] = bos
    p += 1
    ids[p:p + len(pre_ids)] = pre_ids
    lm[p:p + len(pre_ids)] = 1
    p += len(pre_ids)
    prev = 0
    for j, nd in zip(picks, nd_ids):
        c = int(cuts[j])
        seg = hay[prev:c]
        ids[p:p + len(seg)] = seg
        lm[p:p + len(seg)] = 1
        p += len(seg)
        ids[p:p + len(nd)] = nd
        p += len(nd)
        prev = c
    seg = hay[prev:]
    ids[p:p + len(seg)] = seg
    lm[p:p + len(seg)] = 1
    p += len(seg)
    ids[p:p + len(q_ids)] = q_ids
    lm[p:p + len(q_ids)] = 1
    p += len(q_ids)
    spans = []
    for piece, is_value in ans_pieces:
        ids[p:p + len(piece)] = piece
        ans[p:p + len(piece)] = 1
        if is_value:
            spans.append((p, p + len(piece)))
        p += len(piece)
    end = p - 1  # the closing <|eos|>, the last answer piece
    ans[end] = end_weight  # the stop decision, weighted on its own (1: as any answer token)
    if tail > 0:  # the next document: <|bos|> (not a target), then text to model
        ids[p] = bos
        toks, _ = corpus.window(rng, tail - 1)
        ids[p + 1:p + tail] = toks
        lm[p + 1:p + tail] = 1
        p += tail
    assert p == length, (p, length)
    lm[0] = 0  # position 0 is never a target
    return {"ids": ids, "lm": lm, "ans": ans, "spans": spans, "task": task, "values": values, "end": end}


def scored_positions(sample):
    """The positions t whose prediction pred[t] score() reads: the value tokens' predecessors and the last
    value's (the closing <|eos|>'s predecessor)."""
    targets = [t for a, b in sample["spans"] for t in range(a, b)]
    if sample.get("end") is not None:
        targets.append(sample["end"])
    return [t - 1 for t in targets]


def score(sample, pred):
    """pred: argmax next-token ids, pred[t] predicts ids[t + 1]. Fraction of values whose every token is
    predicted (teacher forcing), the last one only if the closing <|eos|> is predicted after it too: for
    single-answer tasks this is exactly greedy decoding's exact match, stopping included."""
    ids = sample["ids"]
    ok = [all(pred[t - 1] == ids[t] for t in range(a, b)) for a, b in sample["spans"]]
    end = sample.get("end")
    if ok and end is not None:
        ok[-1] = ok[-1] and pred[end - 1] == ids[end]
    return sum(ok) / len(ok)
