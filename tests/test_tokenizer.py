"""tokenizer.json built from GGUF vocab/merges gives the ids of a plain byte-level BPE written out here (llama.cpp's
algorithm: pre-tokenizer regex, bytes -> unicode, lowest-rank merge first) and round-trips code text."""

import regex
import pytest

from runtime.bundle import load_bundle
from runtime.tokenizer_build import GPT2_REGEX, QWEN2_REGEX

CODE_CORPUS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "class Stack:\n\tdef push(self, item):  # 12345 items\n\t\tself.items.append(item)\n",
    "const x = [1, 2, 3].map((y) => y ** 2);\r\nconsole.log(`${x}`);\n",
    "    \n\n   trailing   spaces   \n",
    "emoji 🎉 and 日本語 comments; naïve café — don't we'll I've",
    "x=1;y=22;z=333;w=4444\n\n\n\tif(a&&b||!c){return;}",
    "<|endoftext|> is text in a document, not a control token",
]


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


class ReferenceBPE:
    def __init__(self, vocab: dict, merges: list, pieces):
        self.vocab, self.pieces = vocab, pieces
        self.ranks = {tuple(m if isinstance(m, list) else m.split(" ")): i for i, m in enumerate(merges)}
        self.byte_map = bytes_to_unicode()

    def encode(self, text: str) -> list[int]:
        ids = []
        for piece in self.pieces(text):
            word = [self.byte_map[b] for b in piece.encode("utf-8")]
            while len(word) > 1:
                pairs = [(self.ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
                rank, i = min(pairs)
                if rank == 1 << 30:
                    break
                word[i : i + 2] = [word[i] + word[i + 1]]
            ids += [self.vocab[w] for w in word]
        return ids


def smollm_pieces(text):
    for chunk in regex.split(r"(\p{N})", text):  # Digits(individual_digits) first
        if chunk:
            yield from regex.findall(GPT2_REGEX, chunk)


def qwen2_pieces(text):
    yield from regex.findall(QWEN2_REGEX, text)


def reference_for(bundle):
    import json

    data = json.loads((bundle.path / "tokenizer.json").read_text())
    pieces = qwen2_pieces if bundle.meta.architecture == "qwen2" else smollm_pieces
    return ReferenceBPE(data["model"]["vocab"], data["model"]["merges"], pieces)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_ids_equal_reference_bpe(tmp_path, arch):
    from runtime.tiny import make_tiny_bundle

    bundle = load_bundle(make_tiny_bundle(tmp_path / "b", arch=arch))
    ref = reference_for(bundle)
    for text in CODE_CORPUS:
        ids = bundle.tokenizer.encode(text, add_special_tokens=False).ids
        assert ids == ref.encode(text), text
        assert bundle.tokenizer.decode(ids, skip_special_tokens=False) == text


def test_default_model_tokenizer(smollm2_bundle):
    bundle = load_bundle(smollm2_bundle)
    ref = reference_for(bundle)
    for text in CODE_CORPUS:
        ids = bundle.tokenizer.encode(text, add_special_tokens=False).ids
        assert ids == ref.encode(text), text
        assert bundle.tokenizer.decode(ids, skip_special_tokens=False) == text
    assert bundle.tokenizer.encode("def fibonacci(n):").ids == [1604, 3987, 46477, 24, 94, 727]
