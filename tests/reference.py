"""A pure-numpy reference forward pass of a llama/qwen2 decoder, from a GGUF's weights dequantized by gguf-py.

Independent of our builder: weights come from `gguf.quants.dequantize`, rope and attention are written out here in
float64, so a match means the ONNX graph computes the model, not merely what the builder thinks it is.
"""

from __future__ import annotations

import gguf
import numpy as np


class ReferenceModel:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        f = {k: v.contents() for k, v in r.fields.items() if k != "tokenizer.ggml.merges"}
        self.arch = arch = f["general.architecture"]
        self.n_layers = f[f"{arch}.block_count"]
        self.d = f[f"{arch}.embedding_length"]
        self.h = f[f"{arch}.attention.head_count"]
        self.kvh = f.get(f"{arch}.attention.head_count_kv", self.h)
        self.hd = self.d // self.h
        self.eps = f.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
        self.theta = f.get(f"{arch}.rope.freq_base", 10000.0)
        self.w = {}
        for t in r.tensors:
            shape = [int(x) for x in reversed(t.shape)]
            self.w[t.name] = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float64)
        self.head = self.w.get("output.weight", self.w["token_embd.weight"])

    def _rms(self, x, g):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * g

    def _rope(self, x, pos):
        """x [S, H, hd]; llama GGUF: pairs (2i, 2i+1) rotate together; qwen2 (NEOX): halves (i, i + hd/2)."""
        half = self.hd // 2
        inv = 1.0 / (self.theta ** (np.arange(half) * 2.0 / self.hd))
        ang = np.outer(pos, inv)[:, None, :]
        cos, sin = np.cos(ang), np.sin(ang)
        if self.arch == "llama":
            a, b = x[..., 0::2], x[..., 1::2]
            out = np.empty_like(x)
            out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
            return out
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)

    def logits(self, ids: list[int]) -> np.ndarray:
        """float64 [len(ids), vocab] for a fresh sequence."""
        w, S = self.w, len(ids)
        x = w["token_embd.weight"][ids]
        pos = np.arange(S)
        mask = np.triu(np.full((S, S), -np.inf), 1)
        for i in range(self.n_layers):
            p = f"blk.{i}."
            hn = self._rms(x, w[p + "attn_norm.weight"])
            q, k, v = (hn @ w[p + f"attn_{n}.weight"].T + w.get(p + f"attn_{n}.bias", 0.0) for n in "qkv")
            q = self._rope(q.reshape(S, self.h, self.hd), pos)
            k = self._rope(k.reshape(S, self.kvh, self.hd), pos)
            v = v.reshape(S, self.kvh, self.hd)
            rep = self.h // self.kvh
            k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
            att = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(self.hd) + mask
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            o = np.einsum("hqk,khd->qhd", att, v).reshape(S, -1)
            x = x + o @ w[p + "attn_output.weight"].T
            hn = self._rms(x, w[p + "ffn_norm.weight"])
            g, u = hn @ w[p + "ffn_gate.weight"].T, hn @ w[p + "ffn_up.weight"].T
            x = x + (g / (1.0 + np.exp(-g)) * u) @ w[p + "ffn_down.weight"].T
        return self._rms(x, w["output_norm.weight"]) @ self.head.T
