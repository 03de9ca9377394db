"""Standalone micro-benchmarks, as the papers time them: one MeshGEMM (WaferLLM Fig. 9) and one allreduce along a line
of PEs (WaferLLM Fig. 10; Luczynski et al. HPDC'24), by the same cost functions the model simulation uses."""

from __future__ import annotations

from . import cost as C
from .errors import WaferError
from .hardware import WaferSpec
from .placement import _check_grid, fmt_bytes
from .report import AllreduceReport, GemmReport
from .workload import ACT_BYTES


def gemm_sram_bytes_per_pe(m: int, k: int, n: int, rows: int, cols: int) -> int:
    """MeshGEMM's tiles on one PE at 16 bit: A and B double-buffered (the shift overlaps the product), C once."""
    steps = max(rows, cols)
    mt, kt, nt = C.cdiv(m, rows), C.cdiv(k, steps), C.cdiv(n, cols)
    return (2 * mt * kt + 2 * kt * nt + mt * nt) * ACT_BYTES


def simulate_gemm(m: int, k: int, n: int, hw: WaferSpec, grid: tuple[int, int] | None) -> GemmReport:
    """C[M,N] = A[M,K] B[K,N] at 16 bit: a forced grid, or the fastest square whose tiles fit the PEs' SRAM."""
    if min(m, k, n) <= 0:
        raise WaferError(f"--gemm MxKxN needs positive sizes (got {m}x{k}x{n})")
    cap = hw.tensor_bytes_per_pe
    if grid is not None:
        _check_grid(hw, *grid)
        need = gemm_sram_bytes_per_pe(m, k, n, *grid)
        if need > cap:
            raise WaferError(f"GEMM {m}x{k}x{n} needs {fmt_bytes(need)} per PE on {grid[0]}x{grid[1]} (A, B double-buffered, "
                             f"C) but a PE holds {fmt_bytes(cap)}: short by {fmt_bytes(need - cap)} per PE")
        rows, cols = grid
    else:
        sides = [s for s in range(1, min(hw.mesh_width_pes, hw.mesh_height_pes) + 1)
                 if gemm_sram_bytes_per_pe(m, k, n, s, s) <= cap]
        if not sides:
            raise WaferError(f"GEMM {m}x{k}x{n} does not fit one {hw.name} wafer's SRAM on any square grid "
                             f"(needs {fmt_bytes(3 * (m * k + k * n) * ACT_BYTES)} or more)")
        rows = cols = min(sides, key=lambda s: C.gemm(hw, m, k, n, s, s, "bf16").total)
    cost = C.gemm(hw, m, k, n, rows, cols, "bf16")
    seconds = cost.total / hw.clock_hz
    return GemmReport(m, k, n, hw.name, hw.clock_hz, f"{rows}x{cols}", rows * cols, seconds,
                      2.0 * m * k * n / seconds, cost.seconds(hw))


def simulate_allreduce(pes: int, elems: int, hw: WaferSpec, collective: str) -> AllreduceReport:
    """An allreduce of `elems` 16-bit values along a line of `pes` PEs, by every algorithm (the chosen one first)."""
    if pes <= 0 or elems <= 0:
        raise WaferError(f"--allreduce N needs N > 0 PEs and --elems > 0 (got {pes}, {elems})")
    if pes > max(hw.mesh_width_pes, hw.mesh_height_pes):
        raise WaferError(f"--allreduce {pes}: a line of PEs is at most {max(hw.mesh_width_pes, hw.mesh_height_pes)} on {hw.name}")
    if collective not in C.COLLECTIVES:
        raise WaferError(f"unknown collective '{collective}' (known: {', '.join(C.COLLECTIVES)})")
    by_algo = {a: C.allreduce(hw, pes, elems, a).total / hw.clock_hz for a in C.COLLECTIVES}
    cost = C.allreduce(hw, pes, elems, collective)
    return AllreduceReport(pes, elems, hw.name, collective, hw.clock_hz, cost.total / hw.clock_hz, by_algo, cost.seconds(hw))
