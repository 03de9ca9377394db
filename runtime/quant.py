"""GGML quant blocks -> ONNX Runtime's MatMulNBits / GatherBlockQuantized layout, without a round trip through float.

Every supported block type is first decomposed into unsigned integer codes `q`, a float32 `scale` and an `offset` per
sub-block so that the weight is exactly

    w = scale * q + offset                      (what ggml computes, in float32)

MatMulNBits (bits b in {4, 8}, no zero-point input) computes `scale * (u - 2**(b-1))`. With `u = q + (2**(b-1) - center)`,
where `center` is the middle of the type's native code range, that is

    w = scale * (u - 2**(b-1)) + correction,    correction = offset + center * scale

The correction is zero for the symmetric types (Q4_0, Q8_0, Q6_K, Q5_0) and per-block otherwise (Q4_1, Q4_K, Q5_K, Q5_1);
the builder adds it as `blocksum(x) @ correction` — exact, because the sum of x over a block times a per-block constant
is what the offset contributes. Centering the codes keeps `u - 2**(b-1)` small, so the int8 activation rounding of
accuracy_level 4 is not magnified by a large zero-point term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType as QT

from .errors import GGUFError

QK_K = 256  # super-block size of the K-quants (ggml-common.h)


@dataclass
class BlockCodes:
    """A weight matrix [rows, cols] as codes per sub-block: w[r, b*bs + j] = scale[r, b] * q[r, b, j] + offset[r, b]."""

    q: np.ndarray  # uint8 [rows, n_blocks, block_size], values in [0, 2**qbits)
    scale: np.ndarray  # float32 [rows, n_blocks]
    offset: np.ndarray  # float32 [rows, n_blocks]
    qbits: int  # native code width of the GGML type

    @property
    def block_size(self) -> int:
        return self.q.shape[2]

    @property
    def bits(self) -> int:
        """Width of the ONNX Runtime kernel that holds these codes exactly."""
        return 4 if self.qbits <= 4 else 8

    @property
    def center(self) -> int:
        return 1 << (self.qbits - 1)

    def kernel_codes(self) -> np.ndarray:
        """Codes re-centred for a kernel with the default zero point 2**(bits-1). uint8 [rows, n_blocks, block_size]."""
        shift = (1 << (self.bits - 1)) - self.center
        return (self.q.astype(np.int16) + shift).astype(np.uint8)

    def correction(self) -> np.ndarray:
        """float32 [rows, n_blocks]: what must be added per block on top of the symmetric kernel."""
        return (self.offset + np.float32(self.center) * self.scale).astype(np.float32)

    def dequantize(self) -> np.ndarray:
        """float32 [rows, cols]; for tests and the float fallback, never on the serving path."""
        w = self.scale[..., None] * self.q.astype(np.float32) + self.offset[..., None]
        return w.reshape(self.q.shape[0], -1)


def _f16(raw: np.ndarray) -> np.ndarray:
    """Little-endian float16 bytes [..., 2] -> float32 [...]."""
    return np.ascontiguousarray(raw).view(np.float16)[..., 0].astype(np.float32)


def _split(blocks: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(blocks, np.cumsum(sizes)[:-1], axis=-1)


def _nibbles_low_high(qs: np.ndarray) -> np.ndarray:
    """ggml packs element j in the low nibble of byte j and element j+16 in the high nibble: [..., 16] -> [..., 32]."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _q4_0(b: np.ndarray) -> tuple:
    d, qs = _split(b, [2, 16])
    d = _f16(d)
    return _nibbles_low_high(qs), d, -8.0 * d, 4


def _q4_1(b: np.ndarray) -> tuple:
    d, m, qs = _split(b, [2, 2, 16])
    return _nibbles_low_high(qs), _f16(d), _f16(m), 4


def _q5_high_bits(qh: np.ndarray) -> np.ndarray:
    """Q5_0/Q5_1 keep the fifth bit of element j in bit j of a little-endian uint32: [..., 4] -> [..., 32]."""
    bits = np.unpackbits(qh, axis=-1, bitorder="little")
    return bits.astype(np.uint8) << 4


def _q5_0(b: np.ndarray) -> tuple:
    d, qh, qs = _split(b, [2, 4, 16])
    d = _f16(d)
    return _nibbles_low_high(qs) | _q5_high_bits(qh), d, -16.0 * d, 5


def _q5_1(b: np.ndarray) -> tuple:
    d, m, qh, qs = _split(b, [2, 2, 4, 16])
    return _nibbles_low_high(qs) | _q5_high_bits(qh), _f16(d), _f16(m), 5


def _q8_0(b: np.ndarray) -> tuple:
    d, qs = _split(b, [2, 32])
    d = _f16(d)
    q = (qs.view(np.int8).astype(np.int16) + 128).astype(np.uint8)
    return q, d, -128.0 * d, 8


