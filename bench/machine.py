"""The machine a figure was measured on: CPU model and the instruction-set extensions that move our numbers.

Every benchmark prints this line first: the same script gave 1.32x decode on one machine and 1.03x on another.
"""

from __future__ import annotations

import os
import platform
import threading
import time

import numpy as np

from runtime.cpu import cpu_info

ISA = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")


def cpu_line() -> str:
    model, flags = cpu_info()
    isa = " ".join(f for f in ISA if f in flags) or "unknown ISA"
    return f"machine: {model or platform.processor() or platform.machine()}, {os.cpu_count()} cores, {isa}"


def read_bandwidth_gbs(threads: int = 2, mb_per_thread: int = 512, repeats: int = 5) -> float:
    """This machine's memory read ceiling (GB/s): `threads` threads each streaming its own array through a max-reduce.

    The weights of a decode step are read once per token, so tok/s x bytes/token over this figure says how close a
    decoder is to the bandwidth limit (gpt-fast prints the same). numpy releases the GIL in the reduction; best of
    `repeats`, arrays far larger than any cache.
    """
    arrays = [np.ones(mb_per_thread * (1 << 20) // 4, np.float32) for _ in range(threads)]
    best = 0.0
    for _ in range(repeats):
        workers = [threading.Thread(target=np.maximum.reduce, args=(a,)) for a in arrays]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, sum(a.nbytes for a in arrays) / (time.perf_counter() - t0) / 1e9)
    return best


if __name__ == "__main__":
    print(cpu_line())
    print(f"memory read ceiling: {read_bandwidth_gbs():.1f} GB/s (2 threads)")
