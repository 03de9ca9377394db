"""Every supported GGML block type decomposes exactly into MatMulNBits codes + scales (+ per-block correction)."""

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT

from runtime.quant import _DECOMPOSERS, decompose, kernel_blob, pack_nibbles

# byte offsets of the float16 scale fields inside one block (ggml-common.h)
SCALE_FIELDS = {QT.Q4_0: [0], QT.Q4_1: [0, 2], QT.Q5_0: [0], QT.Q5_1: [0, 2], QT.Q8_0: [0], QT.Q4_K: [0, 2], QT.Q5_K: [0, 2], QT.Q6_K: [208]}


def random_blocks(qtype, rows, cols, seed=0):
    elems, nbytes, _ = _DECOMPOSERS[qtype]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (rows, cols // elems, nbytes), dtype=np.uint8)
    for off in SCALE_FIELDS[qtype]:
        f16 = rng.uniform(0.01, 0.1, (rows, cols // elems)).astype(np.float16)
        raw[..., off : off + 2] = f16.view(np.uint8).reshape(rows, cols // elems, 2)
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("qtype", list(_DECOMPOSERS), ids=lambda q: q.name)
def test_decomposition_is_exact(qtype):
    rows, cols = 4, 512
    raw = random_blocks(qtype, rows, cols)
    ref = gguf.quants.dequantize(raw, qtype).reshape(rows, cols)
    codes = decompose(raw, qtype, rows, cols)
    assert np.array_equal(codes.dequantize(), ref)
    # what the kernel computes: scale * (u - 2^(bits-1)) + correction, per block
    u = codes.kernel_codes().astype(np.float32)
    kernel = codes.scale[..., None] * (u - (1 << (codes.bits - 1))) + codes.correction()[..., None]
    np.testing.assert_allclose(kernel.reshape(rows, cols), ref, rtol=0, atol=1e-6)
    assert codes.kernel_codes().max() < (1 << codes.bits)


def test_symmetric_types_need_no_correction():
    for qtype in (QT.Q4_0, QT.Q8_0, QT.Q6_K, QT.Q5_0):
        codes = decompose(random_blocks(qtype, 2, 256), qtype, 2, 256)
        assert not codes.correction().any(), qtype.name


def test_nibble_packing_order():
    codes = np.arange(16, dtype=np.uint8).reshape(1, 1, 16) % 16
    assert list(pack_nibbles(codes)[0, 0]) == [0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE]


def test_q8_blob_is_unpacked_bytes():
    raw = random_blocks(QT.Q8_0, 2, 64)
    codes = decompose(raw, QT.Q8_0, 2, 64)
    assert kernel_blob(codes).shape == (2, 2, 32)