def _k_scale_min(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 12-byte 6-bit scale/min packing of Q4_K and Q5_K -> two uint8 [..., 8] (ggml get_scale_min_k4)."""
    s = scales.reshape(*scales.shape[:-1], 3, 4)
    d, m, md = s[..., 0, :], s[..., 1, :], s[..., 2, :]
    sc = np.concatenate([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], axis=-1)
    mn = np.concatenate([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], axis=-1)
    return sc, mn


def _q4_k(b: np.ndarray) -> tuple:
    d, dmin, scales, qs = _split(b, [2, 2, 12, 128])
    sc, mn = _k_scale_min(scales)
    # 4 chunks of 32 bytes; low nibbles are sub-block 2j, high nibbles sub-block 2j+1.  [..., 4, 32] -> [..., 8, 32]
    qs = qs.reshape(*qs.shape[:-1], 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(2, 1)
    q = (qs & 0x0F).reshape(*b.shape[:-1], 8, 32)
    scale = _f16(d)[..., None] * sc.astype(np.float32)
    offset = -(_f16(dmin)[..., None] * mn.astype(np.float32))
    return q, scale, offset, 4


def _q5_k(b: np.ndarray) -> tuple:
    d, dmin, scales, qh, qs = _split(b, [2, 2, 12, 32, 128])
    sc, mn = _k_scale_min(scales)
    ql = (qs.reshape(*qs.shape[:-1], 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(2, 1)) & 0x0F
    ql = ql.reshape(*b.shape[:-1], 8, 32)
    hi = (qh.reshape(*qh.shape[:-1], 1, 32) >> np.arange(8, dtype=np.uint8).reshape(8, 1)) & 0x01  # [..., 8, 32]
    q = ql | (hi << 4)
    scale = _f16(d)[..., None] * sc.astype(np.float32)
    offset = -(_f16(dmin)[..., None] * mn.astype(np.float32))
    return q, scale, offset, 5


def _q6_k(b: np.ndarray) -> tuple:
    ql, qh, scales, d = _split(b, [128, 64, 16, 2])
    lead = b.shape[:-1]
    ql = ql.reshape(*lead, 2, 1, 64) >> np.array([0, 4], np.uint8).reshape(2, 1)  # [.., half, nib, 64]
    ql = (ql & 0x0F).reshape(*lead, 2, 4, 32)  # element groups of 32 inside each half of 128
    qh = qh.reshape(*lead, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)
    qh = (qh & 0x03).reshape(*lead, 2, 4, 32)
    q = (ql | (qh << 4)).reshape(*lead, 16, 16)  # 16 sub-blocks of 16, in element order
    scale = _f16(d)[..., None] * scales.view(np.int8).astype(np.float32)
    return q, scale, -32.0 * scale, 6


# GGML type -> (elements per block, bytes per block, decomposer). Sizes from ggml-common.h.
_DECOMPOSERS = {
    QT.Q4_0: (32, 18, _q4_0),
    QT.Q4_1: (32, 20, _q4_1),
    QT.Q5_0: (32, 22, _q5_0),
    QT.Q5_1: (32, 24, _q5_1),
    QT.Q8_0: (32, 34, _q8_0),
    QT.Q4_K: (QK_K, 144, _q4_k),
    QT.Q5_K: (QK_K, 176, _q5_k),
    QT.Q6_K: (QK_K, 210, _q6_k),
}
QUANT_BYTES = {t: (elems, nbytes) for t, (elems, nbytes, _) in _DECOMPOSERS.items()}  # elements, bytes per block
FLOAT_TYPES = {QT.F32: np.float32, QT.F16: np.float16}
SUPPORTED = set(_DECOMPOSERS) | set(FLOAT_TYPES) | {QT.BF16}


def bits_per_weight(qtype: QT) -> float:
    elems, nbytes = QUANT_BYTES[qtype]
    return 8.0 * nbytes / elems


def decompose(raw: np.ndarray, qtype: QT, rows: int, cols: int) -> BlockCodes:
    """Raw GGUF bytes of a [rows, cols] quantized matrix -> BlockCodes (no float weights are formed)."""
    if qtype not in _DECOMPOSERS:
        raise GGUFError(f"quant type {qtype.name} is not supported (supported: {', '.join(sorted(t.name for t in SUPPORTED))})")
    elems, nbytes, fn = _DECOMPOSERS[qtype]
    if cols % elems:
        raise GGUFError(f"{qtype.name} row of {cols} values is not a whole number of {elems}-value blocks")
    blocks = np.ascontiguousarray(raw, dtype=np.uint8).reshape(rows, cols // elems, nbytes)
    q, scale, offset, qbits = fn(blocks)
    n_sub = q.shape[-2] if q.ndim == 4 else 1
    bs = q.shape[-1]
    return BlockCodes(
        q=q.reshape(rows, (cols // elems) * n_sub, bs).astype(np.uint8),
        scale=np.asarray(scale, np.float32).reshape(rows, -1),
        offset=np.broadcast_to(np.asarray(offset, np.float32), np.shape(scale)).reshape(rows, -1).copy(),
        qbits=qbits,
    )


def to_float(raw: np.ndarray, qtype: QT, rows: int, cols: int) -> np.ndarray:
    """float32 [rows, cols] of any supported type (F32/F16/BF16 as stored; quantized ones dequantized)."""
    if qtype in FLOAT_TYPES:
        return np.asarray(raw).view(FLOAT_TYPES[qtype]).reshape(rows, cols).astype(np.float32)
    if qtype == QT.BF16:
        u16 = np.asarray(raw).view(np.uint16).reshape(rows, cols).astype(np.uint32) << 16
        return u16.view(np.float32)
    return decompose(raw, qtype, rows, cols).dequantize()


def pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """uint8 codes [..., bs] in 0..15 -> MatMulNBits 4-bit blob [..., bs/2]: element 2i low nibble, 2i+1 high nibble."""
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def kernel_blob(codes: BlockCodes) -> np.ndarray:
    """MatMulNBits input B: uint8 [rows, n_blocks, block_size * bits / 8]."""
    u = codes.kernel_codes()
    return pack_nibbles(u) if codes.bits == 4 else u


def block_sum_blob(k: int, block: int, bits: int) -> np.ndarray:
    """MatMulNBits rows whose outputs are the sums of x over each block: [K/block, K/block, blob] uint8.

    Row b holds code 2**(bits-1) + 1 (weight +1 at scale 1) in block b and the zero code everywhere else.
    """
    n = k // block
    zero = 1 << (bits - 1)
    codes = np.full((n, n, block), zero, np.uint8)
    codes[np.arange(n), np.arange(n)] = zero + 1
    return pack_nibbles(codes) if bits == 4 else codes


def q4_blocks(w: np.ndarray, block: int) -> BlockCodes:
    """float32 [rows, cols] -> 4-bit codes per `block` values, Q4_0's rule at any block size: the block's value of
    largest magnitude m sets d = m / -8, codes round(w / d) + 8 clipped to 0..15 (w = d * (q - 8))."""
    rows, cols = w.shape
    b = w.reshape(rows, cols // block, block).astype(np.float32)
    m = np.take_along_axis(b, np.abs(b).argmax(axis=-1)[..., None], axis=-1)[..., 0]
    d = (m / -8.0).astype(np.float32)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.trunc(b * inv[..., None] + 8.5), 0, 15).astype(np.uint8)
    return BlockCodes(q=q, scale=d, offset=-8.0 * d, qbits=4)


def int8_rows(w: np.ndarray, levels: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """float32 [rows, cols] -> (int8 codes [rows, cols] in [-levels, levels], float32 scale [rows]) with
    w ≈ scale[:, None] * codes.

    Symmetric, one scale per row (an output channel): the layout of ONNX Runtime's DynamicQuantizeMatMul, whose int8
    GEMM (VNNI, AMX where the CPU has it) runs prefill several times faster than the block kernels. Lossy: each weight
    moves by at most half a step, max|row| / (2 * levels). `levels` 63 where the GEMM would saturate (runtime.cpu)."""
    scale = (np.abs(w).max(axis=1) / float(levels)).astype(np.float32)
    scale[scale == 0] = 1.0
    return np.rint(w / scale[:, None]).astype(np.int8), scale


def int8_nibble_split(w: np.ndarray, block: int) -> tuple[BlockCodes, BlockCodes]:
    """float32 [rows, cols] -> (high, low) 4-bit codes per `block` values whose sum is w re-quantized to int8.

    d = max|block| / 119 and q = round(w / d) in [-119, 119]; u = q + 136 (0..255) splits into high = u >> 4 and
    low = u & 15, so q·d = (high - 8)·16d + (low - 8)·d exactly. The high half alone is a round-to-nearest 4-bit copy
    (step 16d): it can pick candidates by itself, and high + low score them, so the int8 table costs no extra 4-bit
    copy. (119, not 127: u must stay below 256 with the +8 that makes the high half round instead of truncate.)"""
    rows, cols = w.shape
    b = w.reshape(rows, cols // block, block).astype(np.float32)
    d = (np.abs(b).max(axis=-1) / 119.0).astype(np.float32)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    u = (np.clip(np.rint(b * inv[..., None]), -119, 119) + 136).astype(np.uint8)
    high = BlockCodes(q=u >> 4, scale=(16 * d).astype(np.float32), offset=(-128 * d).astype(np.float32), qbits=4)
    low = BlockCodes(q=u & 15, scale=d, offset=(-8 * d).astype(np.float32), qbits=4)
    return high, low
