"""Low-bit weights as they run (runtime/wafer/precision.py): packed reads, native 8-bit MACs as a hardware parameter,
dequantisation's widening and scale folding, and the placement policy that lets a smaller dtype keep its PEs."""

import msgspec
import pytest

from runtime.wafer import cost as C
from runtime.wafer.hardware import load_hardware
from runtime.wafer.sim import SimOptions, simulate
from runtime.wafer.workload import load_arch, workload_for_arch

HW2, HW3 = load_hardware("wse2"), load_hardware("wse3")
W8 = workload_for_arch(load_arch("llama3-8b"))
DTYPES = ("bf16", "int8", "int4")


def _decode(hw, dtype, grid=(130, 188), method="per-layer", **kw):  # 130x188: a one-WSE-3 grid for 8B (the planner's pick for int4)
    return simulate(W8, hw, SimOptions(dtype=dtype, grid=grid, context=4096, method=method, **kw)).decode_tokens_per_s


def test_with_native_low_bit_macs_int4_ge_int8_ge_bf16_at_equal_pes():
    """Equal PEs, equal grid: packed weights read fewer bytes and native MACs skip the widening pass."""
    # the model's own projections (fused qkv and gate_up), every layer on the forced grid: --method per-layer runs
    # WaferLLM's fp16 kernel layout instead (q, k, v, gate, up as separate loops, each folding its own scales)
    hw = msgspec.structs.replace(HW3, macs_per_cycle_8bit=16, macs_per_cycle_4bit=32)
    for grid in ((130, 188), (200, 200)):
        bf16, int8, int4 = (_decode(hw, d, grid, method="placed") for d in DTYPES)
        assert int4 >= int8 > bf16, grid
    # decode is latency-bound: at 420x420 a PE holds ~10 rows of K, one scale fold per block costs what the packed
    # reads save, and precision moves decode by under 1% at equal PEs (its gain is capacity: see the last test)
    speeds = [_decode(hw, d, (420, 420), method="placed") for d in DTYPES]
    assert max(speeds) < 1.01 * min(speeds)


def test_wse3_preset_int8_beats_bf16_but_int4_pays_its_widening():
    """WSE-3 preset: native 8-bit MACs (an assumption the preset states), no 4-bit ones: int8/fp8 multiply as stored,
    int4 is widened to 8 bit once per 32-row block, which costs more at equal PEs than its halved reads save."""
    bf16, int8, int4 = (_decode(HW3, d) for d in DTYPES)
    fp8 = _decode(HW3, "fp8")
    assert int8 > bf16 and fp8 >= int8  # fp8: per-channel scales fold once, int8's once per block
    assert int4 < int8


def test_wse2_preset_has_no_8bit_macs_so_low_bit_is_slower_per_pe_but_smaller():
    bf16, int8 = _decode(HW2, "bf16"), _decode(HW2, "int8")
    assert int8 < bf16  # widened to 16 bit first
    assert int8 > 0.6 * bf16  # ... once per block of 32 rows, one lane-wide pass: not a second full loop per row
    # what int8 buys on WSE-2: the same layer fits a smaller grid (SRAM holds packed bytes)
    with pytest.raises(Exception):
        simulate(W8, HW2, SimOptions(dtype="bf16", grid=(110, 110), context=4096, method="per-layer"))
    simulate(W8, HW2, SimOptions(dtype="int8", grid=(110, 110), context=4096, method="per-layer"))


def test_sram_ports_bind_for_native_8bit_but_not_for_bf16():
    """bf16 at 4 B per MAC matches the ports exactly; 16 int8 lanes want 48 B per cycle from 32 B of ports."""
    bf16 = C.local_matmul(HW3, 32, 64, "bf16")
    int8 = C.local_matmul(HW3, 32, 64, "int8")
    assert "sram_read" not in bf16.cycles and int8.cycles["sram_read"] > 0
    assert int8.cycles["compute"] + int8.cycles["sram_read"] < bf16.cycles["compute"]


def test_widening_is_per_weight_so_a_token_chunk_amortises_it():
    one = C.dequant(HW2, 64, 32, "int4", tokens=1).total
    many = C.dequant(HW2, 64, 32, "int4", tokens=16).total
    assert many == one  # widened once, reused by every token of the chunk
    folded = C.dequant(HW3, 64, 32, "int8", tokens=16).total  # native path: scales fold on partial sums, per token
    assert folded == pytest.approx(16 * C.dequant(HW3, 64, 32, "int8", tokens=1).total)


def test_fastest_placement_lets_the_smaller_dtype_keep_its_pes():
    w70 = workload_for_arch(load_arch("llama3.1-70b"))
    o = SimOptions(collective="pipeline", context=8192)
    runs = {(d, pol): simulate(w70, HW3, msgspec.structs.replace(o, dtype=d, placement=pol))
            for d in ("bf16", "int8") for pol in ("fewest-wafers", "fastest")}
    for d in ("bf16", "int8"):
        assert runs[d, "fastest"].decode_tokens_per_s >= runs[d, "fewest-wafers"].decode_tokens_per_s
    assert runs["int8", "fewest-wafers"].wafers_used < runs["bf16", "fewest-wafers"].wafers_used
    assert runs["int8", "fastest"].decode_tokens_per_s > runs["bf16", "fastest"].decode_tokens_per_s
