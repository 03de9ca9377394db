"""Decoder graph builder: an architecture (+ optional GGUF weights) -> one ONNX decoder graph on ORT CPU contrib ops.

With weights it is the graph we serve; without (`weights=None`) the same code emits a shape-only graph — initializers
carry dims and dtype but no data — which the wafer simulator partitions for models far too big to hold here.

Graph I/O (the common decoder convention, with GroupQueryAttention's shared past/present buffer):
    input_ids int64 [1, S]              seqlens_k int32 [1] (= total length - 1)     total_sequence_length int32 []
    last_logits int64 [1]               (logits are produced for the last N positions only)
    past_key_values.{i}.key/value f32 [1, n_kv, max_ctx, head_dim]  -> present.{i}.key/value (the same buffer)
    -> logits f32 [1, N, vocab]

GGUF tensor names (gguf-py tensor_mapping.py) and what they become here:
    token_embd.weight        /model/embed_tokens     GatherBlockQuantized (quantized) or Gather (float)
    blk.{i}.attn_norm        /model/layers.{i}/attn  input RMSNorm
    blk.{i}.attn_q/k/v       /model/layers.{i}/attn/qkv   one fused MatMulNBits when the three share a format
    blk.{i}.attn_output      /model/layers.{i}/attn/o_proj
    blk.{i}.ffn_norm         /model/layers.{i}/mlp   post-attention RMSNorm
    blk.{i}.ffn_gate/up      /model/layers.{i}/mlp/gate_up  fused (two GEMMs, gate and up, with int8 layer weights)
    blk.{i}.ffn_down         /model/layers.{i}/mlp/down_proj
    output_norm.weight       /model/norm
    output.weight            /lm_head  (token_embd.weight when the embeddings are tied)
    rope_freqs.weight        per-dimension frequency divisors (Llama 3.1 rope scaling)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gguf
import msgspec
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import quant
from .arch import ArchSpec
from .cpu import INT8_LEVELS, int8_weight_levels
from .errors import GGUFError

OPSET = 21
MS_DOMAIN = "com.microsoft"
# MatMulNBits accuracy_level 4 = int8 activations: the fast decode path on CPU (measured: ~15x faster than float
# zero points); llama.cpp quantizes activations to 8 bits the same way.
ACCURACY_LEVEL = 4
MAX_ROPE_POSITIONS = 16384  # cos/sin cache rows; longer contexts are refused by the engine
SHORTLIST = 8  # head candidates scored exactly; how often the exact argmax falls outside them: bench/shortlist.py
# The 4-bit copy that picks them, in blocks of up to this many values (the largest power of two <= it dividing d_model).
# Qwen2.5-Coder-0.5B, 4,096 code positions (hidden states x the Q8_0 head in numpy): the exact argmax was outside 8
# candidates at 0.00% with blocks of 32, 64 and 128 alike; 128 reads a quarter of 32's scales (17 -> 4 MB a token).
SHORTLIST_BLOCK = 128
# The embedding is looked up in the head's rows when the GGUF stores one tied matrix twice, the embedding at lower
# precision: re-quantizing the sampled head rows to the embedding's type must reproduce this share of its values
# (Qwen2.5-Coder-0.5B's Q5_0 token_embd against its Q8_0 output: 96.9%; two independent matrices: ~0%).
SAME_MATRIX_SHARE = 0.9
# How the layers' projection weights are held (bundle.json `layer_weights`):
#   exact  every GGUF block as stored, MatMulNBits (int8 activations per 32-block)
#   int8   re-quantized to int8 per output channel, DynamicQuantizeMatMul (int8 activations per token): prefill ~3x
#          faster (an int8 GEMM instead of a block kernel), decode ~10% faster, logits close but not equal (README)
LAYER_WEIGHTS = ("exact", "int8")
INT8_LEVELS_KEY = "int8_levels"  # graph metadata: the int8 layout's code range (int8_levels_of)


@dataclass
class Weights:
    """Weight tensors by GGUF name (an adapter: a GGUF today, any source with the same face tomorrow)."""

    tensors: dict  # name -> gguf_source.Tensor
    rope_interleaved: bool

    def get(self, name: str):
        return self.tensors.get(name)

    def vector(self, name: str) -> np.ndarray | None:
        t = self.tensors.get(name)
        return None if t is None else quant.to_float(t.raw, t.qtype, 1, t.rows * t.cols).reshape(-1)


@dataclass
class _Graph:
    nodes: list = field(default_factory=list)
    inits: dict = field(default_factory=dict)
    shape_only: bool = False

    def init(self, name: str, array: np.ndarray | None, dims=None, dtype=TensorProto.FLOAT) -> str:
        if name in self.inits:
            return name
        if array is not None:
            self.inits[name] = numpy_helper.from_array(np.ascontiguousarray(array), name)
        else:  # shape-only: dims and dtype, no bytes
            t = TensorProto(name=name, data_type=dtype, dims=list(dims))
            t.data_location = TensorProto.EXTERNAL
            t.external_data.add(key="location", value="shape-only")
            self.inits[name] = t
        return name

    def node(self, op: str, inputs: list[str], name: str, outputs: list[str] | int = 1, domain: str = "", **attrs):
        if isinstance(outputs, int):
            outputs = [f"{name}/output_{k}" for k in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain or None, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs


class _Linear:
    """One [K -> N] projection part: quantized codes, float rows, or shape only (bf16 dims for the simulator)."""

    def __init__(self, tensor, rows: int, cols: int):
        self.rows, self.cols = rows, cols
        self.codes = self.floats = None
        if tensor is None:
            return
        if tensor.qtype in quant.FLOAT_TYPES or tensor.qtype.name == "BF16":
            self.floats = quant.to_float(tensor.raw, tensor.qtype, rows, cols)
        else:
            self.codes = quant.decompose(tensor.raw, tensor.qtype, rows, cols)

    @property
    def fmt(self) -> tuple:
        if self.codes is not None:
            return ("nbits", self.codes.bits, self.codes.block_size)
        return ("float",) if self.floats is not None else ("shape",)


class DecoderBuilder:
    def __init__(self, spec: ArchSpec, weights: Weights | None = None, head_shortlist: int = SHORTLIST,
                 layer_weights: str = "exact", int8_levels: int | None = None):
        if layer_weights not in LAYER_WEIGHTS:
            raise ValueError(f"layer_weights must be one of {LAYER_WEIGHTS}, not {layer_weights!r}")
        self.spec, self.w, self.head_shortlist, self.layer_weights = spec, weights, head_shortlist, layer_weights
        self.int8_levels = int8_levels or int8_weight_levels()  # the int8 layout's code range, for this CPU
        self.g = _Graph(shape_only=weights is None)
        self._head_lin: _Linear | None = None
        self._head_halves: tuple[quant.BlockCodes, quant.BlockCodes] | None = None
        self.rope_interleaved = weights.rope_interleaved if weights else True

    # ---------------------------------------------------------------- weights
    def _tensor(self, name: str, required: bool = True):
        if self.w is None:
            return None
        t = self.w.get(name)
        if t is None and required:
            raise GGUFError(f"tensor '{name}' is missing")
        return t

    def _vector(self, name: str, size: int) -> np.ndarray | None:
        if self.w is None:
            return None
        v = self.w.vector(name)
        if v is None:
            raise GGUFError(f"tensor '{name}' is missing")
        if v.size != size:
            raise GGUFError(f"tensor '{name}' has {v.size} values, expected {size}")
        return v.astype(np.float32)

    def _vec_init(self, name: str, gguf_name: str, size: int) -> str:
        return self.g.init(name, self._vector(gguf_name, size), dims=[size])

    # ---------------------------------------------------------------- linear layers
    def linear(self, x: str, scope: str, wname: str, parts: list[tuple[str, int]], k: int, bias_names=None,
               normalized: bool = True) -> str:
        """x [.., K] @ W^T for W = concat(parts) along N; fuses parts that share a kernel format.
        `normalized`: x comes out of an RMSNorm, so every token has a similar scale (the int8 path relies on it).

            x ──► MatMulNBits(codes | block-sum columns) ──► Split ──► y ─────────────► Add ──► (+ bias) ──► y
                                                              └──► sums ──► MatMul(correction) ─┘
            (Split and correction only for types with a per-block offset: Q4_1, Q4_K, Q5_K, Q5_1)
        With layer_weights "int8" every quantized projection takes _int8_linear instead, all parts fused.
        """
        lins = [_Linear(self._tensor(n), rows, k) for n, rows in parts]
        bias = None
        if bias_names:
            bias = None if self.w is None else np.concatenate([self._vector(b, r) for b, (_, r) in zip(bias_names, parts)])
        fmts = {lin.fmt for lin in lins}
        if self.layer_weights == "int8" and all(lin.codes is not None for lin in lins):
            return self._int8_linear(x, scope, wname, lins, normalized, bias)
        if len(fmts) > 1:  # e.g. Q4_K_M keeps attn_v at Q6_K: project separately, then concatenate
            outs = [
                self.linear(x, f"{scope}.{j}", f"{wname}.{j}", [parts[j]], k, [bias_names[j]] if bias_names else None,
                            normalized)
                for j in range(len(parts))
            ]
            return self.g.node("Concat", outs, f"{scope}/Concat", axis=-1)
        n = sum(r for _, r in parts)
        fmt = fmts.pop()
        if fmt[0] == "shape":
            w = self.g.init(f"{wname}.weight", None, dims=[k, n], dtype=TensorProto.BFLOAT16)
            y = self.g.node("MatMul", [x, w], f"{scope}/MatMul")
        elif fmt[0] == "float":
            w = self.g.init(f"{wname}.weight", np.concatenate([lin.floats for lin in lins]).T)
            y = self.g.node("MatMul", [x, w], f"{scope}/MatMul")
        else:
            _, bits, block = fmt
            corr = np.concatenate([lin.codes.correction() for lin in lins])  # [N, K/block]
            blob = np.concatenate([quant.kernel_blob(lin.codes) for lin in lins])
            scales = np.concatenate([lin.codes.scale for lin in lins])
            n_sums = k // block if corr.any() else 0
            if n_sums:
                # K/block extra output columns that each sum x over one block (code +1 there, 0 elsewhere, scale 1):
                # the block sums come out of the same int8 pass, as llama.cpp's Q8_1 block sums do, and cost no op.
                blob = np.concatenate([blob, quant.block_sum_blob(k, block, bits)])
                scales = np.concatenate([scales, np.ones((n_sums, n_sums), np.float32)])
            b = self.g.init(f"{wname}.qweight", blob)
            s = self.g.init(f"{wname}.scales", scales.reshape(-1))
            y = self.g.node(
                "MatMulNBits", [x, b, s], f"{scope}/MatMulNBits", domain=MS_DOMAIN,
                K=k, N=n + n_sums, bits=bits, block_size=block, accuracy_level=ACCURACY_LEVEL,
            )
            if n_sums:
                sizes = self.g.init(f"split.{n}.{n_sums}", np.array([n, n_sums], np.int64))
                y, bsum = self.g.node("Split", [y, sizes], f"{scope}/Split", outputs=2, axis=-1)
                c = self.g.init(f"{wname}.correction", np.ascontiguousarray(corr.T))  # [K/block, N]
                cy = self.g.node("MatMul", [bsum, c], f"{scope}/correction/MatMul")
                y = self.g.node("Add", [y, cy], f"{scope}/correction/Add")
        if bias_names:
            bn = self.g.init(f"{wname}.bias", bias, dims=[n])
            y = self.g.node("Add", [y, bn], f"{scope}/bias/Add")
        return y

    def _int8_linear(self, x: str, scope: str, wname: str, lins: list[_Linear], normalized: bool,
                     bias: np.ndarray | None) -> str:
        """The int8 layout: weights int8 per output channel, one activation scale per call, the bias fused.

            x ──► DynamicQuantizeMatMul(int8 [K, N], scale [N], bias) ──► y                       (x normalized)
            x ──► ÷ max|x| per token ──► DynamicQuantizeMatMul ──► × max|x| per token ──► + bias ──► y  (otherwise)
        DynamicQuantizeMatMul quantizes its whole input with one scale. After an RMSNorm the tokens share a scale, but
        the MLP's hidden state does not (a few tokens carry activations 100x the rest), so it is divided per token
        first: one scale for all tokens there made top-1 agreement with the exact layout fall from 96% to 91%.
        """
        w = np.concatenate([lin.codes.dequantize() for lin in lins])  # [N, K]: the values ggml computes
        codes, scale = quant.int8_rows(w, self.int8_levels)
        b = self.g.init(f"{wname}.int8", np.ascontiguousarray(codes.T))
        s = self.g.init(f"{wname}.int8.scales", scale)
        bn = "" if bias is None else self.g.init(f"{wname}.bias", bias)
        if normalized:
            return self.g.node("DynamicQuantizeMatMul", [x, b, s, "", bn], f"{scope}/DynamicQuantizeMatMul", domain=MS_DOMAIN)
        ax = self.g.init("axes.-1", np.array([-1], np.int64))
        peak = self.g.node("ReduceMax", [self.g.node("Abs", [x], f"{scope}/token_scale/Abs"), ax],
                           f"{scope}/token_scale/ReduceMax", keepdims=1)
        peak = self.g.node("Max", [peak, self.g.init("float.tiny", np.array(1e-30, np.float32))], f"{scope}/token_scale/Max")
        xn = self.g.node("Div", [x, peak], f"{scope}/token_scale/Div")
        y = self.g.node("DynamicQuantizeMatMul", [xn, b, s], f"{scope}/DynamicQuantizeMatMul", domain=MS_DOMAIN)
        y = self.g.node("Mul", [y, peak], f"{scope}/token_scale/Mul")
        return y if bias is None else self.g.node("Add", [y, bn], f"{scope}/bias/Add")

    # ---------------------------------------------------------------- blocks
    def embedding(self, ids: str) -> str:
        """ids [1,S] -> hidden [1,S,D].

            GatherBlockQuantized(codes, scales) ──► Add ──► hidden        (Add only when the type has per-block offsets)
            Gather(correction) ──► Unsqueeze ──► Expand over block ─┘
        """
        s, scope = self.spec, "/model/embed_tokens"
        if self._embedding_is_head_copy() or (self._head_name() == "token_embd.weight" and self._head_split() is not None):
            return self._head_rows(ids, scope, rank=3)
        lin = _Linear(self._tensor("token_embd.weight"), s.vocab_size, s.d_model)
        if lin.fmt[0] == "shape":
            w = self.g.init("embed_tokens.weight", None, dims=[s.vocab_size, s.d_model], dtype=TensorProto.BFLOAT16)
            return self.g.node("Gather", [w, ids], f"{scope}/Gather")
        if lin.fmt[0] == "float":
            return self.g.node("Gather", [self.g.init("embed_tokens.weight", lin.floats), ids], f"{scope}/Gather")
        return self._gather_rows("embed_tokens", lin.codes, ids, scope, rank=3)

    def _head_name(self) -> str:
        s = self.spec
        untied = not s.tied_embeddings and (self.w is None or self.w.get("output.weight") is not None)
        return "output.weight" if untied else "token_embd.weight"

    def _head_linear(self) -> _Linear:
        if self._head_lin is None:
            self._head_lin = _Linear(self._tensor(self._head_name()), self.spec.vocab_size, self.spec.d_model)
        return self._head_lin

    def _head_uses_rows(self) -> bool:
        """The head shortlists candidates and scores them from its quantized rows (else it is one exact matmul)."""
        s = self.spec
        return self._head_linear().codes is not None and self.head_shortlist > 0 and s.vocab_size >= 4 * self.head_shortlist and s.d_model % 32 == 0

    def _head_split(self) -> tuple[quant.BlockCodes, quant.BlockCodes] | None:
        """The int8 layout's head: re-quantized to int8 per block and held as two 4-bit halves (quant.int8_nibble_split),
        the high half doubling as the candidate picker, so the head is one table instead of a table plus a 4-bit copy
        (Qwen2.5-Coder-0.5B: 225 -> 149 MB). None in the exact layout, which keeps the GGUF's blocks as stored."""
        if self.w is None or self.layer_weights != "int8" or not self._head_uses_rows():
            return None
        if self._head_halves is None:
            self._head_halves = quant.int8_nibble_split(self._head_linear().codes.dequantize(), self._shortlist_block())
        return self._head_halves

    def _head_half(self, half: str, codes: quant.BlockCodes) -> str:
        """The initializer of one half, [V, nb, block/2] (MatMulNBits' shape), packed once for every node reading it."""
        name = f"lm_head.{half}"
        return name if name in self.g.inits else self.g.init(name, quant.kernel_blob(codes))

    def _shortlist_block(self) -> int:
        return next(b for b in (128, 64, 32) if b <= SHORTLIST_BLOCK and self.spec.d_model % b == 0)

    def _head_rows(self, ids: str, scope: str, rank: int) -> str:
        """Rows `ids` of the head's matrix as the head scores them: [...ids] -> [...ids, D] (output rank `rank`).

            GatherBlockQuantized(high) ──► Add ──► Reshape [..., D]        (int8 layout: the two halves, same table
            GatherBlockQuantized(low)  ──┘                                   the picker reads)
        """
        split = self._head_split()
        if split is None:
            wname = "embed_tokens" if self._head_name() == "token_embd.weight" else "lm_head"  # one table when tied
            return self._gather_rows(wname, self._head_linear().codes, ids, scope, rank)
        halves = []
        for half, codes in zip(("high", "low"), split):
            rows, nb, block = codes.q.shape
            data = self._head_half(half, codes)
            scales = self.g.init(f"lm_head.{half}.block_scales", codes.scale[..., None])
            halves.append(self.g.node("GatherBlockQuantized", [data, ids, scales], f"{scope}/{half}/GatherBlockQuantized",
                                      domain=MS_DOMAIN, gather_axis=0, quantize_axis=2, block_size=block, bits=4))
        both = self.g.node("Add", halves, f"{scope}/halves/Add")  # [..., nb, block]
        flat = self.g.init(f"shape.rows.{rank}.{self.spec.d_model}", np.array([0] * (rank - 1) + [self.spec.d_model], np.int64))
        return self.g.node("Reshape", [both, flat], f"{scope}/halves/Reshape")

    def _embedding_is_head_copy(self) -> bool:
        """True when token_embd is the head's own matrix stored again at lower precision (Qwen2.5's GGUFs write the
        tied matrix as output Q8_0 + token_embd Q5_0) and the layout is lossy anyway (int8): then one table serves
        both, a more precise lookup than the GGUF's own embedding and one table fewer on disk. Checked on the data:
        sampled head rows re-quantized to the embedding's type must give the embedding's values."""
        if self.w is None or self.layer_weights != "int8" or self._head_name() != "output.weight":
            return False
        emb, head = self._tensor("token_embd.weight"), self._tensor("output.weight")
        if not self._head_uses_rows() or emb.qtype not in quant.QUANT_BYTES or head.qtype not in quant.QUANT_BYTES:
            return False
        if quant.bits_per_weight(head.qtype) < quant.bits_per_weight(emb.qtype) or (emb.rows, emb.cols) != (head.rows, head.cols):
            return False
        rows = np.linspace(0, head.rows - 1, min(256, head.rows)).astype(np.int64)
        pick = lambda t: np.asarray(t.raw, np.uint8).reshape(t.rows, -1)[rows]  # noqa: E731
        sample = quant.decompose(pick(head), head.qtype, rows.size, head.cols).dequantize()
        try:
            again = quant.decompose(gguf.quants.quantize(sample, emb.qtype), emb.qtype, rows.size, emb.cols).dequantize()
        except NotImplementedError:  # gguf-py cannot quantize to every type (the K-quants): no claim either way
            return False
        mine = quant.decompose(pick(emb), emb.qtype, rows.size, emb.cols).dequantize()
        return float(np.mean(again == mine)) >= SAME_MATRIX_SHARE

    def _gather_rows(self, wname: str, codes: quant.BlockCodes, ids: str, scope: str, rank: int) -> str:
        """Rows `ids` of a quantized [rows, D] matrix, dequantized exactly: [...ids] -> [...ids, D] (output rank `rank`).

            GatherBlockQuantized(codes, scales) ──► Add ──► rows        (Add only when the type has per-block offsets)
            Gather(correction) ──► Unsqueeze ──► Expand over block ─┘
        """
        rows, d = codes.q.shape[0], codes.q.shape[1] * codes.block_size
        data = self.g.init(f"{wname}.qweight.rows", quant.kernel_blob(codes).reshape(rows, -1))
        scales = self.g.init(f"{wname}.scales.rows", codes.scale)
        h = self.g.node(
            "GatherBlockQuantized", [data, ids, scales], f"{scope}/GatherBlockQuantized", domain=MS_DOMAIN,
            gather_axis=0, quantize_axis=1, block_size=codes.block_size, bits=codes.bits,
        )
        corr = codes.correction()
        if corr.any():
            c = self.g.node("Gather", [self.g.init(f"{wname}.correction.rows", corr), ids], f"{scope}/correction/Gather")
            nb = d // codes.block_size
            c = self.g.node("Unsqueeze", [c, self.g.init("axes.-1", np.array([-1], np.int64))], f"{scope}/correction/Unsqueeze")
            shp = self.g.init(f"expand.blocks.{nb}.{codes.block_size}", np.array([nb, codes.block_size], np.int64))
            c = self.g.node("Expand", [c, shp], f"{scope}/correction/Expand")  # [..., nb, block]
            flat = self.g.init(f"shape.rows.{rank}.{d}", np.array([0] * (rank - 1) + [d], np.int64))
            c = self.g.node("Reshape", [c, flat], f"{scope}/correction/Reshape")
            h = self.g.node("Add", [h, c], f"{scope}/correction/Add")
        return h

    def lm_head(self, hidden: str) -> str:
        """hidden [1,N,D] -> logits [1,N,V].

        Decode reads every weight once per token, and the head is the largest single matrix (a third of SmolLM2's
        bytes at Q8_0). So a 4-bit copy picks candidates and only those rows are scored exactly:

            hidden ──► MatMulNBits(4-bit copy) ──► TopK(8) ──► ids ──► gather exact rows ──► · hidden ──► exact[8]
                              │ approx [V]                                                              │
                              └──► Min(·, min exact) ──────────────► ScatterElements(ids, exact) ◄──────┘
        The tail is clipped below the exact candidates, so argmax is always an exactly scored token; sampling sees
        exact values for the candidates and the 4-bit estimate (clipped) for the rest.
        """
        s, scope = self.spec, "/lm_head"
        name = self._head_name()
        lin = self._head_linear()
        if not self._head_uses_rows():
            return self.linear(hidden, scope, "lm_head", [(name, s.vocab_size)], s.d_model)
        block, split = self._shortlist_block(), self._head_split()
        if split is None:
            approx = quant.q4_blocks(lin.codes.dequantize(), block)
            b = self.g.init("lm_head.shortlist.qweight", quant.kernel_blob(approx))
        else:  # the high half of the head's own int8 codes: a 4-bit copy that costs no bytes
            approx = split[0]
            b = self._head_half("high", approx)
        sc = self.g.init("lm_head.shortlist.scales", approx.scale.reshape(-1))
        rough = self.g.node("MatMulNBits", [hidden, b, sc], f"{scope}/shortlist/MatMulNBits", domain=MS_DOMAIN,
                            K=s.d_model, N=s.vocab_size, bits=4, block_size=block, accuracy_level=ACCURACY_LEVEL)
        k = self.g.init("shortlist.k", np.array([self.head_shortlist], np.int64))
        _, ids = self.g.node("TopK", [rough, k], f"{scope}/shortlist/TopK", outputs=2, axis=-1)  # [1,N,8]
        rows = self._head_rows(ids, f"{scope}/exact", rank=4)  # [1,N,8,D]
        h4 = self.g.node("Unsqueeze", [hidden, self.g.init("axes.2", np.array([2], np.int64))], f"{scope}/exact/Unsqueeze")
        prod = self.g.node("Mul", [rows, h4], f"{scope}/exact/Mul")
        exact = self.g.node("ReduceSum", [prod, self.g.init("axes.-1", np.array([-1], np.int64))], f"{scope}/exact/ReduceSum", keepdims=0)
        floor = self.g.node("ReduceMin", [exact, self.g.init("axes.-1", np.array([-1], np.int64))], f"{scope}/clip/ReduceMin", keepdims=1)
        clipped = self.g.node("Min", [rough, floor], f"{scope}/clip/Min")
        return self.g.node("ScatterElements", [clipped, ids, exact], f"{scope}/ScatterElements", axis=-1)

    def rope_cache(self) -> tuple[str, str]:
        """cos/sin [positions, head_dim/2] for GroupQueryAttention's rotary (Llama 3.1 divisors when present)."""
        s = self.spec
        half = s.head_dim // 2
        positions = min(s.context_length, MAX_ROPE_POSITIONS)
        if self.g.shape_only:
            return (self.g.init("rope.cos", None, dims=[positions, half]), self.g.init("rope.sin", None, dims=[positions, half]))
        inv_freq = 1.0 / (s.rope_theta ** (np.arange(0, half, dtype=np.float64) * 2.0 / s.head_dim))
        factors = self.w.vector("rope_freqs.weight")
        if factors is not None:
            inv_freq = inv_freq / factors[:half]
        angles = np.outer(np.arange(positions, dtype=np.float64), inv_freq)
        return (self.g.init("rope.cos", np.cos(angles).astype(np.float32)), self.g.init("rope.sin", np.sin(angles).astype(np.float32)))

    def attention(self, i: int, x: str, cos: str, sin: str) -> str:
        """normed hidden [1,S,D] -> attention output [1,S,D].

            x ──► qkv (fused) ──► GroupQueryAttention(rotary, shared KV buffer) ──► o_proj
        """
        s = self.spec
        scope, w = f"/model/layers.{i}/attn", f"model.layers.{i}.attn"
        q_rows, kv_rows = s.n_heads * s.head_dim, s.n_kv_heads * s.head_dim
        parts = [(f"blk.{i}.attn_q.weight", q_rows), (f"blk.{i}.attn_k.weight", kv_rows), (f"blk.{i}.attn_v.weight", kv_rows)]
        biases = [f"blk.{i}.attn_{p}.bias" for p in "qkv"] if s.qkv_bias else None
        qkv = self.linear(x, f"{scope}/qkv", f"{w}.qkv", parts, s.d_model, biases)
        attn = self.g.node(
            "GroupQueryAttention",
            [qkv, "", "", f"past_key_values.{i}.key", f"past_key_values.{i}.value", "seqlens_k", "total_sequence_length", cos, sin],
            f"{scope}/GroupQueryAttention",
            outputs=[f"{scope}/GroupQueryAttention/output_0", f"present.{i}.key", f"present.{i}.value"],
            domain=MS_DOMAIN,
            num_heads=s.n_heads, kv_num_heads=s.n_kv_heads, do_rotary=1, rotary_interleaved=int(self.rope_interleaved),
            scale=float(1.0 / np.sqrt(s.head_dim)),
        )[0]
        # attention output: an average of value vectors, so tokens share its scale (per-token scaling changed KL
        # 0.0092 -> 0.0090 on 3,072 code positions: not worth 5 ops per layer)
        return self.linear(attn, f"{scope}/o_proj", f"{w}.o_proj", [(f"blk.{i}.attn_output.weight", s.d_model)], q_rows)

    def mlp(self, i: int, x: str) -> str:
        """normed hidden -> SwiGLU MLP output (a mixture of experts on the layers the spec names).

            x ──► gate_up (fused) ──► Split ──► gate ──► Sigmoid ──► Mul(gate) ──► Mul(up) ──► down_proj
        """
        s = self.spec
        scope, w = f"/model/layers.{i}/mlp", f"model.layers.{i}.mlp"
        if s.is_moe_layer(i):
            return self.moe(i, x, scope, w)
        names = (f"blk.{i}.ffn_gate.weight", f"blk.{i}.ffn_up.weight", f"blk.{i}.ffn_down.weight")
        return self._swiglu(x, scope, w, names, s.d_ff)

    def _swiglu(self, x: str, scope: str, w: str, names: tuple[str, str, str], d_ff: int) -> str:
        s = self.spec
        gate_up = [(names[0], d_ff), (names[1], d_ff)]
        if self.layer_weights == "int8":  # two GEMMs: a Split of [S, 2*d_ff] cost 8% of an int8 prefill
            gate = self.linear(x, f"{scope}/gate", f"{w}.gate", gate_up[:1], s.d_model)
            up = self.linear(x, f"{scope}/up", f"{w}.up", gate_up[1:], s.d_model)
        else:
            gu = self.linear(x, f"{scope}/gate_up", f"{w}.gate_up", gate_up, s.d_model)
            split = self.g.init(f"split.{d_ff}", np.array([d_ff, d_ff], np.int64))
            gate, up = self.g.node("Split", [gu, split], f"{scope}/Split", outputs=2, axis=-1)
        sig = self.g.node("Sigmoid", [gate], f"{scope}/act/Sigmoid")
        silu = self.g.node("Mul", [gate, sig], f"{scope}/act/Mul")
        h = self.g.node("Mul", [silu, up], f"{scope}/act/Mul_up")
        return self.linear(h, f"{scope}/down_proj", f"{w}.down_proj", [(names[2], s.d_model)], d_ff, normalized=False)

    def moe(self, i: int, x: str, scope: str, w: str) -> str:
        """normed hidden -> mixture-of-experts output (shape-only: MoE models are simulated on the wafer, not served).

            x ──► router MatMul [D, E] ──► MoE(top-k of E SwiGLU experts, routing weights softmaxed) ──► Add ──► y
            └──► shared experts (always on: one SwiGLU of n_shared x d_ff_expert) ───────────────────────┘
        The experts are ORT's MoE contrib op (fc1 = gate, fc3 = up, fc2 = down, stacked over experts).
        """
        s = self.spec
        if self.w is not None:
            raise GGUFError("mixture-of-experts layers are simulated on the wafer, not served here (no MoE kernels)")
        e, d, ff = s.n_experts, s.d_model, s.d_ff_expert
        logits = self.linear(x, f"{scope}/router", f"{w}.router", [(f"blk.{i}.ffn_gate_inp.weight", e)], d)
        stack = lambda part, dims: self.g.init(f"{w}.experts.{part}", None, dims=dims, dtype=TensorProto.BFLOAT16)  # noqa: E731
        y = self.g.node("MoE", [x, logits, stack("gate", [e, d, ff]), "", stack("down", [e, ff, d]), "", stack("up", [e, d, ff])],
                        f"{scope}/experts/MoE", domain=MS_DOMAIN, k=s.experts_per_token, activation_type="silu",
                        normalize_routing_weights=1)
        if not s.n_shared_experts:
            return y
        shared = self._swiglu(x, f"{scope}/shared", f"{w}.shared", (f"blk.{i}.ffn_gate_shexp.weight",
                              f"blk.{i}.ffn_up_shexp.weight", f"blk.{i}.ffn_down_shexp.weight"), s.n_shared_experts * ff)
        return self.g.node("Add", [y, shared], f"{scope}/experts/Add")

    def _norm(self, x: str, skip: str | None, scope: str, wname: str, gguf_name: str) -> tuple[str, str]:
        """RMSNorm of (x + skip): returns (normed, x + skip). The first one has no skip input."""
        s = self.spec
        gamma = self._vec_init(wname, gguf_name, s.d_model)
        if skip is None:
            return self.g.node("SimplifiedLayerNormalization", [x, gamma], f"{scope}/SimplifiedLayerNormalization", axis=-1, epsilon=s.rms_eps), x
        out = self.g.node(
            "SkipSimplifiedLayerNormalization", [x, skip, gamma], f"{scope}/SkipSimplifiedLayerNormalization",
            outputs=[f"{scope}/normed", "", "", f"{scope}/residual"], domain=MS_DOMAIN, epsilon=s.rms_eps,
        )
        return out[0], out[3]

    # ---------------------------------------------------------------- graph
    def build(self) -> onnx.ModelProto:
        s = self.spec
        hidden = self.embedding("input_ids")
        cos, sin = self.rope_cache()
        pending, residual = hidden, None  # pending: the block output not yet added to the residual stream
        for i in range(s.n_layers):
            normed, residual = self._norm(pending, residual, f"/model/layers.{i}/attn/input_norm", f"model.layers.{i}.input_norm.weight", f"blk.{i}.attn_norm.weight")
            pending = self.attention(i, normed, cos, sin)
            normed, residual = self._norm(pending, residual, f"/model/layers.{i}/mlp/post_attn_norm", f"model.layers.{i}.post_attn_norm.weight", f"blk.{i}.ffn_norm.weight")
            pending = self.mlp(i, normed)
        normed, _ = self._norm(pending, residual, "/model/norm", "model.norm.weight", "output_norm.weight")
        # keep only the last N positions before the head: a long prompt must not pay vocab-sized logits per token
        start = self.g.node("Neg", ["last_logits"], "/lm_head/keep/Neg")
        ends = self.g.init("int64.max", np.array([np.iinfo(np.int64).max], np.int64))
        axis1 = self.g.init("axes.1", np.array([1], np.int64))
        kept = self.g.node("Slice", [normed, start, ends, axis1], "/lm_head/keep/Slice")
        logits = self.lm_head(kept)
        self.g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="/lm_head/output"))
        return self._model()

    def _model(self) -> onnx.ModelProto:
        s = self.spec
        kv = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, s.n_kv_heads, "max_ctx", s.head_dim])  # noqa: E731
        inputs = [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "S"]),
            helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
            helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
            helper.make_tensor_value_info("last_logits", TensorProto.INT64, [1]),
        ]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "N", s.vocab_size])]
        for i in range(s.n_layers):
            inputs += [kv(f"past_key_values.{i}.key"), kv(f"past_key_values.{i}.value")]
            outputs += [kv(f"present.{i}.key"), kv(f"present.{i}.value")]
        graph = helper.make_graph(self.g.nodes, f"waferline-{s.name}", inputs, outputs, list(self.g.inits.values()))
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)], producer_name="waferline"
        )
        model.ir_version = 10
        meta = model.metadata_props.add()
        meta.key, meta.value = "arch_spec", msgspec.json.encode(s).decode()
        if self.layer_weights == "int8":
            meta = model.metadata_props.add()
            meta.key, meta.value = INT8_LEVELS_KEY, str(self.int8_levels)
        return model


