"""Placement: residency, serpentine neighbours, multi-wafer spill, and the errors when a model cannot fit."""

import pytest

from runtime.wafer.errors import WaferError
from runtime.wafer.hardware import load_hardware
from runtime.wafer.sim import SimOptions, simulate
from runtime.wafer.workload import load_arch, workload_for_arch

HW3 = load_hardware("wse3")


def test_small_model_fits_one_wafer_and_regions_are_neighbours():
    r = simulate(workload_for_arch(load_arch("smollm2-135m")), HW3, SimOptions())
    assert r.wafers_used == 1 and r.wafer_crossings_per_token == 0
    assert all(reg.sram_bytes_per_pe <= HW3.tensor_bytes_per_pe for reg in r.regions)
    for a, b in zip(r.regions, r.regions[1:]):
        if a.wafer == b.wafer:
            gap = abs(a.x - b.x) + abs(a.y - b.y)
            assert gap <= max(a.width, a.height, b.width, b.height)  # serpentine: next region is adjacent
    names = [reg.name for reg in r.regions]
    assert names[0] == "embed" and names[-1] == "head"


def test_405b_spills_over_wafers_with_the_hidden_state_crossing():
    r = simulate(workload_for_arch(load_arch("llama3.1-405b")), HW3, SimOptions())
    assert 20 <= r.wafers_used <= 32  # 812 GB at bf16 over ~39 GB of tensor SRAM per wafer
    assert r.wafer_crossings_per_token == r.wafers_used  # forward crossings + the token back to the embedding
    assert r.breakdown["wafer_crossing"] > 0


def test_too_few_wafers_gives_shortfall_and_wafers_needed():
    with pytest.raises(WaferError) as e:
        simulate(workload_for_arch(load_arch("llama3.1-70b")), HW3, SimOptions(wafers=2))
    msg = str(e.value)
    assert "short by" in msg and "GB" in msg and "it fits on" in msg and "--wafers" in msg
    assert "\n" not in msg


def test_forced_grid_too_small_names_the_per_pe_shortfall():
    with pytest.raises(WaferError) as e:
        simulate(workload_for_arch(load_arch("llama3-8b")), HW3, SimOptions(grid=(60, 60)))
    msg = str(e.value)
    assert "short by" in msg and "per PE" in msg and "at least" in msg and "\n" not in msg


def test_context_that_cannot_fit_is_refused():
    w8 = workload_for_arch(load_arch("llama3-8b"))
    with pytest.raises(WaferError, match="short by"):
        simulate(w8, HW3, SimOptions(context=1_000_000, prompt_len=16, wafers=1))
    with pytest.raises(WaferError, match="more than one wse3 wafer holds"):  # one layer's KV alone exceeds a wafer
        simulate(w8, HW3, SimOptions(context=12_000_000, prompt_len=16))


@pytest.mark.parametrize(
    "opts, needle",
    [
        (dict(grid=(2000, 2000)), "does not fit the"),
        (dict(grid=(0, 5)), "must be > 0"),
        (dict(dtype="fp4"), "unknown dtype"),
        (dict(method="forced"), "unknown method"),
        (dict(placement="densest"), "unknown placement"),
        (dict(collective="butterfly"), "unknown collective"),
        (dict(prompt_len=9000, context=4096), "exceeds --context"),
        (dict(wafers=0), "--wafers must be > 0"),
    ],
)
def test_bad_options_are_one_line_errors(opts, needle):
    with pytest.raises(WaferError) as e:
        simulate(workload_for_arch(load_arch("smollm2-135m")), HW3, SimOptions(**opts))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_forced_grid_uses_as_many_wafers_as_it_needs():
    w8 = workload_for_arch(load_arch("llama3-8b"))
    hw2 = load_hardware("wse2")
    big = simulate(w8, hw2, SimOptions(grid=(720, 720), context=4096))
    small = simulate(w8, hw2, SimOptions(grid=(360, 360), context=4096))
    assert big.wafers_used > small.wafers_used > 1
    assert big.grid == "720x720" and big.grid_forced


def test_a_layer_no_square_holds_may_still_place_as_full_height_strips(tmp_path):
    from runtime.wafer.cli import run_case

    thin = tmp_path / "thin.toml"
    thin.write_text("mesh_width_pes = 1000\nmesh_height_pes = 4\n")  # no square grid holds a SmolLM2 layer
    r = run_case({"arch": "smollm2-135m", "hardware": str(thin)})
    assert r.decode_tokens_per_s > 0 and all(g.height == 4 for g in r.regions)


def test_a_vocabulary_too_big_for_the_smallest_layer_grid_moves_auto_placement_on():
    """Small layers fit a tiny per-layer grid whose 64 tiles cannot hold a 150K-row embedding (the default model's
    int8 bundle: auto placement raised "embed does not fit in 64 tiles of 8x8 PEs" instead of trying larger grids).
    A forced grid that small still gets one clear error."""
    from runtime.arch import ArchSpec

    spec = ArchSpec(name="wide-vocab", architecture="llama", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128,
                    vocab_size=151936, context_length=256)
    w = workload_for_arch(spec)
    r = simulate(w, load_hardware("wse3"), SimOptions(context=256, prompt_len=16))
    assert r.decode_tokens_per_s > 0
    with pytest.raises(WaferError, match="embedding or LM head .* does not fit 64 tiles of 4x4 PEs"):
        simulate(w, load_hardware("wse3"), SimOptions(context=256, prompt_len=16, grid=(4, 4)))
