"""Tiny random decoders written as GGUF by our own code: the models tests and end-to-end checks run on.

The vocabulary is a real byte-level BPE trained (with `tokenizers`) on a small code corpus kept here, so the tiny
model tokenizes and detokenizes code like a real one; its weights are random, written in any supported quant type.
K-quant blocks are written as random codes with sane float16 scales (gguf-py cannot quantize to them).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as QT

from .quant import _DECOMPOSERS, QK_K

CORPUS = '''
def fibonacci(n):
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)


class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        return self.items.pop()

    def __len__(self):
        return len(self.items)


import os
import sys
from pathlib import Path


def read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [line.rstrip("\\n") for line in fh]


for i in range(10):
    print(i, i * i, "value:", {"key": i})

function add(a, b) { return a + b; }
const items = [1, 2, 3].map((x) => x * 2);
if (items.length > 0) { console.log(items); } else { return null; }
# 日本語のコメント and emoji 🎉 in strings: "héllo wörld"
'''

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<file_sep>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>"]
QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]


def _train_vocab(vocab_size: int, specials: list[str]) -> tuple[list[str], list[str]]:
    """Byte-level BPE trained on CORPUS: (tokens by id, merges as 'a b')."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([CORPUS] * 4, trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    return tokens, merges


def _printable(tokens: list[str]) -> np.ndarray:
    """bool per token: its bytes decode to printable UTF-8 text (lone UTF-8 fragments and control bytes do not)."""
    from tokenizers import decoders

    byte_level = decoders.ByteLevel()
    ok = []
    for t in tokens:
        text = byte_level.decode([t])
        ok.append("\ufffd" not in text and all(c.isprintable() or c in "\n\t" for c in text))
    return np.array(ok)