def build_graph(spec: ArchSpec, weights: Weights | None = None, head_shortlist: int = SHORTLIST,
                layer_weights: str = "exact", int8_levels: int | None = None) -> onnx.ModelProto:
    """The decoder graph for `spec`; shape-only (no initializer data) when `weights` is None.

    head_shortlist: candidates a 4-bit copy of the LM head picks for exact scoring (0: score the whole head exactly).
    layer_weights: "exact" or "int8" (LAYER_WEIGHTS); int8_levels: the int8 codes' range (None: for this CPU).
    """
    return DecoderBuilder(spec, weights, head_shortlist, layer_weights, int8_levels).build()


def head_shortlist_of(model: onnx.ModelProto) -> int:
    """How many head candidates the graph scores exactly (0: the whole head is exact), read from the graph itself."""
    for t in model.graph.initializer:
        if t.name == "shortlist.k":
            return int(onnx.numpy_helper.to_array(t)[0])
    return 0


def layer_weights_of(model: onnx.ModelProto) -> str:
    """"int8" or "exact", read from the graph itself."""
    return "int8" if any(n.op_type == "DynamicQuantizeMatMul" for n in model.graph.node) else "exact"


def int8_levels_of(model: onnx.ModelProto) -> int | None:
    """The int8 layout's code range (127; 63 when converted on a CPU whose int8 GEMM saturates), None for the exact
    layout; read from the graph's metadata (graphs from before it was written: 127)."""
    if layer_weights_of(model) != "int8":
        return None
    return next((int(p.value) for p in model.metadata_props if p.key == INT8_LEVELS_KEY), INT8_LEVELS)


