"""Strip packing (runtime/wafer/packing.py) and split layers: Llama 3.1 70B at 8K context on 4 WSE-3, as served."""

import pytest

from runtime.wafer import cost as C
from runtime.wafer.hardware import load_hardware
from runtime.wafer.packing import pack
from runtime.wafer.sim import SimOptions, simulate
from runtime.wafer.workload import load_arch, workload_for_arch

HW3 = load_hardware("wse3")
W70 = workload_for_arch(load_arch("llama3.1-70b"))


def test_strips_waste_only_a_wafers_last_band():
    widths = [300] * 10  # 300 does not divide 755: rectangles fit 2 per band, strips 755 / 300 = 2.5
    rect = pack(widths, 755, 400, 100, 300, wrap=False)
    strip = pack(widths, 755, 400, 100, 300, wrap=True)
    assert max(s[0] for s in rect) == 1 and max(s[0] for s in strip) == 0  # 2 wafers vs 1
    # a wrapped region continues at the same edge of the next band (serpentine): band 0 ends at the right edge,
    # band 1 runs right to left from it
    wafer, x, y, wrap = strip[2]
    assert (x, y, wrap) == (600, 0, 145)
    assert strip[3] == (0, 755 - 145 - 300, 100, 0)


def test_llama_70b_at_8k_places_on_four_wse3_as_served():
    """143.8 GB fits the 159.2 GB four wafers hold for tensors; whole-layer rectangles needed five."""
    r = simulate(W70, HW3, SimOptions(collective="pipeline", context=8192))
    assert r.wafers_used == 4
    assert all(reg.sram_bytes_per_pe <= HW3.tensor_bytes_per_pe for reg in r.regions)
    assert any(reg.wrap_cols for reg in r.regions)
    assert {reg.name.rsplit(".", 1)[-1] for reg in r.regions if reg.name.startswith("layers.")} == {"attn", "mlp"}
    forced = simulate(W70, HW3, SimOptions(collective="pipeline", context=8192, wafers=4))
    assert forced.wafers_used == 4
    assert sum(forced.prefill_breakdown.values()) == pytest.approx(forced.ttft_s, rel=1e-9)


def test_a_wrapped_region_pays_its_fold():
    sg = next(s for s in W70.subgraphs if s.kind == "mlp")
    flat = C.decode_subgraph(HW3, sg, 117, 300, "bf16", "pipeline", 8192)
    fold = C.fold_penalty(HW3, sg, 117, 300, "stream")
    assert fold.cycles["fabric_hops"] == 2 * 117 * HW3.hop_latency_cycles  # down_proj's allreduce, out and back
    assert C.fold_penalty(HW3, sg, 117, 300, "meshgemm").total > 100 * fold.total  # every shift round crosses it
    assert fold.total < 0.1 * flat.total


def test_per_system_report_adds_up_and_active_params_are_the_model():
    r = simulate(W70, HW3, SimOptions(collective="pipeline", context=8192))
    assert len(r.per_system) == r.wafers_used == 4
    assert sum(s.weight_bytes for s in r.per_system) == r.weight_bytes
    assert sum(s.kv_bytes for s in r.per_system) == r.kv_bytes
    assert sum(s.pes_used for s in r.per_system) == r.pes_used
    assert sum(s.decode_s for s in r.per_system) == pytest.approx(sum(sg.seconds for sg in r.subgraphs), rel=1e-9)
    assert r.per_system[0].layers[0] == 0 and r.per_system[-1].layers[1] == 79
    for a, b in zip(r.per_system, r.per_system[1:]):
        assert b.layers[0] in (a.layers[1], a.layers[1] + 1)  # contiguous layer ranges (a split layer may straddle)
    assert 70.0e9 < r.active_params < 71.0e9  # Llama 3.1 70B: 70.6 B parameters
    w8 = workload_for_arch(load_arch("llama3-8b"))
    per_layer = simulate(w8, HW3, SimOptions(grid=(420, 420), context=4096, method="per-layer"))
    assert per_layer.per_system == []  # one layer timed, no systems