def _quantized(rng: np.random.Generator, rows: int, cols: int, qtype: QT, scale: float, keep_rows=None) -> tuple[np.ndarray, QT]:
    """Random [rows, cols] weight stored as qtype: uint8 raw blocks for quant types, the array itself for floats.
    Rows outside keep_rows are zero (a head row of zeros gives logit 0, below about half of the random ones)."""
    if qtype in (QT.F32, QT.F16):
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32 if qtype == QT.F32 else np.float16), qtype
    if qtype in (QT.Q4_K, QT.Q5_K, QT.Q6_K):
        elems, nbytes, _ = _DECOMPOSERS[qtype]
        raw = rng.integers(0, 256, (rows, cols // elems, nbytes), dtype=np.uint8)
        # super-block scale so that |w| ~ scale: codes ~ half their range times 6-bit sub-scales ~ 32 (Q6_K: int8 ~ 4)
        typical = {QT.Q4_K: 256, QT.Q5_K: 512, QT.Q6_K: 64}[qtype]
        d = (np.full((rows, cols // elems), scale / typical)).astype(np.float16).view(np.uint8).reshape(rows, cols // elems, 2)
        if qtype == QT.Q6_K:
            raw[..., 208:210] = d
            raw[..., 192:208] = rng.integers(-8, 8, (rows, cols // elems, 16), dtype=np.int8).view(np.uint8)
        else:
            raw[..., 0:2] = d
            raw[..., 2:4] = (d.view(np.float16) * 4).view(np.uint8)  # dmin
        return raw.reshape(rows, -1), qtype
    w = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
    if keep_rows is not None:
        w[~keep_rows] = 0.0
    return gguf.quants.quantize(w, qtype), qtype


def write_tiny_gguf(
    path: str | os.PathLike,
    arch: str = "llama",
    qtype: str = "Q4_1",
    seed: int = 0,
    n_layers: int = 2,
    d_model: int = 64,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    d_ff: int = 128,
    vocab_size: int = 384,
    head_qtype: str | None = "Q8_0",
    embed_copies_head: str | None = None,
) -> Path:
    """A random tiny llama/qwen2 decoder with a trained BPE vocabulary, written as GGUF. K-quants need dims % 256 == 0.

    head_qtype=None ties the output head to the embeddings (as SmolLM2 does); a random tied model mostly repeats its
    input token, so the default is a separate, small head that gives varied text. embed_copies_head="Q5_0" writes the
    head's matrix again as the embedding at that type, as Qwen2.5's GGUFs store their tied matrix.
    """
    path = Path(path)
    qt = QT[qtype]
    if qt in (QT.Q4_K, QT.Q5_K, QT.Q6_K):
        d_model, d_ff = max(d_model, QK_K), max(d_ff, 2 * QK_K)
    rng = np.random.default_rng(seed)
    specials = QWEN_SPECIAL_TOKENS if arch == "qwen2" else SPECIAL_TOKENS
    tokens, merges = _train_vocab(vocab_size, specials)
    n_vocab = len(tokens)
    head_dim = d_model // n_heads
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny-{arch}-{qtype.lower()}")
    w.add_context_length(4096)
    w.add_embedding_length(d_model)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(d_ff)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2" if arch == "qwen2" else "smollm")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_eos_token_id(tokens.index("<|endoftext|>"))
    w.add_add_bos_token(False)

    def tensor(name: str, rows: int, cols: int, t: QT, scale: float = 0.08, keep_rows=None) -> None:
        data, t = _quantized(rng, rows, cols, t, scale, keep_rows)
        w.add_tensor(name, data, raw_dtype=t if data.dtype == np.uint8 else None)  # raw blocks: shape in bytes

    def norm(name: str, size: int) -> None:
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(size)).astype(np.float32))

    embed_qt = QT.Q8_0 if qt not in (QT.F32, QT.F16) else qt
    keep = _printable(tokens) & ~np.isin(tokens, specials)
    if embed_copies_head:
        head, head_t = _quantized(np.random.default_rng(seed + 1), n_vocab, d_model, QT[head_qtype], 0.5)
        again = gguf.quants.quantize(gguf.quants.dequantize(head, head_t), QT[embed_copies_head])
        w.add_tensor("token_embd.weight", again, raw_dtype=QT[embed_copies_head])
    else:
        tensor("token_embd.weight", n_vocab, d_model, embed_qt, 0.5)
    for i in range(n_layers):
        p = f"blk.{i}."
        norm(p + "attn_norm.weight", d_model)
        tensor(p + "attn_q.weight", n_heads * head_dim, d_model, qt)
        tensor(p + "attn_k.weight", n_kv_heads * head_dim, d_model, qt)
        # a mixed-format layer, as Q4_K_M files keep attn_v at Q6_K
        tensor(p + "attn_v.weight", n_kv_heads * head_dim, d_model, QT.Q6_K if qt == QT.Q4_K else qt)
        if arch == "qwen2":
            for n, rows in (("q", n_heads * head_dim), ("k", n_kv_heads * head_dim), ("v", n_kv_heads * head_dim)):
                w.add_tensor(p + f"attn_{n}.bias", (0.05 * rng.standard_normal(rows)).astype(np.float32))
        tensor(p + "attn_output.weight", d_model, n_heads * head_dim, qt)
        norm(p + "ffn_norm.weight", d_model)
        tensor(p + "ffn_gate.weight", d_ff, d_model, qt)
        tensor(p + "ffn_up.weight", d_ff, d_model, qt)
        tensor(p + "ffn_down.weight", d_model, d_ff, qt)
    norm("output_norm.weight", d_model)
    if embed_copies_head:
        w.add_tensor("output.weight", head, raw_dtype=head_t)
    elif head_qtype:
        tensor("output.weight", n_vocab, d_model, QT[head_qtype], 0.15, keep_rows=keep)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def make_tiny_bundle(out_dir: str | os.PathLike, **kwargs) -> Path:
    """A tiny GGUF (kwargs of write_tiny_gguf) converted into a bundle at out_dir."""
    from .convert import convert

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        gguf_path = write_tiny_gguf(Path(tmp) / "tiny.gguf", **kwargs)
        return convert(gguf_path, out_dir, progress=False)
