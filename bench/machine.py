"""The machine a figure was measured on: CPU model and the instruction-set extensions that move our numbers.

Every benchmark prints this line first: the same script gave 1.32x decode on one machine and 1.03x on another.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

ISA = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")


def cpu_line() -> str:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    isa = " ".join(f for f in ISA if f in flags) or "unknown ISA"
    return f"machine: {model}, {os.cpu_count()} cores, {isa}"


if __name__ == "__main__":
    print(cpu_line())
