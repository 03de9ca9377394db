"""What this CPU can do, where it changes how a model should be converted (and what benchmarks print first)."""

from __future__ import annotations

import functools
from pathlib import Path

INT8_LEVELS = 127  # int8 weight codes in [-127, 127]
INT8_LEVELS_NO_VNNI = 63  # 7-bit codes, [-63, 63]: ONNX Runtime's "reduce_range" for x86 CPUs without VNNI


@functools.cache
def cpu_info() -> tuple[str | None, frozenset[str]]:
    """(model name, feature flags) of the first CPU in /proc/cpuinfo; (None, empty) where there is none."""
    model, flags = None, frozenset()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = frozenset(value.split())
                break
    except OSError:
        pass
    return model, flags


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (`avx2`, `avx512_vnni`, ...); empty off Linux."""
    return cpu_info()[1]


def int8_saturates() -> bool:
    """An x86 CPU with AVX2 but no VNNI, where ONNX Runtime's quantization docs warn that its u8 x s8 GEMM may
    saturate (pairs of products added in int16, VPMADDUBSW: 255 * 127 * 2 > 32767). Not traced in the kernel here;
    measured: 8-bit codes lost top-1 agreement there and 7-bit ones won it back (int8_weight_levels)."""
    flags = cpu_flags()
    return "avx2" in flags and not {"avx512_vnni", "avx_vnni"} & flags


def int8_weight_levels() -> int:
    """Levels per sign of int8 weight codes converted for this CPU. Without VNNI 7-bit codes cannot saturate
    (255 * 63 * 2 < 32767): on a 2-core AVX2 EPYC a random tiny Qwen2 Q6_K went from logits rel 0.45, top-1 0.19
    (8-bit) to 0.089, 0.76, and the other tiny models improved too; with VNNI the finer 8-bit codes are kept."""
    return INT8_LEVELS_NO_VNNI if int8_saturates() else INT8_LEVELS
