"""Byte-level BPE tokenizer for the testbed model.

The real run trains it with Hugging Face `tokenizers` (train_hf). `train_fallback` is a small pure-Python
trainer that writes the same tokenizer.json layout; it exists only so the CPU smoke test can run where
`tokenizers` is not installed. Both use the Llama-3 split regex + ByteLevel(use_regex=false) pre-tokenizer,
the ByteLevel decoder, special tokens <|bos|> (id 0) and <|eos|> (id 1), and a TemplateProcessing
post-processor that prepends <|bos|>.
"""
import json
import re

BOS, EOS = "<|bos|>", "<|eos|>"
SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Python `re` has no \p{..}: an approximation used only by the fallback (letters = [^\W\d_], numbers = \d).
_PY_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|(?:[^\r\n\w]|_)?[^\W\d_]+|\d{1,3}| ?(?:[^\s\w]|_)+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def train_hf(texts, vocab_size):
    """Returns tokenizer.json text. `texts`: an iterable of strings."""
    from tokenizers import Tokenizer, Regex, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, tok.token_to_id(BOS))])
    return tok.to_str()


def _tokenizer_json(vocab, merges):
    return json.dumps({
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate((BOS, EOS))],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {BOS: {"id": BOS, "ids": [0], "tokens": [BOS]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }, ensure_ascii=False)


def train_fallback(texts, vocab_size):
    """Pure-Python byte-level BPE (smoke tests only; slow above a few hundred KB / a few thousand merges)."""
    import collections
    b2u = bytes_to_unicode()
    counts = collections.Counter()
    for t in texts:
        counts.update(re.findall(_PY_PATTERN, t))
    words = [[b2u[b] for b in w.encode("utf-8")] for w in counts]
    freqs = list(counts.values())
    vocab = {BOS: 0, EOS: 1}
    for ch in sorted(b2u.values(), key=lambda c: [k for k, v in b2u.items() if v == c][0]):
        vocab[ch] = len(vocab)
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for i, w in enumerate(words):
        for p in zip(w, w[1:]):
            pairs[p] += freqs[i]
            where[p].add(i)
    merges = []
    while len(vocab) < vocab_size and pairs:
        best, c = max(pairs.items(), key=lambda kv: kv[1])
        if c < 2:
            break
        merges.append(best)
        new = best[0] + best[1]
        vocab[new] = len(vocab)
        for i in list(where[best]):
            w = words[i]
            for p in zip(w, w[1:]):
                pairs[p] -= freqs[i]
                if pairs[p] <= 0:
                    del pairs[p]
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and (w[j], w[j + 1]) == best:
                    out.append(new)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for p in zip(out, out[1:]):
                pairs[p] += freqs[i]
                where[p].add(i)
        where.pop(best, None)
    return _tokenizer_json(vocab, merges)


class Tok:
    """encode(text) -> ids without BOS; bos_id / eos_id; decode(ids)."""

    def __init__(self, json_str, force_python=False):
        self.json_str = json_str
        d = json.loads(json_str)
        self.vocab = d["model"]["vocab"]
        for a in d.get("added_tokens", []):
            self.vocab[a["content"]] = a["id"]
        self.bos_id, self.eos_id = self.vocab[BOS], self.vocab[EOS]
        self.vocab_size = max(self.vocab.values()) + 1
        self.hf = None
        if not force_python:
            try:
                from tokenizers import Tokenizer
                self.hf = Tokenizer.from_str(json_str)
            except ImportError:
                pass
        if self.hf is None:
            self.ranks = {tuple(m if isinstance(m, list) else m.split(" ", 1)): i
                          for i, m in enumerate(d["model"]["merges"])}
            self.b2u = bytes_to_unicode()
            self.u2b = {v: k for k, v in self.b2u.items()}
            self.id2tok = {v: k for k, v in self.vocab.items()}
            self.cache = {}

    def _bpe(self, word):
        ids = self.cache.get(word)
        if ids is not None:
            return ids
        sym = [self.b2u[b] for b in word.encode("utf-8")]
        while len(sym) > 1:
            best = min(range(len(sym) - 1), key=lambda i: self.ranks.get((sym[i], sym[i + 1]), 1 << 30))
            if (sym[best], sym[best + 1]) not in self.ranks:
                break
            sym[best:best + 2] = [sym[best] + sym[best + 1]]
        ids = [self.vocab[s] for s in sym]
        if len(self.cache) < 200000:
            self.cache[word] = ids
        return ids

    def encode(self, text):
        if self.hf is not None:
            return self.hf.encode(text, add_special_tokens=False).ids
        out = []
        for w in re.findall(_PY_PATTERN, text):
            out.extend(self._bpe(w))
        return out

    def encode_batch(self, texts):
        if self.hf is not None:
            return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]
        return [self.encode(t) for t in texts]

    def decode(self, ids):
        if self.hf is not None:
            return self.hf.decode(list(ids), skip_special_tokens=False)
        parts = []
        for i in ids:
            t = self.id2tok[int(i)]
            parts.append(t.encode() if t in (BOS, EOS) else bytes(self.u2b[c] for c in t))
        return b"".join(parts).decode("utf-8", errors="replace")


def tokenizer_config_json(max_len):
    return json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOS,
                       "add_bos_token": True, "add_eos_token": False, "model_max_length": max_len,
                       "clean_up_tokenization_spaces": False}, indent=1)
