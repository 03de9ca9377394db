"""Wafer-scale engine simulator: how fast the served decoder would run on a Cerebras-class wafer, and why.

Four parts kept apart (as Timeloop and LLMCompass do):
    hardware.py   WaferSpec from TOML presets (wse2, wse3, cs3) + user overrides
    workload.py   the decoder's ONNX graph cut into tile subgraphs (embedding, attention, MLP, head)
    placement.py  rectangles of PEs sized for SRAM residency, serpentine over one or more wafers
    cost.py       per-token decode and per-chunk prefill: local MACs, SRAM, collectives, hops, crossings, host I/O
    precision.py  low-bit weights as they run: packed reads, native 8/4-bit MACs (hardware parameters), dequantisation
sim.py ties them together (and pipelines an auto-placed prompt through the layers in chunks); speculative.py (a draft
model), users.py (concurrent users) and explore.py (sweeps) build on it; report.py / plot.py / cli.py present the
result; partition.py runs the cut graph in ONNX Runtime to prove that what is simulated is what is served.
"""

from __future__ import annotations

from pathlib import Path

from .errors import WaferError

__all__ = ["WaferError", "simulate_bundle", "plot_report", "explore_chart"]


def simulate_bundle(bundle: str | Path, hardware: str = "wse3", **options):
    """The Report of a model bundle (its model.onnx, partitioned) on a hardware preset or TOML; options: SimOptions."""
    from .cli import load_workload
    from .hardware import load_hardware
    from .sim import SimOptions, simulate

    return simulate(load_workload(model=str(bundle)), load_hardware(hardware), SimOptions(**options))


def plot_report(report, out: str | Path) -> Path:
    """Heat-map + latency bars PNG for a Report (`out`: a .png path or a directory)."""
    from .plot import plot_report as _plot

    return _plot(report, out)


def explore_chart(hardware: str, out: str | Path, archs=None) -> Path:
    """The explore sweep's chart (explore.py: which models reach 1,000 tok/s per user on 1 or 4 wafers at 8K, no
    speculation), a small one for the editor's report; `out` a .png path."""
    from .explore import REPORT_ARCHS, explore
    from .plot import plot_explore

    return plot_explore(explore(archs or REPORT_ARCHS, ("bf16",), (1, 4), (8192,), None, 0, 1000.0, hardware,
                                progress=False), out)