def embedding_shares_head(model: onnx.ModelProto) -> bool:
    """The embedding is looked up in the head's rows (DecoderBuilder._embedding_is_head_copy), read from the graph."""
    return any(n.name.startswith("/model/embed_tokens/") and n.input[0] in ("lm_head.qweight.rows", "lm_head.high")
               for n in model.graph.node)


def head_is_split(model: onnx.ModelProto) -> bool:
    """The head is held as the two 4-bit halves of an int8 re-quantization (DecoderBuilder._head_split)."""
    return any(t.name == "lm_head.high" for t in model.graph.initializer)


def lossy_parts(model: onnx.ModelProto) -> list[str]:
    """What the bundle computes other than exactly as the GGUF's weights say (bundle.json `lossy`, `model info`), read
    from the graph itself, so bundles built before `lossy` was filled are described too."""
    parts = []
    levels = int8_levels_of(model)
    if levels is not None:
        codes = "" if levels == INT8_LEVELS else f", {levels.bit_length() + 1}-bit codes for an int8 GEMM without VNNI"
        parts.append(f"layer weights: re-quantized from the GGUF's blocks to int8 per output channel (each weight moves "
                     f"by at most max|row|/{2 * levels}{codes}), activations int8 per token; logits close to the exact "
                     f"layout, not equal (convert --layer-weights exact keeps every block as stored)")
    if embedding_shares_head(model):
        parts.append("token embedding: looked up in the LM head's rows -- the GGUF stores this tied matrix twice, the "
                     "embedding at lower precision -- so inputs are closer to the unquantized weights than the GGUF's "
                     "own lookup, and one table is kept instead of two")
    head_shortlist = head_shortlist_of(model)
    if head_shortlist == 0:
        return parts
    if head_is_split(model):
        return parts + [f"LM head: re-quantized to int8 per block of values and held as two 4-bit halves; the high half "
                        f"picks {head_shortlist} candidates, both halves score them; sampling sees clipped 4-bit estimates "
                        f"for the rest (convert --exact-head scores all rows)"]
    return parts + [f"LM head: a 4-bit copy picks {head_shortlist} candidates, scored exactly from the original rows; "
            f"greedy is exact while the true top token is among them, sampling sees clipped 4-bit estimates for the "
            f"rest (convert --exact-head scores all rows)"]
